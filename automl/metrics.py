"""Kaggle metrics by name: the function, its direction, and what predictions it needs.

Every model hands over the same kind of prediction: class probabilities of shape
(n, n_classes) for classification, values of shape (n,) for regression, and with several
target columns (n, t): values (multitarget) or each label's probability (multilabel,
scored per column and averaged, as Kaggle's "mean columnwise" metrics are). A metric turns
those into what it scores: labels (argmax, or a threshold picked on out-of-fold
predictions for binary tasks), the top k classes (map@k), probabilities, or values.
Metrics also say how to train for them (`objective`): rmsle trains on log1p(target) and
inverts the prediction, mae on absolute error. `kaggle_metric` maps the metric names
Kaggle shows (its competition record's evaluation_metric) to these.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn import metrics as skm

CLASSIFICATION = ("binary", "multiclass")
REGRESSION = ("regression",)
VALUES = ("regression", "multitarget")  # a value metric scores several target columns as Kaggle does: column-wise
MULTI = ("multitarget", "multilabel")  # several target columns: y and predictions are (n, t)


@dataclass(frozen=True)
class Metric:
    name: str
    fn: Callable[[np.ndarray, np.ndarray], float]
    greater_is_better: bool
    needs: str  # "label": class labels; "proba": probabilities; "value": regression values
    tasks: tuple[str, ...]
    target_transform: str | None = None  # "log1p": fit on log1p(y), predict expm1
    description: str = ""
    # What the trainers minimise: "squared", "absolute", "log1p_squared" (squared error of
    # log1p(y), with target_transform "log1p") or "cross_entropy"; derived when left empty.
    objective: str = ""
    # How predictions become what is scored: "threshold" (binary labels at a threshold picked
    # on out-of-fold predictions, argmax for multiclass), "argmax", "rank" (the top k classes
    # by probability) or "none" (probabilities or values are scored as they are).
    decision: str = ""
    # The classes are ordered (by their sorted value) and a miss by two costs more than a miss by
    # one (qwk): a regression on the class code, cut into classes, competes with the classifiers.
    ordinal: bool = False
    # The score depends on the probabilities' scale, not only their order (log loss): the blend
    # clips them and fits a temperature when that helps out of fold.
    calibrated: bool = False

    def __post_init__(self) -> None:
        if not self.objective:
            objective = ("cross_entropy" if self.tasks[0] in CLASSIFICATION
                         else "log1p_squared" if self.target_transform == "log1p" else "squared")
            object.__setattr__(self, "objective", objective)
        if not self.decision:
            decision = "none" if self.needs != "label" else "threshold" if "binary" in self.tasks else "argmax"
            object.__setattr__(self, "decision", decision)

    @property
    def direction(self) -> str:
        return "higher is better" if self.greater_is_better else "lower is better"

    def better(self, a: float, b: float) -> bool:
        """Whether score `a` is strictly better than `b`."""
        return a > b if self.greater_is_better else a < b


def columnwise(fn: Callable[[np.ndarray, np.ndarray], float]) -> Callable[[np.ndarray, np.ndarray], float]:
    """fn on one column; on several target columns (y and p of shape (n, t)), the mean of fn over the columns,
    as Kaggle's "Mean Columnwise ..." metrics score them."""
    @functools.wraps(fn)
    def mean_over_columns(y, p):
        y, p = np.asarray(y), np.asarray(p)
        if y.ndim == 2:
            return float(np.mean([fn(y[:, j], p[:, j]) for j in range(y.shape[1])]))
        return fn(y, p)

    return mean_over_columns


def _rmse(y, p):
    return float(np.sqrt(skm.mean_squared_error(y, p)))


def _rmsle(y, p):
    return float(np.sqrt(skm.mean_squared_log_error(y, np.clip(p, 0, None))))


def _auc(y, p):
    if y.ndim == 2:  # multilabel: the mean of each label's AUC
        return _per_label(lambda yj, pj: skm.roc_auc_score(yj, pj), y, p)
    if p.ndim == 2 and p.shape[1] == 2:
        return float(skm.roc_auc_score(y, p[:, 1]))
    return float(skm.roc_auc_score(y, p, multi_class="ovr", labels=np.arange(p.shape[1])))


def _per_label(fn, y, p) -> float:
    """The mean of fn over the label columns that hold both 0 and 1 (AUC is undefined on one class); NaN when none does."""
    both = [j for j in range(y.shape[1]) if 0 < y[:, j].sum() < len(y)]
    return float(np.mean([fn(y[:, j], p[:, j]) for j in both])) if both else float("nan")


