"""The team stage: its setups, what each run is charged, its report section and its merge."""

from __future__ import annotations

import copy

import pytest

from bench import report, team
from bench.settings import BenchSettings
from penguins.config import parse_settings


def _run(rps: float, p99: float, api_ms: float = 0.7, share: float = 0.5) -> dict:
    """One wrk run through a setup, as the stage stores it."""
    return {
        "requests": int(rps * 5),
        "duration_s": 5.0,
        "rps": rps,
        "p50_ms": p99 / 4,
        "p90_ms": p99 / 2,
        "p99_ms": p99,
        "mean_ms": p99 / 4,
        "max_ms": p99 * 2,
        "non_2xx": 0,
        "socket_errors": 0,
        "cpu_ms_per_request": {
            "api": api_ms,
            "nginx": 0.1,
            "postgres": 0.2,
            "wrk": 0.05,
            "other": 0.0,
        },
        "busy_percent": 97.0,
        "busiest_replica_share": share,
    }


def _setup(replicas: int, workers: int, balanced: bool, runs: dict[str, list[dict]]) -> dict:
    """One setup of the replica comparison with its runs by concurrency."""
    return {"replicas": replicas, "workers": workers, "balanced": balanced, "load": runs}


TEAM = {
    "date": "2026-01-02 03:04 UTC",
    "commit": "d2bec33",
    "load_before": [0.5, 0.4, 0.3],
    "load_after": [1.9, 1.2, 0.6],
    "workers": 2,
    "batches": [1000, 10_000],
    "batch_rounds": 10,
    "connections": [8, 32],
    "duration_s": 5.0,
    "repeats": 2,
    "wrk_threads": 1,
    "nginx": {"version": "1.22.1", "config": "deploy/nginx/penguins.conf"},
    "postgres": {"version": "15.18", "durability": "fsync=on, synchronous_commit=on"},
    "logs": {
        # medians: 1,000 rows in 10 ms (100,000 rows/s), 10,000 rows in 80 ms (125,000 rows/s)
        "sqlite": {
            "batch_s": {"1000": [0.012, 0.010, 0.009], "10000": [0.08, 0.09, 0.07]},
            "cpu_ms_per_batch": {"api": 75.0, "postgres": 0.2},
        },
        # 1,000 rows in 8 ms (125,000), 10,000 rows in 50 ms (200,000 rows/s)
        "postgresql": {
            "batch_s": {"1000": [0.008, 0.008, 0.020], "10000": [0.05, 0.04, 0.06]},
            "rows_before": 0,
            "rows_after": 66_000,
            "cpu_ms_per_batch": {"api": 60.4, "postgres": 49.6},
        },
    },
    "setups": {
        "direct": _setup(1, 2, False, {"8": [_run(2600, 9.0)], "32": [_run(2700, 30.0)]}),
        "one": _setup(
            1, 2, True, {"8": [_run(2400, 10.0), _run(2600, 12.0)], "32": [_run(2500, 40.0)]}
        ),
        # 8 conn.: median 2,300 / 2,500 = 0.92x (met); 32 conn.: 2,000 / 2,500 = 0.80x (missed)
        "two": _setup(2, 1, True, {"8": [_run(2300, 14.0, share=0.55)], "32": [_run(2000, 60.0)]}),
        "two-full": _setup(2, 2, True, {"8": [_run(1500, 25.0, 1.1)], "32": [_run(1700, 70.0)]}),
    },
}  # fmt: skip


def figures(**team_figures) -> dict:
    """Return a run's figures holding the team stage's (a full run's other figures left out)."""
    return {"date": "2026-01-02 03:04 UTC", "settings": {"workers": 2}, "team": team_figures}


def test_the_replicas_split_the_workers_of_one_so_that_two_over_one_is_fair():
    found = {setup.name: setup for setup in team.setups(2)}
    assert list(found) == ["direct", "one", "two", "two-full"]
    assert (found["one"].replicas, found["one"].workers) == (1, 2)
    assert (found["two"].replicas, found["two"].workers) == (2, 1)  # the same 2 workers in all
    assert (found["two-full"].replicas, found["two-full"].workers) == (2, 2)
    assert not found["direct"].balanced and found["one"].balanced
    assert found["two"].describe() == "2 replicas x 1 worker, behind nginx"
    assert found["direct"].describe() == "1 replica x 2 workers, no nginx"
    assert {s.name: s.workers for s in team.setups(1)}["two"] == 1  # never no worker
    assert {s.name: s.workers for s in team.setups(4)}["two"] == 2


