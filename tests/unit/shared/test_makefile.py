"""The commands README promises: `make test` lints as `make lint` does, and CI runs it."""

from __future__ import annotations

import re

from penguins.config import PROJECT_DIR


def recipe(target: str) -> list[str]:
    """Return the command lines of one Makefile target."""
    text = (PROJECT_DIR / "Makefile").read_text()
    match = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n)+)", text, flags=re.M)
    assert match, f"no target {target}"
    return [line.strip() for line in match[1].splitlines()]


def test_make_test_checks_lint_and_formatting_before_the_tests():
    lines = recipe("test")
    assert any("ruff check ." in line for line in lines)
    assert any("ruff format --check ." in line for line in lines)
    assert lines[-1].endswith("-m pytest")
    assert [line for line in recipe("lint") if "ruff" in line] == [
        line for line in lines if "ruff" in line
    ]


def test_ci_runs_the_readme_test_command():
    ci = (PROJECT_DIR / ".ci" / "run").read_text()
    readme = (PROJECT_DIR / "README.md").read_text()
    assert "make test" in readme
    assert re.search(r"^make test$", ci, flags=re.M)
