"""One fold assignment per run, shared by every model, saved in the run directory.

Stratified K-fold for classification, K-fold for regression and multitarget, stratified
on the rarest label for multilabel (so every fold sees its positives), grouped K-fold when the
competition names a group column (rows of one group never straddle train and
validation), and an expanding window in time when the folds are "time" (the rows are
cut into k + 1 stretches of time; the first only trains, marked -1, and fold f validates
stretch f + 1 with a model trained on every earlier row, as a forecast is made: its
validation rows are all later than its training rows, and the first stretch's rows get
no out-of-fold prediction).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold

from automl.errors import AutomlError
from automl.preprocess import Features, Preprocessor
from automl.problem import Problem


def make_folds(problem: Problem, k: int = 5, seed: int = 0) -> np.ndarray:
    """Return the validation fold (0..k-1) of each labelled train row; -1 for rows that only train (the
    first stretch of an expanding window), EXTRA_FOLD for --extra-train rows (they train in every fold)."""
    if problem.extra:  # folds over the competition's own rows; the extra rows after them never validate
        from automl.extra import EXTRA_FOLD

        return np.concatenate([make_folds(problem.own(), k, seed), np.full(problem.extra, EXTRA_FOLD, np.int64)])
    n = len(problem.y)
    if k < 2 or k > n:
        raise AutomlError(f"--folds {k}: expected a number from 2 to the {n} training rows")
    comp, train = problem.comp, problem.labelled
    strategy = comp.folds
    strata = _strata(problem, k)
    if strategy == "auto":
        strategy = "stratified" if strata is not None else "kfold"
    if strategy == "stratified":
        if strata is None:
            raise AutomlError(f"{comp.slug}: folds 'stratified' needs classes to balance, and this {comp.task} target "
                              f"has none with {k} rows or more of each; use folds: kfold")
        smallest = np.bincount(strata).min()
        if smallest < k:
            raise AutomlError(f"--folds {k}: the rarest class has only {smallest} rows; use --folds {max(2, smallest)} or fewer")
        splitter = StratifiedKFold(k, shuffle=True, random_state=seed).split(np.zeros(n), strata)
    elif strategy == "kfold":
        splitter = KFold(k, shuffle=True, random_state=seed).split(np.zeros(n))
    elif strategy == "group":
        groups = train[comp.group_column].to_numpy()
        splitter = GroupKFold(k, shuffle=True, random_state=seed).split(np.zeros(n), groups=groups)
    else:
        times = pd.to_datetime(train[comp.time_column], errors="coerce", format="mixed").to_numpy()
        return _expanding(times, k, comp.time_column)
    folds = np.empty(n, dtype=np.int64)
    for fold, (_, valid) in enumerate(splitter):
        folds[valid] = fold
    return folds


def _strata(problem: Problem, k: int) -> np.ndarray | None:
    """What stratified folds balance: the class codes; for multilabel the rarest label among those with
    at least k rows of each value (None when no label has: K-fold then); None for values."""
    if problem.comp.is_classification:
        return problem.y
    if not problem.multilabel:
        return None
    rarer = np.minimum(problem.y.sum(axis=0), len(problem.y) - problem.y.sum(axis=0))  # (t,) rows of each label's rarer value
    usable = np.flatnonzero(rarer >= k)
    return problem.y[:, usable[np.argmin(rarer[usable])]] if len(usable) else None


def _expanding(times: np.ndarray, k: int, column: str) -> np.ndarray:
    """k + 1 stretches of time with about as many rows each, the first marked -1 (it only trains).

    Rows of one time stay in one stretch, so every validation row is later than every row
    its fold trains on; rows without a time only train.
    """
    known = ~pd.isna(times)
    stamps, inverse, counts = np.unique(times[known], return_inverse=True, return_counts=True)
    stretch = np.minimum((np.cumsum(counts) - counts) * (k + 1) // known.sum(), k)  # by the rows at earlier times
    if len(np.unique(stretch)) < k + 1:
        raise AutomlError(f"--folds {k}: time column {column!r} cannot be cut into {k + 1} stretches of time "
                          f"({len(stamps)} distinct times); use fewer folds")
    folds = np.full(len(times), -1, dtype=np.int64)
    folds[known] = stretch[inverse] - 1
    return folds


@dataclass(frozen=True)
class Split:
    """One fold's training and validation rows."""

    train_rows: np.ndarray
    valid_rows: np.ndarray


