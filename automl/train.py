"""Train one network on one fold with Lightning, quietly and cheaply.

No checkpoint files, loggers, progress bars or model summaries: a trial must be cheap to
start. The best epoch's weights are kept in memory (early stopping on the competition
metric), and a deadline callback ends training within a few mini-batches once the run's time is up.
"""

from __future__ import annotations

import copy
import logging
import time
import warnings
from dataclasses import dataclass

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping

from automl.data import OneBatch, TensorBatches
from automl.folds import Fold, take
from automl.metrics import score
from automl.models import TabularModule
from automl.models.tabular import ATTENTION_FLOATS, attention_rows
from automl.problem import Problem

for _name in ("lightning.pytorch", "lightning.fabric", "lightning"):
    logging.getLogger(_name).setLevel(logging.ERROR)
warnings.filterwarnings("ignore", module="lightning")
warnings.filterwarnings("ignore", message=".*does not have many workers.*")


PRECISIONS = ("32-true", "bf16-mixed")  # neither needs loss scaling (see TabularModule.training_step)


def resolve_device(device: str) -> str:
    """'auto' means the GPU when there is one."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        from automl.errors import AutomlError

        raise AutomlError("--device cuda: no CUDA GPU is visible to torch; use --device cpu or auto")
    return device


@dataclass
class FoldFit:
    valid: np.ndarray  # predictions for the validation rows, in the problem's form
    test: np.ndarray
    epochs: int
    best_score: float
    curve: list[float]  # validation score after each epoch
    predict_per_row: float = 0.0  # seconds to predict one row (the final valid and test predictions)
    batch: int = 0  # the mini-batch size it trained with


class Deadline(Callback):
    """Stop training once `at` (time.monotonic) has passed, checked after every group of
    mini-batches: a network whose epochs are slow (wide data, attention over many columns)
    must not run past the budget by a whole epoch. Lightning leaves the epoch at once."""

    def __init__(self, at: float | None):
        self.at = at
        self.hit = False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.at is not None and time.monotonic() >= self.at:
            self.hit = trainer.should_stop = True


class KeepBest(Callback):
    """Remember the weights of the best validation epoch (in memory, no files)."""

    def __init__(self, greater_is_better: bool):
        self.sign = 1.0 if greater_is_better else -1.0
        self.best, self.state, self.curve = -np.inf, None, []

    def on_validation_end(self, trainer, pl_module):
        score = trainer.callback_metrics.get("val_score")
        if score is not None:
            self.curve.append(float(score))
        if score is not None and self.sign * float(score) > self.best:
            self.best = self.sign * float(score)
            self.state = copy.deepcopy(pl_module.state_dict())


class Target:
    """The training target of one fold: log1p for rmsle, standardized for regression (each
    column on its own for multitarget); class codes as they are, 0/1 labels as floats (multilabel)."""

    def __init__(self, problem: Problem, train_rows: np.ndarray):
        self.problem = problem
        self.labels = problem.n_classes > 0 or problem.multilabel
        self.log = problem.metric.target_transform == "log1p"
        y = problem.y[train_rows]
        if self.labels:
            self.mean, self.std = 0.0, 1.0
        else:
            y = np.log1p(y) if self.log else y
            std = y.std(axis=0)
            self.mean, self.std = y.mean(axis=0), np.where(std > 0, std, 1.0)  # scalars, or (t,) per target

    def encode(self, rows: np.ndarray) -> np.ndarray:
        y = self.problem.y[rows]
        if self.labels:
            return y.astype(np.float32) if self.problem.multilabel else y
        return (((np.log1p(y) if self.log else y) - self.mean) / self.std).astype(np.float32)

    def decode(self, output: np.ndarray) -> np.ndarray:
        if self.labels:
            return output
        values = output * self.std + self.mean
        values = np.expm1(values) if self.log else values
        return np.maximum(values, np.where(self.problem.y.min(axis=0) >= 0, 0.0, -np.inf))  # a count is never negative


def tensors(features, device: str) -> tuple[torch.Tensor, ...]:
    """numeric, categorical, images and tokens on the device; empty (n, 0) when absent."""
    n = len(features)
    images = features.images if features.images is not None else np.zeros((n, 0), np.float32)
    tokens = features.tokens if features.tokens is not None else np.zeros((n, 0), np.int32)
    return tuple(torch.as_tensor(a, device=device) for a in (features.numeric, features.categorical, images, tokens))


def build_module(problem: Problem, fold: Fold, params: dict, total_steps: int) -> TabularModule:
    out = problem.n_classes or problem.n_targets
    features = fold.train
    image_shape = features.images.shape[1:] if features.images is not None else ()
    return TabularModule(features.numeric.shape[1], features.cardinalities, out, problem.comp.task,
                         image_shape=tuple(image_shape), vocab_size=features.vocab_size,
                         sequence_length=features.sequence_length, total_steps=total_steps,
                         objective=objective_for(problem), **params).fit_bins(features.numeric)


def make_trainer(device: str, precision: str, max_epochs: int, callbacks: list) -> pl.Trainer:
    """A Trainer that writes nothing and prints nothing: trials stay cheap to start."""
    return pl.Trainer(
        accelerator="gpu" if device == "cuda" else "cpu", devices=1, precision=precision, max_epochs=max_epochs,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, callbacks=callbacks,
    )


VALID_ROWS = 20_000  # validation rows scored after each epoch (all of them are predicted at the end)
MAX_STEPS_PER_EPOCH = 256  # an "epoch" on a large table is this many steps: validation, early stopping and pruning keep pace


GPU_ATTENTION = 16  # a GPU's attention batches may hold this many times a CPU's activations (2 GiB)
# Processes of this run training at once on this machine's memory (its forked search processes:
# automl.workers sets it for the network stage); they divide a CPU's activations between them.
SHARING_PROCESSES = 1


def column_tokens(features) -> int:
    """Tokens an FT-Transformer reads for these features: one per column, and [CLS]."""
    return features.numeric.shape[1] + features.categorical.shape[1] + 1


def batch_size_for(params: dict, rows: int, tokens: int = 0, device: str = "cpu") -> int:
    """The searched batch size, raised on large tables: about a thousand steps per pass over
    the rows at most (800,000 rows in batches of 32 would be 25,000 steps). Attention over
    `tokens` column tokens lowers it to keep the activations near 128 MiB on a CPU, divided
    between the `SHARING_PROCESSES` training at once (`attention_rows`), 2 GiB on a GPU, whose
    small batches would leave it idle."""
    floor = 2 ** int(round(np.log2(max(rows / 1000, 1.0))))
    batch = max(int(params.get("batch_size", 256)), floor)
    if params.get("family") == "ft_transformer" and tokens:
        floats = ATTENTION_FLOATS // SHARING_PROCESSES if device == "cpu" else ATTENTION_FLOATS * GPU_ATTENTION
        batch = min(batch, attention_rows(tokens, floats=floats,
                                          **{k: int(params[k]) for k in ("layers", "d_token", "heads") if k in params}))
    return batch


def rows_per_second(problem: Problem, fold: Fold, params: dict, batch: int, device: str = "cpu", steps: int = 12) -> float:
    """Training rows a second for this network in batches of `batch`: a timed probe of a few optimizer steps
    (forward, loss, backward, step) on the fold's first rows, after one untimed step; a fraction of a second."""
    rows = np.arange(min(len(fold.train_rows), batch * (steps + 1)))
    sample = Fold(fold.train_rows[rows], fold.valid_rows[:0], take(fold.train, rows), fold.valid, fold.test)
    module = build_module(problem, sample, {**params, "batch_size": batch}, total_steps=steps + 1).to(device)
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4)
    inputs = tensors(sample.train, device)
    y = torch.as_tensor(Target(problem, sample.train_rows).encode(sample.train_rows), device=device)
    module.train()
    started, served = 0.0, 0
    for step in range(steps + 1):
        if step == 1:
            started = time.perf_counter()
        at = torch.as_tensor(np.random.default_rng(step).integers(0, len(rows), batch), device=device)
        optimizer.zero_grad()
        module.loss(module(*(t.index_select(0, at) for t in inputs)), y.index_select(0, at)).backward()
        optimizer.step()
        served += batch * (step > 0)
    if device == "cuda":
        torch.cuda.synchronize()
    return served / max(time.perf_counter() - started, 1e-6)


