"""The run directory (runs/SLUG/NAME/): what a run owns, and how it is reused.

config.json pins what the run was made from (the spec, folds, seed, rows); folds.csv
the fold of every row; models/NAME/ each finished model's predictions and scores
(result.json is written last, so its presence means finished); run.log the log. A lock
file keeps two `automl run` processes off one run directory; workers share it freely.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
from contextlib import contextmanager
from dataclasses import MISSING, fields
from pathlib import Path

import numpy as np
import pandas as pd

from automl.baselines import CVResult
from automl.competition import Competition, load, read_tables
from automl.errors import AutomlError
from automl.extra import read_extra, with_extra
from automl.fetch import fetch, read_record
from automl.folds import Fold, fold_features, fold_ranges, make_folds
from automl.io import write_csv, write_json, write_npy
from automl.problem import Problem, make_problem


def prepare(slug: str, data_dir="data", source=None, metric: str | None = None,
            extra_train=()) -> tuple[Competition, Problem, pd.DataFrame, pd.Series | None]:
    """Fetch, read and check the data; return spec, problem, sample and test ids.

    `metric` (--metric) overrides the spec's metric; without a YAML, the metric named by
    Kaggle's record (saved beside the data by fetch) comes before a guess. `extra_train`
    (--extra-train): files of more labelled rows, checked before any work (automl.extra).
    """
    folder = fetch(slug, data_dir, source)
    comp = load(slug, folder, metric, read_record(folder))
    train, test, sample = read_tables(comp, folder, f"competitions/{slug}.yaml")
    test_ids = test[comp.id] if comp.id in test.columns else None
    records = []
    if extra_train:
        extra, records = read_extra(list(extra_train), comp, train, test)
        train, test = with_extra(train, test, extra)
    return comp, make_problem(comp, train, test, tuple(records)), sample, test_ids


SPEC_DEFAULTS = {f.name: f.default for f in fields(Competition) if f.default is not MISSING}


def claim(run_dir: Path, config: dict, name: str) -> None:
    """Create the run directory, or check that an existing one was made the same way."""
    path = run_dir / "config.json"
    if path.is_file():
        before = json.loads(path.read_text())
        if isinstance(before.get("competition"), dict):  # a spec key added since the run began had its default
            before["competition"] = {**SPEC_DEFAULTS, **before["competition"]}
        before.setdefault("extra_train", [])  # made before --extra-train existed: none
        before.setdefault("text_model", None)
        for key in ("competition", "folds", "seed", "extra_train", "rows", "text_model"):
            if json.dumps(_pinned(key, before.get(key)), sort_keys=True) != \
                    json.dumps(_pinned(key, config.get(key, [])), sort_keys=True, default=list):
                made = {"competition": "spec", "extra_train": "set of --extra-train files",
                        "text_model": "--text-model"}.get(key)
                raise AutomlError(
                    f"{run_dir} was made with a different {key} ({made or before.get(key)}); "
                    f"use the same options, or --name with a new run name instead of {name!r}"
                )
        return
    write_json(path, config)


def _pinned(key: str, value):
    """What must match for a run to be resumed: extra files by their content (sha256, rows), not the path
    they were given by (relative, absolute, another machine's)."""
    if key == "extra_train":
        return [{"sha256": f.get("sha256"), "rows": f.get("rows")} for f in value or []]
    if key == "text_model":  # the model folder by its content, wherever it lies
        return (value or {}).get("sha256")
    return value


def load_folds(run_dir: Path, problem: Problem, k: int, seed: int) -> np.ndarray:
    """The run's fold of each row (folds.csv); a forecast whose test starts a gap after train's end also
    holds the first fold each row trains (column trains_from): an (n, 2) assignment. A forecast's folds'
    time ranges go to folds.json (the report shows them)."""
    path = run_dir / "folds.csv"
    if path.is_file():
        table = pd.read_csv(path)
        return table[["fold", "trains_from"]].to_numpy() if "trains_from" in table else table["fold"].to_numpy()
    assignment = make_folds(problem, k, seed)
    table = pd.DataFrame({"row": np.arange(len(assignment)), "fold": assignment[:, 0] if assignment.ndim == 2 else assignment})
    if assignment.ndim == 2:
        table["trains_from"] = assignment[:, 1]
    ranges = fold_ranges(problem, assignment)
    if ranges:
        write_json(run_dir / "folds.json", ranges)
    write_csv(path, table)
    return assignment


def save_result(folder: Path, result: CVResult) -> None:
    write_npy(folder / "oof.npy", result.oof)
    write_npy(folder / "test.npy", result.test)
    if result.test_folds is not None:
        write_npy(folder / "test_folds.npy", result.test_folds)
    write_json(folder / "result.json", {  # written last: its presence means finished
        "name": result.name, "kind": result.kind, "fold_scores": result.fold_scores,
        "mean": result.mean, "std": result.std, "seconds": result.seconds,
        "threshold": result.threshold, "info": result.info,
    })


def load_result(folder: Path) -> CVResult | None:
    if not (folder / "result.json").is_file():
        return None
    meta = json.loads((folder / "result.json").read_text())
    own = folder / "test_folds.npy"
    return CVResult(meta["name"], np.load(folder / "oof.npy"), np.load(folder / "test.npy"),
                    meta["fold_scores"], meta["seconds"], meta["threshold"], meta["kind"], meta["info"],
                    np.load(own) if own.is_file() else None)


def log_to(path: Path) -> logging.Handler:
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("automl")
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    return handler


@contextmanager
def locked(run_dir: Path):
    """Hold the run directory for this process; a second `automl run` on it is refused."""
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = open(run_dir / ".lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise AutomlError(f"{run_dir} is in use by {holder}; wait for it to finish, or pass --name for a new run") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"automl run (pid {os.getpid()})")
    handle.flush()
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()



TEXT_FAMILIES = ("bag", "rnn", "transformer")  # the families that read token ids (automl.models.families)


def features_hash(folds: list[Fold]) -> str:
    """sha256 over the fold assignment and the first fold's feature arrays (the one the search trains on)."""
    digest = hashlib.sha256()
    for fold in folds:
        digest.update(fold.valid_rows.tobytes())
    first = folds[0]
    for features in (first.train, first.valid, first.test):
        for array in (features.numeric, features.categorical, features.images, features.tokens):
            if array is not None:  # integers hashed as int64 whatever they are held as: studies made before resume
                digest.update(np.ascontiguousarray(array, np.int64 if array.dtype.kind in "iu" else None).tobytes())
        digest.update(repr((features.numeric_names, features.categorical_names, features.cardinalities)).encode())
    return digest.hexdigest()


def without_extra(problem: Problem, assignment: np.ndarray) -> tuple[Problem, np.ndarray]:
    """The problem and fold assignment of the competition's own rows alone: the --extra-train rows left out
    (their folds are those of a run without them: extra rows come last and never validate)."""
    own = assignment[:problem.own_rows]
    return problem.own(), own[:, 0] if own.ndim == 2 else own


def follow_extra(run_dir: Path, problem: Problem, assignment: np.ndarray) -> tuple[Problem, np.ndarray]:
    """What the run decided of its --extra-train rows (extra.json), for a process that joins it (a worker)."""
    path = run_dir / "extra.json"
    if problem.extra and path.is_file() and not json.loads(path.read_text()).get("kept", True):
        return without_extra(problem, assignment)
    return problem, assignment


def shared_features(problem: Problem, assignment: np.ndarray, recipe) -> tuple[list[Fold], str]:
    """Every fold's features, fitted on its training rows only, for the baselines and the networks alike,
    and their content hash (a study's workers must all train on the same).

    Networks read the recipe's numeric scaling (quantile-normal by default; trees do not
    care, and linear models gain from it too) and token ids when a family reads text.
    """
    numeric = recipe.numeric if recipe is not None else "standard"
    families = set(recipe.space["family"]["choice"]) | {d.get("family") for d in recipe.defaults} if recipe else set()
    folds = fold_features(problem, assignment, numeric=numeric, tokenize=bool(families & set(TEXT_FAMILIES)))
    return folds, features_hash(folds)
