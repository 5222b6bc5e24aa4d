"""Fitting one fold: the model's inputs, a row sample, the metric's objective, the clock, and its predictions."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import numpy as np
from sklearn.base import clone, is_classifier
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import HuberRegressor
from sklearn.utils import get_tags

from automl.baselines.gbdt import GBDT
from automl.baselines.inputs import inputs_for, set_categoricals
from automl.baselines.members import Baseline
from automl.folds import Fold, take
from automl.problem import Problem
from automl.trend import Detrended, for_fold


@dataclass
class Size:
    """How big a baseline is fitted: trees or boosting rounds, and a training row sample."""

    units: int | None = None  # trees (forests) or at most this many rounds (hist_gb); None: as defined
    rows: int | None = None  # train on this many sampled rows of each fold; None: all
    learning_rate: float | None = None  # hist_gb with fewer rounds learns faster
    predicting: float = 0.0  # seconds a fold's validation and test predictions are expected to take

    def note(self, baseline: Baseline, n: int) -> str:
        parts = []
        if self.units is not None:
            parts.append(f"{self.units} {'trees' if baseline.inputs == 'dense' else 'rounds at most'}")
        if self.rows is not None and self.rows < n:
            parts.append(f"on {self.rows:,}-row samples of the {n:,} training rows")
        if self.learning_rate is not None:
            parts.append(f"learning rate {self.learning_rate:g}")
        return (" ".join(parts) + " (sized to the time budget)") if parts else ""


def fit_one(baseline: Baseline, problem: Problem, fold: Fold, seed: int, size: Size, rng, until: float | None,
            probe: bool = False, device: str = "cpu", trend: bool = False, like=None):
    """One fold's fitted model and its validation and test inputs (a probe's: a validation slice and no test).
    A GBDT early-stops on the fold's validation rows (a probe boosts its rounds without). `trend`: a tree
    learns the target less a trend in time fitted on these training rows (automl.trend), and predicts
    both. `like`: a fold's fitted model that this refit on every row copies (its rounds and trees; its
    validation rows were trained on, so nothing early-stops)."""
    train, y = fold.train, problem.y[fold.train_rows]
    if size.rows is not None and size.rows < len(y):  # sample the features before building inputs from them
        rows = np.sort(rng.choice(len(y), size.rows, replace=False))
        train, y = take(train, rows), y[rows]
    if probe:  # a probe predicts as many validation rows as it trains on, and no test
        probe_valid = take(fold.valid, np.arange(min(len(y), len(fold.valid))))
        if baseline.inputs == "tfidf":  # the vocabulary is fitted on the training rows: built together
            x_train, x_valid = inputs_for(baseline.inputs, train, probe_valid)
        else:  # built when predicting, so that the timed prediction includes them as a fold's does
            x_train, x_valid = inputs_for(baseline.inputs, train)[0], None
        x_test = None
    else:
        x_train, x_valid, x_test = inputs_for(baseline.inputs, train, fold.valid, fold.test)
    k, classify = problem.n_classes, problem.n_classes > 0 or problem.multilabel
    absolute = not classify and problem.metric.objective == "absolute" and baseline.absolute is not None
    model = baseline.classifier(seed) if classify else baseline.absolute(seed) if absolute else baseline.regressor(seed)
    set_categoricals(model, fold.train)
    if isinstance(model, GBDT):
        model.set_params(device=device)
    info = _cap_rounds(model, baseline, x_train.shape[0], x_train.shape[1], k or 1)
    if hasattr(model, "n_estimators") and hasattr(model, "min_samples_leaf"):  # forests: trees that fit in memory
        leaf = _leaf_for_memory(len(y), k, y.shape[1] if y.ndim == 2 else 1)
        if leaf > model.min_samples_leaf:
            model.set_params(min_samples_leaf=leaf)
            info["note"] = "; ".join(x for x in (info.get("note"), f"leaves of {leaf}+ rows (memory)") if x)
    if absolute:
        trained = "Huber loss (robust to outliers)" if isinstance(model, HuberRegressor) else "absolute error"
        info["note"] = "; ".join(x for x in (f"trained on {trained}", info.get("note")) if x)
    if size.learning_rate is not None:
        model.set_params(learning_rate=size.learning_rate)
    if size.units is not None and hasattr(model, "max_iter") and isinstance(model.max_iter, int):
        model.set_params(max_iter=min(model.max_iter, size.units))
        if probe:
            model.set_params(early_stopping=False)
    if like is not None:
        size = _as_fitted(model, like, size)
    y_valid = None if probe or like is not None or not isinstance(model, GBDT) else problem.y[fold.valid_rows]
    if not classify and problem.metric.target_transform == "log1p":
        y = np.log1p(y)
        y_valid = None if y_valid is None else np.log1p(y_valid)
    shape = trend and y.ndim == 1 and not classify and baseline.inputs in ("dense", "native") and for_fold(problem, fold)
    if shape:  # the trees learn what the trend leaves
        shape.fit(x_train, y)
        y = y - shape.predict(x_train)
        y_valid = None if y_valid is None else y_valid - shape.predict(x_valid)
    valid = None if y_valid is None else (x_valid, y_valid)
    if y.ndim == 2 and not get_tags(model).target_tags.multi_output:
        model, info["rounds"] = _fit_each(model, x_train, y, size, until, probe, valid)
    else:
        info["rounds"] = _fit(model, x_train, y, size, until, probe, valid)
    if shape:
        model = Detrended(model, shape)
    if probe:  # the probe times a prediction too (forests spend seconds predicting), inputs included
        started = time.monotonic()
        predict(model, inputs_for(baseline.inputs, probe_valid)[0] if x_valid is None else x_valid, problem)
        info["predict_per_row"] = (time.monotonic() - started) / max(1, len(probe_valid))
    return model, x_valid, x_test, info


def _as_fitted(model, like, size: Size) -> Size:
    """A refit's size: the rounds its fold's booster kept (early stopping off) and the trees its forest grew."""
    rounds = getattr(like, "kept_rounds_", None) or getattr(like, "n_iter_", None)
    if rounds and hasattr(model, "max_iter") and hasattr(model, "early_stopping"):
        model.set_params(max_iter=max(1, int(rounds)), early_stopping=False)
    trees = getattr(like, "n_estimators", None) if hasattr(model, "min_samples_leaf") else None
    return replace(size, units=int(trees)) if trees else size


def _fit(model, x, y, size: Size, until: float | None, probe: bool, valid: tuple | None = None) -> int | None:
    """Forests grow trees and boosting adds rounds until the clock says stop; the rest fit once.
    A GBDT stops itself, on the clock or on its validation rows. Returns the boosting rounds when
    the clock stopped them, else None."""
    if isinstance(model, GBDT):
        model.fit(x, y, *(valid or (None, None)), until=None if probe else until)
        return model.clocked_rounds_
    if hasattr(model, "n_estimators"):
        _grow(model, x, y, size.units or model.n_estimators, until)
    elif until is not None and hasattr(model, "n_iter_no_change") and not probe:
        return _boost(model, x, y, until)
    else:
        model.fit(x, y)
    return None


class PerColumn:
    """One fitted model per target column, predicting in scikit-learn's multi-output form:
    (n, t) values, or a list of each label's (n, classes) probabilities."""

    def __init__(self, models: list):
        self.models_ = models

    @property
    def n_iter_(self) -> int:  # the most rounds a column's booster kept
        return max(getattr(m, "n_iter_", 0) for m in self.models_)

    @property
    def kept_rounds_(self) -> int:  # the most rounds a column's booster predicts with
        return max(getattr(m, "kept_rounds_", getattr(m, "n_iter_", 0)) for m in self.models_)

    @property
    def classes_(self) -> list[np.ndarray]:
        return [m.classes_ for m in self.models_]

    def predict(self, x) -> np.ndarray:
        return np.column_stack([m.predict(x) for m in self.models_])

    def predict_proba(self, x) -> list[np.ndarray]:
        return [m.predict_proba(x) for m in self.models_]


