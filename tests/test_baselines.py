"""One contract for every baseline on every task, on shared folds of a small synthetic problem."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import synthetic_frame

from automl.baselines import BASELINES, applicable, cross_validate
from automl.competition import Competition
from automl.errors import AutomlError
from automl.folds import fold_features, make_folds
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
    assert applicable(problem, with_text) == list(BASELINES)
    problem = synthetic_problem("binary", text=False)
    without = fold_features(problem, make_folds(problem, K, seed=0))
    assert applicable(problem, without) == [n for n in BASELINES if n != "tfidf_linear"]


def test_unknown_baseline_lists_the_known_ones():
    problem, _, fold_data = prepared("binary")
    with pytest.raises(AutomlError, match=r"^--models: unknown baseline 'xgboost'; expected one of dummy, linear, "
                                          r"random_forest, extra_trees, hist_gb, tfidf_linear$"):
        cross_validate("xgboost", problem, fold_data)


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
