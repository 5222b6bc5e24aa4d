"""The Preprocessor: column roles, statistics learnt from the fitted rows only, model-ready arrays."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import synthetic_frame
from scipy import stats

from automl.errors import AutomlError
from automl.preprocess import Features, Preprocessor


def features_of(task: str, n: int = 300, seed: int = 0) -> pd.DataFrame:
    return synthetic_frame(task, n, seed).drop(columns="target")


def test_output_is_finite_typed_and_laid_out_alike(task):
    train, test = features_of(task, 300, 0), features_of(task, 120, 1)
    pre = Preprocessor().fit(train)
    a, b = pre.transform(train), pre.transform(test)
    for features, n in ((a, 300), (b, 120)):
        assert isinstance(features, Features) and len(features) == n
        assert features.numeric.dtype == np.float32 and features.categorical.dtype == np.int32
        assert np.isfinite(features.numeric).all()
        assert features.numeric.shape == (n, len(a.numeric_names))
        assert features.categorical.shape == (n, len(a.categorical_names))
        assert (features.categorical >= 0).all()
        assert (features.categorical < np.array(features.cardinalities)).all()
        assert features.images is None and features.text == {}
    assert a.numeric_names == b.numeric_names
    assert a.categorical_names == b.categorical_names and a.cardinalities == b.cardinalities


def test_roles():
    pre = Preprocessor().fit(features_of("binary"))
    assert pre.roles_ == {"id": "numeric", "x1": "numeric", "x2": "numeric", "colour": "categorical",
                          "flag": "numeric", "name": "tokens", "when": "date", "constant": "dropped: constant"}
    features = pre.transform(features_of("binary"))
    names = features.numeric_names
    assert "constant" not in names and "x2__missing" in names and "x1__missing" not in names
    # A date is expanded to its parts; the hour is always 0 here, so it is left out.
    assert pre.date_parts_ == {"when": ["elapsed", "day", "weekday", "year_sin", "year_cos"]}
    assert [n for n in names if n.startswith("when__")] == ["when__elapsed", "when__day", "when__weekday",
                                                            "when__year_sin", "when__year_cos"]
    # The high-cardinality name column gives its frequent words, its trailing number and its prefix.
    assert {"mr", "mrs", "dr", "smith"} <= set(pre.tokens_["name"]["tokens"])
    assert {"name__has_mr", "name__has_mrs", "name__length", "name__number"} <= set(names)
    assert features.categorical_names == ("colour", "name__prefix")


def test_token_flags_follow_the_words():
    frame = features_of("binary")
    features = Preprocessor().fit_transform(frame)
    names = list(features.numeric_names)
    mr = features.numeric[:, names.index("name__has_mr")]
    mrs = features.numeric[:, names.index("name__has_mrs")]
    # Standardized 0/1 flags: the larger value marks the rows holding the word ("Mr" is not in "Mrs").
    assert ((mr > 0) == frame["name"].str.contains(r"\bMr\.")).all()
    assert ((mrs > 0) == frame["name"].str.contains(r"\bMrs\.")).all()
    number = features.numeric[:, names.index("name__number")]
    assert np.corrcoef(number, np.arange(len(frame)))[0, 1] == pytest.approx(1.0)


def test_date_parts_match_the_dates():
    frame = features_of("regression")
    pre = Preprocessor(numeric="standard").fit(frame)
    features = pre.transform(frame)
    stamps = pd.to_datetime(frame["when"])

    def restored(part):
        stats_ = pre.numeric_stats_[f"when__{part}"]
        return features.numeric[:, list(features.numeric_names).index(f"when__{part}")] * stats_["scale"] + stats_["center"]

    np.testing.assert_allclose(restored("day"), stamps.dt.day, atol=1e-4)
    # Days since 1970, so a trend continues into a later test period; the year's place as an angle.
    np.testing.assert_allclose(restored("elapsed"), (stamps - pd.Timestamp("1970-01-01")).dt.days, rtol=1e-6)
    angle = np.arctan2(restored("year_sin"), restored("year_cos")) % (2 * np.pi)
    np.testing.assert_allclose(angle, 2 * np.pi * (stamps.dt.day_of_year - 1) / 365.25, atol=1e-4)


def test_statistics_come_from_the_fitted_rows_only():
    train = features_of("regression", 400, 0)
    shifted = features_of("regression", 400, 1)
    shifted["x1"] = shifted["x1"] + 100.0
    shifted["colour"] = ["purple", None] * 200  # unseen, then missing
    pre = Preprocessor().fit(train)
    on_train, on_shifted = pre.transform(train), pre.transform(shifted)
    x1 = list(on_train.numeric_names).index("x1")
    assert on_train.numeric[:, x1].mean() == pytest.approx(0, abs=1e-5)
    assert on_train.numeric[:, x1].std() == pytest.approx(1, abs=1e-3)
    expected = (shifted["x1"] - train["x1"].mean()) / train["x1"].std(ddof=0)
    np.testing.assert_allclose(on_shifted.numeric[:, x1], expected, rtol=1e-5)
    assert on_shifted.numeric[:, x1].mean() > 50  # far from 0: the shifted rows did not refit the scale
    colour = on_shifted.categorical[:, list(on_shifted.categorical_names).index("colour")]
    assert colour.tolist() == [1, 0] * 200  # unseen -> 1, missing -> 0


def test_missing_values_take_the_train_median_and_an_indicator():
    train = pd.DataFrame({"x": [1.0, 2.0, np.nan, 4.0, 100.0, 6.0]})
    test = pd.DataFrame({"x": [np.nan, 2.0]})
    pre = Preprocessor().fit(train)
    assert pre.numeric_stats_["x"]["median"] == 4.0
    out = pre.transform(test)
    assert out.numeric_names == ("x", "x__missing")
    filled = out.numeric[0, 0] * pre.numeric_stats_["x"]["scale"] + pre.numeric_stats_["x"]["center"]
    assert filled == pytest.approx(4.0)
    assert out.numeric[:, 1].tolist() == [1.0, 0.0]


def test_category_codes_order_levels_by_frequency():
    train = pd.DataFrame({"c": ["b"] * 10 + ["a"] * 7 + ["z"] * 2 + [None]})
    pre = Preprocessor().fit(train)
    out = pre.transform(pd.DataFrame({"c": ["a", "b", "z", None, "new"]}))
    assert out.categorical[:, 0].tolist() == [3, 2, 1, 0, 1]  # z is rare (fewer than 5 rows): same as unseen
    assert out.cardinalities == (4,)


def test_quantile_scaling_is_approximately_normal():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"skewed": rng.exponential(size=3000), "other": rng.normal(size=3000)})
    standard = Preprocessor(numeric="standard").fit_transform(frame).numeric[:, 0]
    quantile = Preprocessor(numeric="quantile").fit_transform(frame).numeric[:, 0]
    assert stats.skew(standard) > 1.5
    assert abs(stats.skew(quantile)) < 0.05
    assert quantile.mean() == pytest.approx(0, abs=0.02) and quantile.std() == pytest.approx(1, abs=0.05)
    assert stats.kstest(quantile, "norm").pvalue > 0.05
    # Unseen rows beyond the train range stay finite.
    beyond = Preprocessor(numeric="quantile").fit(frame).transform(frame * 100).numeric
    assert np.isfinite(beyond).all()


def test_robust_scaling_centres_on_the_median_and_clips_smoothly():
    rng = np.random.default_rng(0)
    values = np.r_[rng.normal(10, 2, size=2990), [1e4] * 10]  # ten wild outliers
    frame = pd.DataFrame({"x": values, "other": rng.normal(size=3000)})
    scaled = Preprocessor(numeric="robust").fit_transform(frame).numeric[:, 0]
    assert np.median(scaled) == pytest.approx(0, abs=0.01)
    assert np.abs(scaled).max() < 3  # outliers end within +-3 (x / sqrt(1 + (x/3)^2)), not at thousands
    middle = np.abs(values - 10) < 1  # near the median, nearly linear: (x - median) / IQR
    iqr = np.subtract(*np.quantile(values, [0.75, 0.25]))
    np.testing.assert_allclose(scaled[middle], (values[middle] - np.median(values)) / iqr, atol=0.01)
    assert np.all(np.diff(scaled[np.argsort(values)]) >= 0)  # order kept
    standard = Preprocessor(numeric="standard").fit_transform(frame).numeric[:, 0]
    assert np.abs(standard).max() > 10


def test_pandas_string_dtype_columns_work():
    plain = features_of("multiclass")
    strings = plain.astype({"colour": "string", "name": "string", "when": "string"})
    as_objects = plain.astype({"colour": object, "name": object, "when": object})
    reference = Preprocessor().fit(plain)
    expected = reference.transform(plain)
    for frame in (strings, as_objects):
        pre = Preprocessor().fit(frame)
        assert pre.roles_ == reference.roles_
        got = pre.transform(frame)
        np.testing.assert_array_equal(got.categorical, expected.categorical)
        np.testing.assert_allclose(got.numeric, expected.numeric, rtol=1e-6)
        # And a frame of another string dtype than the one fitted on is read the same way.
        np.testing.assert_array_equal(reference.transform(frame).categorical, expected.categorical)


def test_text_columns_are_handed_on():
    frame = features_of("binary")
    frame["note"] = [f"{name} wrote a long note about the weather{' and the sea' * (i % 3)}"
                     for i, name in enumerate(frame["name"])]
    frame.loc[3, "note"] = None
    pre = Preprocessor(text_columns=("name",)).fit(frame)
    assert pre.roles_["name"] == "text" and pre.roles_["note"] == "text"
    out = pre.transform(frame)
    assert set(out.text) == {"name", "note"}
    assert out.text["note"][3] == "" and out.text["name"][0] == frame["name"][0]
    assert {"note__length", "note__words"} <= set(out.numeric_names)


def _pixels(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 256, size=(n, 64))
    values[0, :] = 255  # the brightest pixel in train sets the scale
    return pd.DataFrame(values, columns=[f"pixel{i}" for i in range(64)])


def test_pixel_columns_become_images():
    train = _pixels(50, 0).assign(label=np.arange(50) % 3)
    pre = Preprocessor().fit(train.drop(columns="label"))
    assert set(pre.roles_.values()) == {"image"}
    assert pre.image_shape_ == (1, 8, 8)
    out = pre.transform(train.drop(columns="label"))
    assert out.images.shape == (50, 1, 8, 8) and out.images.dtype == np.float32
    assert out.images.min() >= 0 and out.images.max() == 1.0
    np.testing.assert_allclose(out.images[7, 0, 2, 3], train.loc[7, "pixel19"] / 255, rtol=1e-6)  # row-major
    assert pre.describe()["pixel0"] == "image 1x8x8"


def test_pixel_columns_of_a_stated_shape_and_a_wrong_one():
    frame = _pixels(20, 1)
    assert Preprocessor(image_shape=(1, 8, 8)).fit(frame).image_shape_ == (1, 8, 8)
    with pytest.raises(AutomlError,
                       match=r"^image_shape \[1, 28, 28\]: no numbered pixel columns of that size were found$"):
        Preprocessor(image_shape=(1, 28, 28)).fit(frame)


def test_fitting_zero_rows_fails():
    with pytest.raises(AutomlError, match=r"^cannot fit the preprocessor on zero rows$"):
        Preprocessor().fit(features_of("binary").iloc[:0])


def test_unknown_scaling_lists_the_allowed_ones():
    pre = Preprocessor(numeric="minmax")  # __init__ only stores; fit checks
    with pytest.raises(AutomlError, match=r"^numeric: unknown scaling 'minmax'; expected one of standard, quantile, robust$"):
        pre.fit(features_of("binary"))


def test_transform_before_fit_and_a_missing_column():
    with pytest.raises(AutomlError, match=r"not fitted yet; call fit\(train\) first$"):
        Preprocessor().transform(features_of("binary"))
    pre = Preprocessor().fit(features_of("binary"))
    with pytest.raises(AutomlError, match=r"^column 'x1' seen while fitting is missing from the frame to transform$"):
        pre.transform(features_of("binary").drop(columns="x1"))
    # A dropped (constant) column may be absent.
    assert len(pre.transform(features_of("binary").drop(columns="constant"))) == 300


def test_all_missing_and_constant_columns_are_dropped():
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "gone": [np.nan] * 3, "same": ["a"] * 3})
    pre = Preprocessor().fit(frame)
    assert pre.roles_ == {"x": "numeric", "gone": "dropped: all missing", "same": "dropped: constant"}
    assert pre.transform(frame).numeric_names == ("x",)
