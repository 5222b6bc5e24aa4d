"""The fold loop: every baseline cross-validated on the run's folds with the competition metric."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from automl.baselines.fitting import Size, fit_one, predict
from automl.baselines.gbdt import Failed, cuda, missing
from automl.baselines.members import BASELINES
from automl.baselines.result import CVResult, Skipped, finish
from automl.baselines.sizing import plan_size, resize
from automl.cuts import apply_cuts, cross_fitted
from automl.errors import AutomlError, UsageError
from automl.folds import Fold, forecasting_fold, predicted_rows, weights_for_test
from automl.metrics import get_metric
from automl.problem import Problem


def cross_validate(name: str, problem: Problem, folds: list[Fold], seed: int = 0,
                   on_fold: Callable[[int], None] | None = None, seconds: float | None = None,
                   device: str = "cpu", keep_test_folds: bool = False, trend: bool = False) -> CVResult:
    """Fit baseline `name` on every fold; score out-of-fold with the competition metric.

    With `seconds`, the baseline is sized to fit that time: a timed fit on a row sample
    estimates its cost first; forests then grow trees until their share of each fold is
    used, boosting gets as many rounds as fit, and a model too costly for every row
    trains on a row sample (the leaderboard note says so). `Skipped` when even that
    would not fit; `Failed` when a GBDT library fails on a fold. `device` (cpu, cuda, auto)
    is where the GBDTs boost. `keep_test_folds`: the result keeps each fold model's test predictions
    too (`test_folds`, for --pseudo-label's teachers). On a forecast the test is predicted by the last fold's
    model fitted once more on every row (its rounds and trees), a part of the time like a fold; `trend`: the
    trees learn the target less a trend in time (automl.trend).
    """
    if name not in BASELINES:
        raise AutomlError(f"--models: unknown baseline {name!r}; expected one of {', '.join(BASELINES)}")
    baseline = BASELINES[name]
    why = baseline.library and missing(baseline.library)
    if why:
        raise UsageError(f"--models {name}: {why}")
    if seconds is not None and seconds <= 0 and name != "dummy":  # not even a probe: it takes seconds at scale
        raise Skipped("skipped: the baselines' time was used up before it; give more time with --timeout")
    if baseline.own_process and not cuda(device) and sys.platform.startswith("linux") and not _IN_CHILD:
        return in_child(lambda report: cross_validate(name, problem, folds, seed, report, seconds, device, keep_test_folds,
                                                      trend),
                        on_fold, name, None if seconds is None else seconds * 1.5 + 30)
    if baseline.cuts and problem.n_classes:
        return _with_cuts(name, problem, folds, seed, on_fold, seconds, device)
    oof = np.zeros(problem.pred_shape(len(problem.y)))
    test, weights = np.zeros(problem.pred_shape(len(problem.test))), weights_for_test(folds)
    refit = forecasting_fold(folds)
    parts = len(folds) + (refit is not None)  # a forecast's refit on every row takes a fold's part of the time
    start = time.monotonic()
    info, notes = {}, []
    size = Size() if seconds is None or name == "dummy" else plan_size(baseline, problem, folds[0], seed,
                                                                       seconds / parts, parts, device)
    rng = np.random.default_rng(seed)
    grown, rounds, boosted, own, stale = [], [], [], [], ""
    for i, fold in enumerate(folds):
        if on_fold:
            on_fold(i)
        fold_end = None if seconds is None else start + seconds * (i + 1) / parts
        fold_start = time.monotonic()
        # trees and rounds are added until the time left is what predicting the fold's rows takes
        until = None if fold_end is None else fold_end - size.predicting
        try:
            model, x_valid, x_test, info_fold = fit_one(baseline, problem, fold, seed, size, rng, until, device=device,
                                                        trend=trend)
            oof[fold.valid_rows] = predict(model, x_valid, problem)
            if refit is not None and i == len(folds) - 1:  # the test is forecast from train's end
                now = time.monotonic()
                if seconds is not None and start + seconds - now < 0.5 * (now - fold_start):
                    stale = "the test from the last fold's model: too little of its time was left to refit it on every row"
                else:
                    until = None if seconds is None else start + seconds - size.predicting
                    model, x_test, stale = _refitted(baseline, problem, refit, seed, size, rng, until, device, trend,
                                                     model, x_test)
        except Failed as error:
            raise Failed(f"fold {i + 1}: {error}") from error
        grown.append(getattr(model, "n_estimators", None))
        boosted.append(getattr(model, "n_iter_", None) if baseline.library else None)
        rounds.append(info_fold.pop("rounds", None))
        info |= info_fold
        if weights[i]:  # an expanding window forecasts the test with its last fold's model only
            fold_test = predict(model, x_test, problem)
            test += fold_test * weights[i]
            if keep_test_folds:
                own.append(fold_test)
        if seconds is not None and i < len(folds) - 1:
            size = resize(size, baseline, time.monotonic() - fold_start,
                          (start + seconds - time.monotonic()) / (parts - i - 1), len(fold.train_rows))
        notes.append(size.note(baseline, len(fold.train_rows)))
        if baseline.inputs == "native" and (size.units is not None or size.rows is not None and size.rows < len(fold.train_rows)):
            info["short_of_time"] = True  # fewer rounds or rows than early stopping would have taken
    note = next((n for n in reversed(notes) if n), "")
    if None not in grown and seconds is not None and min(grown) < 300:
        trees = f"{min(grown)}-{max(grown)}" if min(grown) != max(grown) else str(min(grown))
        note = f"{trees} trees, grown until the time share was used" + (note[note.index(" on "):] if " on " in note else "")
    stopped = [r for r in rounds if r is not None]
    if stopped and baseline.inputs == "native":
        info["short_of_time"] = True  # the clock ended boosting before early stopping did: more time would pay
    if stopped:
        span = f"{min(stopped)}-{max(stopped)}" if min(stopped) != max(stopped) else str(min(stopped))
        note = "; ".join(x for x in (f"boosting stopped by its time share after {span} rounds", note) if x)
    if None not in boosted:
        span = f"{min(boosted)}-{max(boosted)}" if min(boosted) != max(boosted) else str(min(boosted))
        note = "; ".join(x for x in (f"{span} rounds", note) if x)
    if trend:
        note = "; ".join(x for x in ("learnt relative to a trend in time", note) if x)
    if note or stale:
        info["note"] = "; ".join(x for x in (info.get("note"), note, stale) if x)
    result = finish(name, problem, folds, oof, test, time.monotonic() - start, info=info)
    if keep_test_folds and len(own) == len(folds):
        result.test_folds = np.stack(own).astype(np.float32)
    return result


def _refitted(baseline, problem: Problem, refit: Fold, seed: int, size: Size, rng, until: float | None, device: str,
              trend: bool, model, x_test) -> tuple:
    """The model that forecasts the test, its test inputs and a note: the fold's model fitted again on every row
    with the rounds and trees that model kept, the procedure its fold scored (boosting is deterministic: the
    fold's booster is these rounds trained on its rows, so the latest stretch's score is that procedure's
    backtest); or the fold's own model when the clock stopped the refit short of them. No score on rows the
    refit trained on decides anything."""
    again, _, x_again, info = fit_one(baseline, problem, refit, seed, size, rng, until, device=device, trend=trend,
                                      like=model)
    rounds = getattr(model, "kept_rounds_", None) or getattr(model, "n_iter_", None)
    trees = getattr(model, "n_estimators", None) if hasattr(model, "min_samples_leaf") else None
    if info.get("rounds") is not None:  # the clock ended its boosting
        short = f"after {info['rounds']} of {rounds} rounds" if rounds else "early"
    elif trees and getattr(again, "n_estimators", trees) < trees:
        short = f"at {again.n_estimators} of {trees} trees"
    else:
        return again, x_again, ""
    return model, x_test, f"the test from the last fold's model: the clock stopped its refit on every row {short}"


_IN_CHILD = False  # set in the forked process, which fits the model itself


def in_child(work: Callable[[Callable[[int], None]], CVResult], on_fold: Callable[[int], None] | None,
             name: str, limit: float | None = None) -> CVResult:
    """`work(on_fold)` in a forked copy of this process (the features are shared, not copied); its
    progress and its result, or its exception, come back through a pipe. Whatever memory the fit
    leaves behind ends with the process. The child dies with this process (and so never holds the
    run's lock alone), leaves Ctrl-C to it, and is stopped when it outlives `limit` seconds."""
    import gc
    import multiprocessing
    import signal

    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)

    def child() -> None:
        global _IN_CHILD
        _IN_CHILD = True
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops this process
        _die_with_parent()
        try:
            send.send(("done", work(lambda i: send.send(("fold", i)))))
        except BaseException as error:  # noqa: BLE001 - every outcome goes back to the parent
            if error.__cause__ is not None:  # the library's traceback would not survive the pipe: log it here
                logging.getLogger("automl").info("%s: %s", name, error, exc_info=error.__cause__)
                error.__cause__ = None
            send.send(("error", error))

    gc.freeze()  # the child's collector would otherwise write to (and so copy) every page of the heap
    try:
        process = context.Process(target=child, name=f"automl-{name}", daemon=True)
        process.start()
    finally:
        gc.unfreeze()
    send.close()
    until = None if limit is None else time.monotonic() + limit
    try:
        while True:
            if until is not None and not receive.poll(max(0.0, until - time.monotonic())):
                raise Failed(f"the process fitting it was still running {limit:.0f}s later; stopped")
            try:
                kind, value = receive.recv()
            except EOFError:
                process.join()
                raise Failed(f"the process fitting it ended without a result (exit {process.exitcode}"
                             f"{': out of memory?' if process.exitcode == -9 else ''})") from None
            except Exception as error:  # noqa: BLE001 - what came back could not be read
                raise Failed(f"its result could not be read from the process fitting it ({error})") from error
            if kind == "fold" and on_fold:
                on_fold(value)
            elif kind == "done":
                return value
            elif kind == "error":
                raise value
    finally:
        if process.is_alive():
            process.kill()
        process.join()
        receive.close()


def _die_with_parent() -> None:
    """Linux: this process gets SIGKILL when its parent dies."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _with_cuts(name: str, problem: Problem, folds: list[Fold], seed: int, on_fold, seconds: float | None,
               device: str) -> CVResult:
    """Regress the class code (classes in sorted order), then cut it into classes.

    Each fold's cut points are chosen on the other folds' out-of-fold predictions, so its
    score is not flattered; the test's on all of them. Predictions are one-hot class
    probabilities, the form every classifier hands on, so blending and submission need
    nothing new: in a blend the cut class is a vote of the member's weight.
    """
    codes = replace(problem, y=problem.y.astype(np.float64), classes=None, metric=get_metric("rmse"))
    values = cross_validate(name, codes, folds, seed, on_fold, seconds, device)
    start, k = time.monotonic(), problem.n_classes
    classes, cuts = cross_fitted(problem.y, values.oof, folds, k)
    oof = np.zeros((len(problem.y), k))
    rows = predicted_rows(folds)
    oof[rows, classes[rows]] = 1.0
    note = "cut points cross-fitted: chosen on the other folds"
    # JSON has no infinity: None is a cut beyond every prediction (a class that is never predicted)
    info = values.info | {"cuts": [round(float(c), 4) if np.isfinite(c) else None for c in cuts],
                          "note": "; ".join(x for x in (note, values.info.get("note")) if x)}
    return finish(name, problem, folds, oof, np.eye(k)[apply_cuts(values.test, cuts)],
                  values.seconds + time.monotonic() - start, info=info)
