"""The scrape-cost benchmark runs end to end on a small log (the 1M figure is in the docs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from penguins.config import PROJECT_DIR


def test_scrape_cost_benchmark_reports_every_log_size(tmp_path: Path):
    picture = tmp_path / "cost.png"
    result = subprocess.run(
        [sys.executable, "bench/scrape_cost.py", "--rows", "20000", "--checkpoints", "2",
         "--scrapes", "3", "--plot", str(picture)],
        cwd=PROJECT_DIR, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert [r[0] for r in rows] == ["10,000", "20,000"]
    assert all(0 < float(r[1]) < 1000 for r in rows)
    assert picture.stat().st_size > 0
