"""The Optuna search over networks, scored on the run's folds with the competition metric.

One study per run, stored in SQLite in the run directory unless `--storage URL` names
another Optuna storage; the same run name resumes it, and any number of processes can
share it. A trial suggests parameters from the pipeline recipe and trains one network on
the first fold only (a row sample of it on large tables), pruned per epoch; its score
ranks it. `complete` then trains the best few trials on every fold, so they get a
cross-validated score for the leaderboard and out-of-fold predictions for the blend.
The one-fold score is the search's; the leaderboard shows only cross-validated ones.
"""

from __future__ import annotations

import logging
import os
import random
import re
import shutil
import socket
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import optuna
import sqlalchemy.event
import sqlalchemy.exc
from optuna.trial import TrialState
from optuna_integration import PyTorchLightningPruningCallback

from automl.baselines import CVResult, finish
from automl.budget import release_memory
from automl.errors import AutomlError
from automl.folds import Fold, Split, take, weights_for_test
from automl.io import write_npy, write_npz
from automl.metrics import score
from automl.models.tabular import TABULAR
from automl.parallel import fit_folds
from automl.pipeline import Pipeline, suggest
from automl.problem import Problem
from automl.train import (
    MAX_STEPS_PER_EPOCH,
    VALID_ROWS,
    batch_size_for,
    column_tokens,
    fit_fold,
    predict_seconds_per_row,
    resolve_device,
    rows_per_second,
)

log = logging.getLogger("automl")
optuna.logging.set_verbosity(optuna.logging.ERROR)  # failures are counted and stored with their reason
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
HEARTBEAT, GRACE = 5, 20  # seconds: a worker silent for GRACE seconds is taken for dead
RETRY = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2)  # a dead worker's trial runs again, twice at most
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
            storage = optuna.storages.RDBStorage(
                url, engine_kwargs=engine, heartbeat_interval=HEARTBEAT, grace_period=GRACE,
                heartbeat_stale_trial_callback=RETRY)
            if url.startswith("sqlite"):
                _serialized(storage.engine)
            return storage
        except (ValueError, ImportError, optuna.exceptions.StorageInternalError, sqlalchemy.exc.SQLAlchemyError) as exc:
            # Workers that start together on an empty database race to create Optuna's tables;
            # the loser sees a duplicate key, or on PostgreSQL a table that "already exists".
            # The tables exist now: try again.
            if isinstance(exc, sqlalchemy.exc.IntegrityError) or (
                    isinstance(exc, sqlalchemy.exc.ProgrammingError) and "already exists" in str(exc)):
                time.sleep(0.5 + random.random() * (attempt + 1))
                continue
            detail = str(exc).splitlines()[0][:200]
            raise AutomlError(f"--storage {_redact(url)}: cannot open it as an Optuna storage ({detail})") from exc
    raise AutomlError(f"--storage {_redact(url)}: could not create Optuna's tables; try again")


