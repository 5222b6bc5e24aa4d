"""Does `--timeout` hold at Playground scale, and do the networks get their share?

Builds Kaggle-format bundles of a Playground-style synthetic table (18 numerics with
missing values, 8 string categoricals of 3 to 2,000 levels, a date, a binary target
with a non-linear signal, scored by AUC) at 10,000 to 1,000,000 train rows (test = a
third of train), runs `automl run SLUG --from bundle.zip --timeout T` on each as a
subprocess, and prints per size and budget: wall / budget, peak memory (the largest
process's peak RSS, or the sampled sum of the process tree's proportional set sizes when
that is larger: the run's forked search processes) and its ratio to the raw frames' size,
network trials searched and completed on every fold, the best
network against the best baseline, and where the time went, stage by stage.

    python benchmarks/scale.py                      # 10k, 100k, 300k, 1M rows x 120 s and 600 s
    python benchmarks/scale.py --rows 300000 --timeouts 120
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

SIZES = (10_000, 100_000, 300_000, 1_000_000)
TIMEOUTS = (120, 600)


def playground(rows: int, seed: int = 0) -> pd.DataFrame:
    """A Playground-style table: mixed numerics with missing values, string categoricals, a date."""
    rng = np.random.default_rng(seed)
    frame = {"id": np.arange(rows)}
    numerics = rng.normal(size=(rows, 18)).astype(np.float32)
    numerics[:, 3] = np.exp(numerics[:, 3])  # a skewed column
    for j in range(18):
        column = numerics[:, j].copy()
        column[rng.random(rows) < 0.05] = np.nan
        frame[f"num_{j}"] = column
    levels = (3, 5, 10, 30, 100, 300, 1000, 2000)
    codes = [rng.zipf(1.3, size=rows) % size for size in levels]
    for j, (size, code) in enumerate(zip(levels, codes, strict=True)):
        names = np.array([f"c{j}_{i}" for i in range(size)])
        frame[f"cat_{j}"] = names[code]
    days = rng.integers(0, 1500, rows)
    frame["date"] = (pd.Timestamp("2019-01-01") + pd.to_timedelta(days, unit="D")).strftime("%Y-%m-%d")
    x = np.nan_to_num(numerics)
    effects = rng.normal(size=32)
    signal = (np.sin(2 * x[:, 0]) + x[:, 1] * x[:, 2] + np.abs(x[:, 4]) - 0.5 * np.log1p(x[:, 3])
              + 0.8 * (x[:, 5] > 0.5) * x[:, 6] + effects[codes[2] % 32] + 0.5 * effects[codes[5] % 32]
              + 0.3 * np.cos(days / 365 * 2 * np.pi))
    frame["target"] = (signal + rng.logistic(size=rows) > np.median(signal)).astype(int)
    return pd.DataFrame(frame)


def make_bundle(rows: int, folder: Path) -> tuple[Path, int]:
    """SLUG.zip with train.csv, test.csv and sample_submission.csv; returns it and the frames' bytes."""
    path = folder / f"scale-{rows}.zip"
    table = playground(rows + rows // 3)
    train, test = table.iloc[:rows], table.iloc[rows:].drop(columns="target")
    size = int(train.memory_usage(deep=True).sum() + test.memory_usage(deep=True).sum())
    if not path.is_file():
        sample = pd.DataFrame({"id": test["id"], "target": 0.5})
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as bundle:
            for name, frame in (("train.csv", train), ("test.csv", test), ("sample_submission.csv", sample)):
                bundle.writestr(name, frame.to_csv(index=False))
    return path, size


class TreeMemory(threading.Thread):
    """The peak, sampled every 0.2 s, of the memory a process and all its descendants hold together:
    the sum of their proportional set sizes (a page shared by n processes counts 1/n in each,
    so forked search processes sharing the run's features count them once)."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.done = pid, 0, False

    def run(self) -> None:
        while not self.done:
            self.peak = max(self.peak, sum(_pss(pid) for pid in _descendants(self.pid)))
            time.sleep(0.2)


def _descendants(root: int) -> list[int]:
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    found, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        found += frontier
    return found


def _pss(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    match = re.search(r"^Pss:\s+(\d+) kB", text, re.M)
    return int(match[1]) * 1024 if match else 0


def run(bundle: Path, rows: int, timeout: int, workdir: Path) -> dict:
    slug = bundle.stem
    shutil.rmtree(workdir / "runs" / slug / f"t{timeout}", ignore_errors=True)  # a fresh run, not a resumed one
    command = ["/usr/bin/time", "-f", "peak_kb=%M", sys.executable, "-m", "automl.cli", "run", slug, "--from", str(bundle),
               "--timeout", str(timeout), "--metric", "auc", "--runs-dir", str(workdir / "runs"),
               "--data-dir", str(workdir / "data"), "--name", f"t{timeout}"]
    start = time.perf_counter()
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        tree = TreeMemory(process.pid)
        tree.start()
        stdout, stderr = process.communicate()
        tree.done = True
    done = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    wall = time.perf_counter() - start
    run_dir = workdir / "runs" / slug / f"t{timeout}"
    # the largest single process (exact, from the kernel), or the whole tree's sampled proportional share
    largest = int(re.search(r"peak_kb=(\d+)", done.stderr).group(1)) * 1024 if "peak_kb=" in done.stderr else 0
    peak = max(largest, tree.peak)
    figures = {"rows": rows, "timeout": timeout, "wall": round(wall, 1), "exit": done.returncode, "peak_bytes": peak,
               "valid_submission": False}
    if done.returncode:
        figures["error"] = (done.stderr.strip().splitlines() or ["?"])[-2 if "peak_kb" in done.stderr else -1][:200]
        return figures
    check = subprocess.run([sys.executable, "-m", "automl.cli", "validate", str(run_dir / "submission.csv"), slug,
                            "--data-dir", str(workdir / "data")], capture_output=True, text=True, check=False)
    figures["valid_submission"] = check.returncode == 0
    board = pd.read_csv(run_dir / "leaderboard.csv")
    best = {kind: board[board["kind"] == kind].iloc[0] for kind in ("baseline", "network") if (board["kind"] == kind).any()}
    figures |= {f"best_{k}": f"{row['auc']:.4f} ({row['model']})" for k, row in best.items()}
    timings = json.loads((run_dir / "timings.json").read_text())
    figures["stages"] = timings["stages"]
    searched = re.search(r"networks: (\d+) trials searched.*?(\d+) of the best completed", done.stderr, re.S)
    figures["trials_searched"], figures["trials_completed"] = (int(searched[1]), int(searched[2])) if searched else (0, 0)
    return figures


def report(figures: dict, frames: int) -> str:
    networks = figures.get("stages", {}).get("networks", 0.0)
    stages = ", ".join(f"{k} {v:.0f}" for k, v in figures.get("stages", {}).items())
    return (f"{figures['rows']:>9,} rows  --timeout {figures['timeout']:>3}: wall {figures['wall']:6.1f}s "
            f"({figures['wall'] / figures['timeout']:.2f}x)  peak {figures['peak_bytes'] / 2**30:.2f} GiB "
            f"({figures['peak_bytes'] / frames:.1f}x frames of {frames / 2**30:.2f} GiB)  exit {figures['exit']}"
            f"  submission {'valid' if figures['valid_submission'] else 'MISSING'}\n"
            f"           trials {figures.get('trials_searched', 0)} searched, {figures.get('trials_completed', 0)} "
            f"completed on every fold; networks {networks / figures['wall']:.0%} of the wall clock; "
            f"best network {figures.get('best_network', '-')} vs best baseline {figures.get('best_baseline', '-')}\n"
            f"           seconds: {stages}" + (f"\n           error: {figures['error']}" if "error" in figures else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="*", default=list(SIZES))
    parser.add_argument("--timeouts", type=int, nargs="*", default=list(TIMEOUTS))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep", type=Path, help="keep bundles and runs in this folder")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        for rows in args.rows:
            bundle, frames = make_bundle(rows, folder)
            for timeout in args.timeouts:
                figures = run(bundle, rows, timeout, folder / f"work-{rows}")
                figures["frame_bytes"] = frames
                print(report(figures, frames), flush=True)
                results.append(figures)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
