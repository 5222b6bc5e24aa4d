"""The `automl` command: parse options, call the library, print with rich.

Expected errors (AutomlError) print one line and exit 1; usage errors exit 2 (typer).
The library's warnings (logger "automl") print as one "warning:" line each.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from automl import api, runner
from automl.errors import AutomlError
from automl.fetch import fetch as fetch_data
from automl.folds import describe_ranges
from automl.metrics import get_metric, names

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="From a Kaggle competition's name to a cross-validated leaderboard and a valid submission.csv.")
out = Console()
err = Console(stderr=True)

DATA_DIR = typer.Option("data", "--data-dir", help="Folder that holds each competition's files, one subfolder per slug.")
SOURCE = typer.Option(None, "--from", help="Use this local zip or folder instead of downloading from Kaggle.")
EXTRA_ALWAYS = typer.Option(False, "--extra-train-always", help="Train with the --extra-train rows even where a quick "
                            "GBDT on the folds scores better without them (by default they are kept only when they help).")
EXTRA = typer.Option(None, "--extra-train", help="More labelled rows (a CSV, a zip or a folder holding one) with the "
                     "competition's feature and target columns, such as the original dataset a Playground table came from: "
                     "they train in every fold (on folds in time, those whose own training rows reach their time) and are never "
                     "scored. Repeatable.")
TEXT_MODEL = typer.Option(None, "--text-model", help="A local Hugging Face model folder (config.json, weights, tokenizer; "
                          "never downloaded): free-text columns become its embeddings beside the other columns, and the "
                          "finetune baseline fine-tunes it per fold.")
METRIC = typer.Option(None, "--metric", help="The metric to score and select models by, overriding competitions/SLUG.yaml, "
                      f"Kaggle's record and the guess: one of {', '.join(names())}.")


class _WarningLines(logging.Handler):
    """Print the library's warnings on stderr, one line each."""

    def emit(self, record: logging.LogRecord) -> None:
        err.print(f"[yellow]warning:[/] {record.getMessage()}", highlight=False, soft_wrap=True)


if not any(h.get_name() == "automl-cli" for h in logging.getLogger("automl").handlers):  # once, even as __main__
    _handler = _WarningLines(logging.WARNING)
    _handler.set_name("automl-cli")
    logging.getLogger("automl").addHandler(_handler)


