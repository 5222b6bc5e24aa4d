"""CatBoost: symmetric trees with its own target statistics for the categorical columns (passed as integers)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from automl.baselines.gbdt import GBDT, cuda, threads

LOSS = {"squared": "RMSE", "absolute": "MAE"}


class CatBoost(GBDT):
    library = "catboost"

    def _train(self, x, y, valid, stop):
        from catboost import CatBoost as Booster

        loss = ("Logloss" if self._k == 2 else "MultiClass") if self.classify else LOSS[self.objective]
        gpu = cuda(self.device)
        params = {"loss_function": loss, "iterations": self.max_iter, "learning_rate": self.learning_rate, "depth": 6,
                  "l2_leaf_reg": 3.0, "random_seed": self.random_state, "thread_count": threads(), "verbose": False,
                  "allow_writing_files": False, "task_type": "GPU" if gpu else "CPU"}
        if valid is not None:
            params |= {"od_type": "Iter", "od_wait": self.n_iter_no_change, "use_best_model": True}
        model = Booster(params)
        # Python callbacks are CPU-only in CatBoost: on the GPU the probe's round cap bounds the time
        callbacks = None if gpu else [_Clock(stop)]
        model.fit(self._pool(x, y), eval_set=None if valid is None else self._pool(*valid), callbacks=callbacks)
        return model, model.tree_count_

    def _pool(self, x, y=None):
        from catboost import Pool

        categorical = self._categorical_indices()
        frame = pd.DataFrame(x)
        for j in categorical:  # CatBoost takes categories as integers or strings, never floats
            frame[j] = frame[j].astype(np.int64)
        return Pool(frame, y, cat_features=categorical)

    def _raw(self, x) -> np.ndarray:
        kind = "Probability" if self.classify else "RawFormulaVal"
        pred = self.model_.predict(self._pool(x), prediction_type=kind, thread_count=threads())
        return np.asarray(pred, dtype=np.float64)


class _Clock:
    def __init__(self, stop):
        self.stop = stop

    def after_iteration(self, info) -> bool:  # False stops training
        return not self.stop()
