"""LightGBM: leaf-wise boosting with native categorical splits (the categorical codes as they are)."""

from __future__ import annotations

import numpy as np

from automl.baselines.gbdt import GBDT, threads

OBJECTIVE = {"squared": "regression", "absolute": "regression_l1"}


class LightGBM(GBDT):
    library = "lightgbm"

    def _train(self, x, y, valid, stop):
        import lightgbm as lgb

        if self.classify:
            objective = {"objective": "binary"} if self._k == 2 else {"objective": "multiclass", "num_class": self._k}
        else:
            objective = {"objective": OBJECTIVE[self.objective]}
        params = objective | {
            "learning_rate": self.learning_rate, "num_leaves": 31, "min_data_in_leaf": 20, "feature_fraction": 0.8,
            "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0, "max_cat_to_onehot": 8,
            "seed": self.random_state, "num_threads": threads(), "verbosity": -1,
            # its OpenCL learner needs an OpenCL driver many GPU machines lack: only on --device cuda, never auto
            "device_type": "gpu" if self.device == "cuda" else "cpu"}
        categorical = self._categorical_indices()
        data = lgb.Dataset(x, y, categorical_feature=categorical, free_raw_data=True)
        sets, early = [], None
        if valid is not None:
            sets = [lgb.Dataset(valid[0], valid[1], reference=data, categorical_feature=categorical)]
            early = lgb.early_stopping(self.n_iter_no_change, first_metric_only=True, verbose=False)
        callbacks = [c for c in (early, _clock(stop, lgb, early)) if c is not None]
        booster = lgb.train(params, data, num_boost_round=self.max_iter, valid_sets=sets, callbacks=callbacks)
        return booster, booster.current_iteration()

    @property
    def kept_rounds_(self) -> int:
        return int(self.model_.best_iteration or self.n_iter_)

    def _raw(self, x) -> np.ndarray:
        best = self.model_.best_iteration or None  # 0: no early stopping, every round
        pred = self.model_.predict(x, num_iteration=best)
        if self.classify and pred.ndim == 1:
            return np.column_stack([1 - pred, pred])
        return pred


def _clock(stop, lgb, early):
    """Stops boosting when the clock says so, keeping early stopping's best round so far (it runs after it)."""
    def callback(env) -> None:
        if stop():
            if early is not None and getattr(early, "best_iter", None):
                raise lgb.callback.EarlyStopException(early.best_iter[0], early.best_score_list[0])
            raise lgb.callback.EarlyStopException(env.iteration, env.evaluation_result_list or [])
    callback.order = 31  # after early stopping's own check (order 30)
    return callback
