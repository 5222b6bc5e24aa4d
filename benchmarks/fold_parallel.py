"""Completing a trial on the remaining folds: one fit_fold per fold vs all members together.

The table is synthetic (40 numeric columns, 4 categorical ones, a binary target from both);
5 folds, and the 4 that completion trains after the one-fold search are the members.
For each device present, batch size (128, 256, 512) and row count (20,000 and 200,000
labelled rows), both paths of automl.parallel.fit_folds train the same params for a
fixed number of epochs (no early stop), one after the other in one process. It prints
seconds (of the first pair), the ratio together / sequential (below 1: together is faster;
the median over --repeats interleaved pairs) and both paths' out-of-fold AUC, which should
be close. automl.parallel.CPU_RATIOS holds the CPU figures.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP: steady timings when the machine is shared

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from automl.competition import Competition  # noqa: E402
from automl.folds import Fold, make_folds, splits  # noqa: E402
from automl.metrics import score  # noqa: E402
from automl.parallel import fit_folds  # noqa: E402
from automl.preprocess import Features  # noqa: E402
from automl.problem import Problem, make_problem  # noqa: E402

FAMILIES = {  # pipelines/tabular.yaml's first defaults; batch_size is set per run
    "mlp": {"family": "mlp", "optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-5, "schedule": "cosine", "depth": 2,
            "width": 256, "activation": "relu", "norm": "batch", "dropout": 0.2},
    "resnet": {"family": "resnet", "optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-5, "schedule": "cosine",
               "blocks": 2, "width": 128, "hidden_factor": 2.0, "activation": "relu", "norm": "batch", "dropout": 0.2},
}
CARDINALITIES = (12, 30, 5, 100)


def table(rows: int, test_rows: int = 5000, seed: int = 0) -> tuple[Problem, list[Fold]]:
    """A binary problem and its 5 folds' features (numerics already standard normal: no Preprocessor to wait for)."""
    rng = np.random.default_rng(seed)
    n = rows + test_rows
    numeric = rng.normal(size=(n, 40)).astype(np.float32)
    categorical = np.stack([rng.integers(0, c, n) for c in CARDINALITIES], 1)
    signal = numeric[:, :8] @ rng.normal(size=8) + np.sin(3 * numeric[:, 8]) + (categorical[:, 0] % 3 == 0)
    target = (signal + rng.normal(scale=1.0, size=n) > 0).astype(int)
    frame = pd.DataFrame({"id": np.arange(n), "f": 0.0, "target": target})
    comp = Competition(slug="synthetic", id="id", target="target", task="binary", metric="auc", labels="proba")
    problem = make_problem(comp, frame.iloc[:rows], frame.iloc[rows:].drop(columns="target"))

    def features(at: np.ndarray) -> Features:
        return Features(numeric[at], tuple(f"x{i}" for i in range(40)), categorical[at], tuple(f"c{i}" for i in range(4)),
                        CARDINALITIES, {}, None)

    test = features(np.arange(rows, n))
    return problem, [Fold(s.train_rows, s.valid_rows, features(s.train_rows), features(s.valid_rows), test)
                     for s in splits(make_folds(problem, 5, seed))]


def run(problem: Problem, members: list[Fold], params: dict, device: str, epochs: int, together: bool) -> tuple[float, float]:
    """Seconds to train every member for `epochs` epochs, and their out-of-fold AUC."""
    start = time.perf_counter()
    fits = fit_folds(problem, members, params, device=device, max_epochs=epochs, patience=epochs, together=together)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    rows = np.concatenate([m.valid_rows for m in members])
    return seconds, score(problem.metric, problem.y[rows], np.concatenate([f.valid for f in fits]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--epochs", type=int, default=4, help="epochs at 20,000 rows; fewer on larger tables")
    parser.add_argument("--family", choices=list(FAMILIES), nargs="+", default=["mlp"])
    parser.add_argument("--repeats", type=int, default=1, help="interleaved pairs; the ratio is their median")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"fold_parallel: 4 members (the folds after the first of 5), torch threads {torch.get_num_threads()}; "
          "ratio = together / sequential seconds (below 1: together is faster)")
    small, small_folds = table(2000)
    for together in (False, True):  # warm-up: imports, kernels, vmap's first trace
        run(small, small_folds[1:], {**FAMILIES["mlp"], "batch_size": 128}, "cpu", 1, together)
    figures = []
    for rows in args.rows:
        problem, folds = table(rows)
        epochs = max(1, round(args.epochs * min(1.0, 20_000 / rows) ** 0.5))  # 200,000 rows: a third of the epochs
        for device, family, batch in ((d, f, b) for d in devices for f in args.family for b in args.batch_sizes):
            params = {**FAMILIES[family], "batch_size": batch}
            pairs = [(run(problem, folds[1:], params, device, epochs, together=False),  # interleaved: both sides
                      run(problem, folds[1:], params, device, epochs, together=True))  # of a pair share the machine
                     for _ in range(args.repeats)]
            (sequential, oof_sequential), (together, oof_together) = pairs[0]
            ratio = statistics.median(t[0] / s[0] for s, t in pairs)
            figures.append({"device": device, "family": family, "rows": rows, "batch_size": batch, "epochs": epochs,
                            "sequential_s": sequential, "together_s": together, "ratio": ratio,
                            "oof_auc_sequential": oof_sequential, "oof_auc_together": oof_together})
            print(f"  {device:4} {family:6} rows {rows:>7,} batch {batch:>3} epochs {epochs}: sequential {sequential:6.2f} s, "
                  f"together {together:6.2f} s, ratio {ratio:.2f}; OOF AUC {oof_sequential:.4f} vs {oof_together:.4f}",
                  flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(figures, handle)


if __name__ == "__main__":
    main()
