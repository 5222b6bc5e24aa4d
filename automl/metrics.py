"""Kaggle metrics by name: the function, its direction, and what predictions it needs.

Every model hands over the same kind of prediction: class probabilities of shape
(n, n_classes) for classification, values of shape (n,) for regression. A metric turns
those into what it scores: labels (argmax, or a threshold picked on out-of-fold
predictions for binary tasks), probabilities, or values. Metrics also say how to train
for them: rmsle trains on log1p(target) and inverts the prediction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn import metrics as skm

CLASSIFICATION = ("binary", "multiclass")
REGRESSION = ("regression",)


@dataclass(frozen=True)
class Metric:
    name: str
    fn: Callable[[np.ndarray, np.ndarray], float]
    greater_is_better: bool
    needs: str  # "label": class labels; "proba": probabilities; "value": regression values
    tasks: tuple[str, ...]
    target_transform: str | None = None  # "log1p": fit on log1p(y), predict expm1
    description: str = ""

    @property
    def direction(self) -> str:
        return "higher is better" if self.greater_is_better else "lower is better"


def _rmse(y, p):
    return float(np.sqrt(skm.mean_squared_error(y, p)))


def _rmsle(y, p):
    return float(np.sqrt(skm.mean_squared_log_error(y, np.clip(p, 0, None))))


def _auc(y, p):
    if p.ndim == 2 and p.shape[1] == 2:
        return float(skm.roc_auc_score(y, p[:, 1]))
    return float(skm.roc_auc_score(y, p, multi_class="ovr", labels=np.arange(p.shape[1])))


def _logloss(y, p):
    p = np.clip(p, 1e-15, 1)
    return float(skm.log_loss(y, p / p.sum(axis=1, keepdims=True), labels=np.arange(p.shape[1])))


METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        Metric("accuracy", lambda y, p: float(skm.accuracy_score(y, p)), True, "label",
               CLASSIFICATION, description="share of correct labels"),
        Metric("balanced_accuracy", lambda y, p: float(skm.balanced_accuracy_score(y, p)),
               True, "label", CLASSIFICATION, description="mean recall over classes"),
        Metric("auc", _auc, True, "proba", CLASSIFICATION,
               description="area under the ROC curve (one-vs-rest for multiclass)"),
        Metric("logloss", _logloss, False, "proba", CLASSIFICATION,
               description="cross-entropy of the predicted probabilities"),
        Metric("f1", lambda y, p: float(skm.f1_score(y, p)), True, "label", ("binary",),
               description="F1 of the positive class"),
        Metric("f1_macro", lambda y, p: float(skm.f1_score(y, p, average="macro")), True,
               "label", CLASSIFICATION, description="F1 averaged over classes"),
        Metric("qwk", lambda y, p: float(skm.cohen_kappa_score(y, p, weights="quadratic")),
               True, "label", CLASSIFICATION, description="quadratic weighted kappa"),
        Metric("mcc", lambda y, p: float(skm.matthews_corrcoef(y, p)), True, "label",
               CLASSIFICATION, description="Matthews correlation coefficient"),
        Metric("rmse", _rmse, False, "value", REGRESSION, description="root mean squared error"),
        Metric("rmsle", _rmsle, False, "value", REGRESSION, target_transform="log1p",
               description="root mean squared error of log1p (trained on log1p target)"),
        Metric("mae", lambda y, p: float(skm.mean_absolute_error(y, p)), False, "value",
               REGRESSION, description="mean absolute error"),
        Metric("r2", lambda y, p: float(skm.r2_score(y, p)), True, "value", REGRESSION,
               description="coefficient of determination"),
    ]
}


def get_metric(name: str, where: str = "metric") -> Metric:
    """Look a metric up by Kaggle's name; unknown names list the allowed ones."""
    from automl.errors import AutomlError

    if name not in METRICS:
        raise AutomlError(
            f"{where}: unknown metric {name!r}; expected one of {', '.join(METRICS)}"
        )
    return METRICS[name]


def default_metric(task: str, probabilities: bool) -> str:
    """The metric to assume when a competition's metric is not known."""
    if task == "regression":
        return "rmse"
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
    if metric.needs != "label" or pred.ndim != 2 or pred.shape[1] != 2:
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
