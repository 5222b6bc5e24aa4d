"""Does `--extra-train original.csv` help, and does the run keep it only when it does?

Playground competitions are generated from an "original" public dataset: a generative model
learns the original's rows and writes many more, with its relationships blurred. This builds
that situation: an original table (clean rows, its target written "Yes"/"No", with its own
row key "Row#", published with ';' between fields and a byte-order mark, as such files are)
and, from the same relationship, a competition whose rows are blurred (features jittered, a
share of labels flipped). Its test labels are known here, so the submission's real score is
measured too, not only the cross-validated one. The original comes in three kinds (`--cases`):

- `same`: the relationship the competition was generated from: it should help;
- `balance`: another class balance (the positive class far rarer) and missing values in three
  features where the competition has none: it may hurt;
- `other`: another relationship altogether (the labels of a different rule): it should hurt.

Each case runs `automl run` three times with the same budget and folds: without the original,
with it forced (`--extra-train-always`), and with it as the run decides (kept only when a quick
GBDT on the folds scores better with it), and prints per run the wall time, whether every GBDT
finished, the cross-validated score (on the competition's own rows only) and the submission's
AUC on the hidden test labels.

    python benchmarks/original.py                                   # --timeout 60, baselines, every case
    python benchmarks/original.py --timeout 120 --models all --cases same,other
    python benchmarks/original.py --timeout 120 --train-rows 60000 --original-rows 30000 --cases same
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

from automl.runner import submitted_model

GBDTS = ("lightgbm", "xgboost", "catboost")


def relationship(rows: int, rng: np.random.Generator, case: str = "same") -> tuple[pd.DataFrame, np.ndarray]:
    """Features and the probability of a positive label: interactions and thresholds a few thousand rows underfit."""
    x = rng.normal(size=(rows, 10))
    kinds = np.array(["red", "green", "blue", "amber"])
    colour = rng.integers(0, 4, rows)
    if case == "other":  # another rule on the same columns
        logit = 1.5 * np.cos(2 * x[:, 1]) - x[:, 0] * x[:, 3] - np.abs(x[:, 2]) + 0.8 * (x[:, 5] > 0.5) * x[:, 4]
    else:
        logit = (1.5 * np.sin(2 * x[:, 0]) + x[:, 1] * x[:, 2] + np.abs(x[:, 3]) - 1.0 + 0.8 * (x[:, 4] > 0.5) * x[:, 5]
                 + np.array([0.6, -0.4, 0.2, -0.6])[colour] * x[:, 6])
    if case == "balance":
        logit = logit - 2.5  # positives far rarer
    frame = pd.DataFrame({f"f{j}": x[:, j].round(4) for j in range(10)} | {"colour": kinds[colour]})
    return frame, 1 / (1 + np.exp(-2 * logit))


def make(folder: Path, case: str, train_rows: int, original_rows: int, test_rows: int,
         seed: int = 0) -> tuple[Path, Path, np.ndarray]:
    """(the competition's zip, original.csv as published, the test labels)."""
    rng = np.random.default_rng(seed)
    original, p = relationship(original_rows, rng, case)
    if case == "balance":  # missing values where the competition has none
        for column in ("f0", "f1", "f2"):
            original.loc[rng.random(original_rows) < 0.2, column] = np.nan
    original.insert(0, "Row#", np.arange(original_rows) + 1)  # the file's own row key: dropped with a warning
    original["Outcome"] = np.where(rng.random(original_rows) < p, "Yes", "No")  # labels written another way
    features, p = relationship(train_rows + test_rows, np.random.default_rng(seed + 1))
    numeric = [c for c in features.columns if c.startswith("f")]
    features[numeric] = (features[numeric] + rng.normal(scale=0.15, size=(len(features), len(numeric)))).round(4)
    labels = (rng.random(len(features)) < p).astype(int)
    flip = rng.random(len(features)) < 0.05  # the generator's own mistakes
    labels[flip] = 1 - labels[flip]
    table = features.assign(id=np.arange(len(features)), Outcome=labels)[["id", *features.columns, "Outcome"]]
    train, test = table.iloc[:train_rows], table.iloc[train_rows:]
    bundle = folder / "playground-original.zip"
    with zipfile.ZipFile(bundle, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("train.csv", train.to_csv(index=False))
        archive.writestr("test.csv", test.drop(columns="Outcome").to_csv(index=False))
        archive.writestr("sample_submission.csv", pd.DataFrame({"id": test["id"], "Outcome": 0.5}).to_csv(index=False))
    path = folder / f"original-{case}.csv"
    path.write_bytes(b"\xef\xbb\xbf" + original.to_csv(index=False, sep=";").encode())
    return bundle, path, test["Outcome"].to_numpy()


def run(bundle: Path, folder: Path, name: str, timeout: float, models: str, extra: list[str], truth: np.ndarray) -> dict:
    command = [sys.executable, "-m", "automl.cli", "run", "playground-original", "--from", str(bundle), "--name", name,
               "--timeout", str(timeout), "--metric", "auc", "--models", models, "--runs-dir", str(folder / "runs"),
               "--data-dir", str(folder / "data"), *extra]
    start = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.monotonic() - start
    if done.returncode:
        raise SystemExit(f"{name}: exit {done.returncode}\n{done.stderr[-2000:]}")
    run_dir = folder / "runs" / "playground-original" / name
    board = pd.read_csv(run_dir / "leaderboard.csv")
    submission = pd.read_csv(run_dir / "submission.csv")
    best = submitted_model(board)
    decided = next((line.strip() for line in done.stderr.splitlines() if "extra rows:" in line), "")
    return {"name": name, "wall": wall, "best": best, "cv": board.loc[board["model"] == best, "auc"].iloc[0],
            "test": roc_auc_score(truth, submission["Outcome"]), "gbdts": sorted(set(GBDTS) & set(board["model"])),
            "decided": decided}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=60)
    parser.add_argument("--models", default="baselines")
    parser.add_argument("--cases", default="same,balance,other")
    parser.add_argument("--train-rows", type=int, default=3_000)
    parser.add_argument("--original-rows", type=int, default=20_000)
    parser.add_argument("--test-rows", type=int, default=10_000)
    args = parser.parse_args()
    for case in args.cases.split(","):
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch)
            bundle, original, truth = make(folder, case, args.train_rows, args.original_rows, args.test_rows)
            results = [run(bundle, folder, "alone", args.timeout, args.models, [], truth),
                       run(bundle, folder, "forced", args.timeout, args.models,
                           ["--extra-train", str(original), "--extra-train-always"], truth),
                       run(bundle, folder, "decided", args.timeout, args.models, ["--extra-train", str(original)], truth)]
        print(f"case {case}: {args.train_rows:,} train rows, {args.original_rows:,} original rows")
        for r in results:
            print(f"  {r['name']:>8}: wall {r['wall']:6.1f}s of {args.timeout:g}  GBDTs {','.join(r['gbdts']) or '-'}  "
                  f"best {r['best']:<14} cv auc {r['cv']:.4f}  test auc {r['test']:.4f}")
        print(f"  decided: {results[2]['decided'] or '-'}", flush=True)


if __name__ == "__main__":
    main()
