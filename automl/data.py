"""Batches gathered from tensors that already live on the training device.

A per-row Dataset with a DataLoader costs about 3x here: every row goes through Python
and a collate step. Instead the whole fold is moved to the device once, its row order
shuffled once per pass, and each item is one gather of the next rows in that order (not
a permuted copy of the whole fold: at a million rows that copy held 200 MB per process).
"""

from __future__ import annotations

import math

import torch


class TensorBatches:
    """Iterable of tuples of slices; reshuffled whenever every row has been seen.

    Each item holds `group` consecutive mini-batches (group * batch_size rows) that the
    module's training_step splits into views and steps through: Lightning's per-item
    hooks then cost 1/group as much per optimizer step. One iteration (an "epoch" to
    Lightning) is at most `max_steps` optimizer steps: on a large table it covers part of
    the rows, the next one carries on where it stopped.
    """

    def __init__(self, *tensors: torch.Tensor, batch_size: int, group: int = 8, shuffle: bool = True, seed: int = 0,
                 max_steps: int | None = None):
        self.tensors = tensors
        self.n = tensors[0].shape[0]
        self.batch_size = batch_size * group
        epoch_rows = self.n if max_steps is None else min(self.n, max_steps * batch_size)
        self.epoch_rows = epoch_rows
        self.steps = math.ceil(epoch_rows / batch_size)  # optimizer steps per epoch
        self.shuffle = shuffle
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        self.order, self.position = None, self.n

    def __len__(self) -> int:
        return math.ceil(self.epoch_rows / self.batch_size)

    def __iter__(self):
        served = 0
        while served < self.epoch_rows:
            if self.position >= self.n - (self.n > 1):  # a last single row waits for the next pass (batch norm needs 2)
                self.position = 0
                self.order = (torch.randperm(self.n, generator=self.generator).to(self.tensors[0].device)
                              if self.shuffle else None)
            size = min(self.batch_size, self.epoch_rows - served, self.n - self.position)
            start, self.position, served = self.position, self.position + size, served + size
            # advanced before yielding: Lightning stops at len() without resuming the generator,
            # and the next epoch must not serve this group again
            if self.order is None:
                yield tuple(t[start:start + size] for t in self.tensors)
            else:
                rows = self.order[start:start + size]
                yield tuple(t.index_select(0, rows) for t in self.tensors)


class OneBatch:
    """A whole validation set as a single batch (no per-batch loop to pay for)."""

    def __init__(self, *tensors: torch.Tensor):
        self.tensors = tensors

    def __len__(self) -> int:
        return 1

    def __iter__(self):
        yield self.tensors
