"""Metrics by Kaggle name: each equals scikit-learn's own value, thresholds earn their place."""

from __future__ import annotations

import re

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.utils.class_weight import compute_sample_weight

from automl.errors import AutomlError
from automl.metrics import (
    KAGGLE_NAMES,
    METRICS,
    best_threshold,
    default_metric,
    for_task,
    get_metric,
    kaggle_metric,
    names,
    score,
    to_labels,
    top_classes,
)

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
    ("gini", Y_BINARY, P_BINARY, 2 * skm.roc_auc_score(Y_BINARY, P_POSITIVE) - 1),
    ("gini", Y_MULTI, P_MULTI, 2 * skm.roc_auc_score(Y_MULTI, P_MULTI, multi_class="ovr") - 1),
    ("balanced_logloss", Y_BINARY, P_BINARY,
     skm.log_loss(Y_BINARY, P_POSITIVE, sample_weight=compute_sample_weight("balanced", Y_BINARY))),
    ("balanced_logloss", Y_MULTI, P_MULTI,
     skm.log_loss(Y_MULTI, P_MULTI, sample_weight=compute_sample_weight("balanced", Y_MULTI))),
    ("f1_micro", Y_BINARY, P_BINARY, skm.f1_score(Y_BINARY, LABELS_BINARY, average="micro")),
    ("f1_micro", Y_MULTI, P_MULTI, skm.f1_score(Y_MULTI, LABELS_MULTI, average="micro")),
    ("msle", Y_VALUES, P_VALUES, skm.mean_squared_log_error(Y_VALUES, P_VALUES)),
    ("medae", Y_VALUES, P_VALUES, skm.median_absolute_error(Y_VALUES, P_VALUES)),
    ("mape", Y_VALUES, P_VALUES, skm.mean_absolute_percentage_error(Y_VALUES, P_VALUES)),
]

# Values worked out by hand, for the metrics added beyond scikit-learn's plain scores.
BY_HAND = [
    # Kaggle's SMAPE: rows 2*10/210, 0 (both 0), 2*10/90, 2*5/5 -> 100 * (2/21 + 2/9 + 2) / 4 = 7300/126.
    ("smape", np.array([100.0, 0.0, 50.0, 0.0]), np.array([110.0, 0.0, 40.0, 5.0]), 7300 / 126),
    ("mape", np.array([100.0, 50.0, 200.0]), np.array([110.0, 40.0, 200.0]), (0.1 + 0.2 + 0.0) / 3),
    # log1p: 0 vs 0, ln 4 vs ln 2, 1 vs 0.
    ("msle", np.array([0.0, 3.0, np.e - 1]), np.array([0.0, 1.0, 0.0]), (np.log(2) ** 2 + 1) / 3),
    ("medae", np.array([1.0, 2, 3, 4, 5]), np.array([1.0, 3, 6, 4, 0]), 1.0),  # errors 0 1 3 0 5
    # Class 0's mean -log p over its three rows, class 1's over its one, then the mean of the two.
    ("balanced_logloss", np.array([0, 0, 0, 1]), np.array([[0.9, 0.1], [0.8, 0.2], [0.5, 0.5], [0.75, 0.25]]),
     (-(np.log(0.9) + np.log(0.8) + np.log(0.5)) / 3 + np.log(4)) / 2),
    ("f1_micro", np.array([0, 1, 2, 2]), np.array([[0.6, 0.2, 0.2], [0.1, 0.3, 0.6], [0, 0, 1], [0.2, 0.5, 0.3]]), 0.5),
    # Positives 0.35 and 0.8 against negatives 0.1 and 0.6: 3 of 4 pairs ordered, AUC 3/4.
    ("gini", np.array([0, 0, 1, 1]), np.column_stack([[0.9, 0.4, 0.65, 0.2], [0.1, 0.6, 0.35, 0.8]]), 0.5),
    # The true class ranks 1st, 2nd, 1st, 3rd: (1 + 1/2 + 1 + 1/3) / 4.
    ("map@3", np.array([0, 1, 2, 0]), np.array([[0.5, 0.3, 0.2], [0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.1, 0.6, 0.3]]),
     17 / 24),
    # With k = 2 the last row's class (3rd) counts nothing: (1 + 1/2 + 1 + 0) / 4.
    ("map@2", np.array([0, 1, 2, 0]), np.array([[0.5, 0.3, 0.2], [0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.1, 0.6, 0.3]]),
     2.5 / 4),
    # Column RMSEs sqrt((9 + 16) / 2) and 1, then their mean (not the RMSE of all four errors).
    ("mcrmse", np.array([[0.0, 0.0], [0.0, 0.0]]), np.array([[3.0, 1.0], [4.0, 1.0]]), (np.sqrt(12.5) + 1) / 2),
    # Multilabel: label a's positives 0.8, 0.4 against negatives 0.1, 0.5 order 3 of 4 pairs; label b's
    # 0.9, 0.6 against 0.3, 0.2 all 4; label c is never 1 (no AUC), so it is left out: (3/4 + 1) / 2.
    ("auc", np.array([[0, 1, 0], [1, 0, 0], [1, 1, 0], [0, 0, 0]]),
     np.array([[0.1, 0.9, 0.5], [0.8, 0.3, 0.5], [0.4, 0.6, 0.5], [0.5, 0.2, 0.5]]), 0.875),
    # Multilabel: -log of each label's probability of its true value, 0.8, 0.5, 0.5, 0.25, averaged.
    ("logloss", np.array([[1, 0], [0, 1]]), np.array([[0.8, 0.5], [0.5, 0.25]]), (np.log(1.25) + 4 * np.log(2)) / 4),
]


