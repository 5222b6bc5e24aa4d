"""One fold assignment per run, shared by every model, saved in the run directory.

Stratified K-fold for classification, K-fold for regression, grouped K-fold when the
competition names a group column (rows of one group never straddle train and
validation), and time-ordered blocks when it names a time column (fold k holds the
k-th stretch of time, so validation is never scored on rows shuffled among its past).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold

from automl.errors import AutomlError
from automl.preprocess import Features, Preprocessor
from automl.problem import Problem


def make_folds(problem: Problem, k: int = 5, seed: int = 0) -> np.ndarray:
    """Return the validation fold (0..k-1) of each labelled train row."""
    n = len(problem.y)
    if k < 2 or k > n:
        raise AutomlError(f"--folds {k}: expected a number from 2 to the {n} training rows")
    comp, train = problem.comp, problem.labelled
    strategy = comp.folds
    if strategy == "auto":
        strategy = "stratified" if comp.is_classification else "kfold"
    if strategy == "stratified":
        smallest = np.bincount(problem.y).min()
        if smallest < k:
            raise AutomlError(f"--folds {k}: the rarest class has only {smallest} rows; use --folds {max(2, smallest)} or fewer")
        splitter = StratifiedKFold(k, shuffle=True, random_state=seed).split(np.zeros(n), problem.y)
    elif strategy == "kfold":
        splitter = KFold(k, shuffle=True, random_state=seed).split(np.zeros(n))
    elif strategy == "group":
        groups = train[comp.group_column].to_numpy()
        splitter = GroupKFold(k, shuffle=True, random_state=seed).split(np.zeros(n), groups=groups)
    else:  # time: contiguous stretches of time
        order = np.argsort(pd.to_datetime(train[comp.time_column], errors="coerce", format="mixed").to_numpy(), kind="stable")
        folds = np.empty(n, dtype=np.int64)
        for fold, rows in enumerate(np.array_split(order, k)):
            folds[rows] = fold
        return folds
    folds = np.empty(n, dtype=np.int64)
    for fold, (_, valid) in enumerate(splitter):
        folds[valid] = fold
    return folds


@dataclass(frozen=True)
class Split:
    """One fold's training and validation rows."""

    train_rows: np.ndarray
    valid_rows: np.ndarray


def splits(folds: np.ndarray) -> list[Split]:
    return [Split(np.flatnonzero(folds != f), np.flatnonzero(folds == f)) for f in range(int(folds.max()) + 1)]


@dataclass(frozen=True)
class Fold(Split):
    """One fold's rows and its features, from a Preprocessor fitted on its train rows only."""

    train: Features
    valid: Features
    test: Features


def fold_features(problem: Problem, folds: np.ndarray, **options) -> list[Fold]:
    """Fit one Preprocessor per fold (no model sees its validation rows' statistics)."""
    comp = problem.comp
    settings = {"text_columns": comp.text_columns, "date_columns": comp.date_columns,
                "image_shape": comp.image_shape, **options}
    result = []
    for split in splits(folds):
        pre = Preprocessor(**settings).fit(problem.train.iloc[split.train_rows])
        result.append(Fold(split.train_rows, split.valid_rows, pre.transform(problem.train.iloc[split.train_rows]),
                           pre.transform(problem.train.iloc[split.valid_rows]), pre.transform(problem.test)))
    return result


def take(features: Features, rows: np.ndarray) -> Features:
    """The same features for a subset of rows (a row sample for a search on a large table)."""
    return replace(features, numeric=features.numeric[rows], categorical=features.categorical[rows],
                   text={k: v[rows] for k, v in features.text.items()},
                   images=None if features.images is None else features.images[rows],
                   tokens=None if features.tokens is None else features.tokens[rows])
