"""Torch networks for tables: mlp, resnet, ft_transformer and tabm.

Every family takes the same four inputs: numeric features (batch, n_numeric),
categorical codes (batch, n_cat), images (batch, C, H, W) and token ids (batch, L), the
last two empty (batch, 0) when a competition has none, and returns (batch, out) logits or
values; an ensemble family (tabm) returns (batch, k, out), one row per member. Table
families read pixels as flat numbers and ignore tokens. Constructor arguments after the
InputSpec are the searched hyperparameters, by the same names as in pipelines/*.yaml and
in Optuna.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import tabm
import torch
from rtdl_num_embeddings import PeriodicEmbeddings, PiecewiseLinearEmbeddings
from torch import nn


@dataclass(frozen=True)
class InputSpec:
    """What a batch holds, fixed per fold by the Preprocessor."""

    n_numeric: int
    cardinalities: tuple[int, ...] = ()
    image_shape: tuple[int, ...] = ()  # (C, H, W), or () without images
    vocab_size: int = 0  # token ids 0 (padding) .. vocab_size - 1, or 0 without text
    sequence_length: int = 0  # tokens[:, :sequence_length] are words in order, the rest n-grams; 0: all words

    @property
    def n_pixels(self) -> int:
        return math.prod(self.image_shape) if self.image_shape else 0

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh, "leaky_relu": nn.LeakyReLU}
NORMS = ("batch", "layer", "none")


def _norm(kind: str, width: int) -> nn.Module:
    if kind not in NORMS:
        raise ValueError(f"norm {kind!r}: expected one of {', '.join(NORMS)}")
    return {"batch": nn.BatchNorm1d, "layer": nn.LayerNorm}.get(kind, lambda _: nn.Identity())(width)


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation {name!r}: expected one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


NUM_EMBEDDINGS = ("none", "periodic", "piecewise", "pbld")
D_EMBEDDING = 16  # per numeric column: the first layer reads 16x the numerics, so keep it small
D_PBLD = 4  # RealMLP's PBLD: the value and 3 learned periodic features per numeric column
N_BINS = 48  # piecewise-linear bins per column at most (rtdl's default)


def embedding_width(kind: str) -> int:
    """Values per numeric column after the embedding `kind`."""
    return {"none": 1, "pbld": D_PBLD}.get(kind, D_EMBEDDING)


class PBLDEmbeddings(PeriodicEmbeddings):
    """RealMLP-TD's numeric embedding (Holzmüller et al. 2024, "PBLD": periodic with bias, linear,
    DenseNet-style): per column, 16 features cos(2 pi (w x + b)) with learned frequencies (from
    N(0, 0.1^2)) and phases, a linear map of them to 3 values, and the column's value beside them:
    (batch, n, 4), a quarter of PLR's width for as many columns.

    A PeriodicEmbeddings by type only (its own parameters and forward): the tabm package accepts
    only rtdl's embedding classes, and reads the width from `get_output_shape`."""

    def __init__(self, n_features: int, frequencies: int = 16, sigma: float = 0.1):
        nn.Module.__init__(self)
        self.frequency = nn.Parameter(torch.randn(n_features, frequencies) * sigma)
        self.phase = nn.Parameter(torch.rand(n_features, frequencies) * 2 - 1)  # cos's phase: uniform over a period
        self.weight = nn.Parameter(torch.randn(n_features, frequencies, D_PBLD - 1) * frequencies**-0.5)
        self.bias = nn.Parameter(torch.zeros(n_features, D_PBLD - 1))

    def get_output_shape(self) -> torch.Size:
        return torch.Size((self.frequency.shape[0], D_PBLD))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        periodic = torch.cos(2 * math.pi * (x[..., None] * self.frequency + self.phase))  # (batch, n, 16)
        return torch.cat([x[..., None], torch.einsum("bnf,nfd->bnd", periodic, self.weight) + self.bias], dim=-1)


def numeric_embeddings(kind: str, n_numeric: int) -> nn.Module | None:
    """(batch, n_numeric) -> (batch, n_numeric, embedding_width(kind)), or None: numerics as they are.

    periodic is PLR-lite (Gorishniy et al. 2022): learned frequencies, cos and sin, then
    one linear layer shared by all columns and a ReLU; pbld is RealMLP's (`PBLDEmbeddings`, 4 wide). piecewise (version B: linear at
    initialization, the piecewise part learned) starts from even bins over [-3, 3],
    where quantile-normal numerics lie, until `fit_bins` moves them to the training quantiles.
    """
    if kind not in NUM_EMBEDDINGS:
        raise ValueError(f"num_embeddings {kind!r}: expected one of {', '.join(NUM_EMBEDDINGS)}")
    if kind == "none" or n_numeric == 0:
        return None
    if kind == "periodic":
        return PeriodicEmbeddings(n_numeric, D_EMBEDDING, lite=True)
    if kind == "pbld":
        return PBLDEmbeddings(n_numeric)
    return _piecewise([torch.linspace(-3, 3, N_BINS + 1)] * n_numeric)


