"""Batches as slices of tensors that already live on the training device.

A per-row Dataset with a DataLoader costs about 3x here: every row goes through Python
and a collate step. Instead the whole fold is moved to the device once, permuted once
per epoch (one gather), and each batch is a contiguous view of the permuted tensors.
"""

from __future__ import annotations

import math

import torch


class TensorBatches:
    """Iterable of tuples of slices; reshuffled at the start of every epoch.

    Each item holds `group` consecutive mini-batches (group * batch_size rows) that the
    module's training_step splits into views and steps through: Lightning's per-item
    hooks then cost 1/group as much per optimizer step.
    """

    def __init__(self, *tensors: torch.Tensor, batch_size: int, group: int = 8, shuffle: bool = True, seed: int = 0):
        self.tensors = tensors
        self.batch_size = batch_size * group
        self.steps = math.ceil(tensors[0].shape[0] / batch_size)  # optimizer steps per epoch
        self.shuffle = shuffle
        self.n = tensors[0].shape[0]
        self.generator = torch.Generator(device="cpu").manual_seed(seed)

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def __iter__(self):
        tensors = self.tensors
        if self.shuffle:
            order = torch.randperm(self.n, generator=self.generator).to(tensors[0].device)
            tensors = tuple(t[order] for t in tensors)
        for start in range(0, self.n, self.batch_size):
            yield tuple(t[start:start + self.batch_size] for t in tensors)


class OneBatch:
    """A whole validation set as a single batch (no per-batch loop to pay for)."""

    def __init__(self, *tensors: torch.Tensor):
        self.tensors = tensors

    def __len__(self) -> int:
        return 1

    def __iter__(self):
        yield self.tensors
