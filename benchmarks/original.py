"""Does `--extra-train original.csv` help, as it helps Kagglers on Playground competitions?

Playground competitions are generated from an "original" public dataset: a generative model
learns the original's rows and writes many more, with its relationships blurred. This builds
that situation: an original table (ORIGINAL_ROWS clean rows, its target written "Yes"/"No",
with its own "Id" column) and, from the same relationship, a competition whose rows are
blurred (features jittered, a share of labels flipped) with far fewer rows than a model of
that relationship needs. Its test labels are known here, so the submission's real score is
measured too, not only the cross-validated one.

It runs `automl run` on the bundle twice with the same budget and folds, without and with
`--extra-train original.csv`, and prints per run the cross-validated score (on the
competition's own rows only, both times) and the submission's AUC on the hidden test labels.

    python benchmarks/original.py                 # --timeout 60, baselines
    python benchmarks/original.py --timeout 120 --models all
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

ORIGINAL_ROWS, TRAIN_ROWS, TEST_ROWS = 20_000, 3_000, 10_000


def relationship(rows: int, rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray]:
    """Features and the probability of a positive label: interactions and thresholds a few thousand rows underfit."""
    x = rng.normal(size=(rows, 10))
    kinds = np.array(["red", "green", "blue", "amber"])
    colour = rng.integers(0, 4, rows)
    logit = (1.5 * np.sin(2 * x[:, 0]) + x[:, 1] * x[:, 2] + np.abs(x[:, 3]) - 1.0 + 0.8 * (x[:, 4] > 0.5) * x[:, 5]
             + np.array([0.6, -0.4, 0.2, -0.6])[colour] * x[:, 6])
    frame = pd.DataFrame({f"f{j}": x[:, j].round(4) for j in range(10)} | {"colour": kinds[colour]})
    return frame, 1 / (1 + np.exp(-2 * logit))


def make(folder: Path, seed: int = 0) -> tuple[Path, Path, np.ndarray]:
    """(the competition's zip, original.csv, the test labels)."""
    rng = np.random.default_rng(seed)
    original, p = relationship(ORIGINAL_ROWS, rng)
    original.insert(0, "Id", np.arange(ORIGINAL_ROWS) + 10**6)  # another table's ids: --extra-train drops them
    original["Outcome"] = np.where(rng.random(ORIGINAL_ROWS) < p, "Yes", "No")  # labels written another way
    features, p = relationship(TRAIN_ROWS + TEST_ROWS, rng)
    numeric = [c for c in features.columns if c.startswith("f")]
    features[numeric] = (features[numeric] + rng.normal(scale=0.15, size=(len(features), len(numeric)))).round(4)
    labels = (rng.random(len(features)) < p).astype(int)
    flip = rng.random(len(features)) < 0.05  # the generator's own mistakes
    labels[flip] = 1 - labels[flip]
    table = features.assign(id=np.arange(len(features)), Outcome=labels)[["id", *features.columns, "Outcome"]]
    train, test = table.iloc[:TRAIN_ROWS], table.iloc[TRAIN_ROWS:]
    bundle = folder / "playground-original.zip"
    with zipfile.ZipFile(bundle, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("train.csv", train.to_csv(index=False))
        archive.writestr("test.csv", test.drop(columns="Outcome").to_csv(index=False))
        archive.writestr("sample_submission.csv", pd.DataFrame({"id": test["id"], "Outcome": 0.5}).to_csv(index=False))
    path = folder / "original.csv"
    original.to_csv(path, index=False)
    return bundle, path, test["Outcome"].to_numpy()


def run(bundle: Path, folder: Path, name: str, timeout: float, models: str, extra: Path | None, truth: np.ndarray) -> dict:
    command = [sys.executable, "-m", "automl.cli", "run", "playground-original", "--from", str(bundle), "--name", name,
               "--timeout", str(timeout), "--metric", "auc", "--models", models, "--runs-dir", str(folder / "runs"),
               "--data-dir", str(folder / "data")] + (["--extra-train", str(extra)] if extra else [])
    start = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.monotonic() - start
    if done.returncode:
        raise SystemExit(f"{name}: exit {done.returncode}\n{done.stderr[-2000:]}")
    run_dir = folder / "runs" / "playground-original" / name
    board = pd.read_csv(run_dir / "leaderboard.csv")
    submission = pd.read_csv(run_dir / "submission.csv")
    return {"name": name, "wall": wall, "best": board["model"].iloc[0], "cv": board["auc"].iloc[0],
            "test": roc_auc_score(truth, submission["Outcome"]), "folds": pd.read_csv(run_dir / "folds.csv")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=60)
    parser.add_argument("--models", default="baselines")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        bundle, original, truth = make(folder)
        results = [run(bundle, folder, "alone", args.timeout, args.models, None, truth),
                   run(bundle, folder, "with-original", args.timeout, args.models, original, truth)]
    for r in results:
        extra = (r["folds"]["fold"] == -2).sum()
        print(f"{r['name']:>14}: wall {r['wall']:6.1f}s of {args.timeout:g}  best {r['best']:<14} cv auc {r['cv']:.4f} "
              f"(on the {TRAIN_ROWS:,} own rows)  test auc {r['test']:.4f}  extra rows {extra:,} (never validated)")
    gain = results[1]["test"] - results[0]["test"]
    print(f"--extra-train original.csv: test auc {gain:+.4f}, cv auc {results[1]['cv'] - results[0]['cv']:+.4f}")


if __name__ == "__main__":
    main()