def _piecewise(bins: list[torch.Tensor]) -> PiecewiseLinearEmbeddings:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a constant column's single bin warns; it just encodes a constant
        return PiecewiseLinearEmbeddings(bins, D_EMBEDDING, activation=False, version="B")


def quantile_bins(numeric: np.ndarray, n_bins: int = N_BINS) -> list[torch.Tensor]:
    """Each column's bin edges at its quantiles: rtdl's `compute_bins` less its refusal of
    constant columns (they get one bin around their value) and of rows fewer than bins."""
    rows = np.random.default_rng(0).permutation(len(numeric))[:100_000]  # quantiles settle long before
    edges = np.quantile(numeric[rows], np.linspace(0, 1, n_bins + 1), axis=0).T.astype(np.float32)  # (p, n_bins + 1)
    bins = [np.unique(e) for e in edges]
    return [torch.as_tensor(b if len(b) > 1 else np.array([b[0] - 1, b[0] + 1], np.float32)) for b in bins]


def fit_bins(net: nn.Module, numeric: np.ndarray) -> None:
    """Rebuild every piecewise-linear embedding in `net` on bins at the training quantiles.

    Bins are data, not hyperparameters, so a trial's params cannot carry them: this runs
    once on the training rows after the constructor and before the optimizer is made.
    """
    bins = None
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, PiecewiseLinearEmbeddings):
                bins = quantile_bins(numeric) if bins is None else bins
                setattr(parent, name, _piecewise(bins))


