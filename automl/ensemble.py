"""Greedy ensemble selection with replacement (Caruana et al. 2004) over out-of-fold predictions.

Selecting a blend on the same out-of-fold predictions it is then scored on is optimistic.
So the blend is also cross-fitted: for each fold, weights are selected on the other folds'
rows only and applied to that fold. Its score ("held-out") is the honest one and is what
the leaderboard ranks; the optimistic score is reported beside it. The test predictions
use weights selected on every row.

For metrics that score the probabilities' scale (log loss), a blend of over- and
under-confident members is rarely calibrated: after the weights, a temperature and a
clip level are fitted on the same rows as the weights (cross-fitted the same way), and
kept only when they improve the held-out score. Rows no fold predicts (the first
stretch of an expanding time window) take no part in any choice.

A stack (automl/stacking.py) is fitted on the same folds, and the ensemble is the mean of the two
(half the greedy blend, half the stack: they err differently, and a mean of two varies less than
either), unless one of them scores better than that mean held out beyond noise (`beats`: on every fold,
or by more than twice the standard error of the fold differences; three folds or more). A stack that
scores below every member on any fold has collapsed there and is dropped: the greedy blend stands.

Cost. Each round scores every member once, for each fold and once more on every row:
with ten members and a metric that sorts (AUC: 7 ms on 20,000 rows) that is seconds.
`blend_seconds` estimates it from timed scores, the run reserves time for it (a share
of the budget at most), and `ensemble` given `seconds` scores its choices on as many rows
as fit them.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from automl.baselines import CVResult, finish
from automl.cuts import apply_cuts, cross_fitted
from automl.folds import Split, predicted_rows
from automl.metrics import score
from automl.problem import Problem
from automl.stacking import stack

log = logging.getLogger("automl")

SELECT_ROWS = 20_000  # greedy selection scores candidates on at most this many rows: seconds, not minutes, at 1M rows
MIN_SELECT_ROWS = 2_000  # fewer rows would choose weights on noise: past this the blend takes its time
ROUNDS = 25  # greedy rounds at most
TEMPERATURES = np.geomspace(0.5, 4.0, 28)  # softmax(log p / T): T > 1 softens over-confident blends, T < 1 sharpens
SWITCH_FOLDS = 3  # one model or blend replaces another only beyond noise on this many folds or more: on two, one
# of two equals is better on both a quarter of the time
CLIPS = (1e-15, 1e-4, 1e-3, 1e-2)  # floor on every probability: one confident miss can cost more than the rest


def _sample(rows: np.ndarray, limit: int = SELECT_ROWS) -> np.ndarray:
    if len(rows) > limit:
        return np.sort(np.random.default_rng(0).choice(rows, limit, replace=False))
    return rows


def score_cost(problem: Problem, rows: int) -> tuple[float, float]:
    """(fixed, per-row) seconds of one score of the competition's metric, timed on random
    predictions for `rows` rows and a quarter of them (the best of three each)."""
    rows = max(4, min(rows, len(problem.y)))
    pred = np.random.default_rng(0).random(problem.pred_shape(rows))
    if problem.n_classes:
        pred = pred / pred.sum(axis=1, keepdims=True)

    def timed(n: int) -> float:
        best = np.inf
        for _ in range(3):
            start = time.perf_counter()
            score(problem.metric, problem.y[:n], pred[:n])
            best = min(best, time.perf_counter() - start)
        return best

    big, small = timed(rows), timed(rows // 4)
    per_row = max(0.0, (big - small) / (rows - rows // 4))
    return max(0.0, big - per_row * rows), per_row


def _scores(n_folds: int, members: int) -> int:
    """The blend's scores at most: every round scoring every member, then the calibration's,
    per fold and once on every row."""
    return (n_folds + 1) * (ROUNDS * members + len(TEMPERATURES) + len(CLIPS))


def blend_seconds(problem: Problem, n_folds: int, members: int) -> float:
    """The blend's worst case in seconds, scoring on the selection's full sample."""
    fixed, per_row = score_cost(problem, SELECT_ROWS)
    return _scores(n_folds, members) * (fixed + per_row * min(len(problem.y), SELECT_ROWS))


def select(problem: Problem, predictions: list[np.ndarray], rows: np.ndarray, rounds: int = ROUNDS,
           limit: int = SELECT_ROWS) -> np.ndarray:
    """Weights over `predictions` chosen greedily, with replacement, on `rows` (a fixed sample of
    `limit` of them on large tables)."""
    rows = _sample(rows, limit)
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


def calibrate(pred: np.ndarray, how: tuple[float, float] | None) -> np.ndarray:
    """Probabilities (n, k) at temperature T, floored at `clip` and summing to 1; `how` = (T, clip)."""
    if how is None:
        return pred
    temperature, clip = how
    logits = np.log(np.clip(pred, 1e-15, None)) / temperature
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p = np.clip(p / p.sum(axis=1, keepdims=True), clip, None)
    return p / p.sum(axis=1, keepdims=True)


def calibration(problem: Problem, pred: np.ndarray, rows: np.ndarray, limit: int = SELECT_ROWS) -> tuple[float, float] | None:
    """The (temperature, clip) that scores best on `rows` (`limit` of them at most), or None when the
    metric ignores the probabilities' scale or nothing beats the predictions as they are."""
    if not problem.metric.calibrated or problem.multilabel:  # a softmax temperature mixes labels that are each 0/1
        return None
    rows = _sample(rows, limit)
    y, p = problem.y[rows], pred[rows]
    sign = 1.0 if problem.metric.greater_is_better else -1.0
    best, how = sign * score(problem.metric, y, p), None
    # The temperature first, then the clip at that temperature: 31 scores instead of 112; the two
    # barely interact (the clip only touches the few smallest probabilities).
    for temperature in TEMPERATURES:
        gain = sign * score(problem.metric, y, calibrate(p, (float(temperature), CLIPS[0])))
        if gain > best + 1e-9:
            best, how = gain, (float(temperature), CLIPS[0])
    for clip in CLIPS[1:]:
        trial = (how[0] if how else 1.0, clip)
        gain = sign * score(problem.metric, y, calibrate(p, trial))
        if gain > best + 1e-9:
            best, how = gain, trial
    return how


