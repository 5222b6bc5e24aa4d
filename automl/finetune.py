"""The `finetune` family: the --text-model encoder fine-tuned with a head, per fold.

The row's free-text columns (joined, each after its name) go through the pretrained encoder;
its mean-pooled last layer feeds a linear head: class logits (cross-entropy), one logit per
label (multilabel), or the standardised target values (squared error, on log1p values where
the metric scores logs). AdamW with a linear warm-up and decay, the usual recipe for
fine-tuning.

Sized like every baseline, from a timed probe: an optimizer step and a prediction on a few
rows at each text length say what a fold costs. Optuna's TPE then searches the learning rate,
epochs, text length and batch size on the first fold with part of the share, and the best
settings train on every fold; when even one epoch on every fold at the shortest length would
not fit, it is skipped with a note (a CPU fits a small encoder on a small table; a GPU, more).
"""

from __future__ import annotations

import copy
import math
import time

import numpy as np

from automl.baselines.gbdt import Failed, first_line
from automl.baselines.result import CVResult, Skipped, finish
from automl.folds import Fold, weights_for_test
from automl.problem import Problem

LENGTHS = (32, 64, 128)  # tokens per row's text
BATCHES = (8, 16, 32)
SEARCH_SHARE = 0.4  # of its time, for the search on the first fold; the rest trains every fold
PROBE_SHARE = 0.1  # of its time, at most, for timing the lengths (the shortest is always timed)
WARMUP = 0.1  # of the steps


def texts_of(features) -> np.ndarray:
    """Each row's free text: the columns joined, each after its name (one column: as it is)."""
    columns = list(features.text)
    if len(columns) == 1:
        return np.asarray(features.text[columns[0]], dtype=object)
    parts = [np.char.add(f"{c}: ", np.asarray(features.text[c], dtype=str)) for c in columns]
    return np.array([" | ".join(row) for row in zip(*parts, strict=True)], dtype=object)


def cross_validate(problem: Problem, folds: list[Fold], model_path: str, *, seconds: float | None = None,
                   device: str = "cpu", seed: int = 0, on_fold=None) -> CVResult:
    """Fine-tune on every fold; out-of-fold and test predictions like any baseline's. A library's
    error (out of memory on a GPU, a tokenizer's) is `Failed`: one line, and the run goes on."""
    try:
        return _cross_validate(problem, folds, model_path, seconds, device, seed, on_fold)
    except (RuntimeError, ValueError, OSError) as error:
        raise Failed(first_line(error)) from error


