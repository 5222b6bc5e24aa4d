"""`--text-model PATH`: free-text columns encoded by a pretrained model from a local folder.

Kaggle notebooks have no internet, so a model comes as an attached folder in Hugging Face's
layout (config.json, the weights, the tokenizer's files); it is loaded from disk only
(`local_files_only`), never downloaded. Each free-text column becomes the model's frozen
mean-pooled embedding (the average of the last layer's token states, padding left out):
one float32 numeric column per dimension, named COLUMN_emb_I, beside the row's other columns,
so the baselines and the tabular networks read it like any numeric (each fold's preprocessing
scales it on its own training rows). The text column itself stays for the text families and
TF-IDF.

Encoding is planned like a stage: a timed probe on a few hundred texts says what every row
would take; the text is then cut shorter (128 tokens, down to 32) until the encoding fits
`share` of the time left, or it is skipped with a note. Embeddings are cached in the run
directory per column, keyed by the model and the column's values, so a resumed run (or a
worker joining it) reads them back instead of encoding again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from automl.errors import UsageError
from automl.io import write_json, write_npy
from automl.preprocess import looks_like_text

log = logging.getLogger("automl")
WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json")
TOKENIZER = ("tokenizer.json", "vocab.txt", "spiece.model", "sentencepiece.bpe.model", "vocab.json")
MAX_LENGTH = 128  # tokens per text, unless the budget cuts it shorter
SHORTEST = 32
PROBE_TEXTS = 256
CHUNK = 64  # texts encoded at once


def check(path: Path) -> dict:
    """The model folder's identity (pinned in config.json), or one line naming what is missing."""
    path = Path(path).expanduser()
    where = f"--text-model {path}"
    if not path.is_dir():
        raise UsageError(f"{where}: no such folder; pass a local Hugging Face model folder (config.json, weights, tokenizer)")
    if not (path / "config.json").is_file():
        raise UsageError(f"{where}: no config.json; a Hugging Face model folder holds config.json, the weights "
                         f"({' or '.join(WEIGHTS[:2])}) and the tokenizer's files")
    weights = next((w for w in WEIGHTS if (path / w).is_file()), None)
    if weights is None:
        raise UsageError(f"{where}: no weights ({', '.join(WEIGHTS)}); save the model with save_pretrained into it")
    if not any((path / t).is_file() for t in TOKENIZER):
        raise UsageError(f"{where}: no tokenizer files ({', '.join(TOKENIZER)}); save the tokenizer with "
                         "save_pretrained into the same folder")
    try:
        from transformers import AutoConfig, AutoTokenizer
    except ImportError as exc:
        raise UsageError(f"{where}: the transformers package is not installed; pip install transformers") from exc
    quiet_transformers()
    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise UsageError(f"{where}: {str(exc).splitlines()[0][:200]}") from exc
    if getattr(config, "is_encoder_decoder", False):
        raise UsageError(f"{where}: an encoder-decoder model ({config.model_type}); pass an encoder such as BERT, "
                         "RoBERTa, DeBERTa or MiniLM")
    if tokenizer.pad_token is None and tokenizer.eos_token is None:
        raise UsageError(f"{where}: the tokenizer has no padding token (nor an end token to pad with); "
                         "set pad_token in its tokenizer_config.json")
    vocabulary = getattr(config, "vocab_size", None)
    if vocabulary is not None and len(tokenizer) > vocabulary:
        raise UsageError(f"{where}: the tokenizer has {len(tokenizer):,} tokens and the model {vocabulary:,}: "
                         "they do not belong together; save both from the same model")
    digest = hashlib.sha256()
    for name in sorted(p.name for p in path.iterdir() if p.is_file()):
        digest.update(name.encode())
        digest.update(str((path / name).stat().st_size).encode())
        if (path / name).stat().st_size < 50_000_000:  # config, tokenizer, small weights: by content
            digest.update((path / name).read_bytes())
    return {"path": str(path.resolve()), "sha256": digest.hexdigest(), "hidden": getattr(config, "hidden_size", None)}


