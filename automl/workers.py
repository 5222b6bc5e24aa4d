"""The network search as run by `automl run`, `automl search` and `automl worker`.

Every process that joins a study must train on identical inputs, so the networks'
per-fold features are computed once, saved in the run directory with a content hash,
and the hash is stored on the study: a worker whose data, folds or preprocessing differ
(another machine with another copy of the data, say) is refused instead of polluting
the study. `automl run --workers N` starts N-1 `automl worker` processes on the run's
storage and searches in its own process too.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from automl import search
from automl.baselines import CVResult
from automl.folds import Fold, fold_features
from automl.io import atomic_write
from automl.models.families import TEXT_FAMILIES
from automl.pipeline import Pipeline, choose, load_pipeline
from automl.problem import Problem
from automl.rundir import claim, load_folds, prepare
from automl.train import resolve_device

log = logging.getLogger("automl")


def features_hash(folds: list[Fold]) -> str:
    """sha256 over every fold's rows and feature arrays."""
    digest = hashlib.sha256()
    for fold in folds:
        digest.update(fold.train_rows.tobytes())
        for features in (fold.train, fold.valid, fold.test):
            for array in (features.numeric, features.categorical, features.images, features.tokens):
                if array is not None:
                    digest.update(np.ascontiguousarray(array).tobytes())
            digest.update(repr((features.numeric_names, features.categorical_names, features.cardinalities)).encode())
    return digest.hexdigest()


def network_features(problem: Problem, assignment: np.ndarray, recipe: Pipeline, run_dir: Path) -> tuple[list[Fold], str]:
    """The networks' fold features: loaded from the run directory, or computed and saved there."""
    path = run_dir / f"features-{recipe.numeric}.pkl"
    if path.is_file():
        with open(path, "rb") as handle:
            folds, digest = pickle.load(handle)
        if features_hash(folds) == digest and len(folds) == int(assignment.max()) + 1:
            return folds, digest
    families = set(recipe.space["family"]["choice"]) | {d.get("family") for d in recipe.defaults}
    folds = fold_features(problem, assignment, numeric=recipe.numeric, tokenize=bool(families & set(TEXT_FAMILIES)))
    digest = features_hash(folds)
    atomic_write(path, lambda tmp: tmp.write_bytes(pickle.dumps((folds, digest), protocol=pickle.HIGHEST_PROTOCOL)))
    return folds, digest