def _serialized(engine: sqlalchemy.engine.Engine) -> None:
    """Make every SQLite transaction take the database's write lock when it begins. Python's sqlite3
    starts no transaction before a SELECT, so two processes can both read that a waiting trial
    (an enqueued default) is waiting, and both take it. SQLAlchemy's recipe for SQLite's
    serializable isolation; the pooled connections opened before it are closed."""

    @sqlalchemy.event.listens_for(engine, "connect")
    def _connect(connection, record) -> None:
        connection.isolation_level = None  # sqlite3's own transaction handling off: the BEGIN below decides

    @sqlalchemy.event.listens_for(engine, "begin")
    def _begin(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()


def _redact(url: str) -> str:
    """A storage URL without its password, for messages."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def make_study(storage: optuna.storages.BaseStorage, name: str, pipeline: Pipeline, greater_is_better: bool,
               seed: int, n_folds: int, features_hash: str) -> optuna.Study:
    """Create or join the study; refuse one made from other data, folds or preprocessing."""
    if pipeline.pruner == "median":
        pruner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)
    elif pipeline.pruner == "hyperband":
        pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=pipeline.max_epochs)
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


DEFAULT_SHARE = 2  # an enqueued default may take this many times a trial's share of the search time
SLOWEST_PREDICT = 1e-3  # seconds a row, more than any searched network takes to predict on a CPU (FT-Transformer: 0.35 ms)


class Surplus(Exception):
    """Another worker already started the last trial the study needs."""


SEARCH_ROWS = 100_000  # the one-fold search's row sample: at least this many rows, more where a trial's time trains on more


def search_rows(problem: Problem, folds: list[Fold], pipeline: Pipeline, seconds: float | None, *,
                device: str = "cpu") -> int:
    """Training rows of the search's sample: as many as one trial can train on within its share of
    the search's `seconds` (the recipe's `trial_share`) at the pace a timed probe of the recipe's
    first network measures (with this process's share of torch's threads, as each search process
    has), in the batches the sample's rows call for (`batch_size_for`: the batch size follows the
    rows); SEARCH_ROWS at least, every row where they fit. Unbounded: SEARCH_ROWS."""
    fold = folds[search_index(folds)]
    n = len(fold.train_rows)
    if n <= SEARCH_ROWS or seconds is None:
        return min(n, SEARCH_ROWS)
    params = pipeline.defaults[0] if pipeline.defaults else {"family": "mlp"}
    try:
        pace = rows_per_second(problem, fold, params, batch_size_for(params, SEARCH_ROWS), device)
    except (RuntimeError, ValueError, TypeError) as exc:  # a recipe whose first network cannot be probed
        log.info("search: timing a probe of %s failed (%s); searching on %d rows", params.get("family"), exc, SEARCH_ROWS)
        return SEARCH_ROWS
    rows = int(min(n, max(SEARCH_ROWS, pace * pipeline.trial_share * seconds)))
    log.info("search: %s trains about %.0f rows a second in a search process; a trial's %.0fs share of the search trains on "
             "%d of the fold's %d rows", params.get("family", "mlp"), pace, pipeline.trial_share * seconds, rows, n)
    return rows


EXPECTED_EPOCHS = 15  # epochs a tabular network trains before early stopping ends it, as a rule (half the recipe's 30)


def network_need(problem: Problem, folds: list[Fold], pipeline: Pipeline, device: str = "cpu") -> float | None:
    """Seconds the networks need to be worth their place: each of the recipe's enqueued known-strong
    configurations trained on the search fold, and MIN_COMPLETED of them completed on the other folds,
    EXPECTED_EPOCHS epochs each, at the pace a timed probe of each configuration measures (a few optimizer
    steps, a fraction of a second). None without defaults, for other than tables' families (images, text: their
    recipes keep their share), or where one cannot be probed."""
    if not pipeline.defaults or any(d.get("family") not in TABULAR for d in pipeline.defaults):
        return None
    device = resolve_device(device)
    fold = folds[search_index(folds)]
    n, tokens = len(fold.train_rows), column_tokens(fold.train)
    epochs = []
    for params in pipeline.defaults:
        batch = batch_size_for(params, n, tokens, device)
        try:
            pace = rows_per_second(problem, fold, params, batch, device)
        except (RuntimeError, ValueError, TypeError) as exc:
            log.info("plan: timing a probe of %s failed (%s)", params.get("family"), exc)
            return None
        epochs.append(min(n, MAX_STEPS_PER_EPOCH * batch) / pace)  # an epoch is at most MAX_STEPS_PER_EPOCH steps
    if not epochs:
        return None
    completing = MIN_COMPLETED * (len(folds) - 1) * float(np.mean(sorted(epochs)[:MIN_COMPLETED]))
    return EXPECTED_EPOCHS * (sum(epochs) + completing)


def search_index(folds: list[Split]) -> int:
    """The fold the search trains on: the first; for an expanding window in time, the last (the most
    rows, the latest, the one whose model forecasts the test)."""
    return int(np.argmax(weights_for_test(folds)))


def search_fold(folds: list[Fold], rows: int | None = None) -> tuple[Fold, bool]:
    """The fold the search trains on, a sample of `rows` (SEARCH_ROWS) training rows on large tables; and whether
    it was sampled.

    The sample is the same in every process and on every machine that joins the study (its
    seed is fixed, not the worker's): trials are ranked on the same rows, and scored on the
    same validation rows. `automl run` makes it once, before its search processes fork: they
    share it."""
    fold, rows = folds[search_index(folds)], SEARCH_ROWS if rows is None else rows
    if len(fold.train_rows) <= rows:
        return fold, False
    rng = np.random.default_rng(0)
    train = np.sort(rng.choice(len(fold.train_rows), rows, replace=False))
    valid = np.sort(rng.choice(len(fold.valid_rows), min(len(fold.valid_rows), VALID_ROWS), replace=False))
    return Fold(fold.train_rows[train], fold.valid_rows[valid], take(fold.train, train), take(fold.valid, valid),
                take(fold.test, np.arange(0))), True


class Objective:
    """Train one network on the search fold with a trial's parameters; return its validation score.

    Ranking trials on one fold costs a k-th of cross-validating each; `complete` then
    trains the best few on every fold. A trial that reaches its cap (its share of the
    search time) is scored at its best epoch so far; one that the run's deadline stops
    is pruned.
    """

    def __init__(self, problem: Problem, folds: list[Fold], pipeline: Pipeline, run_dir: Path, *,
                 device: str, precision: str, deadline: float | None, seed: int, trials: int | None = None,
                 on: tuple[Fold, bool] | None = None, predict_limit: float | None = None):
        self.problem, self.folds, self.pipeline, self.run_dir = problem, folds, pipeline, run_dir
        self.predict_limit = predict_limit  # seconds a completion may spend predicting every fold
        self.device, self.precision, self.deadline, self.seed = device, precision, deadline, seed
        self.budget = None if deadline is None else max(deadline - time.monotonic(), 1.0)
        self.trials = trials
        self.fold, self.sampled = on or search_fold(folds)

    def __call__(self, trial: optuna.trial.BaseTrial) -> float:
        trial.set_user_attr("device", self.device)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        if self.trials is not None and isinstance(trial, optuna.Trial):
            ahead = trial.study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))
            if sum(t.number < trial.number for t in ahead) >= self.trials:
                trial.set_user_attr("fail_reason", "not needed: the study already had its trials")
                raise Surplus("the study already has its trials")
        start = time.perf_counter()
        try:
            return self._run(trial, suggest(trial, self.pipeline), start)
        except TRIAL_FAILURES as exc:
            trial.set_user_attr("fail_reason", f"{exc.__class__.__name__}: {exc}"[:500])
            raise

    def _run(self, trial, params: dict, start: float) -> float:
        problem, pipeline, fold = self.problem, self.pipeline, self.fold
        deadline = self.deadline
        if deadline is not None:  # no trial may take more than its share of the search's time
            # an enqueued known-strong configuration, twice that: it is worth training well (TabM's default on
            # s3e26's 6,300 rows took 20 s in one of two search processes, a 120 s run's share 7.5 s)
            share = pipeline.trial_share * (DEFAULT_SHARE if params in pipeline.defaults else 1)
            deadline = min(deadline, time.monotonic() + share * self.budget)
        rows = predicted(problem, self.folds)
        # a network too slow to ever be completed in this run's time (checked where a millisecond a row,
        # slower than any network here predicts, would not fit)
        if self.predict_limit is not None and rows * SLOWEST_PREDICT > self.predict_limit:
            predicting = predict_seconds_per_row(problem, fold, params, self.device) * rows
            if predicting > self.predict_limit:
                trial.set_user_attr("stopped", f"too slow for this table: predicting every fold would take about "
                                               f"{predicting:.0f}s, more than a completion could give it ({self.predict_limit:.0f}s)")
                raise optuna.TrialPruned(trial.user_attrs["stopped"])
        prune = [StrictPruning(trial, "val_score")] if isinstance(trial, optuna.Trial) else []
        fit = fit_fold(problem, fold, params, device=self.device, max_epochs=pipeline.max_epochs,
                       patience=pipeline.patience, precision=self.precision, callbacks=prune,
                       deadline=deadline, seed=self.seed, predict_test=not self.sampled, give_up=self.deadline)
        if self.deadline is not None and time.monotonic() >= self.deadline or not fit.curve:
            trial.set_user_attr("stopped", "time budget reached")
            raise optuna.TrialPruned("time budget reached before the trial's fold was trained")
        if deadline is not None and time.monotonic() >= deadline:
            trial.set_user_attr("stopped", "reached its share of the search time: scored at its best epoch so far")
        value = score(problem.metric, problem.y[fold.valid_rows], fit.valid)
        trial.set_user_attr("curve", fit.curve)
        trial.set_user_attr("epochs", [fit.epochs])
        trial.set_user_attr("rows", len(fold.train_rows))
        trial.set_user_attr("predict_per_row", fit.predict_per_row)
        trial.set_user_attr("batch", fit.batch)
        trial.set_user_attr("seconds", time.perf_counter() - start)
        # the search fold's predictions: reused when the trial is completed (not those of a row sample: its
        # validation rows are a sample too, and it predicts no test), and weighed against the baselines'
        write_npz(self.run_dir / "trials" / str(trial.number) / "searched.npz", valid=fit.valid, test=fit.test)
        return value


def complete(study: optuna.Study, problem: Problem, folds: list[Fold], pipeline: Pipeline, run_dir: Path, *,
             n: int, deadline: float | None, device: str, precision: str, seed: int,
             on_trial: Callable[[int], None] | None = None, part: tuple[int, int] = (0, 1)) -> list[CVResult]:
    """Train the `n` best one-fold trials on every fold: out-of-fold and test predictions for each
    (the next best in place of one that cannot be completed in time).

    `part` (p, P): this process is one of P completing together; it takes the p-th, (p+P)-th, ...
    of the ranked candidates, and its share of the `n`.

    Whatever ran where, the finishing run completes: folds whose predictions are not on
    this machine are trained here (all of them for a trial searched by another worker or
    on a row sample). Candidates are taken best first, each offered all the time left: one whose
    measured cost (the epochs its trial ran, on every row of every fold) does not fit it is left
    one-fold, and the next is tried. Time left once `n` are done completes further candidates.
    """
    results = []
    # the best first; one left one-fold (too slow to predict or train in time) makes way for the next
    index, parts = part
    candidates, n = best_trials(study, 3 * n)[index::parts], len(range(index, n, parts))
    for trial in candidates:
        # Past the n, time left over completes the next candidates too, where all their rows fit it:
        # more cross-validated networks for the leaderboard and the blend.
        extra = len(results) >= n
        if extra and deadline is None:
            break
        folder = run_dir / "trials" / str(trial.number)
        seconds = study.user_attrs.get(f"cv:{trial.number}", {}).get("completion_seconds", 0.0)
        if not (folder / "oof.npy").is_file():
            if on_trial:
                on_trial(trial.number)
            # The best first, each given what is left: it is made only where that holds what its trial trained
            # (measured), so a candidate too costly for the time left makes way for the next, cheaper one.
            share = None if deadline is None else deadline - time.monotonic()
            if share is not None and share <= 0:
                break
            done = _complete_one(trial, problem, folds, pipeline, folder, share, device, precision, seed)
            release_memory()
            if done is None:
                continue
            seconds, sampled, epochs = done
            study.set_user_attr(f"cv:{trial.number}", {"completion_seconds": seconds, "rows": sampled, "epochs": epochs})
        attrs = study.user_attrs.get(f"cv:{trial.number}", {})
        result = _cv_result(trial, problem, folds, folder, attrs)
        result.seconds += seconds  # the search's fold, then the others
        study.set_user_attr(f"cv:{trial.number}", attrs | {"fold_scores": result.fold_scores, "mean": result.mean})
        results.append(result)
    reverse = problem.metric.greater_is_better
    return sorted(results, key=lambda r: r.mean, reverse=reverse)


def _complete_one(trial, problem: Problem, folds: list[Fold], pipeline: Pipeline, folder: Path, share: float | None,
                  device: str, precision: str, seed: int) -> tuple[float, None, None] | None:
    """Seconds it took to train the trial's missing folds as its search trained its fold (every row, the
    recipe's epochs with early stopping on each fold's own validation rows); or None when it was not made:
    the share cannot hold what the trial trained (`_completion_plan`), or the clock stopped a fold before the
    epoch at which the trial was best. A completion is whole or it is not made: a cross-validated score that
    mixes one trained fold with cut ones would describe no model that predicts the test.

    The test is predicted by the fold models (by the last fold's alone on folds in time: the model its score
    describes forecasts from the nearest point to the test; a network refitted on every row for a fixed number
    of epochs would be a model no fold scored)."""
    oof, test = np.zeros(problem.pred_shape(len(problem.y))), np.zeros(problem.pred_shape(len(problem.test)))
    todo, weights = list(range(len(folds))), weights_for_test(folds)
    start = time.monotonic()
    searched, index = folder / "searched.npz", search_index(folds)
    if searched.is_file():  # the search's fold, trained on all its rows: reused
        first = np.load(searched)
        if len(first["valid"]) == len(folds[index].valid_rows) and len(first["test"]) == len(problem.test):
            oof[folds[index].valid_rows], test = first["valid"], test + weights[index] * first["test"]
            todo.remove(index)
    planned = _completion_plan(trial, problem, [folds[i] for i in todo], share, pipeline.max_epochs)
    if not planned:
        return None
    # the remaining folds in one call: trained together as one batched model where that is faster
    fits = fit_folds(problem, [folds[i] for i in todo], trial.params, device=device, max_epochs=planned,
                     patience=pipeline.patience, precision=precision, deadline=None if share is None else start + share,
                     seed=seed + len(folds) - len(todo), batch=trial.user_attrs.get("batch"))
    needed = _best_epoch(problem, trial.user_attrs.get("curve", []))
    for i, fit in zip(todo, fits, strict=True):
        if not fit.curve or _cut(problem, fit.curve, planned, pipeline.patience, needed):
            log.info("trial %d: the clock stopped fold %d after %d epochs, before the %d its trial was best at; "
                     "not completed (a completion is whole or not made)", trial.number, i + 1, len(fit.curve), needed)
            return None
        oof[folds[i].valid_rows] = fit.valid
        if weights[i]:
            test = test + weights[i] * fit.test
    write_npy(folder / "test.npy", test)
    write_npy(folder / "oof.npy", oof)  # written last: its presence means completed
    seconds = time.monotonic() - start
    log.info("trial %d: completed on %d more folds in %.1fs (epochs %s, every row)", trial.number, len(todo), seconds,
             [fit.epochs for fit in fits])
    return seconds, None, None


def _best_epoch(problem: Problem, curve: list[float]) -> int:
    """The epoch (from 1) at which a validation curve was best; 0 for no curve."""
    if not curve:
        return 0
    sign = 1 if problem.metric.greater_is_better else -1
    return int(np.argmax(sign * np.asarray(curve))) + 1


def _cut(problem: Problem, curve: list[float], max_epochs: int, patience: int, needed: int) -> bool:
    """Whether a fold's training ended on the clock before the epoch its trial was best at: neither early
    stopping (patience epochs past its best) nor the epochs' end stopped it."""
    stopped = len(curve) >= max_epochs or len(curve) - _best_epoch(problem, curve) >= patience
    return not stopped and len(curve) < needed