def test_every_metric_has_a_case():
    assert {name for name, *_ in CASES} | {"smape", "mcrmse"} == set(METRICS)  # scikit-learn has neither
    assert {name for name, *_ in BY_HAND} >= {"smape", "mape", "msle", "medae", "balanced_logloss", "f1_micro",
                                              "gini", "map@3", "mcrmse", "auc", "logloss"}


@pytest.mark.parametrize(("name", "y", "pred", "expected"), BY_HAND, ids=[c[0] for c in BY_HAND])
def test_metric_equals_a_value_worked_out_by_hand(name, y, pred, expected):
    assert score(get_metric(name), y, pred) == pytest.approx(expected, rel=1e-12, abs=1e-12)


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
    assert [n for n, m in METRICS.items() if not m.greater_is_better] == [
        "logloss", "balanced_logloss", "rmse", "rmsle", "msle", "mae", "medae", "mape", "smape", "mcrmse"]
    assert METRICS["auc"].needs == METRICS["logloss"].needs == METRICS["gini"].needs == "proba"
    assert METRICS["accuracy"].needs == METRICS["f1_micro"].needs == "label"
    assert get_metric("map@3").needs == "proba"
    assert [n for n, m in METRICS.items() if m.target_transform == "log1p"] == ["rmsle", "msle", "smape"]
    assert METRICS["rmse"].direction == "lower is better"
    assert METRICS["qwk"].direction == "higher is better"


@pytest.mark.parametrize(("name", "objective", "decision"), [
    ("rmse", "squared", "none"), ("r2", "squared", "none"), ("mape", "squared", "none"),
    ("mae", "absolute", "none"), ("medae", "absolute", "none"),
    ("rmsle", "log1p_squared", "none"), ("msle", "log1p_squared", "none"), ("smape", "log1p_squared", "none"),
    ("logloss", "cross_entropy", "none"), ("auc", "cross_entropy", "none"), ("balanced_logloss", "cross_entropy", "none"),
    ("accuracy", "cross_entropy", "threshold"), ("f1", "cross_entropy", "threshold"), ("qwk", "cross_entropy", "threshold"),
    ("map@3", "cross_entropy", "rank"), ("map@12", "cross_entropy", "rank"), ("mcrmse", "squared", "none"),
])
def test_objective_and_decision(name, objective, decision):
    metric = get_metric(name)
    assert (metric.objective, metric.decision) == (objective, decision)


def test_every_metric_trains_for_something_known():
    for metric in METRICS.values():
        assert metric.objective in ("squared", "absolute", "log1p_squared", "cross_entropy")
        assert metric.decision in ("argmax", "threshold", "rank", "none")
        assert (metric.objective == "log1p_squared") == (metric.target_transform == "log1p")


def test_map_at_any_k():
    assert get_metric("map@7").name == "map@7"
    assert get_metric("map@3") is get_metric("map@3")
    assert get_metric("map@5").tasks == ("binary", "multiclass")
    assert top_classes(np.array([[0.2, 0.5, 0.3], [0.4, 0.4, 0.2]]), 2).tolist() == [[1, 2], [0, 1]]  # ties: lower first
    for bad in ("map@0", "map@", "map@k", "MAP@3", "map@-1"):
        with pytest.raises(AutomlError, match=f"^metric: unknown metric '{re.escape(bad)}'; expected one of .*map@K$"):
            get_metric(bad)


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
    assert best_threshold(get_metric("map@2"), Y_BINARY, P_BINARY) is None
    assert best_threshold(METRICS["logloss"], Y_BINARY, P_BINARY) is None
    assert best_threshold(METRICS["accuracy"], Y_MULTI, P_MULTI) is None
    assert best_threshold(METRICS["rmse"], Y_VALUES, P_VALUES) is None


