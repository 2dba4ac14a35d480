"""The alignment module F: optical-flow alignment (OFM), temporal grouping (TGM) and their beta mixture.

Both branches map 5 frames (B, 5, 3, H, W) in [0, 1] to features (B, C, H, W), so that during search
F(beta) = beta_ofm * OFM + beta_tgm * TGM (the paper's macro level) is a plain weighted sum.

OFM needs optical flow from the centre frame to each neighbour. The paper uses a pretrained RAFT, whose
weights cannot be had here, so the flow estimator is pluggable (FLOW_ESTIMATORS):
  - "dis":     OpenCV's DIS optical flow, classical, no weights, computed on the CPU without gradient;
  - "pyramid": PyramidFlowNet, a compact coarse-to-fine network of our own, differentiable and trainable;
  - "device":  PatchInverseSearchFlow (device_flow.py), DIS "medium" in PyTorch ops: no weights, no
               gradient, batched over all pairs, on the model's device (CUDA, MPS or the CPU).
Callers that already have flows (e.g. training with flows precomputed on clean clips) pass them in.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .device_flow import PatchInverseSearchFlow

NUM_FRAMES = 5
CENTRE = NUM_FRAMES // 2


def backward_warp(image: torch.Tensor, flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample `image` at x + flow(x): aligns a neighbour onto the reference the flow was computed from.

    image: (B, C, H, W); flow: (B, 2, H, W) in pixels, channel 0 = dx, 1 = dy.
    Returns the warped image (B, C, H, W) and a validity mask (B, 1, H, W), 1 where the sample point lies
    inside the image (outside, the border is repeated and the mask is 0).
    """
    b, _, h, w = image.shape
    ys, xs = torch.meshgrid(
        torch.arange(h, device=flow.device, dtype=flow.dtype),
        torch.arange(w, device=flow.device, dtype=flow.dtype),
        indexing="ij",
    )
    x = xs + flow[:, 0]  # (B, H, W)
    y = ys + flow[:, 1]
    grid = torch.stack([2 * x / max(w - 1, 1) - 1, 2 * y / max(h - 1, 1) - 1], dim=-1)  # (B, H, W, 2)
    warped = F.grid_sample(
        image, grid.to(image.dtype), mode="bilinear", padding_mode="border", align_corners=True
    )
    inside = (x >= -1e-3) & (x <= w - 1 + 1e-3) & (y >= -1e-3) & (y <= h - 1 + 1e-3)
    return warped, inside.unsqueeze(1).to(image.dtype)


