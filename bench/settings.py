"""What one benchmark run measures and where it writes: defaults, the environment, then flags."""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path

from penguins.config import PROJECT_DIR, StoreSettings, setting

# mlserver and bentoml are peers, each in a virtualenv of its own (bench/peers.py).
SERVERS = ("ours", "mlflow", "mlflow-1w", "mlserver", "bentoml")


@dataclass(frozen=True)
class Pace:
    """How long each stage runs: seconds of wrk, POSTs of the big batch, scrapes, profiles."""

    duration_s: float = 5.0
    warmup_s: float = 2.0
    batch_repeats: int = 5
    scrapes: int = 50
    inprocess_budget_s: float = 1.0
    profile_s: float = 8.0  # 0: no profile
    # Rows already in the prediction log of each API of the log-size batch stage.
    log_sizes: tuple[int, ...] = (0, 300_000, 1_000_000)


# Prefilling 1M rows takes seconds: a quick run keeps the two sizes the goal compares.
QUICK = Pace(2.0, 1.0, 3, 20, 0.3, 4.0, log_sizes=(0, 1_000_000))


def comma_separated_whole_numbers(text: str) -> tuple[int, ...]:
    """Read a list such as 1,8,32."""
    return tuple(int(v) for v in text.split(",") if v.strip())


def names(text: str) -> tuple[str, ...]:
    """Read a list such as ours,mlflow."""
    return tuple(v.strip() for v in text.split(",") if v.strip())


@dataclass(frozen=True)
class BenchSettings(StoreSettings):
    """The servers to run, how long to load them, and where the report goes."""

    train: bool = setting(
        False,
        "benchmark the champion that the timed `python modelling.py` run trains into a "
        "temporary store, instead of the tracking store's",
    )
    quick: bool = setting(False, "short runs: a rough look in about a minute")
    duration: float | None = setting(
        None, "seconds per wrk run, if not 5 (2 with --quick)", parse=float, minimum=1
    )
    # Two rounds at least: the first server of a round alternates between rounds.
    repeats: int = setting(2, "wrk runs per server and concurrency, at least 2", minimum=2)
    connections: tuple[int, ...] = setting(
        (1, 8, 32), "comma-separated concurrencies", parse=comma_separated_whole_numbers
    )
    workers: int = setting(2, "workers per server", minimum=1)
    wrk_threads: int = setting(1, "wrk threads", minimum=1)
    servers: tuple[str, ...] = setting(
        SERVERS,
        "comma-separated subset of ours, mlflow (as many workers as ours), mlflow-1w "
        "(one worker: free of uvicorn's multi-worker Nagle delay), mlserver and bentoml "
        "(peers with as many workers as ours, each installed once into bench/.peers/)",
        parse=names,
    )
    baseline: Path | None = setting(
        None,
        "another checkout of this project (`git worktree add /tmp/old REV`): its API, its "
        "ml_serving.py in this venv, joins the run as `baseline`, interleaved with ours",
        parse=Path,
    )
    markdown: Path | None = setting(
        None,
        "the report, if not docs/BENCHMARKS.md; --quick and --baseline runs write to a "
        "temporary folder unless given this, so that they never overwrite the committed one",
        parse=Path,
    )
    chart: Path | None = setting(None, "the chart, if not benchmarks.png beside it", parse=Path)
    no_profile: bool = setting(False, "skip the py-spy profiles of our /predict and batch")
    log_sizes: tuple[int, ...] | None = setting(
        None,
        "comma-separated prediction-log sizes in rows: after the other stages our API runs "
        "on a log prefilled to each (0: empty) and takes 1,000- and 10,000-row batches, "
        "interleaved; if not 0,300000,1000000 (0,1000000 with --quick); empty: no such stage",
        parse=comma_separated_whole_numbers,
    )
    team_only: bool = setting(
        False,
        "run the team deployment stage alone (PostgreSQL log, replicas behind nginx; needs "
        "PostgreSQL and nginx) and replace only its section of the report, leaving the "
        "rest as the last full run wrote it",
        group="team",
    )
    no_team: bool = setting(
        False, "skip the team deployment stage (it runs last otherwise)", group="team"
    )
    json: Path | None = setting(None, "also write the raw figures as JSON here", parse=Path)
    no_write: bool = setting(False, "print the figures only; write no files")

    def problem(self) -> str | None:
        """Return what is wrong with the settings that no single field's check catches."""
        if not self.servers or set(self.servers) - set(SERVERS):
            return f"--servers takes a subset of {','.join(SERVERS)}"
        if not self.connections or min(self.connections) < 1:
            return "--connections takes positive whole numbers, such as 1,8,32"
        sizes = self.log_sizes or ()
        if min(sizes, default=0) < 0 or len(set(sizes)) < len(sizes):
            return "--log-sizes takes distinct whole numbers of rows, such as 0,300000,1000000"
        if self.baseline and not (self.baseline / "ml_serving.py").is_file():
            return f"--baseline {self.baseline}: no ml_serving.py there"
        if self.baseline and self.baseline.resolve() == PROJECT_DIR:
            return "--baseline is this checkout: make one of another commit"
        return None

    @property
    def pace(self) -> Pace:
        """Return how long each stage runs."""
        pace = QUICK if self.quick else Pace()
        profile_s = 0.0 if self.no_profile else pace.profile_s
        log_sizes = pace.log_sizes if self.log_sizes is None else self.log_sizes
        return dataclasses.replace(
            pace,
            duration_s=self.duration or pace.duration_s,
            profile_s=profile_s,
            log_sizes=log_sizes,
        )

    @property
    def model_uri(self) -> str:
        """Return the registry URI every server loads."""
        return f"models:/{self.model_name}@{self.alias}"

    @property
    def server_names(self) -> tuple[str, ...]:
        """Return the servers to start, the baseline after ours when there is one."""
        extra = ("baseline",) if self.baseline else ()
        return (*self.servers[:1], *extra, *self.servers[1:])

    def outputs(self) -> tuple[Path, Path] | None:
        """Return where the report and the chart go, or None when nothing is written."""
        if self.no_write:
            return None
        trial = self.quick or self.baseline is not None
        folder = Path(tempfile.gettempdir()) / "penguins-bench" if trial else PROJECT_DIR / "docs"
        markdown = self.markdown or folder / "BENCHMARKS.md"
        return markdown, self.chart or markdown.with_name("benchmarks.png")
