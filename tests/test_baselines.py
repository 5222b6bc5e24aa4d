"""One contract for every baseline on every task, on shared folds of a small synthetic problem."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from conftest import synthetic_frame, synthetic_multi

from automl.baselines import BASELINES, applicable, cross_validate
from automl.competition import Competition
from automl.ensemble import ensemble
from automl.errors import AutomlError
from automl.folds import fold_features, make_folds, splits
from automl.metrics import score
from automl.problem import make_problem

K = 3
METRIC = {"binary": "accuracy", "multiclass": "logloss", "regression": "rmse"}
LABELS = {"binary": "int", "multiclass": "class", "regression": "float"}


def synthetic_problem(task: str, metric: str | None = None, text: bool = True, n: int = 240):
    comp = Competition(slug=f"synthetic-{task}", id="id", target="target", task=task,
                       metric=metric or METRIC[task], labels=LABELS[task],
                       text_columns=("name",) if text else ())
    train = synthetic_frame(task, n, seed=0)
    test = synthetic_frame(task, 90, seed=1).drop(columns="target")
    return make_problem(comp, train, test)


_CACHE: dict[str, tuple] = {}


def prepared(task: str):
    """Problem, fold assignment and per-fold features, built once per task for the whole module."""
    if task not in _CACHE:
        problem = synthetic_problem(task)
        folds = make_folds(problem, K, seed=0)
        _CACHE[task] = (problem, folds, fold_features(problem, folds))
    return _CACHE[task]


_RESULTS: dict[tuple[str, str], object] = {}


def result_of(name: str, task: str):
    if (name, task) not in _RESULTS:
        problem, _, fold_data = prepared(task)
        _RESULTS[name, task] = cross_validate(name, problem, fold_data, seed=0)
    return _RESULTS[name, task]


@pytest.mark.parametrize("name", list(BASELINES))
def test_baseline_contract(name, task):
    problem, folds, fold_data = prepared(task)
    if name not in applicable(problem, fold_data):
        pytest.skip(f"{name} needs {BASELINES[name].needs}")
    result = result_of(name, task)
    n, k = len(problem.y), problem.n_classes
    assert result.name == name and result.kind == "baseline"
    assert len(result.fold_scores) == K and all(np.isfinite(result.fold_scores))
    assert result.seconds > 0
    if task == "regression":
        assert result.oof.shape == (n,) and result.test.shape == (len(problem.test),)
    else:
        assert result.oof.shape == (n, k) and result.test.shape == (len(problem.test), k)
        np.testing.assert_allclose(result.oof.sum(axis=1), 1.0, atol=1e-6)
        np.testing.assert_allclose(result.test.sum(axis=1), 1.0, atol=1e-6)
        assert (result.oof >= 0).all() and (result.test >= 0).all()
    assert np.isfinite(result.oof).all() and np.isfinite(result.test).all()
    # Fold scores are the metric on each fold's out-of-fold rows, with the chosen threshold.
    for fold, got in zip(range(K), result.fold_scores, strict=True):
        rows = folds == fold
        assert got == pytest.approx(score(problem.metric, problem.y[rows], result.oof[rows], result.threshold))
    assert (result.threshold is not None) == (task == "binary")
    if name != "dummy":
        dummy = result_of("dummy", task)
        better = result.mean > dummy.mean if problem.metric.greater_is_better else result.mean < dummy.mean
        assert better, f"{name} {result.mean} does not beat dummy {dummy.mean} on {task}"


def test_dummy_predicts_each_fold_from_the_other_folds_only():
    problem, folds, _ = prepared("multiclass")
    result = result_of("dummy", "multiclass")
    for fold in range(K):
        rows = folds == fold
        prior = np.bincount(problem.y[~rows], minlength=problem.n_classes) / (~rows).sum()
        np.testing.assert_allclose(result.oof[rows], np.tile(prior, (rows.sum(), 1)))


def test_regression_dummy_predicts_the_training_mean():
    problem, folds, _ = prepared("regression")
    result = result_of("dummy", "regression")
    for fold in range(K):
        rows = folds == fold
        np.testing.assert_allclose(result.oof[rows], problem.y[~rows].mean())


def test_rmsle_trains_on_log1p():
    problem = synthetic_problem("regression", metric="rmsle", text=False)
    assert problem.y.min() > 0
    folds = make_folds(problem, K, seed=0)
    fold_data = fold_features(problem, folds)
    dummy = cross_validate("dummy", problem, fold_data)
    for fold in range(K):
        rows = folds == fold
        # A mean learnt on log1p(y) and turned back: below the plain mean of a skewed target.
        np.testing.assert_allclose(dummy.oof[rows], np.expm1(np.log1p(problem.y[~rows]).mean()))
        assert dummy.oof[rows][0] < problem.y[~rows].mean()
    linear = cross_validate("linear", problem, fold_data)
    assert (linear.oof > 0).all() and (linear.test > 0).all()
    assert linear.mean < dummy.mean  # rmsle: lower is better


def test_tfidf_only_applies_to_free_text():
    problem, _, with_text = prepared("binary")
    assert applicable(problem, with_text) == [n for n in BASELINES if n != "hist_gb_cuts"]
    problem = synthetic_problem("binary", text=False)
    without = fold_features(problem, make_folds(problem, K, seed=0))
    assert applicable(problem, without) == [n for n in BASELINES if n not in ("tfidf_linear", "hist_gb_cuts")]


def test_unknown_baseline_lists_the_known_ones():
    problem, _, fold_data = prepared("binary")
    with pytest.raises(AutomlError, match=r"^--models: unknown baseline 'xgb'; expected one of dummy, linear, "
                                          r"random_forest, extra_trees, hist_gb, hist_gb_cuts, lightgbm, xgboost, "
                                          r"catboost, tfidf_linear$"):
        cross_validate("xgb", problem, fold_data)


def test_folds_are_stratified_and_reproducible():
    problem, folds, _ = prepared("multiclass")
    assert sorted(np.unique(folds)) == list(range(K))
    np.testing.assert_array_equal(make_folds(problem, K, seed=0), folds)
    assert not np.array_equal(make_folds(problem, K, seed=1), folds)
    overall = np.bincount(problem.y) / len(problem.y)
    for fold in range(K):
        share = np.bincount(problem.y[folds == fold], minlength=problem.n_classes) / (folds == fold).sum()
        np.testing.assert_allclose(share, overall, atol=0.02)


def test_each_fold_is_preprocessed_on_its_training_rows():
    problem, folds, fold_data = prepared("regression")
    x1 = list(fold_data[0].train.numeric_names).index("x1")
    for fold, data in enumerate(fold_data):
        np.testing.assert_array_equal(data.valid_rows, np.flatnonzero(folds == fold))
        assert data.train.numeric[:, x1].mean() == pytest.approx(0, abs=1e-5)
        train_x1 = problem.train["x1"].to_numpy()[data.train_rows]
        expected = (problem.train["x1"].to_numpy()[data.valid_rows] - train_x1.mean()) / train_x1.std()
        np.testing.assert_allclose(data.valid.numeric[:, x1], expected, rtol=1e-4, atol=1e-5)
        assert len(data.test) == len(problem.test)


def test_fold_count_errors():
    problem, _, _ = prepared("binary")
    with pytest.raises(AutomlError, match=r"^--folds 1: expected a number from 2 to the 240 training rows$"):
        make_folds(problem, 1)
    y = np.zeros(240, dtype=np.int64)
    y[:2], y[2:60] = 1, 2
    rare = dataclasses.replace(synthetic_problem("multiclass"), y=y)
    with pytest.raises(AutomlError, match=r"^--folds 5: the rarest class has only 2 rows; use --folds 2 or fewer$"):
        make_folds(rare, 5)


def multi_problem(task: str, folds: str = "auto", c=None):
    """synthetic_multi's three targets a, b, c; `c` replaces label c's values."""
    train = synthetic_multi(task, 240)
    if c is not None:
        train["c"] = c
    comp = Competition(slug=f"synthetic-{task}", id="id", target="a", targets=("a", "b", "c"), task=task,
                       metric="mcrmse" if task == "multitarget" else "auc", labels="float", folds=folds)
    return make_problem(comp, train, synthetic_multi(task, 30, seed=1).drop(columns=["a", "b", "c"]))


def test_multilabel_folds_stratify_on_the_rarest_label_and_multitarget_takes_kfold():
    rare = np.zeros(240, dtype=int)
    rare[::20] = 1  # 12 positives: 4 in each of 3 folds
    folds = make_folds(multi_problem("multilabel", c=rare), K)
    assert np.bincount(folds[rare == 1], minlength=K).tolist() == [4, 4, 4]
    assert np.bincount(make_folds(multi_problem("multitarget"), K)).tolist() == [80, 80, 80]
    with pytest.raises(AutomlError, match=r"^synthetic-multitarget: folds 'stratified' needs classes to balance, and "
                                          r"this multitarget target has none with 3 rows or more of each; use folds: kfold$"):
        make_folds(multi_problem("multitarget", folds="stratified"), K)


def test_a_label_constant_in_a_folds_rows_gets_its_prior():
    # linear and hist_gb fit one model per label; label c is 0 in every training row: its model is the prior, 0.
    problem = multi_problem("multilabel", c=0)
    fold_data = fold_features(problem, make_folds(problem, K))
    for name in ("linear", "hist_gb"):
        result = cross_validate(name, problem, fold_data, seed=0)
        assert result.oof.shape == (240, 3) and result.test.shape == (30, 3)
        assert (result.oof[:, 2] == 0).all() and 0 < result.oof[:, :2].min() and result.oof[:, :2].max() < 1
        assert result.mean > 0.8 and result.threshold is None  # the mean AUC of labels a and b (c has none)


def heavy_tailed_problem(metric: str, n: int = 800):
    """y = a smooth function of two columns + Student-t noise with 1.5 degrees of freedom (infinite variance)."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"id": np.arange(n), "a": rng.normal(size=n), "b": rng.uniform(-2, 2, size=n)})
    frame["target"] = 3 * np.sin(frame["a"]) + frame["b"] ** 2 + rng.standard_t(1.5, size=n)
    comp = Competition(slug="heavy-tails", id="id", target="target", task="regression", metric=metric, labels="float")
    return make_problem(comp, frame, frame.drop(columns="target").head(50))