def _fit_each(model, x, y: np.ndarray, size: Size, until: float | None, probe: bool,
              valid: tuple | None = None) -> tuple[PerColumn, int | None]:
    """A copy of `model` per target column of y (n, t), each fitted as one target is (boosting against the
    clock, each column given an equal part of the time left). A label that is constant in these rows gets
    its prior: a classifier cannot learn from one class."""
    start, models, stopped = time.monotonic(), [], []
    for j in range(y.shape[1]):
        one = DummyClassifier(strategy="prior") if is_classifier(model) and len(np.unique(y[:, j])) < 2 else clone(model)
        end = None if until is None else start + (until - start) * (j + 1) / y.shape[1]
        column = None if valid is None else (valid[0], valid[1][:, j])
        stopped.append(_fit(one, x, y[:, j], size, end, probe, column))
        models.append(one)
    rounds = [r for r in stopped if r is not None]
    return PerColumn(models), min(rounds) if rounds else None


def _boost(model, x, y, until: float) -> int | None:
    """Boosting rounds in chunks (warm start keeps the early-stopping split and history) until
    early stopping ends them, max_iter is reached, or the clock says stop. Returns the rounds
    when the clock stopped it, else None."""
    total = model.max_iter
    chunk = max(20, min(100, total // 5))
    model.set_params(warm_start=True, max_iter=min(total, chunk))
    model.fit(x, y)
    while model.n_iter_ == model.max_iter < total:
        if time.monotonic() >= until:
            return int(model.n_iter_)
        model.set_params(max_iter=min(total, model.max_iter + chunk))
        model.fit(x, y)
    return None


FOREST_BYTES = 2**28  # 256 MiB: the most a forest's trees may hold (fully grown trees on 240,000 rows: 19 MB each)


def _node_bytes(classes: int, outputs: int = 1) -> int:
    """A scikit-learn tree node: its 64-byte record and its value array."""
    return 64 + 8 * max(classes, 1) * outputs


def _leaf_for_memory(rows: int, classes: int, outputs: int = 1) -> int:
    """The smallest leaf that lets 100 fully grown trees fit FOREST_BYTES (about 2 x rows / leaf nodes a tree)."""
    return math.ceil(2 * rows * 100 * _node_bytes(classes, outputs) / FOREST_BYTES)


def _forest_bytes(model) -> int:
    return sum(t.tree_.node_count * _node_bytes(t.tree_.value.shape[2], t.tree_.value.shape[1]) for t in model.estimators_)


def _grow(model, x, y, trees: int, until: float | None) -> None:
    """Add trees in chunks until `trees`, the clock says stop or the next chunk would pass
    FOREST_BYTES (at least one chunk)."""
    chunk = max(1, min(trees, max(10, trees // 5)))
    model.set_params(n_estimators=chunk, warm_start=True)
    model.fit(x, y)
    while model.n_estimators < trees and (until is None or time.monotonic() < until) and \
            _forest_bytes(model) * (model.n_estimators + chunk) / model.n_estimators <= FOREST_BYTES:
        model.set_params(n_estimators=min(trees, model.n_estimators + chunk))
        model.fit(x, y)


def predict(model, x, problem: Problem) -> np.ndarray:
    if problem.n_classes:
        return _proba(model, x, problem.n_classes)
    if problem.multilabel:
        return _label_proba(model, x)
    return values_of(model.predict(x), problem.metric.target_transform == "log1p", problem.y)


CAP_ROWS = 3_000  # a boosting round's cost counts its training rows up to this many (past them, the budget's probe sizes it)


def _cap_rounds(model, baseline: Baseline, rows: int, columns: int, classes: int) -> dict:
    """Fewer, larger boosting rounds when columns x classes x rows make each round slow (pixels). A round's cost
    is counted against a CAP_ROWS-row table's: a small table's rounds are cheap, however many columns and
    classes it has (707 rows, 64 columns, 11 classes: no cap, where columns x classes alone capped it at 710
    rounds and raised the learning rate to 0.2); larger tables are sized to their share of the time by a probe."""
    cost = columns * classes * min(rows, CAP_ROWS) / CAP_ROWS
    if not isinstance(getattr(model, "max_iter", None), int) or baseline.max_cost / cost >= model.max_iter:
        return {}
    rounds = int(baseline.max_cost / cost)
    model.set_params(max_iter=max(rounds, 20), learning_rate=0.2)
    return {"note": f"capped at {max(rounds, 20)} rounds, learning rate 0.2 ({columns} columns x {classes} classes)"}


def _proba(model, x, k: int) -> np.ndarray:
    """Probabilities over all k classes, even if a fold's training rows lacked one."""
    proba = np.zeros((x.shape[0], k))
    proba[:, model.classes_] = model.predict_proba(x)
    return proba


def _label_proba(model, x) -> np.ndarray:
    """Each label's probability of 1, (n, t), from scikit-learn's multi-output list of (n, classes) arrays."""
    probas = model.predict_proba(x)
    return np.column_stack([p[:, list(c).index(1)] if 1 in c else np.zeros(len(p))
                            for p, c in zip(probas, model.classes_, strict=True)])


def values_of(pred: np.ndarray, transform: bool, y: np.ndarray) -> np.ndarray:
    """Predicted values on the target's scale (expm1 after a log1p fit), never negative for a count."""
    pred = np.expm1(pred) if transform else pred
    return np.maximum(pred, np.where(y.min(axis=0) >= 0, 0.0, -np.inf))  # a count is never negative (per target)
