"""LightGBM, XGBoost and CatBoost: one contract (automl/baselines/gbdt.py), checked on each library."""

from __future__ import annotations

import dataclasses
import importlib
import os
import time

import numpy as np
import pandas as pd
import pytest
from test_baselines import K, heavy_tailed_problem, multi_problem, prepared
from test_run import invoke, write_folder

from automl.baselines import BASELINES, Failed, Skipped, cross_validate
from automl.baselines.catb import CatBoost
from automl.baselines.cv import in_child
from automl.baselines.fitting import Size, _as_fitted, fit_one
from automl.baselines.gbdt import GBDT
from automl.baselines.lgbm import LightGBM
from automl.baselines.xgb import XGBoost
from automl.competition import Competition
from automl.errors import UsageError
from automl.folds import fold_features, make_folds
from automl.problem import make_problem

GBDTS = ["lightgbm", "xgboost", "catboost"]
CLASSES = {"lightgbm": LightGBM, "xgboost": XGBoost, "catboost": CatBoost}


@pytest.mark.parametrize("name", GBDTS)
def test_a_gbdt_trains_on_the_metrics_objective(name):
    # y = a smooth function + Student-t noise (1.5 degrees of freedom): squared error chases the outliers,
    # absolute error (the metric's objective for mae) finds the median.
    problem = heavy_tailed_problem("mae")
    fold_data = fold_features(problem, make_folds(problem, K, seed=0))
    absolute = cross_validate(name, problem, fold_data)
    squared = cross_validate(name, dataclasses.replace(
        problem, metric=dataclasses.replace(problem.metric, objective="squared")), fold_data)
    assert absolute.info["note"].startswith("trained on absolute error")
    assert absolute.mean < squared.mean  # both mae on the same folds; lower is better


@pytest.mark.parametrize("name", GBDTS)
def test_a_gbdt_early_stops_on_its_own_folds_validation_rows(name, monkeypatch, tmp_path):
    problem, _, fold_data = prepared("binary")
    fits = tmp_path / "fits"  # a file: CatBoost fits in a forked process
    real = GBDT.fit

    def spy(self, x, y, x_valid=None, y_valid=None, until=None):
        with fits.open("a") as out:
            out.write(f"{len(y)} {None if y_valid is None else len(y_valid)} {os.getpid()}\n")
        return real(self, x, y, x_valid, y_valid, until)

    monkeypatch.setattr(GBDT, "fit", spy)
    result = cross_validate(name, problem, fold_data)
    seen = [line.split() for line in fits.read_text().splitlines()]
    assert [(int(t), int(v)) for t, v, _ in seen] == [(len(f.train_rows), len(f.valid_rows)) for f in fold_data]
    assert ({int(pid) for _, _, pid in seen} == {os.getpid()}) == (name != "catboost")  # CatBoost in its own process
    rounds = [int(r) for r in result.info["note"].split(" rounds")[0].split("-")]
    assert max(rounds) < 2000  # stopped by its validation rows, not by max_iter (240 rows learn in far fewer)
    # a target of pure noise: no round improves the validation loss for long, so boosting stops early
    noise = dataclasses.replace(problem, y=np.random.default_rng(0).integers(0, 2, len(problem.y)))
    model = CLASSES[name](objective="cross_entropy", n_iter_no_change=20)
    x = np.random.default_rng(1).normal(size=(len(noise.y), 4))
    model.fit(x[:160], noise.y[:160], x[160:], noise.y[160:])
    assert model.n_iter_ < 200


@pytest.mark.parametrize("name", GBDTS)
def test_a_gbdt_predicts_the_test_rows_and_every_label(name):
    problem = multi_problem("multilabel")
    fold_data = fold_features(problem, make_folds(problem, K, seed=0))
    result = cross_validate(name, problem, fold_data)
    assert result.oof.shape == (240, 3) and result.test.shape == (30, 3)
    assert ((result.test > 0) & (result.test < 1)).all() and result.test.std(axis=0).min() > 0.01
    assert result.mean > 0.75  # the mean AUC of the three labels
    problem = multi_problem("multitarget")
    fold_data = fold_features(problem, make_folds(problem, K, seed=0))
    values = cross_validate(name, problem, fold_data)
    assert values.test.shape == (30, 3) and np.isfinite(values.test).all()
    assert values.mean < cross_validate("dummy", problem, fold_data).mean  # mcrmse: lower is better


def test_a_library_error_on_a_fold_is_one_line_and_the_run_goes_on(tmp_path, monkeypatch):
    def broken(self, x, y, valid, stop):
        raise RuntimeError("Check failed: (num_data) > (0)\nstack trace line")

    monkeypatch.setattr(XGBoost, "_train", broken)
    problem, _, fold_data = prepared("binary")
    with pytest.raises(Failed, match=r"^fold 1: xgboost failed: RuntimeError: Check failed: \(num_data\) > \(0\)$"):
        cross_validate("xgboost", problem, fold_data)
    source = write_folder(tmp_path / "download", "binary")
    result = invoke("run", "spam", "--from", source, "--models", "linear,xgboost,lightgbm", "--folds", 3,
                    "--runs-dir", tmp_path / "runs", "--data-dir", tmp_path / "data", "--metric", "auc")
    assert result.exit_code == 0, result.output
    printed = " ".join(result.output.split())  # rich wraps lines at the terminal's width
    assert "xgboost: fold 1: xgboost failed: RuntimeError: Check failed: (num_data) > (0); going on without it" in printed
    assert "stack trace line" not in result.output
    assert (tmp_path / "runs" / "spam" / "default" / "models" / "lightgbm" / "result.json").is_file()


