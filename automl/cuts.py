"""Cut points: ordered classes from a regression on their codes, for quadratic weighted kappa.

Kaggle's practice for qwk: regress the class code (classes ordered by their sorted
value), then cut the prediction into classes at the thresholds that maximise kappa on
out-of-fold predictions. Thresholds chosen on the rows they are then scored on are
optimistic, so `cross_fitted` picks each fold's thresholds on the other folds' rows.

Kappa depends on the thresholds only through a confusion matrix, so the search runs on
per-class counts over a grid of candidate cuts (quantiles of the predictions): after one
pass over the rows, every candidate costs O(k^2), whatever the row count.
"""

from __future__ import annotations

import numpy as np

from automl.folds import Split, predicted_rows

GRID = 256  # candidate cut positions: quantiles of the predictions


def kappa(confusion: np.ndarray) -> np.ndarray:
    """Quadratic weighted kappa of confusion matrices (..., k, k) of counts (true class, predicted class)."""
    k = confusion.shape[-1]
    weights = (np.arange(k)[:, None] - np.arange(k)[None, :]) ** 2.0
    total = confusion.sum(axis=(-2, -1), keepdims=True)
    expected = confusion.sum(axis=-1, keepdims=True) * confusion.sum(axis=-2, keepdims=True) / total
    observed_cost, expected_cost = (confusion * weights).sum(axis=(-2, -1)), (expected * weights).sum(axis=(-2, -1))
    return np.where(expected_cost > 0, 1 - observed_cost / np.where(expected_cost > 0, expected_cost, 1), 0.0)


def fit_cuts(y: np.ndarray, values: np.ndarray, k: int, passes: int = 4) -> np.ndarray:
    """k - 1 increasing cut points on `values` that maximise kappa against class codes `y`.

    Starts where each class is as frequent among the predictions as among the labels,
    then moves one cut at a time to its best position between its neighbours.
    """
    edges = np.unique(np.quantile(values, np.linspace(0, 1, GRID + 1)[1:-1]))
    bins = np.searchsorted(edges, values, side="right")  # bin b holds edges[b-1] <= value < edges[b]
    counts = np.bincount(y * (len(edges) + 1) + bins, minlength=k * (len(edges) + 1)).reshape(k, -1)
    below = np.concatenate([np.zeros((k, 1)), counts.cumsum(axis=1)], axis=1)  # [:, j]: rows per class in bins < j
    start = np.searchsorted(below.sum(axis=0), np.cumsum(np.bincount(y, minlength=k))[:-1])
    positions = np.concatenate([[0], start, [len(edges) + 1]])  # a cut at position j: bins < j fall below it
    for _ in range(passes):
        before = positions.copy()
        for c in range(1, k):
            candidates = np.arange(positions[c - 1], positions[c + 1] + 1)
            trial = np.repeat(positions[None], len(candidates), axis=0)
            trial[:, c] = candidates
            confusion = np.diff(below[:, trial], axis=2).transpose(1, 0, 2)  # (candidates, true, predicted)
            positions[c] = candidates[int(np.argmax(kappa(confusion)))]
        if np.array_equal(before, positions):
            break
    return np.concatenate([[-np.inf], edges, [np.inf]])[positions[1:-1]]


def apply_cuts(values: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """Class codes: how many cut points each value reaches."""
    return np.searchsorted(cuts, values, side="right").astype(np.int64)


def cross_fitted(y: np.ndarray, values: np.ndarray, folds: list[Split], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Class codes of each fold's rows, cut where the other folds' predicted rows put the cuts;
    and the cuts from every predicted row (for the test predictions). Rows no fold predicts get -1."""
    predicted = predicted_rows(folds)
    classes = np.full(len(y), -1, dtype=np.int64)
    for fold in folds:
        others = np.setdiff1d(predicted, fold.valid_rows, assume_unique=True)
        classes[fold.valid_rows] = apply_cuts(values[fold.valid_rows], fit_cuts(y[others], values[others], k))
    return classes, fit_cuts(y[predicted], values[predicted], k)
