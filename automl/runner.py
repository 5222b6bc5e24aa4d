"""`automl run`: from a competition's name to a leaderboard and a valid submission.

A run directory (runs/SLUG/NAME/) holds everything the run made: config.json, the
folds, one folder per model (out-of-fold and test predictions, scores, seconds),
leaderboard.csv, submission.csv and run.log. Running the same name again reuses every
model already finished; a run made with other folds or another spec is refused rather
than mixed.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
from rich.console import Console

from automl import baselines, pseudo, trend
from automl.baselines import CVResult
from automl.budget import Budget, check_timeout, minimum_seconds
from automl.competition import Competition
from automl.ensemble import beats, blend_seconds, ensemble
from automl.errors import AutomlError, UsageError
from automl.fetch import fetch
from automl.folds import splits
from automl.io import write_csv, write_json
from automl.pipeline import choose, load_pipeline
from automl.problem import Problem
from automl.rundir import claim, load_folds, load_result, locked, log_to, prepare, save_result, shared_features, without_extra
from automl.submission import make_submission, validate
from automl.text_model import check as text_model_check

log = logging.getLogger("automl")
PSEUDO_SHARE = 0.2  # of the time left after preprocessing, kept for --pseudo-label's second pass
TEXT_SHARE = 0.3  # of the time left, at most, for the --text-model's embeddings (texts are cut shorter to fit)
# The finetune baseline (automl.finetune) as the table describes the others: its part of the baselines'
# time (boosting's), what it needs; its library is checked with the --text-model folder.
FINETUNE = SimpleNamespace(weight=3.0, needs="a free-text column", library="")
TREND_SHARE = 0.1  # of the baselines' time, at most, for choosing whether a forecast's trees learn relative to a trend
EXTRA_SHARE = 0.1  # of the time left, at most, for choosing whether the --extra-train rows help
TREES = ("random_forest", "extra_trees", "hist_gb", "lightgbm", "xgboost", "catboost")  # they cannot extrapolate a trend
# Boosted trees the clock stopped before early stopping did are fitted again with more time, from the networks' share
# at most this part of it (before the search) and with whatever the networks leave (after it): a booster short of
# its rounds is the cheapest gain in the run. A second fit is made only with TOP_UP_MORE times its first fit's
# seconds and TOP_UP_MIN seconds at least: less would stop it at the same place.
TOP_UP_SHARE = 0.5
TOP_UP_MORE, TOP_UP_MIN = 1.5, 5.0


@dataclass(frozen=True)
class RunResult:
    leaderboard: pd.DataFrame
    run_dir: Path
    submission: Path
    paths: dict[str, Path]



def run(slug: str, *, source=None, name: str = "default", models: str = "all", folds: int = 5, seed: int = 0,
        trials: int | None = None, timeout: float | None = None, pipeline: str = "auto",
        storage: str | None = None, device: str = "auto", precision: str = "32-true", workers: int = 0,
        runs_dir="runs", data_dir="data", console: Console | None = None, metric: str | None = None,
        started: float | None = None, extra_train=(), pseudo_label: bool = False, text_model=None,
        extra_always: bool = False) -> RunResult:
    """Cross-validate baselines and searched networks on shared folds; write the best one's submission.

    `timeout` (seconds) bounds the whole run from the moment the process started: reading,
    preprocessing, baselines, the network search, the blend and the outputs (automl/budget.py
    plans it). `workers` search processes (0: one per CPU core, up to 4) share the run's
    study and deadline. `text_model` (--text-model): a local Hugging Face model folder whose
    embeddings of the free text join the features, and which the `finetune` baseline fine-tunes.
    `extra_train` rows are used only where a quick GBDT scores better with them on the folds, unless
    `extra_always` (--extra-train-always).
    """
    check_timeout(timeout)
    encoder = text_model_check(text_model) if text_model else None  # a bad folder: one line, before any work
    if workers < 0:
        raise UsageError(f"--workers {workers}: expected 0 (one search process per CPU core) or more")
    worker_args = {"source": source, "data_dir": data_dir, "runs_dir": runs_dir, "pipeline": pipeline, "folds": folds,
                   "seed": seed, "device": device, "precision": precision, "metric": metric, "extra_train": extra_train,
                   "text_model": text_model}
    console = console or Console(stderr=True)
    names, networks = model_names(models, encoder is not None)
    budget = Budget.start(timeout, started)
    with budget.stage("imports"):  # the GBDT libraries: about 2.5 s together, named so the time line says so
        names, unavailable = _installed(names, models)
    with budget.stage("read"):
        _check_minimum(timeout, budget, fetch(slug, data_dir, source))
        comp, problem, sample, test_ids = prepare(slug, data_dir, source, metric, extra_train)
    if problem.extra:
        console.print(f"  extra training rows: {problem.extra:,} from "
                      + ", ".join(f"{Path(f['path']).name} ({f['rows']:,})" for f in problem.extra_files)
                      + f", beside {problem.own_rows:,} of {comp.train}; they train "
                      + ("the folds whose own training rows reach their time" if comp.folds == "time" else "in every fold")
                      + " and are never scored", highlight=False)
    if networks and pipeline == "auto":
        pipeline = choose(problem)
        console.print(f"  networks: pipelines/{pipeline}.yaml (chosen from the columns; --pipeline to change)")
    recipe = load_pipeline(pipeline) if networks else None
    if encoder is None and recipe is not None and recipe.text_model:  # the recipe's model, where no --text-model
        encoder = text_model_check(Path(recipe.text_model))
        worker_args["text_model"] = recipe.text_model
        names, _ = model_names(models, True)
        names, _ = _installed(names, models)
    if timeout is None and recipe is not None:
        budget.total = recipe.timeout  # --models baselines without --timeout stays unbounded
    run_dir = Path(runs_dir) / slug / name
    handler = None
    with locked(run_dir):  # released on return, error or Ctrl-C
        try:
            with budget.stage("folds"):
                claim(run_dir, {"slug": slug, "competition": asdict(comp), "folds": folds, "seed": seed,
                                "rows": len(problem.y), "extra_train": list(problem.extra_files),
                                "text_model": encoder}, name)
                handler = log_to(run_dir / "run.log")
                assignment = load_folds(run_dir, problem, folds, seed)
                if problem.extra and comp.folds == "time" and assignment.ndim == 1:  # folds.csv from before placing them
                    console.print(f"  [yellow]extra rows train every fold here: {run_dir / 'folds.csv'} was made before "
                                  "extra rows on folds in time were placed by their time; --name NEW places them[/]")
                made = len(splits(assignment))
                if made < folds:
                    console.print(f"  forecast folds: {made} of --folds {folds}, each validating as long a stretch as "
                                  "the test, with half the history or more before the first (automl inspect shows "
                                  "their dates)", highlight=False)
            if encoder is not None:
                with budget.stage("text model"):
                    problem = _embedded(problem, encoder, run_dir, budget, device, console)
            pending = [m for m in names if not (run_dir / "models" / m / "result.json").is_file()]
            fold_data, digest = None, ""
            if pending or networks or pseudo_label:
                with budget.stage("preprocess"), console.status("preprocessing each fold"):
                    fold_data, digest = shared_features(problem, assignment, recipe)
                if problem.extra:  # kept only where they help (or --extra-train-always); decided once per run
                    with budget.stage("extra rows"):
                        kept = _extra_kept(problem, fold_data, run_dir, seed, budget, console, extra_always)
                    if not kept:
                        problem, assignment = without_extra(problem, assignment)
                        with budget.stage("preprocess"), console.status("preprocessing each fold"):
                            fold_data, digest = shared_features(problem, assignment, recipe)
                problem = problem.without_frames()
            blended_models = len(names) + (recipe.complete_best if networks else 0)
            need = None
            if networks and names and budget.bounded and recipe.defaults:  # a split between baselines and networks
                with budget.stage("imports"):  # torch and Lightning: seconds
                    from automl.search import network_need
                with budget.stage("plan"):  # a timed probe of each known-strong configuration: what the networks need
                    need = network_need(problem, fold_data, recipe, device)
            with budget.stage("plan"):  # timed scores of the metric size the blend's reserve
                budget.plan(len(problem.y) + len(problem.test), networks, recipe.network_share if recipe else 0.0,
                            blend=blend_seconds(problem, folds, blended_models) if budget.bounded and blended_models > 1 else 0.0,
                            pseudo_share=PSEUDO_SHARE if pseudo_label and not pseudo.applies(problem) else 0.0,
                            network_need=need)
            if need is not None:
                log.info("plan: the networks' known-strong configurations need about %.0fs (a probe); %.0f%% of the "
                         "time left is theirs (the recipe's network_share: %.0f%%)", need, 100 * budget.network_share,
                         100 * recipe.network_share)
                if budget.network_share > recipe.network_share:
                    console.print(f"  networks: {100 * budget.network_share:.0f}% of the time left, not the recipe's "
                                  f"{100 * recipe.network_share:.0f}%: a probe says their known-strong configurations "
                                  f"need about {need:.0f}s to train and complete", highlight=False)
            for line in unavailable:
                console.print(f"  {line}", highlight=False)
            detrend = False
            if fold_data is not None and trend.applies(problem, fold_data) and any(m in TREES for m in names):
                with budget.stage("trend"):
                    detrend = _trend(problem, fold_data, run_dir, seed, budget, console)
            results, members = _baselines(names, networks, problem, fold_data, run_dir, budget, seed, console, device,
                                          keep_test_folds=pseudo_label, encoder=encoder, trend=detrend)
            refit = {"problem": problem, "fold_data": fold_data, "run_dir": run_dir, "seed": seed, "console": console,
                     "device": device, "keep_test_folds": pseudo_label, "trend": detrend, "budget": budget}
            if budget.bounded and _short_of_time(results):  # boosted trees the clock stopped: the cheapest gain
                left, networks_left = budget.baselines_left() or 0.0, (budget.left() or 0.0) - (budget.baselines_left() or 0.0)
                # from a table's networks, not from an image's or a text's: there the networks lead
                taken = TOP_UP_SHARE * networks_left if networks and _tabular(recipe) else 0.0
                _more_time(results, members, left + taken, **refit)
            if networks:
                with budget.stage("imports"):  # torch and Lightning: seconds
                    from automl.search import Reference
                    from automl.workers import search_networks

                ranked = [r for r in results if r.name != "dummy" and np.isfinite(r.mean)]
                sign = 1.0 if problem.metric.greater_is_better else -1.0
                short = budget.bounded and _short_of_time(results) and _tabular(recipe)  # something to hand time to
                top = max(ranked, key=lambda r: sign * r.mean) if ranked and short else None
                with budget.stage("networks"):
                    found = search_networks(problem, fold_data, digest, recipe, run_dir, console,
                                            trials=recipe.trials if trials is None else trials,
                                            deadline=budget.networks_deadline(), storage=storage, study_name=f"{slug}/{name}",
                                            device=device, precision=precision, seed=seed, workers=workers,
                                            worker_args=worker_args, reference=top and Reference(top.name, top.oof))
                results += found  # every completed network is a row: each one the blend or stack may weigh
                members += found
                if budget.bounded and _short_of_time(results):  # what the networks did not use (handed off, or done early)
                    _more_time(results, members, budget.left() or 0.0, **refit)
            if not results:
                raise AutomlError("no model finished" + (f" within the time budget; give more time with --timeout (now {budget.total:g}s)"
                                                         if budget.bounded else "; see run.log for each trial's failure"))
            with budget.stage("blend"):
                blended = ensemble(problem, splits(assignment), members, seconds=budget.blend_allowance())
            (run_dir / "pseudo.json").unlink(missing_ok=True)  # a report says only what this run did
            if pseudo_label:
                with budget.stage("pseudo-labels"):
                    kept, lines = pseudo.second_pass(problem, fold_data, blended, members, seed=seed, device=device,
                                                     seconds=budget.pseudo_allowance())
                for line in lines:
                    log.info(line)
                    console.print(f"  {line}", highlight=False)
                write_json(run_dir / "pseudo.json", {"lines": lines, "kept": [r.name for r in kept]})
                for result in kept:
                    save_result(run_dir / "models" / result.name, result)
                results += kept
                members += kept
                if kept:
                    with budget.stage("blend"):
                        blended = ensemble(problem, splits(assignment), members, seconds=budget.blend_allowance())
            if blended is not None:
                save_result(run_dir / "models" / "ensemble", blended)
                if blended.info["method"] == "stack":
                    console.print(f"  ensemble (stack): {comp.metric} {_fmt(blended.mean)} held-out "
                                  f"(greedy blend {_fmt(blended.info['greedy'])})")
                elif blended.info["method"] == "halves":
                    console.print(f"  ensemble (half greedy blend, half stack): {comp.metric} {_fmt(blended.mean)} "
                                  f"held-out (greedy blend {_fmt(blended.info['greedy'])}, "
                                  f"stack {_fmt(blended.info['stack'])})")
                else:
                    stacked = f"; stack {_fmt(blended.info['stack'])}" if "stack" in blended.info else ""
                    console.print(f"  ensemble (greedy blend): {comp.metric} {_fmt(blended.mean)} held-out "
                                  f"({_fmt(blended.info['optimistic'])} if scored where it was selected{stacked})")
                results.append(blended)
            with budget.stage("outputs"):
                best, why = choose_submission(results, problem)
                log.info("submission: %s (%s)", best.name, why)
                console.print(f"  submission: {best.name} ({why})", highlight=False)
                board = leaderboard(results, problem, best.name)
                paths = {"leaderboard": write_csv(run_dir / "leaderboard.csv", board)}
                paths["submission"] = _write_submission(run_dir, comp, sample, test_ids, best, problem)
                write_json(run_dir / "timings.json", budget.as_dict())
                from automl.report import write_report  # matplotlib loads only when a report is made

                paths["report"] = write_report(run_dir)
            write_json(run_dir / "timings.json", budget.as_dict())
            log.info("run finished in %.1fs; submission from %s; time: %s", budget.elapsed(), best.name, budget.breakdown())
            console.print(f"  time: {budget.breakdown()}", highlight=False)
            return RunResult(board, run_dir, paths["submission"], paths | {"run_dir": run_dir})
        finally:
            if handler is not None:
                logging.getLogger("automl").removeHandler(handler)
                handler.close()


def _check_minimum(timeout: float | None, budget: Budget, folder: Path) -> None:
    """A budget smaller than reading the files and writing one submission takes: exit 2 before any work."""
    if timeout is None:
        return
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    needed = budget.elapsed() + minimum_seconds(size)
    if timeout < needed:
        raise UsageError(f"--timeout {timeout:g}: too small to read {size / 1e6:,.1f} MB of data and write a "
                         f"submission (about {needed:.0f}s); use --timeout {max(10, int(needed * 1.5 + 0.5) // 5 * 5 + 5)} or more")


def _embedded(problem: Problem, encoder: dict, run_dir: Path, budget: Budget, device: str, console: Console) -> Problem:
    """The problem with its free text's embeddings as numeric columns (automl.text_model)."""
    from automl.text_model import embedded

    seconds = None if budget.left() is None else TEXT_SHARE * budget.left()
    problem, note = embedded(problem, encoder, run_dir / "text-embeddings", seconds=seconds, device=device, console=console)
    log.info(note)
    console.print(f"  {note}", highlight=False)
    return problem


