"""Fold models trained together (automl.parallel): no member sees its validation rows, members
early-stop on their own, scores match the sequential path, differing fold layouts line up."""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import synthetic_frame
from net_helpers import LABELS, METRIC, small_problem

from automl import parallel
from automl.competition import Competition
from automl.folds import fold_features, make_folds, predicted_rows
from automl.metrics import score
from automl.parallel import aligned, choose, common_layout, fit_folds

PARAMS = {"family": "mlp", "depth": 2, "width": 32, "norm": "batch", "dropout": 0.1, "lr": 3e-3, "batch_size": 32}


def _poisoned(problem, folds, victim: int = 0):
    """Fold `victim`'s validation rows made extreme wherever a member can read them: targets 1e6,
    and numerics 50 in the other folds' training features (those members train on these rows)."""
    rows = folds[victim].valid_rows
    y = problem.y.copy()
    y[rows] = 1e6
    poisoned = []
    for j, fold in enumerate(folds):
        numeric = fold.train.numeric.copy()
        numeric[np.isin(fold.train_rows, rows)] = 50.0
        poisoned.append(fold if j == victim else replace(fold, train=replace(fold.train, numeric=numeric)))
    return replace(problem, y=y), poisoned


def _victim_unchanged(problem, folds) -> bool:
    """Whether member 0's predictions are bit for bit the same after its validation rows are poisoned.

    One epoch, so its kept weights are those of the only epoch whatever the (poisoned)
    validation targets score. Members 1 and 2 train on member 0's validation rows, so the
    poison reaches the batched model; member 0 must not feel it. Leaky variants it catches:
    member 0 training on its validation rows (its targets 1e6), member 0 reading another
    member's rows through a wrong index in the gather (theirs include the poison), and
    BatchNorm statistics pooled over members, e.g. members flattened into one (members *
    batch) batch instead of vmapped (its normalization would read the numerics of 50).
    """
    clean = fit_folds(problem, folds, PARAMS, max_epochs=1, patience=1, together=True)
    poisoned = fit_folds(*_poisoned(problem, folds), PARAMS, max_epochs=1, patience=1, together=True)
    assert not np.array_equal(clean[1].valid, poisoned[1].valid)  # the poison is real for the members that train on it
    return np.array_equal(clean[0].valid, poisoned[0].valid) and np.array_equal(clean[0].test, poisoned[0].test)


def test_a_member_never_trains_on_its_validation_rows(monkeypatch):
    problem, folds = small_problem("regression", n=320, k=3)
    assert _victim_unchanged(problem, folds)
    # the same check on a deliberately leaky variant: each member's training rows include its validation rows
    def leaky(fold, layout):
        fold = aligned(fold, layout)
        train = replace(fold.train, numeric=np.concatenate([fold.train.numeric, fold.valid.numeric]),
                        categorical=np.concatenate([fold.train.categorical, fold.valid.categorical]))
        return replace(fold, train_rows=np.concatenate([fold.train_rows, fold.valid_rows]), train=train)

    monkeypatch.setattr(parallel, "aligned", leaky)
    assert not _victim_unchanged(problem, folds)


def _noise(fold, seed: int = 0):
    """The fold with unlearnable training features: random numerics, every category missing."""
    numeric = np.random.default_rng(seed).normal(size=fold.train.numeric.shape).astype(np.float32)
    return replace(fold, train=replace(fold.train, numeric=numeric, categorical=np.zeros_like(fold.train.categorical)))