def _cross_validate(problem: Problem, folds: list[Fold], model_path: str, seconds: float | None, device: str,
                    seed: int, on_fold) -> CVResult:
    import optuna
    import torch

    if not folds[0].train.text:
        raise Skipped("skipped: no free-text column to fine-tune on")
    start = time.monotonic()
    end = None if seconds is None else start + seconds
    torch.manual_seed(seed)
    tuner = Tuner(problem, model_path, device)
    n_train = max(len(f.train_rows) for f in folds)
    n_predict = max(len(f.valid_rows) + len(f.test) for f in folds)
    step, predict = tuner.probe(texts_of(folds[0].train), problem.y[folds[0].train_rows],
                                None if seconds is None else start + PROBE_SHARE * seconds)
    lengths = sorted({n for n, _ in step})

    def fold_seconds(length: int, batch: int, epochs: int) -> float:
        return epochs * math.ceil(n_train / batch) * step[length, batch] + n_predict * predict[length]

    def left() -> float:
        return math.inf if end is None else end - time.monotonic()

    length, batch = min(((n, b) for n in lengths for b in BATCHES), key=lambda nb: fold_seconds(*nb, 1))
    cheapest = {"lr": 5e-5, "epochs": 1, "length": length, "batch": batch}
    least = fold_seconds(length, batch, 1) * len(folds)
    if least > left() * (1 - SEARCH_SHARE):
        raise Skipped(f"skipped: one epoch on every fold would take about {least:.0f}s of the {max(0, left()):.0f}s "
                      f"left to it (on {tuner.device}); give more time with --timeout, or a GPU")
    search_until = None if end is None else time.monotonic() + left() * SEARCH_SHARE

    def fits(params: dict, within: float) -> bool:
        return fold_seconds(params["length"], params["batch"], params["epochs"]) * len(folds) <= within

    fold = folds[0]
    texts = {"train": texts_of(fold.train), "valid": texts_of(fold.valid)}

    def objective(trial: optuna.Trial) -> float:
        params = {"lr": trial.suggest_float("lr", 1e-5, 1e-3, log=True),
                  "epochs": trial.suggest_int("epochs", 1, 4),
                  "length": trial.suggest_categorical("length", lengths),
                  "batch": trial.suggest_categorical("batch", BATCHES)}
        one_fold = fold_seconds(params["length"], params["batch"], params["epochs"])
        completion = math.inf if end is None else (end - search_until)
        if not fits(params, completion) or (search_until is not None and time.monotonic() + one_fold > search_until):
            raise optuna.TrialPruned()  # its completion, or the trial itself, would not fit the time
        head = tuner.fit(texts["train"], problem.y[fold.train_rows], params)
        return tuner.score(head, texts["valid"], problem.y[fold.valid_rows], params)

    def enough(study, trial) -> None:  # stop when not even the cheapest settings fit the search's time
        if search_until is not None and time.monotonic() + fold_seconds(length, batch, 1) > search_until:
            study.stop()

    direction = "maximize" if problem.metric.greater_is_better else "minimize"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction=direction, sampler=optuna.samplers.TPESampler(seed=seed))
    usual = {"lr": 5e-5, "epochs": 2, "length": 64 if 64 in lengths else length, "batch": 16}
    study.enqueue_trial(usual if fits(usual, left() * (1 - SEARCH_SHARE)) else cheapest)  # the usual recipe first
    timeout = None if search_until is None else max(0.0, search_until - time.monotonic())
    study.optimize(objective, n_trials=4 if timeout is None else 30, timeout=timeout, callbacks=[enough],
                   catch=(RuntimeError, ValueError))  # a failing trial is recorded as failed; the search goes on
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    params = study.best_params if done else cheapest
    if not fits(params, left()):  # the search ran long: the cheapest settings, or nothing
        params = {**params, "epochs": 1, "length": length, "batch": batch}
        if not fits(params, left()):
            raise Skipped(f"skipped: its search left {max(0, left()):.0f}s, short of one epoch on every fold")

    oof = np.zeros(problem.pred_shape(len(problem.y)))
    test = np.zeros(problem.pred_shape(len(problem.test)))
    for i, (fold, weight) in enumerate(zip(folds, weights_for_test(folds), strict=True)):
        if end is not None and time.monotonic() > end + 0.1 * seconds:  # a fold ran slower than timed: stop here
            raise Skipped(f"skipped: its folds ran past its {seconds:.0f}s after {i} of {len(folds)}")
        if on_fold:
            on_fold(i)
        head = tuner.fit(texts_of(fold.train), problem.y[fold.train_rows], params)
        oof[fold.valid_rows] = tuner.predict(head, texts_of(fold.valid), params)
        if weight:
            test += weight * tuner.predict(head, texts_of(fold.test), params)
    note = (f"{params['epochs']} epochs, lr {params['lr']:.0e}, {params['length']} tokens, batch {params['batch']}; "
            f"searched on one fold ({len(done)} of {len(study.trials)} trials finished) on {tuner.device}")
    return finish("finetune", problem, folds, oof, test, time.monotonic() - start, kind="network",
                  info={"note": note, "params": {"family": "finetune", **params}})


