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

from automl.baselines.result import CVResult, Skipped, finish
from automl.folds import Fold, weights_for_test
from automl.problem import Problem

LENGTHS = (32, 64, 128)  # tokens per row's text
BATCHES = (8, 16, 32)
SEARCH_SHARE = 0.4  # of its time, for the search on the first fold; the rest trains every fold
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
    """Fine-tune on every fold; out-of-fold and test predictions like any baseline's."""
    import optuna
    import torch

    if not folds[0].train.text:
        raise Skipped("skipped: no free-text column to fine-tune on")
    start = time.monotonic()
    torch.manual_seed(seed)
    tuner = Tuner(problem, model_path, device)
    n_train = max(len(f.train_rows) for f in folds)
    n_predict = max(len(f.valid_rows) + len(f.test) for f in folds)
    step, predict = tuner.probe(texts_of(folds[0].train), problem.y[folds[0].train_rows])

    def fold_seconds(length: int, batch: int, epochs: int) -> float:
        return epochs * math.ceil(n_train / batch) * step[length, batch] + n_predict * predict[length]

    length, batch = min(((n, b) for n in LENGTHS for b in BATCHES), key=lambda nb: fold_seconds(*nb, 1))
    cheapest = {"lr": 5e-5, "epochs": 1, "length": length, "batch": batch}
    least = fold_seconds(length, batch, 1)
    if seconds is not None and least * len(folds) > seconds * (1 - SEARCH_SHARE):
        raise Skipped(f"skipped: one epoch on every fold would take about {least * len(folds):.0f}s of its "
                      f"{seconds:.0f}s (on {tuner.device}); give more time with --timeout, or a GPU")
    complete_share = None if seconds is None else seconds * (1 - SEARCH_SHARE)

    def fits(params: dict) -> bool:
        return complete_share is None or fold_seconds(params["length"], params["batch"], params["epochs"]) * len(folds) \
            <= complete_share

    fold = folds[0]
    texts = {"train": texts_of(fold.train), "valid": texts_of(fold.valid)}
    search_until = None if seconds is None else start + seconds * SEARCH_SHARE

    def objective(trial: optuna.Trial) -> float:
        params = {"lr": trial.suggest_float("lr", 1e-5, 1e-3, log=True),
                  "epochs": trial.suggest_int("epochs", 1, 4),
                  "length": trial.suggest_categorical("length", LENGTHS),
                  "batch": trial.suggest_categorical("batch", BATCHES)}
        one_fold = fold_seconds(params["length"], params["batch"], params["epochs"])
        if not fits(params) or (search_until is not None and time.monotonic() + one_fold > search_until):
            raise optuna.TrialPruned()  # its completion, or the trial itself, would not fit the time
        head = tuner.fit(texts["train"], problem.y[fold.train_rows], params)
        return tuner.score(head, texts["valid"], problem.y[fold.valid_rows], params)

    direction = "maximize" if problem.metric.greater_is_better else "minimize"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction=direction, sampler=optuna.samplers.TPESampler(seed=seed))
    usual = {"lr": 5e-5, "epochs": 2, "length": 64, "batch": 16}
    study.enqueue_trial(usual if fits(usual) else cheapest)  # the usual recipe first, where it fits
    timeout = None if search_until is None else max(0.0, search_until - time.monotonic())
    def enough(study, trial) -> None:  # stop when not even the cheapest settings fit the search's time
        if search_until is not None and time.monotonic() + fold_seconds(length, batch, 1) > search_until:
            study.stop()

    study.optimize(objective, n_trials=4 if timeout is None else 30, timeout=timeout, callbacks=[enough])
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    params = study.best_params if done else cheapest

    oof = np.zeros(problem.pred_shape(len(problem.y)))
    test = np.zeros(problem.pred_shape(len(problem.test)))
    for i, (fold, weight) in enumerate(zip(folds, weights_for_test(folds), strict=True)):
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

        from automl.text_model import quiet_transformers

        quiet_transformers()
        self.torch, self.path, self.problem = torch, path, problem
        self.device = "cuda" if device in ("cuda", "auto") and torch.cuda.is_available() else "cpu"
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.pretrained = AutoModel.from_pretrained(path, local_files_only=True)  # read once; each fit starts from a copy
        y = problem.y.astype(np.float64)
        self.log1p = problem.metric.target_transform == "log1p"
        values = np.log1p(np.maximum(y, 0)) if self.log1p else y
        self.mean, self.scale = values.mean(axis=0), values.std(axis=0) + 1e-9  # for values only

    @property
    def outputs(self) -> int:
        p = self.problem
        return p.n_classes if p.n_classes else p.n_targets

    def _model(self):
        torch = self.torch
        encoder = copy.deepcopy(self.pretrained)
        head = torch.nn.Linear(encoder.config.hidden_size, self.outputs)
        return torch.nn.ModuleDict({"encoder": encoder, "head": head}).to(self.device)

    def _forward(self, model, texts, length: int):
        batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=length, return_tensors="pt")
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

    def _targets(self, y: np.ndarray) -> np.ndarray:
        if self.problem.n_classes or self.problem.multilabel:
            return y
        values = np.log1p(np.maximum(y, 0)) if self.log1p else y
        return (values - self.mean) / self.scale

    def fit(self, texts: np.ndarray, y: np.ndarray, params: dict):
        from transformers import get_linear_schedule_with_warmup

        torch = self.torch
        model = self._model().train()
        target = self._targets(y)
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
        values = logits * self.scale + self.mean
        values = np.expm1(values) if self.log1p else values
        return values[:, 0] if self.problem.y.ndim == 1 else values

    def score(self, model, texts: np.ndarray, y: np.ndarray, params: dict) -> float:
        from automl.metrics import best_threshold, score

        pred = self.predict(model, texts, params)
        return score(self.problem.metric, y, pred, best_threshold(self.problem.metric, y, pred))

    def probe(self, texts: np.ndarray, y: np.ndarray) -> tuple[dict, dict]:
        """Seconds per optimizer step at each (length, batch), and per predicted row at each length,
        timed on the first rows (after one warm-up step)."""
        torch = self.torch
        model = self._model().train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
        target = self._targets(y)
        step, predict = {}, {}
        for length in LENGTHS:
            for batch in BATCHES:
                rows = np.arange(min(batch, len(texts)))
                timings = []
                for _ in range(2):  # the first is a warm-up
                    began = time.perf_counter()
                    loss = self._loss(self._forward(model, texts[rows], length), target[rows])
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    timings.append(time.perf_counter() - began)
                step[length, batch] = timings[-1] * batch / max(1, len(rows))
            began = time.perf_counter()
            with torch.inference_mode():
                self._forward(model.eval(), texts[:64], length)
            model.train()
            predict[length] = (time.perf_counter() - began) / max(1, min(64, len(texts)))
        return step, predict
