"""Train one trial's networks on several folds at once: one batched model, a member per fold.

After the one-fold search, `search.complete` trains a chosen trial on the remaining folds.
`fit_folds` does that one `train.fit_fold` per fold, or together: PyTorch's model-ensembling
pattern (`torch.func.stack_module_state` + `functional_call` + `vmap`), where each member's
parameters, BatchNorm statistics and optimizer state are slices of stacked (members, ...)
tensors and one optimizer step trains every member on a mini-batch of its own.

No member sees its validation rows. Member m reads fold m's training rows only (its
`Fold.train` features, from a Preprocessor fitted on them, or a row sample of them); each
step gathers a batch of its own rows from its own tensors into the (members, batch, ...)
input; vmap keeps losses and BatchNorm's batch statistics per member. The folds' features
are read where they are, never stacked or copied: at 300,000 rows, stacked copies of four
folds' training rows held 250 MB per completing process. Each member early-stops (patience
in epochs) and keeps its best weights on its own validation rows, scored with the
competition metric as fit_fold does, and leaves the stack when it stops, so the others'
steps get cheaper.

Layouts. Each fold's Preprocessor picks its own columns (a column constant in one fold's
training rows is dropped there; rare levels differ), but stacked members need one shape.
`common_layout` takes the union of the numeric columns (a fold lacking one reads zeros
there: no signal, and an un-embedded network's weights on it get no gradient) and each
categorical column's largest cardinality (a fold's codes never reach its table's extra
rows; a fold lacking the column reads code 0, missing). Statistics stay per fold.

BatchNorm. The running statistics are stacked buffers as well: under vmap a batched
buffer takes a batched in-place update, so a member normalizes with its own batch when
training and its own running statistics when predicting, exactly as in fit_fold
(`replace_all_batch_norm_modules_` would make prediction use batch statistics instead).

Families. mlp and resnet (any norm, any numeric embedding) train together. The rest fall
back to sequential fits: tabm (`column_stack` has no batching rule), ft_transformer (its
fused encoder layer has no batching rule either; vmap runs it member by member, slower
than fit_fold), the text and image families, and any table with pixels or tokens.
"""

from __future__ import annotations

import copy
import math
import time
from collections import defaultdict
from contextlib import nullcontext
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch.func import functional_call, stack_module_state

from automl import train
from automl.folds import Fold, take
from automl.metrics import score
from automl.models.module import DropoutSchedule, activate, ema_decay
from automl.preprocess import Features
from automl.problem import Problem
from automl.train import MAX_STEPS_PER_EPOCH, VALID_ROWS, FoldFit, Target, batch_size_for, build_module, fit_fold, tensors

TOGETHER_FAMILIES = ("mlp", "resnet")
CHECK_EVERY = 8  # steps between looks at the deadline
# Together / sequential seconds on a 2-core CPU by batch size and training rows per member:
# benchmarks/fold_parallel.py (mlp 256 x 2, 4 members) on an otherwise idle machine, in the
# `make bench` of benchmarks/RESULTS.md. (Measured while other processes loaded both cores, the
# ratios were 0.9-1.1: together then gains little, so it must win clearly: under CPU_GAIN.)
# The nearest batch size and row count decide; smaller batches than 128 count as 128. On a GPU,
# where small steps wait on kernel launches, it always trains together.
CPU_RATIOS = {128: {16_000: 0.67, 160_000: 0.60}, 256: {16_000: 0.65, 160_000: 0.64},
              512: {16_000: 0.73, 160_000: 0.80}}
CPU_GAIN = 0.95
# What the members training at once may hold on a CPU, divided between the train.SHARING_PROCESSES
# training at once: each member holds its weights, gradients, optimizer state, best weights and a
# batch's activations, so four members of a 4-block resnet 293 wide held 260 MB more than one fit_fold
# at a time (10,000 rows, batch 256), and two processes completing such trials at once passed the run's
# memory limit. At 100,000 rows and 600 s, 256 MiB still took the two completing processes to 1.324 GiB
# against the run's 1.320 (1 GiB + 4x the frames): the estimate counts tensors, not the allocator's
# slack, so real growth was about twice it. On a GPU members share the device's memory: no cap.
TRAINING_BYTES = 2**27