def _to_gray_uint8(frames: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) RGB in [0, 1] -> (N, H, W) uint8 luma (BT.601 weights), in float32 even under autocast
    (which would run the einsum in bf16 or fp16, moving luma by a level here and there and the flows with
    it: up to 32 levels apart in a bf16 output)."""
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float32, device=frames.device)
    with torch.autocast(frames.device.type, enabled=False):
        gray = torch.einsum("nchw,c->nhw", frames.float(), weights)
    return (gray.clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()


MIN_THREADED_FLOW_PIXELS = 640 * 480


def flow_threads(tasks: int, pixels: int) -> int:
    """Threads for `tasks` independent DIS flows of `pixels` each. DIS already spreads one flow over a
    few cores (measured on 2 cores: 39 -> 26 ms per 640x480 flow, and no gain from more threads), so
    flows run side by side only on machines with more cores, on frames large enough to pay for it, and
    never inside a data-loader worker (the workers are the parallelism there)."""
    cores = os.cpu_count() or 1
    if cores < 4 or pixels < MIN_THREADED_FLOW_PIXELS or torch.utils.data.get_worker_info() is not None:
        return 1
    return min(tasks, cores // 2)


class DISFlow(nn.Module):
    """OpenCV's DIS optical flow (Kroeger et al., ECCV 2016): classical, no weights, no gradient.

    Flow from the reference to each neighbour, computed on raw luma: on rainy frames this was closer to
    the true flow than flow on blurred frames (see the training issue's measurements).
    """

    PRESETS = {"ultrafast": 0, "fast": 1, "medium": 2}

    def __init__(self, preset: str = "medium") -> None:
        super().__init__()
        if preset not in self.PRESETS:
            raise ValueError(f"DIS preset must be one of {tuple(self.PRESETS)}, got {preset!r}")
        self.preset = preset

    @torch.no_grad()
    def forward(self, reference: torch.Tensor, neighbours: torch.Tensor) -> torch.Tensor:
        # reference: (B, 3, H, W), neighbours: (B, N, 3, H, W), both in [0, 1] -> flows (B, N, 2, H, W)
        import cv2

        b, n, _, h, w = neighbours.shape
        ref = _to_gray_uint8(reference)
        nbr = _to_gray_uint8(neighbours.reshape(b * n, 3, h, w)).reshape(b, n, h, w)
        flows = np.empty((b, n, 2, h, w), dtype=np.float32)
        local = threading.local()  # a DIS object is not shared between threads

        def one(pair: tuple[int, int]) -> None:
            i, j = pair
            if not hasattr(local, "dis"):
                local.dis = cv2.DISOpticalFlow_create(self.PRESETS[self.preset])
            flows[i, j] = local.dis.calc(ref[i], nbr[i, j], None).transpose(2, 0, 1)

        pairs = [(i, j) for i in range(b) for j in range(n)]
        threads = flow_threads(len(pairs), h * w)
        if threads > 1:  # OpenCV releases the GIL: the flows of a batch run side by side
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(one, pairs))
        else:
            for pair in pairs:
                one(pair)
        return torch.from_numpy(flows).to(device=reference.device, dtype=reference.dtype)


class PyramidFlowNet(nn.Module):
    """A compact coarse-to-fine flow network (SPyNet-like): at each pyramid level, warp the neighbour
    with the upsampled coarser flow and let a small conv net predict the residual flow.

    Levels run from 1/2**levels to 1/2 of the input resolution; the 1/2-resolution flow is upsampled to
    full size (full-resolution refinement costs 4x more and matters little for alignment of rain video).
    Differentiable end to end; starts as zero flow (last conv of each level zero-initialised).
    """

    def __init__(self, levels: int = 5, width: int = 32) -> None:
        super().__init__()
        self.levels = levels
        self.estimators = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(8, width, 3, padding=1),
                nn.LeakyReLU(0.1, inplace=True),
                nn.Conv2d(width, width, 3, padding=1),
                nn.LeakyReLU(0.1, inplace=True),
                nn.Conv2d(width, width // 2, 3, padding=1),
                nn.LeakyReLU(0.1, inplace=True),
                nn.Conv2d(width // 2, 2, 3, padding=1),
            )
            for _ in range(levels)
        )
        for est in self.estimators:
            nn.init.zeros_(est[-1].weight)
            nn.init.zeros_(est[-1].bias)

    def forward(self, reference: torch.Tensor, neighbours: torch.Tensor) -> torch.Tensor:
        # reference: (B, 3, H, W), neighbours: (B, N, 3, H, W), both in [0, 1] -> flows (B, N, 2, H, W)
        b, n, c, h, w = neighbours.shape
        ref = reference.unsqueeze(1).expand(b, n, c, h, w).reshape(b * n, c, h, w) - 0.5
        nbr = neighbours.reshape(b * n, c, h, w) - 0.5
        m = 2**self.levels
        ph, pw = (-h) % m, (-w) % m
        ref = F.pad(ref, (0, pw, 0, ph), mode="replicate")
        nbr = F.pad(nbr, (0, pw, 0, ph), mode="replicate")
        refs, nbrs = [], []
        for _ in range(self.levels):
            ref, nbr = F.avg_pool2d(ref, 2), F.avg_pool2d(nbr, 2)
            refs.append(ref)
            nbrs.append(nbr)
        flow = torch.zeros_like(refs[-1][:, :2])
        for level in range(self.levels - 1, -1, -1):  # coarsest first
            r, q = refs[level], nbrs[level]
            if flow.shape[-2:] != r.shape[-2:]:
                flow = 2 * F.interpolate(flow, size=r.shape[-2:], mode="bilinear", align_corners=False)
            warped, _ = backward_warp(q, flow)
            flow = flow + self.estimators[level](torch.cat([r, warped, flow], 1))
        flow = 2 * F.interpolate(flow, scale_factor=2, mode="bilinear", align_corners=False)
        return flow[:, :, :h, :w].reshape(b, n, 2, h, w)


FLOW_ESTIMATORS: dict[str, Callable[[], nn.Module]] = {
    "dis": DISFlow,
    "pyramid": PyramidFlowNet,
    "device": PatchInverseSearchFlow,
}


# The flow of a model at inference (Restorer / Derainer `flow`, --flow): "auto" or a flow without weights.
FLOW_CHOICES = ("auto", "dis", "device")
GPU_DEVICE_TYPES = ("cuda", "mps")


def choose_flow(requested: str, model_flow: str, device_type: str) -> str:
    """The flow estimator a model runs with at inference on a device of `device_type`.

    A weights file names the flow it was trained with (`model_flow`). "auto" keeps a trained flow
    ("pyramid": its weights are the model's) and otherwise picks by device: the device flow on CUDA and
    MPS (DIS would make the GPU wait on the host CPU), DIS on the CPU (about 10x faster there than the
    device flow, benchmarks/results/flow_accuracy_device.json). "dis" or "device" asks for one; refused for
    a model whose flow is trained."""
    if requested not in FLOW_CHOICES:
        raise ValueError(f"unknown flow {requested!r}; known: {', '.join(FLOW_CHOICES)}")
    if model_flow not in FLOW_CHOICES:  # a trained estimator, part of the weights
        if requested == "auto":
            return model_flow
        raise ValueError(
            f"this model's flow estimator ({model_flow}) is trained with it; only --flow auto keeps it"
        )
    if requested == "auto":
        return "device" if device_type in GPU_DEVICE_TYPES else "dis"
    return requested


def build_flow_estimator(name: str) -> nn.Module:
    if name not in FLOW_ESTIMATORS:
        raise ValueError(f"unknown flow estimator {name!r}; known: {', '.join(FLOW_ESTIMATORS)}")
    return FLOW_ESTIMATORS[name]()


def split_neighbours(frames: torch.Tensor) -> torch.Tensor:
    """The neighbours (B, 4, 3, H, W) of the centre of `frames` (B, 5, 3, H, W): t-2, t-1, t+1, t+2."""
    return torch.cat([frames[:, :CENTRE], frames[:, CENTRE + 1 :]], 1)


def align_frames(frames: torch.Tensor, flows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Warp every neighbour onto the centre frame.

    frames: (B, 5, 3, H, W); flows: (B, 4, 2, H, W) from the centre to frames 0, 1, 3, 4 in that order.
    Returns aligned frames (B, 5, 3, H, W) (the centre unchanged) and validity masks (B, 5, 1, H, W).
    """
    b, t, c, h, w = frames.shape
    neighbours = split_neighbours(frames)  # (B, 4, 3, H, W)
    warped, masks = backward_warp(neighbours.reshape(-1, c, h, w), flows.reshape(-1, 2, h, w))
    warped = warped.reshape(b, t - 1, c, h, w)
    masks = masks.reshape(b, t - 1, 1, h, w)
    centre = frames[:, CENTRE : CENTRE + 1]
    ones = torch.ones_like(centre[:, :, :1])
    aligned = torch.cat([warped[:, :CENTRE], centre, warped[:, CENTRE:]], 1)
    valid = torch.cat([masks[:, :CENTRE], ones, masks[:, CENTRE:]], 1)
    return aligned, valid


def estimate_flows(estimator: nn.Module, frames: torch.Tensor) -> torch.Tensor:
    """Flows (B, 4, 2, H, W) from the centre of `frames` (B, 5, 3, H, W) to each neighbour."""
    return estimator(frames[:, CENTRE], split_neighbours(frames))


class OpticalFlowAlign(nn.Module):
    """OFM: flow from the centre to each neighbour, backward warping, then the 5 aligned frames and
    their validity masks fused by a conv into features (B, C, H, W)."""

    def __init__(self, width: int, flow: str = "dis") -> None:
        super().__init__()
        self.flow = build_flow_estimator(flow)
        self.fuse = nn.Sequential(nn.Conv2d(NUM_FRAMES * 4, width, 3, padding=1), nn.ReLU(inplace=True))

    def forward(self, frames: torch.Tensor, flows: torch.Tensor | None = None) -> torch.Tensor:
        # frames: (B, 5, 3, H, W) in [0, 1]; flows: optional (B, 4, 2, H, W) -> (B, C, H, W)
        if flows is None:
            flows = estimate_flows(self.flow, frames)
        b, t, c, h, w = frames.shape
        # what align_frames gives, [aligned frames (B, 15, H, W), validity (B, 5, H, W)], in one concatenation
        warped, masks = backward_warp(
            split_neighbours(frames).reshape(-1, c, h, w), flows.reshape(-1, 2, h, w)
        )
        warped, masks = warped.reshape(b, t - 1, c, h, w), masks.reshape(b, t - 1, 1, h, w)
        centre = frames[:, CENTRE]
        before, after = range(CENTRE), range(CENTRE, t - 1)
        parts = [*(warped[:, i] for i in before), centre, *(warped[:, i] for i in after)]
        parts += [
            *(masks[:, i] for i in before),
            torch.ones_like(centre[:, :1]),
            *(masks[:, i] for i in after),
        ]
        return self.fuse(torch.cat(parts, 1))


class TemporalGroupingAlign(nn.Module):
    """TGM: groups G1 = {t-2, t, t+2} and G2 = {t-1, t, t+1}, each through one shared residual block,
    the two results concatenated and fused into features (B, C, H, W)."""

    GROUPS = ((0, 2, 4), (1, 2, 3))

    def __init__(self, width: int) -> None:
        super().__init__()
        self.embed = nn.Sequential(nn.Conv2d(9, width, 3, padding=1), nn.ReLU(inplace=True))
        self.residual = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1),
        )
        self.fuse = nn.Sequential(nn.Conv2d(2 * width, width, 3, padding=1), nn.ReLU(inplace=True))

    def group_features(self, group: torch.Tensor) -> torch.Tensor:  # (B, 3, 3, H, W) -> (B, C, H, W)
        x = self.embed(group.flatten(1, 2))
        return torch.relu(x + self.residual(x))

    def forward(self, frames: torch.Tensor, flows: torch.Tensor | None = None) -> torch.Tensor:
        # frames: (B, 5, 3, H, W) in [0, 1]; flows ignored -> (B, C, H, W)
        g1, g2 = (self.group_features(frames[:, list(idx)]) for idx in self.GROUPS)
        return self.fuse(torch.cat([g1, g2], 1))


class MixedAlign(nn.Module):
    """The macro search level: F(beta) = w_ofm * OFM + w_tgm * TGM with w = softmax(beta) from the caller."""

    def __init__(self, width: int, flow: str = "dis") -> None:
        super().__init__()
        self.ofm = OpticalFlowAlign(width, flow)
        self.tgm = TemporalGroupingAlign(width)

    def forward(
        self, frames: torch.Tensor, weights: torch.Tensor, flows: torch.Tensor | None = None
    ) -> torch.Tensor:
        # frames: (B, 5, 3, H, W); weights: (2,) in ALIGNMENTS order ("ofm", "tgm") -> (B, C, H, W)
        return weights[0] * self.ofm(frames, flows) + weights[1] * self.tgm(frames)