def without(monkeypatch, library: str, error: Exception) -> None:
    """importlib.import_module(library) raises `error`; every other module imports as usual."""
    real = importlib.import_module

    def importer(name, *args):
        if name == library:
            raise error
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", importer)


def test_a_library_that_does_not_import_is_named_with_its_fix(tmp_path, monkeypatch):
    without(monkeypatch, "lightgbm", ImportError("No module named 'lightgbm'"))
    source = write_folder(tmp_path / "download", "binary")
    common = ["--from", source, "--folds", 3, "--runs-dir", tmp_path / "runs", "--data-dir", tmp_path / "data", "--metric", "auc"]
    asked = invoke("run", "spam", "--models", "lightgbm", *common)
    assert asked.exit_code == 2
    assert asked.output.strip().splitlines()[-1] == ("error: --models lightgbm: the lightgbm package is not importable "
                                                     "(No module named 'lightgbm'); install it with pip install lightgbm")
    everything = invoke("run", "spam", "--models", "baselines", "--name", "all", *common)
    assert everything.exit_code == 0, everything.output
    assert "lightgbm: left out: the lightgbm package is not importable" in " ".join(everything.output.split())
    assert (tmp_path / "runs" / "spam" / "all" / "models" / "xgboost" / "result.json").is_file()
    with pytest.raises(UsageError, match="pip install lightgbm"):
        problem, _, fold_data = prepared("binary")
        cross_validate("lightgbm", problem, fold_data)


def test_every_gbdt_is_a_baseline_with_its_library():
    assert {n: BASELINES[n].library for n in GBDTS} == {n: n for n in GBDTS}
    assert all(BASELINES[n].inputs == "native" for n in GBDTS)


def test_a_library_whose_shared_object_does_not_load_is_missing_not_a_crash(monkeypatch):
    # xgboost raises its own XGBoostError (a ValueError) when libxgboost.so cannot load; LightGBM a bare Exception
    from automl.baselines.gbdt import missing

    without(monkeypatch, "xgboost", ValueError("XGBoost Library (libxgboost.so) could not be loaded.\nLikely causes: libgomp"))
    assert missing("xgboost") == ("the xgboost package is not importable (XGBoost Library (libxgboost.so) could not be "
                                  "loaded.); install it with pip install xgboost")
    assert missing("lightgbm") is None


def test_a_fit_in_its_own_process_reports_progress_and_errors_as_if_in_this_one():
    progress = []
    assert in_child(lambda report: (report(0), report(1), os.getpid())[-1], progress.append, "x") != os.getpid()
    assert progress == [0, 1]
    with pytest.raises(Skipped, match="skipped: no time"):
        in_child(lambda report: (_ for _ in ()).throw(Skipped("skipped: no time")), None, "x")
    with pytest.raises(Failed, match="ended without a result \\(exit 9"):  # killed, or out of memory: one line
        in_child(lambda report: os._exit(9), None, "x")
    with pytest.raises(Failed, match="still running 1s later; stopped"):  # hung: stopped, not waited for
        in_child(lambda report: time.sleep(30), None, "x", limit=1.0)


@pytest.mark.parametrize("name", ["lightgbm", "xgboost"])
def test_a_refit_copies_the_rounds_early_stopping_kept(name):
    """A forecast's refit boosts as many rounds as its fold's model predicts with, not the patience after them."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 4))
    y = x[:, 0] + rng.normal(scale=2.0, size=600)  # noisy: early stopping comes soon
    model = BASELINES[name].regressor(0).set_params(n_iter_no_change=20, learning_rate=0.3)
    model.fit(x[:400], y[:400], x[400:], y[400:])
    assert model.kept_rounds_ <= model.n_iter_ <= model.kept_rounds_ + 20  # LightGBM's booster is cut at its best round
    if name == "xgboost":  # XGBoost's holds the patience's rounds too
        assert model.kept_rounds_ < model.n_iter_
    again = BASELINES[name].regressor(0)
    _as_fitted(again, model, Size())
    assert again.max_iter == model.kept_rounds_ and not again.early_stopping


def _wide_multiclass(rows: int, columns: int, classes: int, seed: int = 0):
    """A multiclass table with many numeric columns, from which a class is readable in the first few."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, columns))
    frame = pd.DataFrame(x, columns=[f"x{j}" for j in range(columns)])
    frame.insert(0, "id", np.arange(rows))
    frame["target"] = [f"c{c}" for c in np.digitize(x[:, 0] + 0.3 * x[:, 1], np.linspace(-1.5, 1.5, classes - 1))]
    comp = Competition(slug="wide", id="id", target="target", task="multiclass", metric="logloss", labels="class")
    return make_problem(comp, frame, frame.drop(columns="target").head(40))


def test_a_small_tables_rounds_are_not_capped_and_its_learning_rate_not_raised():
    # 707 rows, 64 columns, 11 classes: columns x classes alone capped it at 710 rounds with learning rate 0.2.
    problem = _wide_multiclass(707, 64, 11)
    fold = fold_features(problem, make_folds(problem, 5, seed=0))[0]
    baseline = BASELINES["lightgbm"]
    model, *_, info = fit_one(baseline, problem, fold, 0, Size(), np.random.default_rng(0), None)
    assert "capped" not in info.get("note", "")
    assert model.learning_rate == baseline.classifier(0).learning_rate == 0.05
    # As many columns x classes on 3,000 training rows: a round costs as a pixel table's, and is capped.
    wide = _wide_multiclass(2_000, 784, 11, seed=1)
    fold = fold_features(wide, make_folds(wide, 2, seed=0))[0]
    model, *_, info = fit_one(baseline, wide, fold, 0, Size(units=5), np.random.default_rng(0), None)  # 5: quick
    assert "capped at" in info["note"] and model.learning_rate == 0.2
