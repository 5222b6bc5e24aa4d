"""Do the networks earn their place? The best network against the best GBDT, per table and budget.

Runs `automl run SLUG --from ZIP --timeout T` (every model) on each tabular bundle in the mirror
(../shared/kaggle/competitions or AUTOML_MIRROR) and on scale.py's Playground-style table at
20,000, 100,000 and 300,000 rows (AUC), and prints per run: wall / budget, whether the submission
was written, network trials searched / completed, the best network's and the best GBDT's
cross-validated score, the gap between them (percent of the GBDT's score, positive when the network
is ahead), how many networks the blend or stack uses and how many of those the leaderboard lists, and the
submitted model's cross-validated score (the blend's held out).

    python benchmarks/networks.py --timeout 120                       # every case
    python benchmarks/networks.py --timeout 600 --only scale-100000,titanic
    python benchmarks/networks.py --timeout 120 --json out.json       # figures as JSON too

Run from a checkout's root: `python -m automl.cli` imports the automl of the current folder, so
`cd /tmp/old && python /path/to/benchmarks/networks.py` measures an older commit.
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
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import make_bundle  # noqa: E402

from automl.runner import submitted_model  # noqa: E402

HERE = Path(__file__).resolve().parent
MIRROR = Path(os.environ.get("AUTOML_MIRROR", HERE.parent.parent / "shared" / "kaggle" / "competitions"))
BUNDLES = ("titanic", "house-prices-advanced-regression-techniques", "ghouls-goblins-and-ghosts-boo",
           "mercedes-benz-greener-manufacturing", "playground-series-s3e26", "playground-series-s3e5",
           "bike-sharing-demand")  # the tabular ones: digit-recognizer's CNN and nlp's text models are other families
SCALES = (20_000, 100_000, 300_000)
GBDTS = ("lightgbm", "xgboost", "catboost")


def cases(only: str | None) -> list[str]:
    names = [*BUNDLES, *(f"scale-{rows}" for rows in SCALES)]
    return [n for n in names if not only or n in only.split(",")]


def network_weights(run_dir: Path) -> set[str]:
    """The networks the submitted blend or stack gives weight to."""
    path = run_dir / "models" / "ensemble" / "result.json"
    if not path.is_file():
        return set()
    info = json.loads(path.read_text()).get("info", {})
    weights = info.get("weights") or {}
    return {name for name, w in weights.items() if "#" in name and w}


def run(case: str, folder: Path, timeout: int, device: str) -> dict:
    bundle = make_bundle(int(case.split("-")[1]), folder)[0] if case.startswith("scale-") else MIRROR / f"{case}.zip"
    command = [sys.executable, "-m", "automl.cli", "run", case, "--from", str(bundle), "--timeout", str(timeout),
               "--runs-dir", str(folder / "runs"), "--data-dir", str(folder / "data"), "--device", device]
    start = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.monotonic() - start
    row = {"case": case, "timeout": timeout, "wall": round(wall, 1)}
    if done.returncode:
        return row | {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    run_dir = folder / "runs" / case / "default"
    board = pd.read_csv(run_dir / "leaderboard.csv")
    metric = board.columns[3]
    higher = board[metric].iloc[0] >= board[metric].iloc[-1]
    nets, gbdts = board[board["kind"] == "network"], board[board["model"].isin(GBDTS)]
    searched = re.search(r"networks: (\d+) trials searched.*?(\d+)\s+of\s+the\s+best\s+completed", done.stderr, re.S)
    used = network_weights(run_dir)
    stages = json.loads((run_dir / "timings.json").read_text())["stages"] if (run_dir / "timings.json").is_file() else {}
    row["seconds"] = {"baselines": round(sum(v for k, v in stages.items() if k.startswith("baseline")), 1),
                      "networks": round(stages.get("networks", 0.0), 1)}
    row |= {"metric": metric, "submitted": (run_dir / "submission.csv").is_file(), "best": submitted_model(board),
            "trials": f"{searched[1]} / {searched[2]}" if searched else "-",
            "network": (nets["model"].iloc[0], float(nets[metric].iloc[0])) if len(nets) else None,
            "gbdt": (gbdts["model"].iloc[0], float(gbdts[metric].iloc[0])) if len(gbdts) else None,
            "blend networks": len(used), "listed": len(used & set(board["model"])),
            "submission": (submitted_model(board),
                           float(board.loc[board["model"] == submitted_model(board), metric].iloc[0]))}
    if row["network"] and row["gbdt"]:
        net, gbdt = row["network"][1], row["gbdt"][1]
        row["gap %"] = round(100 * (net - gbdt) / abs(gbdt) * (1 if higher else -1), 2)
    return row


def line(r: dict) -> str:
    head = f"{r['case']:<46} {r['timeout']:>4}s wall {r['wall']:6.1f} ({r['wall'] / r['timeout']:.2f}x)"
    if "error" in r:
        return f"{head} ERROR {r['error']}"
    net = f"{r['network'][1]:.4f} ({r['network'][0]})" if r["network"] else "-"
    gbdt = f"{r['gbdt'][1]:.4f} ({r['gbdt'][0]})" if r["gbdt"] else "-"
    return (f"{head} {r['metric']}: network {net} gbdt {gbdt} gap {r.get('gap %', float('nan')):+.2f}% "
            f"trials {r['trials']} blend networks {r['blend networks']} listed {r['listed']} "
            f"submitted {r['best'] if r['submitted'] else 'NO'} ({r['submission'][1]:.4f}) "
            f"seconds: baselines {r['seconds']['baselines']:.0f} networks {r['seconds']['networks']:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=int, default=120)
    parser.add_argument("--only", help="comma-separated cases (bundle slugs, scale-20000, scale-100000, scale-300000)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for case in cases(args.only):
            rows.append(run(case, Path(scratch), args.timeout, args.device))
            print(line(rows[-1]), flush=True)
    ahead = [r for r in rows if r.get("gap %", -1e9) >= -0.5]
    print(f"network within 0.5% of the best GBDT or ahead: {len(ahead)} of {len(rows)}; "
          f"ahead: {sum(r.get('gap %', -1) > 0 for r in rows)}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
