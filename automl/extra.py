"""`--extra-train PATH`: labelled rows from beside train.csv, such as the "original" dataset a
Playground competition was generated from, added to the training rows of every fold.

Extra rows train and are never validated (their fold is EXTRA_FOLD in folds.csv): every score
stays a score on the competition's own rows. On folds in time they train only the folds whose own
training rows reach their time (automl/folds.py), and the refit on every row. They must hold the competition's feature and
target columns (matched by name exactly, then ignoring case); an id column is dropped (ids of
another table). A feature column `EXTRA_COLUMN`, 1 on extra rows and 0 elsewhere, lets a model
tell them apart. Class labels written another way (Y/N for 1/0) are mapped when the classes
match one to one. The files and their sha256 are pinned in the run directory's config.
"""

from __future__ import annotations

import hashlib
import io
import logging
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from automl.competition import ENCODINGS, Competition, looks_like_date
from automl.errors import UsageError

log = logging.getLogger("automl")
EXTRA_COLUMN = "from_extra_train"  # the indicator feature
EXTRA_FOLD = -2  # folds.csv's mark for a row validated in no fold (it trains in every one; in time, in those that reach it)


def read_extra(paths: list[Path], comp: Competition, train: pd.DataFrame,
               test: pd.DataFrame) -> tuple[pd.DataFrame, list[dict]]:
    """The extra rows of every file, in train's columns (features and targets) and value formats, and
    a record of each file (path, sha256, rows). Any mismatch is one line naming the file and column: exit 2."""
    frames, records = [], []
    for path in paths:
        name, raw, digest = _read(Path(path))
        frame = conform(raw, name, comp, train, test)
        frames.append(frame)
        records.append({"path": str(path), "sha256": digest, "rows": len(frame)})
        log.info("extra train rows: %d from %s", len(frame), name)
    return pd.concat(frames, ignore_index=True), records


def _read(path: Path) -> tuple[str, pd.DataFrame, str]:
    """(the name to report, the table, its sha256) of a CSV, a zip holding one CSV, or a folder holding one."""
    if path.is_dir():
        found = sorted(p for p in path.rglob("*.csv") if not p.name.startswith("."))
        if len(found) != 1:
            raise UsageError(f"--extra-train {path}: the folder holds {_count(found)}; pass the CSV file to use")
        path = found[0]
    if not path.is_file():
        raise UsageError(f"--extra-train {path}: no such file or folder; pass a CSV, a zip or a folder")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = [m for m in archive.namelist() if m.lower().endswith(".csv") and not m.split("/")[-1].startswith(".")]
            if len(members) != 1:
                raise UsageError(f"--extra-train {path}: the zip holds {_count(members)}; unpack it and pass the CSV to use")
            return f"{path}:{members[0]}", _csv(archive.read(members[0]), f"{path}:{members[0]}"), digest
    return str(path), _csv(data, str(path)), digest


def _csv(data: bytes, name: str) -> pd.DataFrame:
    """The table, decoded as train.csv would be (competition.ENCODINGS in turn): its labels and levels then match."""
    for encoding in ENCODINGS:
        try:
            return pd.read_csv(io.BytesIO(data), low_memory=False, encoding=encoding)
        except UnicodeDecodeError:
            continue
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise UsageError(f"--extra-train {name}: cannot be read as CSV ({str(exc).splitlines()[0]})") from exc
    raise AssertionError("latin-1 decodes every byte")  # pragma: no cover


def _count(files: list) -> str:
    return "no CSV file" if not files else f"{len(files)} CSV files ({', '.join(str(f) for f in files[:4])})"


def feature_columns(comp: Competition, train: pd.DataFrame, test: pd.DataFrame) -> list[str]:
    """The columns make_problem keeps as features: those train and test share, but the id and targets."""
    exclude = {*comp.target_columns, *comp.submission_columns}
    if comp.id in test.columns and not looks_like_date(test[comp.id]):
        exclude.add(comp.id)
    return [c for c in train.columns if c in test.columns and c not in exclude]


