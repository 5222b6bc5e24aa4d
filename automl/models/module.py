"""The LightningModule that trains any network family for any task.

It takes plain arguments (the searched hyperparameters by their YAML/Optuna names) and
saves them, so `TabularModule(**trial.params, ...)` rebuilds a trial's model. A network
that returns (n, k, out) is an ensemble of k members: the loss is the mean of the
members' losses and a prediction is the mean of theirs. Optimization
is manual: one zero_grad/backward/step per batch with no closure, which keeps Lightning's
per-step cost near a plain PyTorch loop.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import lightning.pytorch as pl
import numpy as np
import torch
from torch import nn

from automl.models.families import FAMILIES
from automl.models.tabular import InputSpec, attention_rows, fit_bins

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("none", "cosine", "onecycle", "flat_cosine")  # flat_cosine: flat for half the steps, then cosine to 0
DROPOUT_SCHEDULES = ("none", "flat_cosine")  # flat_cosine: every dropout rate follows the learning rate's flat_cosine (RealMLP)
AVERAGING = ("none", "ema")  # ema: validate, keep and predict with an exponential moving average of the weights
EMA_DECAY = 0.999  # per step, from min(EMA_DECAY, (1 + t) / (10 + t)) at step t: early steps average over fewer
OBJECTIVES = ("auto", "squared", "absolute", "cross_entropy")  # auto: cross_entropy to classify, squared to regress
VALUE_TASKS = ("regression", "multitarget")  # the network's outputs are the values; otherwise logits


def activate(task: str, out: torch.Tensor) -> torch.Tensor:
    """Outputs (..., out) as predictions: values as they are, each label's probability (sigmoid,
    multilabel) or class probabilities (softmax)."""
    if task in VALUE_TASKS:
        return out
    return out.sigmoid() if task == "multilabel" else out.softmax(-1)


def flat_cosine(step: int, total: int) -> float:
    """The learning rate's factor at `step` of `total`: 1 for the first half, then a cosine down to 0."""
    half = total / 2
    if step <= half:
        return 1.0
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - half) / max(half, 1))))


def ema_decay(step: int) -> float:
    """The moving average's decay after `step` updates: short memory at first (the first weights are a
    random start), EMA_DECAY once t is large (TensorFlow's ExponentialMovingAverage with num_updates)."""
    return min(EMA_DECAY, (1 + step) / (10 + step))