MIN_COMPLETED = 3  # trials the search leaves time to complete on every fold, as their measured costs say
COST_MARGIN = 1.2  # a completion's cost is estimated from its search's pace: the search keeps this margin for the best one


def predicted(problem: Problem, folds: list[Split]) -> int:
    """Rows a completion predicts on these folds: each one's validation rows and the whole test."""
    return sum(len(f.valid_rows) + len(problem.test) for f in folds)


def _epoch_rows(trial) -> int:
    """Rows one epoch trains on at most: MAX_STEPS_PER_EPOCH steps of the batch size the trial was searched
    with (a completion keeps it: the learning rate was tuned for it)."""
    return MAX_STEPS_PER_EPOCH * (trial.user_attrs.get("batch") or batch_size_for(trial.params, trial.user_attrs["rows"]))


def _epoch_seconds(trial, rows: int) -> float:
    """Seconds of one epoch of one fold on `rows` training rows, from the trial's search: past
    `_epoch_rows`, more rows cost nothing (an epoch is a fixed number of steps), they are only fresher."""
    searched, seconds = trial.user_attrs["rows"], trial.user_attrs["seconds"]
    ran = max(1, *trial.user_attrs.get("epochs", [1]))  # as early stopping or its time share left it
    cap = _epoch_rows(trial)
    return seconds / ran * min(rows, cap) / min(searched, cap)


