"""A second level fitted on the members' out-of-fold predictions (stacking), cross-fitted like the greedy blend.

Level-one inputs are each member's out-of-fold predictions: log-probabilities for classes
(one column per member for a binary task, k per member for k classes), values for a
regression (on the log1p scale where the metric trains there). The second level is a
regularised linear model: logistic regression for classes, ridge for values, one per
column with several targets. Its score is held out the same way as the greedy blend's:
for each fold the stack is fitted on the other folds' rows only and predicts that fold,
so no row's prediction comes from a model that saw its label, at either level. The test
predictions come from a stack fitted on every predicted row, applied to the members'
test predictions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression, RidgeCV

from automl.baselines import CVResult, finish
from automl.baselines.fitting import values_of
from automl.folds import Split, predicted_rows
from automl.problem import Problem

FIT_ROWS = 50_000  # the stack is fitted on at most this many rows: a linear model needs no more
C = 1.0  # the logistic level's inverse regularisation, on log-probabilities of similar scale
ALPHAS = np.logspace(-3, 3, 13)  # the ridge level picks its own by leave-one-out


def _features(problem: Problem, predictions: list[np.ndarray], column: int | None) -> np.ndarray:
    """(n, members x inputs): what the second level sees of each member for one target column."""
    parts = []
    for p in predictions:
        p = p if column is None else p[:, column]
        if problem.n_classes or problem.multilabel:
            p = np.clip(p, 1e-6, 1 - 1e-6)
            parts.append(np.log(p / (1 - p)) if p.ndim == 1 else np.log(p[:, 1:2] / p[:, :1]) if p.shape[1] == 2 else np.log(p))
        else:
            parts.append(np.log1p(np.maximum(p, 0)) if problem.metric.target_transform == "log1p" else p)
    x = np.column_stack([q.reshape(len(q), -1) for q in parts])
    return np.clip(np.nan_to_num(x, nan=0.0), -1e12, 1e12)  # a diverged member's inf must not break the fit


@dataclass
class Level:
    """A fitted second level: the model on standardised inputs (None: a constant label's frequency)."""

    model: object
    mean: np.ndarray
    scale: np.ndarray
    k: int = 0  # classes it predicts probabilities for; 0: values
    constant: int | None = None

    def predict(self, x: np.ndarray) -> np.ndarray:
        if self.constant is not None:
            return np.tile(np.eye(self.k)[self.constant], (len(x), 1))
        z = (x - self.mean) / self.scale
        if not self.k:
            return self.model.predict(z)
        proba = np.zeros((len(x), self.k))
        proba[:, self.model.classes_] = self.model.predict_proba(z)
        return proba

    def member_shares(self, members: int) -> np.ndarray:
        """Each member's share of the level's absolute coefficients (its inputs are standardised alike)."""
        if self.constant is not None:
            return np.full(members, 1.0 / members)
        coef = np.abs(np.atleast_2d(self.model.coef_)).sum(axis=0).reshape(members, -1).sum(axis=1)
        return coef / max(coef.sum(), 1e-12)


def _fit(problem: Problem, x: np.ndarray, y: np.ndarray, rows: np.ndarray, seed: int) -> Level:
    """The second level fitted on x[rows] (FIT_ROWS of them at most)."""
    if len(rows) > FIT_ROWS:
        rows = np.sort(np.random.default_rng(seed).choice(rows, FIT_ROWS, replace=False))
    mean, scale = x[rows].mean(axis=0), x[rows].std(axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)  # a column constant on these rows stays near 0 elsewhere
    z = (x[rows] - mean) / scale
    if problem.n_classes or problem.multilabel:
        k, classes = problem.n_classes or 2, np.unique(y[rows])
        if len(classes) < 2:
            return Level(None, mean, scale, k, constant=int(classes[0]))
        return Level(LogisticRegression(C=C, max_iter=1000).fit(z, y[rows]), mean, scale, k)
    return Level(RidgeCV(alphas=ALPHAS).fit(z, y[rows]), mean, scale)


def _to_prediction(problem: Problem, parts: list[np.ndarray]) -> np.ndarray:
    """Per-column outputs in the members' form: probabilities (n, k), labels' (n, t), or values."""
    if problem.multilabel:
        return np.column_stack([p[:, 1] for p in parts])
    if problem.n_classes:
        return parts[0]
    values = np.column_stack(parts) if len(parts) > 1 else parts[0]
    return values_of(values, problem.metric.target_transform == "log1p", problem.y)


def stack(problem: Problem, folds: list[Split], members: list[CVResult], seconds: float | None = None,
          seed: int = 0) -> CVResult | None:
    """The stack as a leaderboard entry (held-out score), or None when `seconds` run out before it is done."""
    start = time.perf_counter()
    predicted = predicted_rows(folds)
    columns = [None] if problem.y.ndim == 1 else list(range(problem.y.shape[1]))
    held_parts, test_parts, shares, fits = [], [], np.zeros(len(members)), 0
    for column in columns:
        x = _features(problem, [m.oof for m in members], column)
        x_test = _features(problem, [m.test for m in members], column)
        y = problem.y if column is None else problem.y[:, column]
        if not (problem.n_classes or problem.multilabel) and problem.metric.target_transform == "log1p":
            y = np.log1p(y)  # the level learns where its inputs are: on the log1p scale, inverted once at the end
        held = None
        for fold in folds:
            rows = np.setdiff1d(predicted, fold.valid_rows, assume_unique=True)  # the other folds' rows only
            part = _fit(problem, x, y, rows, seed).predict(x[fold.valid_rows])
            if held is None:
                held = np.zeros((len(y),) + part.shape[1:])
            held[fold.valid_rows] = part
            fits += 1
            if seconds is not None and (time.perf_counter() - start) / fits * (len(folds) + 1) * len(columns) > seconds:
                return None  # would not fit its allowance: the greedy blend stands alone
        level = _fit(problem, x, y, predicted, seed)
        fits += 1
        shares = shares + level.member_shares(len(members)) / len(columns)
        held_parts.append(held)
        test_parts.append(level.predict(x_test))
    held_out, test = _to_prediction(problem, held_parts), _to_prediction(problem, test_parts)
    result = finish("ensemble", problem, folds, held_out, test, time.perf_counter() - start, kind="ensemble")
    result.info = {"shares": {m.name: round(float(w), 3) for m, w in zip(members, shares, strict=True)}}
    return result
