"""Search throughput with 1 and 2 workers on one study, on this machine.

Each setting runs `automl worker` processes (1, then 2, each with one torch thread per
core it gets) on a fresh SQLite study of the titanic bundle until the study has --trials
finished trials of a small fixed recipe, and prints trials per minute and their ratio.
On 2 cores, 2 workers mostly trade threads inside a trial for trials side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MIRROR = Path(os.environ.get("AUTOML_MIRROR", ROOT.parent / "shared" / "kaggle" / "competitions"))
RECIPE = """numeric: quantile
max_epochs: 8
patience: 3
pruner: none
keep_best: 1
trial_share: 1.0
space:
  family: {choice: [mlp, resnet]}
  optimizer: {choice: [adamw]}
  lr: {float: [0.001, 0.01], log: true}
  batch_size: {choice: [64]}
when:
  mlp: {depth: {int: [2, 2]}, width: {int: [128, 128]}}
  resnet: {blocks: {int: [2, 2]}, width: {int: [128, 128]}}
"""


def trials_per_minute(workers: int, trials: int, folder: Path) -> float:
    folder.mkdir(parents=True)
    recipe = folder / "recipe.yaml"
    recipe.write_text(RECIPE)
    common = ["titanic", "--from", str(MIRROR / "titanic.zip"), "--name", f"w{workers}", "--pipeline", str(recipe),
              "--device", "cpu", "--runs-dir", str(folder / "runs"), "--data-dir", str(folder / "data")]
    # Prepare the run directory (data, folds, features) first, so both settings time trials only.
    subprocess.run([sys.executable, "-m", "automl.cli", "worker", *common, "--trials", "0"], check=True,
                   capture_output=True)
    common += ["--trials", str(trials)]
    threads = max(1, (os.cpu_count() or 1) // workers)
    env = os.environ | {"OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    processes = [subprocess.Popen([sys.executable, "-m", "automl.cli", "worker", *common], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(workers)]
    for process in processes:
        _, err = process.communicate()
        if process.returncode:
            raise SystemExit(f"worker failed: {err.strip().splitlines()[-1] if err.strip() else process.returncode}")
    return trials / ((time.perf_counter() - start) / 60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="automl-workers-") as tmp:
        rates = {n: trials_per_minute(n, args.trials, Path(tmp) / str(n)) for n in (1, 2)}
    print(f"search throughput, titanic, {args.trials} trials (5-fold mlp/resnet 2x128, 8 epochs), "
          f"{os.cpu_count()} cores")
    for n, rate in rates.items():
        print(f"  {n} worker{'s' if n > 1 else ' '}: {rate:.1f} trials per minute")
    print(f"  ratio      : {rates[2] / rates[1]:.2f} (2 workers / 1)")
    if args.json:
        Path(args.json).write_text(json.dumps({"trials_per_minute": rates, "ratio": rates[2] / rates[1]}))


if __name__ == "__main__":
    main()
