"""promtool on the monitoring files: the config, the rules, their unit tests, the panel queries."""

from __future__ import annotations

import subprocess

import yaml

from tests.support import require_binary
from tests.support.monitoring import REPO, RULE_TESTS_DIR, panel_queries, rule_files


def promtool(*args: str) -> subprocess.CompletedProcess:
    """Run promtool in the repository root; return it with stdout and stderr captured."""
    binary = require_binary("promtool")
    return subprocess.run(
        [binary, *args], cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )


def test_promtool_accepts_config_and_finds_every_rule_file():
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(rule_files())} rule files found" in result.stdout + result.stderr


def test_promtool_accepts_rules():
    result = promtool("check", "rules", *map(str, rule_files()))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_unit_tests_pass():
    tests = sorted(map(str, RULE_TESTS_DIR.glob("*.yml")))
    assert tests, "no promtool rule tests in prometheus/tests/"
    result = promtool("test", "rules", *tests)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(tests), result.stdout


def test_panel_queries_are_valid_promql(tmp_path):
    """promtool parses every query, written as a recording rule of a throwaway file."""
    queries = panel_queries()
    rules = [
        {"record": f"dashboard_query_{number}", "expr": expr}
        for number, (_, _, expr) in enumerate(queries)
    ]
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(queries)} rules found" in result.stdout
