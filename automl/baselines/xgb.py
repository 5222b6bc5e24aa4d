"""XGBoost: depth-wise histogram boosting, categorical codes marked as such (`feature_types` 'c')."""

from __future__ import annotations

import numpy as np

from automl.baselines.gbdt import GBDT, cuda, threads

OBJECTIVE = {"squared": "reg:squarederror", "absolute": "reg:absoluteerror"}


class XGBoost(GBDT):
    library = "xgboost"

    def _train(self, x, y, valid, stop):
        import xgboost as xgb

        if self.classify:
            objective = {"objective": "binary:logistic"} if self._k == 2 else {"objective": "multi:softprob", "num_class": self._k}
        else:
            objective = {"objective": OBJECTIVE[self.objective]}
        params = objective | {
            "eta": self.learning_rate, "max_depth": 6, "min_child_weight": 1.0, "subsample": 0.8,
            "colsample_bytree": 0.8, "lambda": 1.0, "tree_method": "hist", "max_bin": 256, "max_cat_to_onehot": 8,
            "seed": self.random_state, "nthread": threads(), "verbosity": 0,
            "device": "cuda" if cuda(self.device) else "cpu"}
        categorical = set(self._categorical_indices())
        types = ["c" if j in categorical else "q" for j in range(x.shape[1])]
        data = xgb.DMatrix(x, y, feature_types=types, enable_categorical=bool(categorical), nthread=threads())
        evals, callbacks = [], [_Clock(stop, xgb)]
        if valid is not None:
            evals = [(xgb.DMatrix(valid[0], valid[1], feature_types=types, enable_categorical=bool(categorical)), "valid")]
            callbacks.append(xgb.callback.EarlyStopping(rounds=self.n_iter_no_change, save_best=False))
        self.types_ = types
        booster = xgb.train(params, data, num_boost_round=self.max_iter, evals=evals, callbacks=callbacks, verbose_eval=False)
        return booster, booster.num_boosted_rounds()

    @property
    def kept_rounds_(self) -> int:
        best = self.model_.attr("best_iteration")
        return int(best) + 1 if best is not None else int(self.n_iter_)

    def _raw(self, x) -> np.ndarray:
        import xgboost as xgb

        data = xgb.DMatrix(x, feature_types=self.types_, enable_categorical="c" in self.types_, nthread=threads())
        best = self.model_.attr("best_iteration")
        rounds = (0, int(best) + 1) if best is not None else (0, 0)
        pred = self.model_.predict(data, iteration_range=rounds)
        if self.classify and pred.ndim == 1:
            return np.column_stack([1 - pred, pred])
        return pred


def _Clock(stop, xgb):
    class Clock(xgb.callback.TrainingCallback):
        def after_iteration(self, model, epoch, evals_log) -> bool:
            return stop()
    return Clock()
