"""Torch networks for tables: mlp, resnet and ft_transformer.

Every family takes the same four inputs: numeric features (batch, n_numeric),
categorical codes (batch, n_cat), images (batch, C, H, W) and token ids (batch, L), the
last two empty (batch, 0) when a competition has none, and returns (batch, out) logits or
values. Table families read pixels as flat numbers and ignore tokens. Constructor
arguments after the InputSpec are the searched hyperparameters, by the same names as in
pipelines/*.yaml and in Optuna.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
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


class Embeddings(nn.Module):
    """Numerics and flat pixels as they are, each categorical code as a learned vector, concatenated."""

    def __init__(self, spec: InputSpec):
        super().__init__()
        self.tables = nn.ModuleList(nn.Embedding(c, min(16, (c + 1) // 2 + 1)) for c in spec.cardinalities)
        self.width = spec.n_numeric + spec.n_pixels + sum(t.embedding_dim for t in self.tables)

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor, images: torch.Tensor | None = None) -> torch.Tensor:
        parts = [numeric] + ([images.flatten(1)] if images is not None and images.numel() else [])
        parts += [t(categorical[:, i]) for i, t in enumerate(self.tables)]
        return torch.cat(parts, dim=1) if len(parts) > 1 else numeric


class MLP(nn.Module):
    def __init__(self, spec: InputSpec, out: int, *, depth: int = 2,
                 width: int = 256, activation: str = "relu", norm: str = "none", dropout: float = 0.1):
        super().__init__()
        self.embed = Embeddings(spec)
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
                 dropout: float = 0.1, residual_dropout: float = 0.0):
        super().__init__()
        self.embed = Embeddings(spec)
        self.first = nn.Linear(self.embed.width, width)
        hidden = max(1, int(width * hidden_factor))
        self.blocks = nn.Sequential(*(ResidualBlock(width, hidden, norm, activation, dropout, residual_dropout)
                                      for _ in range(blocks)))
        self.head = nn.Sequential(_norm(norm, width), _activation(activation), nn.Linear(width, out))

    def forward(self, numeric, categorical, images, tokens):
        return self.head(self.blocks(self.first(self.embed(numeric, categorical, images))))


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


TABULAR = {"mlp": MLP, "resnet": ResNet, "ft_transformer": FTTransformer}
