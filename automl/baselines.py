"""scikit-learn baselines, cross-validated on the run's folds with the competition metric.

Each baseline is plain data: an estimator factory per task family and the input it
takes (dense codes for trees, one-hot for linear models, native categoricals for
histogram boosting, TF-IDF for free text). `cross_validate` fits it once per fold and
returns out-of-fold predictions, test predictions averaged over the folds, the score
of every fold and the seconds it took. Networks return the same `CVResult`, so every
model lands on one leaderboard.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
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
from sklearn.linear_model import LogisticRegression, Ridge, RidgeCV
from sklearn.pipeline import make_union

from automl.errors import AutomlError
from automl.folds import Fold, Split
from automl.metrics import best_threshold, score
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


def _forest(cls, seed, **kw):
    return cls(n_estimators=300, n_jobs=-1, random_state=seed, **kw)


def _hgb(cls, seed):
    return cls(learning_rate=0.05, max_iter=1000, early_stopping=True, n_iter_no_change=40,
               validation_fraction=0.15, l2_regularization=1.0, random_state=seed)


BASELINES: dict[str, Baseline] = {b.name: b for b in [
    Baseline("dummy", lambda s: DummyClassifier(strategy="prior"), lambda s: DummyRegressor(),
             "dense", "class prior or mean: the floor"),
    Baseline("linear", lambda s: LogisticRegression(C=0.5, max_iter=2000),
             lambda s: RidgeCV(alphas=np.logspace(-2, 3, 16)),
             "onehot", "logistic/ridge on one-hot"),
    Baseline("random_forest", lambda s: _forest(RandomForestClassifier, s, min_samples_leaf=2, max_features="sqrt"),
             lambda s: _forest(RandomForestRegressor, s, max_features=0.5),
             "dense", "300 trees"),
    Baseline("extra_trees", lambda s: _forest(ExtraTreesClassifier, s, min_samples_leaf=2, max_features="sqrt"),
             lambda s: _forest(ExtraTreesRegressor, s, min_samples_leaf=2, max_features=0.5),
             "dense", "300 trees"),
    Baseline("hist_gb", lambda s: _hgb(HistGradientBoostingClassifier, s),
             lambda s: _hgb(HistGradientBoostingRegressor, s),
             "native", "native categoricals, early stop", max_cost=5e5),
    Baseline("tfidf_linear", lambda s: LogisticRegression(C=1.0, max_iter=2000), lambda s: Ridge(alpha=1.0),
             "tfidf", "TF-IDF of words 1-2 and characters 2-5 + one-hot"),
]}


def applicable(problem: Problem, folds: list[Fold]) -> list[str]:
    """Baselines that make sense for this data (TF-IDF only when there is free text)."""
    has_text = bool(folds[0].train.text)
    return [name for name in BASELINES if name != "tfidf_linear" or has_text]


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


def cross_validate(name: str, problem: Problem, folds: list[Fold], seed: int = 0,
                   on_fold: Callable[[int], None] | None = None) -> CVResult:
    """Fit baseline `name` on every fold; score out-of-fold with the competition metric."""
    if name not in BASELINES:
        raise AutomlError(f"--models: unknown baseline {name!r}; expected one of {', '.join(BASELINES)}")
    baseline = BASELINES[name]
    k = problem.n_classes
    transform = problem.metric.target_transform == "log1p"
    oof = np.zeros((len(problem.y), k) if k else len(problem.y))
    test = np.zeros((len(problem.test), k) if k else len(problem.test))
    start = time.perf_counter()
    info = {}
    for i, fold in enumerate(folds):
        if on_fold:
            on_fold(i)
        x_train, x_valid, x_test = _inputs(baseline.inputs, fold)
        y = problem.y[fold.train_rows]
        if k:
            model = baseline.classifier(seed)
            _set_categoricals(model, fold.train)
            info |= _cap_rounds(model, baseline, x_train.shape[1], k)
            model.fit(x_train, y)
            oof[fold.valid_rows] = _proba(model, x_valid, k)
            test += _proba(model, x_test, k) / len(folds)
        else:
            model = baseline.regressor(seed)
            _set_categoricals(model, fold.train)
            info |= _cap_rounds(model, baseline, x_train.shape[1], 1)
            model.fit(x_train, np.log1p(y) if transform else y)
            oof[fold.valid_rows] = _values(model.predict(x_valid), transform, problem.y)
            test += _values(model.predict(x_test), transform, problem.y) / len(folds)
    seconds = time.perf_counter() - start
    return finish(name, problem, folds, oof, test, seconds, info=info)


def finish(name: str, problem: Problem, folds: list[Split], oof: np.ndarray, test: np.ndarray,
           seconds: float, kind: str = "baseline", info: dict | None = None) -> CVResult:
    """Pick the decision threshold on out-of-fold predictions and score every fold."""
    threshold = best_threshold(problem.metric, problem.y, oof)
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


def _values(pred: np.ndarray, transform: bool, y: np.ndarray) -> np.ndarray:
    pred = np.expm1(pred) if transform else pred
    return np.clip(pred, 0, None) if y.min() >= 0 else pred  # a count is never negative


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


def _inputs(kind: str, fold: Fold) -> tuple:
    sets = (fold.train, fold.valid, fold.test)
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
