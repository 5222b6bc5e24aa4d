"""The Optuna search: rebuild from FixedTrial, resume, failures, deadline, pruning."""

from __future__ import annotations

import copy
import dataclasses
import os
import socket
import subprocess
import sys
import time

import numpy as np
import optuna
import pytest
from lightning.pytorch import Callback
from net_helpers import small_problem
from optuna.trial import TrialState

from automl.errors import AutomlError
from automl.pipeline import load_pipeline, suggest
from automl.search import Objective, StrictPruning, best_trials, complete, network_need, network_results, open_storage, search
from automl.train import build_module, fit_fold


def tiny(**changes):
    """The quick recipe shrunk for tests: few epochs, small widths."""
    recipe = load_pipeline("quick")
    recipe = dataclasses.replace(recipe, max_epochs=3, patience=2)
    when = {"mlp": {**recipe.when["mlp"], "width": {"int": [8, 32], "log": True}}}
    return dataclasses.replace(recipe, when=when, **({"defaults": []} | changes))


def test_fixed_trial_of_best_params_rebuilds_the_best_model(tmp_path):
    problem, folds = small_problem("binary")
    study = search(problem, folds, tiny(), tmp_path, trials=3, deadline=None)
    best = study.best_trial
    params = suggest(optuna.trial.FixedTrial(best.params), tiny())
    assert params == best.params
    rebuilt = build_module(problem, folds[0], params, total_steps=1)
    assert rebuilt.hparams.family == best.params["family"]
    assert rebuilt.net.head.in_features == best.params["width"]
    # The objective runs without a study, on exactly these parameters.
    value = Objective(problem, folds, tiny(), tmp_path / "fixed", device="cpu", precision="32-true",
                      deadline=None, seed=0)(optuna.trial.FixedTrial(best.params))
    assert 0.5 < value <= 1.0


