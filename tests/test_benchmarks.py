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


def test_forecast_benchmark_builds_a_later_test_year(tmp_path):
    import zipfile

    import forecast
    import pandas as pd

    bundle, truth = forecast.make(tmp_path)
    with zipfile.ZipFile(bundle) as archive:
        train, test = (pd.read_csv(archive.open(f"{name}.csv")) for name in ("train", "test"))
    assert test["date"].min() > train["date"].max() and len(truth) == len(test) == 365 * 60
    assert forecast.smape(truth, truth) == 0 and "num_sold" not in test
