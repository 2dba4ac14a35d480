"""The eight operations of the TMICS search space and a registry of them by name.

Every operation maps features (B, C, H, W) to features of the same shape and is built from three
convolution layers, each followed by batch normalisation and an activation (the paper, Sec. III-B4).
Where the authors' code adds an identity path, so do we. The two attention operations spend their third
layer on the attention gate itself: a 7x7 conv over the channel max and mean for the spatial mask, an
ECA-style 1-D conv over pooled channels for the channel gate.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

OPERATION_NAMES: tuple[str, ...] = (
    "residual_3x3",
    "residual_5x5",
    "dense_3x3",
    "dense_5x5",
    "spatial_attention",
    "channel_attention",
    "dilated_3x3",
    "dilated_5x5",
)


def conv_bn(c_in: int, c_out: int, kernel: int, dilation: int = 1, act: bool = True) -> nn.Sequential:
    """kxk conv (same padding) -> BatchNorm -> ReLU (the ReLU left out when act=False)."""
    pad = dilation * (kernel - 1) // 2
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel, padding=pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    if act:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def channel_max(y: torch.Tensor) -> torch.Tensor:
    """y.amax(1, keepdim=True): (B, C, H, W) -> (B, 1, H, W). On a channels_last tensor (inference on the
    CPU) as maxima of channel halves, the same values: amax over the innermost channels was 2x slower."""
    if not y.is_contiguous(memory_format=torch.channels_last) or y.ndim != 4:
        return y.amax(1, keepdim=True)
    while y.shape[1] > 1:
        half = y.shape[1] // 2
        top = torch.maximum(y[:, :half], y[:, half : 2 * half])
        y = top if y.shape[1] % 2 == 0 else torch.cat([top, y[:, 2 * half :]], 1)
    return y


def expand_channels(gate: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-pixel gate (B, 1, H, W) to multiply `like` (B, C, H, W) by: as it is, or, for a channels_last
    `like`, expanded to its shape and layout (the product then ran 4x faster than broadcasting the gate
    over the innermost channels; the same values)."""
    if not like.is_contiguous(memory_format=torch.channels_last) or like.shape[1] == 1:
        return gate
    return gate.expand_as(like).contiguous(memory_format=torch.channels_last)


class ResidualBlock(nn.Module):
    """x + [conv kxk -> conv 3x3 dilation 2 -> conv 1x1](x), as in the authors' residual op."""

    def __init__(self, width: int, kernel: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_bn(width, width, kernel),
            conv_bn(width, width, 3, dilation=2),
            conv_bn(width, width, 1, act=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        return x + self.body(x)


class DenseBlock(nn.Module):
    """Three densely connected kxk convs taking C, 2C and 3C channels; output x + y3."""

    def __init__(self, width: int, kernel: int) -> None:
        super().__init__()
        self.conv1 = conv_bn(width, width, kernel)
        self.conv2 = conv_bn(2 * width, width, kernel)
        self.conv3 = conv_bn(3 * width, width, kernel, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        y1 = self.conv1(x)
        y2 = self.conv2(torch.cat([x, y1], 1))
        y3 = self.conv3(torch.cat([x, y1, y2], 1))
        return x + y3


class SpatialAttention(nn.Module):
    """x + trunk(x) * sigmoid(conv7x7([max_c, mean_c](trunk(x)))): a per-pixel gate."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.trunk = nn.Sequential(conv_bn(width, width, 3), conv_bn(width, width, 3, act=False))
        self.gate = nn.Sequential(nn.Conv2d(2, 1, 7, padding=3, bias=False), nn.BatchNorm2d(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        y = self.trunk(x)
        pooled = torch.cat([channel_max(y), y.mean(1, keepdim=True)], 1)  # (B, 2, H, W)
        return x + y * expand_channels(torch.sigmoid(self.gate(pooled)), y)


class ChannelAttention(nn.Module):
    """x + trunk(x) * sigmoid(conv1d(avgpool(trunk(x)))): ECA-style per-channel gate."""

    def __init__(self, width: int, gate_kernel: int = 3) -> None:
        super().__init__()
        self.trunk = nn.Sequential(conv_bn(width, width, 3), conv_bn(width, width, 3, act=False))
        self.gate = nn.Conv1d(1, 1, gate_kernel, padding=gate_kernel // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        y = self.trunk(x)
        pooled = y.mean((2, 3)).unsqueeze(1)  # (B, 1, C)
        weights = torch.sigmoid(self.gate(pooled)).squeeze(1)[:, :, None, None]  # (B, C, 1, 1)
        return x + y * weights


class DilatedBlock(nn.Module):
    """x + [conv kxk dil 2 -> conv kxk dil 2 -> conv 1x1](x): a wide receptive field at kxk cost."""

    def __init__(self, width: int, kernel: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_bn(width, width, kernel, dilation=2),
            conv_bn(width, width, kernel, dilation=2),
            conv_bn(width, width, 1, act=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        return x + self.body(x)


OPERATIONS: dict[str, Callable[[int], nn.Module]] = {
    "residual_3x3": lambda c: ResidualBlock(c, 3),
    "residual_5x5": lambda c: ResidualBlock(c, 5),
    "dense_3x3": lambda c: DenseBlock(c, 3),
    "dense_5x5": lambda c: DenseBlock(c, 5),
    "spatial_attention": SpatialAttention,
    "channel_attention": ChannelAttention,
    "dilated_3x3": lambda c: DilatedBlock(c, 3),
    "dilated_5x5": lambda c: DilatedBlock(c, 5),
}
assert tuple(OPERATIONS) == OPERATION_NAMES


def build_operation(name: str, width: int) -> nn.Module:
    """The operation registered under `name`, at `width` channels."""
    if name not in OPERATIONS:
        raise ValueError(f"unknown operation {name!r}; known: {', '.join(OPERATION_NAMES)}")
    return OPERATIONS[name](width)
