"""Do the boosted trees reach early stopping on every label of a multi-label table within the budget?

A Playground-style multi-label table (like S4E3's steel plate faults: about 19,000 rows, 27 numeric
features, 7 labels of which a row has one or none) is built with a hidden test set; `automl run` at
`--timeout` (every model) is run on it, and per GBDT the rounds its note reports, whether the clock
stopped its boosting before early stopping did, and the seconds; the networks' seconds; the
submission's mean AUC over the labels on the hidden test labels.

    python benchmarks/labels.py                     # --timeout 120
    python benchmarks/labels.py --timeout 60 --rows 8000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

LABELS = [f"fault_{j}" for j in range(7)]
GBDTS = ("lightgbm", "xgboost", "catboost", "hist_gb")


def make(folder: Path, rows: int, test_rows: int, seed: int = 0) -> tuple[Path, pd.DataFrame]:
    """(the bundle, the hidden test labels): each row has at most one fault, drawn from a softmax of features."""
    rng = np.random.default_rng(seed)
    n = rows + test_rows
    x = rng.normal(size=(n, 27))
    weights = rng.normal(size=(27, 8)) * (rng.random((27, 8)) < 0.3)
    logits = x @ weights + 0.5 * np.sin(2 * x[:, :8]) + np.array([2.0] + [0.0] * 7)  # class 0: no fault
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    kind = (p.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1)
    frame = pd.DataFrame(x.round(4), columns=[f"x{j}" for j in range(27)])
    frame.insert(0, "id", np.arange(n))
    for j, label in enumerate(LABELS):
        frame[label] = (kind == j + 1).astype(int)
    train, test = frame.iloc[:rows], frame.iloc[rows:]
    bundle = folder / "playground-labels.zip"
    with zipfile.ZipFile(bundle, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("train.csv", train.to_csv(index=False))
        archive.writestr("test.csv", test.drop(columns=LABELS).to_csv(index=False))
        archive.writestr("sample_submission.csv", test[["id"]].assign(**{label: 0.5 for label in LABELS}).to_csv(index=False))
    return bundle, test[["id", *LABELS]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=120)
    parser.add_argument("--rows", type=int, default=19_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        bundle, truth = make(folder, args.rows, 5_000)
        command = [sys.executable, "-m", "automl.cli", "run", "playground-labels", "--from", str(bundle), "--metric", "auc",
                   "--timeout", str(args.timeout), "--runs-dir", str(folder / "runs"), "--data-dir", str(folder / "data")]
        start = time.monotonic()
        done = subprocess.run(command, capture_output=True, text=True)
        wall = time.monotonic() - start
        if done.returncode:
            raise SystemExit(f"exit {done.returncode}\n{done.stderr[-2000:]}")
        run_dir = folder / "runs" / "playground-labels" / "default"
        board = pd.read_csv(run_dir / "leaderboard.csv").set_index("model")
        stages = json.loads((run_dir / "timings.json").read_text())["stages"]
        submission = pd.read_csv(run_dir / "submission.csv").set_index("id").loc[truth["id"]]
        test_auc = np.mean([roc_auc_score(truth[label], submission[label]) for label in LABELS])
    print(f"{args.rows:,} rows x 27 features, 7 labels: wall {wall:.1f}s of {args.timeout:g}; networks "
          f"{stages.get('networks', 0.0):.0f}s; submission test auc {test_auc:.4f}")
    for name in GBDTS:
        if name not in board.index:
            print(f"  {name:<9} not on the leaderboard")
            continue
        note = str(board.loc[name, "note"])
        clocked = "stopped by its time share" in note
        seconds = sum(v for k, v in stages.items() if k.startswith(f"baseline {name}"))
        print(f"  {name:<9} cv auc {board.loc[name, 'auc']:.4f}  {seconds:5.1f}s  "
              f"{'STOPPED BY THE CLOCK' if clocked else 'early-stopped'}: {note[:120]}")
    print(done.stderr[-600:])


if __name__ == "__main__":
    main()
