"""Flow pre-training (tmics_cli.training.flow): synthetic pairs with a correct ground truth, training that
lowers the end-point error, determinism under a seed."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from tmics_cli.model.align import PyramidFlowNet, backward_warp
from tmics_cli.training.flow import (
    MotionConfig,
    end_point_error,
    make_flow_pair,
    sample_flow_batch,
    train_flow,
)

EXACT = MotionConfig(noise_std=0.0, rain_prob=0.0, interp="bilinear")
SMALL = MotionConfig(max_translation=4.0, max_rotation_deg=2.0, max_nonrigid=0.5, noise_std=0.0)


def textured_frame(h: int, w: int, seed: int) -> torch.Tensor:
    """A smooth multi-scale random texture (3, H, W) in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    image = torch.zeros(1, 3, h, w)
    for cells, amp in ((4, 1.0), (12, 0.6), (40, 0.3)):
        noise = torch.rand(1, 3, cells, cells, generator=g)
        image += amp * F.interpolate(noise, size=(h, w), mode="bicubic", align_corners=False)
    image = (image - image.amin()) / (image.amax() - image.amin())
    return image[0]


def warp_error(pair, flow: torch.Tensor) -> tuple[float, float]:
    """Mean and max |backward_warp(neighbour, flow) - reference| on valid pixels."""
    warped, inside = backward_warp(pair.neighbour[None], flow[None])  # (1, 3, h, w), (1, 1, h, w)
    ok = (pair.valid[None] * inside).expand_as(warped) > 0
    diff = (warped - pair.reference[None]).abs()[ok]
    return diff.mean().item(), diff.max().item()


def test_pair_ground_truth_flow_aligns_neighbour_onto_reference() -> None:
    frame = textured_frame(160, 200, seed=1)
    g = torch.Generator().manual_seed(0)
    for _ in range(4):
        pair = make_flow_pair(frame, (96, 128), g, EXACT)
        assert pair.reference.shape == (3, 96, 128) and pair.neighbour.shape == (3, 96, 128)
        assert pair.flow.shape == (2, 96, 128) and pair.valid.shape == (1, 96, 128)
        assert pair.valid.mean() > 0.5
        mean, worst = warp_error(pair, pair.flow)
        assert worst < 1e-4, (mean, worst)  # bilinear resampling: exact up to float rounding
        # The test has teeth: no motion or the opposite motion does not align the pair.
        if pair.flow.norm(dim=0).mean() > 1.0:
            assert warp_error(pair, torch.zeros_like(pair.flow))[0] > 10 * max(mean, 1e-4)
            assert warp_error(pair, -pair.flow)[0] > 10 * max(mean, 1e-4)


def test_pair_ground_truth_bicubic_and_valid_mask() -> None:
    frame = textured_frame(160, 200, seed=2)
    g = torch.Generator().manual_seed(3)
    pair = make_flow_pair(frame, (96, 128), g, MotionConfig(noise_std=0.0, rain_prob=0.0))  # bicubic default
    assert warp_error(pair, pair.flow)[0] < 0.01
    ys, xs = torch.meshgrid(torch.arange(96.0), torch.arange(128.0), indexing="ij")
    tx, ty = xs + pair.flow[0], ys + pair.flow[1]
    inside = (tx >= 0) & (tx <= 127) & (ty >= 0) & (ty <= 95)
    assert torch.equal(pair.valid[0] > 0, inside)


def test_rain_is_added_after_the_warp_to_each_frame() -> None:
    frame = textured_frame(80, 80, seed=4)
    calls = []

    def rain(frames: torch.Tensor, generator: torch.Generator) -> torch.Tensor:  # (2, 3, h, w)
        calls.append(frames.shape)
        return torch.stack([torch.zeros_like(frames[0]), torch.ones_like(frames[1])])

    cfg = MotionConfig(noise_std=0.0, rain_prob=1.0)
    pair = make_flow_pair(frame, 64, torch.Generator().manual_seed(0), cfg, rain)
    assert calls == [torch.Size([2, 3, 64, 64])]
    assert pair.reference.eq(0).all() and pair.neighbour.eq(1).all()


def _tiny_model() -> PyramidFlowNet:
    torch.manual_seed(0)
    return PyramidFlowNet(levels=3, width=8)


def test_training_lowers_epe_on_a_fixed_batch() -> None:
    # A general flow net needs hundreds of steps to leave its zero-flow plateau (see the benchmark), so
    # this fast test trains on the fixed batch itself: it checks that loss, gradients through the
    # pyramid and warps, multi-scale taps and optimiser are wired so that the EPE goes down.
    frames = [textured_frame(96, 96, seed=s) for s in range(4)]
    fixed = sample_flow_batch(frames, 8, 64, torch.Generator().manual_seed(123), SMALL)
    model = _tiny_model()

    def epe() -> float:
        with torch.no_grad():
            flow = model(fixed.reference, fixed.neighbour[:, None])[:, 0]  # (B, 2, h, w)
        return end_point_error(flow, fixed.flow, fixed.valid).item()

    before = epe()
    # A zero-initialised PyramidFlowNet predicts zero flow: its EPE is the mean true flow magnitude.
    assert abs(before - end_point_error(torch.zeros_like(fixed.flow), fixed.flow, fixed.valid).item()) < 1e-5
    history = train_flow(model, fixed, steps=60, crop=64, lr=1e-2, log_every=20, seed=0)
    assert [h["step"] for h in history] == [20, 40, 60]
    after = epe()
    assert after < 0.75 * before, (before, after)  # ~0.46 * before when written


def test_training_is_deterministic_under_a_seed() -> None:
    frames = [textured_frame(80, 80, seed=s) for s in range(2)]
    runs = []
    for _ in range(2):
        model = _tiny_model()
        history = train_flow(
            model, frames, steps=3, batch=2, crop=64, lr=1e-3, log_every=1, seed=7, config=SMALL
        )
        runs.append(([(h["loss"], h["epe"]) for h in history], model.state_dict()))
    (hist_a, state_a), (hist_b, state_b) = runs
    assert hist_a == hist_b
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    other = train_flow(
        _tiny_model(), frames, steps=3, batch=2, crop=64, lr=1e-3, log_every=1, seed=8, config=SMALL
    )
    assert [(h["loss"], h["epe"]) for h in other] != hist_a
