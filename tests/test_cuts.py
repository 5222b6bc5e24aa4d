"""Cut points for ordinal metrics: kappa from counts, the search, and cross-fitting."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from automl.cuts import apply_cuts, cross_fitted, fit_cuts, kappa
from automl.folds import splits


def ordinal(n: int = 3000, k: int = 5, seed: int = 0):
    """Class codes from a latent value, and a noisy, biased regression of that value."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=n)
    y = np.digitize(latent, np.quantile(latent, [0.1, 0.35, 0.7, 0.9][: k - 1]))
    return y, 0.6 * latent + 1.5 + rng.normal(scale=0.4, size=n)


def test_kappa_from_counts_is_sklearns_quadratic_kappa():
    y, values = ordinal()
    pred = apply_cuts(values, np.array([0.8, 1.2, 1.8, 2.2]))
    confusion = np.zeros((5, 5))
    np.add.at(confusion, (y, pred), 1)
    assert float(kappa(confusion)) == pytest.approx(cohen_kappa_score(y, pred, weights="quadratic"), abs=1e-12)


def test_cuts_beat_rounding_and_the_class_frequency_start():
    y, values = ordinal()
    cuts = fit_cuts(y, values, 5)
    assert len(cuts) == 4 and (np.diff(cuts) > 0).all()
    found = cohen_kappa_score(y, apply_cuts(values, cuts), weights="quadratic")
    rounded = cohen_kappa_score(y, np.clip(np.round(values), 0, 4).astype(int), weights="quadratic")
    start = np.quantile(values, np.cumsum(np.bincount(y) / len(y))[:-1])
    frequencies = cohen_kappa_score(y, apply_cuts(values, start), weights="quadratic")
    assert found > rounded and found >= frequencies - 1e-9


def test_each_folds_cuts_come_from_the_other_folds_only():
    y, values = ordinal(900)
    folds = splits(np.arange(900) % 3)
    classes, test_cuts = cross_fitted(y, values, folds, 5)
    np.testing.assert_array_equal(test_cuts, fit_cuts(y, values, 5))
    for fold in folds:
        expected = apply_cuts(values[fold.valid_rows], fit_cuts(y[fold.train_rows], values[fold.train_rows], 5))
        np.testing.assert_array_equal(classes[fold.valid_rows], expected)
        shuffled = y.copy()  # a fold's own labels cannot move its cuts
        shuffled[fold.valid_rows] = np.random.default_rng(1).permutation(y[fold.valid_rows])
        np.testing.assert_array_equal(cross_fitted(shuffled, values, folds, 5)[0][fold.valid_rows],
                                      classes[fold.valid_rows])


def test_rows_no_fold_predicts_take_no_part():
    y, values = ordinal(800)
    assignment = np.repeat([-1, 0, 1, 2], 200)  # an expanding window: the first stretch only trains
    folds = splits(assignment)
    values[:200] = 1e6  # no prediction there: must not pull any cut
    classes, cuts = cross_fitted(y, values, folds, 5)
    assert (classes[:200] == -1).all() and (classes[200:] >= 0).all()
    assert cuts.max() < 10