def _mcrmse(y, p):
    """Mean columnwise RMSE: each target column's RMSE, averaged (one column: plain RMSE)."""
    return float(np.mean(np.sqrt(np.mean((np.asarray(y) - p) ** 2, axis=0))))


def _logloss(y, p):
    if y.ndim == 2:  # multilabel: each label's binary log loss, averaged over the labels
        p = np.clip(p, 1e-15, 1 - 1e-15)
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    p = np.clip(p, 1e-15, 1)
    return float(skm.log_loss(y, p / p.sum(axis=1, keepdims=True), labels=np.arange(p.shape[1])))


def _balanced_logloss(y, p):
    """Log loss with every class weighing the same (Kaggle's ICR competition): the mean over
    the classes present of each class's mean -log p(true class)."""
    p = np.clip(p, 1e-15, 1)
    p = p / p.sum(axis=1, keepdims=True)
    loss = -np.log(p[np.arange(len(y)), y])
    return float(np.mean([loss[y == c].mean() for c in np.unique(y)]))


def _smape(y, p):
    """Kaggle's SMAPE in percent: 100/n * sum 2|F-A| / (|A|+|F|); a row where both are 0 counts 0."""
    denominator = np.abs(y) + np.abs(p)
    ratio = np.divide(2 * np.abs(p - y), denominator, out=np.zeros(len(y)), where=denominator != 0)
    return float(100 * ratio.mean())


def top_classes(pred: np.ndarray, k: int) -> np.ndarray:
    """Class codes of shape (n, k), most probable first (ties: the lower code first)."""
    return np.argsort(-pred, axis=1, kind="stable")[:, :k]


@functools.cache
def map_at(k: int) -> Metric:
    """Mean average precision at k with one true class per row: 1/rank of the true class
    among the k most probable, 0 when it is not among them."""
    def fn(y, p):
        hits = top_classes(p, k) == np.asarray(y)[:, None]
        return float((hits / np.arange(1, hits.shape[1] + 1)).sum(axis=1).mean())

    return Metric(f"map@{k}", fn, True, "proba", CLASSIFICATION, decision="rank",
                  description=f"mean average precision of the top {k} classes")


METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        Metric("accuracy", lambda y, p: float(skm.accuracy_score(y, p)), True, "label",
               CLASSIFICATION, description="share of correct labels"),
        Metric("balanced_accuracy", lambda y, p: float(skm.balanced_accuracy_score(y, p)),
               True, "label", CLASSIFICATION, description="mean recall over classes"),
        Metric("auc", _auc, True, "proba", (*CLASSIFICATION, "multilabel"),
               description="area under the ROC curve (one-vs-rest for multiclass, mean over labels for multilabel)"),
        Metric("gini", lambda y, p: 2 * _auc(y, p) - 1, True, "proba", CLASSIFICATION,
               description="normalized Gini: 2 AUC - 1"),
        Metric("logloss", _logloss, False, "proba", (*CLASSIFICATION, "multilabel"), calibrated=True,
               description="cross-entropy of the predicted probabilities (mean over labels for multilabel)"),
        Metric("balanced_logloss", _balanced_logloss, False, "proba", CLASSIFICATION, calibrated=True,
               description="cross-entropy with every class weighing the same"),
        Metric("f1", lambda y, p: float(skm.f1_score(y, p)), True, "label", ("binary",),
               description="F1 of the positive class"),
        Metric("f1_macro", lambda y, p: float(skm.f1_score(y, p, average="macro")), True,
               "label", CLASSIFICATION, description="F1 averaged over classes"),
        Metric("f1_micro", lambda y, p: float(skm.f1_score(y, p, average="micro")), True,
               "label", CLASSIFICATION, description="F1 over all rows' labels (accuracy for one label a row)"),
        Metric("qwk", lambda y, p: float(skm.cohen_kappa_score(y, p, weights="quadratic")),
               True, "label", CLASSIFICATION, ordinal=True, description="quadratic weighted kappa"),
        Metric("mcc", lambda y, p: float(skm.matthews_corrcoef(y, p)), True, "label",
               CLASSIFICATION, description="Matthews correlation coefficient"),
        Metric("rmse", columnwise(_rmse), False, "value", VALUES, description="root mean squared error"),
        Metric("rmsle", columnwise(_rmsle), False, "value", VALUES, target_transform="log1p",
               description="root mean squared error of log1p (trained on log1p target)"),
        Metric("msle", columnwise(lambda y, p: float(skm.mean_squared_log_error(y, np.clip(p, 0, None)))), False,
               "value", VALUES, target_transform="log1p",
               description="mean squared error of log1p (trained on log1p target)"),
        Metric("mae", columnwise(lambda y, p: float(skm.mean_absolute_error(y, p))), False, "value",
               VALUES, objective="absolute", description="mean absolute error"),
        Metric("medae", columnwise(lambda y, p: float(skm.median_absolute_error(y, p))), False, "value",
               VALUES, objective="absolute", description="median absolute error"),
        Metric("mape", columnwise(lambda y, p: float(skm.mean_absolute_percentage_error(y, p))), False, "value",
               VALUES, description="mean absolute percentage error, as a fraction"),
        Metric("smape", columnwise(_smape), False, "value", VALUES, target_transform="log1p",
               description="symmetric mean absolute percentage error, in percent (trained on log1p target when y >= 0)"),
        Metric("r2", columnwise(lambda y, p: float(skm.r2_score(y, p))), True, "value", VALUES,
               description="coefficient of determination"),
        Metric("mcrmse", _mcrmse, False, "value", ("multitarget",),
               description="mean columnwise root mean squared error over several targets"),
    ]
}
MAP_AT = re.compile(r"map@([1-9][0-9]*)")


