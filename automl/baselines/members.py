"""The baselines as plain data: an estimator factory per task family and the input each takes.

Dense codes for forests, one-hot for linear models, native categoricals for histogram
boosting and for LightGBM, XGBoost and CatBoost (each in its own module, behind the
`automl.baselines.gbdt` contract), TF-IDF for free text. Which apply to a problem, and in
what order a budget fits them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import HuberRegressor, LogisticRegression, Ridge, RidgeCV

from automl.baselines import catb, lgbm, xgb
from automl.folds import Fold
from automl.problem import Problem


@dataclass(frozen=True)
class Baseline:
    name: str
    classifier: Callable[[int], object]  # seed -> estimator
    regressor: Callable[[int], object]
    inputs: str  # dense | onehot | native | tfidf
    description: str
    max_cost: float = float("inf")  # columns x classes x boosting rounds allowed; beyond, rounds are capped
    weight: float = 1.0  # its part of the baselines' time, against the others' (boosting is worth most)
    # The regressor for metrics scored on absolute error (mae, medae): the conditional median, not
    # the mean, minimises them, and heavy-tailed targets pull a squared-error fit off; None: `regressor`.
    absolute: Callable[[int], object] | None = None
    cuts: bool = False  # regress the class code, then cut it into classes (ordinal label metrics: qwk)
    needs: str = ""  # what it needs to apply, for the message when it does not
    library: str = ""  # the package it needs beyond scikit-learn (the GBDTs), named when it is missing
    # Fitted in a forked process (on a CPU, on Linux): CatBoost keeps about 190 MB after a fit on
    # 117,000 rows (its own allocator; no free returns it), which every later stage, and the search's
    # forks, would carry; the process takes it away when it ends. Not OpenMP libraries: their thread
    # pools hang in a fork of a process that used them.
    own_process: bool = False


def _forest(cls, seed, **kw):
    return cls(n_estimators=300, n_jobs=-1, random_state=seed, **kw)


def _hgb(cls, seed, **kw):
    return cls(learning_rate=0.05, max_iter=1000, early_stopping=True, n_iter_no_change=40,
               validation_fraction=0.15, l2_regularization=1.0, random_state=seed, **kw)


def _gbdt(name: str, cls, description: str, own_process: bool = False) -> Baseline:
    """A gradient-boosted tree library's member: the metric's objective, early stopping on each fold's validation rows."""
    return Baseline(name, lambda s: cls(objective="cross_entropy", random_state=s), lambda s: cls(random_state=s),
                    "native", description, max_cost=5e5, weight=3.0,
                    absolute=lambda s: cls(objective="absolute", random_state=s), library=cls.library,
                    own_process=own_process)


BASELINES: dict[str, Baseline] = {b.name: b for b in [
    Baseline("dummy", lambda s: DummyClassifier(strategy="prior"), lambda s: DummyRegressor(),
             "dense", "class prior or mean: the floor", weight=0.0, absolute=lambda s: DummyRegressor(strategy="median")),
    # Huber, not an exact absolute-error fit: QuantileRegressor solves a linear program that takes
    # minutes at 1M rows, and SGD on epsilon-insensitive loss needs a step size matched to the target's scale.
    Baseline("linear", lambda s: LogisticRegression(C=0.5, max_iter=2000),
             lambda s: RidgeCV(alphas=np.logspace(-2, 3, 16)),
             "onehot", "logistic/ridge on one-hot", absolute=lambda s: HuberRegressor(max_iter=300)),
    Baseline("random_forest", lambda s: _forest(RandomForestClassifier, s, min_samples_leaf=2, max_features="sqrt"),
             lambda s: _forest(RandomForestRegressor, s, max_features=0.5),
             "dense", "300 trees", weight=1.5),
    Baseline("extra_trees", lambda s: _forest(ExtraTreesClassifier, s, min_samples_leaf=2, max_features="sqrt"),
             lambda s: _forest(ExtraTreesRegressor, s, min_samples_leaf=2, max_features=0.5),
             "dense", "300 trees", weight=1.5),
    Baseline("hist_gb", lambda s: _hgb(HistGradientBoostingClassifier, s),
             lambda s: _hgb(HistGradientBoostingRegressor, s),
             "native", "native categoricals, early stop", max_cost=5e5, weight=3.0,
             absolute=lambda s: _hgb(HistGradientBoostingRegressor, s, loss="absolute_error")),
    Baseline("hist_gb_cuts", lambda s: _hgb(HistGradientBoostingClassifier, s),
             lambda s: _hgb(HistGradientBoostingRegressor, s),
             "native", "hist_gb regression on the class code, cut into classes", max_cost=5e5, weight=3.0,
             cuts=True, needs="an ordinal label metric (qwk) and 3 or more classes"),
    _gbdt("lightgbm", lgbm.LightGBM, "LightGBM: native categoricals, early stop on the fold"),
    _gbdt("xgboost", xgb.XGBoost, "XGBoost: categorical codes, early stop on the fold"),
    _gbdt("catboost", catb.CatBoost, "CatBoost: ordered target statistics, early stop on the fold", own_process=True),
    Baseline("tfidf_linear", lambda s: LogisticRegression(C=1.0, max_iter=2000), lambda s: Ridge(alpha=1.0),
             "tfidf", "TF-IDF of words 1-2 and characters 2-5 + one-hot", needs="a free-text column", weight=3.0),
]}


CHEAP_FIRST = ("dummy", "linear", "lightgbm", "hist_gb", "xgboost", "hist_gb_cuts", "tfidf_linear", "catboost",
               "random_forest", "extra_trees")  # the order a budget fits them


def applicable(problem: Problem, folds: list[Fold]) -> list[str]:
    """Baselines that make sense for this data (TF-IDF only when there is free text)."""
    has_text = bool(folds[0].train.text)
    ordinal = problem.metric.ordinal and problem.n_classes >= 3
    return [b.name for b in BASELINES.values() if (b.inputs != "tfidf" or has_text) and (not b.cuts or ordinal)]
