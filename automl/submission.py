"""Predictions -> submission.csv in exactly the sample submission's shape, and its checker.

The writer copies the sample's ids (as text, in its order) and column names, and turns
model predictions into what the competition reads: class values (0/1 or names),
True/False, floats, one probability column per class, one column per target (values, or
each label's probability), or for map@k the k most probable classes, space-separated. `validate` checks any file
the way Kaggle would before scoring it and lists every problem it finds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from automl.competition import Competition
from automl.errors import AutomlError
from automl.io import write_csv
from automl.metrics import get_metric, to_labels, top_classes


def make_submission(comp: Competition, sample: pd.DataFrame, test_ids: pd.Series | None,
                    pred: np.ndarray, classes: np.ndarray | None, threshold: float | None) -> pd.DataFrame:
    """Build the submission frame. `test_ids` is test.csv's id column (None if absent)."""
    order = _sample_order(comp, sample, test_ids, len(pred))
    pred = pred[order]
    out = pd.DataFrame({comp.id: sample[comp.id].astype(str).to_numpy()})
    column = comp.submission_columns[0]
    if comp.targets:  # multitarget or multilabel: (n, t) values or label probabilities, a column each
        for j, name in enumerate(comp.submission_columns):
            out[name] = pred[:, j]
    elif comp.labels == "proba":
        index = {str(c): i for i, c in enumerate(classes)}
        proba = pred / pred.sum(axis=1, keepdims=True)
        for name, cls in zip(comp.submission_columns, comp.classes, strict=True):
            out[name] = proba[:, index[cls]] if cls in index else 0.0
    elif classes is None:
        out[column] = pred
    elif get_metric(comp.metric).decision == "rank":
        k = int(comp.metric.removeprefix("map@"))
        names = np.array([_class_text(c, comp.labels) for c in classes], dtype=object)
        out[column] = [" ".join(row) for row in names[top_classes(pred, k)]]
    elif comp.labels == "float":
        out[column] = pred[:, 1]  # the positive class's probability
    else:
        labels = classes[to_labels(pred, threshold)]
        if comp.labels == "bool":
            out[column] = [str(v).lower() in ("true", "1", "1.0") for v in labels]
            out[column] = out[column].map({True: "True", False: "False"})
        elif comp.labels == "int":
            out[column] = np.asarray(labels).astype(float).astype(np.int64)
        else:
            out[column] = labels
    return out


def _class_text(value, labels: str) -> str:
    """A class as the submission writes it: 3.0 as 3 where labels are integers."""
    return str(int(float(value))) if labels == "int" and _is_number(value) else str(value)


def _sample_order(comp: Competition, sample: pd.DataFrame, test_ids: pd.Series | None, n: int) -> np.ndarray:
    """Row of the test predictions for each sample row."""
    if len(sample) != n:
        raise AutomlError(f"{comp.sample_submission} has {len(sample)} rows but {comp.test} has {n}")
    if test_ids is None:
        return np.arange(n)  # test.csv has no id: rows are in the sample's order
    position = pd.Index(test_ids.astype(str)).get_indexer(sample[comp.id].astype(str))
    if (position < 0).any():
        missing = sample[comp.id].astype(str)[position < 0].iloc[0]
        raise AutomlError(f"{comp.sample_submission}: id {missing!r} is not in {comp.test}")
    return position


def write_submission(frame: pd.DataFrame, path: str | Path) -> Path:
    return write_csv(path, frame)


