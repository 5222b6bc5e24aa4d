"""The contract LightGBM, XGBoost and CatBoost meet, so the fold loop and the sizing treat them as hist_gb.

Each member is a scikit-learn estimator with hist_gb's parameter names (`max_iter`,
`learning_rate`, `early_stopping`, `n_iter_no_change`, `categorical_features`), so the
budget's probe caps its rounds and raises its learning rate the same way. What differs
lives here once: the fold's own validation rows for early stopping, a clock that ends
boosting at the fold's share of the time, classes re-coded to 0..m-1 (a fold may lack a
class), the metric's objective (`cross_entropy`, `squared`, `absolute`; log1p targets arrive
transformed), the device, and a library error turned into one line (`Failed`). A member
module only says how its library trains (`_train`) and predicts (`_raw`).
"""

from __future__ import annotations

import importlib
import os
import time

import numpy as np
from sklearn.base import BaseEstimator

from automl.errors import AutomlError, UsageError

OBJECTIVES = ("cross_entropy", "squared", "absolute")


class Failed(AutomlError):
    """A model whose library failed on a fold; the message is one line naming the model and the error."""


def missing(library: str) -> str | None:
    """None when `library` imports; else why not, in one line with the fix."""
    try:
        importlib.import_module(library)
    except Exception as error:  # ImportError; OSError or the library's own error when its .so cannot load (libgomp)
        return f"the {library} package is not importable ({first_line(error)}); install it with pip install {library}"
    return None


def first_line(error: BaseException) -> str:
    """An error's message in one line (libraries add tracebacks and hints below it)."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]


def threads() -> int:
    """The cores this process may use (a container's CPU set, not the host's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return os.cpu_count() or 1


def cuda(device: str) -> bool:
    """Whether boosting goes on the GPU: `--device cuda`, or `auto` with a visible NVIDIA GPU."""
    if device == "cuda":
        return True
    return device == "auto" and os.path.exists("/proc/driver/nvidia/gpus") and bool(os.listdir("/proc/driver/nvidia/gpus"))


class GBDT(BaseEstimator):
    library = ""  # the package a member imports

    def __init__(self, *, objective: str = "squared", max_iter: int = 2000, learning_rate: float = 0.05,
                 early_stopping: bool = True, n_iter_no_change: int = 100, categorical_features=None,
                 device: str = "cpu", random_state: int = 0):
        self.objective = objective
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.early_stopping = early_stopping
        self.n_iter_no_change = n_iter_no_change
        self.categorical_features = categorical_features
        self.device = device
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.estimator_type = "classifier" if self.objective == "cross_entropy" else "regressor"
        return tags

    @property
    def classify(self) -> bool:
        return self.objective == "cross_entropy"

    def fit(self, x, y, x_valid=None, y_valid=None, until: float | None = None) -> GBDT:
        """Boost on (x, y), early-stopping on (x_valid, y_valid) when given, until the clock says stop."""
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective {self.objective!r}: expected one of {', '.join(OBJECTIVES)}")
        why = missing(self.library)
        if why:
            raise UsageError(f"--models: {why}")
        if self.classify:
            self.classes_, y = np.unique(y, return_inverse=True)
            if y_valid is not None:  # validation rows of a class this fold never saw cannot score the booster
                known = np.isin(y_valid, self.classes_)
                x_valid, y_valid = x_valid[known], np.searchsorted(self.classes_, y_valid[known])
        valid = (x_valid, y_valid) if self.early_stopping and x_valid is not None and len(y_valid) else None
        self.stopped_by_clock_ = False
        try:
            self.model_, self.n_iter_ = self._train(x, y, valid, self._clock(until))
        except (ImportError, AutomlError):
            raise
        except Exception as error:  # a library error: one line, the run goes on without this model
            raise Failed(f"{self.library} failed: {type(error).__name__}: {first_line(error)}") from error
        return self

    def _clock(self, until: float | None):
        """A callable the members' callbacks ask after each round: True when boosting must stop."""
        def past() -> bool:
            if until is not None and time.monotonic() >= until:
                self.stopped_by_clock_ = True
            return self.stopped_by_clock_
        return past

    @property
    def kept_rounds_(self) -> int:
        """The rounds its predictions use: the best round where early stopping found one (a refit copies these)."""
        return int(self.n_iter_)

    @property
    def clocked_rounds_(self) -> int | None:
        """The rounds boosted when the clock stopped them, else None (the fold loop's note)."""
        return int(self.n_iter_) if self.stopped_by_clock_ else None

    def predict(self, x) -> np.ndarray:
        raw = self._predicted(x)
        return self.classes_[raw.argmax(axis=1)] if self.classify else raw

    def predict_proba(self, x) -> np.ndarray:
        return self._predicted(x)

    def _predicted(self, x) -> np.ndarray:
        try:
            return self._raw(x)
        except Exception as error:  # a library error while predicting (GPU memory): one line, like fitting's
            raise Failed(f"{self.library} failed predicting: {type(error).__name__}: {first_line(error)}") from error

    @property
    def _k(self) -> int:
        """Classes this fold's booster learns (0 for a regression)."""
        return len(self.classes_) if self.classify else 0

    def _train(self, x, y, valid, stop):  # -> (fitted model, rounds boosted)
        raise NotImplementedError

    def _raw(self, x) -> np.ndarray:  # (n,) values, or (n, k) probabilities of the classes_
        raise NotImplementedError

    def _categorical_indices(self) -> list[int]:
        mask = self.categorical_features
        return [] if mask is None else [int(i) for i in np.flatnonzero(mask)]
