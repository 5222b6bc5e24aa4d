"""Small synthetic problems and fold features for network and search tests."""

from __future__ import annotations

from conftest import synthetic_frame, synthetic_multi

from automl.competition import Competition
from automl.folds import fold_features, make_folds
from automl.problem import make_problem

METRIC = {"binary": "accuracy", "multiclass": "logloss", "regression": "rmse", "multitarget": "mcrmse", "multilabel": "auc"}
LABELS = {"binary": "int", "multiclass": "class", "regression": "float", "multitarget": "float", "multilabel": "float"}


def small_problem(task: str, n: int = 240, metric: str | None = None, k: int = 3):
    targets = ("a", "b", "c") if task in ("multitarget", "multilabel") else ()  # synthetic_multi's
    frame = synthetic_multi(task, n=n) if targets else synthetic_frame(task, n=n)
    comp = Competition(slug="synthetic", id="id", target=(targets or ("target",))[0], targets=targets, task=task,
                       metric=metric or METRIC[task], labels=LABELS[task])
    train, test = frame.iloc[: n * 3 // 4], frame.iloc[n * 3 // 4:].drop(columns=list(comp.target_columns))
    problem = make_problem(comp, train, test)
    folds = fold_features(problem, make_folds(problem, k, 0), numeric="quantile")
    return problem, folds
