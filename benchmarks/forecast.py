"""Does a forecast's cross-validation tell the truth about its test?

A Playground-style sales forecast (the shape of Kaggle's daily sales by country, store and
product, scored by SMAPE): SERIES daily series, a trend that differs by country (growth
that goes on through the test year), a weekly season, a yearly season per product and
noise; four years of train and the next year as test. The test's sales are known here, so
the submission's real SMAPE is measured, not only the cross-validated one.

`--data bike` builds a forecast from public data instead: Kaggle's bike-sharing-demand
train.csv (hourly rentals, 2011-2012, in ../shared or AUTOML_MIRROR), its first 18 months as
train and the last 6 as test, scored by the competition's RMSLE; rentals grew by about two
thirds from 2011 to 2012, a trend the test carries on.

It runs `automl run` on the bundle and prints the cross-validated score of the model that
made the submission, its score on the test, their ratio, every model's own pair, and the
run's wall time against --timeout.

    python benchmarks/forecast.py                    # --timeout 120, every model
    python benchmarks/forecast.py --timeout 60 --models baselines
    python benchmarks/forecast.py --data bike --timeout 600
    python benchmarks/forecast.py --scale 3 --timeout 600     # 263,000 training rows
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

from automl.runner import submitted_model

COUNTRIES = {"Argentina": 0.02, "Canada": 0.10, "Estonia": 0.18, "Japan": -0.04, "Spain": 0.07}  # yearly growth
STORES = {"Corner": 0.6, "Mall": 1.4, "Online": 1.0}
PRODUCTS = {"Kaggle": 1.0, "Pencil": 0.5, "Sticker": 0.3, "Mug": 0.8}  # each with its own yearly peak


def smape(truth: np.ndarray, pred: np.ndarray) -> float:
    """Kaggle's SMAPE in percent (0/0 counts as 0)."""
    denominator = (np.abs(truth) + np.abs(pred)) / 2
    ratio = np.where(denominator == 0, 0.0, np.abs(pred - truth) / np.where(denominator == 0, 1, denominator))
    return float(100 * ratio.mean())


def sales(train_years: int = 4, test_years: int = 1, seed: int = 0, scale: int = 1) -> tuple[pd.DataFrame, pd.Timestamp]:
    """Every day of every series, with its sales; and the first test day. `scale` stores of each kind (a table
    `scale` times as long: 3 makes 263,000 training rows)."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2017-01-01")
    first_test = start + pd.DateOffset(years=train_years)
    dates = pd.date_range(start, first_test + pd.DateOffset(years=test_years) - pd.Timedelta(days=1), freq="D")
    stores = {f"{name}{'' if i == 0 else f' {i + 1}'}": size * (1 + 0.1 * i) for name, size in STORES.items() for i in range(scale)}
    grid = pd.MultiIndex.from_product([dates, list(COUNTRIES), list(stores), list(PRODUCTS)],
                                      names=["date", "country", "store", "product"]).to_frame(index=False)
    years = (grid["date"] - start).dt.days / 365.25
    growth = grid["country"].map(COUNTRIES).to_numpy()
    level = 30 * grid["store"].map(stores).to_numpy() * grid["product"].map(PRODUCTS).to_numpy()
    peak = grid["product"].map({p: i * 90 for i, p in enumerate(PRODUCTS)}).to_numpy()  # each product peaks in its season
    yearly = 1 + 0.3 * np.cos(2 * np.pi * (grid["date"].dt.day_of_year.to_numpy() - peak) / 365.25)
    weekly = np.array([0.9, 0.88, 0.9, 0.95, 1.05, 1.2, 1.25])[grid["date"].dt.day_of_week.to_numpy()]
    country_level = grid["country"].map({c: 0.5 + 0.3 * i for i, c in enumerate(COUNTRIES)}).to_numpy()
    mean = level * country_level * np.exp(growth * years) * yearly * weekly
    grid["num_sold"] = np.round(mean * rng.lognormal(0, 0.08, len(grid)))
    grid.insert(0, "id", np.arange(len(grid)))
    grid["date"] = grid["date"].dt.strftime("%Y-%m-%d")
    return grid, first_test


def rmsle(truth: np.ndarray, pred: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.log1p(pred) - np.log1p(truth)) ** 2)))


# name: (slug, metric name, its function, id column, target column)
DATA = {"sales": ("sales-forecast", "smape", smape, "id", "num_sold"),
        "bike": ("bike-forecast", "rmsle", rmsle, "datetime", "count")}


def bike() -> tuple[pd.DataFrame, pd.DataFrame]:
    """bike-sharing-demand's labelled hours: before 2012-07-01 as train, from it as test (with their counts)."""
    mirror = Path(os.environ.get("AUTOML_MIRROR", Path(__file__).resolve().parents[2] / "shared/kaggle/competitions"))
    with zipfile.ZipFile(mirror / "bike-sharing-demand.zip") as archive:
        table = pd.read_csv(archive.open("train.csv")).drop(columns=["casual", "registered"])  # test.csv has neither
    later = table["datetime"] >= "2012-07-01"
    return table[~later], table[later]


