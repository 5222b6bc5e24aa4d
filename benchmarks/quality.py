"""The quality suite: every bundle in the mirror, a quarter of train.csv held back, scored as Kaggle would.

For each bundle in ../shared/kaggle/competitions (or AUTOML_MIRROR): a quarter of train.csv's rows is held
back as the test (a fixed seed; where the test follows train in time, the latest quarter by the spec's time
column, or by id where the rows are consecutive days), a full `automl run SLUG --from HELD-BACK.zip --timeout T`
(images longer), and its submission.csv scored on those rows with the competition's metric. Each score's noise
is the spread of that score over bootstrap resamples of the held-back rows. CV alone is not the judge: a
forecast's CV once said 9.6 where its held-back months said 37.9.

    python benchmarks/quality.py                                  # every bundle: about 35 minutes on 2 cores
    python benchmarks/quality.py --only titanic,playground-series-s3e12 --timeout 60
    python benchmarks/quality.py --record                         # and add the row to RESULTS.md / quality.json
    python benchmarks/quality.py --compare runs/quality/0af6c24   # wins, ties and losses against a kept run
    python benchmarks/quality.py --judge runs/quality/a1,runs/quality/a2 runs/quality/b1,runs/quality/b2   # runs, not one

Run from a checkout's root (`python -m automl.cli` imports the automl of the current folder). Each run's
held-back predictions are kept under runs/quality/COMMIT/ (not committed), so two runs of the suite are
compared on the same rows, paired: a difference is a win or a loss only beyond the noise of the difference
(its bootstrap standard deviation); otherwise a tie. One run against one is not enough: the same code run
twice won 6 and lost 5 of 15 that way (its networks differ run to run). `--judge` compares groups of kept
runs, with each group's run-to-run spread counted in the noise.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
from automl.competition import load, read_tables  # noqa: E402
from automl.fetch import fetch, read_record  # noqa: E402
from automl.metrics import get_metric, score  # noqa: E402

MIRROR = Path(os.environ.get("AUTOML_MIRROR", ROOT.parent / "shared" / "kaggle" / "competitions"))
LONGER = {"digit-recognizer": 300}  # a suite setting, not product code: a CNN over 28x28 images needs more on 2 cores
# Bundles whose rows are in time order without a date column (the bundles' README: consecutive days, the test
# the next two years): held back by the latest ids, as the leaderboard's test follows train.
IN_ORDER = {"playground-series-s5e3": "id"}
SHARE, SEED, BOOTSTRAP = 0.25, 0, 200
JSON = HERE / "quality.json"


def held_back(slug: str, folder: Path, share: float = SHARE, seed: int = SEED) -> tuple[Path, pd.Series, object]:
    """The bundle with `share` of its train rows as the test (ids kept), those rows' answers by id, and the spec."""
    unpacked = fetch(slug, folder / "original", MIRROR / f"{slug}.zip")  # train.csv.zip and the like unpacked
    comp = load(slug, unpacked, None, read_record(unpacked))
    full, original_test, sample = read_tables(comp, unpacked, f"competitions/{slug}.yaml")
    order = comp.time_column or IN_ORDER.get(slug)
    if order:  # the latest quarter: the test follows train
        key = full[order]
        key = pd.to_numeric(key) if order in IN_ORDER.values() else pd.to_datetime(key, format="mixed")
        back = (key.rank(method="first") > (1 - share) * len(full)).to_numpy()
    else:
        back = np.random.default_rng(seed).random(len(full)) < share
    train, test = full[~back], full[back]
    blank = test[[c for c in original_test.columns if c in test.columns]]  # only what test.csv holds (bike: no casual)
    answers = pd.DataFrame({comp.id: test[comp.id].astype(str).to_numpy()}) if comp.id in test else pd.DataFrame(
        {comp.id: np.arange(1, len(test) + 1).astype(str)})
    answers = pd.concat([answers, test[list(comp.target_columns)].reset_index(drop=True)], axis=1)
    submission = pd.DataFrame({c: answers[comp.id].to_numpy() if c == comp.id else sample[c].iloc[0]
                               for c in sample.columns})
    bundle = folder / f"{slug}.zip"
    with zipfile.ZipFile(bundle, "w", zipfile.ZIP_DEFLATED) as archive:
        if comp.train == comp.test:  # one table: the held-back rows with an empty target
            archive.writestr(comp.train, pd.concat([train, blank]).to_csv(index=False))
        else:
            archive.writestr(comp.train, train.to_csv(index=False))
            archive.writestr(comp.test, blank.to_csv(index=False))
        archive.writestr(comp.sample_submission, submission.to_csv(index=False))
    return bundle, answers, comp