def test_absolute_error_metrics_train_on_absolute_error():
    problem = heavy_tailed_problem("mae")
    assert problem.metric.objective == "absolute"
    fold_data = fold_features(problem, make_folds(problem, K, seed=0))
    absolute = cross_validate("hist_gb", problem, fold_data)
    squared = cross_validate("hist_gb", dataclasses.replace(
        problem, metric=dataclasses.replace(problem.metric, objective="squared")), fold_data)
    assert absolute.info["note"] == "trained on absolute error" and "note" not in squared.info
    assert absolute.mean < squared.mean  # both are mae on the same folds; lower is better
    linear = cross_validate("linear", problem, fold_data)
    assert linear.info["note"] == "trained on Huber loss (robust to outliers)"
    dummy = cross_validate("dummy", problem, fold_data)
    np.testing.assert_allclose(dummy.oof[fold_data[0].valid_rows], np.median(problem.y[fold_data[0].train_rows]))


def ordinal_problem(n: int = 900):
    """Ratings 1..5 cut from a latent score of the columns: classes ordered by value, scored by qwk."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"id": np.arange(n), "a": rng.normal(size=n), "b": rng.normal(size=n)})
    latent = frame["a"] + 0.5 * frame["b"] + rng.normal(scale=0.5, size=n)
    frame["target"] = 1 + np.digitize(latent, np.quantile(latent, [0.15, 0.4, 0.7, 0.9]))
    comp = Competition(slug="ratings", id="id", target="target", task="multiclass", metric="qwk", labels="int")
    return make_problem(comp, frame, frame.drop(columns="target").head(60))


def test_cut_points_regress_the_class_code_for_qwk():
    problem = ordinal_problem()
    folds = make_folds(problem, K, seed=0)
    fold_data = fold_features(problem, folds)
    assert "hist_gb_cuts" in applicable(problem, fold_data)
    cuts = cross_validate("hist_gb_cuts", problem, fold_data)
    for predictions in (cuts.oof, cuts.test):  # one-hot class probabilities: blends and submissions take them
        assert predictions.shape[1] == 5 and set(np.unique(predictions)) == {0.0, 1.0}
        np.testing.assert_array_equal(predictions.sum(axis=1), 1.0)
    for fold, got in zip(range(K), cuts.fold_scores, strict=True):
        assert got == pytest.approx(score(problem.metric, problem.y[folds == fold], cuts.oof[folds == fold]))
    assert len(cuts.info["cuts"]) == 4 and cuts.info["note"].startswith("cut points cross-fitted")
    classifier = cross_validate("hist_gb", problem, fold_data)
    assert cuts.mean > classifier.mean
    # In a blend the cut class is a vote of the member's weight beside the classifiers' probabilities.
    blended = ensemble(problem, splits(folds), [cuts, classifier])
    np.testing.assert_allclose(blended.test.sum(axis=1), 1.0)
    assert blended.info["calibration"] is None and blended.mean >= classifier.mean


def test_folds_preprocessed_in_threads_equal_those_in_sequence(monkeypatch):
    import automl.folds

    problem = make_problem(Competition(slug="t", id="id", target="target", task="binary", metric="auc", labels="float"),
                           synthetic_frame("binary", 600, seed=5), synthetic_frame("binary", 100, seed=6).drop(columns="target"))
    assignment = make_folds(problem, 3, 0)
    monkeypatch.setattr(automl.folds, "PARALLEL_ROWS", 10**9)
    sequential = fold_features(problem, assignment, numeric="quantile")
    monkeypatch.setattr(automl.folds, "PARALLEL_ROWS", 0)
    threaded = fold_features(problem, assignment, numeric="quantile")
    for a, b in zip(sequential, threaded, strict=True):
        np.testing.assert_array_equal(a.train_rows, b.train_rows)
        for part in ("train", "valid", "test"):
            np.testing.assert_array_equal(getattr(a, part).numeric, getattr(b, part).numeric)
            np.testing.assert_array_equal(getattr(a, part).categorical, getattr(b, part).categorical)
