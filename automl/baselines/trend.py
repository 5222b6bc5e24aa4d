"""Whether a forecast's trees learn relative to a trend in time (automl.trend): decided once per run."""

from __future__ import annotations

import time

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor

from automl.baselines.fitting import values_of
from automl.baselines.inputs import dense
from automl.folds import Fold, take
from automl.metrics import score
from automl.problem import Problem
from automl.trend import for_fold

PROBE_ROWS = 60_000  # training rows of a fold the choice's GBDT fits on at most
PROBE_ROUNDS = 150


def choose_trend(problem: Problem, folds: list[Fold], seed: int = 0, seconds: float | None = None) -> dict:
    """Whether the trees learn relative to the trend: a histogram GBDT on the last two folds (a row sample of
    each), with and without it; {"trend": bool, "with": score, "without": score, "folds": [...], "note": str}."""
    start, log1p = time.monotonic(), problem.metric.target_transform == "log1p"
    chosen = list(range(len(folds)))[-2:]
    scores = {True: [], False: []}
    for i in chosen:
        fold, layout = folds[i], for_fold(problem, folds[i])
        if layout is None:
            continue
        rows = np.arange(len(fold.train_rows))
        if len(rows) > PROBE_ROWS:
            rows = np.sort(np.random.default_rng(seed + i).choice(rows, PROBE_ROWS, replace=False))
        x, x_valid = dense(take(fold.train, rows)), dense(fold.valid)
        y = problem.y[fold.train_rows[rows]]
        y = np.log1p(y) if log1p else y
        for detrend in (False, True):
            target, shift = y, 0.0
            if detrend:
                layout.fit(x, y)
                target, shift = y - layout.predict(x), layout.predict(x_valid)
            model = HistGradientBoostingRegressor(max_iter=PROBE_ROUNDS, learning_rate=0.1, early_stopping=False,
                                                  random_state=seed).fit(x, target)
            pred = values_of(model.predict(x_valid) + shift, log1p, problem.y)
            scores[detrend].append(score(problem.metric, problem.y[fold.valid_rows], pred))
        if seconds is not None and time.monotonic() - start > seconds:
            break
    done = len(scores[True])
    with_, without = float(np.mean(scores[True])), float(np.mean(scores[False]))
    better = problem.metric.better(with_, without)
    metric = problem.comp.metric
    folds_named = ", ".join(str(i + 1) for i in chosen[:done])
    note = (f"trees learn the target relative to a trend in time (a level, slope and season per categorical value)"
            f" fitted on each fold's training rows: {metric} {with_:.4g} against {without:.4g} without, "
            f"a histogram GBDT on fold{'s' if done > 1 else ''} {folds_named}" if better else
            f"trees learn the target as it is: a trend in time scored {metric} {with_:.4g} against {without:.4g} "
            f"without, a histogram GBDT on fold{'s' if done > 1 else ''} {folds_named}")
    return {"trend": bool(better), "with": with_, "without": without, "folds": chosen[:done], "note": note,
            "seconds": round(time.monotonic() - start, 2)}
