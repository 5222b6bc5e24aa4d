"""Notebook-facing functions behind `automl inspect` and `automl validate`.

Each returns plain values; the CLI only prints them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from automl.competition import Competition, spec_path, to_yaml
from automl.errors import AutomlError
from automl.fetch import fetch, read_record
from automl.fetch import submit as kaggle_submit
from automl.folds import fold_ranges, make_folds
from automl.io import write_json, write_text
from automl.preprocess import Preprocessor
from automl.rundir import prepare
from automl.runner import submitted_model
from automl.submission import validate as validate_frame


@dataclass(frozen=True)
class Inspection:
    competition: Competition
    columns: pd.DataFrame  # column, role, dtype, missing share, distinct values
    yaml: str
    saved: Path | None
    metric_source: str = ""  # where the metric came from: --metric, the YAML, Kaggle, or "guess"
    kaggle: dict | None = None  # Kaggle's record: title, evaluation_metric, max_daily_submissions
    extra: list = field(default_factory=list)  # each --extra-train file: path, sha256, rows
    folds: dict | None = None  # a forecast's folds in time (automl.folds.fold_ranges): the test's horizon, each fold's dates


def inspect(slug: str, *, data_dir="data", source=None, save: bool = False, metric: str | None = None,
            extra_train=(), folds: int = 5, seed: int = 0) -> Inspection:
    """What automl makes of a competition: its spec, where its metric came from, and each train column's role;
    for a forecast, the test's horizon and the dates of the `folds` folds a run would make.

    `metric` overrides the spec's metric, and `save` writes it into competitions/SLUG.yaml.
    """
    record = read_record(fetch(slug, data_dir, source))
    comp, problem, _, _ = prepare(slug, data_dir, source, metric, extra_train)
    pre = Preprocessor(text_columns=comp.text_columns, date_columns=comp.date_columns,
                       image_shape=comp.image_shape).fit(problem.train)
    roles = pre.describe()
    raw = problem.labelled
    rows = []
    for column in raw.columns:
        if column in comp.targets:  # several targets: each one's place and the task
            role = f"target {comp.targets.index(column) + 1} of {len(comp.targets)} ({comp.task})"
        elif column == comp.target:
            role = f"target ({comp.task}, {len(problem.classes)} classes)" if problem.classes is not None else "target (regression)"
        elif column in roles:
            role = roles[column] + (" (also the id)" if column == comp.id else "")
        elif column == comp.id:
            role = "id (not a feature)"
        else:
            role = f"dropped: not in {comp.test}"
        values = raw[column]
        rows.append({"column": column, "role": role, "dtype": str(values.dtype),
                     "missing": float(values.isna().mean()), "distinct": int(values.nunique())})
    ranges = None
    if comp.folds == "time":
        try:
            ranges = fold_ranges(problem, make_folds(problem, folds, seed))
        except AutomlError as error:  # the spec is still worth showing; `run` stops on the same line
            ranges = {"error": str(error)}
    text = to_yaml(comp)
    saved = write_text(Path("competitions") / f"{slug}.yaml", text) if save else None
    return Inspection(comp, pd.DataFrame(rows), text, saved, metric_source(comp, slug, metric, record), record,
                      list(problem.extra_files), ranges)


def metric_source(comp: Competition, slug: str, metric: str | None, record: dict | None) -> str:
    """Where `comp`'s metric came from, first to last: --metric, the YAML, Kaggle's record, a guess."""
    if metric is not None:
        return "--metric"
    path = spec_path(slug)
    if path is not None:
        return str(path)
    if "metric" in comp.inferred:
        return "guess"
    return f"Kaggle: {(record or {}).get('evaluation_metric')}"


def submit(slug: str, message: str, *, run: str = "default", runs_dir="runs", data_dir="data") -> dict:
    """Check runs/SLUG/RUN/submission.csv, upload it to Kaggle, and record what was sent."""
    run_dir = Path(runs_dir) / slug / run
    file = run_dir / "submission.csv"
    if not file.is_file():
        raise AutomlError(f"{file} does not exist; run `automl run {slug} --name {run}` first")
    problems = validate(file, slug, data_dir=data_dir)
    if problems:
        raise AutomlError(f"{file} would be rejected: {problems[0]} (`automl validate {file} {slug}` lists all)")
    reply = kaggle_submit(slug, file, message)
    board = run_dir / "leaderboard.csv"
    record = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "file": str(file),
              "sha256": hashlib.sha256(file.read_bytes()).hexdigest(), "message": message, "kaggle": reply,
              "model": submitted_model(pd.read_csv(board)) if board.is_file() else None}
    log = run_dir / "submissions.json"
    history = json.loads(log.read_text()) if log.is_file() else []
    write_json(log, history + [record])
    return record


def validate(file: str | Path, slug: str, *, data_dir="data", source=None, metric: str | None = None) -> list[str]:
    """Every reason Kaggle would reject `file` for `slug`; an empty list when it is valid."""
    comp, problem, sample, _ = prepare(slug, data_dir, source, metric)
    classes = None if problem.classes is None else [str(c) for c in problem.classes]
    return validate_frame(file, comp, sample, classes)