def names() -> list[str]:
    """Every metric name --metric and the YAML accept (map@K for any K)."""
    return [*METRICS, "map@K"]


def for_task(task: str) -> list[str]:
    """The metric names that apply to a task."""
    return [m.name for m in METRICS.values() if task in m.tasks] + (["map@K"] if task in CLASSIFICATION else [])


def get_metric(name: str, where: str = "metric") -> Metric:
    """Look a metric up by name (map@K for any K); unknown names list the allowed ones."""
    from automl.errors import AutomlError

    found = MAP_AT.fullmatch(str(name))
    if found:
        return map_at(int(found[1]))
    if name not in METRICS:
        raise AutomlError(f"{where}: unknown metric {name!r}; expected one of {', '.join(names())}")
    return METRICS[name]


# Kaggle's display names (ApiCompetition.evaluation_metric) -> ours; a dict picks by task.
# Matching ignores case and everything but letters, digits, @ and braces, so "Quadratic Weighted
# Kappa" is "QuadraticWeightedKappa". Names marked "unconfirmed" were not seen among the metric
# names Kaggle shows for its competitions; the others were. MAP@K, MAP{K} and MAP@3 are matched
# by pattern in kaggle_metric.
KAGGLE_NAMES: dict[str, str | dict[str, str]] = {
    "Categorization Accuracy": "accuracy",
    "Accuracy Score": "accuracy",
    "Balanced Accuracy Score": "balanced_accuracy",  # unconfirmed
    "Area Under Receiver Operating Characteristic Curve": "auc",
    "Roc Auc Score": "auc",
    "Mean Columnwise Area Under Receiver Operating Characteristic Curve": "auc",  # one column, or the mean over labels
    "Mean Column-wise ROC AUC": "auc",  # unconfirmed
    "Normalized Gini Index": "gini",
    "Gini Index": "gini",  # assumed normalized, as in the competitions seen with it
    "Log Loss": "logloss",
    "Mean Columnwise Log Loss": "logloss",  # unconfirmed; multilabel: the mean over labels
    "Multiclass Loss": "logloss",
    "Balanced Log Loss": "balanced_logloss",  # unconfirmed
    "Weighted Multiclass Loss": "balanced_logloss",  # assumes ICR's weights: 1 / the class's row count
    "F1 Score": {"binary": "f1", "multiclass": "f1_micro"},
    "Mean F1-Score": {"binary": "f1", "multiclass": "f1_micro"},  # unconfirmed
    "F-Score (Macro)": "f1_macro",
    "F-Score (Micro)": "f1_micro",  # unconfirmed
    "Quadratic Weighted Kappa": "qwk",
    "Cohen Kappa Score": "qwk",  # assumes quadratic weights, as in the competitions seen with it
    "Matthews Correlation Coefficient": "mcc",
    "Root Mean Squared Error": "rmse",
    "Mean Columnwise Root Mean Squared Error": {"regression": "rmse", "multitarget": "mcrmse"},
    "MCRMSE": "mcrmse",  # unconfirmed
    "Mean Squared Error": "rmse",  # competitions seen with it report the root; the ranking is the same
    "Root Mean Squared Logarithmic Error": "rmsle",
    "Mean Columnwise Root Mean Squared Logarithmic Error": "rmsle",  # each target column's, averaged
    "Mean Squared Log Error": "rmsle",  # as "Mean Squared Error": seen reporting the root
    "Mean Absolute Error": "mae",
    "Median Absolute Error": "medae",
    "Mean Absolute Percentage Error": "mape",  # unconfirmed
    "SMAPE": "smape",
    "Symmetric Mean Absolute Percentage Error": "smape",  # unconfirmed
    "R2 Score": "r2",
    "R2 score (coefficient of determination)": "r2",
    "R-squared": "r2",  # unconfirmed
}