def _completion_plan(trial, problem: Problem, folds: list[Fold], share: float | None, max_epochs: int) -> int:
    """The epochs a completion may train each fold for (early stopping ends it sooner): the recipe's, where
    the share holds what the trial's search trained (the epochs it ran, its best and its patience, on every
    row of each fold, and predicting every fold's validation and test rows); 0 where it does not: the
    completion is not made rather than cut short."""
    searched, seconds = trial.user_attrs.get("rows"), trial.user_attrs.get("seconds")
    if share is None or not searched or not seconds or not folds:
        return max_epochs
    needed = _needed_seconds(trial, problem, folds)
    if needed > share:
        log.info("trial %d: completing it as it was trained takes about %.0fs, more than its %.0fs; not completed",
                 trial.number, needed, share)
        return 0
    return max_epochs


def _needed_seconds(trial, problem: Problem, folds: list[Fold]) -> float:
    """Seconds to train `folds` as the trial's search trained its fold (the epochs it ran, every row) and to
    predict their validation and test rows, as fast as its search ran (the same processes share the machine)."""
    ran = max(1, *trial.user_attrs.get("epochs", [1]))  # as early stopping (or its share of the search) left it
    predicting = trial.user_attrs.get("predict_per_row", 0.0) * predicted(problem, folds)
    return predicting + ran * sum(_epoch_seconds(trial, len(f.train_rows)) for f in folds)