@pytest.mark.parametrize("averaging", ["none", "ema"])
def test_members_early_stop_independently_and_the_rest_go_on_as_if_alone(averaging):
    problem, folds = small_problem("binary", n=400, k=4, metric="logloss")
    members = [folds[1], _noise(folds[2]), folds[3]]
    # no random masks: a member's steps do not depend on how many members there are; with ema, each member's
    # moving average is what is scored and kept, and it leaves the stack with its member
    quiet = {**PARAMS, "dropout": 0.0, "weight_averaging": averaging}
    fits = fit_folds(problem, members, quiet, max_epochs=20, patience=2, together=True)
    assert fits[1].epochs == len(fits[1].curve) < min(fits[0].epochs, fits[2].epochs)
    for member, fit in zip(members, fits, strict=True):  # each kept its own best epoch's weights
        assert fit.best_score == min(fit.curve)
        assert score(problem.metric, problem.y[member.valid_rows], fit.valid) == pytest.approx(fit.best_score)
    # member 1 left the stack (and the optimizer's state) early; member 0 went on exactly as it does alone
    alone = parallel.Together(problem, [folds[1]], quiet, "cpu", 20, 0).fit(2, "32-true", None)[0]
    np.testing.assert_allclose(fits[0].curve, alone.curve, rtol=1e-5)
    np.testing.assert_allclose(fits[0].test, alone.test, rtol=1e-4, atol=1e-6)


# how far apart the two paths' OOF scores may be: accuracy and AUC absolute; logloss, rmse, mcrmse relative
TOLERANCE = {"binary": 0.05, "multiclass": 0.1, "regression": 0.1, "multitarget": 0.1, "multilabel": 0.05}


@pytest.mark.parametrize("task", list(TOLERANCE))
def test_together_scores_like_sequential(task):
    problem, folds = small_problem(task, n=600, k=4)
    params = {**PARAMS, "grad_clip": 1.0, "schedule": "cosine", "weight_decay": 1e-3}
    rows = predicted_rows(folds[1:])
    scores = []
    for together in (False, True):
        fits = fit_folds(problem, folds[1:], params, max_epochs=12, patience=3, seed=1, together=together)
        oof = np.concatenate([fit.valid for fit in fits])[np.argsort(np.concatenate([f.valid_rows for f in folds[1:]]))]
        scores.append(score(problem.metric, problem.y[rows], oof))
    sequential, together = scores
    gap = abs(together - sequential) / (1.0 if problem.metric.greater_is_better else sequential)
    assert gap <= TOLERANCE[task], f"sequential {sequential:.4f}, together {together:.4f}"


def _uneven_problem():
    """Four folds whose layouts differ: `spike` and `tag` vary only among fold 0's validation
    rows, so fold 0's Preprocessor drops them (constant in its training rows) and the others keep them."""
    frame = synthetic_frame("binary", n=400)
    comp = Competition(slug="synthetic", id="id", target="target", task="binary", metric=METRIC["binary"],
                       labels=LABELS["binary"])
    train, test = frame.iloc[:320], frame.iloc[320:].drop(columns="target")
    from automl.problem import make_problem

    assignment = make_folds(make_problem(comp, train, test), 4, 0)
    first = assignment == 0
    train = train.assign(spike=np.where(first, np.arange(320) % 7, 0.0), tag=np.where(first, np.arange(320) % 3, 9).astype(str))
    problem = make_problem(comp, train, test.assign(spike=0.0, tag="9"))
    return problem, fold_features(problem, assignment, numeric="quantile")


def test_folds_with_differing_layouts_train_together():
    problem, folds = _uneven_problem()
    assert "spike" not in folds[0].train.numeric_names and "spike" in folds[1].train.numeric_names
    assert "tag" not in folds[0].train.categorical_names and "tag" in folds[1].train.categorical_names
    layout = common_layout([f.train for f in folds])
    first = aligned(folds[0], layout)
    assert first.train.numeric.shape[1] == len(layout.numeric_names) > folds[0].train.numeric.shape[1]
    assert (first.train.numeric[:, layout.numeric_names.index("spike")] == 0).all()  # a column it lacks reads zeros
    assert (first.train.categorical[:, layout.categorical_names.index("tag")] == 0).all()  # code 0: missing
    widest = [max(dict(zip(f.train.categorical_names, f.train.cardinalities, strict=True)).get(name, 0) for f in folds)
              for name in layout.categorical_names]
    assert layout.cardinalities == tuple(widest)
    fits = fit_folds(problem, folds, PARAMS, max_epochs=8, patience=8, together=True)
    for fold, fit in zip(folds, fits, strict=True):
        assert fit.curve and fit.valid.shape == (len(fold.valid_rows), 2) and fit.test.shape == (len(problem.test), 2)
    oof = np.concatenate([fit.valid for fit in fits])
    assert score(problem.metric, problem.y[np.concatenate([f.valid_rows for f in folds])], oof) > 0.6


