"""The network search as run by `automl run`, `automl search` and `automl worker`.

Every process that joins a study must train on identical inputs, so the networks'
per-fold features are computed once, saved in the run directory with a content hash,
and the hash is stored on the study: a worker whose data, folds or preprocessing differ
(another machine with another copy of the data, say) is refused instead of polluting
the study. `automl run --workers N` starts N-1 `automl worker` processes on the run's
storage and searches in its own process too.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from automl import search
from automl.baselines import CVResult
from automl.budget import check_timeout, peak_mib
from automl.folds import Fold
from automl.pipeline import Pipeline, choose, load_pipeline
from automl.problem import Problem
from automl.rundir import claim, load_folds, prepare, shared_features
from automl.train import resolve_device

log = logging.getLogger("automl")


def search_networks(problem: Problem, folds: list[Fold], digest: str, recipe: Pipeline, run_dir: Path, console: Console, *,
                    trials: int, deadline: float | None, storage: str | None, study_name: str, device: str,
                    precision: str, seed: int, workers: int = 1, worker_args: dict | None = None) -> list[CVResult]:
    """Search on one fold with a progress bar over trials, then complete the best on every fold.

    The networks' time is split: the search gets all but the recipe's `complete_share`,
    which is kept for completing the `complete_best` best trials (this process does it,
    whichever worker searched them). Returns the completed trials as leaderboard entries.
    """
    device = resolve_device(device)
    search_deadline = None if deadline is None else time.monotonic() + (1 - recipe.complete_share) * max(
        0.0, deadline - time.monotonic())
    helpers = []
    if workers > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
        timeout = None if search_deadline is None else max(1, int(search_deadline - time.monotonic()))
        helpers = [start_worker(problem.comp.slug, run_dir.name, storage, trials, timeout, worker_args or {},
                                threads=max(1, (os.cpu_count() or 1) // workers)) for _ in range(workers - 1)]
    metric = problem.comp.metric
    columns = [TextColumn("networks"), BarColumn(), MofNCompleteColumn(), TextColumn("trials on one fold"),
               TimeElapsedColumn(), TextColumn("{task.fields[best]}")]
    started = time.monotonic()
    try:
        with Progress(*columns, console=console, transient=False) as progress:
            bar = progress.add_task("search", total=trials, best="")

            def on_trial(study, trial) -> None:
                counts = search.summary(study)
                best = search.best_trials(study, 1)
                progress.update(bar, completed=counts["complete"] + counts["pruned"],
                                best=f"best {metric} {best[0].value:.5g} (#{best[0].number})" if best else "")

            study = search.search(problem, folds, recipe, run_dir, trials=trials, deadline=search_deadline,
                                  storage=storage, study_name=study_name, device=device, precision=precision,
                                  seed=seed, features_hash=digest, on_trial=on_trial)
            for helper in helpers:
                helper.wait()
            on_trial(study, None)
    finally:
        for helper in helpers:
            if helper.poll() is None:
                helper.terminate()
    searched, peak_after_search = time.monotonic() - started, peak_mib()
    with console.status("completing the best trials on every fold") as status:
        found = search.complete(study, problem, folds, recipe, run_dir, n=recipe.complete_best, deadline=deadline,
                                device=device, precision=precision, seed=seed,
                                on_trial=lambda n: status.update(f"completing trial #{n} on every fold"))
    failed = [h for h in helpers if h.returncode not in (0, None)]
    if failed:
        console.print(f"  networks: {len(failed)} worker process(es) ended with an error; see {run_dir}/worker-*.log")
    counts = search.summary(study)
    log.info("search: %s on %s with %d worker(s) in %.1fs (peak %.0f MiB after it); %d completed on every fold in %.1fs",
             counts, device, workers, searched, peak_after_search, len(found), time.monotonic() - started - searched)
    console.print(f"  networks: {sum(counts.values())} trials searched on one fold ({counts['complete']} finished, "
                  f"{counts['pruned']} pruned, {counts['fail']} failed) on {device}"
                  + (f" with {workers} workers" if workers > 1 else "")
                  + f" in {searched:.0f}s; {len(found)} of the best completed on all {len(folds)} folds"
                  + f" in {time.monotonic() - started - searched:.0f}s", highlight=False)
    if not found:
        console.print("  networks: no trial was completed on every fold within the budget; give more time with --timeout")
    return found


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
    if args.get("metric"):
        command += ["--metric", str(args["metric"])]
    if args.get("source"):
        command += ["--from", str(args["source"])]
    run_dir = Path(args.get("runs_dir", "runs")) / slug / name
    env = os.environ | {"OMP_NUM_THREADS": str(threads)}
    with open(run_dir / f"worker-{os.getpid()}-{time.monotonic_ns()}.log", "w") as logfile:  # the child keeps its copy
        return subprocess.Popen(command, stdout=logfile, stderr=subprocess.STDOUT, env=env)


def worker(slug: str, *, name: str = "default", storage: str | None = None, trials: int | None = None,
           timeout: float | None = None, pipeline: str = "auto", source=None, folds: int = 5, seed: int = 0,
           device: str = "auto", precision: str = "32-true", runs_dir="runs", data_dir="data",
           console: Console | None = None, metric: str | None = None, started: float | None = None) -> dict:
    """Join a study and run trials until it has enough or time is up; no blending, no submission."""
    from dataclasses import asdict

    console = console or Console(stderr=True)
    check_timeout(timeout)
    deadline = None if timeout is None else (time.monotonic() if started is None else started) + timeout
    comp, problem, _, _ = prepare(slug, data_dir, source, metric)
    recipe = load_pipeline(choose(problem) if pipeline == "auto" else pipeline)
    run_dir = Path(runs_dir) / slug / name
    claim(run_dir, {"slug": slug, "competition": asdict(comp), "folds": folds, "seed": seed, "rows": len(problem.y)}, name)
    assignment = load_folds(run_dir, problem, folds, seed)
    features, digest = shared_features(problem, assignment, recipe, run_dir)
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

