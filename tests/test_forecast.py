"""A forecast: test dates all after train's. The spec says so, folds are an expanding window in
time, and dates become elapsed time plus the parts that recur, so the baselines forecast."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor
from typer.testing import CliRunner

from automl.api import inspect
from automl.cli import app
from automl.competition import infer
from automl.errors import AutomlError
from automl.folds import make_folds, splits
from automl.metrics import METRICS
from automl.problem import make_problem


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def daily_sales(folder, train_days: int = 730, test_days: int = 90, seed: int = 0) -> pd.Series:
    """A Kaggle-shaped bundle of daily sales per store and product (trend x weekly x yearly
    seasonality x noise); the test period follows the training one. Returns the test's sales."""
    rng = np.random.default_rng(seed)
    dates = pd.date_range("2017-01-01", periods=train_days + test_days, freq="D")
    stores, products = ["north", "south", "east"], ["tea", "cake", "soup"]
    grid = pd.MultiIndex.from_product([dates, stores, products], names=["date", "store", "product"]).to_frame(index=False)
    level = grid["store"].map({"north": 40, "south": 25, "east": 10}) * grid["product"].map({"tea": 1.0, "cake": 0.6, "soup": 1.8})
    days = (grid["date"] - dates[0]).dt.days
    weekly = np.array([0.8, 0.85, 0.9, 0.95, 1.1, 1.4, 1.3])[grid["date"].dt.day_of_week]
    yearly = 1 + 0.35 * np.cos(2 * np.pi * grid["date"].dt.day_of_year / 365.25)  # winter peak
    grid["sales"] = np.round(level * (1 + days / 365) * weekly * yearly * rng.lognormal(0, 0.1, len(grid)))
    grid["date"] = grid["date"].dt.strftime("%Y-%m-%d")
    grid.insert(0, "id", np.arange(len(grid)))
    later = grid["date"] >= dates[train_days].strftime("%Y-%m-%d")
    folder.mkdir(parents=True, exist_ok=True)
    grid[~later].to_csv(folder / "train.csv", index=False)
    grid[later].drop(columns="sales").to_csv(folder / "test.csv", index=False)
    grid[later][["id"]].assign(sales=0.0).to_csv(folder / "sample_submission.csv", index=False)
    return grid.loc[later, "sales"].reset_index(drop=True)


@pytest.fixture(scope="module")
def sales(tmp_path_factory):
    folder = tmp_path_factory.mktemp("forecast") / "daily-sales"
    return folder, daily_sales(folder)


def test_a_later_test_period_makes_the_spec_a_forecast(sales):
    folder, _ = sales
    comp = infer("daily-sales", folder, metric="smape")
    assert (comp.folds, comp.time_column) == ("time", "date") and "folds" in comp.inferred
    result = invoke("inspect", "daily-sales", "--from", folder, "--data-dir", folder.parent / "data", "--metric", "smape")
    assert result.exit_code == 0, result.output
    assert "Shape: a forecast on date (every test.csv date is later than train.csv's)" in " ".join(result.output.split())
    roles = inspect("daily-sales", data_dir=folder.parent / "data", metric="smape").columns.set_index("column")["role"]
    assert roles["date"] == "date (elapsed, day, weekday, year_sin, year_cos)"  # never the year as a number


def test_interleaved_dates_are_not_a_forecast(tmp_path):
    folder = tmp_path / "mixed"
    daily_sales(folder, train_days=60, test_days=20)
    test = pd.read_csv(folder / "test.csv")
    test.loc[5, "date"] = "2017-02-01"  # one test day inside the training period
    test.to_csv(folder / "test.csv", index=False)
    comp = infer("mixed", folder, metric="smape")
    assert (comp.folds, comp.time_column, "folds" in comp.inferred) == ("auto", "", False)


def test_forecast_folds_validate_on_later_rows_than_they_train_on(sales):
    folder, _ = sales
    comp = infer("daily-sales", folder, metric="smape")
    train = pd.read_csv(folder / "train.csv")
    problem = make_problem(comp, train, pd.read_csv(folder / "test.csv"))
    assignment = make_folds(problem, 4)
    dates = pd.to_datetime(train["date"])
    assert (assignment == -1).sum() > 0 and sorted(set(assignment)) == [-1, 0, 1, 2, 3]
    for fold in splits(assignment):
        assert dates[fold.valid_rows].min() > dates[fold.train_rows].max()
        assert len(fold.valid_rows) == pytest.approx(len(train) / 5, rel=0.05)  # 5 stretches of time, about equal
    with pytest.raises(AutomlError, match=r"^--folds 9: time column 'date' cannot be cut into 10 stretches of time \(6 distinct"):
        make_folds(make_problem(comp, train[train["date"] < "2017-01-07"], problem.test), 9)


@pytest.mark.e2e
def test_baselines_forecast_better_than_a_model_blind_to_the_date(sales, tmp_path):
    folder, truth = sales
    result = invoke("run", "daily-sales", "--from", folder, "--models", "baselines", "--metric", "smape",
                    "--runs-dir", tmp_path / "runs", "--data-dir", tmp_path / "data")
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "runs" / "daily-sales" / "default"
    folds = pd.read_csv(run_dir / "folds.csv")["fold"].to_numpy()
    board = pd.read_csv(run_dir / "leaderboard.csv")
    assert board["smape"].notna().all() and (folds == -1).sum() > 0
    submitted = pd.read_csv(run_dir / "submission.csv")["sales"].to_numpy()
    train, test = pd.read_csv(folder / "train.csv"), pd.read_csv(folder / "test.csv")
    # The same boosting on the same log1p target, but blind to the date: store and product only.
    kinds = {c: pd.CategoricalDtype(sorted(train[c].unique())) for c in ("store", "product")}
    blind = HistGradientBoostingRegressor(categorical_features="from_dtype", random_state=0)
    blind.fit(train[list(kinds)].astype(kinds), np.log1p(train["sales"]))
    guessed = np.expm1(blind.predict(test[list(kinds)].astype(kinds)))
    smape = METRICS["smape"].fn
    assert smape(truth.to_numpy(), submitted) < 0.5 * smape(truth.to_numpy(), guessed)  # measured: 9.6 against 68.4