def as_predictions(comp, frame: pd.DataFrame, classes: list[str] | None) -> np.ndarray:
    """A submission's columns in the form the metrics score: probabilities (n, k) for classes (a one-hot
    row for a label), values, or a column per target."""
    columns = list(comp.submission_columns)
    if comp.targets:
        return frame[columns].to_numpy(float)
    if classes is None:
        return frame[columns[0]].to_numpy(float)
    if comp.labels == "proba":
        index = {c: i for i, c in enumerate(comp.classes)}
        return frame[[columns[index[c]] for c in classes]].to_numpy(float)
    if comp.labels == "float":  # the positive class's probability
        p = frame[columns[0]].to_numpy(float)
        return np.column_stack([1 - p, p])
    if get_metric(comp.metric).decision == "rank":  # map@k: k classes a row, the first most probable
        ranked = frame[columns[0]].astype(str).str.split()
        out = np.zeros((len(frame), len(classes)))
        for j in range(max(ranked.str.len())):
            named = ranked.str[j]
            for i, c in enumerate(classes):
                out[(named == c).to_numpy(), i] += 1.0 / (j + 2)
        return out
    labels = frame[columns[0]].astype(str).str.replace(r"\.0$", "", regex=True)
    return np.column_stack([(labels == c).to_numpy(float) for c in classes])


def truth_of(comp, answers: pd.DataFrame) -> tuple[np.ndarray, list[str] | None]:
    """The held-back answers as the metrics take them (class codes in sorted order), and the classes."""
    y = answers[list(comp.target_columns)]
    if comp.task not in ("binary", "multiclass"):
        return y.to_numpy(float) if comp.targets else y.iloc[:, 0].to_numpy(float), None
    text = y.iloc[:, 0].astype(str).str.replace(r"\.0$", "", regex=True)
    classes = list(comp.classes) if comp.labels == "proba" else sorted(text.unique(), key=_number_first)
    return text.map({c: i for i, c in enumerate(classes)}).to_numpy(), classes


def _number_first(value: str):
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


def measure(slug: str, folder: Path, timeout: float) -> dict:
    bundle, answers, comp = held_back(slug, folder)
    command = [sys.executable, "-m", "automl.cli", "run", slug, "--from", str(bundle), "--timeout", str(timeout),
               "--runs-dir", str(folder / "runs"), "--data-dir", str(folder / "data")]
    start = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    wall = time.monotonic() - start
    row = {"slug": slug, "metric": comp.metric, "timeout": timeout, "wall": round(wall, 1), "rows": len(answers)}
    if done.returncode:
        return row | {"error": (done.stderr.strip().splitlines() or ["failed"])[-1][:300]}
    run_dir = folder / "runs" / slug / "default"
    submitted = pd.read_csv(run_dir / "submission.csv", dtype={comp.id: str})
    y, classes = truth_of(comp, answers)
    pred = as_predictions(comp, submitted.set_index(comp.id).loc[answers[comp.id]].reset_index(), classes)
    metric = get_metric(comp.metric)
    board = pd.read_csv(run_dir / "leaderboard.csv")
    marked = board["submitted"].astype(bool) if "submitted" in board else board.index == 0  # older runs: the top row
    chosen = str(board.loc[marked, "model"].iloc[0])
    row |= {"score": score(metric, y, pred, 0.5), "noise": bootstrap(metric, y, pred)[1],
            "cv": float(board.loc[board["model"] == chosen, comp.metric].iloc[0]), "submitted": chosen,
            "y": y, "pred": pred}
    return row


