"""A CNN for pixel grids (Digit Recognizer's 28x28, or k x k x 3), with light augmentation.

Blocks of [conv, batch norm?, relu] x convs_per_block then pooling, doubling channels per block; a
head over the pooled features joined with the row's other columns. Augmentation (small
random shifts and rotations) runs on the device inside forward, during training only.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from automl.models.tabular import Embeddings, InputSpec, _activation


class CNN(nn.Module):
    def __init__(self, spec: InputSpec, out: int, *, conv_blocks: int = 2, convs_per_block: int = 1, channels: int = 32,
                 kernel_size: int = 3, batch_norm: bool = True, pooling: str = "max", dropout: float = 0.2,
                 head_width: int = 128, augment: bool = True, activation: str = "relu"):
        super().__init__()
        if not spec.image_shape:
            raise ValueError("the cnn family needs pixel columns (an image_shape); this data has none")
        if pooling not in ("max", "avg"):
            raise ValueError(f"pooling {pooling!r}: expected max or avg")
        in_channels, height, _ = spec.image_shape
        if height // 2**conv_blocks < 1:
            raise ValueError(f"{conv_blocks} conv blocks halve a {height}-pixel image to nothing")
        layers, c = [], in_channels
        for block in range(conv_blocks):
            width = channels * 2**block
            for _ in range(convs_per_block):
                layers += [nn.Conv2d(c, width, kernel_size, padding=kernel_size // 2, bias=not batch_norm),
                           nn.BatchNorm2d(width) if batch_norm else nn.Identity(), _activation(activation)]
                c = width
            layers += [nn.MaxPool2d(2) if pooling == "max" else nn.AvgPool2d(2), nn.Dropout2d(dropout / 2)]
        # A small grid, not one global average: where a stroke is matters for a shallow net.
        grid = min(4, height // 2**conv_blocks)
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(grid), nn.Flatten())
        self.others = Embeddings(InputSpec(spec.n_numeric, spec.cardinalities))
        self.head = nn.Sequential(nn.Linear(c * grid * grid + self.others.width, head_width), _activation(activation),
                                  nn.Dropout(dropout), nn.Linear(head_width, out))
        self.augment = augment

    def forward(self, numeric, categorical, images, tokens):
        if self.training and self.augment:
            images = shift_and_rotate(images)
        return self.head(torch.cat([self.features(images), self.others(numeric, categorical)], dim=1))


def shift_and_rotate(images: torch.Tensor, max_shift: float = 0.1, max_degrees: float = 10.0) -> torch.Tensor:
    """Random shifts (up to 10% of the side) and rotations (up to 10 degrees), one per image."""
    n = images.shape[0]
    angle = (torch.rand(n, device=images.device) * 2 - 1) * math.radians(max_degrees)
    shift = (torch.rand(n, 2, device=images.device) * 2 - 1) * max_shift * 2  # grid units span [-1, 1]
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, padding_mode="zeros", align_corners=False)
