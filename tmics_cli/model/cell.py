"""Mixed layers (Eq. 5) and cells: L layers in sequence, searched or derived from a genotype."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .ops import OPERATION_NAMES, build_operation


class MixedLayer(nn.Module):
    """x_{l+1} = sum_i w_i f_i(x_l) over all eight operations, w = softmax(alpha_l) given by the caller."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.ops = nn.ModuleList(build_operation(name, width) for name in OPERATION_NAMES)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:  # (B, C, H, W), (8,)
        return sum(w * op(x) for w, op in zip(weights, self.ops, strict=True))


class Cell(nn.Module):
    """L layers in sequence. With `layers` given, each is that one operation (a derived cell);
    with `layers=None` and `num_layers`, each is a MixedLayer weighted by the shared alpha (search)."""

    def __init__(self, width: int, layers: Sequence[str] | None = None, num_layers: int = 4) -> None:
        super().__init__()
        self.searchable = layers is None
        if layers is None:
            self.layers = nn.ModuleList(MixedLayer(width) for _ in range(num_layers))
        else:
            self.layers = nn.ModuleList(build_operation(name, width) for name in layers)

    def forward(self, x: torch.Tensor, layer_weights: torch.Tensor | None = None) -> torch.Tensor:
        # x: (B, C, H, W); layer_weights: (L, 8) = softmax(alpha), required for a searchable cell
        if self.searchable:
            if layer_weights is None:
                raise ValueError("a searchable cell needs softmax(alpha) as layer_weights")
            for layer, w in zip(self.layers, layer_weights, strict=True):
                x = layer(x, w)
            return x
        for layer in self.layers:
            x = layer(x)
        return x
