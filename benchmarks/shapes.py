"""Do competitions of every shape hold `--timeout`? Multi-label, multi-target and an integer count.

Builds Kaggle-format bundles from the Playground-style table of scale.py (18 numerics, 8
categoricals, a date) with other targets: 7 binary labels (scored by the mean of their AUCs),
3 value columns (mcrmse), and a count from 1 to 29 (rmsle: the metric makes it a regression).
Runs `automl run SLUG --from bundle.zip --timeout T --metric M` on each as a subprocess and
prints wall / budget, the stages' seconds, and the best model of each kind.

    python benchmarks/shapes.py                          # 20,000 rows, --timeout 120
    python benchmarks/shapes.py --rows 20000 --timeout 120 --only multilabel
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import playground  # noqa: E402

SHAPES = {"multilabel": ("auc", 7), "multitarget": ("mcrmse", 3), "count": ("rmsle", 1)}


def table(shape: str, rows: int, seed: int = 0) -> tuple[pd.DataFrame, list[str]]:
    """The Playground table with `shape`'s target columns, each a different function of the features."""
    frame = playground(rows, seed).drop(columns="target")
    rng = np.random.default_rng(seed + 1)
    x = np.nan_to_num(frame[[f"num_{j}" for j in range(18)]].to_numpy())
    k = SHAPES[shape][1]
    targets = [f"y{i}" for i in range(k)] if k > 1 else ["target"]
    for i, name in enumerate(targets):
        w = rng.normal(size=18) * (rng.random(18) < 0.4)
        signal = x @ w + np.sin(x[:, i % 18]) + (frame["cat_2"].str.len() % 3) * 0.3
        if shape == "multilabel":
            frame[name] = (signal + rng.logistic(size=rows) > np.quantile(signal, 0.3 + 0.05 * i)).astype(int)
        elif shape == "multitarget":
            frame[name] = 10 * signal + 50 * (i + 1) + rng.normal(scale=3, size=rows)
        else:
            frame[name] = np.clip(rng.poisson(np.exp(1.2 + 0.3 * np.tanh(signal))) + 1, 1, 29)
    return frame, targets


def make_bundle(shape: str, rows: int, folder: Path) -> Path:
    path = folder / f"shape-{shape}-{rows}.zip"
    if path.is_file():
        return path
    frame, targets = table(shape, rows + rows // 3)
    train, test = frame.iloc[:rows], frame.iloc[rows:].drop(columns=targets)
    sample = pd.DataFrame({"id": test["id"]} | {t: (0.5 if shape != "count" else 1) for t in targets})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as bundle:
        for name, part in (("train.csv", train), ("test.csv", test), ("sample_submission.csv", sample)):
            bundle.writestr(name, part.to_csv(index=False))
    return path


def run(shape: str, bundle: Path, timeout: int, workdir: Path) -> dict:
    metric = SHAPES[shape][0]
    command = [sys.executable, "-m", "automl.cli", "run", bundle.stem, "--from", str(bundle), "--timeout", str(timeout),
               "--metric", metric, "--runs-dir", str(workdir / "runs"), "--data-dir", str(workdir / "data")]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    figures = {"shape": shape, "metric": metric, "timeout": timeout, "wall": round(wall, 1), "exit": done.returncode}
    run_dir = workdir / "runs" / bundle.stem / "default"
    if done.returncode:
        figures["error"] = (done.stderr.strip().splitlines() or ["?"])[-1][:300]
        files = [line.strip() for line in done.stderr.splitlines() if line.strip().startswith("File ")]
        figures["where"] = files[-4:]  # an unexpected error's traceback: where it failed
        return figures
    check = subprocess.run([sys.executable, "-m", "automl.cli", "validate", str(run_dir / "submission.csv"), bundle.stem,
                            "--data-dir", str(workdir / "data"), "--metric", metric], capture_output=True, text=True)
    figures["valid_submission"] = check.returncode == 0
    board = pd.read_csv(run_dir / "leaderboard.csv")
    for kind in ("baseline", "network", "ensemble"):
        rows = board[board["kind"] == kind]
        if len(rows):
            figures[f"best_{kind}"] = f"{rows.iloc[0][metric]:.4f} ({rows.iloc[0]['model']})"
    figures["stages"] = json.loads((run_dir / "timings.json").read_text())["stages"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--timeout", type=int, default=120)
    parser.add_argument("--only", nargs="*", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for shape in args.only:
            figures = run(shape, make_bundle(shape, args.rows, Path(scratch)), args.timeout, Path(scratch) / shape)
            stages = ", ".join(f"{k} {v:.1f}" for k, v in figures.get("stages", {}).items())
            print(f"{shape:>11} ({figures['metric']}): wall {figures['wall']:.1f}s of {args.timeout} "
                  f"({figures['wall'] / args.timeout:.2f}x; limit {1.05 * args.timeout + 5:.0f}s) exit {figures['exit']} "
                  f"submission {'valid' if figures.get('valid_submission') else 'MISSING'}\n"
                  f"            best baseline {figures.get('best_baseline', '-')}, network {figures.get('best_network', '-')}, "
                  f"blend {figures.get('best_ensemble', '-')}\n            seconds: {stages}"
                  + (f"\n            error: {figures['error']} at {figures.get('where')}" if "error" in figures else ""),
                  flush=True)
            results.append(figures)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