class Tuner:
    """Builds, fine-tunes and applies the encoder with its head for one problem."""

    def __init__(self, problem: Problem, path: str, device: str):
        import torch
        from transformers import AutoModel, AutoTokenizer

        from automl.text_model import padded, quiet_transformers

        quiet_transformers()
        self.torch, self.path, self.problem = torch, path, problem
        self.device = "cuda" if device in ("cuda", "auto") and torch.cuda.is_available() else "cpu"
        self.tokenizer = padded(AutoTokenizer.from_pretrained(path, local_files_only=True))
        self.pretrained = AutoModel.from_pretrained(path, local_files_only=True)  # read once; each fit starts from a copy
        self.log1p = problem.metric.target_transform == "log1p"

    @property
    def outputs(self) -> int:
        p = self.problem
        return p.n_classes if p.n_classes else p.n_targets

    def _model(self):
        torch = self.torch
        encoder = copy.deepcopy(self.pretrained)
        head = torch.nn.Linear(encoder.config.hidden_size, self.outputs)
        return torch.nn.ModuleDict({"encoder": encoder, "head": head}).to(self.device)

    def _forward(self, model, texts, length: int, padding: bool | str = True):
        batch = self.tokenizer(list(texts), padding=padding, truncation=True, max_length=length, return_tensors="pt")
        batch = {k: v.to(self.device) for k, v in batch.items()}
        states = model["encoder"](**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
        return model["head"]((states * mask).sum(1) / mask.sum(1).clamp(min=1.0))

    def _loss(self, logits, y):
        f = self.torch.nn.functional
        if self.problem.n_classes:
            return f.cross_entropy(logits, self.torch.as_tensor(y, device=self.device, dtype=self.torch.long))
        target = self.torch.as_tensor(y, device=self.device, dtype=logits.dtype).reshape(len(y), -1)
        if self.problem.multilabel:
            return f.binary_cross_entropy_with_logits(logits, target)
        return f.mse_loss(logits, target)

    def _values(self, y: np.ndarray) -> np.ndarray:
        return np.log1p(np.maximum(y, 0)) if self.log1p else y.astype(np.float64)

    def _targets(self, y: np.ndarray, train_y: np.ndarray) -> np.ndarray:
        """Classes as they are; values standardised by the training rows' own mean and spread."""
        if self.problem.n_classes or self.problem.multilabel:
            return y
        values = self._values(train_y)
        return (self._values(y) - values.mean(axis=0)) / (values.std(axis=0) + 1e-9)

    def fit(self, texts: np.ndarray, y: np.ndarray, params: dict):
        from transformers import get_linear_schedule_with_warmup

        torch = self.torch
        model = self._model().train()
        target = self._targets(y, y)
        if not (self.problem.n_classes or self.problem.multilabel):  # kept with the model: its predictions' scale
            values = self._values(y)
            model.scale = (values.mean(axis=0), values.std(axis=0) + 1e-9)
        batch, epochs = params["batch"], params["epochs"]
        steps = epochs * math.ceil(len(texts) / batch)
        optimizer = torch.optim.AdamW(model.parameters(), lr=params["lr"], weight_decay=0.01)
        schedule = get_linear_schedule_with_warmup(optimizer, int(WARMUP * steps), steps)
        rng = np.random.default_rng(0)
        for _ in range(epochs):
            order = rng.permutation(len(texts))
            for i in range(0, len(order), batch):
                rows = order[i:i + batch]
                loss = self._loss(self._forward(model, texts[rows], params["length"]), target[rows])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                schedule.step()
        return model.eval()

    def predict(self, model, texts: np.ndarray, params: dict) -> np.ndarray:
        torch, out = self.torch, []
        with torch.inference_mode():
            for i in range(0, len(texts), 64):
                out.append(self._forward(model, texts[i:i + 64], params["length"]).float().cpu().numpy())
        logits = np.concatenate(out) if out else np.zeros((0, self.outputs))
        if self.problem.n_classes:
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            return e / e.sum(axis=1, keepdims=True)
        if self.problem.multilabel:
            return 1 / (1 + np.exp(-logits))
        mean, spread = model.scale
        values = logits * spread + mean
        values = np.expm1(values) if self.log1p else values
        return values[:, 0] if self.problem.y.ndim == 1 else values

    def score(self, model, texts: np.ndarray, y: np.ndarray, params: dict) -> float:
        from automl.metrics import best_threshold, score

        pred = self.predict(model, texts, params)
        return score(self.problem.metric, y, pred, best_threshold(self.problem.metric, y, pred))

    def probe(self, texts: np.ndarray, y: np.ndarray, until: float | None) -> tuple[dict, dict]:
        """Seconds per optimizer step at each (length, batch), and per predicted row at each length:
        timed at the middle batch size, texts padded to the length (the slowest a batch can be), after a
        warm-up step; other batch sizes in proportion. Lengths are timed shortest first, and no longer
        ones once `until` has passed (they are then not tried)."""
        torch = self.torch
        model = self._model().train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
        target = self._targets(y, y)
        step, predict = {}, {}
        middle = BATCHES[len(BATCHES) // 2]
        rows = np.arange(min(middle, len(texts)))
        for length in LENGTHS:
            if step and until is not None and time.monotonic() > until:
                break
            for _ in range(2):  # the first is a warm-up
                began = time.perf_counter()
                loss = self._loss(self._forward(model, texts[rows], length, "max_length"), target[rows])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            seconds = (time.perf_counter() - began) / max(1, len(rows))  # per row
            step |= {(length, b): seconds * b for b in BATCHES}
            began = time.perf_counter()
            with torch.inference_mode():
                self._forward(model.eval(), texts[:64], length, "max_length")
            model.train()
            predict[length] = (time.perf_counter() - began) / max(1, min(64, len(texts)))
        return step, predict
