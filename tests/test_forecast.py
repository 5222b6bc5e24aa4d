"""A forecast: test dates all after train's. The spec says so, folds are an expanding window in
time, and dates become elapsed time plus the parts that recur, so the baselines forecast."""

from __future__ import annotations

import html
import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor
from typer.testing import CliRunner

from automl import trend
from automl.api import inspect
from automl.baselines import BASELINES, choose_trend, cross_validate
from automl.baselines.fitting import Size, fit_one, predict
from automl.cli import app
from automl.competition import infer
from automl.errors import AutomlError
from automl.folds import _ahead, _times, describe_ranges, fold_features, fold_ranges, forecasting_fold, make_folds, splits
from automl.metrics import METRICS
from automl.preprocess import Preprocessor
from automl.problem import make_problem
from automl.trend import Detrended


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
    with pytest.raises(AutomlError, match=r"^--folds 9: time column 'date' spans 6 days, too short for 2 validation "
                                          r"stretches 725 days after their training rows, as the test lies after train's; "
                                          r"set folds: kfold"):
        make_folds(make_problem(comp, train[train["date"] < "2017-01-07"], problem.test), 9)
    with pytest.raises(AutomlError, match=r"^--folds 9: time column 'date' cannot be cut into 10 stretches of time \(6 distinct"):
        make_folds(make_problem(replace(comp, folds="time"), train[train["date"] < "2017-01-07"], problem.train), 9)


def test_forecast_folds_look_as_far_ahead_as_the_test(sales):
    """The test follows train's last day and spans 90 days: so does each fold's validation stretch."""
    folder, _ = sales
    comp = infer("daily-sales", folder, metric="smape")
    train = pd.read_csv(folder / "train.csv")
    problem = make_problem(comp, train, pd.read_csv(folder / "test.csv"))
    dates = pd.to_datetime(train["date"])
    folds = splits(make_folds(problem, 4))
    for fold in folds:
        valid, trained = dates[fold.valid_rows], dates[fold.train_rows]
        assert (valid.max() - valid.min()).days + 1 == 90  # as long as the test
        assert (valid.min() - trained.max()).days == 1  # starting the day after its training rows, as the test does
    assert dates[folds[-1].valid_rows].max() == dates.max()  # the last stretch ends where train ends
    ranges = fold_ranges(problem, make_folds(problem, 4))
    assert ranges["test"]["ahead_days"] == [1, 90] and [f["ahead_days"] for f in ranges["folds"]] == [[1, 90]] * 4


def test_forecast_folds_keep_the_tests_gap(sales):
    """A test that starts 30 days after train's end: every fold validates 30+ days after its training rows,
    and the rows in a fold's gap train only the later folds."""
    folder, _ = sales
    comp = infer("daily-sales", folder, metric="smape")
    train, test = pd.read_csv(folder / "train.csv"), pd.read_csv(folder / "test.csv")
    problem = make_problem(comp, train, test[test["date"] >= "2019-01-30"])  # train ends 2018-12-31
    assignment = make_folds(problem, 4)
    assert assignment.shape == (len(train), 2)
    dates = pd.to_datetime(train["date"])
    folds = splits(assignment)
    for i, fold in enumerate(folds):
        assert (dates[fold.valid_rows].min() - dates[fold.train_rows].max()).days == 30
        assert (dates[fold.valid_rows].max() - dates[fold.valid_rows].min()).days + 1 == 61  # the test's 61 days
        if i:  # the end of the previous stretch: validated there, trained on from the fold after this one
            gap = np.flatnonzero((dates > dates[fold.train_rows].max()) & (dates < dates[fold.valid_rows].min()))
            assert np.isin(gap, folds[i - 1].valid_rows).all() and not np.isin(gap, fold.train_rows).any()
    later = train[(train["date"] >= "2017-04-10") & (train["date"] < "2017-05-10")]  # 60 days after 40 days of train
    with pytest.raises(AutomlError, match=r"^--folds 4: time column 'date' spans 40 days, too short for 2 validation "
                                          r"stretches 60 days after their training rows"):
        make_folds(make_problem(comp, train[train["date"] < "2017-02-10"], later), 4)


