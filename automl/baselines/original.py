"""Whether --extra-train rows (a Playground competition's "original" table) help: decided once per run.

Originals often help a little and sometimes hurt (another generator, another class balance, missing values
where train has none). A Kaggler checks with CV and keeps them only when they help; so does the run: a quick
histogram GBDT is fitted on a few folds with and without the extra rows and scored with the competition's metric
on the competition's own validation rows, and the extra rows are used only when they score better there.
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from automl.baselines.fitting import values_of
from automl.baselines.inputs import dense
from automl.folds import Fold, forecasting_fold, take
from automl.metrics import score
from automl.problem import Problem

PROBE_ROWS = 30_000  # training rows of a fold the choice's GBDT fits on at most (own and extra rows alike sampled)
PROBE_ROUNDS = 150
PROBE_FOLDS = 3


def choose_extra(problem: Problem, folds: list[Fold], seed: int = 0, seconds: float | None = None) -> dict:
    """{"kept": bool, "with": score, "without": score, "folds": [...], "note": str}: a histogram GBDT on
    PROBE_FOLDS folds (the latest ones on folds in time), trained on each fold's training rows with and without
    the extra rows (a sample of PROBE_ROWS of them at most, the same share of each kind), scored on the fold's
    validation rows, which are always the competition's own. With several target columns, the first decides."""
    start, log1p = time.monotonic(), problem.metric.target_transform == "log1p"
    in_time = forecasting_fold(folds) is not None  # the latest folds then: the nearest to the test
    chosen = list(range(len(folds)))[-PROBE_FOLDS:] if in_time else list(range(min(PROBE_FOLDS, len(folds))))
    scores: dict[bool, list[float]] = {True: [], False: []}
    for i in chosen:
        fold = folds[i]
        rows = np.arange(len(fold.train_rows))
        if len(rows) > PROBE_ROWS:
            rows = np.sort(np.random.default_rng(seed + i).choice(rows, PROBE_ROWS, replace=False))
        x, x_valid = dense(take(fold.train, rows)), dense(fold.valid)
        y, own = problem.y[fold.train_rows[rows]], fold.train_rows[rows] < problem.own_rows
        y_valid = problem.y[fold.valid_rows]
        if y.ndim == 2:  # several targets: the first column decides
            y, y_valid = y[:, 0], y_valid[:, 0]
        for extra in (False, True):
            use = slice(None) if extra else own
            pred = _fit_predict(problem, x[use], y[use], x_valid, seed, log1p)
            scores[extra].append(score(problem.metric, y_valid, pred))
        if seconds is not None and time.monotonic() - start > seconds:
            break
    done = len(scores[True])
    with_, without = float(np.mean(scores[True])), float(np.mean(scores[False]))
    kept = problem.metric.better(with_, without)
    where = f"a histogram GBDT on fold{'s' if done > 1 else ''} {', '.join(str(i + 1) for i in chosen[:done])}"
    metric = problem.comp.metric
    note = (f"the {problem.extra:,} extra rows are kept: {metric} {with_:.5g} with them against {without:.5g} without, "
            f"{where}, scored on the competition's own rows" if kept else
            f"the {problem.extra:,} extra rows are left out: {metric} {with_:.5g} with them against {without:.5g} "
            f"without, {where}, scored on the competition's own rows (--extra-train-always keeps them)")
    return {"kept": bool(kept), "with": with_, "without": without, "folds": chosen[:done], "note": note,
            "seconds": round(time.monotonic() - start, 2)}


def _fit_predict(problem: Problem, x: np.ndarray, y: np.ndarray, x_valid: np.ndarray, seed: int,
                 log1p: bool) -> np.ndarray:
    """The probe's predictions in the form the metric scores: probabilities of every class, or values."""
    options = {"max_iter": PROBE_ROUNDS, "learning_rate": 0.1, "early_stopping": False, "random_state": seed}
    if problem.n_classes or problem.multilabel:
        model = HistGradientBoostingClassifier(**options).fit(x, y)
        proba = np.zeros((len(x_valid), max(problem.n_classes, 2)))
        proba[:, model.classes_.astype(int)] = model.predict_proba(x_valid)
        return proba
    model = HistGradientBoostingRegressor(**options).fit(x, np.log1p(y) if log1p else y)
    return values_of(model.predict(x_valid), log1p, y)
