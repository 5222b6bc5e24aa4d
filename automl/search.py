"""The Optuna search over networks, scored on the run's folds with the competition metric.

One study per run, stored in SQLite in the run directory unless `--storage URL` names
another Optuna storage; the same run name resumes it, and any number of processes can
share it. A trial suggests parameters from the pipeline recipe, trains one network per
fold (pruning on each epoch of the first fold, then on the running mean after each
fold), and returns the out-of-fold score; its fold scores, epochs, seconds and device
are stored with it. The predictions of the best few trials are kept for blending.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import socket
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import optuna
import sqlalchemy.exc
from optuna.trial import TrialState
from optuna_integration import PyTorchLightningPruningCallback

from automl.baselines import CVResult, finish
from automl.errors import AutomlError
from automl.folds import Fold, Split
from automl.io import write_npy
from automl.metrics import score
from automl.pipeline import Pipeline, suggest
from automl.problem import Problem
from automl.train import fit_fold

optuna.logging.set_verbosity(optuna.logging.ERROR)  # failures are counted and stored with their reason
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
HEARTBEAT, GRACE = 5, 20  # seconds: a worker silent for GRACE seconds is taken for dead
# Failures that belong to one trial's settings, not to the program: recorded, search goes on.
TRIAL_FAILURES = (FloatingPointError, ValueError, RuntimeError)


class StrictPruning(PyTorchLightningPruningCallback):
    """The optuna-integration callback, but a missing metric is an error, not a warning
    (otherwise pruning silently never happens)."""

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking and self.monitor not in trainer.callback_metrics:
            raise RuntimeError(f"pruning monitors {self.monitor!r}, which the module never logged")
        super().on_validation_end(trainer, pl_module)


def storage_url(run_dir: Path, storage: str | None) -> str:
    """`None` means SQLite in the run directory; anything else is passed to Optuna."""
    if storage:
        return storage
    run_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(run_dir / 'study.db').resolve()}"


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """An RDB storage with heartbeats: a killed worker's trial is failed and retried."""
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(
                url, engine_kwargs=engine, heartbeat_interval=HEARTBEAT, grace_period=GRACE,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2))
        except sqlalchemy.exc.IntegrityError:
            # Workers that start together on an empty database race to create Optuna's
            # tables; the loser sees a duplicate key. The tables exist now: try again.
            time.sleep(0.5 + random.random() * (attempt + 1))
        except (ValueError, ImportError, optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError) as exc:
            detail = str(exc).splitlines()[0][:200]
            raise AutomlError(f"--storage {_redact(url)}: cannot open it as an Optuna storage ({detail})") from exc
    raise AutomlError(f"--storage {_redact(url)}: could not create Optuna's tables; try again")


def _redact(url: str) -> str:
    """A storage URL without its password, for messages."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def make_study(storage: optuna.storages.BaseStorage, name: str, pipeline: Pipeline, greater_is_better: bool,
               seed: int, n_folds: int, features_hash: str) -> optuna.Study:
    """Create or join the study; refuse one made from other data, folds or preprocessing."""
    if pipeline.pruner == "median":
        pruner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)
    elif pipeline.pruner == "hyperband":
        pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=pipeline.max_epochs + n_folds)
    else:
        pruner = optuna.pruners.NopPruner()
    sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, n_startup_trials=8)
    study = optuna.create_study(storage=storage, study_name=name, load_if_exists=True, sampler=sampler, pruner=pruner,
                                direction="maximize" if greater_is_better else "minimize")
    known = study.user_attrs.get("features_sha256")
    if known is None:
        study.set_user_attr("features_sha256", features_hash)
    elif known != features_hash:
        raise AutomlError(f"study {name!r} was made from different data, folds or preprocessing "
                          f"({known[:12]} here {features_hash[:12]}); use the same data, --folds and --seed, "
                          "or another --name")
    if not study.trials:  # a new study starts from sensible settings: a useful network comes early
        for default in pipeline.defaults:
            study.enqueue_trial(default, skip_if_exists=True)
    return study


class Surplus(Exception):
    """Another worker already started the last trial the study needs."""


class Objective:
    """Train one network per fold with a trial's parameters; return the OOF score."""

    def __init__(self, problem: Problem, folds: list[Fold], pipeline: Pipeline, run_dir: Path, *,
                 device: str, precision: str, deadline: float | None, seed: int, trials: int | None = None):
        self.problem, self.folds, self.pipeline, self.run_dir = problem, folds, pipeline, run_dir
        self.device, self.precision, self.deadline, self.seed = device, precision, deadline, seed
        self.budget = None if deadline is None else max(deadline - time.monotonic(), 1.0)
        self.trials = trials

    def __call__(self, trial: optuna.trial.BaseTrial) -> float:
        trial.set_user_attr("device", self.device)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        if self.trials is not None and isinstance(trial, optuna.Trial):
            ahead = trial.study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))
            if sum(t.number < trial.number for t in ahead) >= self.trials:
                trial.set_user_attr("fail_reason", "not needed: the study already had its trials")
                raise Surplus("the study already has its trials")
        params = suggest(trial, self.pipeline)
        start = time.perf_counter()
        try:
            return self._run(trial, params, start)
        except TRIAL_FAILURES as exc:
            trial.set_user_attr("fail_reason", f"{exc.__class__.__name__}: {exc}"[:500])
            raise

    def _run(self, trial, params: dict, start: float) -> float:
        problem, pipeline = self.problem, self.pipeline
        k = problem.n_classes
        oof = np.zeros((len(problem.y), k) if k else len(problem.y))
        test = np.zeros((len(problem.test), k) if k else len(problem.test))
        scores, epochs = [], []
        deadline, cap = self.deadline, None
        if deadline is not None:  # no trial may take more than its share of the run's time
            cap = time.monotonic() + pipeline.trial_share * self.budget
            deadline = min(deadline, cap)
        for i, fold in enumerate(self.folds):
            prune = [StrictPruning(trial, "val_score")] if i == 0 and isinstance(trial, optuna.Trial) else []
            fit = fit_fold(problem, fold, params, device=self.device, max_epochs=pipeline.max_epochs,
                           patience=pipeline.patience, precision=self.precision, callbacks=prune,
                           deadline=deadline, seed=self.seed + i)
            if deadline is not None and time.monotonic() >= deadline and (i < len(self.folds) - 1 or not fit.curve):
                why = "time budget reached" if time.monotonic() >= self.deadline else "trial exceeded its share of the budget"
                trial.set_user_attr("stopped", why)
                raise optuna.TrialPruned(f"{why} before every fold was trained")
            oof[fold.valid_rows], test = fit.valid, test + fit.test / len(self.folds)
            scores.append(score(problem.metric, problem.y[fold.valid_rows], fit.valid))
            epochs.append(fit.epochs)
            if i == 0:
                trial.set_user_attr("curve", fit.curve)
            trial.set_user_attr("fold_scores", scores)
            trial.set_user_attr("epochs", epochs)
            if isinstance(trial, optuna.Trial):
                trial.report(float(np.mean(scores)), step=pipeline.max_epochs + i)
                if i < len(self.folds) - 1 and trial.should_prune():
                    raise optuna.TrialPruned(f"pruned after fold {i + 1}")
        result = finish(f"trial {trial.number}", problem, self.folds, oof, test, time.perf_counter() - start)
        trial.set_user_attr("fold_scores", result.fold_scores)
        trial.set_user_attr("threshold", result.threshold)
        trial.set_user_attr("seconds", result.seconds)
        folder = self.run_dir / "trials" / str(trial.number)
        write_npy(folder / "oof.npy", oof)
        write_npy(folder / "test.npy", test)
        return result.mean