def beats(problem: Problem, a: CVResult, b: CVResult) -> bool:
    """Whether `a` scores better than `b` held out on the same folds beyond noise: on SWITCH_FOLDS folds or
    more, better on every fold, or better on average by more than twice the standard error of the fold-by-fold
    differences. On fewer folds, never: two folds are too few to tell two close models apart."""
    sign = 1.0 if problem.metric.greater_is_better else -1.0
    gains = sign * (np.asarray(a.fold_scores, float) - np.asarray(b.fold_scores, float))
    if len(gains) < SWITCH_FOLDS or len(gains) != len(b.fold_scores) or not np.isfinite(gains).all():
        return False
    return bool((gains > 0).all() or gains.mean() > 2 * gains.std(ddof=1) / np.sqrt(len(gains)))


def _collapse(problem: Problem, stacked: CVResult, members: list[CVResult]) -> str:
    """Why the stack collapsed ('' when it did not): a fold on which it scores worse than every member it is
    made of, which a second level should never do (below their median is not enough: on a few hundred rows a
    sound stack falls there by chance, titanic's by one passenger in a hundred)."""
    sign = 1.0 if problem.metric.greater_is_better else -1.0
    for i, own in enumerate(stacked.fold_scores):
        worst = min((m.fold_scores[i] for m in members if len(m.fold_scores) > i), key=lambda v: sign * v)
        if sign * own < sign * worst:
            return f"on fold {i + 1} it scored {own:.5g}, below every member (the worst {worst:.5g})"
    return ""


def ensemble(problem: Problem, folds: list[Split], members: list[CVResult], rounds: int = ROUNDS,
             seconds: float | None = None, stacking: bool = True) -> CVResult | None:
    """The blend (`blended`); for an ordinal metric (qwk), cut at its expected class where that scores better
    held out (`ordinal_cut`)."""
    result = blended(problem, folds, members, rounds, seconds, stacking)
    return ordinal_cut(problem, folds, result) if result is not None else None


