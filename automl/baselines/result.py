"""What a cross-validated model hands on: out-of-fold and test predictions, fold scores, seconds."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from automl.folds import Split, predicted_rows
from automl.metrics import best_threshold, score
from automl.problem import Problem


@dataclass
class CVResult:
    name: str
    oof: np.ndarray  # (n, k) probabilities or (n,) values, for every train row
    test: np.ndarray  # same form, averaged over the fold models
    fold_scores: list[float]
    seconds: float
    threshold: float | None = None
    kind: str = "baseline"
    info: dict = field(default_factory=dict)
    # each fold model's own test predictions, (folds, *test's shape), where kept (baselines): a teacher for
    # fold k that never saw fold k's labels (--pseudo-label)
    test_folds: np.ndarray | None = None

    @property
    def mean(self) -> float:
        return float(np.mean(self.fold_scores))

    @property
    def std(self) -> float:
        return float(np.std(self.fold_scores))


class Skipped(Exception):
    """A baseline that cannot fit its share of the budget, even shrunk; the message says why."""


def finish(name: str, problem: Problem, folds: list[Split], oof: np.ndarray, test: np.ndarray,
           seconds: float, kind: str = "baseline", info: dict | None = None) -> CVResult:
    """Pick the decision threshold on out-of-fold predictions and score every fold. Values (a regression)
    are first held within the target's range widened by its span on each side: a network that diverged
    on one fold (expm1 of a log-scale output past 709 is infinite) scores badly instead of failing the run."""
    if not problem.n_classes and not problem.multilabel:
        oof, test = _within_range(oof, problem.y), _within_range(test, problem.y)
    rows = predicted_rows(folds)  # an expanding time window predicts no row of its first stretch
    threshold = best_threshold(problem.metric, problem.y[rows], oof[rows])
    scores = [score(problem.metric, problem.y[f.valid_rows], oof[f.valid_rows], threshold) for f in folds]
    return CVResult(name, oof, test, scores, seconds, threshold, kind, info or {})


def _within_range(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    low, high = y.min(axis=0), y.max(axis=0)
    span = high - low
    if np.isfinite(pred).all() and (pred >= low - span).all() and (pred <= high + span).all():
        return pred
    return np.clip(np.nan_to_num(pred, nan=float(np.mean(low + high) / 2)), low - span, high + span)
