"""One fold assignment per run, shared by every model, saved in the run directory.

Stratified K-fold for classification, K-fold for regression and multitarget, stratified
on the rarest label for multilabel (so every fold sees its positives), grouped K-fold when the
competition names a group column (rows of one group never straddle train and
validation), and windows in time when the folds are "time": a forecast. Its validation
stretches look as far ahead as the test does: when every test time is later than train's,
each validation stretch spans as long as the test does, the last ends where train ends,
and the first fold trains on half the history or more (a model of a few months, asked to
forecast a year, says little of one trained on every row): so fewer than k folds where k
stretches would not leave that, down to two, and shorter stretches only then. Fold f
trains on the rows at least as far before its stretch as the test starts after
train's end (the gap; rows inside it train only later folds). The rows before the first
stretch only train (marked -1) and get no out-of-fold prediction. With no later test
(a YAML's `folds: time`), the rows are cut into k + 1 stretches of about equal rows.

A forecast's test predictions come from a model fitted once more on every row (the
`refit` of its last fold: the same settings, the preprocessing fitted on every row), so
that the test is forecast from train's end, as the folds forecast from theirs.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold

from automl.errors import AutomlError
from automl.preprocess import Features, Preprocessor
from automl.problem import Problem


def make_folds(problem: Problem, k: int = 5, seed: int = 0) -> np.ndarray:
    """Return the validation fold (0..k-1) of each labelled train row; -1 for rows that only train (the
    first stretch of an expanding window), EXTRA_FOLD for --extra-train rows (they train in every fold, or on
    folds in time, in those whose own training rows reach their time: an (n, 2) assignment then)."""
    if problem.extra:  # folds over the competition's own rows; the extra rows after them never validate
        from automl.extra import EXTRA_FOLD

        own = make_folds(problem.own(), k, seed)
        if problem.comp.folds == "time" and problem.comp.time_column in problem.labelled.columns:
            return _extra_in_time(problem, own, EXTRA_FOLD)
        return np.concatenate([own, np.full((problem.extra, *own.shape[1:]), EXTRA_FOLD, np.int64)])
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
        times = _times(train[comp.time_column])
        horizon = forecast_horizon(problem)
        if horizon is None:
            return _expanding(times, k, comp.time_column)
        return _ahead(times, k, comp.time_column, *horizon, slug=comp.slug)
    folds = np.empty(n, dtype=np.int64)
    for fold, (_, valid) in enumerate(splitter):
        folds[valid] = fold
    return folds


def _extra_in_time(problem: Problem, own: np.ndarray, mark: int) -> np.ndarray:
    """Folds in time with --extra-train rows placed by their own times: an extra row trains the folds whose
    own training rows reach its time, never one that validates before it (that would show a fold the future
    it forecasts); rows later than every fold's training rows train only the refit on every row, rows without
    a time every fold. The (n, 2) assignment: validation fold (`mark` for extra rows) and first fold trained."""
    own = own if own.ndim == 2 else np.column_stack([own, own + 1])  # 1-D: a row trains the folds after its own
    times = _times(problem.labelled[problem.comp.time_column])
    own_times, extra_times = times[:problem.own_rows], times[problem.own_rows:]
    k = int(own[:, 0].max()) + 1
    # each fold's latest training time (NaT-free: own rows without a time train every fold, as do extra ones);
    # a fold whose own training rows all lack a time takes no extra row that has one
    timed, earliest = ~pd.isna(own_times), np.datetime64(np.iinfo(np.int64).min + 1, "ns")
    ends = np.array([own_times[(own[:, 1] <= f) & timed].max(initial=earliest) for f in range(k)])
    first = np.searchsorted(ends, extra_times, side="left")  # the first fold whose training rows reach it; k: none
    first[pd.isna(extra_times)] = 0
    extra = np.column_stack([np.full(problem.extra, mark, np.int64), first.astype(np.int64)])
    return np.concatenate([own, extra])


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


def _times(values: pd.Series) -> np.ndarray:
    """Naive datetime64 values of a time column (NaT where missing or unreadable), each distinct value parsed
    once. Dates with offsets (one crossing daylight saving) are read in UTC; numbers (a month's index, unix
    seconds) keep their order, read as pandas reads numbers."""
    if pd.api.types.is_datetime64_any_dtype(values):
        stamps = values.dt.tz_convert(None) if values.dt.tz is not None else values
        return stamps.to_numpy(dtype="datetime64[ns]")
    codes, distinct = pd.factorize(values, use_na_sentinel=True)
    distinct = pd.Series(distinct)
    if pd.api.types.is_numeric_dtype(distinct):
        parsed = pd.to_datetime(distinct, errors="coerce")
    else:
        text = distinct.astype(str)
        try:
            parsed = pd.to_datetime(text, errors="coerce", format="mixed")
        except ValueError:  # offsets that differ (daylight saving): read in UTC below
            parsed = None
        if parsed is None or parsed.dtype == object or getattr(parsed.dt, "tz", None) is not None:
            parsed = pd.to_datetime(text, errors="coerce", format="mixed", utc=True).dt.tz_convert(None)
    times = np.append(parsed.to_numpy(dtype="datetime64[ns]"), np.datetime64("NaT", "ns"))
    return times[codes]  # code -1 (missing) is the NaT at the end


class Horizon(NamedTuple):
    """How far ahead the test lies: its first time is `gap` after train's last, and it spans `span`
    (its last time minus its first plus one `step`, the usual spacing of train's times)."""

    gap: np.timedelta64
    span: np.timedelta64
    step: np.timedelta64


def forecast_horizon(problem: Problem) -> Horizon | None:
    """The test's horizon when every test time is later than every train time; else None."""
    column = problem.comp.time_column
    if problem.comp.folds != "time" or column not in problem.test.columns or column not in problem.labelled.columns:
        return None
    train = _times(problem.labelled[column].iloc[:problem.own_rows])
    test = _times(problem.test[column])
    train, test = train[~pd.isna(train)], test[~pd.isna(test)]
    if not len(train) or not len(test) or test.min() <= train.max():
        return None
    distinct = np.unique(train)
    step = np.median(np.diff(distinct)) if len(distinct) > 1 else np.timedelta64(1, "D")
    step = max(step.astype("timedelta64[ns]"), np.timedelta64(1, "ns"))
    return Horizon(test.min() - train.max(), test.max() - test.min() + step, step)


def _ahead(times: np.ndarray, k: int, column: str, gap, span, step, slug: str = "SLUG") -> np.ndarray:
    """k validation stretches of `span` each, the last ending at the latest time, and half the history or more
    before them (fewer stretches where k would not leave it, down to two; then shorter ones); fold f trains on
    the rows at least `gap` before its stretch. Returns the (n, 2) assignment: each row's validation fold (-1: it only trains)
    and the first fold it trains, or (n,) validation folds where every row trains the folds after its own."""
    known = ~pd.isna(times)
    start, end = times[known].min(), times[known].max() + step  # the times cover [start, end)
    room = (end - start) - (gap - step)  # what the stretches can fill: the first fold's gap is not trained on
    # The first fold trains on half the history or more (a model of a few months' rows, asked to forecast as
    # far as the test lies, says little of one trained on every row): fewer folds where k stretches as long
    # as the test would not leave it that, down to two; shorter stretches only then.
    asked, k = k, min(k, max(2, int((room / 2) / span)))
    span = min(span, room / 2 / k)
    if span < step:
        raise AutomlError(f"--folds {asked}: time column {column!r} spans {_days(end - start)}, too short for "
                          f"{k} validation stretches {_days(gap)} after their training rows, as the test lies "
                          f"after train's; set folds: kfold in competitions/{slug}.yaml (`automl inspect {slug} --save` "
                          f"writes it) to validate on any rows")
    distinct = np.unique(times[known])
    starts = end - span * np.arange(k, 0, -1)  # (k,) each stretch's first time, the last stretch ending at `end`
    later = np.minimum(np.searchsorted(distinct, starts), len(distinct) - 1)
    earlier = np.maximum(later - 1, 0)
    nearer = np.abs(distinct[earlier] - starts) < np.abs(distinct[later] - starts)
    starts = distinct[np.where(nearer, earlier, later)]  # at the time some row has nearest each
    stretch = np.searchsorted(starts, times[known], side="right") - 1  # -1 before the first stretch
    # the first stretch at least `gap` later, give or take half a step (a month's gap is 28 to 31 days)
    first = np.searchsorted(starts, times[known] + gap - step / 2, side="left")
    if len(np.unique(stretch)) < k + 1:
        raise AutomlError(f"--folds {asked}: time column {column!r} cannot be cut into {k + 1} stretches of time "
                          f"({len(distinct)} distinct times); use fewer folds")
    folds = np.full((len(times), 2), -1, dtype=np.int64)
    folds[known, 0], folds[known, 1] = stretch, first
    folds[~known, 1] = 0  # rows without a time train every fold, as an expanding window's first stretch does
    if ((folds[:, 1] <= np.arange(k)[:, None]).sum(axis=1) == 0).any():
        raise AutomlError(f"--folds {asked}: time column {column!r} leaves a fold no training rows "
                          f"{_days(gap)} before its validation stretch; use fewer folds")
    return folds[:, 0] if (folds[known, 1] == folds[known, 0] + 1).all() else folds


def fold_ranges(problem: Problem, assignment: np.ndarray) -> dict | None:
    """A forecast's folds in time: the test's horizon and each fold's training and validation dates, and how
    far ahead of its training rows it validates (None for folds not in time)."""
    column = problem.comp.time_column
    if problem.comp.folds != "time" or column not in problem.labelled.columns:
        return None
    values = problem.labelled[column]
    times = _times(values.iloc[:problem.own_rows])
    horizon = forecast_horizon(problem.own())
    # a numeric time (a month's index, unix seconds) reads as nanoseconds since 1970: shown as its own numbers
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_datetime64_any_dtype(values)
    day = np.timedelta64(1, "ns") if numeric else np.timedelta64(1, "D")

    def text(stamp) -> str:
        if numeric:
            return str(int(np.datetime64(stamp, 'ns').astype(np.int64)))
        return str(pd.Timestamp(stamp).date()) if pd.Timestamp(stamp).normalize() == stamp else str(pd.Timestamp(stamp))

    folds = []
    for f, split in enumerate(splits(assignment[:problem.own_rows])):
        train, valid = times[split.train_rows], times[split.valid_rows]
        train, valid = train[~pd.isna(train)], valid[~pd.isna(valid)]
        folds.append({"fold": f + 1, "train": [text(train.min()), text(train.max())], "train_rows": len(split.train_rows),
                      "valid": [text(valid.min()), text(valid.max())], "valid_rows": len(split.valid_rows),
                      "ahead_days": [round(float((valid.min() - train.max()) / day), 2),
                                     round(float((valid.max() - train.max()) / day), 2)]})
    ranges = {"column": column, "unit": f"{column} units" if numeric else "days", "folds": folds}
    if horizon is not None:
        test = _times(problem.test[column])
        test = test[~pd.isna(test)]
        last = horizon.gap + horizon.span - horizon.step
        ranges["test"] = {"dates": [text(test.min()), text(test.max())],
                          "ahead_days": [round(float(horizon.gap / day), 2), round(float(last / day), 2)]}
    return ranges


def describe_ranges(ranges: dict) -> list[str]:
    """Lines for a terminal or a report: the test's horizon, then each fold's dates."""
    if "error" in ranges:
        return [f"folds: {ranges['error']}"]
    lines, unit = [], ranges.get("unit", "days")
    if "test" in ranges:
        t = ranges["test"]
        lines.append(f"test: {t['dates'][0]} to {t['dates'][1]}, {t['ahead_days'][0]:g} to {t['ahead_days'][1]:g} {unit} "
                     f"after train's last {ranges['column']}")
    for f in ranges["folds"]:
        lines.append(f"fold {f['fold']}: trains on {f['train'][0]} to {f['train'][1]} ({f['train_rows']:,} rows), "
                     f"validates {f['valid'][0]} to {f['valid'][1]} ({f['valid_rows']:,} rows), "
                     f"{f['ahead_days'][0]:g} to {f['ahead_days'][1]:g} {unit} ahead")
    return lines


def _days(delta) -> str:
    days = delta / np.timedelta64(1, "D")
    return f"{days:g} day{'s' if days != 1 else ''}" if days >= 1 else f"{delta / np.timedelta64(1, 'h'):g} hours"


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
    Rows marked below -1 (--extra-train's) train in every fold. An (n, 2) assignment (a forecast whose test
    starts a gap after train's end) holds each row's validation fold and the first fold it trains."""
    if folds.ndim == 2:
        valid, first = folds[:, 0], folds[:, 1]
        return [Split(np.flatnonzero(first <= f), np.flatnonzero(valid == f)) for f in range(int(valid.max()) + 1)]
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
    # a forecast's last fold: the same fold refitted on every row (its preprocessing too), which forecasts
    # the test from train's end; its valid rows are the last stretch's, seen in training (no early stopping)
    refit: Fold | None = None


def forecasting_fold(folds: list[Fold]) -> Fold | None:
    """The fold refitted on every row whose model alone forecasts the test (a forecast), else None."""
    return folds[-1].refit if folds else None


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
    forecast = problem.comp.folds == "time" and len(parts) > 1
    if forecast:  # one more: every row, to forecast the test from train's end
        parts.append((len(parts), Split(np.arange(len(problem.y)), parts[-1][1].valid_rows)))
    threads = min(len(os.sched_getaffinity(0)), len(parts), PARALLEL_FOLDS)
    if len(problem.train) < PARALLEL_ROWS or options.get("tokenize"):
        threads = 1
    if threads <= 1:
        made = [one(i, split) for i, split in parts]
    else:
        with ThreadPoolExecutor(threads) as pool:
            made = list(pool.map(lambda part: one(*part), parts))
    if forecast:
        refit = made.pop()
        made[-1] = replace(made[-1], refit=refit)
    return made


def take(features: Features, rows: np.ndarray) -> Features:
    """The same features for a subset of rows (a row sample for a search on a large table)."""
    return replace(features, numeric=features.numeric[rows], categorical=features.categorical[rows],
                   text={k: v[rows] for k, v in features.text.items()},
                   images=None if features.images is None else features.images[rows],
                   tokens=None if features.tokens is None else features.tokens[rows])