class DropoutSchedule:
    """Every dropout layer of `net` at its initial rate times flat_cosine(step, total): RealMLP's schedule
    (full dropout while the rate is flat, none by the end). `step(i)` after each optimizer step."""

    def __init__(self, net: nn.Module, total: int):
        self.layers = [(m, m.p) for m in net.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
        self.total = total

    def step(self, i: int) -> None:
        factor = flat_cosine(i, self.total)
        for layer, p in self.layers:
            layer.p = p * factor


class TabularModule(pl.LightningModule):
    def __init__(self, n_numeric: int, cardinalities: tuple[int, ...], out: int, task: str, *,
                 image_shape: tuple[int, ...] = (), vocab_size: int = 0, sequence_length: int = 0, family: str = "mlp",
                 optimizer: str = "adamw", lr: float = 1e-3, weight_decay: float = 1e-5,
                 schedule: str = "none", momentum: float = 0.9, nesterov: bool = False, grad_clip: float = 0.0,
                 batch_size: int = 256, total_steps: int = 1, objective: str = "auto", label_smoothing: float = 0.0,
                 dropout_schedule: str = "none", weight_averaging: str = "none", **network):
        super().__init__()
        for key, value, allowed in (("family", family, FAMILIES), ("optimizer", optimizer, OPTIMIZERS),
                                    ("schedule", schedule, SCHEDULES), ("objective", objective, OBJECTIVES),
                                    ("dropout_schedule", dropout_schedule, DROPOUT_SCHEDULES),
                                    ("weight_averaging", weight_averaging, AVERAGING)):
            if value not in allowed:
                raise ValueError(f"{key} {value!r}: expected one of {', '.join(allowed)}")
        regression = task in VALUE_TASKS
        self.objective = objective if objective != "auto" else "squared" if regression else "cross_entropy"
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing {label_smoothing!r}: expected a share from 0 to below 1")
        if (self.objective == "cross_entropy") == regression:
            raise ValueError(f"objective {objective!r} does not fit task {task!r}: cross_entropy is for "
                             "classification, squared and absolute for regression")
        self.save_hyperparameters()
        spec = InputSpec(n_numeric, tuple(cardinalities), tuple(image_shape), vocab_size, sequence_length)
        self.net = FAMILIES[family](spec, out, **network)
        # Rows predicted at once: attention over many column tokens holds (rows, heads, tokens, tokens) scores
        tokens = n_numeric + len(cardinalities) + 1 if family == "ft_transformer" else 0
        self.chunk = 1024 if not tokens else min(1024, attention_rows(tokens, **{
            k: int(v) for k, v in network.items() if k in ("layers", "d_token", "heads")}))
        self.automatic_optimization = False
        self.scorer: Callable[[np.ndarray], float] | None = None  # set by the search, not a hyperparameter
        self.deadline: float | None = None  # time.monotonic() when training must stop, set by fit_fold
        self.last_predictions: np.ndarray | None = None
        self.dropouts = DropoutSchedule(self.net, total_steps) if dropout_schedule == "flat_cosine" else None
        self.ema: list[torch.Tensor] | None = None  # the averaged parameters (weight_averaging: ema), while training
        self.steps_done = 0

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor, images: torch.Tensor,
                tokens: torch.Tensor) -> torch.Tensor:
        """numeric (n, p), categorical (n, c), images (n, C, H, W) or (n, 0), tokens (n, L) or (n, 0)."""
        return self.net(numeric, categorical, images, tokens)

    def fit_bins(self, numeric: np.ndarray) -> TabularModule:
        """Data-dependent set-up on the training numerics (n, p): piecewise-linear embeddings'
        bins. Call before training; a network without such embeddings is left as it is."""
        fit_bins(self.net, numeric)
        return self

    def loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """output (n, out) or an ensemble's (n, k, out); y (n,) class ids or standardized values, or
        (n, t) standardized values (multitarget) or 0/1 labels as floats (multilabel)."""
        if output.ndim == 3:  # every member learns from every row: (n * k, out) against k copies of y
            k = output.shape[1]
            output, y = output.flatten(0, 1), y.repeat_interleave(k, dim=0)
        smoothing = self.hparams.label_smoothing  # classification only: a regression's targets are values
        if self.objective == "cross_entropy" and self.hparams.task == "multilabel":
            y = y * (1 - smoothing) + 0.5 * smoothing if smoothing else y
            return nn.functional.binary_cross_entropy_with_logits(output, y)  # the mean over rows and labels
        if self.objective == "cross_entropy":
            return nn.functional.cross_entropy(output, y, label_smoothing=smoothing)
        loss = nn.functional.l1_loss if self.objective == "absolute" else nn.functional.mse_loss
        return loss(output.squeeze(-1), y)

    def training_step(self, batch, batch_idx):
        """One optimizer step per mini-batch of `batch_size` rows in this group of rows.

        Lightning applies the precision's autocast around this method. The precisions we
        allow (32-true, bf16-mixed) need no loss scaling, so backward and the optimizer
        step are called directly: Lightning's per-call wrappers would cost more than a
        small network's step.
        """
        optimizer, scheduler = self.optimizers().optimizer, self.lr_schedulers()
        clip = self.hparams.grad_clip
        loss = None
        for *inputs, y in zip(*(t.split(self.hparams.batch_size) for t in batch), strict=True):
            if len(y) < 2 and len(batch[-1]) > 1:  # a 1-row remainder of a group: batch norm cannot train on it
                continue
            if self.deadline is not None and time.monotonic() >= self.deadline:  # slow steps: look every step
                self.trainer.should_stop = True
                break
            optimizer.zero_grad(set_to_none=True)
            loss = self.loss(self(*inputs), y)
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(self.parameters(), clip)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            self.after_step()
        return loss

    def after_step(self) -> None:
        """The per-step schedules that are not the optimizer's: dropout rates, the weights' moving average."""
        self.steps_done += 1
        if self.dropouts is not None:
            self.dropouts.step(self.steps_done)
        if self.hparams.weight_averaging == "ema":
            weights = [p.detach() for p in self.parameters()]
            if self.ema is None:
                self.ema = [w.clone() for w in weights]
            else:
                torch._foreach_lerp_(self.ema, weights, 1 - ema_decay(self.steps_done))

    def swap_average(self) -> None:
        """Exchange the trained weights and their moving average (both ways: call it again to undo)."""
        if self.ema is not None:
            with torch.no_grad():
                for p, average in zip(self.parameters(), self.ema, strict=True):
                    held = p.detach().clone()
                    p.copy_(average)
                    average.copy_(held)

    # Validation scores the average, so early stopping and KeepBest (a callback: its on_validation_end runs
    # before the module's) judge and keep the averaged weights; training goes on from the trained ones.
    def on_validation_start(self):
        self.swap_average()

    def on_validation_end(self):
        self.swap_average()

    def predict_arrays(self, *inputs: torch.Tensor, chunk: int | None = None) -> np.ndarray:
        """Probabilities (classification, each label's for multilabel) or raw outputs (regression:
        (n,), or (n, t) for multitarget) as float64 numpy; an ensemble's members are averaged
        (probabilities after their softmax or sigmoid). Chunks of 1,024 rows: attention over
        many column tokens holds (chunk, heads, tokens, tokens) scores: `self.chunk` rows by default."""
        chunk = chunk or self.chunk
        task = self.hparams.task
        outputs = []
        with torch.no_grad():
            for start in range(0, inputs[0].shape[0], chunk):
                out = self(*(t[start:start + chunk] for t in inputs)).float()  # (n, out) or (n, k, out)
                out = activate(task, out)
                out = out.mean(1) if out.ndim == 3 else out
                outputs.append(out.squeeze(-1) if task == "regression" else out)
        return torch.cat(outputs).cpu().numpy().astype(np.float64)

    def validation_step(self, batch, batch_idx):
        self.last_predictions = self.predict_arrays(*batch)

    def on_validation_epoch_end(self):
        if self.trainer.sanity_checking or self.scorer is None:
            return
        if not np.isfinite(self.last_predictions).all():
            raise FloatingPointError("the network diverged: its predictions became NaN or infinite")
        self.log("val_score", self.scorer(self.last_predictions), prog_bar=False, logger=False)

    def configure_optimizers(self):
        h = self.hparams
        decay = [p for p in self.parameters() if p.ndim >= 2]  # not biases, norms or scalars
        rest = [p for p in self.parameters() if p.ndim < 2]
        groups = [{"params": decay, "weight_decay": h.weight_decay}, {"params": rest, "weight_decay": 0.0}]
        if h.optimizer == "sgd":
            optimizer = torch.optim.SGD(groups, lr=h.lr, momentum=h.momentum, nesterov=h.nesterov and h.momentum > 0)
        elif h.optimizer == "rmsprop":
            optimizer = torch.optim.RMSprop(groups, lr=h.lr, momentum=h.momentum)
        else:
            # fused: one kernel per step instead of several passes over every parameter (2.7x faster on
            # a CPU for a 35,619 x 64 word embedding, where the step was the optimizer's)
            optimizer = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[h.optimizer](groups, lr=h.lr, fused=True)
        if h.schedule == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, h.total_steps))
        elif h.schedule == "onecycle":
            scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=h.lr, total_steps=max(2, h.total_steps))
        elif h.schedule == "flat_cosine":  # RealMLP's and many Kaggle recipes': the full rate, then a cosine decay
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: flat_cosine(step, h.total_steps))
        else:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
