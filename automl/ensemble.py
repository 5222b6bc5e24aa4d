"""Greedy ensemble selection with replacement (Caruana et al. 2004) over out-of-fold predictions.

Selecting a blend on the same out-of-fold predictions it is then scored on is optimistic.
So the blend is also cross-fitted: for each fold, weights are selected on the other folds'
rows only and applied to that fold. Its score ("held-out") is the honest one and is what
the leaderboard ranks; the optimistic score is reported beside it. The test predictions
use weights selected on every row.
"""

from __future__ import annotations

import time

import numpy as np

from automl.baselines import CVResult, finish
from automl.folds import Split
from automl.metrics import score
from automl.problem import Problem


SELECT_ROWS = 20_000  # greedy selection scores candidates on at most this many rows: seconds, not minutes, at 1M rows


def select(problem: Problem, predictions: list[np.ndarray], rows: np.ndarray, rounds: int = 25) -> np.ndarray:
    """Weights over `predictions` chosen greedily, with replacement, on `rows` (a fixed sample of them on large tables)."""
    if len(rows) > SELECT_ROWS:
        rows = np.sort(np.random.default_rng(0).choice(rows, SELECT_ROWS, replace=False))
    metric, y = problem.metric, problem.y[rows]
    sign = 1.0 if metric.greater_is_better else -1.0
    parts = [p[rows] for p in predictions]
    counts = np.zeros(len(parts))
    total, history = np.zeros_like(parts[0]), []
    for step in range(1, rounds + 1):
        gains = [sign * score(metric, y, (total + p) / step) for p in parts]
        choice = int(np.argmax(gains))
        counts[choice] += 1
        total = total + parts[choice]
        history.append((gains[choice], counts.copy()))
    best_gain = max(g for g, _ in history)
    # The earliest round that reaches the best score: fewer members, same score.
    chosen = next(c for g, c in history if g >= best_gain)
    return chosen / chosen.sum()


def blend(predictions: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    return sum(w * p for w, p in zip(weights, predictions, strict=True) if w > 0)


def ensemble(problem: Problem, folds: list[Split], members: list[CVResult], rounds: int = 25) -> CVResult | None:
    """The blend as a leaderboard entry (held-out score), or None with fewer than 2 members."""
    if len(members) < 2:
        return None
    start = time.perf_counter()
    oofs = [m.oof for m in members]
    held_out = np.zeros_like(oofs[0])
    for fold in folds:
        weights = select(problem, oofs, fold.train_rows, rounds)
        held_out[fold.valid_rows] = blend(oofs, weights)[fold.valid_rows]
    weights = select(problem, oofs, np.arange(len(problem.y)), rounds)
    optimistic = finish("ensemble", problem, folds, blend(oofs, weights), blend([m.test for m in members], weights), 0)
    result = finish("ensemble", problem, folds, held_out, blend([m.test for m in members], weights),
                    time.perf_counter() - start, kind="ensemble")
    named = {m.name: round(float(w), 3) for m, w in zip(members, weights, strict=True) if w > 0}
    result.info = {"weights": named, "optimistic": optimistic.mean,
                   "note": f"held-out; optimistic {optimistic.mean:.5f}; " + ", ".join(f"{k} {v:g}" for k, v in named.items())}
    return result