def search_networks(problem: Problem, assignment: np.ndarray, recipe: Pipeline, run_dir: Path, console: Console, *,
                    trials: int, deadline: float | None, storage: str | None, study_name: str, device: str,
                    precision: str, seed: int, workers: int = 1, worker_args: dict | None = None) -> list[CVResult]:
    """Search with a progress bar over trials; return the best trials as leaderboard entries."""
    device = resolve_device(device)
    with console.status("preprocessing each fold for the networks"):
        folds, digest = network_features(problem, assignment, recipe, run_dir)
    helpers = []
    if workers > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
        timeout = None if deadline is None else max(1, int(deadline - time.monotonic()))
        helpers = [start_worker(problem.comp.slug, run_dir.name, storage, trials, timeout, worker_args or {},
                                threads=max(1, (os.cpu_count() or 1) // workers)) for _ in range(workers - 1)]
    metric = problem.comp.metric
    columns = [TextColumn("networks"), BarColumn(), MofNCompleteColumn(), TextColumn("trials"),
               TimeElapsedColumn(), TextColumn("{task.fields[best]}")]
    try:
        with Progress(*columns, console=console, transient=False) as progress:
            bar = progress.add_task("search", total=trials, best="")

            def on_trial(study, trial) -> None:
                counts = search.summary(study)
                best = search.best_trials(study, 1)
                progress.update(bar, completed=counts["complete"] + counts["pruned"],
                                best=f"best {metric} {best[0].value:.5g} (#{best[0].number})" if best else "")

            study = search.search(problem, folds, recipe, run_dir, trials=trials, deadline=deadline, storage=storage,
                                  study_name=study_name, device=device, precision=precision, seed=seed,
                                  features_hash=digest, on_trial=on_trial)
            for helper in helpers:
                helper.wait()
            on_trial(study, None)
    finally:
        for helper in helpers:
            if helper.poll() is None:
                helper.terminate()
    _retrain_missing(study, problem, folds, recipe, run_dir, console, device, precision, seed, deadline)
    failed = [h for h in helpers if h.returncode not in (0, None)]
    if failed:
        console.print(f"  networks: {len(failed)} worker process(es) ended with an error; see {run_dir}/worker-*.log")
    counts = search.summary(study)
    log.info("search: %s on %s with %d worker(s)", counts, device, workers)
    console.print(f"  networks: {counts['complete']} complete, {counts['pruned']} pruned, {counts['fail']} failed "
                  f"trials on {device}" + (f" with {workers} workers" if workers > 1 else ""))
    found = search.network_results(study, problem, folds, run_dir, recipe.keep_best)
    if not found:
        console.print("  networks: no trial finished every fold within the budget; give more time with --timeout")
    return found


def _retrain_missing(study, problem: Problem, folds: list[Fold], recipe: Pipeline, run_dir: Path, console: Console,
                     device: str, precision: str, seed: int, deadline: float | None) -> None:
    """Rebuild the predictions of best trials that ran on another machine, from their parameters.

    The study (in a shared database) holds every trial's parameters and scores, but their
    predictions stay with the worker that trained them. The best one is always rebuilt
    here; the others only while time remains.
    """
    for rank, trial in enumerate(search.best_trials(study, recipe.keep_best)):
        if (run_dir / "trials" / str(trial.number) / "oof.npy").is_file():
            continue
        if rank and deadline is not None and time.monotonic() >= deadline:
            break
        with console.status(f"retraining trial #{trial.number} here (it ran on {trial.user_attrs.get('worker', '?')})"):
            objective = search.Objective(problem, folds, recipe, run_dir, device=device, precision=precision,
                                         deadline=None, seed=seed)
            objective(optuna.trial.FixedTrial(trial.params, number=trial.number))


def start_worker(slug: str, name: str, storage: str | None, trials: int, timeout: int | None, args: dict,
                 threads: int = 1) -> subprocess.Popen:
    """An `automl worker` process on the same study, its output in the run directory."""
    command = [sys.executable, "-m", "automl.cli", "worker", slug, "--name", name, "--trials", str(trials),
               "--pipeline", str(args.get("pipeline", "tabular")), "--folds", str(args.get("folds", 5)),
               "--seed", str(args.get("seed", 0)), "--device", args.get("device", "auto"),
               "--precision", args.get("precision", "32-true"), "--runs-dir", str(args.get("runs_dir", "runs")),
               "--data-dir", str(args.get("data_dir", "data"))]
    if storage:
        command += ["--storage", storage]
    if timeout is not None:
        command += ["--timeout", str(timeout)]
    if args.get("source"):
        command += ["--from", str(args["source"])]
    run_dir = Path(args.get("runs_dir", "runs")) / slug / name
    env = os.environ | {"OMP_NUM_THREADS": str(threads)}
    with open(run_dir / f"worker-{os.getpid()}-{time.monotonic_ns()}.log", "w") as logfile:  # the child keeps its copy
        return subprocess.Popen(command, stdout=logfile, stderr=subprocess.STDOUT, env=env)


def worker(slug: str, *, name: str = "default", storage: str | None = None, trials: int | None = None,
           timeout: float | None = None, pipeline: str = "auto", source=None, folds: int = 5, seed: int = 0,
           device: str = "auto", precision: str = "32-true", runs_dir="runs", data_dir="data",
           console: Console | None = None) -> dict:
    """Join a study and run trials until it has enough or time is up; no blending, no submission."""
    from dataclasses import asdict

    console = console or Console(stderr=True)
    deadline = None if timeout is None else time.monotonic() + timeout
    comp, problem, _, _ = prepare(slug, data_dir, source)
    recipe = load_pipeline(choose(problem) if pipeline == "auto" else pipeline)
    run_dir = Path(runs_dir) / slug / name
    claim(run_dir, {"slug": slug, "competition": asdict(comp), "folds": folds, "seed": seed, "rows": len(problem.y)}, name)
    assignment = load_folds(run_dir, problem, folds, seed)
    features, digest = network_features(problem, assignment, recipe, run_dir)
    study = search.search(problem, features, recipe, run_dir, trials=recipe.trials if trials is None else trials,
                          deadline=deadline,
                          storage=storage, study_name=f"{slug}/{name}", device=resolve_device(device),
                          precision=precision, seed=seed + os.getpid(), features_hash=digest)
    counts = search.summary(study)
    best = search.best_trials(study, 1)
    console.print(f"worker {os.getpid()}: study {slug}/{name} has {counts['complete']} complete, "
                  f"{counts['pruned']} pruned, {counts['fail']} failed trials; best "
                  + (f"#{best[0].number} {best[0].value:.6f}" if best else "none yet"), highlight=False)
    return counts