def splits(folds: np.ndarray) -> list[Split]:
    """Each fold's rows; with rows marked -1 (an expanding window in time) a fold trains only on earlier folds' rows.
    Rows marked below -1 (--extra-train's) train in every fold."""
    if (folds == -1).any():  # (extra rows are below every fold's number: earlier, they train in each)
        return [Split(np.flatnonzero(folds < f), np.flatnonzero(folds == f)) for f in range(int(folds.max()) + 1)]
    return [Split(np.flatnonzero(folds != f), np.flatnonzero(folds == f)) for f in range(int(folds.max()) + 1)]


def predicted_rows(folds: list[Split]) -> np.ndarray:
    """The rows some fold validates: every row, but for those an expanding window only trains on."""
    return np.unique(np.concatenate([f.valid_rows for f in folds]))


def weights_for_test(folds: list[Split]) -> np.ndarray:
    """How the fold models' test predictions are averaged: equally; but for an expanding window
    in time only the last fold's model counts, since it trained on the latest rows and a forecast
    from a model that stopped earlier misses the trend since (a tree cannot extrapolate it)."""
    expanding = len(folds) > 1 and np.intersect1d(folds[0].train_rows, predicted_rows(folds)).size == 0
    return np.eye(len(folds))[-1] if expanding else np.full(len(folds), 1 / len(folds))


@dataclass(frozen=True)
class Fold(Split):
    """One fold's rows and its features, from a Preprocessor fitted on its train rows only."""

    train: Features
    valid: Features
    test: Features


FIT_ROWS = 200_000  # medians, quantiles, levels and vocabularies are learned from at most this many rows


PARALLEL_ROWS = 50_000  # rows from which folds are preprocessed in threads
PARALLEL_FOLDS = 2  # folds preprocessed at once


def fold_features(problem: Problem, folds: np.ndarray, **options) -> list[Fold]:
    """Fit one Preprocessor per fold (no model sees its validation rows' statistics)."""
    comp = problem.comp
    settings = {"text_columns": comp.text_columns, "date_columns": comp.date_columns,
                "image_shape": comp.image_shape, **options}

    def one(i: int, split: Split) -> Fold:
        fit_rows = split.train_rows
        if len(fit_rows) > FIT_ROWS:  # statistics from a sample of the fold's training rows: fitting stays seconds
            fit_rows = np.sort(np.random.default_rng(i).choice(fit_rows, FIT_ROWS, replace=False))
        pre = Preprocessor(**settings).fit(problem.train.iloc[fit_rows])
        return Fold(split.train_rows, split.valid_rows, pre.transform(problem.train.iloc[split.train_rows]),
                    pre.transform(problem.train.iloc[split.valid_rows]), pre.transform(problem.test))

    # Folds in threads on large tables: interpolation, sorting and factorizing release the GIL
    # (300,000 rows: 16.4 s in sequence on 2 cores, 11.8 s in 2 threads). At most PARALLEL_FOLDS at
    # once (each holds a fold's frames and temporaries); in sequence when tokenizing text, pure Python.
    parts = list(enumerate(splits(folds)))
    threads = min(len(os.sched_getaffinity(0)), len(parts), PARALLEL_FOLDS)
    if len(problem.train) < PARALLEL_ROWS or options.get("tokenize"):
        threads = 1
    if threads <= 1:
        return [one(i, split) for i, split in parts]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda part: one(*part), parts))


def take(features: Features, rows: np.ndarray) -> Features:
    """The same features for a subset of rows (a row sample for a search on a large table)."""
    return replace(features, numeric=features.numeric[rows], categorical=features.categorical[rows],
                   text={k: v[rows] for k, v in features.text.items()},
                   images=None if features.images is None else features.images[rows],
                   tokens=None if features.tokens is None else features.tokens[rows])