def validate(path: str | Path, comp: Competition, sample: pd.DataFrame,
             classes: list[str] | None = None) -> list[str]:
    """Every reason Kaggle would reject `path`, as sentences; empty when it is valid."""
    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        return [f"cannot be read as CSV: {str(exc).splitlines()[0]}"]
    problems = []
    expected = list(sample.columns)
    if list(frame.columns) != expected:
        missing = [c for c in expected if c not in frame.columns]
        extra = [c for c in frame.columns if c not in expected]
        detail = "; ".join(filter(None, [
            missing and f"missing {', '.join(missing)}", extra and f"unexpected {', '.join(extra)}",
            not missing and not extra and "same names in another order"]))
        problems.append(f"columns should be {', '.join(expected)} ({detail})")
    if comp.id not in frame.columns:
        return problems
    ids, want = frame[comp.id], sample[comp.id].astype(str)
    if len(frame) != len(sample):
        problems.append(f"has {len(frame)} rows; the sample submission has {len(sample)}")
    duplicated = ids[ids.duplicated()]
    if len(duplicated):
        problems.append(f"{len(duplicated)} duplicated ids, e.g. {duplicated.iloc[0]!r}")
    missing, extra = want[~want.isin(ids)], ids[~ids.isin(want)]
    if len(missing):
        problems.append(f"{len(missing)} ids of the sample are missing, e.g. {missing.iloc[0]!r}")
    if len(extra):
        problems.append(f"{len(extra)} ids are not in the sample, e.g. {extra.iloc[0]!r}")
    if not len(missing) and not len(extra) and len(ids) == len(want) and not (ids.to_numpy() == want.to_numpy()).all():
        problems.append("ids are not in the sample submission's order")
    for column in [c for c in comp.submission_columns if c in frame.columns]:
        problems += [f"column {column!r}: {p}" for p in _check_values(frame[column], comp, classes)]
    if comp.labels == "proba" and not problems:
        sums = frame[list(comp.submission_columns)].astype(float).sum(axis=1)
        if not np.allclose(sums, 1, atol=1e-3):
            problems.append(f"class probabilities should sum to 1 per row (found {sums.min():.3f} to {sums.max():.3f})")
    return problems


def _check_values(values: pd.Series, comp: Competition, classes: list[str] | None) -> list[str]:
    empty = values.str.strip().isin(["", "nan", "NaN", "NA", "null", "None"])
    if empty.any():
        return [f"{int(empty.sum())} empty or NaN values (first at row {int(np.flatnonzero(empty)[0]) + 2})"]
    if classes is not None and get_metric(comp.metric).decision == "rank":
        return _check_ranked(values, _allowed(classes), int(comp.metric.removeprefix("map@")))
    if comp.labels == "bool":
        bad = ~values.isin(["True", "False"])
        return [f"{int(bad.sum())} values are not True/False, e.g. {values[bad].iloc[0]!r}"] if bad.any() else []
    if comp.labels in ("int", "float", "proba"):
        numbers = pd.to_numeric(values, errors="coerce")
        if numbers.isna().any():
            return [f"{int(numbers.isna().sum())} values are not numbers, e.g. {values[numbers.isna()].iloc[0]!r}"]
        if not np.isfinite(numbers).all():
            return ["holds infinite values"]
        if comp.labels == "int" and not (numbers == numbers.round()).all():
            return ["holds fractional values where class labels are expected"]
        if (comp.labels == "proba" or comp.task == "multilabel") and ((numbers < 0) | (numbers > 1)).any():
            return ["holds probabilities outside [0, 1]"]
    if classes is not None and comp.labels in ("int", "class"):
        allowed = _allowed(classes)
        bad = ~values.isin(allowed)
        if bad.any():
            return [f"{int(bad.sum())} values are not known classes ({', '.join(sorted(allowed)[:10])}), e.g. {values[bad].iloc[0]!r}"]
    return []


def _allowed(classes: list[str]) -> set[str]:
    return {str(c) for c in classes} | {str(int(float(c))) for c in classes if _is_number(c)}


def _check_ranked(values: pd.Series, allowed: set[str], k: int) -> list[str]:
    """map@k: each value is 1 to k known classes, space-separated."""
    tokens = values.str.split()
    too_many = tokens.str.len() > k
    if too_many.any():
        return [f"{int(too_many.sum())} values hold more than {k} labels, e.g. {values[too_many].iloc[0]!r}"]
    bad = tokens.map(lambda row: not set(row) <= allowed)
    if bad.any():
        return [f"{int(bad.sum())} values hold labels that are not known classes "
                f"({', '.join(sorted(allowed)[:10])}), e.g. {values[bad].iloc[0]!r}"]
    return []


def _is_number(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True
