"""report.html and its figures, made from a run directory alone.

Everything comes from files the run wrote (leaderboard.csv, study.db, the ensemble's
result.json), so `automl report RUN_DIR` regenerates the report at any time. The HTML is
one self-contained file: figures are inlined PNGs, the style is inline, and nothing is
fetched when it opens, so it works offline and as a Kaggle notebook output.
"""

from __future__ import annotations

import base64
import html
import json
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: figures go to files
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
import pandas as pd  # noqa: E402

from automl.errors import AutomlError  # noqa: E402
from automl.folds import describe_ranges  # noqa: E402
from automl.io import atomic_write, write_text  # noqa: E402
from automl.metrics import get_metric  # noqa: E402

COLOURS = {"baseline": "#4c72b0", "network": "#dd8452", "ensemble": "#55a868"}


def write_report(run_dir: str | Path) -> Path:
    """Write report.html and figures/*.png for a run directory; return the HTML's path."""
    run_dir = Path(run_dir)
    board_path = run_dir / "leaderboard.csv"
    if not board_path.is_file():
        raise AutomlError(f"{run_dir}: no leaderboard.csv; is this a run directory (runs/SLUG/NAME)?")
    board = pd.read_csv(board_path)
    metric = board.columns[3]
    config = json.loads((run_dir / "config.json").read_text()) if (run_dir / "config.json").is_file() else {}
    figures = {"leaderboard chart": _leaderboard(board, metric)}
    study = _study(run_dir)
    if study is not None:
        figures |= _study_figures(study, metric)
    weights, method = _ensemble_weights(run_dir)
    if weights:
        figures["ensemble weights"] = _weights(weights, method)
    folder = run_dir / "figures"
    for name, figure in figures.items():
        atomic_write(folder / f"{name.replace(' ', '_')}.png", lambda tmp, f=figure: f.savefig(tmp, format="png", dpi=110))
        plt.close(figure)
    return write_text(run_dir / "report.html", _html(run_dir, config, board, metric, folder, figures))


def _leaderboard(board: pd.DataFrame, metric: str):
    board = board.iloc[::-1]  # best at the top of a horizontal bar chart
    figure, axis = plt.subplots(figsize=(8, 0.45 * len(board) + 1.2))
    colours = [COLOURS.get(kind, "#8172b2") for kind in board["kind"]]
    axis.barh(board["model"], board[metric], xerr=board["std"], color=colours, capsize=3)
    scores = board[metric]
    low, high = (scores - board["std"]).min(), (scores + board["std"]).max()
    axis.set_xlim(low - 0.05 * (high - low + 1e-9), high + 0.05 * (high - low + 1e-9))
    axis.set_xlabel(f"{metric} (mean ± std over folds; {get_metric(metric).direction})")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in COLOURS.values()]
    axis.legend(handles, list(COLOURS), loc="lower right", fontsize=8)
    figure.tight_layout()
    return figure


def _study(run_dir: Path) -> optuna.Study | None:
    path = run_dir / "study.db"
    if not path.is_file():
        return None
    url = f"sqlite:///{path.resolve()}"
    names = optuna.get_all_study_names(url)
    if not names:
        return None
    wanted = f"{run_dir.parent.name}/{run_dir.name}"
    study = optuna.load_study(study_name=wanted if wanted in names else names[0], storage=url)
    return study if study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)) else None


def _study_figures(study: optuna.Study, metric: str) -> dict:
    from optuna.visualization import matplotlib as vis

    figures = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna marks its matplotlib plots experimental
        figures["optimization history"] = vis.plot_optimization_history(study, target_name=f"{metric} on one fold").figure
        try:
            figures["hyperparameter importances"] = vis.plot_param_importances(study).figure
        except (ValueError, RuntimeError):  # too few complete trials to rank parameters
            pass
    for figure in figures.values():
        figure.set_size_inches(8, 4.5)
        figure.tight_layout()
    figures["best trial learning curve"] = _learning_curve(study, metric)
    return figures


def _learning_curve(study: optuna.Study, metric: str):
    """The best trial's validation score per epoch on the search's fold, and per fold once completed."""
    completed = [int(key[3:]) for key in study.user_attrs if key.startswith("cv:")]
    sign = 1 if study.direction.name == "MAXIMIZE" else -1
    best = study.best_trial if not completed else study.trials[
        max(completed, key=lambda n: sign * study.user_attrs[f"cv:{n}"]["mean"])]
    curve = best.user_attrs.get("curve", [])
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    if curve:
        left.plot(range(1, len(curve) + 1), curve, marker="o", color=COLOURS["network"])
    left.set(xlabel="epoch (the search's fold)", ylabel=f"validation {metric}", title=f"trial #{best.number}")
    folds = study.user_attrs.get(f"cv:{best.number}", {}).get("fold_scores", [])
    right.bar(range(1, len(folds) + 1), folds, color=COLOURS["network"])
    if folds:
        right.set_ylim(min(folds) - 0.1 * (max(folds) - min(folds) + 1e-9), max(folds) + 0.1 * (max(folds) - min(folds) + 1e-9))
    right.set(xlabel="fold", ylabel=metric, title="score per fold" if folds else "not completed on every fold")
    figure.tight_layout()
    return figure


def _timings(run_dir: Path) -> str:
    path = run_dir / "timings.json"
    if not path.is_file():
        return ""
    timings = json.loads(path.read_text())
    stages = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in timings["stages"].items())
    budget = f" of --timeout {timings['timeout']:g}s" if timings.get("timeout") else ""
    return f"Time: {timings['elapsed']:.1f}s{budget} ({stages})."