def completion_seconds(trial, problem: Problem, folds: list[Fold]) -> float:
    """About how long completing the trial on every fold takes: the folds it has no predictions for, each
    trained for the epochs its search ran on every row, and predicting their validation and test rows."""
    index = search_index(folds)
    reused = trial.user_attrs.get("rows") == len(folds[index].train_rows)  # searched on all its rows
    return _needed_seconds(trial, problem, [f for i, f in enumerate(folds) if not (reused and i == index)])


def _completion_due(study: optuna.Study, problem: Problem, folds: list[Fold], end: float, completers: int) -> bool:
    """Whether the search must stop now to leave `completers` processes the time to complete
    MIN_COMPLETED of its best trials by `end` (as many as have finished, when fewer): the cheapest
    MIN_COMPLETED to complete among the best 3 x MIN_COMPLETED (`complete` passes over the others).
    At 1,000,000 rows, completing a trial took as long as searching 3 to 20."""
    best = [t for t in best_trials(study, 3 * MIN_COMPLETED) if t.user_attrs.get("seconds") and t.user_attrs.get("rows")]
    if not best:  # with fewer than MIN_COMPLETED so far, those there are must stay completable (a CNN's are slow)
        return False
    costs = sorted(completion_seconds(t, problem, folds) for t in best)[:MIN_COMPLETED]
    needed = max(sum(costs[p::max(1, completers)]) for p in range(max(1, completers)))  # handed out in turn
    # and one more trial must not leave too little to complete even the cheapest of them: a search that stops
    # when three no longer fit may already be past the point where one fits
    # (the other processes' running trials end first too; the costs are estimates from the search's pace: a margin)
    trial = float(np.median([t.user_attrs["seconds"] for t in best]))
    if time.monotonic() + needed < end and time.monotonic() + 1.5 * trial + COST_MARGIN * costs[0] < end:
        return False
    log.info("search: stopped with %.0fs left, about what completing the best %d trials on every fold takes (%.0fs)",
             end - time.monotonic(), len(costs), needed)
    return True


