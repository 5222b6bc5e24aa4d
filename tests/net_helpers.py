"""Small synthetic problems and fold features for network and search tests."""

from __future__ import annotations

from conftest import synthetic_frame

from automl.competition import Competition
from automl.folds import fold_features, make_folds
from automl.problem import make_problem

METRIC = {"binary": "accuracy", "multiclass": "logloss", "regression": "rmse"}
LABELS = {"binary": "int", "multiclass": "class", "regression": "float"}


def small_problem(task: str, n: int = 240, metric: str | None = None, k: int = 3):
    frame = synthetic_frame(task, n=n)
    comp = Competition(slug="synthetic", id="id", target="target", task=task, metric=metric or METRIC[task],
                       labels=LABELS[task])
    train, test = frame.iloc[: n * 3 // 4], frame.iloc[n * 3 // 4:].drop(columns="target")
    problem = make_problem(comp, train, test)
    folds = fold_features(problem, make_folds(problem, k, 0), numeric="quantile")
    return problem, folds
