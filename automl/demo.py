"""`automl demo`: a whole competition, offline, from a data set that ships with scikit-learn.

It writes a Kaggle-format bundle (train.csv, test.csv, sample_submission.csv) from
scikit-learn's bundled breast-cancer data, runs the full pipeline on it within a small
budget, and then does what Kaggle would: scores the submission on the test labels it
kept aside, so the cross-validated estimate can be compared with a held-out score.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

from automl.io import write_csv
from automl.metrics import get_metric, score
from automl.runner import RunResult, run

SLUG = "demo-breast-cancer"


@dataclass(frozen=True)
class DemoResult:
    run: RunResult
    holdout: float  # the submission's score on the labels kept aside, like Kaggle's leaderboard
    metric: str


def make_bundle(folder: Path, seed: int = 0) -> tuple[Path, pd.Series]:
    """Write the competition files; return the folder and the hidden test labels."""
    data = load_breast_cancer(as_frame=True)
    frame = data.frame.rename(columns=lambda c: c.replace(" ", "_"))
    frame.insert(0, "id", np.arange(1, len(frame) + 1))
    frame["diagnosis"] = np.where(data.target == 0, "malignant", "benign")
    frame = frame.drop(columns="target")
    train, test = train_test_split(frame, test_size=0.3, random_state=seed, stratify=frame["diagnosis"])
    folder.mkdir(parents=True, exist_ok=True)
    write_csv(folder / "train.csv", train)
    write_csv(folder / "test.csv", test.drop(columns="diagnosis"))
    write_csv(folder / "sample_submission.csv", pd.DataFrame({"id": test["id"], "diagnosis": "benign"}))
    return folder, test.set_index("id")["diagnosis"]


def demo(*, timeout: float = 90, runs_dir="runs", data_dir="data", console=None) -> DemoResult:
    source, hidden = make_bundle(Path(data_dir) / f"{SLUG}-bundle")
    result = run(SLUG, source=source, timeout=timeout, runs_dir=runs_dir, data_dir=data_dir, console=console)
    submitted = pd.read_csv(result.submission).set_index("id")["diagnosis"]
    metric = get_metric("accuracy")
    classes = np.array(sorted(hidden.unique()))
    truth = np.searchsorted(classes, hidden.loc[submitted.index].to_numpy())
    onehot = np.eye(len(classes))[np.searchsorted(classes, submitted.to_numpy())]
    return DemoResult(result, score(metric, truth, onehot), metric.name)