def test_each_part_is_charged_its_cpu_per_request_and_the_rest_is_other_work():
    before = {"replicas": [10.0, 20.0], "nginx": 1.0, "postgres": 2.0, "wrk": 3.0}
    before |= {"busy": 100.0, "total": 200.0}
    after = {"replicas": [10.6, 20.4], "nginx": 1.1, "postgres": 2.2, "wrk": 3.1}
    after |= {"busy": 101.6, "total": 202.0}  # 1.6 s of 2 s busy; the parts took 1.4 s
    found = team.charged(before, after, 1000)
    assert found["cpu_ms_per_request"] == pytest.approx(
        {"api": 1.0, "nginx": 0.1, "postgres": 0.2, "wrk": 0.1, "other": 0.2}
    )
    assert found["busy_percent"] == pytest.approx(80.0)
    assert found["busiest_replica_share"] == pytest.approx(0.6)
    # The parts' own clocks may run ahead of the machine's: other work is never negative.
    after["busy"] = 100.5
    assert team.charged(before, after, 1000)["cpu_ms_per_request"]["other"] == 0.0


def test_the_log_table_gives_rows_per_second_and_the_ratio_to_sqlite():
    header, lines = report.team_log_table(figures(**TEAM))
    assert header == [
        "prediction log",
        "1,000-row batch, rows/s",
        "10,000-row batch, rows/s",
        "1,000-row, / SQLite",
        "10,000-row, / SQLite",
        "10,000-row batch, CPU ms: API",
        "PostgreSQL",
        "log rows before / after",
    ]
    assert lines == [
        ["SQLite", "100,000", "125,000", "1.00x", "1.00x", "75", "0", "n/a"],
        ["PostgreSQL", "125,000", "200,000", "1.25x", "1.60x", "60", "50", "0 / 66,000"],
    ]


def test_the_batch_target_is_judged_on_the_postgresql_median():
    assert report.team_batch_goal(figures(**TEAM)) == (
        ">= 150,000 rows/s, 10,000-row batches into PostgreSQL",
        True,
    )
    slow = copy.deepcopy(TEAM)
    slow["logs"]["postgresql"]["batch_s"]["10000"] = [0.07, 0.08]  # 133,333 rows/s
    assert report.team_batch_goal(figures(**slow)).met is False
    del slow["logs"]["postgresql"]
    assert report.team_batch_goal(figures(**slow)).met is None


def test_two_replicas_are_judged_against_one_at_each_concurrency():
    goals = report.replica_goals(figures(**TEAM))
    assert goals == {
        "one-row req/s, 8 conn.": (">= 0.90x: two / one", True),  # 2,300 / 2,500
        "one-row req/s, 32 conn.": (">= 0.90x: two / one", False),  # 2,000 / 2,500
    }
    lines = report.team_verdicts(figures(**TEAM))
    assert lines[0] == (
        "10,000-row batches into PostgreSQL: 200,000 rows/s, 1.60x SQLite's; target >= "
        "150,000 rows/s, 10,000-row batches into PostgreSQL: met."
    )
    assert lines[2] == (
        "2 replicas x 1 worker, nginx / 1 replica x 2 workers, nginx, one-row req/s, 32 conn.: "
        "0.80x; target >= 0.90x: two / one: **missed**."
    )


def test_the_replica_table_holds_every_setup_its_ratio_to_one_and_the_targets():
    header, lines = report.replica_table(figures(**TEAM))
    assert header == [
        "",
        "direct: 1 replica x 2 workers, no nginx",
        "one: 1 replica x 2 workers, nginx",
        "two: 2 replicas x 1 worker, nginx",
        "two-full: 2 replicas x 2 workers, nginx",
        "direct / one",
        "two / one",
        "two-full / one",
        "target",
        "result",
    ]
    rows = {line[0]: line[1:] for line in lines}
    assert rows["one-row req/s, 8 conn."] == [
        "2,600", "2,500", "2,300", "1,500", "1.04x", "0.92x", "0.60x",
        ">= 0.90x: two / one", "met",
    ]  # fmt: skip
    assert rows["one-row p99, ms, 32 conn."][:4] == ["30.00", "40.00", "60.00", "70.00"]
    assert rows["API CPU per request, ms, 8 conn."][3] == "1.10"
    assert rows["PostgreSQL CPU per request, ms, 32 conn."][0] == "0.20"
    assert rows["busiest replica's share of API CPU, 8 conn."][2] == "0.55"
    assert len(lines) == 2 * len(report.REPLICA_FIGURES)


