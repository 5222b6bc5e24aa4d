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


def test_ensembles_benchmark_holds_back_a_quarter_of_train_with_its_answers(tmp_path):
    import zipfile

    import ensembles
    import pandas as pd

    bundle, truth = ensembles.held_back("titanic", tmp_path)
    with zipfile.ZipFile(bundle) as archive:
        train, test, sample = (pd.read_csv(archive.open(name)) for name in ("train.csv", "test.csv", "gender_submission.csv"))
    assert len(test) == len(truth) and 0.2 < len(test) / (len(train) + len(test)) < 0.3 and len(train) + len(test) == 891
    assert "Survived" not in test and not set(train["PassengerId"]) & set(test["PassengerId"])
    assert sample["PassengerId"].tolist() == test["PassengerId"].tolist() and set(truth) == {0, 1}