def bootstrap(metric, y: np.ndarray, pred: np.ndarray, other: np.ndarray | None = None) -> tuple[float, float]:
    """The mean and standard deviation of the score (or, given `other`, of score(pred) - score(other), both on
    the same resampled rows) over BOOTSTRAP resamples of the rows."""
    rng, values = np.random.default_rng(0), []
    for _ in range(BOOTSTRAP):
        rows = rng.integers(0, len(y), len(y))
        try:
            value = score(metric, y[rows], pred[rows], 0.5)
            if other is not None:
                value -= score(metric, y[rows], other[rows], 0.5)
        except ValueError:  # a resample with one class (AUC): skipped
            continue
        values.append(value)
    return float(np.mean(values)), float(np.std(values))


def commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                           cwd=ROOT).stdout.strip()
    return (done.stdout.strip() or "unknown") + ("+" if dirty else "")


def compare(rows: list[dict], kept: Path) -> str:
    """Wins, ties and losses against the run kept in `kept` (runs/quality/COMMIT), paired on the same rows."""
    lines, tally = [], {"win": 0, "tie": 0, "loss": 0}
    for r in rows:
        old = kept / f"{r['slug']}.npz"
        if "error" in r or not old.is_file():
            lines.append(f"  {r['slug']:<46} -")
            continue
        before = np.load(old)
        metric = get_metric(r["metric"])
        sign = 1.0 if metric.greater_is_better else -1.0
        diff, noise = bootstrap(metric, r["y"], r["pred"], before["pred"])
        gain = score(metric, r["y"], r["pred"], 0.5) - float(before["score"])
        verdict = "win" if sign * gain > noise else "loss" if -sign * gain > noise else "tie"
        tally[verdict] += 1
        lines.append(f"  {r['slug']:<46} {r['metric']:<8} {float(before['score']):.5f} -> {r['score']:.5f} "
                     f"({gain:+.5f}, noise of the difference {noise:.5f}): {verdict}")
    return "\n".join([f"against {kept.name}: {tally['win']} wins, {tally['tie']} ties, {tally['loss']} losses"] + lines)


def judge(before: list[Path], after: list[Path], slugs: list[str]) -> str:
    """Wins, ties and losses of the runs kept in `after` against those in `before` (runs/quality/LABEL each), bundle
    by bundle: the mean held-back score of each group, and a difference counted only beyond its noise: the
    spread of each group's scores run to run (the standard deviation over its runs; the same code run twice
    moved digit-recognizer by 0.019 and ghouls by 0.035) and the bootstrap noise of the held-back rows, together."""
    lines, tally = [], {"win": 0, "tie": 0, "loss": 0}
    with tempfile.TemporaryDirectory() as scratch:
        for slug in slugs:
            found = [[np.load(d / f"{slug}.npz") for d in group if (d / f"{slug}.npz").is_file()] for group in (before, after)]
            if not all(found):
                continue
            _, answers, comp = held_back(slug, Path(scratch) / slug)
            y, _ = truth_of(comp, answers)
            metric = get_metric(comp.metric)
            sign = 1.0 if metric.greater_is_better else -1.0
            scores = [np.array([float(r["score"]) for r in runs]) for runs in found]
            spread = [float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for v in scores]
            boot = bootstrap(metric, y, found[1][0]["pred"], found[0][0]["pred"])[1]
            noise = float(np.sqrt(spread[0] ** 2 / len(scores[0]) + spread[1] ** 2 / len(scores[1]) + boot ** 2))
            gain = scores[1].mean() - scores[0].mean()
            verdict = "win" if sign * gain > noise else "loss" if -sign * gain > noise else "tie"
            tally[verdict] += 1
            lines.append(f"  {slug:<46} {comp.metric:<8} {scores[0].mean():.5f} -> {scores[1].mean():.5f} ({gain:+.5f}; "
                         f"runs {', '.join(f'{v:.4f}' for v in scores[0])} -> {', '.join(f'{v:.4f}' for v in scores[1])}; "
                         f"noise {noise:.5f}): {verdict}")
    return "\n".join([f"{len(after)} run(s) against {len(before)}: {tally['win']} wins, {tally['tie']} ties, "
                      f"{tally['loss']} losses"] + lines)


