"""Networks for free text, joined with the row's other columns: bag, rnn (GRU/LSTM), transformer.

Token ids come from a vocabulary fitted on each fold's training text only (see
automl.preprocess); id 0 is padding. A row's ids are its words in order, then its word
pairs and character n-grams: the bag reads them all (as fastText does), the sequence
models read the words. Each family turns a sequence into one vector,
concatenates the row's numeric and categorical embeddings, and ends in a small head.
"""

from __future__ import annotations

import torch
from torch import nn

from automl.models.tabular import Embeddings, InputSpec


def _check(spec: InputSpec, family: str) -> None:
    if not spec.vocab_size:
        raise ValueError(f"the {family} family needs a free-text column; this data has none")


class _TextModel(nn.Module):
    """Shared parts: token embeddings, the other columns, and the head."""

    def __init__(self, spec: InputSpec, out: int, embedding_dim: int, encoded: int, dropout: float, head_width: int):
        super().__init__()
        self.embedding = nn.Embedding(spec.vocab_size, embedding_dim, padding_idx=0)
        self.words = spec.sequence_length or None  # tokens[:, :words] are the words in order
        self.others = Embeddings(InputSpec(spec.n_numeric, spec.cardinalities))
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(encoded + self.others.width, head_width), nn.ReLU(),
                                  nn.Dropout(dropout), nn.Linear(head_width, out))

    def finish(self, encoded, numeric, categorical):
        return self.head(torch.cat([encoded, self.others(numeric, categorical)], dim=1))


def _mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens: x (batch, length, dim), mask (batch, length)."""
    weights = mask.unsqueeze(-1).to(x.dtype)
    return (x * weights).sum(1) / weights.sum(1).clamp(min=1)


class Bag(_TextModel):
    """Mean of the embeddings of words, word pairs and character n-grams (fastText): quick and strong."""

    def __init__(self, spec: InputSpec, out: int, *, embedding_dim: int = 64, dropout: float = 0.2, head_width: int = 64):
        _check(spec, "bag")
        super().__init__(spec, out, embedding_dim, embedding_dim, dropout, head_width)

    def forward(self, numeric, categorical, images, tokens):
        return self.finish(_mean(self.embedding(tokens), tokens > 0), numeric, categorical)


class RNN(_TextModel):
    """Bidirectional GRU or LSTM; mean and max pooling over time."""

    def __init__(self, spec: InputSpec, out: int, *, embedding_dim: int = 64, hidden: int = 64, cell: str = "gru",
                 dropout: float = 0.2, head_width: int = 64):
        _check(spec, "rnn")
        if cell not in ("gru", "lstm"):
            raise ValueError(f"cell {cell!r}: expected gru or lstm")
        super().__init__(spec, out, embedding_dim, 4 * hidden, dropout, head_width)
        self.rnn = (nn.GRU if cell == "gru" else nn.LSTM)(embedding_dim, hidden, batch_first=True, bidirectional=True)

    def forward(self, numeric, categorical, images, tokens):
        tokens = tokens[:, : self.words]
        mask = tokens > 0
        states, _ = self.rnn(self.embedding(tokens))  # (batch, length, 2 * hidden)
        peak = states.masked_fill(~mask.unsqueeze(-1), -1e4).max(1).values
        return self.finish(torch.cat([_mean(states, mask), peak], dim=1), numeric, categorical)


class TextTransformer(_TextModel):
    """A small transformer encoder with learned positions; mean pooling."""

    def __init__(self, spec: InputSpec, out: int, *, embedding_dim: int = 64, layers: int = 1, heads: int = 4,
                 dropout: float = 0.2, head_width: int = 64, max_length: int = 512):
        _check(spec, "transformer")
        if embedding_dim % heads:
            raise ValueError(f"embedding_dim {embedding_dim} is not divisible by heads {heads}")
        super().__init__(spec, out, embedding_dim, embedding_dim, dropout, head_width)
        self.position = nn.Embedding(max_length, embedding_dim)
        layer = nn.TransformerEncoderLayer(embedding_dim, heads, 2 * embedding_dim, dropout=dropout, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, numeric, categorical, images, tokens):
        tokens = tokens[:, : self.words]
        mask = tokens > 0
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.encoder(self.embedding(tokens) + self.position(positions), src_key_padding_mask=~mask)
        return self.finish(_mean(x, mask), numeric, categorical)
