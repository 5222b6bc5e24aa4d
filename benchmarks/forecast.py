"""Does a forecast's cross-validation tell the truth about its test?

A Playground-style sales forecast (the shape of Kaggle's daily sales by country, store and
product, scored by SMAPE): SERIES daily series, a trend that differs by country (growth
that goes on through the test year), a weekly season, a yearly season per product and
noise; four years of train and the next year as test. The test's sales are known here, so
the submission's real SMAPE is measured, not only the cross-validated one.

It runs `automl run` on the bundle and prints the cross-validated SMAPE of the model that
made the submission, its SMAPE on the test year, their ratio, every model's own pair, and
the run's wall time against --timeout.

    python benchmarks/forecast.py                    # --timeout 120, every model
    python benchmarks/forecast.py --timeout 60 --models baselines
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

COUNTRIES = {"Argentina": 0.02, "Canada": 0.10, "Estonia": 0.18, "Japan": -0.04, "Spain": 0.07}  # yearly growth
STORES = {"Corner": 0.6, "Mall": 1.4, "Online": 1.0}
PRODUCTS = {"Kaggle": 1.0, "Pencil": 0.5, "Sticker": 0.3, "Mug": 0.8}  # each with its own yearly peak


def smape(truth: np.ndarray, pred: np.ndarray) -> float:
    """Kaggle's SMAPE in percent (0/0 counts as 0)."""
    denominator = (np.abs(truth) + np.abs(pred)) / 2
    ratio = np.where(denominator == 0, 0.0, np.abs(pred - truth) / np.where(denominator == 0, 1, denominator))
    return float(100 * ratio.mean())


def sales(train_years: int = 4, test_years: int = 1, seed: int = 0) -> tuple[pd.DataFrame, pd.Timestamp]:
    """Every day of every series, with its sales; and the first test day."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2017-01-01")
    first_test = start + pd.DateOffset(years=train_years)
    dates = pd.date_range(start, first_test + pd.DateOffset(years=test_years) - pd.Timedelta(days=1), freq="D")
    grid = pd.MultiIndex.from_product([dates, list(COUNTRIES), list(STORES), list(PRODUCTS)],
                                      names=["date", "country", "store", "product"]).to_frame(index=False)
    years = (grid["date"] - start).dt.days / 365.25
    growth = grid["country"].map(COUNTRIES).to_numpy()
    level = 30 * grid["store"].map(STORES).to_numpy() * grid["product"].map(PRODUCTS).to_numpy()
    peak = grid["product"].map({p: i * 90 for i, p in enumerate(PRODUCTS)}).to_numpy()  # each product peaks in its season
    yearly = 1 + 0.3 * np.cos(2 * np.pi * (grid["date"].dt.day_of_year.to_numpy() - peak) / 365.25)
    weekly = np.array([0.9, 0.88, 0.9, 0.95, 1.05, 1.2, 1.25])[grid["date"].dt.day_of_week.to_numpy()]
    country_level = grid["country"].map({c: 0.5 + 0.3 * i for i, c in enumerate(COUNTRIES)}).to_numpy()
    mean = level * country_level * np.exp(growth * years) * yearly * weekly
    grid["num_sold"] = np.round(mean * rng.lognormal(0, 0.08, len(grid)))
    grid.insert(0, "id", np.arange(len(grid)))
    grid["date"] = grid["date"].dt.strftime("%Y-%m-%d")
    return grid, first_test


def make(folder: Path, seed: int = 0) -> tuple[Path, np.ndarray]:
    """The competition's zip and the test's sales."""
    table, first_test = sales(seed=seed)
    later = table["date"] >= first_test.strftime("%Y-%m-%d")
    train, test = table[~later], table[later]
    bundle = folder / "sales-forecast.zip"
    with zipfile.ZipFile(bundle, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("train.csv", train.to_csv(index=False))
        archive.writestr("test.csv", test.drop(columns="num_sold").to_csv(index=False))
        archive.writestr("sample_submission.csv", pd.DataFrame({"id": test["id"], "num_sold": 100}).to_csv(index=False))
    return bundle, test["num_sold"].to_numpy()


def run(bundle: Path, folder: Path, timeout: float, models: str, truth: np.ndarray) -> dict:
    command = [sys.executable, "-m", "automl.cli", "run", "sales-forecast", "--from", str(bundle),
               "--timeout", str(timeout), "--metric", "smape", "--models", models, "--runs-dir", str(folder / "runs"),
               "--data-dir", str(folder / "data")]
    start = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.monotonic() - start
    if done.returncode:
        raise SystemExit(f"exit {done.returncode}\n{done.stderr[-3000:]}")
    run_dir = folder / "runs" / "sales-forecast" / "default"
    board = pd.read_csv(run_dir / "leaderboard.csv")
    submitted = pd.read_csv(run_dir / "submission.csv")["num_sold"].to_numpy()
    models = []
    for row in board.itertuples():
        path = run_dir / "models" / row.model / "test.npy"
        test = smape(truth, np.load(path)) if path.is_file() else float("nan")
        models.append((row.model, row.smape, test))
    return {"wall": wall, "best": board["model"].iloc[0], "cv": board["smape"].iloc[0],
            "test": smape(truth, submitted), "models": models}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=120)
    parser.add_argument("--models", default="all")
    parser.add_argument("--keep", type=Path, help="Keep the run here (a folder) instead of a temporary one.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        bundle, truth = make(folder)
        r = run(bundle, folder, args.timeout, args.models, truth)
    print(f"{len(truth):,} test rows; wall {r['wall']:.1f}s of --timeout {args.timeout:g} ({r['wall'] / args.timeout:.2f}x)")
    print(f"submission from {r['best']}: cv smape {r['cv']:.3f}  test smape {r['test']:.3f}  "
          f"test / cv {r['test'] / r['cv']:.2f}")
    for name, cv, test in r["models"]:
        print(f"  {name:<16} cv {cv:8.3f}  test {test:8.3f}")


if __name__ == "__main__":
    main()
