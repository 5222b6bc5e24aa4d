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


def test_the_quality_suite_holds_back_what_test_csv_holds_and_scores_a_submission_as_kaggle_would(tmp_path):
    import zipfile

    import numpy as np
    import pandas as pd
    import quality

    # bike-sharing: casual and registered (which sum to the target) are not in test.csv, so not in the held-back test
    bundle, answers, comp = quality.held_back("bike-sharing-demand", tmp_path / "bike")
    with zipfile.ZipFile(bundle) as archive:
        test = pd.read_csv(archive.open("test.csv"))
    assert {"casual", "registered", "count"}.isdisjoint(test.columns) and len(test) == len(answers)
    # s5e3's rows are consecutive days: the latest quarter by id is held back
    bundle, answers, comp = quality.held_back("playground-series-s5e3", tmp_path / "rain")
    with zipfile.ZipFile(bundle) as archive:
        train = pd.read_csv(archive.open("train.csv"))
    assert answers["id"].astype(int).min() > train["id"].max() and len(answers) == 548
    # s3e15: one data.csv, the held-back rows with an empty target beside the train rows
    bundle, answers, comp = quality.held_back("playground-series-s3e15", tmp_path / "flux")
    with zipfile.ZipFile(bundle) as archive:
        data, sample = pd.read_csv(archive.open("data.csv")), pd.read_csv(archive.open("sample_submission.csv"))
    assert data["x_e_out [-]"].isna().sum() == len(answers) == len(sample)
    # a label submission (titanic's 0/1) scored as Kaggle would: accuracy of the written labels
    bundle, answers, comp = quality.held_back("titanic", tmp_path / "titanic")
    y, classes = quality.truth_of(comp, answers)
    written = answers.assign(Survived=np.where(np.arange(len(answers)) % 4 == 0, 1 - answers["Survived"], answers["Survived"]))
    pred = quality.as_predictions(comp, written, classes)
    from automl.metrics import get_metric, score

    assert score(get_metric("accuracy"), y, pred, 0.5) == np.mean(np.arange(len(answers)) % 4 != 0)
