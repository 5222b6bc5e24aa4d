"""The blend: cross-fitted weights, calibration for log loss, and rows no fold predicts."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from automl import ensemble as ensemble_module
from automl import stacking
from automl.baselines import CVResult, finish
from automl.competition import Competition
from automl.ensemble import blend_seconds, calibrate, ensemble
from automl.folds import splits
from automl.metrics import score
from automl.problem import make_problem
from automl.stacking import stack


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def problem_and_members(metric: str, n: int = 3000, sharpness: float = 3.0, noise: float = 0.7):
    """Three classes drawn from softmax(signal), and two members that see the signal through
    noise, over-confident by `sharpness` (1 and no noise: both are the true probabilities)."""
    rng = np.random.default_rng(0)
    signal = rng.normal(size=(n, 3))
    y = (softmax(signal).cumsum(axis=1) < rng.random((n, 1))).sum(axis=1)
    frame = pd.DataFrame({"id": np.arange(n), "x": rng.normal(size=n), "target": y})
    comp = Competition(slug="blend", id="id", target="target", task="multiclass", metric=metric, labels="int")
    problem = make_problem(comp, frame, frame.drop(columns="target").head(20))
    folds = splits(np.arange(n) % 5)
    members = []
    for i in range(2):
        proba = softmax(sharpness * (signal + rng.normal(scale=noise, size=(n, 3))))
        members.append(finish(f"m{i}", problem, folds, proba, proba[:20], 1.0))
    return problem, folds, members


def test_log_loss_blend_is_calibrated_out_of_fold():
    problem, folds, members = problem_and_members("logloss")
    blended = ensemble(problem, folds, members, stacking=False)
    temperature, clip = blended.info["calibration"]
    assert temperature > 1.2  # the members are over-confident: the blend is softened
    assert f"temperature {temperature:.3g}" in blended.info["note"]
    plain = np.mean([m.oof for m in members], axis=0)
    assert blended.mean < np.mean([score(problem.metric, problem.y[f.valid_rows], plain[f.valid_rows]) for f in folds])
    np.testing.assert_allclose(blended.test.sum(axis=1), 1.0)
    assert blended.test.min() >= clip * 0.99


def test_calibration_is_left_out_when_it_does_not_help():
    problem, folds, members = problem_and_members("logloss", sharpness=1.0, noise=0.0)  # the true probabilities
    how = ensemble(problem, folds, members, stacking=False).info["calibration"]
    assert how is None or (abs(np.log(how[0])) < np.log(1.1) and how[1] <= 1e-4)
    problem, folds, members = problem_and_members("accuracy")  # labels ignore the probabilities' scale
    assert ensemble(problem, folds, members, stacking=False).info["calibration"] is None


def test_calibrate_keeps_the_ranking_and_sums_to_one():
    p = np.array([[0.7, 0.2, 0.1], [0.05, 0.05, 0.9]])
    for how in [(0.5, 1e-15), (2.0, 1e-2)]:
        q = calibrate(p, how)
        np.testing.assert_allclose(q.sum(axis=1), 1.0)
        np.testing.assert_array_equal(q.argsort(axis=1), p.argsort(axis=1))
    assert calibrate(p, (2.0, 1e-15))[0, 0] < 0.7 < calibrate(p, (0.5, 1e-15))[0, 0]
    assert calibrate(p, None) is p


def test_rows_no_fold_predicts_take_no_part_in_the_blend():
    problem, _, members = problem_and_members("logloss")
    assignment = np.repeat([-1, 0, 1, 2, 3, 4], 500)  # an expanding window: the first stretch only trains
    folds = splits(assignment)
    members = [finish(m.name, problem, folds, m.oof, m.test, 1.0) for m in members]
    first = ensemble(problem, folds, members)
    spoiled = [CVResult(m.name, m.oof.copy(), m.test, m.fold_scores, 1.0) for m in members]
    spoiled[0].oof[:500] = np.eye(3)[(problem.y[:500] + 1) % 3]  # certain and wrong, where nothing was predicted
    second = ensemble(problem, folds, spoiled)
    assert second.info == first.info and second.fold_scores == first.fold_scores


def test_a_blend_given_little_time_chooses_its_weights_on_a_row_sample_and_says_so():
    problem, folds, members = problem_and_members("auc", n=30_000)
    full = ensemble(problem, folds, members, stacking=False)
    assert full.info["select_rows"] == 20_000 and "row samples" not in full.info["note"]
    worst = blend_seconds(problem, len(folds), len(members))
    start = time.perf_counter()
    quick = ensemble(problem, folds, members, seconds=worst / 4, stacking=False)
    assert time.perf_counter() - start < worst / 2
    assert 2_000 <= quick.info["select_rows"] < 10_000
    assert f"weights chosen on {quick.info['select_rows']:,}-row samples" in quick.info["note"]
    assert quick.mean == pytest.approx(full.mean, abs=0.01)  # chosen on fewer rows, nearly as good


def test_a_member_that_predicts_one_value_for_every_row_gets_no_weight():
    # On AUC a constant member leaves a blend's ranking as it was, but the sums' rounding made it
    # win greedy rounds by a millionth: blends of two networks became 88% dummy.
    n, rng = 20_000, np.random.default_rng(0)
    signal = rng.normal(size=n)
    frame = pd.DataFrame({"id": np.arange(n), "x": rng.normal(size=n), "target": (signal + rng.logistic(size=n) > 0).astype(int)})
    comp = Competition(slug="blend", id="id", target="target", task="binary", metric="auc", labels="int")
    problem = make_problem(comp, frame, frame.drop(columns="target").head(20))
    folds = splits(np.arange(n) % 5)
    members = [finish("dummy", problem, folds, np.full((n, 2), 0.5), np.full((20, 2), 0.5), 0.0)]
    for i in range(2):
        p = np.round(1 / (1 + np.exp(-(signal + rng.normal(size=n)))), 3)  # float32-like outputs with ties
        members.append(finish(f"net{i}", problem, folds, np.stack([1 - p, p], 1), np.full((20, 2), 0.5), 1.0))
    result = ensemble(problem, folds, members)
    assert set(result.info["weights"]) == {"net0", "net1"}
    assert result.mean > max(m.mean for m in members[1:])


def noise_problem(n: int = 300, members: int = 40):
    """Labels that nothing predicts, and many members whose out-of-fold predictions are noise."""
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"id": np.arange(n), "x": rng.normal(size=n), "target": rng.integers(0, 2, n)})
    comp = Competition(slug="noise", id="id", target="target", task="binary", metric="auc", labels="int")
    problem = make_problem(comp, frame, frame.drop(columns="target").head(10))
    folds = splits(np.arange(n) % 5)
    found = []
    for i in range(members):
        p = rng.uniform(0.05, 0.95, n)
        found.append(finish(f"m{i}", problem, folds, np.column_stack([1 - p, p]), np.full((10, 2), 0.5), 1.0))
    return problem, folds, found


def test_the_stack_never_sees_a_rows_own_label():
    # Forty noise members: a second level fitted on the rows it scores finds a pattern in the noise
    # (its in-sample AUC is far above 0.5); cross-fitted, every row is predicted by a stack that never
    # saw its label, and the held-out AUC stays at chance.
    problem, folds, members = noise_problem()
    stacked = stack(problem, folds, members)
    assert abs(stacked.mean - 0.5) < 0.08
    x = stacking._features(problem, [m.oof for m in members], None)
    rows = np.arange(len(problem.y))
    in_sample = stacking._fit(problem, x, problem.y, rows, 0).predict(x)
    assert score(problem.metric, problem.y, in_sample) > 0.65  # what a leaking stack would report


def test_the_stack_is_kept_when_it_scores_better_held_out_and_the_board_says_so():
    # A noisy member over-confident by 4x, and one whose signal is reversed: a linear level on their
    # log-probabilities learns the temperature and gives the reversed one a negative weight, where the
    # greedy blend can only leave it out and soften: the stack beats the mean of the two on every fold.
    problem, folds, members = problem_and_members("logloss", sharpness=4.0, noise=0.5)
    m = members[1]
    members = [members[0], finish("flipped", problem, folds, softmax(-np.log(m.oof)), softmax(-np.log(m.test)), 1.0)]
    greedy = ensemble(problem, folds, members, stacking=False)
    chosen = ensemble(problem, folds, members)
    assert chosen.info["method"] == "stack" and chosen.mean < min(greedy.mean, chosen.info["halves"])  # lower is better
    assert chosen.info["greedy"] == pytest.approx(greedy.mean)
    assert chosen.info["note"].startswith("stack:") and set(chosen.info["weights"]) == {"m0", "flipped"}
    np.testing.assert_allclose(chosen.test.sum(axis=1), 1.0)
    # on two folds (a forecast's) better on both is too weak a sign: the mean of the two stands
    two = splits(np.arange(len(problem.y)) % 2)
    members = [finish(m.name, problem, two, m.oof, m.test, 1.0) for m in members]
    kept = ensemble(problem, two, members)
    assert all(a < b for a, b in zip(stack(problem, two, members).fold_scores, kept.info["halves_folds"], strict=True))
    assert kept.info["method"] == "halves" and kept.mean == pytest.approx(kept.info["halves"])
    # (where the greedy blend beats the mean on every fold, it stays: the test below)


def test_a_blend_short_of_time_offers_only_its_best_members():
    # A score's fixed cost stays on any row sample (seven labels: seven AUCs a score): with many
    # members and little time, only the best ones are offered to the greedy selection.
    problem, folds, members = problem_and_members("auc")
    rng = np.random.default_rng(3)
    weaker = [finish(f"w{i}", problem, folds, softmax(np.log(members[0].oof) + rng.normal(scale=1.0 + i, size=members[0].oof.shape)),
                     members[0].test, 1.0) for i in range(6)]
    everyone = members + weaker
    quick = ensemble(problem, folds, everyone, seconds=1e-3, stacking=False)
    kept = int(quick.info["note"].split("the ")[1].split(" best")[0])
    assert 2 <= kept < len(everyone) and "best members only (time)" in quick.info["note"]
    best = sorted(everyone, key=lambda m: -m.mean)[:kept]
    assert set(quick.info["weights"]) <= {m.name for m in best}
    assert "best members" not in ensemble(problem, folds, everyone, stacking=False).info["note"]


def test_a_diverged_regression_member_scores_badly_instead_of_failing():
    n = 200
    frame = pd.DataFrame({"id": np.arange(n), "x": np.arange(n) % 7, "target": np.arange(n) % 29 + 1.0})
    comp = Competition(slug="counts", id="id", target="target", task="regression", metric="rmsle", labels="float")
    problem = make_problem(comp, frame, frame.drop(columns="target").head(10))
    folds = splits(np.arange(n) % 5)
    good = problem.y + np.random.default_rng(0).normal(scale=2, size=n)
    diverged = good.copy()
    diverged[::7] = np.inf  # expm1 of a log-scale output past 709
    members = [finish("good", problem, folds, good, np.full(10, 10.0), 1.0),
               finish("diverged", problem, folds, diverged, np.full(10, np.nan), 1.0)]
    assert np.isfinite(members[1].oof).all() and members[1].oof.max() == 29 + 28  # the range widened by its span
    assert members[1].mean > members[0].mean  # rmsle: it scores worse, and the run goes on
    blended = ensemble(problem, folds, members)
    assert blended is not None and np.isfinite(blended.test).all()


def test_the_stack_learns_on_the_log1p_scale_for_rmsle():
    # Two members off by a multiplicative factor each (rmsle's kind of error): a stack on log1p inputs with
    # a raw-scale target would turn 29 into e^29; on the log1p scale it beats the worse member.
    n, rng = 600, np.random.default_rng(2)
    frame = pd.DataFrame({"id": np.arange(n), "x": rng.normal(size=n), "target": rng.integers(1, 30, n).astype(float)})
    comp = Competition(slug="counts", id="id", target="target", task="regression", metric="rmsle", labels="float")
    problem = make_problem(comp, frame, frame.drop(columns="target").head(10))
    folds = splits(np.arange(n) % 5)
    members = [finish(f"m{i}", problem, folds, problem.y * np.exp(rng.normal(scale=s, size=n)), np.full(10, 10.0), 1.0)
               for i, s in enumerate((0.3, 0.5))]
    stacked = stack(problem, folds, members)
    assert stacked.mean < max(m.mean for m in members)
    assert stacked.oof.max() <= problem.y.max() * 3 and 5 < stacked.test.mean() < 15


def test_the_mean_of_the_greedy_blend_and_the_stack_stands_unless_one_beats_it_on_every_fold():
    # Twelve members sharing one of two opposite errors, on 400 rows: the stack's weights fit noise where
    # the greedy blend's are coarse; each is held out on the same folds, so their mean is held out too.
    chosen_methods = set()
    for seed in range(6):
        n, rng = 400, np.random.default_rng(seed)
        y = rng.normal(size=n)
        frame = pd.DataFrame({"id": np.arange(n), "x": rng.normal(size=n), "target": y})
        comp = Competition(slug="mix", id="id", target="target", task="regression", metric="rmse", labels="float")
        problem = make_problem(comp, frame, frame.drop(columns="target").head(10))
        folds = splits(np.arange(n) % 5)
        shared = rng.normal(size=n)
        members = [finish(f"m{i}", problem, folds, y + 0.7 * shared * (i % 2 * 2 - 1) + rng.normal(size=n),
                          np.full(10, float(i)), 1.0) for i in range(12)]
        chosen = ensemble(problem, folds, members)
        greedy, stacked = ensemble(problem, folds, members, stacking=False), stack(problem, folds, members)
        assert (chosen.info["greedy"], chosen.info["stack"]) == (pytest.approx(greedy.mean), pytest.approx(stacked.mean))
        # the mean of the two stands unless one of them is better (rmse: lower) beyond noise
        halves = finish("halves", problem, folds, (greedy.oof + stacked.oof) / 2, greedy.test, 0.0)
        better = [r for r in (greedy, stacked) if ensemble_module.beats(problem, r, halves)]
        assert chosen.mean == pytest.approx(min(r.mean for r in better) if better else chosen.info["halves"])
        chosen_methods.add(chosen.info["method"])
        if chosen.info["method"] == "halves":
            np.testing.assert_allclose(chosen.oof, (greedy.oof + stacked.oof) / 2)
            np.testing.assert_allclose(chosen.test, (greedy.test + stacked.test) / 2)
            assert chosen.info["note"].startswith("half the greedy blend")
            assert set(chosen.info["weights"]) == {m.name for m in members}  # every member has its stack share
            assert sum(chosen.info["weights"].values()) == pytest.approx(1.0, abs=0.01)
    assert "halves" in chosen_methods  # (the stack kept over it: the test above)


def test_the_greedy_blend_is_kept_when_it_beats_the_mean_on_every_fold_of_three_or_more(monkeypatch):
    # AUC (higher is better), one informative member among noise, and a stack that learnt little: the mean of
    # the two is worse than the greedy blend on every one of five folds
    n, rng = 600, np.random.default_rng(0)
    frame = pd.DataFrame({"id": np.arange(n), "x": rng.normal(size=n), "target": rng.integers(0, 2, n)})
    comp = Competition(slug="one-good", id="id", target="target", task="binary", metric="auc", labels="int")
    problem = make_problem(comp, frame, frame.drop(columns="target").head(10))
    good = 1 / (1 + np.exp(-(3 * (problem.y - 0.5) + rng.normal(size=n))))
    members = [finish("good", problem, splits(np.arange(n) % 5), np.column_stack([1 - good, good]),
                      np.full((10, 2), 0.5), 1.0)]
    noise = rng.uniform(0.05, 0.95, (3, n))
    members += [finish(f"noise{i}", problem, splits(np.arange(n) % 5), np.column_stack([1 - p, p]),
                       np.full((10, 2), 0.5), 1.0) for i, p in enumerate(noise)]

    def weak_stack(problem, folds, members, seconds=None, seed=0):  # it learnt little, but more than noise
        p = 1 / (1 + np.exp(-(0.6 * (problem.y - 0.5) + np.random.default_rng(1).normal(size=n))))
        result = finish("ensemble", problem, folds, np.column_stack([1 - p, p]), np.full((10, 2), 0.5), 0.0, kind="ensemble")
        result.info = {"shares": {m.name: 1 / len(members) for m in members}}
        return result

    monkeypatch.setattr(ensemble_module, "stack", weak_stack)
    five = splits(np.arange(n) % 5)
    kept = ensemble(problem, five, members)
    greedy = ensemble(problem, five, members, stacking=False)
    assert all(a > b for a, b in zip(greedy.fold_scores, kept.info["halves_folds"], strict=True))
    assert kept.info["method"] == "greedy" and kept.mean == pytest.approx(greedy.mean) and kept.mean > kept.info["halves"]
    assert kept.info["note"].startswith("greedy blend; stack held-out")
    # the same on three folds; on two, better on both is too weak a sign and the mean stands
    assert ensemble(problem, splits(np.arange(n) % 3), members).info["method"] == "greedy"
    assert ensemble(problem, splits(np.arange(n) % 2), members).info["method"] == "halves"


def test_a_stack_that_collapses_on_one_fold_is_dropped_and_the_ensemble_is_never_below_its_best_member(monkeypatch):
    # Three members that see a binary target through independent noise; a stack as good as the greedy blend on
    # four folds and upside down on the third (a second level that collapsed there): the mean of the two would
    # sit below the best member, and "better on every fold" would not remove it.
    n, rng = 1000, np.random.default_rng(3)
    y = rng.integers(0, 2, n)
    frame = pd.DataFrame({"id": np.arange(n), "x": rng.normal(size=n), "target": y})
    comp = Competition(slug="collapse", id="id", target="target", task="binary", metric="auc", labels="float")
    problem = make_problem(comp, frame, frame.drop(columns="target").head(10))
    folds = splits(np.arange(n) % 5)
    members = []
    for i in range(3):
        p = 1 / (1 + np.exp(-(2 * (y - 0.5) + rng.normal(size=n))))
        members.append(finish(f"m{i}", problem, folds, np.column_stack([1 - p, p]), np.full((10, 2), 0.5), 1.0))

    def collapsing_stack(problem, folds, members, seconds=None, seed=0):
        p = np.mean([m.oof[:, 1] for m in members], axis=0)
        p[folds[2].valid_rows] = 1 - p[folds[2].valid_rows]
        result = finish("ensemble", problem, folds, np.column_stack([1 - p, p]), np.full((10, 2), 0.5), 0.0, kind="ensemble")
        result.info = {"shares": {m.name: 1 / len(members) for m in members}}
        return result

    monkeypatch.setattr(ensemble_module, "stack", collapsing_stack)
    chosen = ensemble(problem, folds, members)
    assert chosen.info["method"] == "greedy" and "on fold 3 it scored" in chosen.info["stack_dropped"]
    assert "below every member" in chosen.info["stack_dropped"]
    assert "the stack was dropped" in chosen.info["note"]
    assert chosen.mean >= max(m.mean for m in members)
    halves = finish("halves", problem, folds, (chosen.oof + collapsing_stack(problem, folds, members).oof) / 2,
                    chosen.test, 0.0)
    assert halves.mean < max(m.mean for m in members)  # what the old rule would have submitted


def test_a_single_model_is_submitted_only_when_it_beats_the_ensemble_beyond_noise():
    from automl.runner import choose_submission, leaderboard

    n, rng = 500, np.random.default_rng(0)
    frame = pd.DataFrame({"id": np.arange(n), "x": rng.normal(size=n), "target": rng.normal(size=n)})
    comp = Competition(slug="pick", id="id", target="target", task="regression", metric="rmse", labels="float")
    problem = make_problem(comp, frame, frame.drop(columns="target").head(10))

    def result(name, scores, kind="baseline"):
        return CVResult(name, np.zeros(n), np.zeros(10), list(scores), 1.0, kind=kind)

    blend = result("ensemble", [0.50, 0.52, 0.49, 0.51, 0.50], "ensemble")
    lucky = result("lightgbm", [0.47, 0.53, 0.48, 0.52, 0.49])  # lower mean (rmse), better on 3 of 5 folds only
    chosen, why = choose_submission([lucky, blend], problem)
    assert chosen is blend and "ahead on 3 of 5 folds: within noise" in why
    board = leaderboard([lucky, blend], problem, chosen.name)
    assert list(board["model"]) == ["lightgbm", "ensemble"] and list(board["submitted"]) == [False, True]
    steady = result("catboost", [0.45, 0.47, 0.44, 0.46, 0.45])  # better on every fold
    assert choose_submission([lucky, steady, blend], problem)[0] is steady
    # on two folds (a forecast) a single model never replaces the ensemble: two folds cannot tell them apart
    two = result("ensemble", [0.5, 0.5], "ensemble")
    assert choose_submission([result("x", [0.4, 0.4]), two], problem)[0] is two


def test_an_ordinal_metrics_ensemble_is_cut_at_its_expected_class_where_that_scores_better():
    # Five ordered grades, most in the middle; members that see the grade through noise: the most probable class
    # of their blend leans to the middle grades, and kappa rewards being near the true one.
    n, rng = 1500, np.random.default_rng(0)
    latent = rng.normal(2.0, 1.0, n)
    y = np.clip(np.round(latent), 0, 4).astype(int)
    frame = pd.DataFrame({"id": np.arange(n), "x": rng.normal(size=n), "target": y})
    comp = Competition(slug="grades", id="id", target="target", task="multiclass", metric="qwk", labels="int")
    problem = make_problem(comp, frame, frame.drop(columns="target").head(10))
    folds = splits(np.arange(n) % 5)
    prior = np.bincount(y, minlength=5) / n
    members = []
    for i in range(3):
        seen = latent + rng.normal(scale=1.2, size=n)
        proba = prior * np.exp(-0.5 * (np.arange(5) - seen[:, None]) ** 2)
        proba /= proba.sum(axis=1, keepdims=True)
        members.append(finish(f"m{i}", problem, folds, proba, proba[:10], 1.0))
    argmax = ensemble_module.blended(problem, folds, members, stacking=False)
    chosen = ensemble(problem, folds, members, stacking=False)
    assert chosen.info["note"].startswith("cut at its expected class") and chosen.mean > argmax.mean
    assert set(np.unique(chosen.oof)) == {0.0, 1.0} and chosen.test.shape == (10, 5)  # one-hot classes, as cuts hand on
    assert len(chosen.info["cuts"]) == 4 and chosen.info["weights"] == argmax.info["weights"]
