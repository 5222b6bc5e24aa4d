"""The run's one budget: bad values refused up front, the networks' share reserved, baselines sized to theirs."""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import bundle, synthetic_frame
from typer.testing import CliRunner

import automl.baselines.fitting as fitting
import automl.baselines.inputs as inputs
import automl.baselines.sizing as sizing
from automl.baselines import BASELINES, Skipped, cross_validate
from automl.budget import BLEND_SHARE, Budget, check_timeout, minimum_seconds
from automl.cli import app
from automl.competition import Competition
from automl.errors import UsageError
from automl.folds import Fold, fold_features, make_folds, take
from automl.problem import make_problem


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("value", [0, -5, float("nan")])
def test_a_timeout_of_zero_or_below_is_a_usage_error(value):
    with pytest.raises(UsageError, match=r"--timeout .*: expected a number of seconds above 0") as caught:
        check_timeout(value)
    assert caught.value.exit_code == 2


@pytest.mark.parametrize("value", ["0", "-5"])
def test_the_cli_refuses_a_bad_timeout_before_any_work(tmp_path, value):
    result = invoke("run", "titanic", "--timeout", value, "--runs-dir", tmp_path / "runs", "--data-dir", tmp_path / "data")
    assert result.exit_code == 2, result.output
    assert "--timeout" in result.output and "above 0" in result.output
    assert not (tmp_path / "runs").exists() and not (tmp_path / "data").exists()  # nothing was fetched or made


@pytest.mark.e2e
def test_a_budget_smaller_than_reading_the_data_names_one_that_would_do(tmp_path):
    source = bundle("titanic")
    result = invoke("run", "titanic", "--from", source, "--timeout", "3", "--runs-dir", tmp_path / "runs",
                    "--data-dir", tmp_path / "data")
    assert result.exit_code == 2, result.output
    assert "--timeout 3: too small" in result.output and "use --timeout" in result.output
    suggested = int(result.output.split("use --timeout ")[1].split()[0])
    assert suggested > 3 and not (tmp_path / "runs" / "titanic").exists()


def test_the_minimum_grows_with_the_data():
    assert minimum_seconds(100_000_000) > minimum_seconds(1_000_000) > 0


def test_the_networks_share_is_reserved_from_what_is_left():
    budget = Budget.start(100.0, started=time.monotonic())
    budget.plan(rows=10_000, networks=True, network_share=0.5)
    left, baselines = budget.left(), budget.baselines_left()
    assert budget.network_reserve == pytest.approx(0.5 * left, rel=0.01)
    assert baselines == pytest.approx(left - budget.network_reserve, abs=0.05)
    assert budget.final_reserve > 0 and budget.deadline < budget.end
    alone = Budget.start(100.0, started=time.monotonic())
    alone.plan(rows=10_000, networks=False, network_share=0.5)
    assert alone.network_reserve == 0 and alone.baselines_left() == pytest.approx(alone.left(), abs=0.05)


@pytest.mark.parametrize(("need", "share"), [(20.0, 0.5), (60.0, None), (90.0, 0.5), (None, 0.5)])
def test_the_networks_get_what_a_probe_says_they_need_within_three_quarters(need, share):
    # Within their share: the recipe's. Above it but within 3/4 of the time left: what they need (about 60 of ~93 s
    # left). Beyond 3/4 (a large table on a CPU): the recipe's again, and the baselines keep theirs.
    budget = Budget.start(100.0, started=time.monotonic())
    budget.plan(rows=10_000, networks=True, network_share=0.5, network_need=need)
    left = budget.network_reserve / budget.network_share
    expected = need / left if share is None else share
    assert budget.network_share == pytest.approx(expected, rel=0.01)
    assert budget.network_reserve == pytest.approx(expected * left, rel=0.01)
    assert budget.baselines_left() == pytest.approx(left - budget.network_reserve, abs=0.05)


def test_the_blend_is_reserved_its_estimate_up_to_its_share():
    plain = Budget.start(100.0, started=time.monotonic())
    plain.plan(rows=10_000, networks=True, network_share=0.5)
    costly = Budget.start(100.0, started=time.monotonic())
    costly.plan(rows=10_000, networks=True, network_share=0.5, blend=3.0)
    assert costly.final_reserve == pytest.approx(plain.final_reserve + 3.0)
    huge = Budget.start(100.0, started=time.monotonic())
    huge.plan(rows=10_000, networks=True, network_share=0.5, blend=60.0)
    assert huge.final_reserve == pytest.approx(plain.final_reserve + BLEND_SHARE * 100.0)
    # when the blend starts it may take what is left, but the outputs' part
    assert huge.blend_allowance() == pytest.approx(huge.end - time.monotonic() - huge.outputs_reserve, abs=0.05)


def test_an_unbounded_budget_plans_nothing():
    budget = Budget.start(None, started=time.monotonic())
    budget.plan(rows=10_000, networks=True, network_share=0.5)
    assert budget.deadline is None and budget.baselines_left() is None and budget.left() is None


