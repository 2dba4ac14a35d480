"""Flow pre-training: PyramidFlowNet learns optical flow on synthetic motion with a known flow.

Training pairs are made from single clean frames. For a crop window of a frame and a random flow f on it:

    neighbour    := frame[window]
    reference(x) := frame(window origin + x + f(x))    (sampled from the whole frame)

so the flow from the reference to the neighbour is f by construction: backward_warp(neighbour, f) equals
the reference wherever x + f(x) lands inside the crop (the `valid` mask). Elsewhere the reference shows
content the neighbour does not have (it comes from past the crop edge), as at the borders of real video;
those pixels are left out of the loss and of the end-point error.

f is a random homography about the crop centre (translation, rotation, zoom, shear, slight perspective)
plus a smooth non-rigid field (a small random grid upsampled bicubically). Rain, when a renderer is
given, is added after the warp and independently to each frame, so it differs between the two frames as
in real video and the network has to learn to look through it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from ..model.align import PyramidFlowNet

RainFn = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
"""rain(frames (T, 3, H, W) in [0, 1], generator) -> (T, 3, H, W): rain drawn independently per frame."""

FrameSource = Sequence[torch.Tensor] | Callable[[torch.Generator], torch.Tensor]
"""Clean frames (3, H, W), float in [0, 1] or uint8, as a sequence or as a sampler taking a generator."""


@dataclass(frozen=True)
class MotionConfig:
    """Ranges of the random synthetic motion (all bounds inclusive, sampled uniformly)."""

    min_translation: float = 0.0  # px, length of the translation vector (random direction)
    max_translation: float = 16.0
    max_rotation_deg: float = 3.0  # rotation about the crop centre in [-max, max]
    max_scale: float = 0.05  # zoom factor in [1 - max, 1 + max]
    max_shear: float = 0.02
    max_perspective: float = 0.02  # projective term, relative change of the denominator at the crop edge
    max_nonrigid: float = 3.0  # px, std of the smooth non-rigid field in [0, max]
    nonrigid_grid: tuple[int, int] = (2, 6)  # size range of the low-res grid the field is upsampled from
    noise_std: float = 0.01  # Gaussian noise of std in [0, max], independent per frame
    rain_prob: float = 0.5  # probability that a pair gets rain (only when a renderer is given)
    hflip: bool = True  # random horizontal flip of the source frame
    interp: str = "bicubic"  # how the reference is resampled from the frame ("bicubic" or "bilinear")


TRAIN_MOTION = MotionConfig()
"""Default training motion: a little wider than real 5-frame windows of the clean clips (a few px)."""


class FlowPair(NamedTuple):
    """A reference frame, a neighbour, the true flow from reference to neighbour and its validity mask.

    Unbatched: (3, H, W), (3, H, W), (2, H, W), (1, H, W); batched: the same with a leading B.
    """

    reference: torch.Tensor
    neighbour: torch.Tensor
    flow: torch.Tensor
    valid: torch.Tensor


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * torch.rand((), generator=generator).item()


def _randint(generator: torch.Generator, low: int, high: int) -> int:
    """An integer in [low, high] inclusive."""
    return int(torch.randint(low, high + 1, (), generator=generator).item())


def _size(crop: int | tuple[int, int]) -> tuple[int, int]:
    return (crop, crop) if isinstance(crop, int) else (int(crop[0]), int(crop[1]))


def _as_float(frame: torch.Tensor) -> torch.Tensor:
    return frame.float() / 255 if frame.dtype == torch.uint8 else frame.float()


def _pixel_grid(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column indices (H, W) as float32."""
    rows, cols = torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32)
    ys, xs = torch.meshgrid(rows, cols, indexing="ij")
    return ys, xs