def test_the_section_says_how_it_was_measured_and_every_verdict():
    text = "\n".join(report.team_section(figures(**TEAM)))
    assert text.startswith("## Team deployment\n")
    for expected in (
        "PostgreSQL 15.18",
        "fsync=on, synchronous_commit=on",
        "Measured 2026-01-02 03:04 UTC at d2bec33",
        "0.50, 0.40, 0.30 / 1.90, 1.20, 0.60",
        "nginx 1.22.1 with the repo's `deploy/nginx/penguins.conf`",
        "`two`, two replicas with 1 each",
        "10 rounds of 1,000- and 10,000-row",
        "| PostgreSQL | 125,000 | 200,000 | 1.25x | 1.60x | 60 | 50 | 0 / 66,000 |",
        "- 2 replicas x 1 worker, nginx / 1 replica x 2 workers, nginx, one-row req/s, 8 conn.",
    ):
        assert expected in text
    assert report.team_section({}) == []
    skipped = report.team_section(figures(skipped="nginx is not installed"))
    assert skipped == ["## Team deployment", "", "Not measured: nginx is not installed."]
    assert report.team_goals(figures(skipped="nginx is not installed")) == []


def test_a_team_run_replaces_only_its_section_of_the_report():
    old = "# Benchmarks\n\nintro\n\n## Team deployment\n\nold figures\n\n"
    old += "## Machine and settings\n\n- m\n"
    merged = report.with_team_section(old, figures(**TEAM))
    assert "old figures" not in merged and "| PostgreSQL | 125,000 |" in merged
    assert merged.startswith("# Benchmarks\n\nintro\n\n## Team deployment\n\n")
    assert merged.endswith("\n\n## Machine and settings\n\n- m\n")
    assert report.with_team_section(merged, figures(**TEAM)) == merged  # idempotent


def test_a_report_without_a_team_section_gets_one_before_the_machine_or_at_the_end():
    old = "# Benchmarks\n\nintro\n\n## Slow clients\n\nx\n\n## Machine and settings\n\n- m\n"
    merged = report.with_team_section(old, figures(**TEAM))
    assert merged.index("## Slow clients") < merged.index("## Team deployment")
    assert merged.index("## Team deployment") < merged.index("## Machine and settings")
    appended = report.with_team_section("# Benchmarks\n\nintro\n", figures(**TEAM))
    assert appended.startswith("# Benchmarks\n\nintro\n\n## Team deployment\n")
    fresh = report.with_team_section("", figures(**TEAM))
    assert fresh.startswith("# Benchmarks\n\n## Team deployment\n")


def test_a_full_report_holds_the_team_section_and_counts_its_targets():
    full = {**figures(**TEAM), "servers": {}}
    text = report.markdown(full)
    assert "\n## Team deployment\n" in text
    assert text.index("## Team deployment") < text.index("## Machine and settings")
    # Of the team's 3 targets 2 are met (batch, 8 conn.); the main table measured none.
    assert "2 of 3 measured targets met" in text
    assert "team: replicas behind nginx" in report.summary(full)
    assert "## Team deployment" not in report.markdown({"servers": {}})


def test_team_only_and_no_team_are_flags_of_their_own():
    def parse(*argv: str) -> BenchSettings:
        """Parse the bench's flags over an empty environment."""
        return parse_settings(BenchSettings, list(argv), "bench", environ={})

    assert not parse().team_only and not parse().no_team
    assert parse("--team-only").team_only and parse("--no-team").no_team
    with pytest.raises(SystemExit):
        parse("--team-only", "--no-team")


def test_the_team_chart_is_a_png_drawn_only_for_a_measured_stage(tmp_path):
    path = tmp_path / report.TEAM_CHART
    report.team_chart(figures(**TEAM), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report.team_measured(figures(**TEAM))
    assert not report.team_measured(figures(skipped="no nginx")) and not report.team_measured({})