def _extra_kept(problem: Problem, fold_data, run_dir: Path, seed: int, budget: Budget, console: Console,
                always: bool) -> bool:
    """Whether the --extra-train rows train the models: where a quick GBDT scores better with them on the folds
    (automl.baselines.original), or `always`; decided once per run: a resumed run follows extra.json."""
    path = run_dir / "extra.json"
    if path.is_file():
        chosen = json.loads(path.read_text())
    elif always:
        chosen = {"kept": True, "note": f"the {problem.extra:,} extra rows are kept: --extra-train-always"}
    else:
        left = budget.left()
        chosen = baselines.choose_extra(problem, fold_data, seed, seconds=None if left is None else EXTRA_SHARE * left)
    write_json(path, chosen)
    log.info("extra rows: %s", chosen["note"])
    console.print(f"  extra rows: {chosen['note']}", highlight=False)
    return bool(chosen["kept"])


def _trend(problem: Problem, fold_data, run_dir: Path, seed: int, budget: Budget, console: Console) -> bool:
    """Whether a forecast's trees learn relative to a trend in time (automl.trend), decided once per run:
    a resumed run follows trend.json."""
    path = run_dir / "trend.json"
    if path.is_file():
        chosen = json.loads(path.read_text())
    else:
        left = budget.baselines_left()
        chosen = baselines.choose_trend(problem, fold_data, seed, seconds=None if left is None else TREND_SHARE * left)
        write_json(path, chosen)
    log.info("trend: %s", chosen["note"])
    console.print(f"  trend: {chosen['note']}", highlight=False)
    return bool(chosen["trend"])


