"""The network search as run by `automl run`, `automl search` and `automl worker`.

On one machine, `automl run` searches in several processes (one per CPU core by default,
`--workers N` to choose): N-1 forks of the run share its memory (features, problem,
libraries; copy-on-write) and its study, then share the completion of the best trials.
Every process that joins a study from elsewhere (`automl worker`) must train on identical
inputs, so the per-fold features' content hash is stored on the study: a worker whose
data, folds or preprocessing differ (another machine with another copy of the data, say)
is refused instead of polluting the study.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import optuna
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from automl import search, train
from automl.baselines import CVResult
from automl.budget import check_timeout, frozen_heap, peak_mib
from automl.folds import Fold
from automl.io import write_json
from automl.pipeline import Pipeline, choose, load_pipeline
from automl.problem import Problem
from automl.rundir import claim, follow_extra, load_folds, prepare, shared_features
from automl.train import resolve_device

log = logging.getLogger("automl")
MAX_PROCESSES = 4  # search processes chosen by default: past this, memory grows faster than the trials
PR_SET_PDEATHSIG = 1  # Linux's prctl option: a signal for this process when its parent dies
GRACE = 10  # seconds a forked process may run past its deadline before it is stopped


def search_networks(problem: Problem, folds: list[Fold], digest: str, recipe: Pipeline, run_dir: Path, console: Console, *,
                    trials: int, deadline: float | None, storage: str | None, study_name: str, device: str,
                    precision: str, seed: int, workers: int = 0, worker_args: dict | None = None,
                    reference: search.Reference | None = None) -> list[CVResult]:
    """Search on one fold with a progress bar over trials, then complete the best on every fold.

    The networks' time is split: the search gets all but the recipe's `complete_share`,
    which is kept for completing the `complete_best` best trials. `workers` search
    processes (0: `processes_for` the device) share the study and then the completion;
    on a CPU the extra ones are forks of this one (`fork`), torch's threads divided between
    them. CUDA cannot be used in a fork: on a GPU they are `automl worker` processes
    (`start_worker`), which search, and this one completes. Returns the completed trials as
    leaderboard entries. `reference`: the best baseline where boosted trees were stopped by the clock: when the
    recipe's known-strong defaults do not pay against it on the search fold, the search ends there and nothing
    is completed (`search.handed_off`): the caller gives the time to the trees.
    """
    device = resolve_device(device)
    processes = processes_for(device) if workers == 0 else workers
    forks = can_fork(device)
    threads = max(1, (os.cpu_count() or 1) // processes)
    search_deadline = None if deadline is None else time.monotonic() + (1 - recipe.complete_share) * max(
        0.0, deadline - time.monotonic())
    options = {"deadline": search_deadline, "storage": storage, "study_name": study_name, "device": device,
               "precision": precision, "features_hash": digest, "complete_by": deadline,
               "completers": processes if forks else 1, "reference": reference}
    metric = problem.comp.metric
    columns = [TextColumn("networks"), BarColumn(), MofNCompleteColumn(), TextColumn("trials on one fold"),
               TimeElapsedColumn(), TextColumn("{task.fields[best]}")]
    started, threads_before, helpers = time.monotonic(), torch.get_num_threads(), []
    torch.set_num_threads(threads)
    # cheap collections after each trial, and none writing to the pages forks share
    with frozen_heap():
        try:  # the study and its tables exist before any fork joins them
            train.SHARING_PROCESSES = processes if forks else 1  # the forks share this machine's memory for activations
            study = search.make_study(search.open_storage(search.storage_url(run_dir, storage)), study_name, recipe,
                                      problem.metric.greater_is_better, seed, len(folds), digest)
            # the search's row sample, sized to the time once and kept in the study: every process, machine
            # and resumed run that joins it ranks trials on the same rows
            if "search_rows" not in study.user_attrs:
                study.set_user_attr("search_rows", search.search_rows(
                    problem, folds, recipe, None if search_deadline is None else search_deadline - time.monotonic(),
                    device=device))
            options["on"] = search.search_fold(folds, study.user_attrs["search_rows"])  # made once: forks share it
            if forks:
                helpers = [fork(run_dir, threads, lambda i=i: _search_summary(search.search(
                    problem, folds, recipe, run_dir, trials=trials, seed=seed + i, **options)), "search")
                           for i in range(1, processes)]
            else:
                timeout = None if search_deadline is None else max(1, int(search_deadline - time.monotonic()))
                helpers = [start_worker(problem.comp.slug, run_dir.name, storage, trials, timeout, worker_args or {}, threads)
                           for _ in range(1, processes)]
            with Progress(*columns, console=console, transient=False) as progress:
                bar = progress.add_task("search", total=trials, best="")

                def on_trial(study, trial) -> None:
                    counts = search.summary(study)
                    best = search.best_trials(study, 1)
                    progress.update(bar, completed=counts["complete"] + counts["pruned"],
                                    best=f"best {metric} {best[0].value:.5g} (#{best[0].number})" if best else "")

                study = search.search(problem, folds, recipe, run_dir, trials=trials, seed=seed, on_trial=on_trial, **options)
                failed = wait(helpers, None if search_deadline is None else search_deadline + GRACE)
                on_trial(study, None)
            searched, peak_after_search = time.monotonic() - started, peak_mib()
            handoff = study.user_attrs.get("handoff", "")
            found, failed_too = [], 0
            if not handoff:
                with console.status("completing the best trials on every fold") as status:
                    found, failed_too = _complete(study, problem, folds, recipe, run_dir, status, deadline=deadline,
                                                  device=device, precision=precision, seed=seed, storage=storage,
                                                  processes=processes if forks else 1, threads=threads)
        finally:  # on an error or Ctrl-C too: no helper outlives the run
            stop(helpers)
            torch.set_num_threads(threads_before)
            train.SHARING_PROCESSES = 1
    failed += failed_too
    if failed:
        console.print(f"  networks: {failed} worker process(es) ended with an error; see {run_dir}/worker-*.log")
    counts = search.summary(study)
    log.info("search: %s on %s with %d process(es) in %.1fs (peak %.0f MiB after it); %d completed on every fold in %.1fs",
             counts, device, processes, searched, peak_after_search, len(found), time.monotonic() - started - searched)
    console.print(f"  networks: {sum(counts.values())} trials searched on one fold ({counts['complete']} finished, "
                  f"{counts['pruned']} pruned, {counts['fail']} failed) on {device}"
                  + (f" with {processes} workers" if processes > 1 else "")
                  + f" in {searched:.0f}s; {len(found)} of the best completed on all {len(folds)} folds"
                  + f" in {time.monotonic() - started - searched:.0f}s", highlight=False)
    note = ""
    if handoff:
        note = f"searched, not completed: {handoff}"
    elif not found and counts["complete"]:
        note = ("searched, not completed: no trial could be trained on every fold as its search trained it in the "
                "time left; that time went to the other models (--timeout gives more)")
    elif not found:
        note = "no trial finished on one fold within the budget; give more time with --timeout"
    if note:
        console.print(f"  networks: {note}", highlight=False)
    write_json(run_dir / "networks.json", {"trials": counts, "completed": [r.name for r in found], "note": note})
    return found


def _complete(study, problem: Problem, folds: list[Fold], recipe: Pipeline, run_dir: Path, status, *, deadline,
              device: str, precision: str, seed: int, processes: int, threads: int,
              storage: str | None) -> tuple[list[CVResult], int]:
    """The `complete_best` best trials completed on every fold, process p of P taking the p-th, (p+P)-th, ...
    best; and how many of the forked processes failed."""
    n = recipe.complete_best
    options = {"deadline": deadline, "device": device, "precision": precision, "seed": seed}

    def part(index: int) -> str:  # in a fork: its own connection to the storage (none crosses a fork)
        own = optuna.load_study(study_name=study.study_name, storage=search.open_storage(search.storage_url(run_dir, storage)))
        done = search.complete(own, problem, folds, recipe, run_dir, n=n, part=(index, processes), **options)
        return f"worker {os.getpid()}: completed {len(done)} trial(s) on every fold: " + ", ".join(r.name for r in done)

    helpers = [fork(run_dir, threads, lambda i=i: part(i), "complete") for i in range(1, processes)]
    try:
        search.complete(study, problem, folds, recipe, run_dir, n=n, part=(0, processes),
                        on_trial=lambda number: status.update(f"completing trial #{number} on every fold"), **options)
        failed = wait(helpers, None if deadline is None else deadline + GRACE)
    finally:
        stop(helpers)
    return search.network_results(study, problem, folds, run_dir, 3 * n), failed


def processes_for(device: str) -> int:
    """Search processes when --workers is left to choose: on a CPU one per core, up to 4, each with
    a core's share of torch's threads (a tabular network's step is small matrix products and
    Python: a second thread speeds one process up far less than a second process doubles the
    trials); one on a GPU, and one where processes cannot be forked."""
    return max(1, min(os.cpu_count() or 1, MAX_PROCESSES)) if can_fork(device) else 1


def can_fork(device: str) -> bool:
    """Forked processes share the parent's memory; CUDA cannot run in them, and only Linux forks
    torch safely (macOS's system libraries do not survive a fork)."""
    return device == "cpu" and sys.platform.startswith("linux")


def fork(run_dir: Path, threads: int, work: Callable[[], str], label: str) -> int:
    """Run `work` in a forked copy of this process and return its pid. The copy shares the
    parent's memory until either writes (the features, the problem, the imported libraries
    are not copied), opens its own storage connections, runs torch on `threads` threads and
    writes its output, then `work`'s one-line summary, to run_dir/worker-PID-LABEL.log."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    parent = os.getpid()
    gc.freeze()  # the collector would write to every object's header in either process: copies of the whole heap
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:  # the child: never returns into the parent's code
        # Killed with the parent, even by SIGKILL: an orphan would hold the run directory's lock
        # (inherited) and go on training, and the resumed run would be refused.
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before that
            raise SystemExit(1)
        handle = os.open(run_dir / f"worker-{os.getpid()}-{label}.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(handle, 1)
        os.dup2(handle, 2)
        torch.set_num_threads(threads)
        os.write(1, (work() + "\n").encode())
        code = 0
    except BaseException:  # noqa: BLE001 - whatever happens, the child must exit here
        os.write(2, traceback.format_exc().encode())
    finally:
        for handler in logging.getLogger("automl").handlers:
            handler.flush()
        os._exit(code)


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
    for path in args.get("extra_train") or ():
        command += ["--extra-train", str(path)]
    if args.get("text_model"):
        command += ["--text-model", str(args["text_model"])]
    run_dir = Path(args.get("runs_dir", "runs")) / slug / name
    env = os.environ | {"OMP_NUM_THREADS": str(threads)}
    with open(run_dir / f"worker-{os.getpid()}-{time.monotonic_ns()}.log", "w") as logfile:  # the child keeps its copy
        return subprocess.Popen(command, stdout=logfile, stderr=subprocess.STDOUT, env=env)


def wait(helpers: list, until: float | None) -> int:
    """Wait for helper processes (forked pids or `automl worker` Popens), killing any still alive
    at `until` (time.monotonic); how many failed."""
    failed, pending = 0, list(helpers)
    while pending:
        for helper in list(pending):
            code = _poll(helper)
            if code is not None:
                pending.remove(helper)
                failed += code != 0
        if pending and until is not None and time.monotonic() > until:
            log.warning("%d worker process(es) did not end in time; stopped", len(pending))
            stop(pending)
            return failed + len(pending)
        time.sleep(0.05)
    return failed


def stop(helpers: list) -> None:
    """Kill the helpers still running (their running trials fail by heartbeat and are retried)."""
    for helper in helpers:
        if _poll(helper) is None:
            if isinstance(helper, subprocess.Popen):
                helper.kill()
                helper.wait()
            else:
                os.kill(helper, signal.SIGKILL)
                os.waitpid(helper, 0)


def _poll(helper) -> int | None:
    if isinstance(helper, subprocess.Popen):
        return helper.poll()
    try:
        done, status = os.waitpid(helper, os.WNOHANG)
    except ChildProcessError:  # reaped already
        return 0
    return os.waitstatus_to_exitcode(status) if done else None


def _search_summary(study: optuna.Study) -> str:
    counts = search.summary(study)
    best = search.best_trials(study, 1)
    return (f"worker {os.getpid()}: study {study.study_name} has {counts['complete']} complete, "
            f"{counts['pruned']} pruned, {counts['fail']} failed trials; best "
            + (f"#{best[0].number} {best[0].value:.6f}" if best else "none yet"))


def worker(slug: str, *, name: str = "default", storage: str | None = None, trials: int | None = None,
           timeout: float | None = None, pipeline: str = "auto", source=None, folds: int = 5, seed: int = 0,
           device: str = "auto", precision: str = "32-true", runs_dir="runs", data_dir="data",
           console: Console | None = None, metric: str | None = None, started: float | None = None,
           extra_train=(), text_model=None) -> dict:
    """Join a study and run trials until it has enough or time is up; no blending, no submission.
    A run made with --text-model is joined with the same model: its embeddings come from the run's cache."""
    from dataclasses import asdict

    from automl.text_model import check, embedded

    console = console or Console(stderr=True)
    check_timeout(timeout)
    encoder = check(text_model) if text_model else None
    deadline = None if timeout is None else (time.monotonic() if started is None else started) + timeout
    comp, problem, _, _ = prepare(slug, data_dir, source, metric, extra_train)
    recipe = load_pipeline(choose(problem) if pipeline == "auto" else pipeline)
    run_dir = Path(runs_dir) / slug / name
    claim(run_dir, {"slug": slug, "competition": asdict(comp), "folds": folds, "seed": seed, "rows": len(problem.y),
                    "extra_train": list(problem.extra_files), "text_model": encoder}, name)
    problem, assignment = follow_extra(run_dir, problem, load_folds(run_dir, problem, folds, seed))
    if encoder is not None:
        problem, note = embedded(problem, encoder, run_dir / "text-embeddings", device=device, console=console)
        console.print(f"  {note}", highlight=False)
    features, digest = shared_features(problem, assignment, recipe)
    problem = problem.without_frames()
    with frozen_heap():
        study = search.search(problem, features, recipe, run_dir, trials=recipe.trials if trials is None else trials,
                              deadline=deadline, storage=storage, study_name=f"{slug}/{name}",
                              device=resolve_device(device), precision=precision, seed=seed + os.getpid(),
                              features_hash=digest)
    console.print(_search_summary(study), highlight=False)
    return search.summary(study)

