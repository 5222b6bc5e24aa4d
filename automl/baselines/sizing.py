"""Sizing a baseline to its share of the budget from a timed probe on a row sample."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from automl.baselines.fitting import Size, fit_one
from automl.baselines.members import Baseline
from automl.baselines.result import Skipped
from automl.folds import Fold
from automl.problem import Problem

PROBE_ROWS = 5000
MIN_BOOSTED_ROWS = 5000  # a boosted model short of time trains on this many rows at least: its clock bounds it


def plan_size(baseline: Baseline, problem: Problem, fold: Fold, seed: int, per_fold: float, folds: int = 1,
              device: str = "cpu") -> Size:
    """Estimate one fold's cost from a timed fit on a row sample, and size the model to `per_fold` seconds.

    A fold predicts every validation and test row whatever it trains on: that part, timed on the
    probe's predictions, does not shrink with a row sample (at a million rows, hist_gb predicting
    533,000 rows with 100 rounds took 6.4 s of a fold given 4). It is kept out of the training's
    time first; where it would leave little, fewer trees or rounds make it cheaper. The probes' own
    time comes out of the `folds` folds' shares."""
    began, n = time.monotonic(), len(fold.train_rows)
    # Small tables: a fold costs little more than a probe; folds after an overrun shrink. A TF-IDF
    # probe's vocabulary from a sample says little of the full one: probe text only when large.
    if n <= PROBE_ROWS or (baseline.inputs == "tfidf" and n <= 50_000):
        return Size()
    m = min(n, max(PROBE_ROWS, min(50_000, n // 10)))  # large enough that fixed costs do not dominate
    predicted = len(fold.valid_rows) + len(fold.test)  # rows every fold predicts
    probe_units = {"dense": 8, "native": 10}.get(baseline.inputs) if baseline.name != "dummy" else None
    took, per_row = _timed_probe(baseline, problem, fold, seed, Size(units=probe_units, rows=m), device)
    checked = min(m, len(fold.valid_rows))  # the validation rows a probe predicts
    training = took - per_row * checked
    scale = (n / m) ** (1.1 if probe_units else 1.0)
    per_fold = max(0.0, per_fold - (time.monotonic() - began) / folds)
    if probe_units and baseline.inputs == "dense":  # forests: cost per tree, at every row, and predicting
        train_tree = training / probe_units * scale
        predict_tree = per_row / probe_units * predicted
        trees = int(min(300, per_fold / (train_tree + predict_tree)))
        if trees >= 300:
            return Size()
        if trees >= 30:
            return Size(units=trees // 10 * 10, predicting=trees // 10 * 10 * predict_tree)
        room = per_fold - 30 * predict_tree
        rows = int(n * (max(room, 0.0) / (30 * train_tree)) ** (1 / 1.1))
        return _sampled(baseline, Size(units=30, rows=rows, predicting=30 * predict_tree), n, per_fold)
    if baseline.inputs == "native":  # hist_gb: binning and set-up, then a cost per round, at every row
        if took > 0.2 * per_fold * folds:  # a second probe would eat the share: its first one's rounds tell the cost
            more, more_per_row = took, per_row
            per_round = max(training, 1e-6) / probe_units * scale
            fixed = 0.0
        else:
            more, more_per_row = _timed_probe(baseline, problem, fold, seed, Size(units=5 * probe_units, rows=m), device)
            per_fold = max(0.0, per_fold - more / folds)
            per_round = max(more - more_per_row * checked - training, 1e-6) / (4 * probe_units) * scale
            fixed = max(training - probe_units * per_round / scale, 0.0) * scale
        predict_round = more_per_row / (5 * probe_units) * predicted
        rounds = 100  # what early stopping usually leaves; fewer where predicting them would take most of the share
        if rounds * predict_round > per_fold / 2:
            rounds = max(20, int(per_fold / 2 / predict_round))
        predicting = rounds * predict_round
        if rounds == 100 and per_fold >= fixed + 100 * per_round + predicting:  # rounds then added against the clock
            return Size(predicting=predicting)
        rows = int(n * max(per_fold - predicting, 0.0) / (fixed + rounds * per_round))
        # boosting stops on the fold's clock (its predictions then cost as few rounds): never skipped for what
        # its probes took
        rows = max(rows, min(n, MIN_BOOSTED_ROWS))
        return _sampled(baseline, Size(units=None if rounds == 100 else rounds, rows=rows, learning_rate=0.15,
                                       predicting=predicting), n, per_fold)
    predicting, full = per_row * predicted, training * scale
    if full + predicting <= per_fold:
        return Size(predicting=predicting)
    return _sampled(baseline, Size(rows=int(n * max(per_fold - predicting, 0.0) / full), predicting=predicting), n, per_fold)


def _timed_probe(baseline: Baseline, problem: Problem, fold: Fold, seed: int, size: Size,
                 device: str = "cpu") -> tuple[float, float]:
    """Seconds a fit on the size's row sample took, predicting as many validation rows; and those
    predictions' seconds per row (their inputs built, as a fold builds them)."""
    started = time.monotonic()
    _, _, _, info = fit_one(baseline, problem, fold, seed, size, np.random.default_rng(seed), None, probe=True,
                            device=device)
    return time.monotonic() - started, info["predict_per_row"]


def _sampled(baseline: Baseline, size: Size, n: int, per_fold: float) -> Size:
    if size.rows is None or size.rows >= n:
        return replace(size, rows=None)
    if size.rows < 1000:
        raise Skipped(f"skipped: a fold would take longer than its {per_fold:.1f}s share even on a 1,000-row sample; "
                      "give more time with --timeout")
    return size


def resize(size: Size, baseline: Baseline, took: float, allowed: float, n: int) -> Size:
    """After a fold: shrink the next folds when this one overran their share."""
    if took <= 1.2 * allowed or allowed <= 0:
        return size
    ratio = max(allowed, 0.05 * took) / took
    if size.units is not None or baseline.inputs in ("dense", "native"):
        units = size.units or (300 if baseline.inputs == "dense" else 1000)
        return replace(size, units=max(10, int(units * ratio)))
    return replace(size, rows=max(1000, int((size.rows or n) * ratio)))