def text_columns(train: pd.DataFrame, declared: tuple[str, ...] = ()) -> list[str]:
    """The free-text columns: declared in the spec, or strings that read like sentences."""
    return [c for c in train.columns if c in declared or (not pd.api.types.is_numeric_dtype(train[c])
                                                            and not pd.api.types.is_bool_dtype(train[c])
                                                            and looks_like_text(train[c]))]


def with_embeddings(train: pd.DataFrame, test: pd.DataFrame, model: dict, cache: Path, *, declared=(),
                    seconds: float | None = None, device: str = "cpu", console=None) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """`train` and `test` with each text column's embedding added as numeric columns; and a note
    (what was encoded, cut or skipped). What the run's first pass decided (skipped, or the text length)
    is kept in `cache`/plan.json and followed on every resume, so a resumed run's features (and the
    study and models made from them) stay those of its first pass."""
    columns = text_columns(train, declared)
    if not columns:
        return train, test, "--text-model: no free-text column to encode"
    began = time.monotonic()
    plan = _read_json(cache / "plan.json")
    if plan.get("skipped"):
        return train, test, f"--text-model: {plan['skipped']} (when this run began; a new --name encodes them)"
    texts = {c: pd.concat([train[c], test[c]]).fillna("").astype(str).to_numpy() for c in columns}
    cached = {c: _cached(cache, model, c, texts[c]) for c in columns}
    todo = [c for c in columns if cached[c] is None]
    notes, length = [], int(plan.get("max_length", MAX_LENGTH))
    if todo:
        encoder = Encoder(model["path"], device)
        rows = sum(len(texts[c]) for c in todo)
        pool = np.concatenate([texts[c] for c in todo])
        sample = pool[np.random.default_rng(0).choice(len(pool), min(PROBE_TEXTS, len(pool)), replace=False)]

        def left() -> float:
            return np.inf if seconds is None else seconds - (time.monotonic() - began)

        rate = encoder.probe(sample, length)  # seconds per text at `length` tokens
        while "max_length" not in plan and rate * rows > left() and length > SHORTEST:
            length //= 2
            rate = encoder.probe(sample, length)
        if rate * rows > left():
            why = (f"skipped; encoding {rows:,} texts would take about {rate * rows:.0f}s of the "
                   f"{max(0.0, left()):.0f}s left to it; give more time with --timeout")
            write_json(cache / "plan.json", {"skipped": why})
            return train, test, f"--text-model: {why}"
        write_json(cache / "plan.json", {"max_length": length})
        deadline = None if seconds is None else began + seconds * 1.1  # the probe's estimate, and a tenth more
        for column in todo:
            start = time.monotonic()
            cached[column] = encoder.encode(texts[column], length, console, column, deadline)
            if cached[column] is None:
                return train, test, (f"--text-model: encoding {column} ran past its time ({seconds:.0f}s); "
                                     "left out of this pass (the next resumes it from the cache)")
            _store(cache, model, column, texts[column], cached[column], length)
            notes.append(f"{column} encoded in {time.monotonic() - start:.1f}s")
    notes += [f"{c} from the cache" for c in columns if c not in todo]
    n = len(train)
    for column in columns:
        names = [f"{column}_emb_{i}" for i in range(cached[column].shape[1])]
        train = pd.concat([train, pd.DataFrame(cached[column][:n], columns=names, index=train.index)], axis=1)
        test = pd.concat([test, pd.DataFrame(cached[column][n:], columns=names, index=test.index)], axis=1)
    size = cached[columns[0]].shape[1]
    cut = f", texts cut to {length} tokens to fit the time" if length < MAX_LENGTH else ""
    return train, test, f"--text-model: {size} embedding columns per text column ({'; '.join(notes)}{cut})"


