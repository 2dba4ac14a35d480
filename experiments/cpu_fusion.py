"""Where else the CPU network's time could go (issue 27: tmics-light-full as the CPU default needs ~10%
more speed): the light-full network rewritten further, variant against variant in one process, and one
convolution in int8 against bf16.

Network variants (bf16 autocast, channels_last, what `tmics derain` runs on an AVX-512 BF16 CPU; DIS
medium flow; synthetic 5-frame windows at --size; the model step timed per window, variants interleaved
per round, median over rounds after the first):

    shipped        Restorer(optimize=True) as `tmics derain` runs it
    fused relu     every conv followed by a ReLU as one oneDNN conv with a ReLU post-op
                   (torch.ops.mkldnn._convolution_pointwise, bf16 weights prepared once)
    all pointwise  every conv of the cells so, with or without a ReLU
    no means       the attention gates' channel means left out: wrong pixels, the bound of what any faster
                   mean could save

Each variant's output is compared with "shipped" (max level difference, uint8). The micro part times one
16 -> 16 3x3 conv at the frame size: bf16 (oneDNN), int8 (torch.ao quantized, x86 engine, per-channel
weights), and the quantize / dequantize an int8 op between float ops needs.

    python experiments/cpu_fusion.py --json experiments/results/cpu_fusion.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from derain_speed import machine, parse_size, synthetic_windows  # noqa: E402

from tmics_cli.inference import Restorer, frames_to_uint8, windows_to_tensor  # noqa: E402
from tmics_cli.model import ops  # noqa: E402
from tmics_cli.model.fuse import FoldedBatchNorm  # noqa: E402
from tmics_cli.weights import load_model  # noqa: E402


class PointwiseConv(nn.Module):
    """A conv (and its ReLU) as one oneDNN call on bf16 channels_last input; else the conv as it was."""

    def __init__(self, conv: nn.Conv2d, relu: bool) -> None:
        super().__init__()
        self.conv, self.relu = conv, relu
        self.weight = conv.weight.detach().to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
        self.bias = None if conv.bias is None else conv.bias.detach().to(torch.bfloat16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv
        if x.dtype == torch.bfloat16 and x.is_contiguous(memory_format=torch.channels_last):
            return torch.ops.mkldnn._convolution_pointwise(
                x, self.weight, self.bias, list(c.padding), list(c.stride), list(c.dilation), c.groups,
                "relu" if self.relu else "none", [], "",
            )  # fmt: skip
        y = c(x)
        return F.relu(y) if self.relu else y


def pointwise(model: nn.Module, relu_only: bool) -> int:
    """Replace conv (+ folded BatchNorm) (+ ReLU) runs inside Sequentials by PointwiseConv; how many."""
    count = 0
    for module in list(model.modules()):
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module._modules.values())
        if len(children) < 2 or not isinstance(children[0], nn.Conv2d):
            continue
        if not isinstance(children[1], FoldedBatchNorm):
            continue
        relu = len(children) == 3 and isinstance(children[2], nn.ReLU)
        if relu_only and not relu:
            continue
        module._modules.clear()
        module.add_module("0", PointwiseConv(children[0], relu))
        count += 1
    return count


def _no_mean_spatial(self: ops.SpatialAttention, x: torch.Tensor) -> torch.Tensor:
    y = self.trunk(x)
    top = ops.channel_max(y)
    return x + y * ops.expand_channels(torch.sigmoid(self.gate(torch.cat([top, top], 1))), y)


def _no_mean_channel(self: ops.ChannelAttention, x: torch.Tensor) -> torch.Tensor:
    y = self.trunk(x)
    pooled = y[:, :, :1, :1].flatten(1).unsqueeze(1).float()  # not a mean: a bound on the mean's cost
    return x + y * torch.sigmoid(self.gate(pooled)).squeeze(1)[:, :, None, None].to(y.dtype)


def network_part(weights: str, width: int, height: int, rounds: int) -> dict[str, Any]:
    windows = windows_to_tensor(synthetic_windows(width, height, 3))
    model = load_model(weights)
    restorers = {name: Restorer(model, torch.device("cpu"), torch.bfloat16) for name in VARIANTS}
    replaced = {
        "fused relu": pointwise(restorers["fused relu"].model, True),
        "all pointwise": pointwise(restorers["all pointwise"].model, False),
    }
    shipped_forward = (ops.SpatialAttention.forward, ops.ChannelAttention.forward)
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    outputs: dict[str, np.ndarray] = {}
    for round_ in range(rounds):
        order = VARIANTS if round_ % 2 == 0 else VARIANTS[::-1]
        for name in order:
            no_means = name == "no means"
            ops.SpatialAttention.forward = _no_mean_spatial if no_means else shipped_forward[0]
            ops.ChannelAttention.forward = _no_mean_channel if no_means else shipped_forward[1]
            for i in range(len(windows)):
                start = time.perf_counter()
                out = restorers[name].restore(windows[i : i + 1])
                if round_ > 0:
                    times[name].append(time.perf_counter() - start)
                if round_ == 0 and i == 0:
                    outputs[name] = frames_to_uint8(out)
    ops.SpatialAttention.forward, ops.ChannelAttention.forward = shipped_forward
    rows = {}
    for name in VARIANTS:
        diff = np.abs(outputs[name].astype(int) - outputs["shipped"].astype(int))
        rows[name] = {
            "ms_per_window": round(1000 * statistics.median(times[name]), 1),
            "max_level_diff": int(diff.max()),
            **({"convs_replaced": replaced[name]} if name in replaced else {}),
        }
    return rows


VARIANTS = ("shipped", "fused relu", "all pointwise", "no means")


def _ms(fn: Callable[[], Any], repeats: int = 20) -> float:
    for _ in range(3):
        fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return round(1000 * (time.perf_counter() - start) / repeats, 2)


def micro_part(width: int, height: int) -> dict[str, Any]:
    import torch.ao.nn.quantized as nnq

    torch.backends.quantized.engine = "x86"
    channels = 16
    torch.manual_seed(0)
    x = torch.rand(1, channels, height, width)
    w = torch.randn(channels, channels, 3, 3) * 0.1
    xb = x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    wb = w.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    qx = torch.quantize_per_tensor(x, 1 / 255, 0, torch.quint8).contiguous(memory_format=torch.channels_last)
    conv = nnq.Conv2d(channels, channels, 3, padding=1)
    scales, zeros = torch.full((channels,), 0.01), torch.zeros(channels, dtype=torch.long)
    conv.set_weight_bias(torch.quantize_per_channel(w, scales, zeros, 0, torch.qint8), torch.zeros(channels))
    conv.scale, conv.zero_point = 0.05, 128
    return {
        "conv_bf16_ms": _ms(lambda: F.conv2d(xb, wb, padding=1)),
        "conv_int8_ms": _ms(lambda: conv(qx)),
        "quantize_ms": _ms(lambda: torch.quantize_per_tensor(xb.float(), 0.05, 128, torch.quint8)),
        "dequantize_ms": _ms(lambda: qx.dequantize()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", default="light-full")
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    width, height = parse_size(args.size)
    network = network_part(args.weights, width, height, args.rounds)
    for name, row in network.items():
        print(f"{name:14s} {row}")
    micro = micro_part(width, height)
    print("one 16->16 3x3 conv:", micro)
    if args.json is not None:
        result = {
            "when": datetime.date.today().isoformat(),
            "machine": machine(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "weights": args.weights,
            "size": args.size,
            "network": network,
            "one_conv": micro,
        }
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