def _baselines(names: list[str], networks: bool, problem: Problem, fold_data, run_dir: Path,
               budget: Budget, seed: int, console: Console, device: str = "cpu",
               keep_test_folds: bool = False, encoder: dict | None = None,
               trend: bool = False) -> tuple[list[CVResult], list[CVResult]]:
    """Every requested baseline, cheap ones first, each sized to its part of the baselines' time."""
    results, pending = [], []
    for model in names:
        done = load_result(run_dir / "models" / model)
        if done is None:
            pending.append(model)
        else:
            console.print(f"  {model}: finished earlier, reused ({_fmt(done.mean)})")
            results.append(done)
    if not pending:
        return results, list(results)
    usable = baselines.applicable(problem, fold_data) + (["finetune"] if fold_data[0].train.text else [])
    unusable = [m for m in pending if m not in usable]
    if unusable and len(unusable) == len(names) and not networks:
        needs = "; ".join(f"{m} needs {_member(m).needs}" for m in unusable)
        raise AutomlError(f"--models: {', '.join(unusable)} does not apply to {problem.comp.slug} ({needs}); "
                          f"choose from {', '.join(usable)}")
    order = [m for m in (*baselines.CHEAP_FIRST, "finetune") if m in pending and m in usable]
    for i, model in enumerate(order):
        left = budget.baselines_left()
        weights = [_member(m).weight for m in order[i:]]
        share = None if left is None or model == "dummy" else left * weights[0] / sum(weights)
        with budget.stage(f"baseline {model}"):
            result = _fit(model, run_dir, problem, fold_data, seed, console, share, device, keep_test_folds, encoder,
                          trend and model in TREES)
        if result is not None:
            results.append(result)
    return results, list(results)