def test_folds_that_differ_only_in_levels_seen_share_their_arrays():
    """Columns alike, cardinalities not (a fold saw fewer levels): the common layout widens the cardinalities
    and keeps the arrays as they are, no copy of four members' rows."""
    problem, folds = small_problem("binary", n=240, k=3)
    wider = replace(folds[1].train, cardinalities=tuple(c + 5 for c in folds[1].train.cardinalities))
    layout = common_layout([folds[0].train, wider])
    first = aligned(folds[0], layout)
    assert first.train.cardinalities == layout.cardinalities != folds[0].train.cardinalities
    for part in ("train", "valid", "test"):
        assert getattr(first, part).numeric is getattr(folds[0], part).numeric
        assert getattr(first, part).categorical is getattr(folds[0], part).categorical


def test_a_passed_deadline_still_validates_every_member_once():
    problem, folds = small_problem("multiclass")
    start = time.monotonic()
    fits = fit_folds(problem, folds, PARAMS, max_epochs=50, patience=50, deadline=time.monotonic(), together=True)
    assert time.monotonic() - start < 10
    for fold, fit in zip(folds, fits, strict=True):
        assert len(fit.curve) == 1 and fit.epochs == 1
        assert fit.valid.shape == (len(fold.valid_rows), 3) and np.isfinite(fit.test).all()


def test_families_that_cannot_be_batched_train_one_fold_after_another(monkeypatch):
    problem, folds = small_problem("binary")
    calls = []
    monkeypatch.setattr(parallel, "fit_fold", lambda problem, fold, params, **kw: calls.append(kw) or kw["seed"])
    deadline = time.monotonic() + 300
    assert fit_folds(problem, folds, {"family": "tabm"}, seed=7, deadline=deadline, together=True) == [7, 8, 9]
    assert [kw["deadline"] for kw in calls] == sorted(kw["deadline"] for kw in calls)  # the time split over the folds
    assert calls[-1]["deadline"] == pytest.approx(deadline)


def test_members_whose_weights_differ_in_shape_train_one_after_another(monkeypatch):
    problem, folds = small_problem("binary")
    real, widths = parallel.build_module, iter([32, 48, 32])  # as piecewise bins can differ per fold
    monkeypatch.setattr(parallel, "build_module",
                        lambda problem, fold, params, steps: real(problem, fold, {**params, "width": next(widths)}, steps))
    monkeypatch.setattr(parallel, "fit_fold", lambda problem, fold, params, **kw: kw["seed"])
    monkeypatch.setattr(parallel, "member_bytes", lambda *args: 1)  # builds a module of its own
    assert fit_folds(problem, folds, PARAMS, seed=3, together=True) == [3, 4, 5]


