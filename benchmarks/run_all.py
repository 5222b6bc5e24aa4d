"""`make bench`: run every benchmark and write benchmarks/RESULTS.md with the machine they ran on.

1. benchmarks/preprocess.py: our Preprocessor vs a scikit-learn ColumnTransformer.
2. benchmarks/train_loop.py: our Lightning training path vs a plain PyTorch loop;
   benchmarks/fold_parallel.py: completing a trial's folds one by one vs together.
3. benchmarks/workers.py, when present: search trials per minute with 1 and 2 workers.
4. benchmarks/scale.py: `--timeout` and memory at 10,000 to 1,000,000 rows.
5. Every bundle in the mirror (../shared/kaggle/competitions): the time to a first
   submission (`automl run SLUG --models baselines`), then a full run within a budget
   (`--timeout`, default 120 s; digit-recognizer 300 s) and the CV score of its best baseline, best network and
   ensemble.

Flags: --quick (smaller frames, 30 s runs, for a smoke test), --only SLUG,... to limit the bundles.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import torch

from automl.runner import submitted_model

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MIRROR = Path(os.environ.get("AUTOML_MIRROR", ROOT.parent / "shared" / "kaggle" / "competitions"))
LONGER = {"digit-recognizer": 300}  # benchmark setting, not product code: CNN epochs over 28x28 images are slow on 2 cores
BASELINES: list[dict] = []  # every baseline's CV score per competition, filled by bundle_row
GBDTS = ("lightgbm", "xgboost", "catboost")


def machine() -> str:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{platform.platform()}, {os.cpu_count()} CPU cores, {gpu}, Python {platform.python_version()}, "
            f"torch {torch.__version__}")


def script(name: str, *args: str) -> dict:
    """Run benchmarks/NAME.py with --json; return its figures and its printed lines."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        done = subprocess.run([sys.executable, str(HERE / f"{name}.py"), *args, "--json", out.name],
                              capture_output=True, text=True, check=False)
        print(done.stdout, end="")
        if done.returncode:
            return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
        return {"figures": json.loads(Path(out.name).read_text() or "{}"), "printed": done.stdout.strip()}


def automl(*args: str) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "automl.cli", *args], capture_output=True, text=True, check=False)
    return time.perf_counter() - start, done


def bundle_row(slug: str, workdir: Path, timeout: int) -> dict:
    common = ["--from", str(MIRROR / f"{slug}.zip"), "--runs-dir", str(workdir / "runs"),
              "--data-dir", str(workdir / "data")]
    first, done = automl("run", slug, "--models", "baselines", "--name", "first", *common)
    if done.returncode:
        return {"competition": slug, "error": done.stderr.strip().splitlines()[-1]}
    first_board = pd.read_csv(workdir / "runs" / slug / "first" / "leaderboard.csv")
    baselines = {row["model"]: f"{row[first_board.columns[3]]:.4f}" for row in first_board.to_dict("records")
                 if row["kind"] == "baseline"}
    BASELINES.append({"competition": slug, "metric": first_board.columns[3], **baselines})
    timeout = max(timeout, LONGER.get(slug, 0)) if timeout >= 120 else timeout
    full, done = automl("run", slug, "--timeout", str(timeout), "--name", "full", *common)
    if done.returncode:
        return {"competition": slug, "first submission (s)": round(first, 1),
                "error": done.stderr.strip().splitlines()[-1]}
    board = pd.read_csv(workdir / "runs" / slug / "full" / "leaderboard.csv")
    metric = board.columns[3]
    gbdts = board["model"].isin(GBDTS)

    def best(rows: pd.DataFrame) -> str:
        return f"{rows.iloc[0][metric]:.4f} ({rows.iloc[0]['model']})" if len(rows) else "-"

    searched = re.search(r"networks: (\d+) trials searched.*?in\s+(\d+)s;\s+(\d+)\s+of\s+the\s+best\s+completed", done.stderr, re.S)
    blend = board[board["kind"] == "ensemble"]
    members = board[board["kind"] != "ensemble"]
    method = json.loads((workdir / "runs" / slug / "full" / "models" / "ensemble" / "result.json").read_text())[
        "info"].get("method", "greedy") if len(blend) else ""
    sign = 1 if board.iloc[0][metric] == board[metric].max() else -1  # the board is sorted best first
    at_least = len(blend) and sign * blend.iloc[0][metric] >= sign * members.iloc[0][metric] - 1e-12
    return {"competition": slug, "metric": metric, "first submission (s)": round(first, 1),
            "full run (s)": f"{full:.1f} of {timeout}", "trials searched / completed on every fold":
            f"{searched[1]} / {searched[3]}" if searched else "-",
            "best GBDT": best(board[gbdts]), "best scikit-learn": best(board[(board["kind"] == "baseline") & ~gbdts]),
            "best network": best(board[board["kind"] == "network"]),
            "blend (held-out)": f"{best(blend)} {method}" if len(blend) else "-",
            "blend >= best member": "yes" if at_least else "no", "submitted": submitted_model(board)}


def markdown(rows: list[dict]) -> str:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and budgets, for a smoke test")
    parser.add_argument("--only", help="comma-separated competition slugs")
    parser.add_argument("--timeout", type=int, default=120, help="seconds per full run")
    parser.add_argument("--skip", default="", help="comma-separated benchmark scripts not to run (e.g. scale)")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md", help="where to write the results")
    args = parser.parse_args()
    timeout = 30 if args.quick else args.timeout
    sections = [f"# Benchmark results\n\nMeasured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {machine()}.\n"
                "Every figure below comes from one run of `make bench` (`benchmarks/run_all.py`); ratios are "
                "measured within one process.\n"]
    for name, extra in (("preprocess", ["--rows", "100000"] if args.quick else []),
                        ("train_loop", ["--rows", "20000", "--repeats", "2"] if args.quick else []),
                        ("fold_parallel", ["--rows", "20000", "--epochs", "2"] if args.quick else []),
                        ("workers", ["--trials", "4"] if args.quick else []),
                        ("scale", ["--rows", "10000", "--timeouts", "30"] if args.quick else [])):
        if not (HERE / f"{name}.py").is_file() or name in args.skip.split(","):
            continue
        print(f"== {name}", flush=True)
        result = script(name, *extra)
        body = result.get("printed") or f"failed: {result.get('error')}"
        sections.append(f"## {name}.py\n\n```\n{body}\n```\n")
    slugs = args.only.split(",") if args.only else sorted(p.stem for p in MIRROR.glob("*.zip"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="automl-bench-") as tmp:
        for slug in slugs:
            print(f"== {slug}", flush=True)
            rows.append(bundle_row(slug, Path(tmp), timeout))
            print(rows[-1], flush=True)
    sections.append("## Competitions\n\nTime to a first submission is `automl run SLUG --models baselines` "
                    "from the zip to a validated submission.csv. The full run is baselines, network search and "
                    f"ensemble within `--timeout {timeout}`; scores are cross-validated (5 folds), the ensemble's "
                    "held out (weights chosen on other folds).\n\n" + markdown(rows) + "\n")
    sections.append("## Every baseline per competition\n\nCross-validated (5 folds) with the competition's metric, "
                    "from the first-submission run.\n\n" + markdown(BASELINES) + "\n")
    args.out.write_text("\n".join(sections))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
