"""scikit-learn baselines, cross-validated on the run's folds with the competition metric.

Each baseline is plain data: an estimator factory per task family and the input it
takes (dense codes for trees, one-hot for linear models, native categoricals for
histogram boosting, TF-IDF for free text). `cross_validate` fits it once per fold and
returns out-of-fold predictions, test predictions averaged over the folds, the score
of every fold and the seconds it took. Networks return the same `CVResult`, so every
model lands on one leaderboard. With several targets (multitarget, multilabel) a model
that takes a 2-D y (dummy, ridge, forests) fits them at once; the others fit one model
per target column (`PerColumn`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import scipy.sparse as sp
from sklearn.base import clone, is_classifier
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import HuberRegressor, LogisticRegression, Ridge, RidgeCV
from sklearn.pipeline import make_union
from sklearn.utils import get_tags

from automl.cuts import apply_cuts, cross_fitted
from automl.errors import AutomlError
from automl.folds import Fold, Split, predicted_rows, take, weights_for_test
from automl.metrics import best_threshold, get_metric, score
from automl.preprocess import WORD, Features, clean_text
from automl.problem import Problem


@dataclass(frozen=True)
class Baseline:
    name: str
    classifier: Callable[[int], object]  # seed -> estimator
    regressor: Callable[[int], object]
    inputs: str  # dense | onehot | native | tfidf
    description: str
    max_cost: float = float("inf")  # columns x classes x boosting rounds allowed; beyond, rounds are capped
    weight: float = 1.0  # its part of the baselines' time, against the others' (boosting is worth most)
    # The regressor for metrics scored on absolute error (mae, medae): the conditional median, not
    # the mean, minimises them, and heavy-tailed targets pull a squared-error fit off; None: `regressor`.
    absolute: Callable[[int], object] | None = None
    cuts: bool = False  # regress the class code, then cut it into classes (ordinal label metrics: qwk)
    needs: str = ""  # what it needs to apply, for the message when it does not


def _forest(cls, seed, **kw):
    return cls(n_estimators=300, n_jobs=-1, random_state=seed, **kw)


def _hgb(cls, seed, **kw):
    return cls(learning_rate=0.05, max_iter=1000, early_stopping=True, n_iter_no_change=40,
               validation_fraction=0.15, l2_regularization=1.0, random_state=seed, **kw)


BASELINES: dict[str, Baseline] = {b.name: b for b in [
    Baseline("dummy", lambda s: DummyClassifier(strategy="prior"), lambda s: DummyRegressor(),
             "dense", "class prior or mean: the floor", weight=0.0, absolute=lambda s: DummyRegressor(strategy="median")),
    # Huber, not an exact absolute-error fit: QuantileRegressor solves a linear program that takes
    # minutes at 1M rows, and SGD on epsilon-insensitive loss needs a step size matched to the target's scale.
    Baseline("linear", lambda s: LogisticRegression(C=0.5, max_iter=2000),
             lambda s: RidgeCV(alphas=np.logspace(-2, 3, 16)),
             "onehot", "logistic/ridge on one-hot", absolute=lambda s: HuberRegressor(max_iter=300)),
    Baseline("random_forest", lambda s: _forest(RandomForestClassifier, s, min_samples_leaf=2, max_features="sqrt"),
             lambda s: _forest(RandomForestRegressor, s, max_features=0.5),
             "dense", "300 trees", weight=1.5),
    Baseline("extra_trees", lambda s: _forest(ExtraTreesClassifier, s, min_samples_leaf=2, max_features="sqrt"),
             lambda s: _forest(ExtraTreesRegressor, s, min_samples_leaf=2, max_features=0.5),
             "dense", "300 trees", weight=1.5),
    Baseline("hist_gb", lambda s: _hgb(HistGradientBoostingClassifier, s),
             lambda s: _hgb(HistGradientBoostingRegressor, s),
             "native", "native categoricals, early stop", max_cost=5e5, weight=3.0,
             absolute=lambda s: _hgb(HistGradientBoostingRegressor, s, loss="absolute_error")),
    Baseline("hist_gb_cuts", lambda s: _hgb(HistGradientBoostingClassifier, s),
             lambda s: _hgb(HistGradientBoostingRegressor, s),
             "native", "hist_gb regression on the class code, cut into classes", max_cost=5e5, weight=3.0,
             cuts=True, needs="an ordinal label metric (qwk) and 3 or more classes"),
    Baseline("tfidf_linear", lambda s: LogisticRegression(C=1.0, max_iter=2000), lambda s: Ridge(alpha=1.0),
             "tfidf", "TF-IDF of words 1-2 and characters 2-5 + one-hot", needs="a free-text column", weight=3.0),
]}


CHEAP_FIRST = ("dummy", "linear", "hist_gb", "hist_gb_cuts", "tfidf_linear", "random_forest", "extra_trees")  # the order a budget fits them


def applicable(problem: Problem, folds: list[Fold]) -> list[str]:
    """Baselines that make sense for this data (TF-IDF only when there is free text)."""
    has_text = bool(folds[0].train.text)
    ordinal = problem.metric.ordinal and problem.n_classes >= 3
    return [b.name for b in BASELINES.values() if (b.inputs != "tfidf" or has_text) and (not b.cuts or ordinal)]


@dataclass
class CVResult:
    name: str
    oof: np.ndarray  # (n, k) probabilities or (n,) values, for every train row
    test: np.ndarray  # same form, averaged over the fold models
    fold_scores: list[float]
    seconds: float
    threshold: float | None = None
    kind: str = "baseline"
    info: dict = field(default_factory=dict)

    @property
    def mean(self) -> float:
        return float(np.mean(self.fold_scores))

    @property
    def std(self) -> float:
        return float(np.std(self.fold_scores))


class Skipped(Exception):
    """A baseline that cannot fit its share of the budget, even shrunk; the message says why."""


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


def cross_validate(name: str, problem: Problem, folds: list[Fold], seed: int = 0,
                   on_fold: Callable[[int], None] | None = None, seconds: float | None = None) -> CVResult:
    """Fit baseline `name` on every fold; score out-of-fold with the competition metric.

    With `seconds`, the baseline is sized to fit that time: a timed fit on a row sample
    estimates its cost first; forests then grow trees until their share of each fold is
    used, boosting gets as many rounds as fit, and a model too costly for every row
    trains on a row sample (the leaderboard note says so). `Skipped` when even that
    would not fit.
    """
    if name not in BASELINES:
        raise AutomlError(f"--models: unknown baseline {name!r}; expected one of {', '.join(BASELINES)}")
    baseline = BASELINES[name]
    if seconds is not None and seconds <= 0 and name != "dummy":  # not even a probe: it takes seconds at scale
        raise Skipped("skipped: the baselines' time was used up before it; give more time with --timeout")
    if baseline.cuts and problem.n_classes:
        return _with_cuts(name, problem, folds, seed, on_fold, seconds)
    oof = np.zeros(problem.pred_shape(len(problem.y)))
    test, weights = np.zeros(problem.pred_shape(len(problem.test))), weights_for_test(folds)
    start = time.monotonic()
    info, notes = {}, []
    size = Size() if seconds is None or name == "dummy" else plan_size(baseline, problem, folds[0], seed,
                                                                       seconds / len(folds), len(folds))
    rng = np.random.default_rng(seed)
    grown, rounds = [], []
    for i, fold in enumerate(folds):
        if on_fold:
            on_fold(i)
        fold_end = None if seconds is None else start + seconds * (i + 1) / len(folds)
        fold_start = time.monotonic()
        # trees and rounds are added until the time left is what predicting the fold's rows takes
        until = None if fold_end is None else fold_end - size.predicting
        model, x_valid, x_test, info_fold = _fit_one(baseline, problem, fold, seed, size, rng, until)
        grown.append(getattr(model, "n_estimators", None))
        rounds.append(info_fold.pop("rounds", None))
        info |= info_fold
        oof[fold.valid_rows] = _predict(model, x_valid, problem)
        if weights[i]:  # an expanding window forecasts the test with its last fold's model only
            test += _predict(model, x_test, problem) * weights[i]
        if seconds is not None and i < len(folds) - 1:
            size = _resize(size, baseline, time.monotonic() - fold_start,
                           (start + seconds - time.monotonic()) / (len(folds) - i - 1), len(fold.train_rows))
        notes.append(size.note(baseline, len(fold.train_rows)))
    note = next((n for n in reversed(notes) if n), "")
    if None not in grown and seconds is not None and min(grown) < 300:
        trees = f"{min(grown)}-{max(grown)}" if min(grown) != max(grown) else str(min(grown))
        note = f"{trees} trees, grown until the time share was used" + (note[note.index(" on "):] if " on " in note else "")
    stopped = [r for r in rounds if r is not None]
    if stopped:
        span = f"{min(stopped)}-{max(stopped)}" if min(stopped) != max(stopped) else str(min(stopped))
        note = "; ".join(x for x in (f"boosting stopped by its time share after {span} rounds", note) if x)
    if note:
        info["note"] = "; ".join(x for x in (info.get("note"), note) if x)
    return finish(name, problem, folds, oof, test, time.monotonic() - start, info=info)


def _with_cuts(name: str, problem: Problem, folds: list[Fold], seed: int, on_fold, seconds: float | None) -> CVResult:
    """Regress the class code (classes in sorted order), then cut it into classes.

    Each fold's cut points are chosen on the other folds' out-of-fold predictions, so its
    score is not flattered; the test's on all of them. Predictions are one-hot class
    probabilities, the form every classifier hands on, so blending and submission need
    nothing new: in a blend the cut class is a vote of the member's weight.
    """
    codes = replace(problem, y=problem.y.astype(np.float64), classes=None, metric=get_metric("rmse"))
    values = cross_validate(name, codes, folds, seed, on_fold, seconds)
    start, k = time.monotonic(), problem.n_classes
    classes, cuts = cross_fitted(problem.y, values.oof, folds, k)
    oof = np.zeros((len(problem.y), k))
    rows = predicted_rows(folds)
    oof[rows, classes[rows]] = 1.0
    note = "cut points cross-fitted: chosen on the other folds"
    # JSON has no infinity: None is a cut beyond every prediction (a class that is never predicted)
    info = values.info | {"cuts": [round(float(c), 4) if np.isfinite(c) else None for c in cuts],
                          "note": "; ".join(x for x in (note, values.info.get("note")) if x)}
    return finish(name, problem, folds, oof, np.eye(k)[apply_cuts(values.test, cuts)],
                  values.seconds + time.monotonic() - start, info=info)


PROBE_ROWS = 5000


def plan_size(baseline: Baseline, problem: Problem, fold: Fold, seed: int, per_fold: float, folds: int = 1) -> Size:
    """Estimate one fold's cost from a timed fit on a row sample, and size the model to `per_fold` seconds.

    A fold predicts every validation and test row whatever it trains on: that part, timed on the
    probe's predictions, does not shrink with a row sample (at a million rows, hist_gb predicting
    533,000 rows with 100 rounds took 6.4 s of a fold given 4). It is kept out of the training's
    time first; where it would leave little, fewer trees or rounds make it cheaper. The probes' own
    time comes out of the `folds` folds' shares."""
    began, n = time.monotonic(), len(fold.train_rows)
    # Small tables: a fold costs little more than a probe; folds after an overrun shrink. A TF-IDF
    # probe's vocabulary from a sample says little of the full one: probe text only when large.
    if n <= PROBE_ROWS or (baseline.inputs == "tfidf" and n <= 50_000):
        return Size()
    m = min(n, max(PROBE_ROWS, min(50_000, n // 10)))  # large enough that fixed costs do not dominate
    predicted = len(fold.valid_rows) + len(fold.test)  # rows every fold predicts
    probe_units = {"dense": 8, "native": 10}.get(baseline.inputs) if baseline.name != "dummy" else None
    took, per_row = _timed_probe(baseline, problem, fold, seed, Size(units=probe_units, rows=m))
    checked = min(m, len(fold.valid_rows))  # the validation rows a probe predicts
    training = took - per_row * checked
    scale = (n / m) ** (1.1 if probe_units else 1.0)
    per_fold = max(0.0, per_fold - (time.monotonic() - began) / folds)
    if probe_units and baseline.inputs == "dense":  # forests: cost per tree, at every row, and predicting
        train_tree = training / probe_units * scale
        predict_tree = per_row / probe_units * predicted
        trees = int(min(300, per_fold / (train_tree + predict_tree)))
        if trees >= 300:
            return Size()
        if trees >= 30:
            return Size(units=trees // 10 * 10, predicting=trees // 10 * 10 * predict_tree)
        room = per_fold - 30 * predict_tree
        rows = int(n * (max(room, 0.0) / (30 * train_tree)) ** (1 / 1.1))
        return _sampled(baseline, Size(units=30, rows=rows, predicting=30 * predict_tree), n, per_fold)
    if baseline.inputs == "native":  # hist_gb: binning and set-up, then a cost per round, at every row
        more, more_per_row = _timed_probe(baseline, problem, fold, seed, Size(units=5 * probe_units, rows=m))
        per_fold = max(0.0, per_fold - more / folds)
        per_round = max(more - more_per_row * checked - training, 1e-6) / (4 * probe_units) * scale
        fixed = max(training - probe_units * per_round / scale, 0.0) * scale
        predict_round = more_per_row / (5 * probe_units) * predicted
        rounds = 100  # what early stopping usually leaves; fewer where predicting them would take most of the share
        if rounds * predict_round > per_fold / 2:
            rounds = max(20, int(per_fold / 2 / predict_round))
        predicting = rounds * predict_round
        if rounds == 100 and per_fold >= fixed + 100 * per_round + predicting:  # rounds then added against the clock
            return Size(predicting=predicting)
        rows = int(n * max(per_fold - predicting, 0.0) / (fixed + rounds * per_round))
        return _sampled(baseline, Size(units=None if rounds == 100 else rounds, rows=rows, learning_rate=0.15,
                                       predicting=predicting), n, per_fold)
    predicting, full = per_row * predicted, training * scale
    if full + predicting <= per_fold:
        return Size(predicting=predicting)
    return _sampled(baseline, Size(rows=int(n * max(per_fold - predicting, 0.0) / full), predicting=predicting), n, per_fold)


def _timed_probe(baseline: Baseline, problem: Problem, fold: Fold, seed: int, size: Size) -> tuple[float, float]:
    """Seconds a fit on the size's row sample took, predicting as many validation rows; and those
    predictions' seconds per row (their inputs built, as a fold builds them)."""
    started = time.monotonic()
    _, _, _, info = _fit_one(baseline, problem, fold, seed, size, np.random.default_rng(seed), None, probe=True)
    return time.monotonic() - started, info["predict_per_row"]


def _sampled(baseline: Baseline, size: Size, n: int, per_fold: float) -> Size:
    if size.rows is None or size.rows >= n:
        return replace(size, rows=None)
    if size.rows < 1000:
        raise Skipped(f"skipped: a fold would take longer than its {per_fold:.1f}s share even on a 1,000-row sample; "
                      "give more time with --timeout")
    return size


def _resize(size: Size, baseline: Baseline, took: float, allowed: float, n: int) -> Size:
    """After a fold: shrink the next folds when this one overran their share."""
    if took <= 1.2 * allowed or allowed <= 0:
        return size
    ratio = max(allowed, 0.05 * took) / took
    if size.units is not None or baseline.inputs in ("dense", "native"):
        units = size.units or (300 if baseline.inputs == "dense" else 1000)
        return replace(size, units=max(10, int(units * ratio)))
    return replace(size, rows=max(1000, int((size.rows or n) * ratio)))


def _fit_one(baseline: Baseline, problem: Problem, fold: Fold, seed: int, size: Size, rng, until: float | None,
             probe: bool = False):
    """One fold's fitted model and its validation and test inputs (a probe's: a validation slice and no test)."""
    train, y = fold.train, problem.y[fold.train_rows]
    if size.rows is not None and size.rows < len(y):  # sample the features before building inputs from them
        rows = np.sort(rng.choice(len(y), size.rows, replace=False))
        train, y = take(train, rows), y[rows]
    if probe:  # a probe predicts as many validation rows as it trains on, and no test
        probe_valid = take(fold.valid, np.arange(min(len(y), len(fold.valid))))
        if baseline.inputs == "tfidf":  # the vocabulary is fitted on the training rows: built together
            x_train, x_valid = _inputs(baseline.inputs, train, probe_valid)
        else:  # built when predicting, so that the timed prediction includes them as a fold's does
            x_train, x_valid = _inputs(baseline.inputs, train)[0], None
        x_test = None
    else:
        x_train, x_valid, x_test = _inputs(baseline.inputs, train, fold.valid, fold.test)
    k, classify = problem.n_classes, problem.n_classes > 0 or problem.multilabel
    absolute = not classify and problem.metric.objective == "absolute" and baseline.absolute is not None
    model = baseline.classifier(seed) if classify else baseline.absolute(seed) if absolute else baseline.regressor(seed)
    _set_categoricals(model, fold.train)
    info = _cap_rounds(model, baseline, x_train.shape[1], k or 1)
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
    if not classify and problem.metric.target_transform == "log1p":
        y = np.log1p(y)
    if y.ndim == 2 and not get_tags(model).target_tags.multi_output:
        model, info["rounds"] = _fit_each(model, x_train, y, size, until, probe)
    else:
        info["rounds"] = _fit(model, x_train, y, size, until, probe)
    if probe:  # the probe times a prediction too (forests spend seconds predicting), inputs included
        started = time.monotonic()
        _predict(model, _inputs(baseline.inputs, probe_valid)[0] if x_valid is None else x_valid, problem)
        info["predict_per_row"] = (time.monotonic() - started) / max(1, len(probe_valid))
    return model, x_valid, x_test, info


def _fit(model, x, y, size: Size, until: float | None, probe: bool) -> int | None:
    """Forests grow trees and boosting adds rounds until the clock says stop; the rest fit once.
    Returns the boosting rounds when the clock stopped them, else None."""
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
    def classes_(self) -> list[np.ndarray]:
        return [m.classes_ for m in self.models_]

    def predict(self, x) -> np.ndarray:
        return np.column_stack([m.predict(x) for m in self.models_])

    def predict_proba(self, x) -> list[np.ndarray]:
        return [m.predict_proba(x) for m in self.models_]


def _fit_each(model, x, y: np.ndarray, size: Size, until: float | None, probe: bool) -> tuple[PerColumn, int | None]:
    """A copy of `model` per target column of y (n, t), each fitted as one target is (boosting against the
    clock, each column given an equal part of the time left). A label that is constant in these rows gets
    its prior: a classifier cannot learn from one class."""
    start, models, stopped = time.monotonic(), [], []
    for j in range(y.shape[1]):
        one = DummyClassifier(strategy="prior") if is_classifier(model) and len(np.unique(y[:, j])) < 2 else clone(model)
        end = None if until is None else start + (until - start) * (j + 1) / y.shape[1]
        stopped.append(_fit(one, x, y[:, j], size, end, probe))
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


def _predict(model, x, problem: Problem) -> np.ndarray:
    if problem.n_classes:
        return _proba(model, x, problem.n_classes)
    if problem.multilabel:
        return _label_proba(model, x)
    return _values(model.predict(x), problem.metric.target_transform == "log1p", problem.y)


def finish(name: str, problem: Problem, folds: list[Split], oof: np.ndarray, test: np.ndarray,
           seconds: float, kind: str = "baseline", info: dict | None = None) -> CVResult:
    """Pick the decision threshold on out-of-fold predictions and score every fold."""
    rows = predicted_rows(folds)  # an expanding time window predicts no row of its first stretch
    threshold = best_threshold(problem.metric, problem.y[rows], oof[rows])
    scores = [score(problem.metric, problem.y[f.valid_rows], oof[f.valid_rows], threshold) for f in folds]
    return CVResult(name, oof, test, scores, seconds, threshold, kind, info or {})


def _cap_rounds(model, baseline: Baseline, columns: int, classes: int) -> dict:
    """Fewer, larger boosting rounds when columns x classes make each round slow (pixels)."""
    if not isinstance(getattr(model, "max_iter", None), int) or baseline.max_cost / (columns * classes) >= model.max_iter:
        return {}
    rounds = int(baseline.max_cost / (columns * classes))
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


def _values(pred: np.ndarray, transform: bool, y: np.ndarray) -> np.ndarray:
    pred = np.expm1(pred) if transform else pred
    return np.maximum(pred, np.where(y.min(axis=0) >= 0, 0.0, -np.inf))  # a count is never negative (per target)


def _set_categoricals(model, features: Features) -> None:
    if hasattr(model, "categorical_features") and features.categorical.shape[1]:
        mask = np.zeros(features.numeric.shape[1] + features.categorical.shape[1] + _pixels(features), dtype=bool)
        mask[features.numeric.shape[1]: features.numeric.shape[1] + features.categorical.shape[1]] = True
        model.set_params(categorical_features=mask)


def _pixels(features: Features) -> int:
    return 0 if features.images is None else int(np.prod(features.images.shape[1:]))


def dense(features: Features) -> np.ndarray:
    """Numerics, categorical codes as numbers (trees split them) and flat pixels."""
    parts = [features.numeric, features.categorical.astype(np.float32)]
    if features.images is not None:
        parts.append(features.images.reshape(len(features), -1))
    return np.hstack(parts)


def one_hot(features: Features) -> sp.csr_matrix:
    """Numerics and flat pixels as they are, each categorical code as its own column."""
    n = len(features)
    parts = [sp.csr_matrix(features.numeric)]
    if features.images is not None:
        parts.append(sp.csr_matrix(features.images.reshape(n, -1)))
    if features.categorical.shape[1]:
        offsets = np.cumsum((0,) + features.cardinalities[:-1])
        columns = (features.categorical + offsets).ravel()
        rows = np.repeat(np.arange(n), features.categorical.shape[1])
        parts.append(sp.csr_matrix((np.ones(len(columns), np.float32), (rows, columns)),
                                   shape=(n, int(sum(features.cardinalities)))))
    return sp.hstack(parts, format="csr")


def _inputs(kind: str, *sets: Features) -> tuple:
    """Model inputs for each set of rows; TF-IDF's vocabulary is fitted on the first."""
    if kind in ("dense", "native"):
        return tuple(dense(f) for f in sets)
    matrices = [one_hot(f) for f in sets]
    if kind == "onehot":
        return tuple(matrices)
    joined = [clean_text(_joined_text(f)) for f in sets]
    tfidf = make_union(
        TfidfVectorizer(token_pattern=WORD.pattern, ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=200_000),
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True, max_features=200_000))
    texts = [tfidf.fit_transform(joined[0])] + [tfidf.transform(t) for t in joined[1:]]
    return tuple(sp.hstack([t, m], format="csr") for t, m in zip(texts, matrices, strict=True))


def _joined_text(features: Features) -> np.ndarray:
    columns = list(features.text.values())
    joined = columns[0]
    for more in columns[1:]:
        joined = joined + " " + more
    return joined