def _fit(model: str, run_dir: Path, problem: Problem, fold_data, seed: int, console: Console,
         seconds: float | None, device: str = "cpu", keep_test_folds: bool = False,
         encoder: dict | None = None, trend: bool = False) -> CVResult | None:
    k = len(fold_data)
    try:
        with console.status(f"{model}: fold 1/{k}") as status:
            progress = lambda i: status.update(f"{model}: fold {i + 1}/{k}")  # noqa: E731
            if model == "finetune":
                from automl import finetune

                result = finetune.cross_validate(problem, fold_data, encoder["path"], seconds=seconds, device=device,
                                                 seed=seed, on_fold=progress)
            else:
                result = baselines.cross_validate(model, problem, fold_data, seed, seconds=seconds, device=device,
                                                  keep_test_folds=keep_test_folds, on_fold=progress, trend=trend)
    except baselines.Skipped as why:
        log.info("%s: %s", model, why)
        console.print(f"  {model}: {why}", highlight=False)
        return None
    except baselines.Failed as why:  # a library's error on a fold: one line, the run goes on
        log.info("%s: %s", model, why, exc_info=why.__cause__)  # the traceback goes to run.log only
        console.print(f"  {model}: {why}; going on without it (details in run.log)", highlight=False)
        return None
    save_result(run_dir / "models" / model, result)
    metric = problem.comp.metric
    log.info("%s: %s %.5f +- %.5f in %.1fs %s", model, metric, result.mean, result.std, result.seconds,
             result.info.get("note", ""))
    note = f" [{result.info['note']}]" if result.info.get("note") else ""
    console.print(f"  {model}: {metric} {_fmt(result.mean)} ± {_fmt(result.std)} ({result.seconds:.1f}s){note}",
                  highlight=False)
    return result