def test_the_breakdown_names_every_stage():
    budget = Budget.start(60.0, started=time.monotonic())
    with budget.stage("read"):
        pass
    budget.record("baseline hist_gb", 1.5)
    text = budget.breakdown()
    assert "of --timeout 60s" in text and "read" in text and "baseline hist_gb 1.5s" in text and "startup" in text


def _large_problem(n: int = 12_000):
    """Above the probe's row count, so the cost is estimated on a sample first."""
    frame = synthetic_frame("binary", n, seed=3)
    comp = Competition(slug="large", id="id", target="target", task="binary", metric="auc", labels="float")
    problem = make_problem(comp, frame, synthetic_frame("binary", 500, seed=4).drop(columns="target"))
    return problem, fold_features(problem, make_folds(problem, 3, 0))


def test_a_baseline_that_cannot_fit_its_share_is_skipped_with_the_reason():
    problem, folds = _large_problem()
    with pytest.raises(Skipped, match=r"skipped: a fold would take longer than its .*s share"):
        cross_validate("random_forest", problem, folds, seconds=0.01)


@pytest.mark.parametrize("model", ["hist_gb", "lightgbm"])
def test_a_boosted_model_is_never_skipped_for_what_its_probes_took(model):
    """Boosting stops on its fold's clock: a booster whose timed probes used its share trains a row sample for the
    rounds its clock allows rather than skipping itself (a forest, which cannot stop mid-tree, is skipped: above)."""
    problem, folds = _large_problem()
    result = cross_validate(model, problem, folds, seconds=0.01)
    assert np.isfinite(result.fold_scores).all() and result.info["short_of_time"]
    assert "row samples" in result.info["note"] or "stopped by its time share" in result.info["note"]


def test_a_costly_baseline_is_shrunk_to_its_share_and_says_so():
    problem, folds = _large_problem()
    full = cross_validate("random_forest", problem, folds)
    shrunk = cross_validate("random_forest", problem, folds, seconds=0.2 * full.seconds)
    assert "trees" in shrunk.info["note"] and "time" in shrunk.info["note"]
    assert np.isfinite(shrunk.fold_scores).all() and shrunk.mean > 0.6  # still a real model
    assert "note" not in full.info  # no budget, no shrinking


def test_a_probe_builds_inputs_for_its_row_sample_only(monkeypatch):
    # At a million rows, building the whole fold's inputs for each timed probe cost more than the probe.
    problem, folds = _large_problem()
    built = []
    real = inputs.dense
    monkeypatch.setattr(inputs, "dense", lambda features: built.append(len(features)) or real(features))
    sizing.plan_size(BASELINES["hist_gb"], problem, folds[0], 0, per_fold=60.0)
    assert built and max(built) <= sizing.PROBE_ROWS < len(folds[0].train_rows)


def test_forests_keep_to_their_memory_share(monkeypatch):
    # Fully grown trees on 240,000 rows hold 19 MB each: leaves grow with the rows and trees stop at the share.
    problem, folds = _large_problem(4_000)
    free = cross_validate("extra_trees", problem, folds)
    monkeypatch.setattr(fitting, "FOREST_BYTES", 2**22)  # 4 MiB
    tight = cross_validate("extra_trees", problem, folds)
    assert "(memory)" in tight.info["note"] and "note" not in free.info
    assert tight.mean > 0.6  # still a real model
    rows = len(folds[0].train_rows)
    model = BASELINES["extra_trees"].classifier(0).set_params(min_samples_leaf=fitting._leaf_for_memory(rows, 2))
    x, y = inputs.dense(folds[0].train), problem.y[folds[0].train_rows]
    fitting._grow(model, x, y, 300, None)
    assert model.n_estimators < 300 and fitting._forest_bytes(model) <= 2**22 * 1.5


def test_a_baseline_with_no_time_left_is_skipped_without_a_probe(monkeypatch):
    problem, folds = _large_problem()
    monkeypatch.setattr(sizing, "_timed_probe", lambda *a: pytest.fail("probed with no time left"))
    with pytest.raises(Skipped, match="time was used up"):
        cross_validate("random_forest", problem, folds, seconds=0.0)


def test_a_baseline_is_sized_for_predicting_every_validation_and_test_row():
    # A fold predicts all its validation and test rows whatever it trains on: at a million rows hist_gb
    # spent 6.4 s predicting in a fold given 4. The plan keeps that time out of the training's.
    problem, folds = _large_problem()
    hist_gb = BASELINES["hist_gb"]
    roomy = sizing.plan_size(hist_gb, problem, folds[0], 0, per_fold=60.0)
    assert roomy.rows is None and roomy.units is None and roomy.predicting > 0
    # the same fold with 1,000 times its 500 test rows: predicting them takes most of a 2-second share
    many = np.arange(len(folds[0].test)).repeat(1000)
    big = Fold(folds[0].train_rows, folds[0].valid_rows, folds[0].train, folds[0].valid, take(folds[0].test, many))
    tight = sizing.plan_size(hist_gb, problem, big, 0, per_fold=2.0)
    assert tight.predicting <= 1.0 + 1e-9 or tight.units == 20  # fewer rounds: cheaper to predict
    assert tight.units is not None and tight.units < 100 and tight.learning_rate  # fewer rounds, learning faster