def _fail(message: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _check_metric(metric: str | None) -> None:
    """An unknown --metric is a usage error: one line listing the names, exit 2."""
    if metric is not None:
        try:
            get_metric(metric, "--metric")
        except AutomlError as exc:
            _fail(str(exc), 2)


@app.command()
def fetch(slug: str = typer.Argument(..., help="Competition slug, as in its kaggle.com URL."),
          data_dir: Path = DATA_DIR, source: Path = SOURCE) -> None:
    """Download and unpack a competition's files (a no-op when they are already there)."""
    try:
        folder = fetch_data(slug, data_dir, source)
    except AutomlError as exc:
        _fail(str(exc))
    files = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    out.print(f"{slug}: {len(files)} files in {folder}: {', '.join(files)}", highlight=False)


@app.command()
def inspect(slug: str = typer.Argument(..., help="Competition slug."), data_dir: Path = DATA_DIR,
            source: Path = SOURCE, metric: str = METRIC, extra_train: list[Path] = EXTRA,
            save: bool = typer.Option(False, "--save", help="Write competitions/SLUG.yaml (with --metric's metric) to edit."),
            folds: int = typer.Option(5, "--folds", help="Folds to show for a forecast (as `automl run --folds`).")) -> None:
    """Show the competition spec automl uses, where its metric came from, and the role it gives each column."""
    _check_metric(metric)
    try:
        result = api.inspect(slug, data_dir=data_dir, source=source, save=save, metric=metric, extra_train=extra_train or (),
                             folds=folds)
    except AutomlError as exc:
        _fail(str(exc), getattr(exc, "exit_code", 1))
    comp = result.competition
    origin = ("[yellow]a guess: pass --metric NAME[/]" if result.metric_source == "guess"
              else f"from {result.metric_source}")
    targets = f"targets [cyan]{', '.join(comp.targets)}[/]" if comp.targets else f"target [cyan]{comp.target}[/]"
    out.print(f"[bold]{comp.title or slug}[/]: id [cyan]{comp.id}[/], {targets}, "
              f"task [cyan]{comp.task}[/], metric [cyan]{comp.metric}[/] ({origin}), labels [cyan]{comp.labels}[/]",
              highlight=False)
    if comp.task_rule:
        out.print(f"Task: [cyan]{comp.task}[/], chosen by {comp.task_rule}.", highlight=False)
    if comp.folds == "time":
        why = (f"every {comp.test} {comp.time_column} is later than {comp.train}'s" if "folds" in comp.inferred
               else "folds: time in the YAML")
        if result.folds and "error" in result.folds:
            how = "its folds in time cannot be made (below)"
        elif result.folds and "test" in result.folds:
            made = len(result.folds["folds"])
            how = (f"{made} folds in time{f' (of --folds {folds}: half the history or more trains the first)' if made < folds else ''}, "
                   "each validating a stretch as long as the test, as far after its training rows as the test lies after "
                   "train's; the test is forecast by each model refitted on every row")
        else:
            how = "folds are an expanding window in time, each validated on a later stretch than it trains on"
        out.print(f"Shape: a forecast on [cyan]{comp.time_column}[/] ({why}): {how}.", highlight=False)
        for line in describe_ranges(result.folds) if result.folds else []:
            out.print(f"  {line}", highlight=False)
    if result.extra:
        out.print(f"Extra training rows: {sum(f['rows'] for f in result.extra):,} from "
                  + ", ".join(f"{f['path']} ({f['rows']:,})" for f in result.extra)
                  + "; they train in every fold (on folds in time, those whose own training rows reach their time) "
                    "and are never scored.", highlight=False)
    if result.kaggle and result.kaggle.get("max_daily_submissions"):
        out.print(f"Kaggle takes {result.kaggle['max_daily_submissions']} submissions a day.", highlight=False)
    if comp.inferred:
        out.print(f"[yellow]Inferred from the data (no competitions/{slug}.yaml): check {', '.join(comp.inferred)}; "
                  f"`automl inspect {slug} --save` writes the file to edit.[/]", highlight=False)
    table = Table("column", "role", "dtype", "missing", "distinct", title="columns of train")
    for row in result.columns.itertuples():
        table.add_row(row.column, row.role, row.dtype, f"{row.missing:.0%}", str(row.distinct))
    out.print(table)
    if result.saved:
        out.print(f"saved {result.saved}")


MODELS = typer.Option("all", "--models", help="Comma-separated: all, baselines, networks, or baseline names such as hist_gb,linear.")
TRIALS = typer.Option(None, "--trials", help="Network trials to finish in the study (default: the pipeline's).")
TIMEOUT = typer.Option(None, "--timeout", help="Seconds for the whole command, from its start: reading, preprocessing, "
                       "baselines (sized to their share), the network search (half of what is left), blend and outputs.")
PIPELINE = typer.Option("auto", "--pipeline",
                        help="Search recipe: auto (image, text or tabular, from the columns), a name in pipelines/, or a YAML path.")
STORAGE = typer.Option(None, "--storage", help="Optuna storage URL (default: SQLite in the run directory).")
DEVICE = typer.Option("auto", "--device", help="auto (the GPU when there is one), cpu or cuda.")
PRECISION = typer.Option("32-true", "--precision", help="32-true, or bf16-mixed on a GPU that supports it.")
NAME = typer.Option("default", "--name", help="Run name; running the same name again resumes it.")
FOLDS = typer.Option(5, "--folds", help="Number of cross-validation folds.")
SEED = typer.Option(0, "--seed", help="Seed for the folds, the models and the sampler.")
RUNS_DIR = typer.Option("runs", "--runs-dir", help="Where run directories go (RUNS_DIR/SLUG/NAME).")


@app.command()
def run(slug: str = typer.Argument(..., help="Competition slug."), source: Path = SOURCE, name: str = NAME,
        models: str = MODELS, folds: int = FOLDS, seed: int = SEED, trials: int = TRIALS, timeout: float = TIMEOUT,
        pipeline: str = PIPELINE, storage: str = STORAGE, device: str = DEVICE, precision: str = PRECISION,
        workers: int = typer.Option(0, "--workers", help="Search processes on this machine, sharing the study: 0 is one per CPU core "
                                     "(up to 4; one on a GPU)."),
        metric: str = METRIC, extra_train: list[Path] = EXTRA, extra_always: bool = EXTRA_ALWAYS,
        pseudo_label: bool = typer.Option(False, "--pseudo-label", help="After the first blend, train the best baselines "
                                          "again with confident test rows added to every fold (classification; "
                                          "kept only when the held-out score improves)."),
        text_model: Path = TEXT_MODEL, runs_dir: Path = RUNS_DIR, data_dir: Path = DATA_DIR) -> None:
    """Cross-validate baselines and searched networks on shared folds, print the leaderboard, write submission.csv."""
    _run(slug, source=source, name=name, models=models, folds=folds, seed=seed, trials=trials, timeout=timeout,
         pipeline=pipeline, storage=storage, device=device, precision=precision, workers=workers, runs_dir=runs_dir,
         data_dir=data_dir, metric=metric, extra_train=tuple(extra_train or ()), pseudo_label=pseudo_label,
         text_model=text_model, extra_always=extra_always)


@app.command()
def search(slug: str = typer.Argument(..., help="Competition slug."), source: Path = SOURCE, name: str = NAME,
           folds: int = FOLDS, seed: int = SEED, trials: int = TRIALS, timeout: float = TIMEOUT,
           pipeline: str = PIPELINE, storage: str = STORAGE, device: str = DEVICE, precision: str = PRECISION,
           metric: str = METRIC, extra_train: list[Path] = EXTRA, extra_always: bool = EXTRA_ALWAYS,
           text_model: Path = TEXT_MODEL, runs_dir: Path = RUNS_DIR, data_dir: Path = DATA_DIR) -> None:
    """Run only the neural search (same folds, metric and run directory as `automl run`)."""
    _run(slug, source=source, name=name, models="networks", folds=folds, seed=seed, trials=trials, timeout=timeout,
         pipeline=pipeline, storage=storage, device=device, precision=precision, runs_dir=runs_dir, data_dir=data_dir,
         metric=metric, extra_train=tuple(extra_train or ()), text_model=text_model, extra_always=extra_always)


@app.command()
def worker(slug: str = typer.Argument(..., help="Competition slug."), source: Path = SOURCE, name: str = NAME,
           folds: int = FOLDS, seed: int = SEED, trials: int = TRIALS, timeout: float = TIMEOUT,
           pipeline: str = PIPELINE, storage: str = STORAGE, device: str = DEVICE, precision: str = PRECISION,
           metric: str = METRIC, extra_train: list[Path] = EXTRA, text_model: Path = TEXT_MODEL, runs_dir: Path = RUNS_DIR,
           data_dir: Path = DATA_DIR) -> None:
    """Join a run's network search (any number of workers, on any machines sharing --storage); no blend or submission."""
    _check_metric(metric)
    from automl.workers import worker as run_worker

    try:
        run_worker(slug, name=name, storage=storage, trials=trials, timeout=timeout, pipeline=pipeline, source=source, started=STARTED,
                   folds=folds, seed=seed, device=device, precision=precision, runs_dir=runs_dir, data_dir=data_dir,
                   console=err, metric=metric, extra_train=tuple(extra_train or ()), text_model=text_model)
    except AutomlError as exc:
        _fail(str(exc), getattr(exc, "exit_code", 1))
    except KeyboardInterrupt:
        _fail("interrupted; finished trials are kept in the study", 130)


def _run(slug: str, **options) -> None:
    if options["device"] not in ("auto", "cpu", "cuda"):
        _fail(f"--device {options['device']!r}: expected auto, cpu or cuda", 2)
    if options["precision"] not in ("32-true", "bf16-mixed"):
        _fail(f"--precision {options['precision']!r}: expected 32-true or bf16-mixed", 2)
    _check_metric(options["metric"])
    try:
        result = runner.run(slug, console=err, started=STARTED, **options)
    except AutomlError as exc:
        _fail(str(exc), getattr(exc, "exit_code", 1))
    except KeyboardInterrupt:
        _fail(f"interrupted; finished models and trials are kept in {options['runs_dir']}/{slug}/{options['name']} "
              "and reused when you run the same command again", 130)
    config = json.loads((result.run_dir / "config.json").read_text())
    out.print(leaderboard_table(result.leaderboard, len(config["competition"].get("targets") or ()) or 1))
    extra = config.get("extra_train") or []
    decided = result.run_dir / "extra.json"
    if extra and decided.is_file() and not json.loads(decided.read_text()).get("kept", True):
        out.print(f"not trained with the {sum(f['rows'] for f in extra):,} extra rows (--extra-train): they did not "
                  "help on the folds", highlight=False)
    elif extra:
        out.print(f"trained with {sum(f['rows'] for f in extra):,} extra rows (--extra-train), scored on the "
                  "competition's own rows only", highlight=False)
    line = blend_line(result.leaderboard, result.run_dir, out.width)
    if line:
        out.print(line, highlight=False)
    networks = result.run_dir / "networks.json"
    note = json.loads(networks.read_text()).get("note") if networks.is_file() else ""
    if note:
        out.print(f"networks: {note}", highlight=False)
    out.print(f"submission: {result.submission}  (from {runner.submitted_model(result.leaderboard)})", highlight=False)
    out.print(f"report: {result.paths['report']}", highlight=False)


SHOWN_NETWORKS = 3  # networks a terminal's leaderboard shows; leaderboard.csv and the report list every one


def leaderboard_table(board, targets: int = 1) -> Table:
    """The leaderboard, best first, one line a model at 80 columns and wider: the model, its score and a short
    summary (cut with an ellipsis where the terminal ends). The full note is in leaderboard.csv and report.html.
    Of the networks, the best SHOWN_NETWORKS, and a caption saying how many more leaderboard.csv holds."""
    metric = board.columns[3]
    networks = board.index[board["kind"] == "network"]
    hidden = len(networks) - SHOWN_NETWORKS
    shown = board.drop(networks[SHOWN_NETWORKS:]) if hidden > 0 else board
    columns = f", each the mean of its {targets} target columns' {metric}" if targets > 1 else ""
    table = Table(title=f"leaderboard: {metric} over the folds{columns}, {get_metric(metric).direction}",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True,
                  caption=f"+{hidden} more networks in leaderboard.csv" if hidden > 0 else None, caption_justify="left")
    rows = [[str(row["rank"]), row["model"], _score(row[metric]), _score(row["std"]), f"{row['seconds']:.0f}",
             str(row.get("summary") or row["note"])] for row in shown.to_dict("records")]
    for i, column in enumerate(("#", "model", metric, "± std", "sec")):  # never squeezed: the summary gives way
        width = max([len(column)] + [len(r[i]) for r in rows])
        table.add_column(column, no_wrap=True, min_width=width, justify="right" if i >= 2 else "left")
    table.add_column("what it is", no_wrap=True, overflow="ellipsis", ratio=1)
    for row in rows:
        table.add_row(*row)
    return table


def _score(value: float) -> str:
    return f"{value:.5f}" if abs(value) < 100 else f"{value:,.1f}"


def blend_line(board, run_dir: Path, width: int = 80) -> str | None:
    """The blend's members and their weights (or shares of the stack), for a line under the table."""
    path = run_dir / "models" / "ensemble" / "result.json"
    if "ensemble" not in set(board["model"]) or not path.is_file():
        return None
    info = json.loads(path.read_text())["info"]
    weights = sorted(info.get("weights", {}).items(), key=lambda kv: -kv[1])
    how = {"stack": "stack shares", "halves": "shares (half greedy blend, half stack)"}.get(info.get("method"),
                                                                                         "blend weights")
    line = f"ensemble {how}:"
    for i, (name, weight) in enumerate(weights):  # as many members as one line of the terminal holds
        more = f" +{len(weights) - i - 1} more" if i < len(weights) - 1 else ""
        if i and len(line) + len(f" {name} {weight:.2f},") + len(more) > width:
            return f"{line.rstrip(',')} +{len(weights) - i} more"
        line += f" {name} {weight:.2f},"
    return line.rstrip(",")


@app.command()
def demo(timeout: float = typer.Option(90, "--timeout", help="Seconds for the run (baselines, search, blend)."),
         runs_dir: Path = RUNS_DIR, data_dir: Path = DATA_DIR) -> None:
    """Run the whole pipeline offline on a competition built from scikit-learn's bundled data."""
    from automl.demo import demo as run_demo

    try:
        result = run_demo(timeout=timeout, runs_dir=runs_dir, data_dir=data_dir, console=err)
    except AutomlError as exc:
        _fail(str(exc))
    board = result.run.leaderboard
    out.print(leaderboard_table(board))
    line = blend_line(board, result.run.run_dir, out.width)
    if line:
        out.print(line, highlight=False)
    chosen = board[board["model"] == runner.submitted_model(board)].iloc[0]
    out.print(f"submission: {result.run.submission} (valid; from {chosen['model']})", highlight=False)
    out.print(f"report:     {result.run.paths['report']}", highlight=False)
    out.print(f"cross-validated {result.metric} {chosen[result.metric]:.4f}; scored like Kaggle on the "
              f"held-back test labels: {result.holdout:.4f}", highlight=False)


@app.command()
def report(run_dir: Path = typer.Argument(..., help="A run directory, such as runs/titanic/default.")) -> None:
    """Regenerate a run's report.html and figures from the files the run wrote."""
    from automl.report import write_report

    try:
        path = write_report(run_dir)
    except AutomlError as exc:
        _fail(str(exc))
    out.print(f"report: {path}", highlight=False)


@app.command()
def submit(slug: str = typer.Argument(..., help="Competition slug."),
           message: str = typer.Option(..., "-m", "--message", help="Description shown on Kaggle's submissions page."),
           run: str = typer.Option("default", "--run", help="Run name whose submission.csv is sent."),
           runs_dir: Path = RUNS_DIR, data_dir: Path = DATA_DIR) -> None:
    """Validate a run's submission.csv, submit it to Kaggle, and record it in the run directory."""
    try:
        record = api.submit(slug, message, run=run, runs_dir=runs_dir, data_dir=data_dir)
    except AutomlError as exc:
        _fail(str(exc))
    out.print(f"submitted {record['file']} ({record['model']}): {record['kaggle']}", highlight=False)
    out.print(f"see your score: automl submissions {slug}", highlight=False)


@app.command()
def submissions(slug: str = typer.Argument(..., help="Competition slug.")) -> None:
    """List your past submissions to a competition and their scores."""
    from automl.fetch import submissions as list_submissions

    try:
        rows = list_submissions(slug)
    except AutomlError as exc:
        _fail(str(exc))
    table = Table("date", "file", "description", "status", "public", "private", title=f"submissions to {slug}")
    for row in rows:
        table.add_row(*(str(row[k] or "") for k in ("date", "file", "description", "status", "public", "private")))
    out.print(table if rows else f"no submissions to {slug} yet")


@app.command()
def validate(file: Path = typer.Argument(..., help="The submission CSV to check."),
             slug: str = typer.Argument(..., help="Competition slug."),
             data_dir: Path = DATA_DIR, source: Path = SOURCE, metric: str = METRIC) -> None:
    """Check a submission file against the competition's sample submission, as Kaggle would."""
    _check_metric(metric)
    try:
        problems = api.validate(file, slug, data_dir=data_dir, source=source, metric=metric)
    except AutomlError as exc:
        _fail(str(exc))
    if problems:
        for problem in problems:
            err.print(f"[red]✗[/] {file}: {problem}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    out.print(f"[green]✓[/] {file} is a valid submission for {slug}", highlight=False)


@app.command()
def kernel(slug: str = typer.Argument(..., help="Competition slug."),
           out_dir: Path = typer.Option(None, "--out", help="The notebook folder to write (default: kernels/SLUG)."),
           user: str = typer.Option(None, "--user", help="Your Kaggle username, the notebook's and the wheelhouse's owner "
                                    "(default: the one your Kaggle credentials name)."),
           timeout: float = typer.Option(3600, "--timeout", help="Seconds for `automl run` inside the notebook."),
           models: str = MODELS, metric: str = METRIC,
           gpu: bool = typer.Option(False, "--gpu", help="Ask Kaggle for a GPU and search the networks on it."),
           push: bool = typer.Option(False, "--push", help="Upload the wheelhouse as your private dataset "
                                     "automl-wheelhouse and push the notebook, which Kaggle then runs.")) -> None:
    """Write a Kaggle notebook that runs `automl run` on the competition with the internet off, and a wheelhouse
    to attach; --push uploads both."""
    from automl import kernel as notebooks

    _check_metric(metric)
    folder = out_dir or Path("kernels") / slug
    try:
        with err.status("building the wheelhouse (automl and its pure-Python dependencies)"):
            made, pushed = notebooks.make(slug, folder, user=user, timeout=timeout, models=models, gpu=gpu,
                                          metric=metric, push=push)
    except AutomlError as exc:
        _fail(str(exc), getattr(exc, "exit_code", 1))
    notebook = folder / f"{notebooks.kernel_slug(slug)}.ipynb"
    out.print(f"wrote {notebook} and kernel-metadata.json ({made.ref}, internet off)", highlight=False, soft_wrap=True)
    out.print(f"wheelhouse: {folder / 'wheelhouse'} ({len(made.wheels)} wheels); from Kaggle's image: "
              f"{', '.join(made.from_image)}", highlight=False, soft_wrap=True)
    for line in pushed:
        out.print(f"pushed: {line}", highlight=False, soft_wrap=True)
    if not push:
        out.print(f"push it: automl kernel {slug} --push   (or: kaggle datasets create -p {folder / 'wheelhouse'}, "
                  f"then kaggle kernels push -p {folder})", highlight=False, soft_wrap=True)


STARTED: float | None = None  # when the `automl` process started: the budget's clock counts imports too


def main() -> None:
    global STARTED
    from automl.budget import process_started

    STARTED = process_started()
    app(prog_name="automl")


if __name__ == "__main__":
    sys.exit(main())