def ordinal_cut(problem: Problem, folds: list[Split], result: CVResult) -> CVResult:
    """For a metric of ordered classes (qwk), the ensemble's classes cut from its expected class code (the sum of
    each class's probability times its code) at points that maximise kappa, each fold's chosen on the other folds'
    rows (automl.cuts); kept where it scores better held out than the most probable class. A blend of many
    members' probabilities leans to the common classes under argmax; kappa rewards being near the true class."""
    if not (problem.metric.ordinal and problem.n_classes and result.oof.ndim == 2):
        return result
    codes = np.arange(problem.n_classes)
    expected, expected_test = result.oof @ codes, result.test @ codes
    classes, cuts = cross_fitted(problem.y, expected, folds, problem.n_classes)
    oof = np.zeros_like(result.oof)
    rows = predicted_rows(folds)
    oof[rows, classes[rows]] = 1.0
    cut = finish("ensemble", problem, folds, oof, np.eye(problem.n_classes)[apply_cuts(expected_test, cuts)],
                 result.seconds, kind="ensemble")
    if not problem.metric.better(cut.mean, result.mean):
        return result
    cut.info = result.info | {"cuts": [round(float(c), 4) for c in cuts],
                              "note": f"cut at its expected class (held out {cut.mean:.5f}, the most probable class "
                                      f"{result.mean:.5f}); " + result.info["note"]}
    return cut


