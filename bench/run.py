"""Benchmark our API against mlflow serve, MLServer and BentoML on the champion: docs/BENCHMARKS.md.

Usage: python bench/run.py [--quick] [--train] [--baseline PATH] [--servers ...] [--team-only] [...]
Needs wrk (apt-get install wrk). Only 127.0.0.1 is targeted; every started process is stopped.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from pathlib import Path

# `python bench/run.py` puts bench/ on sys.path; the packages live in the project root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import BenchError, report, suite
from bench.settings import BenchSettings
from penguins.config import parse_settings

log = logging.getLogger("bench")


def _stop_on_sigterm(signum: int, frame: object) -> None:
    """Turn SIGTERM into SystemExit so that the finally blocks stop the servers."""
    raise SystemExit(128 + signum)


def write(settings: BenchSettings, figures: dict) -> None:
    """Write the report and the chart where the settings say (and the raw figures)."""
    outputs = settings.outputs()
    if outputs is None:
        return
    markdown, chart = outputs
    markdown.parent.mkdir(parents=True, exist_ok=True)
    if settings.team_only:  # its section only: the rest stays as the last full run wrote it
        before = markdown.read_text() if markdown.is_file() else ""
        markdown.write_text(report.with_team_section(before, figures))
        log.info("wrote the team deployment section of %s", markdown)
    else:
        markdown.write_text(report.markdown(figures))
        report.chart(figures, chart)
        log.info("wrote %s and %s", markdown, chart)
    if report.team_measured(figures):
        report.team_chart(figures, chart.with_name(report.TEAM_CHART))
    if settings.json:
        settings.json.write_text(json.dumps(figures, indent=2))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the figures and write the report; return the exit code."""
    settings = parse_settings(BenchSettings, argv, __doc__.splitlines()[0])
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    # Started in the background by a non-interactive shell, SIGINT arrives ignored; restore
    # Ctrl-C's KeyboardInterrupt so that an interrupt always stops the servers.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        figures = suite.run(settings, log.info)
    except BenchError as exc:
        log.error("benchmark failed: %s", exc)
        return 1
    except KeyboardInterrupt:
        log.error("interrupted; every started process was stopped")
        return 130
    except SystemExit as exc:  # SIGTERM, after the finally blocks stopped the servers
        log.error("terminated; every started process was stopped")
        return exc.code if isinstance(exc.code, int) else 1
    shown = report.team_summary(figures) if settings.team_only else [report.summary(figures)]
    log.info("\n%s", "\n".join(shown))
    write(settings, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