def _tabular(recipe) -> bool:
    """Whether a recipe searches only tables' network families (not a CNN over images, nor text models)."""
    from automl.models.tabular import TABULAR

    return set(recipe.space["family"]["choice"]) <= set(TABULAR)


def _short_of_time(results: list[CVResult]) -> list[CVResult]:
    """The boosted trees the clock stopped before early stopping did (fewer rounds or rows than they wanted)."""
    return [r for r in results if r.info.get("short_of_time") and r.name in baselines.BASELINES]


def _more_time(results: list[CVResult], members: list[CVResult], seconds: float, *, problem: Problem, fold_data,
               run_dir: Path, seed: int, console: Console, device: str, keep_test_folds: bool, trend: bool,
               budget: Budget) -> None:
    """The boosted trees the clock stopped, fitted again with more time (the best first, equal parts of
    `seconds`, each at least TOP_UP_MORE times what its first fit took); each replaces its first fit, in `results`
    and `members` and on disk, only when it scores better held out on the same folds."""
    sign = 1.0 if problem.metric.greater_is_better else -1.0
    short = sorted(_short_of_time(results), key=lambda r: -sign * r.mean)
    end = time.monotonic() + seconds
    for i, first in enumerate(short):
        share = (end - time.monotonic()) / (len(short) - i)
        if share < max(TOP_UP_MIN, TOP_UP_MORE * first.seconds):
            continue
        with budget.stage(f"baseline {first.name} (more time)"):
            try:
                again = baselines.cross_validate(first.name, problem, fold_data, seed, seconds=share, device=device,
                                                 keep_test_folds=keep_test_folds, trend=trend and first.name in TREES)
            except (baselines.Skipped, baselines.Failed) as why:
                log.info("%s (more time): %s", first.name, why)
                continue
        kept = problem.metric.better(again.mean, first.mean)
        line = (f"{first.name}: given {share:.0f}s (its first fit {first.seconds:.0f}s, stopped by the clock): "
                f"{problem.comp.metric} {_fmt(first.mean)} -> {_fmt(again.mean)} held out; "
                + ("kept" if kept else "no better: the first fit stays"))
        log.info(line)
        console.print(f"  {line}", highlight=False)
        if kept:
            again.info["note"] = "; ".join(x for x in (f"refitted with {share:.0f}s more (stopped by the clock at first)",
                                                      again.info.get("note")) if x)
            save_result(run_dir / "models" / first.name, again)
            for listed in (results, members):
                listed[:] = [again if r.name == first.name else r for r in listed]