def blended(problem: Problem, folds: list[Split], members: list[CVResult], rounds: int = ROUNDS,
            seconds: float | None = None, stacking: bool = True) -> CVResult | None:
    """The blend as a leaderboard entry (held-out score), or None with fewer than 2 members.
    Given `seconds`, its choices are scored on as many rows as fit them (MIN_SELECT_ROWS at least).
    With `stacking`, a second level is fitted on the members' out-of-fold predictions too
    (automl/stacking.py, cross-fitted alike), and the ensemble is the mean of the two unless one of them
    `beats` that mean (beyond noise, SWITCH_FOLDS folds or more); a stack that collapsed on a fold is dropped."""
    predicted = predicted_rows(folds)
    # A member that predicts one value for every row (dummy's prior) adds nothing a blend can use: on
    # AUC it leaves the ranking as it was, yet rounding in the sums tie-broke it ahead and blends
    # became 90% dummy; on log loss the calibration below does what shrinking towards it would.
    # Its prior differs a little from fold to fold, so it is constant within each fold, not overall.
    members = [m for m in members if any(np.ptp(m.oof[f.valid_rows], axis=0).any() for f in folds if len(f.valid_rows))]
    if len(members) < 2:
        return None
    start = time.perf_counter()
    limit, dropped = SELECT_ROWS, 0
    if seconds is not None:
        fixed, per_row = score_cost(problem, min(limit, len(predicted)))
        fits = (seconds / _scores(len(folds), len(members)) - fixed) / max(per_row, 1e-12)
        limit = max(MIN_SELECT_ROWS, min(limit, int(fits)))
        # Even MIN_SELECT_ROWS rows may not fit: a score's fixed cost (one AUC per label: 7 labels, 7 sorts)
        # stays. Then only the best members are offered to the selection, as many as fit.
        one = fixed + per_row * min(limit, len(predicted))
        while len(members) > 2 and _scores(len(folds), len(members)) * one > seconds:
            sign = 1.0 if problem.metric.greater_is_better else -1.0
            members = sorted(members, key=lambda m: -sign * m.mean)[:-1]
            dropped += 1
    oofs = [m.oof for m in members]
    held_out, calibrated = np.zeros_like(oofs[0]), np.zeros_like(oofs[0])
    for fold in folds:
        rows = np.setdiff1d(predicted, fold.valid_rows, assume_unique=True)  # the other folds' predicted rows
        blended = blend(oofs, select(problem, oofs, rows, rounds, limit))
        held_out[fold.valid_rows] = blended[fold.valid_rows]
        calibrated[fold.valid_rows] = calibrate(blended[fold.valid_rows], calibration(problem, blended, rows, limit))
    weights = select(problem, oofs, predicted, rounds, limit)
    blended, test = blend(oofs, weights), blend([m.test for m in members], weights)
    sign = 1.0 if problem.metric.greater_is_better else -1.0
    how = calibration(problem, blended, predicted, limit)
    # Kept only when it helps out of fold, not merely on the rows it was fitted on.
    if how is not None and sign * finish("ensemble", problem, folds, calibrated, test, 0).mean > \
            sign * finish("ensemble", problem, folds, held_out, test, 0).mean:
        held_out, blended, test = calibrated, calibrate(blended, how), calibrate(test, how)
    else:
        how = None
    optimistic = finish("ensemble", problem, folds, blended, test, 0)
    result = finish("ensemble", problem, folds, held_out, test, time.perf_counter() - start, kind="ensemble")
    named = {m.name: round(float(w), 3) for m, w in zip(members, weights, strict=True) if w > 0}
    scaled = "" if how is None else f"; temperature {how[0]:.3g}, clipped at {how[1]:g}"
    limits = ((f"weights chosen on {limit:,}-row samples; " if limit < min(SELECT_ROWS, len(predicted)) else "")
              + (f"the {len(members)} best members only (time); " if dropped else ""))
    result.info = {"weights": named, "optimistic": optimistic.mean, "calibration": how,
                   "select_rows": min(limit, len(predicted)),
                   "note": f"held-out; optimistic {optimistic.mean:.5f}; " + limits
                           + ", ".join(f"{k} {v:g}" for k, v in named.items()) + scaled}
    result.info["method"] = "greedy"
    left = None if seconds is None else seconds - (time.perf_counter() - start)
    try:
        stacked = stack(problem, folds, members, left) if stacking and (left is None or left > 0) else None
    except (ValueError, np.linalg.LinAlgError) as error:  # the greedy blend stands; run.log says why
        log.info("stack: %s; the greedy blend stands alone", error)
        stacked = None
    if stacked is None:
        return result
    sign = 1.0 if problem.metric.greater_is_better else -1.0
    result.info["stack"] = stacked.mean
    # Half the greedy blend, half the stack: both held out on the same folds, so their mean is held out too.
    # The two err differently (one picks a few members, the other weighs all of them), and the mean of two
    # ensembles varies less than either: it stands unless one of them beats it beyond noise, on SWITCH_FOLDS
    # or more (on a forecast's two folds, the one with the better score did worse on the test than their mean
    # in 10 of 12 runs, once when it was better on both folds; RESULTS.md, forecast.py).
    collapsed = _collapse(problem, stacked, members)
    if collapsed:  # a second level that fails on a fold is of no use to this run: the greedy blend stands
        log.info("stack: %s; dropped", collapsed)
        result.info["note"] = f"greedy blend; the stack was dropped: {collapsed}; " + result.info["note"]
        result.info["stack_dropped"] = collapsed
        return result
    halves = finish("ensemble", problem, folds, (result.oof + stacked.oof) / 2, (result.test + stacked.test) / 2,
                    0.0, kind="ensemble")
    result.info["halves"], result.info["halves_folds"] = halves.mean, halves.fold_scores
    # the mean of the two stands unless one of them beats it beyond noise (on every fold, or by more than twice the
    # standard error of the fold differences), on SWITCH_FOLDS folds or more
    better = [r for r in (result, stacked) if beats(problem, r, halves)]
    best = max(better, key=lambda r: sign * r.mean) if better else halves
    if best is result:
        result.info["note"] = f"greedy blend; stack held-out {stacked.mean:.5f}; " + result.info["note"]
        return result
    greedy_note = f"greedy blend held-out {result.mean:.5f}" + (f" ({limits.rstrip('; ')})" if limits else "")
    shares = stacked.info["shares"]
    # the report's chart: each member's share of the stack's (standardised) coefficients, or of both halves
    if best is stacked:
        method, weights = "stack", shares
        note = f"stack: a linear model on {len(members)} members' out-of-fold predictions, cross-fitted; {greedy_note}"
    else:
        method = "halves"
        weights = {m.name: round(0.5 * named.get(m.name, 0.0) + 0.5 * shares[m.name], 3) for m in members}
        note = (f"half the greedy blend, half the stack (a linear model on {len(members)} members' out-of-fold "
                f"predictions), cross-fitted; {greedy_note}, stack {stacked.mean:.5f}")
    best.seconds = stacked.seconds + result.seconds
    best.info = result.info | stacked.info | {
        "method": method, "weights": weights, "greedy": result.mean, "greedy_weights": named,
        "optimistic": best.mean, "note": note}
    return best
