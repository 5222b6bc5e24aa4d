"""A forecast's trend, for the learners that cannot extrapolate one.

A tree predicts a test row a year past train's end as it predicted train's last days: the
elapsed-days feature only splits, it never carries a slope on. So on a forecast the trees
may learn the target relative to a trend and add it back: a least-squares line in elapsed
time (on the scale the model trains on: log1p for SMAPE or RMSLE, so growth is a rate) with
a level, a slope and a yearly season (the sine and cosine of the place in the year) of its own
for each value of each categorical column (a country, a store, a product). Without each value's
season, a product that peaks in spring tilts its slope over two years of rows (a sine is not
orthogonal to a line over whole years) and the extrapolation drifts. It is fitted on each
fold's training rows only (ridge-shrunk toward the shared line) and extrapolated to its
validation and test rows.

`automl.baselines.choose_trend` decides once per run whether the trees do: a quick histogram
GBDT on the last folds, with and without the trend, scored with the competition metric; kept
only when it wins.
Networks and linear models keep the elapsed-days feature (scaled linearly, so it carries on).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from automl.folds import Fold
from automl.problem import Problem

MAX_TERMS = 2000  # columns of the trend's design at most: the categorical columns with the fewest values first
RIDGE = 1.0  # shrinks each value's own level and slope toward the shared line (a rare value's few rows)


class Trend:
    """A level, a slope and a yearly season per categorical value, on dense inputs (numerics, then codes)."""

    def __init__(self, time: int, season: tuple[int, ...], codes: tuple[tuple[int, int], ...]):
        self.time = time  # column of the elapsed time in the dense inputs
        self.season = season  # columns of the place in the year (sine, cosine)
        self.codes = codes  # (column, cardinality) of each categorical column used

    def _design(self, x: np.ndarray) -> sp.csr_matrix:
        n = x.shape[0]
        t = x[:, self.time].astype(np.float64)
        parts = [np.ones((n, 1)), t[:, None], x[:, list(self.season)].astype(np.float64)]
        for column, cardinality in self.codes:
            codes = np.clip(x[:, column].astype(np.int64), 0, cardinality - 1)
            one = sp.csr_matrix((np.ones(n), (np.arange(n), codes)), shape=(n, cardinality))
            parts += [one, sp.diags(t) @ one] + [sp.diags(x[:, j].astype(np.float64)) @ one for j in self.season]
        return sp.hstack([sp.csr_matrix(p) if not sp.issparse(p) else p for p in parts], format="csr")

    def fit(self, x: np.ndarray, y: np.ndarray) -> Trend:
        design = self._design(x)
        gram = (design.T @ design).toarray()
        penalty = np.full(gram.shape[0], RIDGE)
        penalty[:2] = 1e-9  # the shared line is not shrunk; the shared season a little (collinear with it in a short history)
        self.coef_ = np.linalg.solve(gram + np.diag(penalty), design.T @ y)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self._design(x) @ self.coef_


def for_fold(problem: Problem, fold: Fold) -> Trend | None:
    """The trend's layout for a fold's dense inputs; None when the table has no elapsed time of its time column."""
    names = fold.train.numeric_names
    column = problem.comp.time_column
    if f"{column}__elapsed" not in names:
        return None
    season = tuple(names.index(f"{column}__{p}") for p in ("year_sin", "year_cos") if f"{column}__{p}" in names)
    width, codes, terms = len(names), [], 2 + len(season)
    each = 2 + len(season)  # a level, a slope and a season of each value
    for j in sorted(range(len(fold.train.cardinalities)), key=lambda j: fold.train.cardinalities[j]):
        cardinality = fold.train.cardinalities[j]
        if terms + each * cardinality > MAX_TERMS:
            break
        codes.append((width + j, cardinality))
        terms += each * cardinality
    return Trend(names.index(f"{column}__elapsed"), season, tuple(sorted(codes)))


class Detrended:
    """A fitted model of the target less the trend; predicts the two added back (on the training scale)."""

    def __init__(self, model, trend: Trend):
        self.model, self.trend = model, trend

    def predict(self, x) -> np.ndarray:
        return self.model.predict(x) + self.trend.predict(x)

    def __getattr__(self, name):  # n_iter_, n_estimators, clocked_rounds_... are the model's
        if name in ("model", "trend"):
            raise AttributeError(name)
        return getattr(self.model, name)


def applies(problem: Problem, folds: list[Fold]) -> bool:
    """A forecast of one value per row whose folds hold the time column's elapsed days."""
    return (problem.comp.folds == "time" and not problem.n_classes and problem.y.ndim == 1
            and bool(folds) and for_fold(problem, folds[0]) is not None)