def test_a_forecasts_test_comes_from_every_row(sales):
    """The test is predicted by the last fold's model fitted again on every row, not by the last fold's model:
    a model of the mean predicts every row's mean (on the log1p scale SMAPE trains on)."""
    folder, _ = sales
    comp = infer("daily-sales", folder, metric="smape")
    problem = make_problem(comp, pd.read_csv(folder / "train.csv"), pd.read_csv(folder / "test.csv"))
    fold_data = fold_features(problem, make_folds(problem, 3))
    assert forecasting_fold(fold_data) is not None and len(forecasting_fold(fold_data).train_rows) == len(problem.y)
    result = cross_validate("dummy", problem, fold_data)
    assert np.allclose(result.test, np.expm1(np.log1p(problem.y).mean()))
    last = np.log1p(problem.y[fold_data[-1].train_rows]).mean()
    assert np.allclose(result.oof[fold_data[-1].valid_rows], np.expm1(last))  # the fold's own model scored the fold


def test_a_refit_the_clock_cuts_short_does_not_predict_the_test(sales, monkeypatch):
    """A refit on every row predicts the test only when it trained the rounds its fold's model kept (the procedure
    the fold scored); one the clock stopped short leaves the test to the last fold's model, and the note says so.
    No score on rows the refit trained on decides."""
    from automl.baselines import cv

    folder, _ = sales
    comp = infer("daily-sales", folder, metric="smape")
    problem = make_problem(comp, pd.read_csv(folder / "train.csv"), pd.read_csv(folder / "test.csv"))
    fold_data = fold_features(problem, make_folds(problem, 3))
    whole = cross_validate("lightgbm", problem, fold_data)
    assert "refit" not in whole.info.get("note", "")
    fitted = cv.fit_one

    def clocked(*args, like=None, **options):  # the refit's clock has already run out: one round, then it stops
        if like is not None:
            args = args[:6] + (0.0,)
        return fitted(*args, like=like, **options)

    monkeypatch.setattr(cv, "fit_one", clocked)
    cut = cross_validate("lightgbm", problem, fold_data)
    assert "the test from the last fold's model: the clock stopped its refit on every row after 1 of" in cut.info["note"]
    monkeypatch.setattr(cv, "_refitted", lambda baseline, problem, refit, *args: (args[-2], args[-1], ""))
    last_fold = cross_validate("lightgbm", problem, fold_data)  # the fold's model predicting the test, as an oracle
    assert np.allclose(cut.test, last_fold.test) and not np.allclose(whole.test, last_fold.test)
    assert np.allclose(cut.oof, whole.oof)  # the folds themselves are the same


def test_the_trend_is_fitted_on_training_rows_only(sales):
    """Changing the validation and test rows' targets changes nothing the detrended trees predict, and the
    trend carries a growth on past train's end, where a tree alone holds the last level."""
    folder, truth = sales
    comp = infer("daily-sales", folder, metric="smape")
    problem = make_problem(comp, pd.read_csv(folder / "train.csv"), pd.read_csv(folder / "test.csv"))
    fold_data = fold_features(problem, make_folds(problem, 3))
    fold = fold_data[-1]
    baseline = BASELINES["hist_gb"]

    def fitted(p, trend):
        model, x_valid, x_test, _ = fit_one(baseline, p, fold, 0, Size(), np.random.default_rng(0), None, trend=trend)
        return predict(model, x_valid, p), model

    before, model = fitted(problem, True)
    assert isinstance(model, Detrended)
    changed = problem.y.copy()
    changed[fold.valid_rows] *= 10
    after, _ = fitted(replace(problem, y=changed), True)
    assert np.array_equal(before, after)
    plain, _ = fitted(problem, False)
    smape = METRICS["smape"].fn
    y = problem.y[fold.valid_rows]
    assert smape(y, before) < smape(y, plain)
    assert trend.applies(problem, fold_data) and choose_trend(problem, fold_data)["trend"]


def test_elapsed_days_carry_on_under_quantile_scaling():
    train = pd.DataFrame({"date": pd.date_range("2020-01-01", periods=400).strftime("%Y-%m-%d"), "x": np.arange(400.0)})
    later = pd.DataFrame({"date": ["2021-06-01", "2022-06-01"], "x": [1.0, 2.0]})
    pre = Preprocessor(numeric="quantile").fit(train)
    column = pre.transform(later).numeric_names.index("date__elapsed")
    seen, ahead = pre.transform(train).numeric[:, column], pre.transform(later).numeric[:, column]
    assert ahead[0] > seen.max() and ahead[1] - ahead[0] == pytest.approx(365 * (seen[1] - seen[0]), rel=1e-3)