def _member(name: str):
    """A baseline's entry in the table (weight, needs, library), finetune's beside them."""
    return FINETUNE if name == "finetune" else baselines.BASELINES[name]


def model_names(models: str, text_model: bool = False) -> tuple[list[str], bool]:
    """Baseline names to fit (with a --text-model, the encoder fine-tuned: finetune), and whether to search networks."""
    names, networks = [], False
    for part in [m.strip() for m in models.split(",") if m.strip()]:
        if part in ("baselines", "all"):
            names += [n for n in (*baselines.BASELINES, *(["finetune"] if text_model else [])) if n not in names]
        if part in ("networks", "all"):
            networks = True
        elif part in baselines.BASELINES:
            names.append(part)
        elif part == "finetune":
            if not text_model:
                raise UsageError("--models finetune fine-tunes the --text-model encoder: pass --text-model PATH too")
            names.append(part)
        elif part != "baselines":
            raise AutomlError(f"--models: unknown model {part!r}; expected all, baselines, networks or any of "
                              f"{', '.join(baselines.BASELINES)}")
    return names, networks


def _installed(names: list[str], models: str) -> tuple[list[str], list[str]]:
    """The names whose library imports, and a line for each left out. A GBDT named in --models
    (not merely part of all or baselines) that cannot be imported is a usage error: exit 2."""
    asked = {m.strip() for m in models.split(",")}
    kept, lines = [], []
    for name in names:
        library = _member(name).library
        why = library and baselines.missing(library)
        if not why:
            kept.append(name)
        elif name in asked:
            raise UsageError(f"--models {name}: {why}")
        else:
            lines.append(f"{name}: left out: {why}")
    return kept, lines


# A network's few key choices, in this order, as `summary` shows them: "resnet 2x128 adamw lr 1e-3 drop 0.2"
_SHAPE = (("depth", "width"), ("blocks", "width"), ("layers", "d_token"), ("n_blocks", "d_block"))


