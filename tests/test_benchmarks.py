"""The benchmarks still run against the current code (tiny sizes; no timings are asserted)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import train_loop  # noqa: E402


def test_train_loop_benchmark_runs_both_loops():
    x, c, y = train_loop.data(2048, 8)
    assert train_loop.plain(x, c, y, 1, 512) > 0
    assert train_loop.ours(x, c, y, 1, 512) > 0
