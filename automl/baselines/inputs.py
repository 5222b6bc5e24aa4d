"""Model inputs from a fold's features: dense codes, one-hot, native categoricals, TF-IDF."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import make_union

from automl.preprocess import WORD, Features, clean_text


def set_categoricals(model, features: Features) -> None:
    if hasattr(model, "categorical_features") and features.categorical.shape[1]:
        mask = np.zeros(features.numeric.shape[1] + features.categorical.shape[1] + _pixels(features), dtype=bool)
        mask[features.numeric.shape[1]: features.numeric.shape[1] + features.categorical.shape[1]] = True
        model.set_params(categorical_features=mask)


def _pixels(features: Features) -> int:
    return 0 if features.images is None else int(np.prod(features.images.shape[1:]))


def dense(features: Features) -> np.ndarray:
    """Numerics, categorical codes as numbers (trees split them) and flat pixels."""
    parts = [features.numeric, features.categorical.astype(np.float32)]
    if features.images is not None:
        parts.append(features.images.reshape(len(features), -1))
    return np.hstack(parts)


def one_hot(features: Features) -> sp.csr_matrix:
    """Numerics and flat pixels as they are, each categorical code as its own column."""
    n = len(features)
    parts = [sp.csr_matrix(features.numeric)]
    if features.images is not None:
        parts.append(sp.csr_matrix(features.images.reshape(n, -1)))
    if features.categorical.shape[1]:
        offsets = np.cumsum((0,) + features.cardinalities[:-1])
        columns = (features.categorical + offsets).ravel()
        rows = np.repeat(np.arange(n), features.categorical.shape[1])
        parts.append(sp.csr_matrix((np.ones(len(columns), np.float32), (rows, columns)),
                                   shape=(n, int(sum(features.cardinalities)))))
    return sp.hstack(parts, format="csr")


def inputs_for(kind: str, *sets: Features) -> tuple:
    """Model inputs for each set of rows; TF-IDF's vocabulary is fitted on the first."""
    if kind in ("dense", "native"):
        return tuple(dense(f) for f in sets)
    matrices = [one_hot(f) for f in sets]
    if kind == "onehot":
        return tuple(matrices)
    joined = [clean_text(_joined_text(f)) for f in sets]
    tfidf = make_union(
        TfidfVectorizer(token_pattern=WORD.pattern, ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=200_000),
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True, max_features=200_000))
    texts = [tfidf.fit_transform(joined[0])] + [tfidf.transform(t) for t in joined[1:]]
    return tuple(sp.hstack([t, m], format="csr") for t, m in zip(texts, matrices, strict=True))


def _joined_text(features: Features) -> np.ndarray:
    columns = list(features.text.values())
    joined = columns[0]
    for more in columns[1:]:
        joined = joined + " " + more
    return joined