def test_resume_does_not_redo_trials(tmp_path):
    problem, folds = small_problem("regression")
    first = search(problem, folds, tiny(), tmp_path, trials=2, deadline=None)
    numbers = [t.number for t in first.trials]
    again = search(problem, folds, tiny(), tmp_path, trials=2, deadline=None)
    assert [t.number for t in again.trials] == numbers  # nothing new ran
    more = search(problem, folds, tiny(), tmp_path, trials=3, deadline=None)
    finished = [t for t in more.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 3 and (tmp_path / "study.db").is_file()
    assert network_results(more, problem, folds, tmp_path, 1) == []  # searched on one fold: not cross-validated yet
    done = complete(more, problem, folds, tiny(), tmp_path, n=1, deadline=None, device="cpu", precision="32-true", seed=0)
    results = network_results(more, problem, folds, tmp_path, 1)
    assert [r.name for r in results] == [r.name for r in done]
    assert results and results[0].kind == "network" and len(results[0].fold_scores) == len(folds)
    assert more.user_attrs[f"cv:{results[0].info['trial']}"]["fold_scores"] == results[0].fold_scores


def test_the_next_best_trial_is_completed_in_place_of_one_too_slow_to_complete(tmp_path, monkeypatch):
    import automl.search

    problem, folds = small_problem("binary")
    study = search(problem, folds, tiny(), tmp_path, trials=3, deadline=None)
    first, second = best_trials(study, 2)
    # as if the best took a second a row to predict: every fold's rows would take minutes, so it is left one-fold
    slow = copy.deepcopy(first)
    slow.user_attrs["predict_per_row"] = 1.0
    monkeypatch.setattr(automl.search, "best_trials", lambda s, n: [slow] + [t for t in best_trials(s, n) if t.number != first.number])
    done = complete(study, problem, folds, tiny(), tmp_path, n=1, deadline=time.monotonic() + 60, device="cpu",
                    precision="32-true", seed=0)
    third = [t.number for t in best_trials(study, 3)][2]  # completed too, with the time left over
    assert sorted(r.info["trial"] for r in done) == sorted([second.number, third])
    assert not (tmp_path / "trials" / str(first.number) / "oof.npy").is_file()
    assert [r.info["trial"] for r in network_results(study, problem, folds, tmp_path, 1)] == [second.number]


def test_time_left_after_the_best_completes_more_candidates_but_only_on_every_row(tmp_path, monkeypatch):

    problem, folds = small_problem("binary")
    study = search(problem, folds, tiny(), tmp_path, trials=4, deadline=None)
    ranked = [t.number for t in best_trials(study, 4)]
    done = complete(study, problem, folds, tiny(), tmp_path, n=1, deadline=time.monotonic() + 60, device="cpu",
                    precision="32-true", seed=0)
    assert sorted(r.info["trial"] for r in done) == sorted(ranked[:3])  # one asked for; its 3 candidates fit the minute
    # without a deadline, the n and no more
    again = tmp_path / "again"
    study = search(problem, folds, tiny(), again, trials=4, deadline=None)
    assert len(complete(study, problem, folds, tiny(), again, n=1, deadline=None, device="cpu", precision="32-true",
                        seed=0)) == 1


def test_the_last_trial_that_can_be_completed_gets_all_the_time_left(tmp_path, monkeypatch):
    import automl.search

    problem, folds = small_problem("binary")
    study = search(problem, folds, tiny(), tmp_path, trials=1, deadline=None)
    shares = []
    monkeypatch.setattr(automl.search, "_complete_one", lambda trial, *args: shares.append(args[4]))
    complete(study, problem, folds, tiny(), tmp_path, n=3, deadline=time.monotonic() + 100, device="cpu",
             precision="32-true", seed=0)
    assert len(shares) == 1 and shares[0] > 90  # one candidate for three places: not half of the time


def test_completing_processes_split_the_candidates_between_them(tmp_path):
    problem, folds = small_problem("binary")
    study = search(problem, folds, tiny(), tmp_path, trials=6, deadline=None)
    ranked = [t.number for t in best_trials(study, 6)]
    options = {"deadline": None, "device": "cpu", "precision": "32-true", "seed": 0}
    first = complete(study, problem, folds, tiny(), tmp_path, n=3, part=(0, 2), **options)
    second = complete(study, problem, folds, tiny(), tmp_path, n=3, part=(1, 2), **options)
    # process 0 takes the 1st and 3rd best, process 1 the 2nd: three in all, none twice
    assert sorted(r.info["trial"] for r in first) == sorted(ranked[0:3:2])
    assert [r.info["trial"] for r in second] == [ranked[1]]
    assert sorted(r.info["trial"] for r in network_results(study, problem, folds, tmp_path, 3)) == sorted(ranked[:3])


def test_processes_on_one_sqlite_study_never_take_the_same_waiting_trial(tmp_path):
    # Python's sqlite3 opens no transaction for a SELECT: two processes could both read that an
    # enqueued trial is waiting and both run it (then one fails: "Cannot tell a COMPLETE trial").
    import os

    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(storage=open_storage(url), study_name="race")
    for x in range(60):
        study.enqueue_trial({"x": float(x)})
    children = []
    for _ in range(3):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                own = optuna.load_study(study_name="race", storage=open_storage(url))
                for _ in range(20):
                    trial = own.ask()
                    own.tell(trial, trial.suggest_float("x", 0, 100))
                code = 0
            finally:
                os._exit(code)
        children.append(pid)
    assert all(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0 for pid in children)
    taken = [t.params["x"] for t in optuna.load_study(study_name="race", storage=url).trials]
    assert len(taken) == 60 and sorted(taken) == [float(x) for x in range(60)]


def test_a_trial_whose_worker_died_before_starting_it_is_not_waited_for(tmp_path, monkeypatch):
    # Killed right after asking for a trial, a worker leaves it running with no heartbeat: Optuna never
    # fails it, and a resumed run that needs one more trial used to wait for it forever.
    import automl.search

    problem, folds = small_problem("binary")
    search(problem, folds, tiny(), tmp_path, trials=1, deadline=None)
    orphan = optuna.load_study(study_name="networks", storage=f"sqlite:///{tmp_path / 'study.db'}").ask()
    monkeypatch.setattr(automl.search, "GRACE", 1)  # seconds; Optuna wants whole ones
    monkeypatch.setattr(automl.search, "HEARTBEAT", 1)
    study = search(problem, folds, tiny(), tmp_path, trials=2, deadline=time.monotonic() + 120)
    states = {t.number: t.state for t in study.trials}
    assert states[orphan.number] == TrialState.FAIL
    assert sum(state in (TrialState.COMPLETE, TrialState.PRUNED) for state in states.values()) == 2


def test_a_diverging_trial_is_recorded_as_failed_and_the_search_goes_on(tmp_path):
    problem, folds = small_problem("regression")
    space = {**tiny().space, "optimizer": {"choice": ["sgd"]}, "lr": {"choice": [1e12, 1e-3]},
             "schedule": {"choice": ["none"]}}
    recipe = tiny(space=space, pruner="none")
    study = search(problem, folds, recipe, tmp_path, trials=6, deadline=None)
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert failed and complete
    assert all(t.params["lr"] == 1e12 for t in failed)
    assert "diverged" in failed[0].user_attrs["fail_reason"]


def test_the_deadline_stops_the_trial_in_flight(tmp_path):
    problem, folds = small_problem("binary", n=400)
    recipe = tiny(max_epochs=500, patience=500, trial_share=1.0)  # the run's deadline, not a cap, stops it
    start = time.monotonic()
    study = search(problem, folds, recipe, tmp_path, trials=100, deadline=start + 3)
    elapsed = time.monotonic() - start
    assert elapsed < 10  # 3 s budget plus at most one epoch and the trial's wrap-up
    states = [t.state for t in study.trials]
    assert len(states) < 100
    assert study.trials[-1].user_attrs.get("stopped") == "time budget reached"


def test_pruning_happens_on_a_search_built_to_prune(tmp_path):
    problem, folds = small_problem("binary", n=400)
    space = {**tiny().space, "lr": {"choice": [1e-6, 1e-2]}, "optimizer": {"choice": ["adam"]}}
    # Five good trials first (the median pruner's start-up), then the sampler's random start-up
    # trials, about half of them with a learning rate too small to learn in six epochs.
    good = [{"family": "mlp", "optimizer": "adam", "lr": 1e-2, "width": width} for width in (8, 12, 16, 24, 32)]
    recipe = tiny(space=space, max_epochs=6, patience=6, defaults=good)
    study = search(problem, folds, recipe, tmp_path, trials=16, deadline=None)
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned, [(t.state, t.params["lr"]) for t in study.trials]


def test_a_missing_pruning_metric_fails_loudly():
    problem, folds = small_problem("binary")
    study = optuna.create_study()
    trial = study.ask()
    params = {"family": "mlp", "depth": 1, "width": 8, "batch_size": 32}
    with pytest.raises(RuntimeError, match="never logged"):
        fit_fold(problem, folds[0], params, max_epochs=1, callbacks=[StrictPruning(trial, "val_missing")])


def test_a_new_study_starts_with_the_recipe_defaults(tmp_path):
    problem, folds = small_problem("binary")
    default = {**load_pipeline("quick").defaults[0], "width": 16}
    study = search(problem, folds, tiny(defaults=[default]), tmp_path, trials=2, deadline=None)
    assert study.trials[0].params == default


def test_each_family_starts_with_its_known_default_and_a_resumed_run_enqueues_none_again(tmp_path):
    # The tabular recipe's defaults (RealMLP-like mlp, TabM-mini with piecewise embeddings, ResNet, FT-Transformer):
    # each family's first trial is its default, run as written; a resumed study runs each once only.
    problem, folds = small_problem("binary")
    recipe = dataclasses.replace(load_pipeline("tabular"), max_epochs=2, patience=2)
    families = {d["family"] for d in recipe.defaults}
    assert families == set(recipe.space["family"]["choice"])  # every family has one
    study = search(problem, folds, recipe, tmp_path, trials=len(recipe.defaults), deadline=None)
    for default in recipe.defaults:
        first = next(t for t in study.trials if t.params["family"] == default["family"])
        assert first.params == default and first.state == TrialState.COMPLETE, (first.params, first.state)
    assert [t.params for t in study.trials[:len(recipe.defaults)]] == recipe.defaults  # the strongest first
    again = search(problem, folds, recipe, tmp_path, trials=len(recipe.defaults) + 2, deadline=None)
    assert len(again.trials) == len(recipe.defaults) + 2
    for default in recipe.defaults:
        assert sum(t.params == default for t in again.trials) == 1, default


def test_the_networks_need_is_timed_from_a_probe_of_each_default():
    problem, folds = small_problem("binary")
    recipe = load_pipeline("tabular")
    need = network_need(problem, folds, recipe)
    # each default's epochs (15) on the fold, and three completions on the 2 other folds: seconds, not minutes
    assert need is not None and 0.05 < need < 120
    slower = dataclasses.replace(recipe, defaults=recipe.defaults + recipe.defaults)  # twice the configurations
    assert network_need(problem, folds, slower) > need
    assert network_need(problem, folds, dataclasses.replace(recipe, defaults=[])) is None
    assert network_need(problem, folds, load_pipeline("image")) is None  # not a table's families: its share stands


def test_an_enqueued_default_may_train_for_twice_a_trials_share(tmp_path, monkeypatch):
    problem, folds = small_problem("binary")
    default = {**load_pipeline("quick").defaults[0], "width": 16}
    other = {**default, "width": 24}
    recipe = tiny(defaults=[default], trial_share=0.1)
    allowed = []

    def fit(*args, deadline, **kwargs):
        allowed.append(deadline - time.monotonic())
        raise optuna.TrialPruned("recorded")

    monkeypatch.setattr("automl.search.fit_fold", fit)
    objective = Objective(problem, folds, recipe, tmp_path, device="cpu", precision="32-true",
                          deadline=time.monotonic() + 100, seed=0)
    for params in (default, other):
        with pytest.raises(optuna.TrialPruned):
            objective(optuna.trial.FixedTrial(params))
    assert allowed[0] == pytest.approx(20, abs=1) and allowed[1] == pytest.approx(10, abs=1)


def test_a_default_outside_the_space_is_refused(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("space: {family: {choice: [mlp]}, lr: {float: [0.001, 0.01]}}\n"
                    "defaults:\n  - {family: mlp, lr: 0.5}\n")
    with pytest.raises(AutomlError, match=r"defaults\[0\].lr = 0.5 is outside its range"):
        load_pipeline(str(path))


def test_a_pipeline_with_an_unknown_key_names_the_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("numeric: quantile\ntrails: 3\nspace: {family: {choice: [mlp]}}\n")
    with pytest.raises(AutomlError, match=r"mine.yaml: unknown key 'trails'; expected one of numeric, trials"):
        load_pipeline(str(path))


def test_a_name_with_two_ranges_is_refused(tmp_path):
    path = tmp_path / "clash.yaml"
    path.write_text("space: {family: {choice: [mlp, resnet]}}\nwhen:\n  mlp: {width: {int: [8, 16]}}\n"
                    "  resnet: {width: {int: [8, 32]}}\n")
    with pytest.raises(AutomlError, match="one range everywhere"):
        load_pipeline(str(path))


def test_a_passed_deadline_stops_training_inside_the_first_epoch():
    # Slow epochs (wide data, attention over many columns) must not overrun the budget by a
    # whole epoch: the deadline is checked after every group of mini-batches, then Lightning
    # validates once and stops.
    class Steps(Callback):  # counts Lightning's batches: each one is a group of 8 mini-batches
        steps = 0

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.steps += 1

    problem, folds = small_problem("binary", n=4000)
    params = {"family": "mlp", "optimizer": "adam", "lr": 1e-3, "batch_size": 8, "depth": 1, "width": 8}
    per_epoch = len(folds[0].train_rows) // (8 * 8)
    early, full = Steps(), Steps()
    fit = fit_fold(problem, folds[0], params, max_epochs=5, patience=5, deadline=time.monotonic(), callbacks=[early])
    assert 0 < early.steps < per_epoch / 4 and len(fit.curve) == 1  # a few groups, then one validation
    fit_fold(problem, folds[0], params, max_epochs=1, patience=5, callbacks=[full])
    assert full.steps >= per_epoch


def test_a_search_whose_trials_all_fail_for_one_reason_stops(tmp_path, caplog):
    problem, folds = small_problem("regression")
    space = {**tiny().space, "optimizer": {"choice": ["sgd"]}, "lr": {"choice": [1e12]}, "schedule": {"choice": ["none"]}}
    study = search(problem, folds, tiny(space=space, pruner="none"), tmp_path, trials=50, deadline=None)
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 10  # not 50: the same failure ten times stops it
    assert "the last 10 trials all failed" in caplog.text and "diverged" in caplog.text


def test_every_search_process_ranks_trials_on_the_same_row_sample(tmp_path, monkeypatch):
    """On a large table the search trains on a row sample; processes and workers with their own
    seeds must sample the same rows, or their trials' scores would not be comparable."""
    from automl import search as search_module

    monkeypatch.setattr(search_module, "SEARCH_ROWS", 100)
    monkeypatch.setattr(search_module, "VALID_ROWS", 50)
    problem, folds = small_problem("binary", n=400)
    one, other = (Objective(problem, folds, tiny(), tmp_path, device="cpu", precision="32-true", deadline=None, seed=s)
                  for s in (1, 2))
    assert one.sampled and len(one.fold.train_rows) == 100 and len(one.fold.valid_rows) == 50
    assert (one.fold.train_rows == other.fold.train_rows).all() and (one.fold.valid_rows == other.fold.valid_rows).all()


def test_a_worker_that_loses_the_race_to_create_the_tables_tries_again(tmp_path, monkeypatch):
    """Workers starting together on an empty PostgreSQL database: the loser's CREATE TABLE fails with
    "relation ... already exists" (psycopg2's DuplicateTable); the tables exist then, so it opens them."""
    import sqlalchemy.exc

    real, calls = optuna.storages.RDBStorage, []

    def racing(url, **kw):
        calls.append(url)
        if len(calls) == 1:
            raise sqlalchemy.exc.ProgrammingError("CREATE TABLE alembic_version", {},
                                                  Exception('relation "alembic_version" already exists'))
        return real(url, **kw)

    monkeypatch.setattr(optuna.storages, "RDBStorage", racing)
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    assert open_storage(f"sqlite:///{tmp_path / 'study.db'}") is not None and len(calls) == 2
    calls.clear()
    monkeypatch.setattr(optuna.storages, "RDBStorage", lambda url, **kw: (_ for _ in ()).throw(
        sqlalchemy.exc.ProgrammingError("SELECT", {}, Exception("permission denied for table studies"))))
    with pytest.raises(AutomlError, match="cannot open it as an Optuna storage"):
        open_storage(f"sqlite:///{tmp_path / 'study.db'}")


def test_a_completion_is_planned_whole_or_not_at_all():
    """A completion trains every row of every fold for the epochs its trial ran, or it is not made: a CV row
    mixing one trained fold with stubs would describe no model that predicts the test."""
    from types import SimpleNamespace

    from automl.search import _completion_plan, completion_seconds

    problem, folds = small_problem("binary", n=20_000, k=5)
    rows = max(len(f.train_rows) for f in folds[1:])
    # the search trained fold 0 on `rows` rows for 10 epochs in 10 s: one epoch of the 4 other folds costs 4 s
    # (in batches of 64: an epoch's 256 steps cover every row)
    trial = SimpleNamespace(number=0, params={"batch_size": 64},
                            user_attrs={"rows": rows, "seconds": 10.0, "epochs": [10], "predict_per_row": 0.0, "batch": 64})
    assert _completion_plan(trial, problem, folds[1:], None, 12) == 12  # no deadline: as the recipe says
    assert _completion_plan(trial, problem, folds[1:], 41.0, 12) == 12  # the 10 epochs of 4 folds fit
    assert _completion_plan(trial, problem, folds[1:], 39.0, 12) == 0  # they do not: not made, no fewer epochs
    # searched on a hundredth of the rows: an epoch of every row costs a hundred times more
    small = SimpleNamespace(number=0, params=trial.params, user_attrs={**trial.user_attrs, "rows": rows // 100})
    assert _completion_plan(small, problem, folds[1:], 41.0, 12) == 0
    # its cost: the 10 epochs of the 5 folds (the search's fold was a sample: trained again) and the predictions
    assert completion_seconds(small, problem, folds) == pytest.approx(
        sum(10 * 10 / 10 * len(f.train_rows) / (rows // 100) for f in folds))
    slow = SimpleNamespace(number=0, params=trial.params, user_attrs={**trial.user_attrs, "predict_per_row": 1e-3})
    assert completion_seconds(slow, problem, folds) == pytest.approx(
        10 * 4 + 1e-3 * (len(problem.y) - len(folds[0].valid_rows) + 4 * len(problem.test)))


def test_a_completion_the_clock_cuts_before_its_trials_best_epoch_is_not_made(tmp_path, monkeypatch):
    import automl.search
    from automl.train import FoldFit

    problem, folds = small_problem("binary")
    study = search(problem, folds, tiny(), tmp_path, trials=2, deadline=None)
    best = copy.deepcopy(best_trials(study, 1)[0])
    best.user_attrs["curve"] = [0.6, 0.7, 0.8]  # the trial was best at its 3rd epoch
    rising = [0.5 + 0.01 * e for e in range(30)]  # still improving: early stopping never ended it

    def cut(problem, folds, params, **options):  # as if the clock stopped every fold after one epoch
        return [FoldFit(np.zeros(problem.pred_shape(len(f.valid_rows))), np.zeros(problem.pred_shape(len(problem.test))),
                        1, 0.5, rising[:1], 0.0, 64) for f in folds]

    monkeypatch.setattr(automl.search, "fit_folds", cut)
    monkeypatch.setattr(automl.search, "best_trials", lambda s, n: [best])
    assert complete(study, problem, folds, tiny(), tmp_path, n=1, deadline=time.monotonic() + 60, device="cpu",
                    precision="32-true", seed=0) == []
    assert not (tmp_path / "trials" / str(best.number) / "oof.npy").is_file()
    # a fold that early-stopped (its patience past its best) is whole, however few its epochs
    assert not automl.search._cut(problem, [0.9, 0.8, 0.7, 0.6], 30, 3, needed=20)
    assert automl.search._cut(problem, rising[:4], 30, 3, needed=20)
    assert not automl.search._cut(problem, rising[:4], 4, 3, needed=20)  # the recipe's last epoch


def test_the_search_sample_follows_the_time_a_trial_has(monkeypatch):
    """Above SEARCH_ROWS training rows, the search's sample holds the rows one trial can train on in its
    share of the search, at the pace a timed probe measures: more time, more rows, every row at most."""
    import automl.search as search_module
    from automl.pipeline import load_pipeline
    from automl.search import search_fold, search_rows
    from automl.train import rows_per_second

    problem, folds = small_problem("binary", n=3_000, k=5)
    recipe = load_pipeline("tabular")
    monkeypatch.setattr(search_module, "SEARCH_ROWS", 100)
    rows = len(folds[0].train_rows)
    pace = rows_per_second(problem, folds[0], recipe.defaults[0], 128)
    assert pace > 1_000  # rows a second of a small mlp, on any machine
    assert search_rows(problem, folds, recipe, None) == 100  # unbounded: the fixed sample
    assert search_rows(problem, folds, recipe, 1e-6) == 100  # no time: the least sample
    assert search_rows(problem, folds, recipe, 1e6) == rows  # all the time in the world: every row
    monkeypatch.setattr(search_module, "rows_per_second", lambda *args, **kwargs: 1_000.0)
    assert search_rows(problem, folds, recipe, 10.0) == int(1_000 * recipe.trial_share * 10.0)
    fold, sampled = search_fold(folds, search_rows(problem, folds, recipe, 10.0))
    assert sampled and len(fold.train_rows) == int(1_000 * recipe.trial_share * 10.0)


def test_the_search_stops_early_enough_to_complete_its_best_trials(tmp_path):
    """Once three trials are scored, the search stops when what is left is what completing them takes, as the
    completing processes take them in turn."""
    import optuna

    from automl.search import _completion_due

    problem, folds = small_problem("binary", n=2_000, k=5)
    study = optuna.create_study(direction="maximize")
    for i in range(3):
        study.add_trial(optuna.trial.create_trial(
            params={"batch_size": 2}, distributions={"batch_size": optuna.distributions.CategoricalDistribution([2])},
            value=0.7 + i / 100, user_attrs={"rows": 1_000, "seconds": 10.0, "epochs": [10], "batch": 2}))
    # each takes 50 s to complete (the 10 epochs its search ran, 1 s an epoch, on 5 folds: the search's was a
    # sample); two processes take them in turn, one does two: 100 s
    assert not _completion_due(study, problem, folds, time.monotonic() + 110, completers=2)
    assert _completion_due(study, problem, folds, time.monotonic() + 90, completers=2)
    assert _completion_due(study, problem, folds, time.monotonic() + 140, completers=1)  # one process: 150 s
    # one each: 50 s, and the cheapest with a margin (1.2 x 50 s) after one more trial (1.5 x 10 s): 75 s
    assert not _completion_due(study, problem, folds, time.monotonic() + 80, completers=3)
    assert _completion_due(study, problem, folds, time.monotonic() + 70, completers=3)
    # the best trial is too slow to predict every fold: the three cheapest of the best nine decide
    study.add_trial(optuna.trial.create_trial(
        params={"batch_size": 2}, distributions={"batch_size": optuna.distributions.CategoricalDistribution([2])},
        value=0.9, user_attrs={"rows": 1_000, "seconds": 10.0, "epochs": [10], "batch": 2, "predict_per_row": 1.0}))
    assert not _completion_due(study, problem, folds, time.monotonic() + 110, completers=2)
    fewer = optuna.create_study(direction="maximize")
    fewer.add_trial(study.trials[0])  # one trial so far (a CNN's take long): it must stay completable (50 s)
    assert not _completion_due(fewer, problem, folds, time.monotonic() + 80, completers=1)
    assert _completion_due(fewer, problem, folds, time.monotonic() + 45, completers=1)
    # one more trial (30 s, and a half more) would leave too little for even the cheapest completion (150 s,
    # and a fifth more), though the three fit the time left now (one each in three processes: 150 s of 160)
    slow = optuna.create_study(direction="maximize")
    for i in range(3):
        slow.add_trial(optuna.trial.create_trial(
            params={"batch_size": 2}, distributions={"batch_size": optuna.distributions.CategoricalDistribution([2])},
            value=0.7 + i / 100, user_attrs={"rows": 1_000, "seconds": 30.0, "epochs": [30], "batch": 2}))
    assert _completion_due(slow, problem, folds, time.monotonic() + 160, completers=3)
    assert not _completion_due(slow, problem, folds, time.monotonic() + 230, completers=3)
    assert not _completion_due(optuna.create_study(), problem, folds, time.monotonic() + 1, completers=1)


def test_a_trial_whose_worker_died_is_failed_without_waiting_for_stale_heartbeats(monkeypatch):
    from automl import search

    study = optuna.create_study()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    here = socket.gethostname()
    workers = {"dead": f"{here}:{dead.pid}", "alive": f"{here}:{os.getpid()}", "elsewhere": f"other-host:{dead.pid}"}
    trials = {}
    for name, worker in [*workers.items(), ("unstarted", None)]:
        trials[name] = study.ask()
        if worker:
            trials[name].set_user_attr("worker", worker)
        if name == "dead":
            trials[name].suggest_float("lr", 1e-4, 1e-2)
    search._fail_dead(study)
    # just taken, a trial may still name the dead worker it was retried from: its worker is given HEARTBEAT seconds
    assert study.trials[trials["dead"].number].state == TrialState.RUNNING
    monkeypatch.setattr(search, "HEARTBEAT", -1.0)  # every running trial is past that
    search._fail_dead(study)
    states = {name: study.trials[t.number].state for name, t in trials.items()}
    # a local worker that is gone: failed at once; another machine's is left to its heartbeats; a trial no
    # worker took yet is given GRACE seconds to be taken
    assert states == {"dead": TrialState.FAIL, "alive": TrialState.RUNNING, "elsewhere": TrialState.RUNNING,
                      "unstarted": TrialState.RUNNING}
    retried = study.get_trials(states=(TrialState.WAITING,))  # and queued again with its parameters, as Optuna's retry
    assert [t.params for t in retried] == [study.trials[trials["dead"].number].params]
    assert retried[0].system_attrs["failed_trial"] == trials["dead"].number
    monkeypatch.setattr(search, "GRACE", -1.0)  # every running trial is past its grace period
    search._fail_dead(study)
    assert study.trials[trials["unstarted"].number].state == TrialState.FAIL
    assert len(study.get_trials(states=(TrialState.WAITING,))) == 1  # never started: nothing to retry


QUICK_DEFAULT = {"family": "mlp", "optimizer": "adamw", "lr": 0.003, "weight_decay": 1e-5, "batch_size": 64,
                 "schedule": "cosine", "depth": 1, "width": 16, "activation": "relu", "norm": "none", "dropout": 0.0}


def test_the_networks_hand_their_time_to_the_trees_when_their_defaults_do_not_pay(tmp_path):
    """Once the recipe's known-strong defaults are scored on the search fold, the search ends where the best of
    them neither comes level with the best baseline there nor lifts a blend with it; the decision is kept in the
    study for every process that shares it."""
    from automl.search import Reference

    problem, folds = small_problem("regression")
    recipe = tiny(defaults=[QUICK_DEFAULT])
    perfect = Reference("lightgbm", problem.y.astype(float))  # every row right: nothing a network adds can help
    study = search(problem, folds, recipe, tmp_path / "behind", trials=4, deadline=None, reference=perfect)
    assert len(study.trials) == 1 and "the rest of their time went to the boosted trees" in study.user_attrs["handoff"]
    assert "against lightgbm's 0" in study.user_attrs["handoff"]
    constant = Reference("linear", np.full(len(problem.y), float(problem.y.mean())))  # any network lifts a blend with it
    study = search(problem, folds, recipe, tmp_path / "ahead", trials=3, deadline=None, reference=constant)
    assert len(study.trials) == 3 and study.user_attrs["handoff"] == ""
    study = search(problem, folds, recipe, tmp_path / "none", trials=2, deadline=None)  # no tree to give it to
    assert len(study.trials) == 2 and "handoff" not in study.user_attrs