def test_members_train_together_in_groups_that_fit_the_memory_share(monkeypatch):
    """Each member holds its weights, gradients, optimizer state and a batch's activations: on a CPU as
    many train together as this process's share of TRAINING_BYTES holds, the rest in the next group,
    and one fit_fold at a time where one is all that fits (two processes sharing the machine halve the share)."""
    problem, folds = small_problem("binary", n=400, k=5)
    members, real, groups, alone = folds[1:], parallel.Together, [], []
    monkeypatch.setattr(parallel, "Together", lambda problem, folds, params, device, epochs, seed, samples, batch:
                        groups.append((len(folds), seed)) or real(problem, folds, params, device, epochs, seed, samples))
    one = parallel.fit_fold
    monkeypatch.setattr(parallel, "fit_fold", lambda *args, **kw: alone.append(kw["seed"]) or one(*args, **kw))
    each = parallel.member_bytes(problem, members[0], PARAMS, 32)
    monkeypatch.setattr(parallel, "TRAINING_BYTES", int(2.5 * each))
    fits = fit_folds(problem, members, PARAMS, max_epochs=2, seed=10, together=True)
    assert groups == [(2, 10), (2, 12)] and not alone  # members 10, 11 then 12, 13: the seeds fit_fold would use
    for fold, fit in zip(members, fits, strict=True):
        assert fit.valid.shape == (len(fold.valid_rows), 2) and np.isfinite(fit.test).all()
    groups.clear()
    monkeypatch.setattr(parallel.train, "SHARING_PROCESSES", 2)
    assert len(fit_folds(problem, members, PARAMS, max_epochs=2, seed=10, together=True)) == 4
    assert not groups and alone == [10, 11, 12, 13]
    assert parallel.members_at_once(problem, members, PARAMS, 300, "cuda") == 4  # a GPU's memory is not the share's


def test_a_members_memory_grows_with_its_width_and_batch():
    problem, folds = small_problem("binary")
    size = {(width, batch): parallel.member_bytes(problem, folds[0], {**PARAMS, "width": width}, batch)
            for width in (32, 256) for batch in (32, 512)}
    assert size[32, 32] < size[32, 512] < size[256, 512] and size[32, 32] < size[256, 32] < size[256, 512]
    # the 256 x 256 hidden weights five times over (weights, gradients, two moments, best): at least 1.3 MB
    assert size[256, 32] > 5 * 256 * 256 * 4


def test_choose_together_on_a_gpu_and_where_the_cpu_benchmark_says_so():
    even, window = [16_000] * 4, [4_000, 8_000, 12_000, 16_000]  # training rows per member; expanding in time
    assert choose("cuda", even, {"batch_size": 512})
    assert not choose("cuda", window, {"batch_size": 512}) and not choose("cuda", even[:1], {})
    for batch, by_rows in parallel.CPU_RATIOS.items():
        assert choose("cpu", even, {"batch_size": batch}) == (by_rows[16_000] < parallel.CPU_GAIN)


def test_the_benchmark_runs_both_paths():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import fold_parallel

    problem, folds = fold_parallel.table(2000, test_rows=100)
    for together in (False, True):
        seconds, auc = fold_parallel.run(problem, folds[1:], {**fold_parallel.FAMILIES["mlp"], "batch_size": 128}, "cpu",
                                         1, together)
        assert seconds > 0 and 0.6 < auc <= 1


@pytest.mark.parametrize("together", [True, False])
def test_a_row_sample_trains_on_its_rows_only_without_a_copy(together):
    """Completing on a row sample (large tables) passes positions, not copies: a member reads only
    those rows of its fold's features (the others are NaN here) and learns exactly what it would
    from a copy of them."""
    problem, folds = small_problem("regression", n=400, k=3)
    samples = [parallel.sample_positions(f, 150, seed=j) for j, f in enumerate(folds)]
    copied = fit_folds(problem, [parallel.train_sample(f, s) for f, s in zip(folds, samples, strict=True)], PARAMS,
                       max_epochs=2, patience=2, together=together)
    poisoned = []
    for fold, sample in zip(folds, samples, strict=True):
        numeric = fold.train.numeric.copy()
        numeric[np.setdiff1d(np.arange(len(numeric)), sample)] = np.nan
        poisoned.append(replace(fold, train=replace(fold.train, numeric=numeric)))
    fits = fit_folds(problem, poisoned, PARAMS, max_epochs=2, patience=2, together=together, samples=samples)
    for mine, theirs in zip(fits, copied, strict=True):
        assert np.isfinite(mine.valid).all() and np.array_equal(mine.valid, theirs.valid)
        assert np.array_equal(mine.test, theirs.test)
