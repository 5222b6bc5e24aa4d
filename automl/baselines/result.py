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
    """Pick the decision threshold on out-of-fold predictions and score every fold."""
    rows = predicted_rows(folds)  # an expanding time window predicts no row of its first stretch
    threshold = best_threshold(problem.metric, problem.y[rows], oof[rows])
    scores = [score(problem.metric, problem.y[f.valid_rows], oof[f.valid_rows], threshold) for f in folds]
    return CVResult(name, oof, test, scores, seconds, threshold, kind, info or {})