def predict_seconds_per_row(problem: Problem, fold: Fold, params: dict, device: str = "cpu", rows: int = 2048) -> float:
    """Seconds this network takes to predict one row (its weights do not matter, only its shape): a
    timed prediction of up to `rows` validation rows, after an untimed one of a few rows."""
    sample = np.arange(min(len(fold.train_rows), 4 * rows))  # piecewise bins follow training rows
    module = build_module(problem, Fold(fold.train_rows[sample], fold.valid_rows[:0], take(fold.train, sample),
                                        fold.valid, fold.test), params, total_steps=1).to(device)
    module.eval()
    inputs = tensors(take(fold.valid, np.arange(min(len(fold.valid_rows), rows))), device)
    module.predict_arrays(*(t[:8] for t in inputs))
    started = time.perf_counter()
    module.predict_arrays(*inputs)
    return (time.perf_counter() - started) / max(1, len(inputs[0]))


def objective_for(problem: Problem) -> str:
    """The network's loss, from the competition metric's row of the metric table."""
    objective = getattr(problem.metric, "objective", "")
    if problem.n_classes or problem.multilabel:  # multilabel: binary cross-entropy per label
        return "cross_entropy"
    return "absolute" if objective == "absolute" else "squared"


def fit_fold(problem: Problem, fold: Fold, params: dict, *, device: str = "cpu", max_epochs: int = 30,
             patience: int = 5, precision: str = "32-true", callbacks=(), deadline: float | None = None,
             seed: int = 0, predict_test: bool = True, give_up: float | None = None, batch: int | None = None,
             schedule_epochs: int | None = None) -> FoldFit:
    """Train on the fold's train rows, early-stop on its validation rows, predict test.

    `batch`: the mini-batch size to train with (a completion keeps the one its trial was searched
    with); None: `batch_size_for` the fold's rows. `schedule_epochs`: the epochs the learning-rate
    schedule spans, when training stops before its end (a forecast's refit stops at the epoch where
    its fold's network was best, on that network's schedule); None: `max_epochs`.

    `give_up`: a time.monotonic() after which the fit is of no use to the caller (the run's
    deadline for a search trial): when training ends past it, nothing is predicted (predicting
    a transformer's rows can take as long as an epoch) and the fit has no curve."""
    pl.seed_everything(seed, verbose=False)
    target = Target(problem, fold.train_rows)
    y = torch.as_tensor(target.encode(fold.train_rows), device=device)
    params = {**params, "batch_size": batch or batch_size_for(params, len(fold.train_rows), column_tokens(fold.train), device)}
    batches = TensorBatches(*tensors(fold.train, device), y, batch_size=params["batch_size"], seed=seed,
                            max_steps=MAX_STEPS_PER_EPOCH)
    module = build_module(problem, fold, params, total_steps=(schedule_epochs or max_epochs) * batches.steps)
    if device != "cpu":  # prediction chunks sized for a CPU's memory would leave a GPU idle
        module.chunk = min(1024, module.chunk * GPU_ATTENTION)
    module.deadline = deadline
    # Each epoch is scored on at most VALID_ROWS validation rows (a fixed sample): on a large
    # table, predicting every validation row after every epoch would cost as much as training.
    watch = np.arange(len(fold.valid_rows))
    if len(watch) > VALID_ROWS:
        watch = np.sort(np.random.default_rng(seed).choice(watch, VALID_ROWS, replace=False))
    y_valid = problem.y[fold.valid_rows[watch]]
    module.scorer = lambda pred: _score(problem, y_valid, target.decode(pred))
    keep = KeepBest(problem.metric.greater_is_better)
    stop = Deadline(deadline)
    mode = "max" if problem.metric.greater_is_better else "min"
    trainer = make_trainer(device, precision, max_epochs, [
        EarlyStopping("val_score", mode=mode, patience=patience, check_finite=False), keep, stop, *callbacks])
    valid_inputs = tensors(fold.valid, device)  # moved to the device once: validation and the final prediction
    watched = valid_inputs if len(watch) == len(fold.valid_rows) else tuple(t[torch.as_tensor(watch, device=device)]
                                                                               for t in valid_inputs)
    trainer.fit(module, train_dataloaders=batches, val_dataloaders=OneBatch(*watched))
    module.to(device)  # Lightning's teardown moves a GPU-trained module back to the CPU; its inputs stay on the GPU
    if keep.state is not None:
        module.load_state_dict(keep.state)
    module.eval()
    if give_up is not None and time.monotonic() >= give_up:
        return FoldFit(np.zeros(0), np.zeros(0), trainer.current_epoch, keep.sign * keep.best, [], 0.0, params["batch_size"])
    predicting = time.monotonic()
    valid = target.decode(module.predict_arrays(*valid_inputs))
    test = target.decode(module.predict_arrays(*tensors(fold.test, device))) if predict_test else np.zeros(0)
    per_row = (time.monotonic() - predicting) / max(1, len(valid) + len(test))
    return FoldFit(valid, test, trainer.current_epoch, keep.sign * keep.best, keep.curve, per_row, params["batch_size"])


def _score(problem: Problem, y: np.ndarray, pred: np.ndarray) -> float:
    # Per-epoch scores steer early stopping and pruning: a plain 0.5 threshold is enough
    # and cheap; the final threshold is picked once on the out-of-fold predictions.
    return score(problem.metric, y, pred)
