"""Our training path against a plain PyTorch loop: same MLP, same data, same epochs.

Both loops train automl's MLP (256 x 2) on the same 200,000 x 50 float tensors with
batch 512 and Adam, in one process, alternating runs so that neither gets a warmer
machine. Ours is the path every trial takes: TensorBatches (slices of tensors already
on the device, reshuffled per epoch) fed to the quiet Lightning Trainer that
automl.train.make_trainer builds, driving TabularModule. It prints the throughput ratio
(ours / plain; 1.0 means no overhead) and the fixed cost of one fit: building the
module and Trainer up to the first batch.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from automl.data import TensorBatches
from automl.models import TabularModule
from automl.models.tabular import MLP, InputSpec
from automl.train import make_trainer

PARAMS = {"family": "mlp", "depth": 2, "width": 256, "activation": "relu", "norm": "none", "dropout": 0.0,
          "optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0}


def data(rows: int, columns: int, seed: int = 0):
    """Numerics and labels; categorical codes, images and tokens are empty, as for a plain table."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, columns, generator=g)
    y = (x[:, :5].sum(1) > 0).long()
    return x, torch.zeros(rows, 0, dtype=torch.long), y


def _empty(rows: int):
    return torch.zeros(rows, 0), torch.zeros(rows, 0, dtype=torch.long)


def plain(x, c, y, epochs: int, batch: int) -> float:
    torch.manual_seed(0)
    net = MLP(InputSpec(x.shape[1]), 2, depth=2, width=256, dropout=0.0)
    images, tokens = _empty(len(x))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, fused=True)  # the optimizer automl builds: the loops differ, not it
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(x))
        xs, cs, ys = x[order], c[order], y[order]
        for i in range(0, len(x), batch):
            opt.zero_grad(set_to_none=True)
            out = net(xs[i:i + batch], cs[i:i + batch], images[i:i + batch], tokens[i:i + batch])
            loss = torch.nn.functional.cross_entropy(out, ys[i:i + batch])
            loss.backward()
            opt.step()
    return time.perf_counter() - start


def ours(x, c, y, epochs: int, batch: int) -> float:
    torch.manual_seed(0)
    start = time.perf_counter()
    batches = TensorBatches(x, c, *_empty(len(x)), y, batch_size=batch)
    module = TabularModule(x.shape[1], (), 2, "binary", batch_size=batch, total_steps=epochs * batches.steps, **PARAMS)
    make_trainer("cpu", "32-true", epochs, []).fit(module, train_dataloaders=batches)
    return time.perf_counter() - start


def fixed_cost(x, c, y, repeats: int = 5) -> float:
    """Seconds from nothing to one finished step, minus one step of the plain loop."""
    small = x[:512], c[:512], y[:512]
    ours(*small, 1, 512)  # warm imports and kernels
    fit = min(_timed(lambda: ours(*small, 1, 512)) for _ in range(repeats))
    step = min(_timed(lambda: plain(*small, 1, 512)) for _ in range(repeats))
    return fit - step


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    x, c, y = data(args.rows, 50)
    plain(x[:5000], c[:5000], y[:5000], 1, 512)  # warm-up
    ours(x[:5000], c[:5000], y[:5000], 1, 512)
    times = {"plain": [], "ours": []}
    for _ in range(args.repeats):  # interleaved pairs: both sides of a pair share the machine's state
        times["plain"].append(plain(x, c, y, args.epochs, 512))
        times["ours"].append(ours(x, c, y, args.epochs, 512))
    ratios = [p / o for p, o in zip(times["plain"], times["ours"], strict=True)]
    ratio = statistics.median(ratios)
    best = {k: statistics.median(v) for k, v in times.items()}
    cost = fixed_cost(x, c, y)
    rows_per_s = {k: args.rows * args.epochs / v for k, v in best.items()}
    print(f"train loop, MLP 256x2, {args.rows:,} x 50, batch 512, {args.epochs} epochs, torch threads "
          f"{torch.get_num_threads()}, median of {args.repeats} interleaved pairs")
    print(f"  plain PyTorch loop : {best['plain']:.2f} s ({rows_per_s['plain']:,.0f} rows/s)")
    print(f"  automl (Lightning) : {best['ours']:.2f} s ({rows_per_s['ours']:,.0f} rows/s)")
    print(f"  throughput ratio   : {ratio:.3f} (ours / plain; target >= 0.95; pairs {', '.join(f'{r:.2f}' for r in ratios)})")
    print(f"  fixed cost per fit : {cost:.3f} s (module + Trainer to the first batch; target <= 0.1)")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"ratio": ratio, "fixed_cost_s": cost, "seconds": best, "rows_per_s": rows_per_s}, handle)


if __name__ == "__main__":
    main()