@dataclass(frozen=True)
class Layout:
    """The columns every member reads: numeric names in first-seen order, categorical names with their largest cardinality."""

    numeric_names: tuple[str, ...]
    categorical_names: tuple[str, ...]
    cardinalities: tuple[int, ...]


def common_layout(features: list[Features]) -> Layout:
    numeric = tuple(dict.fromkeys(name for f in features for name in f.numeric_names))
    widest: dict[str, int] = {}
    for f in features:
        for name, cardinality in zip(f.categorical_names, f.cardinalities, strict=True):
            widest[name] = max(widest.get(name, 0), cardinality)
    return Layout(numeric, tuple(widest), tuple(widest.values()))


def align(features: Features, layout: Layout) -> Features:
    """The same rows in the common layout: zeros for a numeric column this fold dropped, code 0 for a categorical one.
    Where only the cardinalities differ (a fold saw fewer levels), the arrays are shared, not copied: every
    code stays below the widest cardinality (at 300,000 rows the copies of four members' rows held 300 MB)."""
    if (features.numeric_names, features.categorical_names) == (layout.numeric_names, layout.categorical_names):
        return replace(features, cardinalities=layout.cardinalities)
    n = len(features)
    numeric = np.zeros((n, len(layout.numeric_names)), np.float32)  # (n, p_union)
    at = {name: i for i, name in enumerate(layout.numeric_names)}
    numeric[:, [at[name] for name in features.numeric_names]] = features.numeric
    categorical = np.zeros((n, len(layout.categorical_names)), np.int32)  # (n, c_union)
    at = {name: i for i, name in enumerate(layout.categorical_names)}
    categorical[:, [at[name] for name in features.categorical_names]] = features.categorical
    return replace(features, numeric=numeric, numeric_names=layout.numeric_names, categorical=categorical,
                   categorical_names=layout.categorical_names, cardinalities=layout.cardinalities)


def aligned(fold: Fold, layout: Layout) -> Fold:
    own = fold.train
    if (own.numeric_names, own.categorical_names, own.cardinalities) == (layout.numeric_names, layout.categorical_names,
                                                                         layout.cardinalities):
        return fold  # already in the common layout: nothing to copy
    return replace(fold, train=align(fold.train, layout), valid=align(fold.valid, layout), test=align(fold.test, layout))


def batchable(folds: list[Fold], params: dict) -> bool:
    """Whether these members can be one vmapped model (see the module docstring)."""
    plain = all(f.train.images is None and f.train.tokens is None for f in folds)
    return bool(folds) and plain and params.get("family", "mlp") in TOGETHER_FAMILIES


def choose(device: str, rows: list[int], params: dict, batch: int | None = None) -> bool:
    """Together on a GPU (small networks wait on kernel launches there); on a CPU where
    benchmarks/fold_parallel.py measured it faster at this batch size and row count.
    Members whose training rows differ by more than a quarter (expanding windows in time)
    train apart: together they share one epoch length. `rows`: each member's training rows."""
    if len(rows) < 2 or max(rows) > 1.25 * min(rows):
        return False
    if device == "cuda":
        return True
    batch = batch or batch_size_for(params, max(rows))
    table = CPU_RATIOS[min(CPU_RATIOS, key=lambda b: abs(math.log2(b / batch)))]
    return table[min(table, key=lambda r: abs(math.log(r / max(rows))))] < CPU_GAIN


def member_bytes(problem: Problem, fold: Fold, params: dict, batch: int) -> int:
    """What one member holds while it trains: its parameters five times (weights, gradients, two
    optimizer moments, the best weights kept) and twice the tensors one batch saves for the backward
    pass (they and the backward's temporaries), counted on a meta-device copy: shapes only, no arithmetic."""
    sample = train_sample(fold, np.arange(min(len(fold.train_rows), 10_000)))  # piecewise bins need some rows
    module = build_module(problem, sample, {**params, "batch_size": batch}, 1).to("meta")
    saved = []

    def pack(tensor):
        saved.append(tensor.numel() * tensor.element_size())
        return tensor

    numeric = torch.zeros((batch, sample.train.numeric.shape[1]), device="meta")
    categorical = torch.zeros((batch, sample.train.categorical.shape[1]), dtype=torch.int64, device="meta")
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        module(numeric, categorical, numeric[:, :0], categorical[:, :0])
    return 5 * sum(p.numel() * p.element_size() for p in module.parameters()) + 2 * sum(saved)


