"""The learning problem of one run: feature frames, encoded target and classes.

Built once from the competition spec and its tables, then handed to every model.
With several targets, y is (n, t): float64 values (multitarget) or int64 0/1 labels
(multilabel), and every model predicts (n, t): values, or each label's probability.
Feature columns are those train and test share, minus the id and the target(s): a
column only train has (bike-sharing's casual/registered) would leak the answer. An id
that holds dates is kept as a feature, since it says when a row happened.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from automl.competition import Competition, looks_like_date
from automl.errors import AutomlError
from automl.metrics import Metric, get_metric


@dataclass(frozen=True)
class Problem:
    comp: Competition
    metric: Metric
    train: pd.DataFrame  # feature columns only
    test: pd.DataFrame
    y: np.ndarray  # int64 class codes, or float64 values; (n, t) with several targets
    classes: np.ndarray | None  # class value per code, in sorted order
    labelled: pd.DataFrame  # every column of the labelled train rows (groups, times)
    extra: int = 0  # the last `extra` rows come from --extra-train: they train in every fold, never validate
    extra_files: tuple = ()  # each --extra-train file: {"path", "sha256", "rows"}

    @property
    def n_classes(self) -> int:
        return 0 if self.classes is None else len(self.classes)

    @property
    def n_targets(self) -> int:
        """Columns of y: several for multitarget and multilabel, else 1."""
        return 1 if self.y.ndim == 1 else self.y.shape[1]

    @property
    def multilabel(self) -> bool:
        return self.comp.task == "multilabel"

    @property
    def own_rows(self) -> int:
        """The competition's own labelled rows (the first ones)."""
        return len(self.y) - self.extra

    def own(self) -> Problem:
        """The problem without its --extra-train rows: the competition's own labelled rows."""
        if not self.extra:
            return self
        n = len(self.y) - self.extra
        return replace(self, train=self.train.iloc[:n], y=self.y[:n], labelled=self.labelled.iloc[:n], extra=0)

    def without_frames(self) -> Problem:
        """The same problem with its frames emptied of columns (their rows' count kept): once every fold's
        features are made, no stage reads the raw columns again (at 300,000 rows they held 100 MB)."""
        return replace(self, train=self.train[[]], test=self.test[[]], labelled=self.labelled[[]])

    def pred_shape(self, n: int) -> tuple[int, ...]:
        """The shape of n rows' predictions: (n, classes), (n, targets) or (n,)."""
        return (n, self.n_classes) if self.n_classes else (n, self.n_targets) if self.y.ndim == 2 else (n,)


def make_problem(comp: Competition, train: pd.DataFrame, test: pd.DataFrame, extra_files: tuple = ()) -> Problem:
    """`train` may end with --extra-train rows, marked by automl.extra's indicator column."""
    from automl.extra import EXTRA_COLUMN

    targets = list(comp.target_columns)
    labelled = train[train[targets].notna().all(axis=1)]  # a row missing any target cannot train
    dropped = len(train) - len(labelled)
    if dropped == len(train):
        raise AutomlError(f"{comp.train}: target column {comp.target!r} is empty" if len(targets) == 1 else
                          f"{comp.train}: no row has every target column ({', '.join(targets)}) filled")
    exclude = {*targets, *comp.submission_columns}
    if comp.id in test.columns and not looks_like_date(test[comp.id]):
        exclude.add(comp.id)
    columns = [c for c in labelled.columns if c in test.columns and c not in exclude]
    if not columns:
        raise AutomlError(f"{comp.train}: no feature columns are shared with {comp.test}")
    if len(targets) > 1:
        y, classes = _encode_targets(comp, labelled[targets]), None
        metric = _trained_for(comp, y, get_metric(comp.metric)) if comp.task == "multitarget" else get_metric(comp.metric)
    else:
        y, classes, metric = _encode_target(comp, labelled[comp.target])
    extra = int(labelled[EXTRA_COLUMN].sum()) if EXTRA_COLUMN in labelled.columns else 0
    return Problem(comp, metric, labelled[columns].reset_index(drop=True),
                   test[columns].reset_index(drop=True), y, classes, labelled.reset_index(drop=True), extra,
                   tuple(extra_files))


def _encode_target(comp: Competition, target: pd.Series) -> tuple[np.ndarray, np.ndarray | None, Metric]:
    """Class codes and classes, or float values; and the metric as the models should train for it."""
    metric = get_metric(comp.metric)
    if comp.is_classification:
        classes, y = np.unique(target.to_numpy(), return_inverse=True)
        if len(classes) < 2:
            raise AutomlError(
                f"{comp.train}: target column {comp.target!r} holds one class, {classes[0]}, in all "
                f"{len(target)} labelled rows; a classifier needs two or more: check 'target' in "
                f"competitions/{comp.slug}.yaml, or that {comp.train} is the whole training file")
        if comp.task == "binary" and len(classes) != 2:
            raise AutomlError(f"{comp.slug}: task is binary but {comp.target!r} has {len(classes)} classes; set task: multiclass")
        return y.astype(np.int64), classes, metric
    y = pd.to_numeric(target, errors="coerce").to_numpy(dtype=np.float64)
    if np.isnan(y).any():
        raise AutomlError(f"{comp.train}: regression target {comp.target!r} has non-numeric values")
    return y, None, _trained_for(comp, y, metric)


def _trained_for(comp: Competition, y: np.ndarray, metric: Metric) -> Metric:
    """The metric as values are trained for it: on log1p of the target (rmsle, msle, smape; each column of
    several), which needs values >= 0; smape, defined on any sign, trains on the values themselves then."""
    if metric.target_transform == "log1p" and (y < 0).any():
        negative = comp.target if y.ndim == 1 else comp.targets[int((y < 0).any(axis=0).argmax())]
        if metric.name != "smape":
            raise AutomlError(f"{comp.slug}: metric {comp.metric} needs a target >= 0, but {negative!r} has negative values")
        metric = replace(metric, target_transform=None, objective="squared")
    return metric


def _encode_targets(comp: Competition, frame: pd.DataFrame) -> np.ndarray:
    """(n, t) float64 values (multitarget), or int64 0/1 labels (multilabel; True/False count as 1/0)."""
    values = frame.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.isnan(values).any(axis=0)
    if bad.any():
        raise AutomlError(f"{comp.train}: target column {frame.columns[int(bad.argmax())]!r} has non-numeric values")
    if comp.task != "multilabel":
        return values
    bad = ~np.isin(values, (0.0, 1.0)).all(axis=0)
    if bad.any():
        column = frame.columns[int(bad.argmax())]
        raise AutomlError(f"{comp.train}: multilabel target column {column!r} holds values other than 0 and 1; "
                          f"set task: multitarget in competitions/{comp.slug}.yaml if they are values")
    return values.astype(np.int64)