def conform(frame: pd.DataFrame, name: str, comp: Competition, train: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    """`frame` in train's feature and target columns, its target values in train's labels."""
    wanted = feature_columns(comp, train, test) + list(comp.target_columns)
    lower: dict[str, list[str]] = {}
    for column in frame.columns:
        lower.setdefault(str(column).strip().lower(), []).append(column)
    renames = {}
    for column in wanted:
        if column in frame.columns:
            continue
        close = lower.get(column.strip().lower(), [])
        if len(close) != 1:
            role = "target" if column in comp.target_columns else "feature"
            raise UsageError(f"--extra-train {name}: {role} column {column!r} of {comp.train} is missing; "
                             f"add it (named as in {comp.train}) or leave the file out")
        renames[close[0]] = column
    frame = frame.rename(columns=renames)
    ignored = {comp.id, comp.id.lower()}  # another table's ids: dropped
    other = [c for c in frame.columns if c not in wanted and str(c).strip().lower() not in ignored]
    if other:
        raise UsageError(f"--extra-train {name}: column {other[0]!r} is not a feature or target of {comp.train}"
                         + (f" (nor are {', '.join(map(repr, other[1:4]))})" if len(other) > 1 else "")
                         + "; drop it from the file, or rename it to the competition's column")
    frame = frame[wanted].copy()
    for column in wanted:  # a column numeric in train must hold numbers here too
        if column not in comp.target_columns and pd.api.types.is_numeric_dtype(train[column]) \
                and not pd.api.types.is_numeric_dtype(frame[column]):
            numbers = pd.to_numeric(frame[column], errors="coerce")
            bad = frame[column][numbers.isna() & frame[column].notna()]
            if len(bad):
                raise UsageError(f"--extra-train {name}: column {column!r} holds {bad.iloc[0]!r}, but {comp.train} "
                                 "holds numbers there; write it as the competition does")
            frame[column] = numbers
    for column in comp.target_columns:
        frame[column] = _labels(frame[column], train[column], comp, name)
    return frame


def _labels(values: pd.Series, known: pd.Series, comp: Competition, name: str) -> pd.Series:
    """The extra file's target in train's format: numbers for values, train's own labels for classes."""
    column = known.name
    if not comp.is_classification:
        numbers = pd.to_numeric(values, errors="coerce")
        bad = values[numbers.isna() & values.notna()]
        if len(bad):
            raise UsageError(f"--extra-train {name}: target column {column!r} holds {bad.iloc[0]!r}, but {comp.slug} "
                             f"is a {comp.task} of numbers; this file is for another task")
        return numbers
    classes = pd.Series(known.dropna().unique())
    theirs = pd.Series(values.dropna().unique())
    as_text = {str(c): c for c in classes}
    if theirs.astype(str).isin(as_text).all():
        return values.map(lambda v: v if pd.isna(v) else as_text[str(v)])
    folded = {str(c).strip().lower(): c for c in classes}
    if len(folded) == len(classes) and theirs.astype(str).str.strip().str.lower().isin(folded).all():
        return values.map(lambda v: v if pd.isna(v) else folded[str(v).strip().lower()])
    if len(theirs) == len(classes) and len(classes) <= 20:  # one to one, in sorted order: N/Y -> 0/1, No/Yes -> 0/1
        mapping = dict(zip(sorted(theirs, key=_order), sorted(classes, key=_order), strict=True))
        log.warning("--extra-train %s: target %r labels mapped to %s's by their order: %s", name, column, comp.train,
                    ", ".join(f"{k!r} -> {v!r}" for k, v in mapping.items()))
        return values.map(lambda v: v if pd.isna(v) else mapping[v])
    sample = ", ".join(map(repr, sorted(map(str, theirs))[:5]))
    raise UsageError(f"--extra-train {name}: target column {column!r} holds {len(theirs)} labels ({sample}) that do not "
                     f"match the {len(classes)} classes of {comp.train} ({', '.join(map(repr, sorted(map(str, classes))[:5]))}); "
                     "write them as the competition does")


_TRUE = {"1", "y", "yes", "true", "t", "positive", "pos", "presence", "present"}


def _order(value) -> tuple:
    """Sort key of a label: no-like before yes-like words, then numbers, then text."""
    text = str(value).strip().lower()
    if text in _TRUE or text in {"0", "n", "no", "false", "f", "negative", "neg", "absence", "absent"}:
        return (0, float(text in _TRUE), "")
    try:
        return (1, float(text), "")
    except ValueError:
        return (2, 0.0, text)


def with_extra(train: pd.DataFrame, test: pd.DataFrame, extra: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """train with the extra rows after its own, and the indicator feature on both tables."""
    if EXTRA_COLUMN in train.columns:
        raise UsageError(f"--extra-train: train already has a column {EXTRA_COLUMN!r}; rename it to use --extra-train")
    own = train.assign(**{EXTRA_COLUMN: np.int8(0)})
    more = extra.assign(**{EXTRA_COLUMN: np.int8(1)})
    return pd.concat([own, more], ignore_index=True), test.assign(**{EXTRA_COLUMN: np.int8(0)})