def _cv_result(trial, problem: Problem, folds: list[Split], folder: Path, cv: dict) -> CVResult:
    """The completed trial as a leaderboard entry; `cv`: its completion's attributes in the study."""
    rows, epochs = cv.get("rows"), cv.get("epochs")  # set when the time left shortened the other folds' training
    shortened = [f"on {rows:,}-row samples" if rows else "", f"for {epochs} epochs at most" if epochs else ""]
    info = {"trial": trial.number, "params": trial.params, "worker": trial.user_attrs.get("worker"),
            "search_score": trial.value,
            "note": f"{len(folds)}-fold CV"
                    + (f" (other folds trained {' '.join(filter(None, shortened))}: the time left)" if any(shortened) else "")
                    + f"; searched on one fold: {trial.value:.5g}; "
                    + ", ".join(f"{k}={_short(v)}" for k, v in trial.params.items() if k != "family")}
    return finish(f"{trial.params['family']} #{trial.number}", problem, folds, np.load(folder / "oof.npy"),
                  np.load(folder / "test.npy"), trial.user_attrs.get("seconds", 0.0), "network", info)


@dataclass(frozen=True)
class Reference:
    """The best baseline, against which the networks' known-strong defaults are weighed on the search fold:
    its name and out-of-fold predictions (every row's)."""

    name: str
    oof: np.ndarray


BLEND_WEIGHTS = (0.2, 0.35, 0.5)  # a network's share in a two-model blend with the best baseline, as tried on one fold