def _ensemble_weights(run_dir: Path) -> tuple[dict, str]:
    """The members' weights in the greedy blend, or their shares of the stack's coefficients; and which."""
    path = run_dir / "models" / "ensemble" / "result.json"
    info = json.loads(path.read_text())["info"] if path.is_file() else {}
    return info.get("weights", {}), info.get("method", "greedy")


def _weights(weights: dict, method: str = "greedy"):
    figure, axis = plt.subplots(figsize=(7, 0.4 * len(weights) + 1.2))
    axis.barh(list(weights), list(weights.values()), color=COLOURS["ensemble"])
    axis.set_xlabel({"stack": "share of the stack's standardised coefficients",
                     "halves": "half its greedy blend weight plus half its share of the stack"}.get(method,
                                                                                                   "weight in the greedy blend"))
    figure.tight_layout()
    return figure


def _extra(config: dict, run_dir: Path) -> str:
    """A paragraph on the --extra-train rows, when the run had some: whether they helped, and so trained."""
    files = config.get("extra_train") or []
    if not files:
        return ""
    listed = ", ".join(f"{html.escape(str(f['path']))} ({f['rows']:,} rows, sha256 {f['sha256'][:12]})" for f in files)
    decided = run_dir / "extra.json"
    chosen = json.loads(decided.read_text()) if decided.is_file() else {"kept": True, "note": ""}
    why = f" Whether they help: {html.escape(chosen['note'])}." if chosen.get("note") else ""
    if not chosen.get("kept", True):
        return f"<p>Extra training rows: {sum(f['rows'] for f in files):,} from {listed}, left out.{why}</p>"
    return (f"<p>Extra training rows: {sum(f['rows'] for f in files):,} from {listed}. They trained every fold's "
            "models (on folds in time, those whose own training rows reach their time) and were never scored: every "
            f"score above is on the competition's own rows.{why}</p>")


def _pseudo(run_dir: Path) -> str:
    """A paragraph on --pseudo-label's second pass: what it did, and whether it was kept."""
    path = run_dir / "pseudo.json"
    if not path.is_file():
        return ""
    lines = json.loads(path.read_text()).get("lines", [])
    return "<p>" + "<br>".join(html.escape(line) for line in lines) + "</p>" if lines else ""


def _forecast(run_dir: Path) -> str:
    """A forecast's validation: the test's horizon, each fold's dates, and whether the trees learned a trend."""
    path = run_dir / "folds.json"
    if not path.is_file():
        return ""
    ranges = json.loads(path.read_text())
    lines = describe_ranges(ranges)
    trend = run_dir / "trend.json"
    if trend.is_file():
        lines.append("trend: " + json.loads(trend.read_text())["note"])
    how = ("Each fold validates a stretch as long as the test's, as far after its training rows as the test lies after "
           "train's" if "test" in ranges else "Each fold validates a later stretch than it trains on")
    return (f"<h2>Folds in time</h2><p>{how}; the test is forecast by each model fitted once more on every row.</p><ul>"
            + "".join(f"<li>{html.escape(line)}</li>" for line in lines) + "</ul>")


def _why(best, top, metric: str) -> str:
    """Why the submitted model is not the top row, where it is not."""
    if best["model"] == top["model"]:
        return ""
    return (f": {html.escape(str(top['model']))} scores {top[metric]:.5f}, ahead by less than the noise over the "
            "folds, and a blend's test predictions average its members' errors")


def _networks(run_dir: Path) -> str:
    """What became of the networks, where none was completed (automl/workers.py writes it)."""
    path = run_dir / "networks.json"
    note = json.loads(path.read_text()).get("note") if path.is_file() else ""
    return f"<p><b>Networks</b>: {html.escape(note)}.</p>" if note else ""


def _html(run_dir: Path, config: dict, board: pd.DataFrame, metric: str, folder: Path, figures: dict) -> str:
    title = f"automl: {config.get('slug', run_dir.parent.name)} / {run_dir.name}"
    folds = sum(c.startswith("fold_") for c in board.columns) or config.get("folds", "?")  # a forecast may have fewer
    marked = board["submitted"].astype(bool) if "submitted" in board.columns and board["submitted"].any() else board.index == 0
    best, top = board[marked].iloc[0], board.iloc[0]
    images = []
    for name in figures:
        data = base64.b64encode((folder / f"{name.replace(' ', '_')}.png").read_bytes()).decode()
        images.append(f"<h2>{html.escape(name.capitalize())}</h2><img alt='{html.escape(name)}' src='data:image/png;base64,{data}'>")
    table = board.drop(columns=[c for c in board.columns if c.startswith("fold_")]).to_html(
        index=False, float_format=lambda v: f"{v:.5f}", border=0, escape=True)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.9rem; }}
th, td {{ padding: 0.25rem 0.6rem; border-bottom: 1px solid #ddd; text-align: left; }}
img {{ max-width: 100%; }} .best {{ background: #eef6ee; padding: 0.8rem; border-radius: 6px; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="best">Submitted: <b>{html.escape(str(best['model']))}</b> ({html.escape(str(best['kind']))}), {html.escape(metric)}
{best[metric]:.5f} ± {best['std']:.5f} over {folds} folds ({get_metric(metric).direction}).
The submission is written from this model{_why(best, top, metric)}.</p>
{_extra(config, run_dir)}{_pseudo(run_dir)}{_forecast(run_dir)}{_networks(run_dir)}
<p>Network trials are ranked on one fold (the optimization history shows that score); the best few are then
trained on every fold, and only those cross-validated scores are on the leaderboard. Notes say how each model
was sized to the time budget. {html.escape(_timings(run_dir))}</p>
<h2>Leaderboard</h2>{table}
{''.join(images)}
</body></html>
"""