def search(problem: Problem, folds: list[Fold], pipeline: Pipeline, run_dir: Path, *, trials: int,
           deadline: float | None, storage: str | None = None, study_name: str = "networks", device: str = "cpu",
           precision: str = "32-true", seed: int = 0, features_hash: str = "",
           on_trial: Callable[[optuna.Study, optuna.trial.FrozenTrial | None], None] | None = None) -> optuna.Study:
    """Run trials until `trials` have finished in the study (across resumes and workers) or time is up.

    Each worker takes one trial at a time. Before each it fails stale trials (their
    worker stopped sending heartbeats; they are retried), stops once enough trials have
    finished, and waits while the remaining ones run elsewhere.
    """
    store = open_storage(storage_url(run_dir, storage))
    study = make_study(store, study_name, pipeline, problem.metric.greater_is_better, seed, len(folds), features_hash)
    objective = Objective(problem, folds, pipeline, run_dir, device=device, precision=precision, deadline=deadline,
                          seed=seed, trials=trials)
    callbacks = [_prune_files(run_dir, pipeline.keep_best)] + ([on_trial] if on_trial else [])
    while deadline is None or time.monotonic() < deadline:
        optuna.storages.fail_stale_trials(study)
        states = [t.state for t in study.get_trials(deepcopy=False)]
        finished = sum(state in FINISHED for state in states)
        if finished >= trials:
            break
        if finished + states.count(TrialState.RUNNING) >= trials:
            time.sleep(HEARTBEAT)  # the last trials run in other workers; wait for them or their failure
            continue
        timeout = None if deadline is None else deadline - time.monotonic()
        study.optimize(objective, n_trials=1, timeout=timeout, catch=(*TRIAL_FAILURES, Surplus), callbacks=callbacks,
                       gc_after_trial=False)
    return study


def _prune_files(run_dir: Path, keep: int):
    """Keep the predictions of the `keep` best finished trials only."""

    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        best = {t.number for t in best_trials(study, keep)}
        for folder in (run_dir / "trials").glob("*"):
            if folder.name.isdigit() and int(folder.name) not in best:
                shutil.rmtree(folder, ignore_errors=True)

    return callback


def best_trials(study: optuna.Study, n: int) -> list[optuna.trial.FrozenTrial]:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    reverse = study.direction == optuna.study.StudyDirection.MAXIMIZE
    return sorted(complete, key=lambda t: t.value, reverse=reverse)[:n]


def network_results(study: optuna.Study, problem: Problem, folds: list[Split], run_dir: Path, n: int) -> list[CVResult]:
    """The best trials as leaderboard entries, scored from the predictions on disk."""
    results = []
    for trial in best_trials(study, n):
        folder = run_dir / "trials" / str(trial.number)
        if not (folder / "oof.npy").is_file():
            continue
        info = {"trial": trial.number, "params": trial.params, "worker": trial.user_attrs.get("worker"),
                "note": ", ".join(f"{k}={_short(v)}" for k, v in trial.params.items() if k != "family")}
        results.append(finish(f"{trial.params['family']} #{trial.number}", problem, folds, np.load(folder / "oof.npy"),
                              np.load(folder / "test.npy"), trial.user_attrs.get("seconds", 0.0), "network", info))
    return results


def summary(study: optuna.Study) -> dict[str, int]:
    counts = {state.name.lower(): 0 for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    for trial in study.get_trials(deepcopy=False):
        if trial.state.name.lower() in counts:
            counts[trial.state.name.lower()] += 1
    return counts


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
