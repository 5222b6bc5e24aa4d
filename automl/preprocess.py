"""Turn a raw competition table into model-ready arrays, scikit-learn style.

`Preprocessor.fit(train)` decides each column's role and learns every statistic from
the rows it is given (callers fit it on a fold's training rows only);
`transform(frame)` returns `Features`: a float32 numeric matrix, int32 categorical
codes with their cardinalities, free text and pixel grids handed on for the networks.

Roles: numeric (median-imputed, with a missing indicator, then standardized, mapped to
normal quantiles, or robust: centred on the median, scaled by the middle half and smoothly
clipped, as RealMLP does), categorical (codes: 0 missing, 1 rare or unseen, 2.. levels by
frequency), date (days elapsed, for a trend, always standardized so that it carries on
past train's dates, and the parts that recur: day of the month, weekday, hour, and the
place in the year as a sine and cosine; not the year, whose values a later test period
never shows in training, nor the month, a number that climbs with the trend through each
year and then drops: a linear model fitted on one year mistakes one for the other), text (free text: handed on, plus
its length), tokens (high-cardinality strings such as names, tickets and cabins: their
frequent words, leading letters, trailing number, length and how often the value
repeats), image (pixel0..pixelN columns forming a square grid), dropped (constant or
all missing). Every rule looks only at the values, never at a column's name, so it holds
for any table.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.special import ndtri
from sklearn.feature_extraction.text import CountVectorizer

from automl.competition import first_present as _first_present
from automl.competition import looks_like_date as _looks_like_date
from automl.errors import AutomlError

NUMERIC_SCALINGS = ("standard", "quantile", "robust")
CLIP = 3.0  # robust: x / sqrt(1 + (x / CLIP)^2), RealMLP's smooth clipping: linear near 0, within +-3 far out
DATE_PARTS = ("elapsed", "day", "weekday", "hour", "year_sin", "year_cos")
TOKEN = r"[a-z]+"
WORD = re.compile(r"[#@]?\w+|[!?]")  # words, hashtags and mentions, and ! ? as tokens of their own
URL = re.compile(r"(?:https?://|www\.)\S+")  # every link becomes the one word "url": links never repeat
GRAMS = (  # the bag of n-grams beside the word sequence: word pairs and characters 2..5 within words
    {"token_pattern": WORD.pattern, "ngram_range": (2, 2), "min_df": 2},
    {"analyzer": "char_wb", "ngram_range": (2, 5), "min_df": 3},
)


@dataclass(frozen=True)
class Features:
    """Model-ready arrays for one set of rows, in a layout fixed at fit time."""

    numeric: np.ndarray  # (n, p) float32, finite
    numeric_names: tuple[str, ...]
    categorical: np.ndarray  # (n, c) int32 (half int64's memory at a million rows); 0 missing, 1 rare/unseen, 2.. levels
    categorical_names: tuple[str, ...]
    cardinalities: tuple[int, ...]  # number of codes per categorical column
    text: dict[str, np.ndarray]  # free-text column -> (n,) str, "" where missing
    images: np.ndarray | None  # (n, channels, height, width) float32 in [0, 1]
    # (n, length) ids of the free text: the first `sequence_length` are its words in order,
    # the rest its word pairs and character n-grams in no order; 0 pads, 1 is an unknown word
    tokens: np.ndarray | None = None  # int32
    vocab_size: int = 0
    sequence_length: int = 0

    def __len__(self) -> int:
        return self.numeric.shape[0]


class Preprocessor:
    """Learns column roles and statistics from training rows; see the module docstring."""

    def __init__(self, *, text_columns=(), date_columns=(), image_shape=(), numeric="standard",
                 min_category_count=5, max_categories=250, max_tokens=16, tokenize=False, vocabulary=20000):
        self.text_columns = text_columns
        self.date_columns = date_columns
        self.image_shape = image_shape
        self.numeric = numeric
        self.min_category_count = min_category_count
        self.max_categories = max_categories
        self.max_tokens = max_tokens
        self.tokenize = tokenize
        self.vocabulary = vocabulary

    # ------------------------------------------------------------------ fitting
    def fit(self, frame: pd.DataFrame) -> Preprocessor:
        if self.numeric not in NUMERIC_SCALINGS:
            raise AutomlError(f"numeric: unknown scaling {self.numeric!r}; expected one of {', '.join(NUMERIC_SCALINGS)}")
        if len(frame) == 0:
            raise AutomlError("cannot fit the preprocessor on zero rows")
        self.columns_ = list(frame.columns)
        self.image_columns_, self.image_shape_ = _pixel_grid(frame, tuple(self.image_shape))
        self.roles_ = {c: "image" for c in self.image_columns_}
        for column in frame.columns:
            if column not in self.roles_:
                self.roles_[column] = self._role(frame[column], len(frame))
        self.image_scale_ = (
            float(max(frame[self.image_columns_].max().max(), 1)) if self.image_columns_ else 1.0
        )
        self.date_parts_ = {c: self._fit_date(frame[c]) for c in self._having("date")}
        self.tokens_ = {c: self._fit_tokens(frame[c]) for c in self._having("tokens")}
        texts = self._texts(frame) if self.tokenize else None  # cleaned once for both vocabularies
        self.words_, self.max_length_ = self._fit_vocabulary(texts) if texts is not None else ({}, 0)
        self.grams_, self.max_grams_ = self._fit_grams(texts) if self.words_ else ([], 0)
        self.levels_ = {}
        for name, values in self._categorical_sources(frame):
            counts = values.value_counts(dropna=True)
            kept = counts[counts >= self.min_category_count].index[: self.max_categories]
            if len(kept):
                self.levels_[name] = pd.Index(kept)
        self.numeric_stats_ = {}
        elapsed = {f"{c}__elapsed" for c in self.date_parts_}
        for name, values in self._numeric_sources(frame):
            stats = self._fit_numeric(values, linear=name in elapsed)
            if stats is not None:
                self.numeric_stats_[name] = stats
        self.numeric_names_ = tuple(
            out for name, stats in self.numeric_stats_.items()
            for out in ([name] if stats["scale"] is not None else []) + ([f"{name}__missing"] if stats["indicator"] else [])
        )
        return self

    def _having(self, role: str) -> list[str]:
        return [c for c, r in self.roles_.items() if r == role]

    def _role(self, values: pd.Series, n_rows: int) -> str:
        if values.isna().all():
            return "dropped: all missing"
        if _is_constant(values):
            return "dropped: constant"
        if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
            return "numeric"
        if pd.api.types.is_datetime64_any_dtype(values):
            return "date"
        if values.name in self.date_columns or (values.name not in self.text_columns and _looks_like_date(values)):
            return "date"
        if values.name in self.text_columns or looks_like_text(values):
            return "text"
        limit = max(50, min(self.max_categories, 0.05 * n_rows))
        return "categorical" if values.nunique() <= limit else "tokens"

    def _fit_date(self, values: pd.Series) -> list[str]:
        parts = _date_parts(values)
        return [p for p in DATE_PARTS if parts[p].nunique() > 1]

    def _fit_tokens(self, values: pd.Series) -> dict:
        """Frequent words of a high-cardinality string column, and its value counts."""
        text = values.dropna().astype(str)
        uniques, counts = np.unique(text.to_numpy(dtype=object), return_counts=True)
        words = pd.Series(uniques).str.lower().str.findall(TOKEN).map(set).explode().dropna()
        rows_with = pd.Series(counts[words.index.to_numpy()], index=words.to_numpy()).groupby(level=0).sum()
        n = len(values)
        frequent = rows_with[(rows_with >= max(10, 0.01 * n)) & (rows_with <= 0.95 * n)]
        tokens = frequent.sort_values(ascending=False, kind="stable").index[: self.max_tokens]
        return {"tokens": list(tokens), "counts": pd.Series(counts, index=uniques)}

    def _fit_vocabulary(self, texts: np.ndarray) -> tuple[dict[str, int], int]:
        """Word ids for the free text of these rows only: words seen twice or more, most frequent first."""
        documents = [WORD.findall(text) for text in texts]
        counts = Counter(word for words in documents for word in words)
        kept = [w for w, c in counts.most_common(self.vocabulary - 2) if c >= 2]
        lengths = np.array([len(words) for words in documents])
        return {w: i + 2 for i, w in enumerate(kept)}, int(np.clip(np.quantile(lengths, 0.98), 8, 256))

    def _fit_grams(self, texts: np.ndarray) -> tuple[list[tuple[CountVectorizer, np.ndarray]], int]:
        """Word pairs and character n-grams of these rows (fastText's subwords): ids after the words,
        most frequent first within each kind; per row at most the 98th percentile of the rows' counts
        (8..512) are kept, word pairs before character n-grams."""
        fitted, offset, counts = [], len(self.words_) + 2, 0
        for options in GRAMS:
            vectorizer = CountVectorizer(lowercase=False, binary=True, max_features=self.vocabulary, dtype=np.int32,
                                         **options)
            try:
                matrix = vectorizer.fit_transform(texts)
            except ValueError:  # no n-gram occurs often enough in these rows
                continue
            order = np.argsort(-matrix.getnnz(axis=0), kind="stable")
            ids = np.empty(len(order), dtype=np.int64)
            ids[order] = offset + np.arange(len(order))
            fitted.append((vectorizer, ids))
            offset, counts = offset + len(order), counts + matrix.getnnz(axis=1)
        return fitted, int(np.clip(np.quantile(counts, 0.98), 8, 512)) if fitted else 0

    def _texts(self, frame: pd.DataFrame) -> np.ndarray | None:
        """The row's free-text columns joined, lower case, entities decoded, every link one word."""
        columns = self._having("text")
        if not columns:
            return None
        joined = frame[columns[0]].astype("string").fillna("")
        for column in columns[1:]:
            joined = joined + " " + frame[column].astype("string").fillna("")
        return clean_text(joined.to_numpy(dtype=object))

    def _token_ids(self, frame: pd.DataFrame) -> np.ndarray | None:
        texts = self._texts(frame) if self.words_ else None
        if texts is None:
            return None
        documents = [WORD.findall(text) for text in texts]
        ids = np.zeros((len(documents), self.max_length_ + self.max_grams_), dtype=np.int32)
        for row, words in enumerate(documents):
            found = [self.words_.get(w, 1) for w in words[: self.max_length_]]
            ids[row, : len(found)] = found
        if self.grams_:
            grams = sp.hstack([sp.csr_matrix((new[m.indices], m.indices, m.indptr), shape=m.shape)
                               for m, new in ((v.transform(texts), new) for v, new in self.grams_)], format="csr")
            for row in range(grams.shape[0]):
                found = np.sort(grams.data[grams.indptr[row]: grams.indptr[row + 1]])[: self.max_grams_]
                ids[row, self.max_length_: self.max_length_ + len(found)] = found
        return ids

    def _fit_numeric(self, values: np.ndarray, linear: bool = False) -> dict | None:
        """`linear`: standardized whatever the scaling (a date's elapsed days: quantiles would hold every later
        test day at the last training day's value, and no network or linear model could carry a trend on)."""
        missing = np.isnan(values)
        if missing.all():
            return None
        median = float(np.nanmedian(values))
        filled = np.where(missing, median, values)
        stats = {"median": median, "indicator": bool(missing.any()), "center": 0.0, "scale": None}
        if filled.std() == 0:
            return stats if stats["indicator"] else None
        if self.numeric == "quantile" and not linear:
            sample = filled if len(filled) <= 100_000 else np.random.default_rng(0).choice(filled, 100_000)
            stats["quantiles"] = np.quantile(sample, np.linspace(0, 1, 1001))
            stats["scale"] = 1.0
        elif self.numeric == "robust" and not linear:  # RealMLP-TD's: centred on the median, scaled by the middle half
            low, middle, high = np.quantile(filled, [0.25, 0.5, 0.75])
            spread = high - low if high > low else 0.5 * (filled.max() - filled.min())
            stats["center"], stats["scale"], stats["clip"] = float(middle), float(spread), CLIP
        else:
            stats["center"], stats["scale"] = float(filled.mean()), float(filled.std())
        return stats

    # ------------------------------------------------------------- generated columns
    def _numeric_sources(self, frame: pd.DataFrame):
        """(name, float64 values) for every numeric input, one at a time (memory)."""
        for column in self._having("numeric"):
            yield column, _as_float(frame[column])
        for column, parts in self.date_parts_.items():
            values = _per_unique(frame[column], _date_parts)
            for part in parts:
                yield f"{column}__{part}", values[part].to_numpy(dtype=np.float64, na_value=np.nan)
        for column in self._having("text"):
            text = frame[column].astype("string")
            yield f"{column}__length", _as_float(text.str.len())
            yield f"{column}__words", _word_counts(text)
        for column, fitted in self.tokens_.items():
            parts = _per_unique(frame[column], lambda values, fitted=fitted: _string_parts(values, fitted))
            for part in parts.columns:
                yield f"{column}__{part}", _as_float(parts[part])

    def _categorical_sources(self, frame: pd.DataFrame):
        for column in self._having("categorical"):
            yield column, frame[column]
        for column in self.tokens_:
            yield f"{column}__prefix", _per_unique(frame[column], _prefix)

    # --------------------------------------------------------------- transforming
    def transform(self, frame: pd.DataFrame) -> Features:
        if not hasattr(self, "roles_"):
            raise AutomlError("this Preprocessor is not fitted yet; call fit(train) first")
        missing = [c for c in self.columns_ if c not in frame.columns and not self.roles_[c].startswith("dropped")]
        if missing:
            raise AutomlError(f"column {missing[0]!r} seen while fitting is missing from the frame to transform")
        n = len(frame)
        numeric = np.empty((n, len(self.numeric_names_)), dtype=np.float32)
        position = 0
        for name, values in self._numeric_sources(frame):
            stats = self.numeric_stats_.get(name)
            if stats is None:
                continue
            nan = np.isnan(values)
            if stats["scale"] is not None:
                numeric[:, position] = self._scale(np.where(nan, stats["median"], values), stats)
                position += 1
            if stats["indicator"]:
                numeric[:, position] = nan
                position += 1
        names, codes = [], []
        for name, values in self._categorical_sources(frame):
            if name in self.levels_:
                names.append(name)
                codes.append(_encode(values, self.levels_[name]))
        categorical = np.stack(codes, axis=1) if codes else np.zeros((n, 0), dtype=np.int32)
        return Features(
            numeric=numeric,
            numeric_names=self.numeric_names_,
            categorical=categorical,
            categorical_names=tuple(names),
            cardinalities=tuple(len(self.levels_[name]) + 2 for name in names),
            text={c: frame[c].astype("string").fillna("").to_numpy(dtype=object) for c in self._having("text")},
            images=self._images(frame),
            tokens=self._token_ids(frame),
            vocab_size=len(self.words_) + 2 + sum(len(new) for _, new in self.grams_) if self.words_ else 0,
            sequence_length=self.max_length_ if self.words_ else 0,
        )

    def fit_transform(self, frame: pd.DataFrame) -> Features:
        return self.fit(frame).transform(frame)

    def _scale(self, values: np.ndarray, stats: dict) -> np.ndarray:
        if "quantiles" in stats:
            q = stats["quantiles"]
            ranks = np.linspace(0, 1, len(q))
            # Average of forward and backward interpolation, as scikit-learn's
            # QuantileTransformer does, so tied quantiles map to their middle rank. Without
            # ties the two agree: one interpolation (the costliest step at a million rows).
            if np.all(np.diff(q) > 0):
                u = np.interp(values, q, ranks)
            else:
                u = 0.5 * (np.interp(values, q, ranks) - np.interp(-values, -q[::-1], -ranks[::-1]))
            return ndtri(np.clip(u, 1e-4, 1 - 1e-4))
        scaled = (values - stats["center"]) / stats["scale"]
        return scaled / np.sqrt(1 + (scaled / stats["clip"]) ** 2) if stats.get("clip") else scaled

    def _images(self, frame: pd.DataFrame) -> np.ndarray | None:
        if not self.image_columns_:
            return None
        pixels = frame[self.image_columns_].to_numpy(dtype=np.float32, na_value=0.0) / self.image_scale_
        channels, height, width = self.image_shape_
        if channels == 1:
            return pixels.reshape(-1, 1, height, width)
        return pixels.reshape(-1, height, width, channels).transpose(0, 3, 1, 2).copy()

    def describe(self) -> dict[str, str]:
        """A short human description of each input column's role, for `automl inspect`."""
        notes = {}
        for column, role in self.roles_.items():
            if role == "categorical":
                count = len(self.levels_.get(column, ()))
                role = f"categorical ({count} levels)"
            elif role == "date":
                role = f"date ({', '.join(self.date_parts_[column])})"
            elif role == "tokens":
                words = self.tokens_[column]["tokens"]
                role = "tokens: " + (", ".join(words[:6]) + (", ..." if len(words) > 6 else "") if words else "length, number, repeats")
            elif role == "image":
                role = f"image {'x'.join(map(str, self.image_shape_))}"
            notes[column] = role
        return notes


# ------------------------------------------------------------------------- helpers

def clean_text(texts) -> np.ndarray:
    """Free text as every text model here reads it: lower case, HTML entities decoded, each link the word "url"."""
    return np.array([URL.sub(" url ", html.unescape(str(t)).lower()) for t in texts], dtype=object)


def _as_float(values) -> np.ndarray:
    array = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    finite = np.isfinite(array)
    return array if finite.all() else np.where(finite, array, np.nan)


def _is_constant(values: pd.Series) -> bool:
    """nunique(dropna=False) <= 1 for a column that is not all missing, without hashing every row."""
    # Comparing first rejects almost every column at the price of one vectorized pass;
    # hasnans then catches NaN, which == skips under nullable dtypes' .all().
    return bool((values == values.iloc[0]).all()) and not values.hasnans


def _word_counts(text: pd.Series) -> np.ndarray:
    """Whitespace-separated words per row, NaN where missing; str.split runs in C, a regex per row does not."""
    return np.array([len(s.split()) if isinstance(s, str) else np.nan for s in text.to_numpy(dtype=object)])


def _encode(values: pd.Series, levels: pd.Index) -> np.ndarray:
    if not pd.api.types.is_dtype_equal(values.dtype, levels.dtype) and pd.api.types.is_numeric_dtype(values):
        values = values.astype("string")
    codes = pd.Categorical(values, categories=levels).codes.astype(np.int32) + 2  # -1 -> 1: rare or unseen
    codes[values.isna().to_numpy()] = 0
    return codes


def _per_unique(values: pd.Series, function):
    """`function` (Series -> Series or DataFrame, row by row) computed once per distinct value.

    String and date parsing cost per row; a column of a million rows often holds a few
    thousand distinct values (categories, days), so this is tens of times cheaper.
    """
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    if len(uniques) > len(values) // 2:
        return function(values.reset_index(drop=True))
    distinct = pd.Series(np.append(np.asarray(uniques, dtype=object), None), dtype=object)
    result = function(distinct)
    return result.iloc[np.where(codes < 0, len(uniques), codes)].reset_index(drop=True)


def _string_parts(text: pd.Series, fitted: dict) -> pd.DataFrame:
    """Length, trailing number, how often the value repeats in training, and its frequent words."""
    text = text.astype("string")
    lower = text.str.lower()
    parts = {"length": text.str.len().astype("Float64"),
             "number": text.str.extract(r"(\d+)\D*$", expand=False).astype("Float64"),
             "repeats": text.map(fitted["counts"]).astype("Float64").fillna(0)}
    for token in fitted["tokens"]:
        parts[f"has_{token}"] = lower.str.contains(rf"\b{token}\b", regex=True).astype("Float64")
    return pd.DataFrame(parts)


def _prefix(values: pd.Series) -> pd.Series:
    return values.astype("string").str.extract(r"^\W*([A-Za-z]+)", expand=False).str.upper()


def _date_parts(values: pd.Series) -> pd.DataFrame:
    stamps = values if pd.api.types.is_datetime64_any_dtype(values) else pd.to_datetime(values, errors="coerce", format="mixed")
    if stamps.dt.tz is not None:
        stamps = stamps.dt.tz_localize(None)
    year = 2 * np.pi * (stamps.dt.day_of_year - 1 + stamps.dt.hour / 24) / 365.25  # the place in the year, in radians
    return pd.DataFrame({
        "elapsed": (stamps - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1),  # days, so a trend carries on
        "day": stamps.dt.day, "weekday": stamps.dt.day_of_week, "hour": stamps.dt.hour,
        "year_sin": np.sin(year), "year_cos": np.cos(year),
    })


def looks_like_text(values: pd.Series) -> bool:
    sample = _first_present(values, 2000).astype(str)
    return sample.str.split().str.len().mean() >= 6 and sample.nunique() >= 0.5 * len(sample)


def _pixel_grid(frame: pd.DataFrame, shape: tuple) -> tuple[list[str], tuple]:
    """Columns named PREFIX0..PREFIXn (numeric) that form a square image, and its shape."""
    groups: dict[str, dict[int, str]] = {}
    for column in frame.columns:
        match = re.fullmatch(r"(.*?)(\d+)", str(column))
        if match and pd.api.types.is_numeric_dtype(frame[column]):
            groups.setdefault(match.group(1), {})[int(match.group(2))] = column
    for members in groups.values():
        n = len(members)
        if n < 64 or sorted(members) not in (list(range(n)), list(range(1, n + 1))):
            continue
        for channels in (1, 3):
            side = int(round((n / channels) ** 0.5))
            found = (channels, side, side)
            if side * side * channels == n and (not shape or tuple(shape) == found):
                return [members[i] for i in sorted(members)], found
    if shape:
        raise AutomlError(f"image_shape {list(shape)}: no numbered pixel columns of that size were found")
    return [], ()
