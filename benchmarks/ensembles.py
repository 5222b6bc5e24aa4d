"""Which ensemble should be submitted? The greedy blend, the stack, or their mean, scored on a real test.

For each case, a run of every model whose test answers are known: a real bundle with a random quarter of
its train.csv held back as the test (`--bundles`), or forecast.py's forecasts (`--forecasts sales,bike`: the
later dates as the test). From the run's members (their out-of-fold and test predictions, as the run left
them) it fits the greedy blend, the stack and their mean the way automl/ensemble.py does, and prints each
one's held-out (cross-validated) score and its score on the test; then what the old rule (the better
held-out score of the greedy blend and the stack) and the run's own rule picked, and what the run submitted.

    python benchmarks/ensembles.py --timeout 60                                   # the tabular bundles
    python benchmarks/ensembles.py --timeout 120 --bundles none --forecasts bike,sales
    python benchmarks/ensembles.py --keep /tmp/ens --bundles titanic              # keep the runs

Run from a checkout's root (`python -m automl.cli` imports the automl of the current folder).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
import forecast  # noqa: E402
import quality  # noqa: E402
from networks import BUNDLES  # noqa: E402

from automl import ensemble as blends  # noqa: E402
from automl.baselines import CVResult, finish  # noqa: E402
from automl.folds import splits  # noqa: E402
from automl.metrics import score  # noqa: E402
from automl.rundir import load_folds, load_result, prepare  # noqa: E402
from automl.runner import submitted_model  # noqa: E402
from automl.stacking import stack  # noqa: E402


def held_back(slug: str, folder: Path) -> tuple[Path, np.ndarray]:
    """The bundle with a random quarter of its train.csv as the test (quality.py's), and those rows' answers."""
    bundle, answers, comp = quality.held_back(slug, folder)
    return bundle, answers[comp.target].to_numpy()


def members(run_dir: Path, board: pd.DataFrame, folds: int) -> list[CVResult]:
    """Every leaderboard row the ensemble may weigh, with its out-of-fold and test predictions."""
    found = []
    for row in board.itertuples():
        if row.model in ("ensemble", "dummy"):
            continue
        if "#" in row.model:  # a network: its trial's folder
            where = run_dir / "trials" / row.model.split("#")[1]
            scores = [getattr(row, f"fold_{i}") for i in range(folds)]
            found.append(CVResult(row.model, np.load(where / "oof.npy"), np.load(where / "test.npy"), scores, 0.0,
                                  kind="network"))
        else:
            found.append(load_result(run_dir / "models" / row.model))
    return found


def measure(slug: str, bundle: Path, truth: np.ndarray, folder: Path, timeout: float, metric: str | None) -> dict:
    command = [sys.executable, "-m", "automl.cli", "run", slug, "--from", str(bundle), "--timeout", str(timeout),
               "--runs-dir", str(folder / "runs"), "--data-dir", str(folder / "data")] + (["--metric", metric] if metric else [])
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{slug}: exit {done.returncode}\n{done.stderr[-2000:]}")
    comp, problem, _, _ = prepare(slug, folder / "data", bundle, metric)
    run_dir = folder / "runs" / slug / "default"
    board = pd.read_csv(run_dir / "leaderboard.csv")
    folds = splits(load_folds(run_dir, problem, 5, 0))
    found = members(run_dir, board, len(folds))
    y = np.searchsorted(problem.classes, truth) if problem.n_classes else truth.astype(float)

    def on_test(result: CVResult) -> float:
        return score(problem.metric, y, result.test, result.threshold)

    greedy, stacked = blends.ensemble(problem, folds, found, stacking=False), stack(problem, folds, found)
    mean = finish("mean", problem, folds, (greedy.oof + stacked.oof) / 2, (greedy.test + stacked.test) / 2, 0.0)
    sign = 1.0 if problem.metric.greater_is_better else -1.0
    old = max((greedy, stacked), key=lambda r: sign * r.mean)
    submitted = pd.read_csv(run_dir / "submission.csv")
    ours = blends.ensemble(problem, folds, found)
    best = submitted_model(board)
    chosen = ours if best == "ensemble" else next(m for m in found if m.name == best)
    return {"slug": slug, "metric": comp.metric, "folds": len(folds), "rows": len(submitted),
            "greedy": (greedy.mean, on_test(greedy)), "stack": (stacked.mean, on_test(stacked)),
            "mean": (mean.mean, on_test(mean)), "old": ("greedy" if old is greedy else "stack", on_test(old)),
            "rule": (ours.info["method"], on_test(ours)), "submitted": (best, on_test(chosen))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=60)
    parser.add_argument("--bundles", default=",".join(BUNDLES), help="comma-separated slugs, or none")
    parser.add_argument("--forecasts", default="", help="forecast.py's cases: sales, bike")
    parser.add_argument("--keep", type=Path, help="Keep the runs here (a folder) instead of a temporary one.")
    args = parser.parse_args()
    cases = [c for c in args.bundles.split(",") if c and c != "none"] + [f"forecast:{c}" for c in args.forecasts.split(",") if c]
    with tempfile.TemporaryDirectory() as scratch:
        root = args.keep or Path(scratch)
        for case in cases:
            folder = root / case.replace(":", "-")
            folder.mkdir(parents=True, exist_ok=True)
            if case.startswith("forecast:"):
                data = case.split(":")[1]
                bundle, truth = forecast.make(folder, data)
                slug, metric = forecast.DATA[data][0], forecast.DATA[data][1]
            else:
                (bundle, truth), slug, metric = held_back(case, folder), case, None
            r = measure(slug, bundle, truth, folder, args.timeout, metric)
            print(f"{case} ({r['metric']}, {r['folds']} folds, {r['rows']:,} test rows): held-out / test")
            for name in ("greedy", "stack", "mean"):
                print(f"  {name:<8} {r[name][0]:9.4f} / {r[name][1]:.4f}")
            print(f"  old rule picks {r['old'][0]}: {r['old'][1]:.4f}; this rule picks {r['rule'][0]}: {r['rule'][1]:.4f}; "
                  f"submitted {r['submitted'][0]}: {r['submitted'][1]:.4f}", flush=True)


if __name__ == "__main__":
    main()