def make(folder: Path, data: str = "sales", seed: int = 0, scale: int = 1) -> tuple[Path, np.ndarray]:
    """The competition's zip and the test's answers."""
    slug, _, _, id_column, target = DATA[data]
    if data == "bike":
        train, test = bike()
    else:
        table, first_test = sales(seed=seed, scale=scale)
        later = table["date"] >= first_test.strftime("%Y-%m-%d")
        train, test = table[~later], table[later]
    bundle = folder / f"{slug}.zip"
    with zipfile.ZipFile(bundle, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("train.csv", train.to_csv(index=False))
        archive.writestr("test.csv", test.drop(columns=target).to_csv(index=False))
        archive.writestr("sample_submission.csv", pd.DataFrame({id_column: test[id_column], target: 100}).to_csv(index=False))
    return bundle, test[target].to_numpy()


def run(bundle: Path, folder: Path, timeout: float, models: str, truth: np.ndarray, data: str = "sales",
        device: str = "auto") -> dict:
    slug, metric, scorer, _, target = DATA[data]
    command = [sys.executable, "-m", "automl.cli", "run", slug, "--from", str(bundle),
               "--timeout", str(timeout), "--metric", metric, "--models", models, "--runs-dir", str(folder / "runs"),
               "--data-dir", str(folder / "data"), "--device", device]
    start = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.monotonic() - start
    if done.returncode:
        raise SystemExit(f"exit {done.returncode}\n{done.stderr[-3000:]}")
    run_dir = folder / "runs" / slug / "default"
    board = pd.read_csv(run_dir / "leaderboard.csv")
    submitted = pd.read_csv(run_dir / "submission.csv")[target].to_numpy()
    models = []
    for row in board.itertuples():
        path = run_dir / "models" / row.model / "test.npy"
        if not path.is_file() and "#" in row.model:  # a network: its trial's folder
            path = run_dir / "trials" / row.model.split("#")[1] / "test.npy"
        test = scorer(truth, np.load(path)) if path.is_file() else float("nan")
        models.append((row.model, getattr(row, metric), test))
    folds = json.loads((run_dir / "folds.json").read_text()) if (run_dir / "folds.json").is_file() else None
    best = submitted_model(board)
    return {"wall": wall, "best": best, "cv": board.loc[board["model"] == best, metric].iloc[0], "metric": metric,
            "test": scorer(truth, submitted), "models": models, "folds": folds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=120)
    parser.add_argument("--models", default="all")
    parser.add_argument("--data", choices=sorted(DATA), default="sales")
    parser.add_argument("--scale", type=int, default=1, help="sales: this many stores of each kind (3: 263,000 training rows)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (as automl run's --device)")
    parser.add_argument("--keep", type=Path, help="Keep the run here (a folder) instead of a temporary one.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        bundle, truth = make(folder, args.data, scale=args.scale)
        r = run(bundle, folder, args.timeout, args.models, truth, args.data, args.device)
    m = r["metric"]
    print(f"{args.data}: {len(truth):,} test rows; wall {r['wall']:.1f}s of --timeout {args.timeout:g} "
          f"({r['wall'] / args.timeout:.2f}x)")
    if r["folds"]:
        from automl.folds import describe_ranges

        print("\n".join(f"  {line}" for line in describe_ranges(r["folds"])))
    print(f"submission from {r['best']}: cv {m} {r['cv']:.4f}  test {m} {r['test']:.4f}  test / cv {r['test'] / r['cv']:.2f}")
    for name, cv, test in r["models"]:
        print(f"  {name:<16} cv {cv:8.4f}  test {test:8.4f}")


if __name__ == "__main__":
    main()