def test_get_metric_unknown_name_lists_allowed_names():
    with pytest.raises(AutomlError, match=r"^competitions/x\.yaml: unknown metric 'acc'; expected one of accuracy, "
                                          r"balanced_accuracy, auc, gini, logloss, .*, smape, r2, mcrmse, map@K$") as error:
        get_metric("acc", "competitions/x.yaml")
    for name in METRICS:
        assert name in str(error.value)
    assert names() == [*METRICS, "map@K"]
    assert for_task("regression") == ["rmse", "rmsle", "msle", "mae", "medae", "mape", "smape", "r2"]
    assert for_task("binary")[-1] == "map@K" and "f1" in for_task("binary") and "f1" not in for_task("multiclass")
    # several target columns: every value metric, scored column-wise as Kaggle does (mcrmse is rmse's)
    assert for_task("multitarget") == [*for_task("regression"), "mcrmse"] and for_task("multilabel") == ["auc", "logloss"]
    y, p = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 40.0]]), np.array([[1.5, 10.0], [2.0, 25.0], [2.0, 40.0]])
    for name in ("rmse", "rmsle", "mae", "r2"):  # each the mean of its columns' scores
        assert METRICS[name].fn(y, p) == pytest.approx(np.mean([METRICS[name].fn(y[:, j], p[:, j]) for j in range(2)]))
    assert METRICS["rmse"].fn(y, p) == pytest.approx(METRICS["mcrmse"].fn(y, p))


def test_get_metric_default_location():
    with pytest.raises(AutomlError, match=r"^metric: unknown metric 'RMSE'"):
        get_metric("RMSE")


@pytest.mark.parametrize(("task", "probabilities", "expected"), [
    ("regression", False, "rmse"), ("binary", False, "accuracy"), ("binary", True, "logloss"),
    ("multiclass", True, "logloss"), ("multiclass", False, "accuracy"),
    ("multitarget", False, "mcrmse"), ("multilabel", True, "auc"),
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


# ------------------------------------------------------------------ Kaggle's names

@pytest.mark.parametrize("display", KAGGLE_NAMES)
def test_every_kaggle_name_maps_to_a_metric(display):
    target = KAGGLE_NAMES[display]
    for task, name in (target.items() if isinstance(target, dict) else [(get_metric(target).tasks[0], target)]):
        assert kaggle_metric(display, task) == name
        assert task in get_metric(name).tasks


@pytest.mark.parametrize(("display", "task", "k", "expected"), [
    ("Categorization Accuracy", "binary", None, "accuracy"),
    ("  categorization   ACCURACY ", "multiclass", None, "accuracy"),  # case and spaces do not matter
    ("Quadratic Weighted Kappa", "multiclass", None, "qwk"),
    ("QuadraticWeightedKappa", "multiclass", None, "qwk"),
    ("F1 Score", "binary", None, "f1"),
    ("F1 Score", "multiclass", None, "f1_micro"),
    ("R2 score (coefficient of determination)", "regression", None, "r2"),
    ("MAP@{K}", "multiclass", 3, "map@3"),
    ("MAP{K}", "multiclass", 5, "map@5"),
    ("MAP@K", "multiclass", 2, "map@2"),
    ("MAP@3", "multiclass", None, "map@3"),
    ("map@12", "multiclass", 3, "map@12"),  # a K in the name wins over the sample's
    ("Mean Columnwise Root Mean Squared Error", "multitarget", None, "mcrmse"),
    ("Mean Columnwise Root Mean Squared Error", "regression", None, "rmse"),
    ("Mean Column-wise ROC AUC", "multilabel", None, "auc"),
    ("Mean Columnwise Area Under Receiver Operating Characteristic Curve", "multilabel", None, "auc"),
    ("Mean Columnwise Log Loss", "multilabel", None, "logloss"),
])
def test_kaggle_metric(display, task, k, expected):
    assert kaggle_metric(display, task, k) == expected


@pytest.mark.parametrize(("display", "task", "message"), [
    ("Levenshtein Mean", "regression", r"^Kaggle's metric 'Levenshtein Mean' is not one automl knows$"),
    ("MAP@{K}", "multiclass", r"^Kaggle's metric 'MAP@\{K\}' does not say its K and the sample submission holds "
                              r"one label a row$"),
    ("Root Mean Squared Error", "binary",
     r"^Kaggle's metric 'Root Mean Squared Error' \(rmse\) does not apply to a binary task$"),
    ("F1 Score", "regression", r"^Kaggle's metric 'F1 Score' \(f1\) does not apply to a regression task$"),
])
def test_kaggle_metric_without_an_equivalent(display, task, message):
    with pytest.raises(AutomlError, match=message):
        kaggle_metric(display, task)


def test_a_kaggle_metric_name_is_unambiguous_only_when_the_name_alone_decides_it():
    from automl.metrics import unambiguous_metric

    assert unambiguous_metric("Categorization Accuracy") == "accuracy"
    assert unambiguous_metric("MAP@3") == "map@3"
    assert unambiguous_metric("F1 Score") is None  # binary or macro: the task decides
    assert unambiguous_metric("MAP@{K}") is None  # the K is not in the name
    assert unambiguous_metric("Custom Metric") is None