def embedded(problem, model: dict, cache: Path, *, seconds: float | None = None, device: str = "cpu", console=None):
    """The problem (automl.problem.Problem) with its free text's embeddings as numeric columns, and the note."""
    train, test, note = with_embeddings(problem.train, problem.test, model, cache, declared=problem.comp.text_columns,
                                        seconds=seconds, device=device, console=console)
    return replace(problem, train=train, test=test), note


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def padded(tokenizer):
    """The tokenizer, padding with its end token where it has no padding token (decoder-only models)."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def quiet_transformers() -> None:
    """No progress bar or advice from transformers each time a model is read: the run says what it does.
    The tokenizers' own threads are off: the run forks (CatBoost, the search), and they do not survive it."""
    import os

    from transformers.utils import logging as hf_logging

    os.environ["TOKENIZERS_PARALLELISM"] = "false"

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


class Encoder:
    """The model on `device`, frozen: mean-pooled last-layer states of texts, in chunks."""

    def __init__(self, path: str, device: str = "cpu"):
        import torch
        from transformers import AutoModel, AutoTokenizer

        quiet_transformers()
        self.torch = torch
        self.device = "cuda" if device in ("cuda", "auto") and torch.cuda.is_available() else "cpu"
        self.tokenizer = padded(AutoTokenizer.from_pretrained(path, local_files_only=True))
        self.model = AutoModel.from_pretrained(path, local_files_only=True).to(self.device).eval()

    def probe(self, texts: np.ndarray, length: int) -> float:
        """Seconds per text, timed on `texts` (a random sample) padded to `length` (the slowest a chunk
        can be), after one warm-up chunk."""
        self._chunk(texts[:8], length, "max_length")
        start = time.perf_counter()
        for i in range(0, len(texts), CHUNK):
            self._chunk(texts[i:i + CHUNK], length, "max_length")
        return (time.perf_counter() - start) / max(1, len(texts))

    def encode(self, texts: np.ndarray, length: int, console=None, label: str = "",
               deadline: float | None = None) -> np.ndarray | None:
        """Every text's embedding, (n, hidden) float32; None when `deadline` passes first."""
        from rich.progress import Progress

        out = []
        with Progress(console=console, transient=True, disable=console is None or not console.is_terminal) as progress:
            task = progress.add_task(f"encoding {label} with the text model", total=len(texts))
            for i in range(0, len(texts), CHUNK):
                if deadline is not None and time.monotonic() > deadline:
                    return None
                out.append(self._chunk(texts[i:i + CHUNK], length))
                progress.advance(task, len(out[-1]))
        return np.concatenate(out).astype(np.float32)

    def _chunk(self, texts: np.ndarray, length: int, padding: bool | str = True) -> np.ndarray:
        batch = self.tokenizer(list(texts), padding=padding, truncation=True, max_length=length, return_tensors="pt")
        batch = {k: v.to(self.device) for k, v in batch.items()}
        with self.torch.inference_mode():
            states = self.model(**batch).last_hidden_state  # (texts, tokens, hidden)
            mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
            pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return pooled.float().cpu().numpy()


def _key(model: dict, texts: np.ndarray) -> str:
    digest = hashlib.sha256(model["sha256"].encode())
    for text in texts:
        digest.update(text.encode("utf-8", "replace") + b"\0")
    return digest.hexdigest()


def _cached(cache: Path, model: dict, column: str, texts: np.ndarray) -> np.ndarray | None:
    meta = cache / f"{_safe(column)}.json"
    try:
        if json.loads(meta.read_text())["key"] == _key(model, texts):
            return np.load(cache / f"{_safe(column)}.npy")
    except (OSError, ValueError, KeyError):
        pass
    return None


def _store(cache: Path, model: dict, column: str, texts: np.ndarray, values: np.ndarray, length: int) -> None:
    write_npy(cache / f"{_safe(column)}.npy", values)
    write_json(cache / f"{_safe(column)}.json", {"key": _key(model, texts), "model": model["path"],
                                                  "rows": len(texts), "max_length": length})


def _safe(column: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in column) or "text"