def members_at_once(problem: Problem, folds: list[Fold], params: dict, rows: int, device: str,
                    batch: int | None = None) -> int:
    """How many members fit this process's share of TRAINING_BYTES on a CPU (at least one); all on a GPU."""
    if device != "cpu":
        return len(folds)
    each = member_bytes(problem, folds[0], params, batch or batch_size_for(params, rows))
    return int(max(1, min(len(folds), TRAINING_BYTES // train.SHARING_PROCESSES // max(each, 1))))


def fit_folds(problem: Problem, folds: list[Fold], params: dict, *, device: str = "cpu", max_epochs: int = 30,
              patience: int = 5, precision: str = "32-true", deadline: float | None = None, seed: int = 0,
              together: bool | None = None, samples: list[np.ndarray | None] | None = None,
              batch: int | None = None) -> list[FoldFit]:
    """One FoldFit per fold, in order; fold j trains with seed + j. `together=None` lets
    `choose` decide; a family or table that cannot be batched trains sequentially anyway, and
    members train together in groups of `members_at_once` (one: sequentially).
    `samples[j]`: positions among fold j's training rows that it trains on (None: all of them);
    its validation and test rows are all predicted. `batch`: the mini-batch size (None: `batch_size_for` the rows)."""
    samples = samples or [None] * len(folds)
    rows = [len(f.train_rows) if s is None else len(s) for f, s in zip(folds, samples, strict=True)]
    together = choose(device, rows, params, batch) if together is None else together
    size = members_at_once(problem, folds, params, max(rows), device, batch) if together and batchable(folds, params) else 1
    fits, start = [], time.monotonic()

    def until(j: int) -> float | None:  # the end of fold j's part of the time
        return None if deadline is None else start + (deadline - start) * (j + 1) / len(folds)

    for group in np.array_split(np.arange(len(folds)), math.ceil(len(folds) / size)):
        if len(group) > 1:
            try:
                fits += Together(problem, [folds[j] for j in group], params, device, max_epochs, seed + int(group[0]),
                                 [samples[j] for j in group], batch).fit(patience, precision, until(group[-1]))
                continue
            except Unbatchable:
                pass  # members' weights differ in shape: one after another, below
        for j in group:  # a sample's copy of the features exists only while its fold trains
            fits.append(fit_fold(problem, folds[j] if samples[j] is None else train_sample(folds[j], samples[j]), params,
                                 device=device, max_epochs=max_epochs, patience=patience, precision=precision,
                                 deadline=until(j), seed=seed + int(j), batch=batch))
    return fits


def sample_positions(fold: Fold, rows: int, seed: int) -> np.ndarray | None:
    """Sorted positions of `rows` of the fold's training rows, drawn at random (None: it has no more than that)."""
    n = len(fold.train_rows)
    return None if n <= rows else np.sort(np.random.default_rng(seed).choice(n, rows, replace=False))


def train_sample(fold: Fold, positions: np.ndarray) -> Fold:
    """The fold training on those positions of its training rows only (a copy of their features); its
    validation and test rows all kept."""
    return Fold(fold.train_rows[positions], fold.valid_rows, take(fold.train, positions), fold.valid, fold.test)


class Rows:
    """One member's training positions, reshuffled whenever all were served (as TensorBatches, same seed)."""

    def __init__(self, n: int, seed: int):
        self.n, self.generator = n, torch.Generator(device="cpu").manual_seed(seed)
        self.order, self.position = torch.zeros(0, dtype=torch.int64), n

    def take(self, count: int) -> torch.Tensor:
        parts = []
        while count > 0:
            if self.position >= self.n:
                self.order, self.position = torch.randperm(self.n, generator=self.generator), 0
            part = self.order[self.position:self.position + count]
            parts.append(part)
            self.position, count = self.position + len(part), count - len(part)
        return torch.cat(parts)


def _watch(n: int, seed: int) -> np.ndarray:
    """Positions of the validation rows scored after each epoch: all, or fit_fold's sample of VALID_ROWS."""
    watch = np.arange(n)
    return watch if n <= VALID_ROWS else np.sort(np.random.default_rng(seed).choice(watch, VALID_ROWS, replace=False))


def _clip(grads: list[torch.Tensor], max_norm: float) -> None:
    """clip_grad_norm_ per member: each member's norm over all its parameters' (members, ...) gradients."""
    norms = torch.stack([g.flatten(1).pow(2).sum(1) for g in grads]).sum(0).sqrt()  # (members,)
    coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(coef.view(-1, *[1] * (g.ndim - 1)))


class Unbatchable(Exception):
    """The members' networks differ in shape even in the common layout: piecewise-linear
    embeddings' bins follow each fold's quantiles, and a column can have more distinct ones in one fold."""


class Together:
    """Members trained as one vmapped model; `active` holds the members still training, in stack order."""

    def __init__(self, problem: Problem, folds: list[Fold], params: dict, device: str, max_epochs: int, seed: int,
                 samples: list[np.ndarray | None] | None = None, batch: int | None = None):
        layout = common_layout([f.train for f in folds])
        self.problem, self.folds, self.device, self.max_epochs = problem, [aligned(f, layout) for f in folds], device, max_epochs
        samples = samples or [None] * len(folds)
        # member m trains on positions self.own[m] of its fold's training rows (None: all)
        self.own = [None if s is None else torch.as_tensor(s, device=device) for s in samples]
        trained = [f.train_rows if s is None else f.train_rows[s] for f, s in zip(self.folds, samples, strict=True)]
        self.targets = [Target(problem, rows) for rows in trained]
        rows = [len(r) for r in trained]
        self.batch = batch or batch_size_for(params, max(rows))  # one batch size for all: rows differ by a few at most
        self.steps = max(math.ceil(min(n, MAX_STEPS_PER_EPOCH * self.batch) / self.batch) for n in rows)
        params = {**params, "batch_size": self.batch}
        modules = []
        for j, fold in enumerate(self.folds):  # member j starts from fit_fold's initial weights for seed + j
            torch.manual_seed(seed + j)
            modules.append(build_module(problem, fold, params, self.max_epochs * self.steps).to(device))
        if len({tuple((n, t.shape) for n, t in m.state_dict().items()) for m in modules}) > 1:
            raise Unbatchable("the members' weights differ in shape")
        self.module, self.rows = modules[0], [Rows(n, seed + j) for j, n in enumerate(rows)]
        self.params, self.buffers = stack_module_state(modules)  # name -> (members, ...)
        self.optimizer, self.scheduler = self._optimizer(modules[0])
        self.base = copy.deepcopy(modules[0]).to("meta")  # the architecture; weights come from the stacks
        scheduled = params.get("dropout_schedule") == "flat_cosine"
        self.dropouts = DropoutSchedule(self.base, self.max_epochs * self.steps) if scheduled else None
        self.steps_done = 0
        self.averaging = params.get("weight_averaging", "none") == "ema"
        self.ema: dict[str, torch.Tensor] | None = None  # name -> the stacked parameters' moving average (TabularModule's)
        self.train = [tensors(f.train, device)[:2] for f in self.folds]  # per member: (n_m, p), (n_m, c), where they are
        self.inputs = {part: [tensors(getattr(f, part), device)[:2] for f in self.folds] for part in ("valid", "test")}
        # each epoch scores at most VALID_ROWS validation rows, the same sample fit_fold takes for seed + j
        self.watch = [_watch(len(f.valid_rows), seed + j) for j, f in enumerate(self.folds)]
        self.inputs["watch"] = [tuple(t[torch.as_tensor(w, device=device)] for t in inputs)
                                for w, inputs in zip(self.watch, self.inputs["valid"], strict=True)]
        self.y = [torch.as_tensor(t.encode(r), device=device) for t, r in zip(self.targets, trained, strict=True)]
        self.active = list(range(len(folds)))
        torch.manual_seed(seed)

    def _optimizer(self, module):
        """TabularModule.configure_optimizers on member 0, its parameters then swapped for the stacks: the same
        optimizer, groups (weight decay on >= 2-D weights only), settings and schedule, each member's slice
        updated as its own (every optimizer we offer works element by element)."""
        configured = module.configure_optimizers()
        optimizer = configured["optimizer"] if isinstance(configured, dict) else configured
        scheduler = configured["lr_scheduler"]["scheduler"] if isinstance(configured, dict) else None
        name = {id(p): n for n, p in module.named_parameters()}
        for group in optimizer.param_groups:
            group["params"] = [self.params[name[id(p)]] for p in group["params"]]
        return optimizer, scheduler

    def _call(self, params, buffers, numeric, categorical):
        """One member: numeric (batch, p), categorical (batch, c) -> (batch, out); no pixels or tokens."""
        return functional_call(self.base, (params, buffers), (numeric, categorical, numeric[:, :0], categorical[:, :0]))

    def _loss(self, params, buffers, numeric, categorical, y):
        return self.module.loss(self._call(params, buffers, numeric, categorical), y)

    def fit(self, patience: int, precision: str, deadline: float | None) -> list[FoldFit]:
        sign = 1.0 if self.problem.metric.greater_is_better else -1.0
        self.curves = [[] for _ in self.folds]
        self.best = [(-math.inf, None, 0) for _ in self.folds]  # (sign * score, state, epoch) per member
        self.epochs = [0] * len(self.folds)
        autocast = torch.autocast(self.device, torch.bfloat16) if precision == "bf16-mixed" else nullcontext()
        loss = torch.vmap(self._loss, randomness="different")
        for epoch in range(self.max_epochs):
            finished = self._epoch(loss, autocast, deadline)
            for m in self.active:
                self.epochs[m] = epoch + 1
            stopped = self._validate(sign, patience, epoch, autocast)
            remaining = [m for m in self.active if m not in stopped]
            if finished or not remaining:
                break
            self._keep(remaining)
        return self._results(sign, autocast)

    def _epoch(self, loss, autocast, deadline: float | None) -> bool:
        """One epoch of `steps` steps for the active members; True when the deadline passed."""
        self.base.train()
        members = []  # per member: its features, targets, and this epoch's (steps, batch) positions in each
        for m in self.active:
            rows = self.rows[m].take(self.steps * self.batch).to(self.device).view(self.steps, self.batch)
            members.append((*self.train[m], self.y[m], rows if self.own[m] is None else self.own[m][rows], rows))
        clip = self.module.hparams.grad_clip
        for step in range(self.steps):
            numeric, categorical, y = (torch.stack(part) for part in zip(*(
                (x.index_select(0, at[step]), c.index_select(0, at[step]), t.index_select(0, rows[step]))
                for x, c, t, at, rows in members), strict=True))  # (active, batch, ...)
            with autocast:
                losses = loss(self.params, self.buffers, numeric, categorical, y)  # (active,)
            self.optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()  # a member's gradient is its own loss's: the others' do not depend on it
            if clip:
                _clip([p.grad for p in self.params.values() if p.grad is not None], clip)
            self.optimizer.step()
            if self.scheduler is not None:
                self.scheduler.step()
            self._after_step()
            if deadline is not None and step % CHECK_EVERY == CHECK_EVERY - 1 and time.monotonic() >= deadline:
                return True
        return deadline is not None and time.monotonic() >= deadline

    def _after_step(self) -> None:
        """TabularModule.after_step for the stacks: dropout rates, the weights' moving average."""
        self.steps_done += 1
        if self.dropouts is not None:
            self.dropouts.step(self.steps_done)
        if self.averaging:
            weights = {n: p.detach() for n, p in self.params.items()}
            if self.ema is None:
                self.ema = {n: w.clone() for n, w in weights.items()}
            else:
                torch._foreach_lerp_(list(self.ema.values()), list(weights.values()), 1 - ema_decay(self.steps_done))

    def _scored(self) -> dict[str, torch.Tensor]:
        """The weights that validation scores and keeps: the moving average when there is one (as fit_fold)."""
        return self.params if self.ema is None else self.ema

    def _predict(self, part: str, autocast) -> list[np.ndarray]:
        """Active members' decoded predictions on their own "valid", "watch" (the validation rows
        scored per epoch) or "test" rows. Member by member, each on a view of its slice of the
        stacks: vmap would make these long forwards batched matmuls and BatchNorm a chain of
        elementwise ops, 1.6x slower on a CPU than the plain forward."""
        self.base.eval()
        task, predictions = self.problem.comp.task, []
        with torch.no_grad(), autocast:
            chunk = self.module.chunk  # fit_fold's prediction chunks (piecewise embeddings of 4,096 rows held 131 MB)
            for a, m in enumerate(self.active):
                state = {n: t[a] for n, t in self._scored().items()}, {n: t[a] for n, t in self.buffers.items()}
                numeric, categorical = self.inputs[part][m]  # (n, p), (n, c)
                out = torch.cat([self._call(*state, numeric[i:i + chunk], categorical[i:i + chunk]).float()
                                 for i in range(0, len(numeric), chunk)])  # (n, out)
                out = activate(task, out)  # values, each label's or each class's probability
                out = out.squeeze(-1) if task == "regression" else out
                predictions.append(self.targets[m].decode(out.cpu().numpy().astype(np.float64)))
        return predictions

    def _validate(self, sign: float, patience: int, epoch: int, autocast) -> set[int]:
        """Score each active member on its validation rows; keep improved weights; return those that stop."""
        stopped = set()
        for a, (m, pred) in enumerate(zip(self.active, self._predict("watch", autocast), strict=True)):
            if not np.isfinite(pred).all():
                raise FloatingPointError("the network diverged: its predictions became NaN or infinite")
            value = score(self.problem.metric, self.problem.y[self.folds[m].valid_rows[self.watch[m]]], pred)
            self.curves[m].append(value)
            best, state, at = self.best[m]
            if sign * value > best:  # strictly better, as KeepBest and EarlyStopping
                state = {n: t[a].detach().clone() for n, t in (*self._scored().items(), *self.buffers.items())}
                best, at = sign * value, epoch
            self.best[m] = (best, state, at)
            if epoch - at >= patience or epoch + 1 >= self.max_epochs:
                stopped.add(m)
        return stopped

    def _keep(self, keep: list[int]) -> None:
        """Drop stopped members from the stacks and from the optimizer's state."""
        if keep == self.active:
            return
        at = torch.as_tensor([self.active.index(m) for m in keep], device=self.device)
        old = {id(p): n for n, p in self.params.items()}
        params = {n: p.detach()[at].requires_grad_() for n, p in self.params.items()}
        state = defaultdict(dict)
        for p, values in self.optimizer.state.items():  # moments are shaped like their parameter; step counts are shared
            state[params[old[id(p)]]] = {k: v[at] if torch.is_tensor(v) and v.shape == p.shape else v for k, v in values.items()}
        for group in self.optimizer.param_groups:
            group["params"] = [params[old[id(p)]] for p in group["params"]]
        self.optimizer.state = state
        self.params, self.buffers = params, {n: b[at] for n, b in self.buffers.items()}
        if self.ema is not None:
            self.ema = {n: e[at] for n, e in self.ema.items()}
        self.active = keep

    def _results(self, sign: float, autocast) -> list[FoldFit]:
        """Every member back at its best weights; their valid and test predictions."""
        self.active = list(range(len(self.folds)))
        states = [state for _, state, _ in self.best]
        self.ema = None  # the kept states are already the averages
        self.params = {n: torch.stack([s[n] for s in states]) for n in self.params}
        self.buffers = {n: torch.stack([s[n] for s in states]) for n in self.buffers}
        valid, test = self._predict("valid", autocast), self._predict("test", autocast)
        return [FoldFit(valid[m], test[m], self.epochs[m], sign * self.best[m][0], self.curves[m], batch=self.batch)
                for m in range(len(self.folds))]