def summary(result: CVResult, note: str) -> str:
    """A few words on what a model is, for a terminal's one line; the full note stays in leaderboard.csv."""
    if result.kind == "network" and "params" in result.info:
        p = result.info["params"]
        shape = next((f"{p[a]}x{p[b]}" for a, b in _SHAPE if a in p and b in p), "")
        if "k" in p:
            shape = f"k{p['k']} {shape}"
        drop = p.get("dropout", p.get("ffn_dropout"))
        parts = [p.get("family", ""), shape, p.get("optimizer", ""), f"lr {p['lr']:.0e}" if "lr" in p else "",
                 f"drop {drop:.1f}" if drop is not None else ""]
        return " ".join(x for x in parts if x)
    if result.kind == "ensemble":
        members = len(result.info.get("weights", {}))
        how = {"stack": "stack", "halves": "greedy blend + stack"}.get(result.info.get("method"), "greedy blend")
        return f"{how} of {members} (below)"
    return note.split("; ")[0]


def choose_submission(results: list[CVResult], problem: Problem) -> tuple[CVResult, str]:
    """The model whose test predictions are submitted, and why: the ensemble, unless one of the models it is made
    of beats it held out beyond noise (ensemble.beats: on every fold, or by more than twice the standard error
    of the fold differences). The best of many CV scores is the best partly by luck: a single model that is
    ahead by less than that is not preferred to the blend, whose test predictions average its members' errors."""
    sign = 1.0 if problem.metric.greater_is_better else -1.0
    ranked = sorted(results, key=lambda r: -sign * r.mean)
    blended = next((r for r in results if r.kind == "ensemble"), None)
    if blended is None:
        return ranked[0], "the best cross-validated model"
    single = next((r for r in ranked if r.kind != "ensemble"), None)
    if single is not None and beats(problem, single, blended):
        return single, (f"{single.mean:.5g} against the ensemble's {blended.mean:.5g} held out, better beyond noise "
                        "over the folds")
    if single is not None and sign * single.mean > sign * blended.mean:
        ahead = sum(sign * a > sign * b for a, b in zip(single.fold_scores, blended.fold_scores, strict=False))
        return blended, (f"held out {blended.mean:.5g}; {single.name} scores {single.mean:.5g}, ahead on {ahead} of "
                         f"{len(blended.fold_scores)} folds: within noise, and the blend's test predictions average "
                         "its members' errors")
    return blended, f"held out {blended.mean:.5g}, at least its best member's"


def submitted_model(board: pd.DataFrame) -> str:
    """The model a leaderboard says was submitted (the first row of one written before that column)."""
    if "submitted" in board.columns and board["submitted"].any():
        return str(board.loc[board["submitted"].astype(bool), "model"].iloc[0])
    return str(board["model"].iloc[0])


def leaderboard(results: list[CVResult], problem: Problem, submitted: str | None = None) -> pd.DataFrame:
    """One row per model, best first by the competition metric's direction; `submitted` marks the model whose
    predictions submission.csv holds."""
    rows = []
    for r in results:
        row = {"model": r.name, "kind": r.kind, problem.comp.metric: r.mean, "std": r.std,
               "seconds": round(r.seconds, 2)}
        row |= {f"fold_{i}": s for i, s in enumerate(r.fold_scores)}
        row["note"] = r.info.get("note") or (baselines.BASELINES[r.name].description if r.name in baselines.BASELINES else "")
        row["summary"] = summary(r, row["note"])
        row["submitted"] = r.name == submitted
        rows.append(row)
    board = pd.DataFrame(rows).sort_values(problem.comp.metric, ascending=not problem.metric.greater_is_better,
                                           kind="stable")
    board.insert(0, "rank", np.arange(1, len(board) + 1))
    return board.reset_index(drop=True)


def _write_submission(run_dir: Path, comp: Competition, sample: pd.DataFrame, test_ids, best: CVResult,
                      problem: Problem) -> Path:
    frame = make_submission(comp, sample, test_ids, best.test, problem.classes, best.threshold)
    path = write_csv(run_dir / "submission.csv", frame)
    classes = None if problem.classes is None else [str(c) for c in problem.classes]
    problems = validate(path, comp, sample, classes)
    if problems:  # our own bug, never the user's: say so plainly
        raise AutomlError(f"{path} failed its own check: {problems[0]}; please report this")
    kaggle_working = Path("/kaggle/working")
    if kaggle_working.is_dir():
        shutil.copyfile(path, kaggle_working / "submission.csv")
    return path



def _fmt(value: float) -> str:
    return f"{value:.5f}" if abs(value) < 100 else f"{value:,.1f}"