def random_flow(
    h: int, w: int, generator: torch.Generator, config: MotionConfig = TRAIN_MOTION
) -> torch.Tensor:
    """A random flow (2, H, W) in pixels: a homography about the centre plus a smooth non-rigid field."""
    ys, xs = _pixel_grid(h, w)  # (H, W) each
    px, py = xs - (w - 1) / 2, ys - (h - 1) / 2  # (H, W) coordinates about the centre
    theta = math.radians(_uniform(generator, -config.max_rotation_deg, config.max_rotation_deg))
    scale = 1 + _uniform(generator, -config.max_scale, config.max_scale)
    shx = _uniform(generator, -config.max_shear, config.max_shear)
    shy = _uniform(generator, -config.max_shear, config.max_shear)
    cos, sin = math.cos(theta), math.sin(theta)
    # A = scale * R(theta) @ [[1, shx], [shy, 1]]
    a00, a01 = scale * (cos - sin * shy), scale * (cos * shx - sin)
    a10, a11 = scale * (sin + cos * shy), scale * (sin * shx + cos)
    length = _uniform(generator, config.min_translation, config.max_translation)
    phi = _uniform(generator, 0.0, 2 * math.pi)
    tx, ty = length * math.cos(phi), length * math.sin(phi)
    radius = max(h, w) / 2
    gx = _uniform(generator, -config.max_perspective, config.max_perspective) / radius
    gy = _uniform(generator, -config.max_perspective, config.max_perspective) / radius
    den = 1 + gx * px + gy * py  # (H, W)
    qx = (a00 * px + a01 * py + tx) / den
    qy = (a10 * px + a11 * py + ty) / den
    flow = torch.stack([qx - px, qy - py])  # (2, H, W)
    lo, hi = config.nonrigid_grid
    gh, gw = _randint(generator, lo, hi), _randint(generator, lo, hi)
    sigma = _uniform(generator, 0.0, config.max_nonrigid)
    field = torch.randn(1, 2, gh, gw, generator=generator) * sigma  # (1, 2, gh, gw)
    field = F.interpolate(field, size=(h, w), mode="bicubic", align_corners=True)[0]  # (2, H, W)
    return flow + field


def make_flow_pair(
    frame: torch.Tensor,
    crop: int | tuple[int, int],
    generator: torch.Generator,
    config: MotionConfig = TRAIN_MOTION,
    rain: RainFn | None = None,
) -> FlowPair:
    """A (reference, neighbour, true flow, valid) pair from one clean frame (3, H, W) (see the module doc).

    `crop` is the pair's size (h, w) (or one int for a square); the frame must be at least that large.
    The true flow maps reference pixels to the neighbour: backward_warp(neighbour, flow) == reference on
    valid pixels (exactly with interp="bilinear", up to interpolation differences with "bicubic"),
    before noise and rain are added.
    """
    frame = frame if frame.dtype == torch.uint8 else frame.float()
    _, fh, fw = frame.shape
    h, w = _size(crop)
    if fh < h or fw < w:
        raise ValueError(f"frame {fh}x{fw} is smaller than the crop {h}x{w}")
    if config.hflip and torch.rand((), generator=generator).item() < 0.5:
        frame = frame.flip(-1)
    top, left = _randint(generator, 0, fh - h), _randint(generator, 0, fw - w)
    flow = random_flow(h, w, generator, config)  # (2, h, w)
    neighbour = _as_float(frame[:, top : top + h, left : left + w])  # (3, h, w)

    ys, xs = _pixel_grid(h, w)  # (H, W) each
    tx, ty = xs + flow[0], ys + flow[1]  # (h, w) sample points in crop coordinates
    valid = ((tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)).float().unsqueeze(0)  # (1, h, w)

    # Resample only the part of the frame the sample points reach (plus a margin for the bicubic taps).
    sx, sy = tx + left, ty + top  # (h, w) in frame coordinates
    margin = 3
    x0 = max(int(math.floor(sx.min().item())) - margin, 0)
    x1 = min(int(math.ceil(sx.max().item())) + margin, fw - 1)
    y0 = max(int(math.floor(sy.min().item())) - margin, 0)
    y1 = min(int(math.ceil(sy.max().item())) + margin, fh - 1)
    x0, y0 = min(x0, fw - 1), min(y0, fh - 1)
    x1, y1 = max(x1, x0), max(y1, y0)
    region = _as_float(frame[:, y0 : y1 + 1, x0 : x1 + 1]).unsqueeze(0)  # (1, 3, rh, rw)
    rh, rw = region.shape[-2:]
    gx = 2 * (sx - x0) / max(rw - 1, 1) - 1
    gy = 2 * (sy - y0) / max(rh - 1, 1) - 1
    grid = torch.stack([gx, gy], dim=-1).unsqueeze(0)  # (1, h, w, 2)
    reference = F.grid_sample(region, grid, mode=config.interp, padding_mode="border", align_corners=True)
    reference = reference[0].clamp(0, 1)  # (3, h, w)

    if config.noise_std > 0:
        for_both = []
        for image in (reference, neighbour):
            sigma = _uniform(generator, 0.0, config.noise_std)
            for_both.append((image + sigma * torch.randn(image.shape, generator=generator)).clamp(0, 1))
        reference, neighbour = for_both
    if rain is not None and torch.rand((), generator=generator).item() < config.rain_prob:
        rainy = rain(torch.stack([reference, neighbour]), generator)  # (2, 3, h, w)
        reference, neighbour = rainy[0], rainy[1]
    return FlowPair(reference.contiguous(), neighbour.contiguous(), flow, valid)


