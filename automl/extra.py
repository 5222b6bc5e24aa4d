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


SEPARATORS = (",", ";", "\t", "|")  # how published tables are written: commas, semicolons (a decimal-comma locale), tabs


def _csv(data: bytes, name: str) -> pd.DataFrame:
    """The table as it is published: a UTF-8 byte-order mark dropped, the encoding tried as train.csv's is
    (competition.ENCODINGS in turn: its labels and levels then match), the separator sniffed from the first
    lines (`SEPARATORS`), and whitespace around header names trimmed (a trailing TAB after a name)."""
    bom = data.startswith(b"\xef\xbb\xbf")
    for encoding in ENCODINGS:
        try:
            head = data[:65536].decode(encoding or "utf-8", errors="strict" if len(data) <= 65536 else "ignore")
        except UnicodeDecodeError:
            continue
        separator = _separator(head.lstrip("\ufeff"))
        try:
            frame = pd.read_csv(io.BytesIO(data), low_memory=False, sep=separator,
                                encoding="utf-8-sig" if bom and encoding is None else encoding)
        except UnicodeDecodeError:
            continue
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise UsageError(f"--extra-train {name}: cannot be read as CSV ({str(exc).splitlines()[0]})") from exc
        if separator != ",":
            log.warning("--extra-train %s: read with %r as the separator", name, separator)
        return frame.rename(columns=lambda c: str(c).strip())
    raise AssertionError("latin-1 decodes every byte")  # pragma: no cover


def _separator(head: str) -> str:
    """The separator that splits the header and the next lines into the same number of fields, the most of them
    (a comma when none does better): a ';' table read with ',' is one column whose name holds every header."""
    lines = [line for line in head.splitlines()[:6] if line.strip()][:-1] or head.splitlines()[:1]
    best, fields = ",", 1
    for separator in SEPARATORS:
        counts = {len(line.split(separator)) for line in lines}
        if len(counts) == 1 and (n := counts.pop()) > fields:
            best, fields = separator, n
    return best


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
            raise UsageError(f"--extra-train {name}: {role} column {column!r} of {comp.train} is missing"
                             + _partner(column, frame, wanted, train, comp.train) + f"; add it (named as in {comp.train}), "
                             "or leave the file out")
        renames[close[0]] = column
    frame = frame.rename(columns=renames)
    ignored = {comp.id, comp.id.lower()}  # another table's ids: dropped
    other = [c for c in frame.columns if c not in wanted and str(c).strip().lower() not in ignored]
    keys = [c for c in other if _row_key(frame[c])]
    for key in keys:  # the file's own row number or id (Row#, UDI, Booking_ID): not a feature of anything
        log.warning("--extra-train %s: column %r is unique on every row and not in %s: taken for the file's row "
                    "key and dropped", name, key, comp.train)
    other = [c for c in other if c not in keys]
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


def _row_key(values: pd.Series) -> bool:
    """Whether a column is a table's row key: whole numbers or text, a different value on every row."""
    integral = pd.api.types.is_integer_dtype(values) or pd.api.types.is_object_dtype(values) \
        or pd.api.types.is_string_dtype(values)
    return len(values) > 1 and integral and values.notna().all() and values.nunique() == len(values)


def _partner(column: str, frame: pd.DataFrame, wanted: list[str], train: pd.DataFrame, file: str) -> str:
    """Which of the file's columns is likely `column` under another name: one train.csv does not have, at the
    same place among the file's columns as `column` among train's (else the first such), of the same kind."""
    unknown = [c for c in frame.columns if c not in wanted and c not in train.columns]
    numeric = pd.api.types.is_numeric_dtype(train[column])
    alike = [c for c in unknown if pd.api.types.is_numeric_dtype(frame[c]) == numeric and not _row_key(frame[c])]
    if not alike:
        return ""
    place = list(train.columns).index(column)
    same = [c for c in alike if list(frame.columns).index(c) == place]
    return f" (the file has {(same or alike)[0]!r}, which {file} has not: if it is the same, rename it {column!r})"


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
