"""--pseudo-label: confident test rows join every fold's training rows for a second pass of the best
baselines; fold k's labels come from fold k's own first-pass models, and the pass is kept only when better."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import write_bundle
from net_helpers import small_problem
from typer.testing import CliRunner

from automl import pseudo
from automl.baselines import cross_validate
from automl.cli import app


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_fold_k_learns_from_its_own_teacher_only():
    """Fold k's pseudo rows are the test rows fold k's teacher is sure of, labelled as it says: a
    teacher that saw fold k's validation labels never labels fold k's extra rows."""
    problem, folds = small_problem("binary", n=300, k=3)
    n_test = len(problem.test)
    teacher = np.full((3, n_test, 2), 0.5)
    for k in range(3):  # fold k's teacher is sure of ten rows of its own, each saying class k % 2
        teacher[k, 10 * k:10 * k + 10] = [0.01, 0.99] if k % 2 else [0.99, 0.01]
    augmented_problem, augmented, counts = pseudo.with_pseudo(problem, folds, teacher, 0.9)
    assert counts == [10, 10, 10] and len(augmented_problem.y) == len(problem.y) + 30
    for k, (fold, more) in enumerate(zip(folds, augmented, strict=True)):
        added = more.train_rows[len(fold.train_rows):]
        assert (augmented_problem.y[added] == k % 2).all()
        assert np.array_equal(more.train.numeric[len(fold.train_rows):], fold.test.numeric[10 * k:10 * k + 10])
        assert np.array_equal(more.valid_rows, fold.valid_rows)  # validation untouched: no pseudo row is scored
        assert not np.isin(added, np.concatenate([f.valid_rows for f in augmented])).any()


def test_the_threshold_is_where_out_of_fold_predictions_were_right_often_enough():
    problem, folds = small_problem("binary", n=400, k=4)
    y = problem.y
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.5, 1.0, len(y))
    right = rng.random(len(y)) < np.where(confidence > 0.9, 0.995, 0.7)  # sure and right above 0.9 only
    p1 = np.where(right == (y == 1), confidence, 1 - confidence)
    cut = pseudo.threshold(problem, folds, np.column_stack([1 - p1, p1]))
    assert cut is not None and 0.85 <= cut <= 0.95
    never = np.full((len(y), 2), 0.5)  # never sure: no threshold
    assert pseudo.threshold(problem, folds, never) is None


def test_baselines_keep_each_fold_models_test_predictions():
    problem, folds = small_problem("binary", n=300, k=3)
    assert cross_validate("linear", problem, folds).test_folds is None  # only when asked: memory at scale
    result = cross_validate("linear", problem, folds, keep_test_folds=True)
    assert result.test_folds.shape == (3, *result.test.shape)
    assert np.allclose(result.test_folds.mean(axis=0), result.test, atol=1e-6)


def test_regressions_and_forecasts_are_not_pseudo_labelled():
    problem, _ = small_problem("regression", n=200, k=3)
    assert "classification only" in pseudo.applies(problem)


def _clusters(rows: int, clusters: int, seed: int = 3) -> pd.DataFrame:
    """Classes as tight clusters scattered in the plane, alternating class: a few labelled rows leave a tree
    too few rows in each cluster to split on; confident test rows fill the clusters in."""
    rng = np.random.default_rng(seed)
    centers, label = rng.uniform(-6, 6, size=(clusters, 2)), np.arange(clusters) % 2
    which = rng.integers(0, clusters, rows)
    x = centers[which] + rng.normal(scale=0.5, size=(rows, 2))
    return pd.DataFrame({"id": np.arange(rows), "a": x[:, 0], "b": x[:, 1], "target": label[which]})


@pytest.mark.e2e
@pytest.mark.parametrize("case", ["helps", "does-not-help"])
def test_pseudo_label_end_to_end(tmp_path, case):
    """120 labelled rows in 8 clusters, 4,880 test rows: the second pass of lightgbm is better held out and
    kept (and joins the blend). 200 rows in 12 clusters: the first pass already places every cluster, the
    second is no better, so it is dropped; the run and the report say which."""
    train_rows, clusters = (120, 8) if case == "helps" else (200, 12)
    data = write_bundle(tmp_path / "bundle", _clusters(5_000, clusters), train_rows)
    result = invoke("run", f"pseudo-{case}", "--from", data, "--models", "linear,hist_gb,lightgbm,random_forest",
                    "--metric", "accuracy", "--pseudo-label", "--runs-dir", tmp_path / "runs", "--data-dir", tmp_path / "data")
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "runs" / f"pseudo-{case}" / "default"
    board = pd.read_csv(run_dir / "leaderboard.csv").set_index("model")
    report = (run_dir / "report.html").read_text()
    lines = [line for line in result.output.replace("\n  ", " ").splitlines() if "pseudo-labels:" in line]
    assert len(lines) == 2, result.output  # one line per student
    if case == "helps":
        assert "kept as lightgbm+pseudo" in result.output and "kept as lightgbm+pseudo" in report
        assert board.loc["lightgbm+pseudo", "accuracy"] > board.loc["lightgbm", "accuracy"]
        blend = json.loads((run_dir / "models" / "ensemble" / "result.json").read_text())["info"]
        assert "lightgbm+pseudo" in {*blend["weights"], *blend.get("greedy_weights", {})}  # blended again, with it
    else:
        assert result.output.count("dropped (no better held out)") == 2 and "dropped (no better held out)" in report
        assert not [m for m in board.index if m.endswith("+pseudo")]
