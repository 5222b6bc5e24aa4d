"""The network training recipe, one choice at a time: what does each change score, with no search?

Each enqueued default of pipelines/tabular.yaml (RealMLP-TD-like mlp, TabM-mini with piecewise
embeddings) is trained as it is, then with one of its recipe choices changed back (numeric inputs
quantile-mapped or robust-scaled with smooth clipping; PBLD, periodic or no numeric embeddings;
flat-then-cosine, cosine or no schedule; label smoothing 0.1 or none; dropout following flat-then-cosine;
an exponential moving average of the weights), on the first FOLDS folds of
each table (the tabular bundles in ../shared or AUTOML_MIRROR, and scale.py's Playground table at
20,000 rows), with the competition's metric. Prints each variant's mean score over those folds and
its gain over the default (positive: better), so that a choice is kept only where it wins.

    python benchmarks/recipe.py                          # every table, 2 folds
    python benchmarks/recipe.py --only playground-series-s3e26 --folds 3
    python benchmarks/recipe.py --variants "weights ema,dropout flat_cosine"   # the default and these two
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import make_bundle  # noqa: E402

from automl.folds import fold_features, make_folds  # noqa: E402
from automl.metrics import score  # noqa: E402
from automl.pipeline import load_pipeline  # noqa: E402
from automl.rundir import prepare  # noqa: E402
from automl.train import fit_fold  # noqa: E402

HERE = Path(__file__).resolve().parent
MIRROR = Path(os.environ.get("AUTOML_MIRROR", HERE.parent.parent / "shared" / "kaggle" / "competitions"))
TABLES = ("playground-series-s3e26", "house-prices-advanced-regression-techniques", "playground-series-s3e5",
          "mercedes-benz-greener-manufacturing", "titanic", "scale-20000")
# variant name -> (numeric scaling, changes to the default's parameters)
VARIANTS = {
    "mlp": {"as enqueued": ("quantile", {}), "numeric robust": ("robust", {}),
            "embeddings none": ("quantile", {"num_embeddings": "none"}),
            "embeddings periodic": ("quantile", {"num_embeddings": "periodic"}),
            "schedule cosine": ("quantile", {"schedule": "cosine"}), "schedule none": ("quantile", {"schedule": "none"}),
            "label smoothing 0": ("quantile", {"label_smoothing": 0.0}),
            "dropout flat_cosine": ("quantile", {"dropout_schedule": "flat_cosine"}),
            "weights ema": ("quantile", {"weight_averaging": "ema"})},
    "tabm": {"as enqueued": ("quantile", {}), "numeric robust": ("robust", {}),
             "embeddings none": ("quantile", {"num_embeddings": "none"}),
             "embeddings pbld": ("quantile", {"num_embeddings": "pbld"}),
             "schedule flat_cosine": ("quantile", {"schedule": "flat_cosine"}),
             "label smoothing 0.1": ("quantile", {"label_smoothing": 0.1}),
             "dropout flat_cosine": ("quantile", {"dropout_schedule": "flat_cosine"}),
             "weights ema": ("quantile", {"weight_averaging": "ema"})},
}


def problem_of(table: str, folder: Path):
    bundle = make_bundle(int(table.split("-")[1]), folder)[0] if table.startswith("scale-") else MIRROR / f"{table}.zip"
    return prepare(table, folder / "data", bundle)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated tables")
    parser.add_argument("--folds", type=int, default=2, help="folds of 5 to train on")
    parser.add_argument("--families", default="mlp,tabm")
    parser.add_argument("--variants", help="comma-separated variant names to run besides 'as enqueued' (default: all)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    recipe = load_pipeline("tabular")
    defaults = {d["family"]: d for d in recipe.defaults}
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for table in [t for t in TABLES if not args.only or t in args.only.split(",")]:
            problem = problem_of(table, Path(scratch))
            assignment = make_folds(problem, 5, 0)
            features = {}
            for family in args.families.split(","):
                base = None
                for name, (numeric, change) in VARIANTS[family].items():
                    if args.variants and name != "as enqueued" and name not in args.variants.split(","):
                        continue
                    if numeric not in features:
                        features[numeric] = fold_features(problem, assignment, numeric=numeric)[:args.folds]
                    params = {**defaults[family], **change}
                    started, scores = time.monotonic(), []
                    for fold in features[numeric]:
                        fit = fit_fold(problem, fold, params, max_epochs=recipe.max_epochs, patience=recipe.patience,
                                       predict_test=False)
                        scores.append(score(problem.metric, problem.y[fold.valid_rows], fit.valid))
                    mean = float(np.mean(scores))
                    base = mean if base is None else base
                    gain = (mean - base) * (1 if problem.metric.greater_is_better else -1)
                    rows.append({"table": table, "family": family, "variant": name, "metric": problem.comp.metric,
                                 "score": mean, "gain": gain, "seconds": time.monotonic() - started})
                    print(f"{table:<44} {family:<5} {name:<22} {problem.comp.metric} {mean:.5f}  gain {gain:+.5f}  "
                          f"{rows[-1]['seconds']:.0f}s", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