def _key(display: str) -> str:
    return re.sub(r"[^a-z0-9@{}]", "", display.lower())


_BY_KEY = {_key(display): name for display, name in KAGGLE_NAMES.items()}


def kaggle_metric(display: str, task: str, k: int | None = None) -> str:
    """Our metric for Kaggle's display name on a `task`; AutomlError saying why when there is none.

    `k` is the K of a "MAP@K" whose record does not give it (the sample's labels per row).
    """
    from automl.errors import AutomlError

    found = re.fullmatch(r"map@?\{?(k|[1-9][0-9]*)\}?", _key(display))
    if found and found[1] == "k" and k is None:
        raise AutomlError(f"Kaggle's metric {display!r} does not say its K and the sample submission "
                          f"holds one label a row")
    name = (f"map@{k if found[1] == 'k' else found[1]}" if found else _BY_KEY.get(_key(display)))
    if isinstance(name, dict):
        name = name.get(task, next(iter(name.values())))
    if name is None:
        raise AutomlError(f"Kaggle's metric {display!r} is not one automl knows")
    if task not in get_metric(name).tasks:
        raise AutomlError(f"Kaggle's metric {display!r} ({name}) does not apply to a {task} task")
    return name


def unambiguous_metric(display: str) -> str | None:
    """Our metric for Kaggle's display name when the name alone decides it; None when it depends on the
    task ("F1 Score"), when a MAP@K does not give its K, or when automl knows none."""
    found = re.fullmatch(r"map@?\{?(k|[1-9][0-9]*)\}?", _key(display))
    if found:
        return None if found[1] == "k" else f"map@{found[1]}"
    name = _BY_KEY.get(_key(display))
    return name if isinstance(name, str) else None


def default_metric(task: str, probabilities: bool) -> str:
    """The metric to assume when a competition's metric is not known."""
    if task == "regression":
        return "rmse"
    if task in MULTI:  # multilabel: the mean column AUC, as most multilabel competitions score
        return "mcrmse" if task == "multitarget" else "auc"
    return "logloss" if probabilities else "accuracy"


def to_labels(pred: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Class codes from probabilities: a threshold on the positive class, else argmax."""
    if threshold is not None and pred.ndim == 2 and pred.shape[1] == 2:
        return (pred[:, 1] >= threshold).astype(np.int64)
    return pred.argmax(axis=1)


def score(metric: Metric, y: np.ndarray, pred: np.ndarray, threshold: float | None = None) -> float:
    """Score predictions in the model's form (probabilities or values) with `metric`."""
    if metric.needs == "label":
        return metric.fn(y, to_labels(pred, threshold))
    return metric.fn(y, pred)


def best_threshold(metric: Metric, y: np.ndarray, pred: np.ndarray) -> float | None:
    """The decision threshold that maximizes a label metric on binary probabilities.

    Picked on out-of-fold predictions, so a model that ranks well but is calibrated
    badly (or a skewed F1 competition) still writes good labels. None when the metric
    does not score labels or the task is not binary.
    """
    if metric.decision != "threshold" or pred.ndim != 2 or pred.shape[1] != 2:
        return None
    # Every label metric here is higher-is-better.
    # Candidates are quantiles floored to two significant digits: probabilities that differ only
    # further down (a constant model's per-fold priors, say) nearly always get the same label,
    # and small probabilities (rare positives) keep their resolution.
    q = np.clip(np.quantile(pred[:, 1], np.linspace(0.02, 0.98, 97)), 1e-12, None)
    step = 10.0 ** (np.floor(np.log10(q)) - 1)
    candidates = np.unique(np.round(np.floor(q / step + 1e-9) * step, 12))
    scores = np.array([metric.fn(y, (pred[:, 1] >= t).astype(np.int64)) for t in candidates])
    # Keep 0.5 when it is as good: a moved threshold should earn its place.
    if score(metric, y, pred, 0.5) >= scores.max():
        return 0.5
    return float(candidates[int(scores.argmax())])
