"""Shared fixtures: an isolated Kaggle client setup, the stand-in server, synthetic frames.

The kaggle client reads KAGGLE_API_ENVIRONMENT and its config folder once, when it is
first imported, so they are set here at import time, before any test imports it. HOME
points at an empty folder so a developer's own ~/.kaggle never leaks into a test.
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
MIRROR = Path(os.environ.get("AUTOML_MIRROR", ROOT.parent / "shared" / "kaggle" / "competitions")).resolve()
os.environ["AUTOML_MIRROR"] = str(MIRROR)
_HOME = tempfile.mkdtemp(prefix="automl-test-home-")
os.environ["HOME"] = _HOME
os.environ["KAGGLE_CONFIG_DIR"] = str(Path(_HOME) / ".kaggle")
os.environ["KAGGLE_API_ENVIRONMENT"] = "LOCALHOST"
os.environ["AUTOML_KAGGLE_INPUT"] = str(Path(_HOME) / "kaggle-input")  # no notebook mount
for variable in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
    os.environ.pop(variable, None)

from kaggle_stub import KaggleStub  # noqa: E402


def bundle(slug: str) -> Path:
    path = MIRROR / f"{slug}.zip"
    if not path.is_file():
        pytest.skip(f"{path} is missing: the real Kaggle bundles live in ../shared/kaggle/competitions")
    return path


@pytest.fixture(scope="session")
def kaggle_server():
    """The stand-in Kaggle API on localhost:80 (the only address the real client will use)."""
    try:
        probe = socket.socket()
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", 80))
        probe.close()
    except OSError as exc:
        pytest.skip(f"cannot listen on localhost:80 for the stand-in Kaggle server ({exc}); run as root")
    with KaggleStub(bundles_dir=MIRROR) as stub:
        yield stub


@pytest.fixture
def kaggle(kaggle_server, monkeypatch):
    """The stand-in server with fresh behaviour and valid-looking credentials."""
    kaggle_server.status_for.clear()
    kaggle_server.requests.clear()
    monkeypatch.setenv("KAGGLE_USERNAME", "competitor")
    monkeypatch.setenv("KAGGLE_KEY", "0123456789abcdef-secret")
    return kaggle_server


@pytest.fixture
def no_mirror(monkeypatch):
    monkeypatch.delenv("AUTOML_MIRROR", raising=False)


def synthetic_frame(task: str, n: int = 300, seed: int = 0) -> pd.DataFrame:
    """A small table with every kind of column, and a target that depends on them."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x2 = rng.exponential(size=n)
    x2[rng.random(n) < 0.1] = np.nan
    colour = rng.choice(["red", "green", "blue", "rare"], size=n, p=[0.4, 0.3, 0.28, 0.02])
    names = [f"{rng.choice(['Smith', 'Jones', 'Brown'])}, {rng.choice(['Mr', 'Mrs', 'Dr'])}. {i}" for i in range(n)]
    when = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 700, n), unit="D")
    frame = pd.DataFrame({
        "id": np.arange(1000, 1000 + n), "x1": x1, "x2": x2,
        "colour": pd.Series(colour).where(rng.random(n) > 0.05),
        "flag": rng.random(n) > 0.5, "name": names, "when": when.strftime("%Y-%m-%d"),
        "constant": 7,
    })
    signal = x1 + np.nan_to_num(x2) * 0.5 + (colour == "red") * 1.0
    if task == "regression":
        frame["target"] = signal * 10 + 50 + rng.normal(size=n)
    elif task == "binary":
        frame["target"] = (signal + rng.normal(scale=0.5, size=n) > np.median(signal)).astype(int)
    else:
        frame["target"] = np.array(["low", "mid", "high"])[np.digitize(signal, np.quantile(signal, [1 / 3, 2 / 3]))]
    return frame


def synthetic_multi(task: str, n: int = 240, seed: int = 0) -> pd.DataFrame:
    """synthetic_frame with three target columns a, b, c instead of one: values (multitarget) or 0/1
    labels (multilabel), each depending on the features in its own way."""
    frame = synthetic_frame("regression", n, seed).drop(columns="target")
    rng = np.random.default_rng(seed + 100)
    x1, x2, red = frame["x1"].to_numpy(), np.nan_to_num(frame["x2"].to_numpy()), (frame["colour"] == "red").to_numpy()
    signals = {"a": x1 + red, "b": x2 - x1, "c": red * 2.0 - x2}
    for i, (name, signal) in enumerate(signals.items()):
        noisy = signal + rng.normal(scale=0.3, size=n)
        frame[name] = noisy * 10 + 50 * (i + 1) if task == "multitarget" else (noisy > np.median(noisy)).astype(int)
    return frame


def write_bundle(folder: Path, frame: pd.DataFrame, train_rows: int, fill=0) -> Path:
    """A competition folder in Kaggle's layout (for --from): the first `train_rows` rows of `frame` as
    train.csv, the rest without their target as test.csv, and a sample submission of `fill`."""
    folder.mkdir(parents=True, exist_ok=True)
    frame.iloc[:train_rows].to_csv(folder / "train.csv", index=False)
    frame.iloc[train_rows:].drop(columns="target").to_csv(folder / "test.csv", index=False)
    pd.DataFrame({"id": frame.iloc[train_rows:]["id"], "target": fill}).to_csv(folder / "sample_submission.csv", index=False)
    return folder


@pytest.fixture(params=["binary", "multiclass", "regression"])
def task(request) -> str:
    return request.param