@pytest.mark.e2e
def test_baselines_forecast_better_than_a_model_blind_to_the_date(sales, tmp_path):
    folder, truth = sales
    result = invoke("run", "daily-sales", "--from", folder, "--models", "linear,hist_gb,lightgbm,random_forest", "--metric", "smape",
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
    # the folds look 1 to 90 days ahead, as the test does; the report shows their dates and the trend's choice
    ranges = json.loads((run_dir / "folds.json").read_text())
    assert ranges["test"]["ahead_days"] == [1, 90] and all(f["ahead_days"] == [1, 90] for f in ranges["folds"])
    chosen = json.loads((run_dir / "trend.json").read_text())
    report = (run_dir / "report.html").read_text()
    assert "Folds in time" in report and "validates 2018-10-03 to 2018-12-31" in report and html.escape(chosen["note"]) in report
    trees = board[board["model"].isin(["hist_gb", "lightgbm", "random_forest"])]["note"]
    assert trees.str.contains("learnt relative to a trend in time").all() == chosen["trend"]


def test_monthly_folds_keep_whole_months_and_the_gap():
    """Months are 28 to 31 days: stretches of three months, and a one-month gap left out before each."""
    train = pd.date_range("2015-01-01", periods=36, freq="MS")
    months = np.asarray(train.year * 12 + train.month)
    step, span = np.timedelta64(31, "D"), np.timedelta64(59 + 31, "D")  # three months: the last first day + a step
    for gap_months in (1, 2):
        first = train[-1] + pd.DateOffset(months=gap_months)
        assignment = _ahead(train.to_numpy(), 3, "month", np.datetime64(first) - train.to_numpy().max(), span, step)
        for fold in splits(assignment):
            assert len(fold.valid_rows) == 3  # three months
            assert months[fold.valid_rows].min() - months[fold.train_rows].max() == gap_months


def test_time_columns_with_offsets_and_missing_values():
    values = pd.Series(["2020-03-01T00:00-05:00", "2020-04-01T00:00-04:00", None, np.nan, "junk"], dtype=object)
    times = _times(values)
    assert str(times[0]) == "2020-03-01T05:00:00.000000000" and pd.isna(times[2:]).all()  # in UTC; missing is NaT
    aware = pd.Series(pd.date_range("2020-03-01", periods=3, freq="MS", tz="US/Eastern"))
    assert (np.diff(_times(aware)) > np.timedelta64(0)).all()


def test_a_numeric_time_columns_folds_read_in_its_own_numbers(tmp_path):
    """A month's index (1 to 48, test 49 to 60) is not a date of 1970: the folds show its numbers and units."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"id": np.arange(600), "month": np.repeat(np.arange(1, 61), 10), "x": rng.normal(size=600)})
    frame["sales"] = frame["month"] * 0.5 + frame["x"] + rng.normal(size=600)
    frame.iloc[:480].to_csv(tmp_path / "train.csv", index=False)
    frame.iloc[480:].drop(columns="sales").to_csv(tmp_path / "test.csv", index=False)
    frame.iloc[480:][["id", "sales"]].to_csv(tmp_path / "sample_submission.csv", index=False)
    comp = replace(infer("monthly", tmp_path, metric="rmse"), time_column="month", folds="time")
    problem = make_problem(comp, pd.read_csv(tmp_path / "train.csv"), pd.read_csv(tmp_path / "test.csv"))
    ranges = fold_ranges(problem, make_folds(problem, 2))
    assert ranges["test"] == {"dates": ["49", "60"], "ahead_days": [1, 12]} and ranges["unit"] == "month units"
    assert ranges["folds"][-1]["valid"] == ["37", "48"] and ranges["folds"][-1]["ahead_days"] == [1, 12]
    lines = "\n".join(describe_ranges(ranges))
    assert "test: 49 to 60, 1 to 12 month units after train's last month" in lines and "1970" not in lines


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_a_network_trained_on_the_gpu_predicts_there(sales):
    """Lightning's teardown moves a GPU-trained module to the CPU: its predictions must still be made (every
    trial failed with 'Expected all tensors to be on the same device' before)."""
    from automl.pipeline import load_pipeline
    from automl.train import fit_fold

    folder, _ = sales
    problem = make_problem(infer("daily-sales", folder, metric="smape"), pd.read_csv(folder / "train.csv"),
                           pd.read_csv(folder / "test.csv"))
    fold = fold_features(problem, make_folds(problem, 3))[-1]
    fit = fit_fold(problem, fold, load_pipeline("tabular").defaults[0], device="cuda", max_epochs=2)
    assert len(fit.valid) == len(fold.valid_rows) and np.isfinite(fit.test).all()