def handed_off(study: optuna.Study, problem: Problem, pipeline: Pipeline, fold: Fold, reference: Reference | None,
               run_dir: Path) -> str:
    """Why the networks hand the rest of their time to the boosted trees ('' while they keep it): decided once,
    when the recipe's known-strong defaults are scored on the search fold, and kept in the study for every
    process that shares it. The networks keep their time where the best of them is level with the best baseline
    on that fold or ahead, or where a blend of the two (a fifth to a half of the network) scores better there
    than the baseline alone; elsewhere it goes to the GBDTs the clock stopped (the caller passes a `reference`
    only when there are such). FLAML's cost-aware choice is the model: time goes where it buys the most."""
    if "handoff" in study.user_attrs:
        return study.user_attrs["handoff"]
    if reference is None or not pipeline.defaults:
        return ""
    finished = study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.FAIL))
    if len(finished) < len(pipeline.defaults):
        return ""
    metric, y = problem.metric, problem.y[fold.valid_rows]
    sign = 1.0 if metric.greater_is_better else -1.0
    theirs = score(metric, y, reference.oof[fold.valid_rows])
    best = best_trials(study, 1)
    path = run_dir / "trials" / str(best[0].number) / "searched.npz" if best else None
    if best and sign * best[0].value >= sign * theirs:
        why = ""
    elif path is not None and path.is_file() and len(np.load(path)["valid"]) == len(y):
        ours = np.load(path)["valid"]
        blends = {w: score(metric, y, (1 - w) * reference.oof[fold.valid_rows] + w * ours) for w in BLEND_WEIGHTS}
        weight = max(blends, key=lambda w: sign * blends[w])
        why = "" if sign * blends[weight] > sign * theirs else (
            f"the best of their known-strong defaults ({best[0].params.get('family')} #{best[0].number}) scored "
            f"{best[0].value:.5g} on the search fold against {reference.name}'s {theirs:.5g}, and no blend of the two "
            f"did better there; the rest of their time went to the boosted trees the clock had stopped")
    else:
        why = (f"none of their known-strong defaults came level with {reference.name} on the search fold "
               f"({best[0].value:.5g} against {theirs:.5g}); the rest of their time went to the boosted trees the "
               "clock had stopped" if best else "none of their known-strong defaults finished on the search fold")
    study.set_user_attr("handoff", why)
    if why:
        log.info("networks: %s", why)
    return why