def sample_flow_batch(
    frames: FrameSource,
    batch: int,
    crop: int | tuple[int, int],
    generator: torch.Generator,
    config: MotionConfig = TRAIN_MOTION,
    rain: RainFn | None = None,
) -> FlowPair:
    """`batch` pairs from randomly chosen frames, stacked: (B, 3, h, w) x 2, (B, 2, h, w), (B, 1, h, w)."""
    pairs = []
    for _ in range(batch):
        if callable(frames):
            frame = frames(generator)
        else:
            frame = frames[_randint(generator, 0, len(frames) - 1)]
        pairs.append(make_flow_pair(frame, crop, generator, config, rain))
    return FlowPair(*(torch.stack(parts) for parts in zip(*pairs, strict=True)))


def end_point_error(
    pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean end-point error over valid pixels: pred, target (B, 2, H, W), valid (B, 1, H, W) -> scalar."""
    err = (pred - target).pow(2).sum(1, keepdim=True).sqrt()  # (B, 1, H, W)
    if valid is None:
        return err.mean()
    return (err * valid).sum() / valid.sum().clamp_min(1)


def charbonnier_loss(
    pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None, eps: float = 0.01
) -> torch.Tensor:
    """Robust EPE: mean of sqrt(|pred - target|^2 + eps^2) over valid pixels (shapes as end_point_error)."""
    err = ((pred - target).pow(2).sum(1, keepdim=True) + eps * eps).sqrt()  # (B, 1, H, W)
    if valid is None:
        return err.mean()
    return (err * valid).sum() / valid.sum().clamp_min(1)


class _LevelTaps:
    """Forward hooks on a PyramidFlowNet's level estimators that record each level's flow: the coarser
    flow the level receives (the last two input channels) plus the residual it predicts."""

    def __init__(self, model: PyramidFlowNet) -> None:
        self.flows: dict[int, torch.Tensor] = {}
        self.handles = [est.register_forward_hook(self._hook(i)) for i, est in enumerate(model.estimators)]

    def _hook(self, level: int) -> Callable[[nn.Module, tuple[torch.Tensor, ...], torch.Tensor], None]:
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            self.flows[level] = inputs[0][:, -2:] + output  # (B, 2, H / 2**(level+1), W / 2**(level+1))

        return hook

    def loss(self, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Mean Charbonnier loss of the levels coarser than 1/2, in full-resolution pixels."""
        losses = []
        for level, flow in self.flows.items():
            if level == 0:  # the 1/2-resolution level is the final output, supervised directly
                continue
            k = 2 ** (level + 1)
            tgt = F.avg_pool2d(target, k)  # (B, 2, H / k, W / k)
            ok = (F.avg_pool2d(valid, k) > 0.999).to(target.dtype)  # (B, 1, H / k, W / k)
            losses.append(charbonnier_loss(flow * k, tgt, ok))
        self.flows.clear()
        return torch.stack(losses).mean() if losses else target.new_zeros(())

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def train_flow(
    model: nn.Module,
    frames_source: FrameSource | FlowPair,
    steps: int,
    batch: int = 8,
    crop: int | tuple[int, int] = 256,
    lr: float = 3e-4,
    device: str | torch.device = "cpu",
    log_every: int = 50,
    seed: int = 0,
    *,
    config: MotionConfig = TRAIN_MOTION,
    rain: RainFn | None = None,
    multiscale: bool = True,
    ms_weight: float = 0.5,
    max_seconds: float | None = None,
    grad_clip: float = 10.0,
) -> list[dict[str, float]]:
    """Train a flow estimator `model(reference, neighbours) -> flows` on synthetic pairs.

    Adam with a short linear warm-up and a cosine decay to lr/10 over `steps`; loss: Charbonnier EPE
    on valid pixels, plus (PyramidFlowNet, crop divisible by 2**levels) `ms_weight` times the mean loss
    of its coarser levels. Deterministic for a given seed, model initialisation and thread count.
    `max_seconds` stops early (the history then says how many steps ran).

    frames_source: clean frames to make pairs from (see FrameSource), or one batched FlowPair that is
    then the training batch at every step (overfitting one batch: for tests and debugging; `batch`,
    `config` and `rain` are then unused, `crop` must match the pair's size for multi-scale supervision).

    Returns one entry per `log_every` steps (and one for the last step): step, mean loss and mean training
    EPE (px) over those steps, learning rate and elapsed seconds.
    """
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    warmup = max(1, min(100, steps // 10))

    def lr_factor(step: int) -> float:  # step counts from 0
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    h, w = _size(crop)
    taps = None
    if multiscale and isinstance(model, PyramidFlowNet):
        if h % 2**model.levels == 0 and w % 2**model.levels == 0:
            taps = _LevelTaps(model)

    history: list[dict[str, float]] = []
    sum_loss = sum_epe = 0.0
    count = 0
    start = time.perf_counter()
    try:
        for step in range(1, steps + 1):
            if isinstance(frames_source, FlowPair):
                pair = frames_source
            else:
                pair = sample_flow_batch(frames_source, batch, crop, generator, config, rain)
            # (B, 3, h, w) x 2, (B, 2, h, w), (B, 1, h, w)
            ref, nbr, target, valid = (t.to(device) for t in pair)
            pred = model(ref, nbr.unsqueeze(1))[:, 0]  # (B, 2, h, w)
            loss = charbonnier_loss(pred, target, valid)
            if taps is not None:
                loss = loss + ms_weight * taps.loss(target, valid)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            scheduler.step()
            sum_loss += loss.item()
            sum_epe += end_point_error(pred.detach(), target, valid).item()
            count += 1
            elapsed = time.perf_counter() - start
            out_of_time = max_seconds is not None and elapsed >= max_seconds
            if step % log_every == 0 or step == steps or out_of_time:
                history.append(
                    {
                        "step": step,
                        "loss": sum_loss / count,
                        "epe": sum_epe / count,
                        "lr": optimizer.param_groups[0]["lr"],
                        "seconds": elapsed,
                    }
                )
                sum_loss = sum_epe = 0.0
                count = 0
            if out_of_time:
                break
    finally:
        if taps is not None:
            taps.remove()
        model.eval()
    return history
