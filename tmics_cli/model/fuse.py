"""Inference-only rewrites of a loaded network, each exact up to float rounding:

    fold_batchnorm   BatchNorm folded into the convolution before it
    fuse_heads       a RestorationNetwork's head(pixel_unshuffle(cat[features, centre])) as two strided convs
    for_inference    both (what the Restorer runs)

In eval mode a BatchNorm2d is a fixed per-channel affine map, y = (x - mean) / sqrt(var + eps) * gamma + beta,
so a conv followed by one is a single conv with rescaled weights and a new bias:

    W' = W * s[:, None, None, None],   b' = (b - mean) * s + beta,   s = gamma / sqrt(var + eps)

Every BatchNorm2d of TMICS sits directly after a Conv2d inside an nn.Sequential (ops.conv_bn, and the spatial
attention's gate), so `fold_batchnorm` folds exactly those pairs: it walks every Sequential, and for each
Conv2d immediately followed by a BatchNorm2d of as many channels rewrites the conv and puts a FoldedBatchNorm
(an identity) in the BatchNorm's place. The output is that of the unfolded network up to float rounding.

A RestorationNetwork's head reads pixel_unshuffle(cat([features, centre])): with s = 2, a 76-channel
tensor built by two full-resolution copies before a 3x3 conv. The same map is a (3s)x(3s) conv of stride s
on features and centre separately, summed (StridedHead), with no 76-channel copy at full resolution. The
whole rewrite against the network as loaded: benchmarks/cpu_speedups.py ("rewritten" / "as loaded").

A rewritten network is for inference only: its batch statistics are gone and its heads are copies, so it
cannot be trained as the original would be (`.train()` raises) and its state_dict is no longer a weights
file's (`save_model` refuses it). The Restorer rewrites its own copy of the model it is given.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .network import RestorationNetwork


class _InferenceOnly(nn.Module):
    """A module that exists only in a network rewritten for inference: `.train()` raises."""

    def train(self, mode: bool = True) -> _InferenceOnly:
        if mode:
            raise RuntimeError(
                "this network was rewritten for inference (BatchNorm folded into its convolutions, heads "
                "fused) and cannot be trained; load the weights file again to train"
            )
        return super().train(False)


class FoldedBatchNorm(_InferenceOnly):
    """Where a BatchNorm2d was before it was folded into the conv before it: the identity, eval mode only."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features
        self.training = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def extra_repr(self) -> str:
        return f"{self.num_features}, folded"


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold eval-mode `bn` into `conv` (in place): conv(x) afterwards equals bn(conv(x)) before."""
    if bn.training:
        raise ValueError("BatchNorm folding is for inference: put the model in eval mode first")
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("a BatchNorm2d without running statistics cannot be folded")
    if conv.out_channels != bn.num_features:
        raise ValueError(f"conv has {conv.out_channels} output channels, BatchNorm {bn.num_features}")
    with torch.no_grad():
        w = conv.weight  # (C_out, C_in / groups, kh, kw)
        scale = torch.rsqrt(bn.running_var.double() + bn.eps)  # (C_out,)
        if bn.weight is not None:
            scale = scale * bn.weight.double()
        bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
        bias = (bias - bn.running_mean.double()) * scale
        if bn.bias is not None:
            bias = bias + bn.bias.double()
        conv.weight.copy_((w.double() * scale[:, None, None, None]).to(w.dtype))
        if conv.bias is None:
            conv.bias = nn.Parameter(bias.to(w.dtype), requires_grad=conv.weight.requires_grad)
        else:
            conv.bias.copy_(bias.to(w.dtype))


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every BatchNorm2d that directly follows a Conv2d in an nn.Sequential into that conv, in place;
    returns `model` (for inference: it must be in eval mode, ValueError otherwise). A BatchNorm2d anywhere
    else is left as it is; `unfolded_batchnorms(model)` lists what remains."""
    if model.training:
        raise ValueError("BatchNorm folding is for inference: call model.eval() first")
    for module in list(model.modules()):
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module.named_children())
        for (_, conv), (name, bn) in zip(children, children[1:], strict=False):
            if (
                isinstance(conv, nn.Conv2d)
                and type(bn) is nn.BatchNorm2d
                and bn.track_running_stats
                and conv.out_channels == bn.num_features
            ):
                fold_conv_bn(conv, bn)
                setattr(module, name, FoldedBatchNorm(bn.num_features))
    return model


def unfolded_batchnorms(model: nn.Module) -> list[str]:
    """The names of the BatchNorm layers of `model` that are still there (none after folding TMICS)."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def is_rewritten(model: nn.Module) -> bool:
    """Whether `model` was rewritten for inference (a BatchNorm folded or a head fused): inference only."""
    return any(isinstance(m, _InferenceOnly) for m in model.modules())


class StridedHead(_InferenceOnly):
    """head(pixel_unshuffle(cat([features, centre]), s)) computed as conv_f(features) + conv_c(centre), two
    convs of kernel k*s and stride s on the full-resolution inputs: no full-resolution concatenation and no
    pixel unshuffle (a slow copy), the same multiply-adds. For a kxk head with padding p:

        W'[o, c, s*ky + a, s*kx + b] = W[o, c*s*s + a*s + b, ky, kx],   padding p*s
    """

    def __init__(self, head: nn.Conv2d, scale: int, split: int) -> None:
        super().__init__()
        self.training = False
        if head.stride != (1, 1) or head.dilation != (1, 1) or head.groups != 1:
            raise ValueError("only a plain stride-1 head conv can be fused")
        kh, kw = head.kernel_size
        ph, pw = head.padding if isinstance(head.padding, tuple) else (head.padding, head.padding)
        s = scale
        out, cin = head.out_channels, head.in_channels // (s * s)
        with torch.no_grad():
            w = head.weight.reshape(out, cin, s, s, kh, kw)  # (O, C, a, b, ky, kx)
            w = w.permute(0, 1, 4, 2, 5, 3).reshape(out, cin, kh * s, kw * s)  # (O, C, ky*s+a, kx*s+b)
        self.scale, self.padding = s, (ph * s, pw * s)
        self.features_weight = nn.Parameter(w[:, :split].clone(), requires_grad=False)
        self.centre_weight = nn.Parameter(w[:, split:].clone(), requires_grad=False)
        bias = head.bias.detach().clone() if head.bias is not None else None
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)

    def forward(self, features: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
        # features: (B, C, H, W), centre: (B, 3, H, W), H and W multiples of s -> (B, C_out, H/s, W/s)
        s, p = self.scale, self.padding
        h = F.conv2d(features, self.features_weight, self.bias, stride=s, padding=p)
        return h + F.conv2d(centre, self.centre_weight, None, stride=s, padding=p)


def fuse_heads(model: nn.Module) -> nn.Module:
    """Give every RestorationNetwork of `model` a StridedHead (in place; inference only: the head's
    weights are copied, so training the original head would no longer change the output); returns `model`."""
    if model.training:
        raise ValueError("head fusion is for inference: call model.eval() first")
    for module in model.modules():
        if isinstance(module, RestorationNetwork) and module.fused_head is None:
            split = module.head.in_channels // (module.scale**2) - 3  # the features' channels
            module.fused_head = StridedHead(module.head, module.scale, split)
    return model


def for_inference(model: nn.Module) -> nn.Module:
    """fold_batchnorm and fuse_heads, in place: the network the Restorer runs; returns `model`."""
    return fuse_heads(fold_batchnorm(model))