def search(problem: Problem, folds: list[Fold], pipeline: Pipeline, run_dir: Path, *, trials: int,
           deadline: float | None, storage: str | None = None, study_name: str = "networks", device: str = "cpu",
           precision: str = "32-true", seed: int = 0, features_hash: str = "",
           on_trial: Callable[[optuna.Study, optuna.trial.FrozenTrial | None], None] | None = None,
           on: tuple[Fold, bool] | None = None, complete_by: float | None = None, completers: int = 1,
           reference: Reference | None = None) -> optuna.Study:
    """Run trials until `trials` have finished in the study (across resumes and workers) or time is up.
    `on`: `search_fold(folds)`, when the caller made it already. `complete_by`: when the best trials
    must be completed on every fold (by `completers` processes): the search stops early enough for
    MIN_COMPLETED of them, as the trials' measured costs say. `reference`: the best baseline, where GBDTs were
    stopped by the clock: once the recipe's defaults are scored, the search ends if they do not pay (`handed_off`).

    Each worker takes one trial at a time. Before each it fails stale trials (their
    worker stopped sending heartbeats; they are retried), stops once enough trials have
    finished, and waits while the remaining ones run elsewhere.
    """
    store = open_storage(storage_url(run_dir, storage))
    study = make_study(store, study_name, pipeline, problem.metric.greater_is_better, seed, len(folds), features_hash)
    on = on or search_fold(folds, study.user_attrs.get("search_rows", SEARCH_ROWS))  # the sample `automl run` sized
    # Completing a trial predicts every fold's validation and test rows; `complete` passes over a trial whose
    # predicting would take more than 0.6 of its share (an equal part of the completion's time for each of the
    # trials one completing process takes, MIN_COMPLETED at most). Such
    # a trial is of no use to this run, so the search prunes it before training it.
    each = min(MIN_COMPLETED, -(-pipeline.complete_best // max(1, completers)))  # trials one completing process takes
    limit = None if complete_by is None or deadline is None or complete_by <= deadline else \
        0.6 * (complete_by - deadline) / each
    objective = Objective(problem, folds, pipeline, run_dir, device=device, precision=precision, deadline=deadline,
                          seed=seed, trials=trials, on=on, predict_limit=limit)
    # each trial's tensors and Lightning objects freed and handed back (glibc keeps freed heap pages):
    # a run's search processes then hold one trial's memory each, not the high-water mark of all
    callbacks = [_prune_files(run_dir, pipeline.keep_best), lambda study, trial: release_memory()] + (
        [on_trial] if on_trial else [])
    while deadline is None or time.monotonic() < deadline:
        optuna.storages.fail_stale_trials(study)
        _fail_dead(study)
        states = [t.state for t in study.get_trials(deepcopy=False)]
        finished = sum(state in FINISHED for state in states)
        if finished >= trials or complete_by is not None and _completion_due(study, problem, folds, complete_by, completers):
            break
        if finished + states.count(TrialState.RUNNING) >= trials:
            time.sleep(1.0)  # the last trials run in other workers; wait for them or their failure
            continue
        if _failing(study) or handed_off(study, problem, pipeline, on[0], reference, run_dir):
            break
        timeout = None if deadline is None else deadline - time.monotonic()
        study.optimize(objective, n_trials=1, timeout=timeout, catch=(*TRIAL_FAILURES, Surplus), callbacks=callbacks,
                       gc_after_trial=False)
    return study


def _fail_dead(study: optuna.Study) -> None:
    """Fail running trials whose worker is known dead, without waiting for heartbeats to go stale.
    A trial whose worker was a process of this machine that no longer exists is failed once it has
    run HEARTBEAT seconds and retried as Optuna retries a stale one (a resumed run after a kill goes on
    in seconds, not after GRACE). The HEARTBEAT seconds: a live worker names itself within milliseconds
    of taking a trial, but until then a retried trial still names the dead worker it was copied from.
    One with no "worker" attribute is failed once GRACE has passed: killed right after its last trial
    finished, as often as not, a worker has recorded no heartbeat for the new trial, so Optuna never
    takes it for stale and a resumed run would wait for it forever. Another machine's workers are left
    to their heartbeats."""
    now = datetime.now()  # Optuna's datetime_start is local and naive
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get("worker")
        if trial.datetime_start is None or (worker is not None and _alive(worker)):
            continue
        if (now - trial.datetime_start).total_seconds() <= (GRACE if worker is None else HEARTBEAT):
            continue
        try:
            study.tell(trial.number, state=TrialState.FAIL)
        except (ValueError, RuntimeError):  # finished or failed meanwhile
            continue
        if worker is None:
            log.warning("trial %d: its worker stopped before starting it; failed, and another trial runs instead",
                        trial.number)
        else:
            RETRY(study, trial)
            log.warning("trial %d: its worker (%s) is gone; failed, and queued again", trial.number, worker)


def _alive(worker: str) -> bool:
    """Whether a worker ("host:pid") may still be running: always for another machine's (its heartbeats
    tell), else whether that process exists and is not a zombie."""
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    stat = Path(f"/proc/{pid}/stat")
    if not Path("/proc/self/stat").exists():  # no /proc (macOS): whether a signal could reach it
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except (PermissionError, OverflowError):
            pass
        return True
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False  # gone


def _failing(study: optuna.Study, last: int = 10) -> bool:
    """Whether the last trials all failed for one reason (a recipe changed under a resumed
    study, say): going on would only fail faster. Says so once, as a warning."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))[-last:]
    reasons = {t.user_attrs.get("fail_reason") for t in trials if t.state == TrialState.FAIL}
    if len(trials) < last or any(t.state != TrialState.FAIL for t in trials) or len(reasons) != 1:
        return False
    log.warning("network search stopped: the last %d trials all failed (%s); if the search space changed since this "
                "study began, start a new run with --name", last, reasons.pop() or "unknown reason")
    return True


def _prune_files(run_dir: Path, keep: int):
    """Keep the predictions of the `keep` best one-fold trials, and of every completed one."""

    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        # Trials still running (here or in another worker sharing this folder) are left alone:
        # the folders are listed before the states are read, so a trial writing its files is seen running.
        folders = list((run_dir / "trials").glob("*"))
        keep_too = {t.number for t in best_trials(study, keep)} | {
            t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))}
        for folder in folders:
            if folder.name.isdigit() and int(folder.name) not in keep_too and not (folder / "oof.npy").is_file():
                shutil.rmtree(folder, ignore_errors=True)

    return callback


def best_trials(study: optuna.Study, n: int) -> list[optuna.trial.FrozenTrial]:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    reverse = study.direction == optuna.study.StudyDirection.MAXIMIZE
    return sorted(complete, key=lambda t: t.value, reverse=reverse)[:n]


def network_results(study: optuna.Study, problem: Problem, folds: list[Split], run_dir: Path, n: int) -> list[CVResult]:
    """The `n` best completed trials (by their one-fold score), as leaderboard entries (cross-validated)."""
    done = [t for t in best_trials(study, len(study.trials)) if (run_dir / "trials" / str(t.number) / "oof.npy").is_file()]
    results = [_cv_result(t, problem, folds, run_dir / "trials" / str(t.number), study.user_attrs.get(f"cv:{t.number}", {}))
               for t in done[:n]]
    return sorted(results, key=lambda r: r.mean, reverse=problem.metric.greater_is_better)


def summary(study: optuna.Study) -> dict[str, int]:
    counts = {state.name.lower(): 0 for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    for trial in study.get_trials(deepcopy=False):
        if trial.state.name.lower() in counts:
            counts[trial.state.name.lower()] += 1
    return counts


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