class Embeddings(nn.Module):
    """Numerics (as they are, or each embedded), flat pixels, each categorical code as a
    learned vector, concatenated to (batch, width)."""

    def __init__(self, spec: InputSpec, num_embeddings: str = "none"):
        super().__init__()
        self.numeric = numeric_embeddings(num_embeddings, spec.n_numeric)
        self.tables = nn.ModuleList(nn.Embedding(c, min(16, (c + 1) // 2 + 1)) for c in spec.cardinalities)
        d_numeric = spec.n_numeric * (embedding_width(num_embeddings) if self.numeric is not None else 1)
        self.width = d_numeric + spec.n_pixels + sum(t.embedding_dim for t in self.tables)

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor, images: torch.Tensor | None = None) -> torch.Tensor:
        if self.numeric is not None:
            numeric = self.numeric(numeric).flatten(1)  # (batch, n_numeric, width) -> (batch, n_numeric * width)
        parts = [numeric] + ([images.flatten(1)] if images is not None and images.numel() else [])
        parts += [t(categorical[:, i]) for i, t in enumerate(self.tables)]
        return torch.cat(parts, dim=1) if len(parts) > 1 else numeric


class MLP(nn.Module):
    def __init__(self, spec: InputSpec, out: int, *, depth: int = 2,
                 width: int = 256, activation: str = "relu", norm: str = "none", dropout: float = 0.1,
                 num_embeddings: str = "none"):
        super().__init__()
        self.embed = Embeddings(spec, num_embeddings)
        layers, d = [], self.embed.width
        for _ in range(depth):
            layers += [nn.Linear(d, width), _norm(norm, width), _activation(activation), nn.Dropout(dropout)]
            d = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(d, out)

    def forward(self, numeric, categorical, images, tokens):
        return self.head(self.body(self.embed(numeric, categorical, images)))


class ResidualBlock(nn.Module):
    """x + dropout(linear(dropout(act(linear(norm(x)))))), as in Gorishniy et al. 2021."""

    def __init__(self, width: int, hidden: int, norm: str, activation: str, dropout: float, residual_dropout: float):
        super().__init__()
        self.branch = nn.Sequential(_norm(norm, width), nn.Linear(width, hidden), _activation(activation),
                                    nn.Dropout(dropout), nn.Linear(hidden, width), nn.Dropout(residual_dropout))

    def forward(self, x):
        return x + self.branch(x)


class ResNet(nn.Module):
    def __init__(self, spec: InputSpec, out: int, *, blocks: int = 2,
                 width: int = 192, hidden_factor: float = 2.0, activation: str = "relu", norm: str = "batch",
                 dropout: float = 0.1, residual_dropout: float = 0.0, num_embeddings: str = "none"):
        super().__init__()
        self.embed = Embeddings(spec, num_embeddings)
        self.first = nn.Linear(self.embed.width, width)
        hidden = max(1, int(width * hidden_factor))
        self.blocks = nn.Sequential(*(ResidualBlock(width, hidden, norm, activation, dropout, residual_dropout)
                                      for _ in range(blocks)))
        self.head = nn.Sequential(_norm(norm, width), _activation(activation), nn.Linear(width, out))

    def forward(self, numeric, categorical, images, tokens):
        return self.head(self.blocks(self.first(self.embed(numeric, categorical, images))))


ATTENTION_FLOATS = 2**25  # 128 MiB of float32 activations for one batch of attention over column tokens


def attention_rows(tokens: int, *, layers: int = 2, d_token: int = 64, heads: int = 4, floats: int = ATTENTION_FLOATS) -> int:
    """Rows of one FT-Transformer batch that keep its activations near `ATTENTION_FLOATS`, a power of two.

    Training holds about layers x tokens x (32 d_token + 4 heads x tokens) floats a row for the
    backward pass (measured with torch 2.13's encoder layer: batch 512 of 39 tokens, 3 layers of
    64 took 741 MiB). Prediction needs about a quarter of that, but its chunks use the same rows:
    larger ones fragmented the heap by hundreds of MiB over a trial's predictions. Attention on
    a CPU is compute-bound, so smaller batches cost no speed (a GPU's are not: callers give it more `floats`).
    """
    per_row = layers * tokens * (32 * d_token + 4 * heads * tokens)
    return max(8, 2 ** int(np.log2(max(floats // max(per_row, 1), 1))))


class FTTransformer(nn.Module):
    """Feature tokenizer + transformer (Gorishniy et al. 2021): one token per column plus [CLS]."""

    def __init__(self, spec: InputSpec, out: int, *, layers: int = 2,
                 d_token: int = 64, heads: int = 4, attention_dropout: float = 0.1, ffn_dropout: float = 0.1,
                 ffn_factor: float = 4 / 3):
        super().__init__()
        if d_token % heads:
            raise ValueError(f"d_token {d_token} is not divisible by heads {heads}")
        self.numeric_weight = nn.Parameter(torch.randn(spec.n_numeric, d_token) * d_token**-0.5)
        self.numeric_bias = nn.Parameter(torch.zeros(spec.n_numeric, d_token))
        self.tables = nn.ModuleList(nn.Embedding(c, d_token) for c in spec.cardinalities)
        self.cls = nn.Parameter(torch.randn(1, 1, d_token) * d_token**-0.5)
        layer = nn.TransformerEncoderLayer(d_token, heads, int(d_token * ffn_factor), dropout=ffn_dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        layer.self_attn.dropout = attention_dropout
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.LayerNorm(d_token), nn.ReLU(), nn.Linear(d_token, out))

    def forward(self, numeric, categorical, images, text):
        # tokens: (batch, 1 + n_numeric + n_cat, d_token); pixels and text are not tokenized here
        tokens = [numeric.unsqueeze(-1) * self.numeric_weight + self.numeric_bias]
        tokens += [t(categorical[:, i]).unsqueeze(1) for i, t in enumerate(self.tables)]
        x = torch.cat([self.cls.expand(numeric.shape[0], -1, -1)] + tokens, dim=1)
        return self.head(self.encoder(x)[:, 0])


ARCH_TYPES = ("tabm", "tabm-mini", "tabm-packed")


class TabM(nn.Module):
    """TabM (Gorishniy et al. 2025, the authors' `tabm` package): k MLPs in one, sharing
    their weights, each with its own rank-one adapters (BatchEnsemble; tabm-mini: one
    adapter at the input; tabm-packed: k separate MLPs), all trained on the same rows.

    Categorical codes are one-hot encoded as the package does; pixels and tokens are not
    read. Returns (batch, k, out): TabularModule averages the members' losses and predictions.
    """

    def __init__(self, spec: InputSpec, out: int, *, k: int = 8, n_blocks: int = 2, d_block: int = 256,
                 dropout: float = 0.1, num_embeddings: str = "none", arch_type: str = "tabm"):
        super().__init__()
        if arch_type not in ARCH_TYPES:
            raise ValueError(f"arch_type {arch_type!r}: expected one of {', '.join(ARCH_TYPES)}")
        if not spec.n_numeric and not spec.cardinalities:
            raise ValueError("tabm reads numeric and categorical columns, and this data has neither")
        self.has_numeric, self.has_categorical = spec.n_numeric > 0, bool(spec.cardinalities)
        self.tabm = tabm.TabM.make(n_num_features=spec.n_numeric, cat_cardinalities=list(spec.cardinalities), d_out=out,
                                   num_embeddings=numeric_embeddings(num_embeddings, spec.n_numeric), k=k,
                                   n_blocks=n_blocks, d_block=d_block, dropout=dropout, arch_type=arch_type)

    def forward(self, numeric, categorical, images, tokens):
        # the package wants None, not an empty (batch, 0) tensor, for an absent kind of column
        # its one-hot encoding takes int64 codes; the features hold int32
        return self.tabm(numeric if self.has_numeric else None, categorical.long() if self.has_categorical else None)


TABULAR = {"mlp": MLP, "resnet": ResNet, "ft_transformer": FTTransformer, "tabm": TabM}
