"""Metrics by Kaggle name: each equals scikit-learn's own value, thresholds earn their place."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from automl.errors import AutomlError
from automl.metrics import METRICS, best_threshold, default_metric, get_metric, score, to_labels

# Fixed arrays in the form every model hands over: (n, k) probabilities or (n,) values.
Y_BINARY = np.array([0, 1, 1, 0, 1, 0, 1, 1, 0, 0])
P_POSITIVE = np.array([0.1, 0.8, 0.4, 0.3, 0.9, 0.6, 0.7, 0.55, 0.2, 0.05])
P_BINARY = np.column_stack([1 - P_POSITIVE, P_POSITIVE])
LABELS_BINARY = (P_POSITIVE >= 0.5).astype(int)  # [0 1 0 0 1 1 1 1 0 0]

Y_MULTI = np.array([0, 1, 2, 2, 1, 0, 2, 1, 0, 2, 1, 0])
P_MULTI = np.array([
    [0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.1, 0.3, 0.6], [0.3, 0.4, 0.3],
    [0.5, 0.4, 0.1], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6], [0.1, 0.8, 0.1],
    [0.4, 0.1, 0.5], [0.05, 0.15, 0.8], [0.3, 0.35, 0.35], [0.9, 0.05, 0.05],
])
LABELS_MULTI = P_MULTI.argmax(axis=1)

Y_VALUES = np.array([3.0, 10.5, 0.0, 7.25, 100.0, 42.0, 1.5])
P_VALUES = np.array([2.5, 12.0, 0.5, 6.0, 80.0, 45.0, 1.0])

# (metric, y, model predictions, scikit-learn's value computed independently)
CASES = [
    ("accuracy", Y_BINARY, P_BINARY, skm.accuracy_score(Y_BINARY, LABELS_BINARY)),
    ("accuracy", Y_MULTI, P_MULTI, skm.accuracy_score(Y_MULTI, LABELS_MULTI)),
    ("balanced_accuracy", Y_BINARY, P_BINARY, skm.balanced_accuracy_score(Y_BINARY, LABELS_BINARY)),
    ("balanced_accuracy", Y_MULTI, P_MULTI, skm.balanced_accuracy_score(Y_MULTI, LABELS_MULTI)),
    ("auc", Y_BINARY, P_BINARY, skm.roc_auc_score(Y_BINARY, P_POSITIVE)),
    ("auc", Y_MULTI, P_MULTI, skm.roc_auc_score(Y_MULTI, P_MULTI, multi_class="ovr")),
    ("logloss", Y_BINARY, P_BINARY, skm.log_loss(Y_BINARY, P_POSITIVE)),
    ("logloss", Y_MULTI, P_MULTI, skm.log_loss(Y_MULTI, P_MULTI)),
    ("f1", Y_BINARY, P_BINARY, skm.f1_score(Y_BINARY, LABELS_BINARY)),
    ("f1_macro", Y_BINARY, P_BINARY, skm.f1_score(Y_BINARY, LABELS_BINARY, average="macro")),
    ("f1_macro", Y_MULTI, P_MULTI, skm.f1_score(Y_MULTI, LABELS_MULTI, average="macro")),
    ("qwk", Y_BINARY, P_BINARY, skm.cohen_kappa_score(Y_BINARY, LABELS_BINARY, weights="quadratic")),
    ("qwk", Y_MULTI, P_MULTI, skm.cohen_kappa_score(Y_MULTI, LABELS_MULTI, weights="quadratic")),
    ("mcc", Y_BINARY, P_BINARY, skm.matthews_corrcoef(Y_BINARY, LABELS_BINARY)),
    ("mcc", Y_MULTI, P_MULTI, skm.matthews_corrcoef(Y_MULTI, LABELS_MULTI)),
    ("rmse", Y_VALUES, P_VALUES, skm.root_mean_squared_error(Y_VALUES, P_VALUES)),
    ("rmsle", Y_VALUES, P_VALUES, skm.root_mean_squared_log_error(Y_VALUES, P_VALUES)),
    ("mae", Y_VALUES, P_VALUES, skm.mean_absolute_error(Y_VALUES, P_VALUES)),
    ("r2", Y_VALUES, P_VALUES, skm.r2_score(Y_VALUES, P_VALUES)),
]


def test_every_metric_has_a_case():
    assert {name for name, *_ in CASES} == set(METRICS)


@pytest.mark.parametrize(("name", "y", "pred", "expected"), CASES,
                         ids=[f"{c[0]}-{'binary' if c[1] is Y_BINARY else 'multi' if c[1] is Y_MULTI else 'values'}"
                              for c in CASES])
def test_metric_equals_scikit_learn(name, y, pred, expected):
    metric = get_metric(name)
    assert score(metric, y, pred) == pytest.approx(float(expected), rel=1e-12, abs=1e-12)


def test_known_values_by_hand():
    # At threshold 0.5, 8 of the 10 labels are right: 4 true positives of 5 predicted and 5 actual.
    assert score(METRICS["accuracy"], Y_BINARY, P_BINARY) == pytest.approx(0.8)
    assert score(METRICS["f1"], Y_BINARY, P_BINARY) == pytest.approx(2 * 4 / (5 + 5))
    assert score(METRICS["rmse"], np.array([0.0, 0.0]), np.array([3.0, 4.0])) == pytest.approx(np.sqrt(12.5))


def test_rmsle_treats_negative_predictions_as_zero():
    y = np.array([1.0, 2.0, 3.0])
    assert score(METRICS["rmsle"], y, np.array([-5.0, 2.0, 3.0])) == pytest.approx(
        skm.root_mean_squared_log_error(y, np.array([0.0, 2.0, 3.0])))


def test_logloss_renormalizes_and_clips():
    y = np.array([0, 1])
    unnormalized = np.array([[0.2, 0.2], [0.1, 0.3]])  # rows sum to 0.4, as averaged fold models may
    assert score(METRICS["logloss"], y, unnormalized) == pytest.approx(skm.log_loss(y, unnormalized / 0.4))
    certain_and_wrong = np.array([[0.0, 1.0], [0.0, 1.0]])
    assert np.isfinite(score(METRICS["logloss"], y, certain_and_wrong))


def test_directions_and_needs():
    assert [n for n, m in METRICS.items() if not m.greater_is_better] == ["logloss", "rmse", "rmsle", "mae"]
    assert METRICS["auc"].needs == METRICS["logloss"].needs == "proba"
    assert METRICS["accuracy"].needs == "label"
    assert METRICS["rmsle"].target_transform == "log1p"
    assert METRICS["rmse"].direction == "lower is better"
    assert METRICS["qwk"].direction == "higher is better"


def test_to_labels_threshold_applies_to_binary_only():
    assert to_labels(P_BINARY, 0.65).tolist() == (P_POSITIVE >= 0.65).astype(int).tolist()
    assert to_labels(P_MULTI, 0.65).tolist() == LABELS_MULTI.tolist()


def test_score_uses_the_threshold():
    at_half = score(METRICS["accuracy"], Y_BINARY, P_BINARY)
    at_low = score(METRICS["accuracy"], Y_BINARY, P_BINARY, threshold=0.35)
    assert at_low == skm.accuracy_score(Y_BINARY, (P_POSITIVE >= 0.35).astype(int))
    assert at_low != at_half


def test_best_threshold_improves_f1_on_a_skewed_binary_case():
    rng = np.random.default_rng(0)
    y = (rng.random(400) < 0.1).astype(int)
    # The positives rank high but the model is timid: no probability reaches 0.5.
    positive = np.where(y == 1, rng.uniform(0.25, 0.45, 400), rng.uniform(0.0, 0.3, 400))
    pred = np.column_stack([1 - positive, positive])
    f1 = METRICS["f1"]
    threshold = best_threshold(f1, y, pred)
    assert score(f1, y, pred, 0.5) == 0.0
    assert threshold < 0.5
    assert score(f1, y, pred, threshold) > 0.8


def test_best_threshold_keeps_half_when_it_is_already_best():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 0, 1, 0])
    positive = np.where(y == 1, [0.6, 0.7, 0.8, 0.9, 0.65, 0.75, 0.85, 0.95, 0.99, 0.55],
                        [0.1, 0.2, 0.3, 0.4, 0.15, 0.25, 0.35, 0.45, 0.05, 0.49])
    pred = np.column_stack([1 - positive, positive])
    for name in ("f1", "accuracy", "mcc"):
        assert best_threshold(METRICS[name], y, pred) == 0.5


def test_best_threshold_is_none_for_probability_metrics_and_multiclass():
    assert best_threshold(METRICS["auc"], Y_BINARY, P_BINARY) is None
    assert best_threshold(METRICS["logloss"], Y_BINARY, P_BINARY) is None
    assert best_threshold(METRICS["accuracy"], Y_MULTI, P_MULTI) is None
    assert best_threshold(METRICS["rmse"], Y_VALUES, P_VALUES) is None


def test_get_metric_unknown_name_lists_allowed_names():
    with pytest.raises(AutomlError, match=r"^competitions/x\.yaml: unknown metric 'acc'; expected one of accuracy, "
                                          r"balanced_accuracy, auc, logloss, .*rmsle, mae, r2$") as error:
        get_metric("acc", "competitions/x.yaml")
    for name in METRICS:
        assert name in str(error.value)


def test_get_metric_default_location():
    with pytest.raises(AutomlError, match=r"^metric: unknown metric 'RMSE'"):
        get_metric("RMSE")


@pytest.mark.parametrize(("task", "probabilities", "expected"), [
    ("regression", False, "rmse"), ("binary", False, "accuracy"), ("binary", True, "logloss"),
    ("multiclass", True, "logloss"), ("multiclass", False, "accuracy"),
])
def test_default_metric(task, probabilities, expected):
    assert default_metric(task, probabilities) == expected


def test_a_constant_model_gets_one_label_on_every_fold():
    # Per-fold class priors that differ in the fourth decimal: no threshold falls between them.
    y = np.array([1, 0, 0, 1, 0, 0, 1, 0, 0, 1] * 10)
    y[:20] = 0  # splitting off the lowest "prior" would pay on these rows, by chance alone
    positive = np.repeat([0.4291, 0.4297, 0.4296, 0.4299, 0.4294], 20)
    pred = np.column_stack([1 - positive, positive])
    threshold = best_threshold(get_metric("f1"), y, pred)
    assert len(set(pred[:, 1] >= threshold)) == 1
    assert score(get_metric("f1"), y, pred, threshold) == pytest.approx(skm.f1_score(y, np.ones_like(y)))