def record(rows: list[dict], label: str) -> None:
    """Add this run to quality.json and rewrite RESULTS.md's quality table: a row per recorded run."""
    runs = json.loads(JSON.read_text()) if JSON.is_file() else []
    runs.append({"commit": label, "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                 "scores": {r["slug"]: None if "error" in r else [round(r["score"], 5), round(r["noise"], 5),
                                                                  r["wall"], r["timeout"], r["submitted"]]
                            for r in rows}})
    JSON.write_text(json.dumps(runs, indent=1) + "\n")
    slugs = sorted({s for run in runs for s in run["scores"]})
    head = "| commit | date | " + " | ".join(slugs) + " |"
    table = [head, "|" + " --- |" * (len(slugs) + 2)]
    for run in runs:
        cells = []
        for s in slugs:
            v = run["scores"].get(s)
            cells.append("-" if v is None else f"{v[0]:.4f} ± {v[1]:.4f}")
        table.append(f"| {run['commit']} | {run['date']} | " + " | ".join(cells) + " |")
    results = HERE / "RESULTS.md"
    text = results.read_text()
    start, end = "<!-- quality table -->", "<!-- end quality table -->"
    block = f"{start}\n" + "\n".join(table) + f"\n{end}"
    if start in text:
        text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text += ("\n## quality.py\n\nHeld-back score of the submission (a quarter of train.csv held back; the latest "
                 "quarter where the test follows train) ± its bootstrap noise, a row per recorded run of "
                 "`benchmarks/quality.py` (120 s a bundle, digit-recognizer 300 s, 2 cores).\n\n" + block + "\n")
    results.write_text(text)


def line(r: dict) -> str:
    head = f"{r['slug']:<46} {r['wall']:6.1f} of {r['timeout']:g}s"
    if "error" in r:
        return f"{head} ERROR {r['error']}"
    return (f"{head} {r['metric']:<8} held back {r['score']:.5f} ± {r['noise']:.5f} (cv {r['cv']:.5f}, "
            f"submitted {r['submitted']})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=120)
    parser.add_argument("--only", help="comma-separated slugs (default: every bundle in the mirror)")
    parser.add_argument("--keep", type=Path, help="keep the held-back bundles and runs here")
    parser.add_argument("--record", action="store_true", help="add the run to benchmarks/quality.json and RESULTS.md")
    parser.add_argument("--compare", type=Path, help="a kept run (runs/quality/COMMIT) to compare with, paired")
    parser.add_argument("--label", help="the row's name (default: the commit, + when the tree has changes)")
    parser.add_argument("--judge", nargs=2, metavar=("BEFORE", "AFTER"),
                        help="compare kept runs, no new run: two comma-separated lists of runs/quality/LABEL folders")
    args = parser.parse_args()
    slugs = sorted(p.stem for p in MIRROR.glob("*.zip"))
    if args.only:
        slugs = [s for s in slugs if s in args.only.split(",")]
    if args.judge:
        print(judge(*([Path(p) for p in group.split(",")] for group in args.judge), slugs))
        return
    label = args.label or commit()
    kept = ROOT / "runs" / "quality" / label
    kept.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for slug in slugs:
            folder = (args.keep or Path(scratch)) / slug
            folder.mkdir(parents=True, exist_ok=True)
            rows.append(measure(slug, folder, LONGER.get(slug, args.timeout)))
            if "error" not in rows[-1]:
                np.savez(kept / f"{slug}.npz", pred=rows[-1]["pred"], score=rows[-1]["score"])
            print(line(rows[-1]), flush=True)
    over = [r for r in rows if r["wall"] > 1.05 * r["timeout"] + 5]
    print(f"{label}: {sum('error' not in r for r in rows)} of {len(rows)} bundles submitted; "
          f"{len(over)} over 1.05x + 5 s of their budget" + (f" ({', '.join(r['slug'] for r in over)})" if over else ""))
    if args.compare:
        print(compare(rows, args.compare))
    if args.record:
        record(rows, label)


if __name__ == "__main__":
    main()
