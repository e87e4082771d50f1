"""Send realistic traffic to the penguins API and summarise what came back.

Run from the project root: ``python inference.py`` sends 200 requests to
http://127.0.0.1:5000 (single and batch predictions drawn from data/penguins.csv
with noise, feedback for half of the predictions) and prints a summary.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Sequence

from penguins.config import parse_settings
from penguins.features import DataError, load_dataset
from penguins.traffic.runner import ApiUnreachable, send_traffic
from penguins.traffic.settings import TrafficSettings
from penguins.traffic.summary import format_summary


def parse_args(argv: Sequence[str] | None = None) -> TrafficSettings:
    """Return the settings: defaults, then the environment, then the command line."""
    return parse_settings(TrafficSettings, argv, __doc__.splitlines()[0])


def main(argv: Sequence[str] | None = None) -> int:
    """Send the traffic, print the summary, and return the exit code."""
    settings = parse_args(argv)
    # Started as a background job, a shell hands SIGINT over ignored, and Python then sets
    # no KeyboardInterrupt for it: Ctrl-C (or kill -INT) would never end --duration 0.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        outcome = send_traffic(settings, load_dataset(settings.data))
    except DataError as exc:
        print(f"inference: {exc}", file=sys.stderr)
        return 2
    except ApiUnreachable as exc:
        print(f"inference: {exc}", file=sys.stderr)
        return 1
    print(format_summary(outcome.summary))
    if settings.summary_json:
        settings.summary_json.write_text(json.dumps(outcome.summary, indent=2))
    if outcome.summary["transport_errors"]:
        print("inference: some requests got no answer from the API", file=sys.stderr)
    return outcome.exit_code


if __name__ == "__main__":
    sys.exit(main())
