"""Baselines (scikit-learn, LightGBM, XGBoost, CatBoost), cross-validated on the run's folds with the competition metric.

Each baseline is plain data: an estimator factory per task family and the input it
takes (dense codes for trees, one-hot for linear models, native categoricals for
histogram boosting, TF-IDF for free text). `cross_validate` fits it once per fold and
returns out-of-fold predictions, test predictions averaged over the folds, the score
of every fold and the seconds it took. Networks return the same `CVResult`, so every
model lands on one leaderboard. With several targets (multitarget, multilabel) a model
that takes a 2-D y (dummy, ridge, forests) fits them at once; the others fit one model
per target column (`PerColumn`).

Layout: `members` (the table of baselines, plain data), `gbdt` with `lgbm`, `xgb`, `catb`
(one file per gradient-boosted tree library behind one contract), `inputs` (what each
takes), `fitting` (one fold), `sizing` (a timed probe sizes a baseline to its time share),
`cv` (the fold loop), `trend` (whether a forecast's trees learn relative to a trend), `original` (whether
--extra-train rows help) and
`result` (what every model hands on, networks included).
"""

from automl.baselines.cv import cross_validate
from automl.baselines.gbdt import Failed, missing
from automl.baselines.members import BASELINES, CHEAP_FIRST, Baseline, applicable
from automl.baselines.original import choose_extra
from automl.baselines.result import CVResult, Skipped, finish
from automl.baselines.trend import choose_trend

__all__ = ["BASELINES", "CHEAP_FIRST", "Baseline", "CVResult", "Failed", "Skipped", "applicable", "choose_extra", "choose_trend",
           "cross_validate", "finish", "missing"]
