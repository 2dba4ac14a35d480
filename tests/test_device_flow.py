"""PatchInverseSearchFlow (the "device" flow) against OpenCV's DIS and known motion, on small images."""

import pytest
import torch

from tests.conftest import textured_frames
from tmics_cli.model import FLOW_ESTIMATORS, DISFlow, PatchInverseSearchFlow, backward_warp, estimate_flows
from tmics_cli.model.device_flow import coarsest_scale
from tmics_cli.training.flow import MotionConfig, end_point_error, make_flow_pair

# Like benchmarks/flow_accuracy.py's test-A motion, scaled to 96x72 frames: a few px, small homography.
MOTION = MotionConfig(
    min_translation=1.0,
    max_translation=6.0,
    max_rotation_deg=2.0,
    max_scale=0.03,
    max_shear=0.01,
    max_perspective=0.01,
    max_nonrigid=1.0,
    noise_std=0.0,
    rain_prob=0.0,
    hflip=False,
)


def _pairs(count: int, h: int = 72, w: int = 96, seed: int = 0) -> list:
    frames = textured_frames(1, count, h + 32, w + 32, seed=seed)[0]  # (count, 3, h + 32, w + 32)
    g = torch.Generator().manual_seed(seed)
    return [make_flow_pair(frame, (h, w), g, MOTION) for frame in frames]


def test_registered_as_the_device_flow() -> None:
    assert FLOW_ESTIMATORS["device"] is PatchInverseSearchFlow


def test_shapes_dtype_and_device() -> None:
    frames = textured_frames(2, 5, 48, 64)
    flows = estimate_flows(PatchInverseSearchFlow(), frames)
    assert flows.shape == (2, 4, 2, 48, 64)
    assert flows.dtype == torch.float32 and flows.device == frames.device
    assert torch.isfinite(flows).all()
    assert PatchInverseSearchFlow()(frames[:, 2].double(), frames[:, :2].double()).dtype == torch.float64


def test_batched_equals_one_pair_at_a_time() -> None:
    frames = textured_frames(2, 5, 48, 64, seed=3)
    est = PatchInverseSearchFlow()
    batched = estimate_flows(est, frames)  # (2, 4, 2, H, W)
    for i in range(2):
        for j, k in enumerate((0, 1, 3, 4)):
            one = est(frames[i : i + 1, 2], frames[i : i + 1, k : k + 1])[0, 0]
            torch.testing.assert_close(batched[i, j], one, atol=1e-4, rtol=0)
    chunked = PatchInverseSearchFlow(max_points=1)(frames[:, 2], frames[:, [0, 1, 3, 4]])  # a pair per chunk
    torch.testing.assert_close(chunked, batched, atol=1e-4, rtol=0)


def test_float32_inside_autocast() -> None:
    frames = textured_frames(1, 5, 48, 64, seed=2)
    est = PatchInverseSearchFlow()
    plain = estimate_flows(est, frames)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = estimate_flows(est, frames)
    torch.testing.assert_close(autocast.float(), plain, atol=1e-4, rtol=0)


def test_identical_frames_give_zero_flow() -> None:
    frame = textured_frames(1, 1, 48, 64)[:, 0]
    flow = PatchInverseSearchFlow()(frame, frame.unsqueeze(1))
    assert flow.abs().max() < 1e-3


def test_recovers_a_known_translation_like_dis() -> None:
    base = textured_frames(1, 1, 72, 96)[:, 0]
    nbr = torch.roll(base, shifts=(2, 3), dims=(-2, -1))  # moved down 2, right 3: flow (3, 2)
    ours = PatchInverseSearchFlow()(base, nbr.unsqueeze(1))[0, 0, :, 12:-12, 12:-12]
    dis = DISFlow("medium")(base, nbr.unsqueeze(1))[0, 0, :, 12:-12, 12:-12]
    target = torch.tensor([3.0, 2.0]).view(2, 1, 1)
    ours_epe = (ours - target).norm(dim=0).mean().item()
    dis_epe = (dis - target).norm(dim=0).mean().item()
    assert ours_epe < 0.25
    assert ours_epe <= 1.15 * dis_epe + 0.05


def test_warp_aligns_like_dis_convention() -> None:
    """The flows follow DISFlow's convention: backward_warp(neighbour, flow) lands on the reference."""
    pair = _pairs(1, seed=5)[0]
    ref, nbr = pair.reference[None], pair.neighbour[None]  # (1, 3, H, W)

    def misalignment(flow: torch.Tensor) -> float:  # mean absolute difference, inner valid pixels
        warped, inside = backward_warp(nbr, flow)
        mask = (inside * pair.valid[None])[..., 8:-8, 8:-8]
        return ((warped - ref)[..., 8:-8, 8:-8].abs() * mask).sum().item() / (3 * mask.sum().item())

    ours = misalignment(PatchInverseSearchFlow()(ref, nbr.unsqueeze(1))[:, 0])
    dis = misalignment(DISFlow("medium")(ref, nbr.unsqueeze(1))[:, 0])
    none = misalignment(torch.zeros(1, 2, *ref.shape[-2:]))
    assert ours < 0.15 * none
    assert ours <= 1.15 * dis


@pytest.mark.parametrize("seed", [0, 1])
def test_end_point_error_close_to_dis_medium_on_known_motion(seed: int) -> None:
    pairs = _pairs(4, seed=seed)
    ref = torch.stack([p.reference for p in pairs])  # (4, 3, 72, 96)
    nbr = torch.stack([p.neighbour for p in pairs]).unsqueeze(1)  # (4, 1, 3, 72, 96)
    target, valid = torch.stack([p.flow for p in pairs]), torch.stack([p.valid for p in pairs])
    ours = end_point_error(PatchInverseSearchFlow()(ref, nbr)[:, 0], target, valid).item()
    dis = end_point_error(DISFlow("medium")(ref, nbr)[:, 0], target, valid).item()
    assert ours < 0.5
    assert ours <= 1.15 * dis + 0.05, (ours, dis)


def test_coarsest_scale_matches_opencv() -> None:
    assert coarsest_scale(480, 640, 8) == 4
    assert coarsest_scale(256, 384, 8) == 4
    assert coarsest_scale(72, 96, 8) == 2
    assert coarsest_scale(1080, 1920, 8) == 6


def test_unknown_preset_is_refused() -> None:
    with pytest.raises(ValueError, match="preset"):
        PatchInverseSearchFlow("slow")


# --- the flow at inference: --flow auto | dis | device ---------------------------------------------------


def test_choose_flow_auto_picks_by_device_and_keeps_a_trained_flow() -> None:
    from tmics_cli.model.align import choose_flow

    assert choose_flow("auto", "dis", "cuda") == "device"
    assert choose_flow("auto", "dis", "mps") == "device"
    assert choose_flow("auto", "dis", "cpu") == "dis"
    assert choose_flow("auto", "device", "cpu") == "dis"
    assert choose_flow("dis", "dis", "cuda") == "dis"
    assert choose_flow("device", "dis", "cpu") == "device"
    assert choose_flow("auto", "pyramid", "cuda") == "pyramid"
    with pytest.raises(ValueError, match="trained"):
        choose_flow("device", "pyramid", "cuda")
    with pytest.raises(ValueError, match="unknown flow"):
        choose_flow("raft", "dis", "cpu")


def test_restorer_runs_the_flow_asked_for_and_weights_keep_naming_theirs() -> None:
    from tmics_cli.inference import Restorer
    from tmics_cli.model import build_model

    model = build_model("light", "tiny")
    windows = (textured_frames(1, 5, 32, 40) * 255).round().to(torch.uint8).permute(0, 1, 3, 4, 2).numpy()
    auto = Restorer(model, torch.device("cpu"))
    assert auto.flow == "dis" and isinstance(auto.model.flow_estimator, DISFlow)
    with_dis = auto(windows)
    device = Restorer(model, torch.device("cpu"), flow="device")
    assert device.flow == "device" and isinstance(device.model.flow_estimator, PatchInverseSearchFlow)
    assert isinstance(model.flow_estimator, DISFlow)  # the Restorer runs a copy: the caller keeps theirs
    assert device.model.config.flow == "dis"  # a file saved from it still names the flow it was trained with
    with_device = device(windows)
    assert with_device.shape == with_dis.shape == (1, 32, 40, 3)
    assert isinstance(Restorer(model, torch.device("cpu"), flow="dis").model.flow_estimator, DISFlow)


def test_derainer_records_the_flow_only_when_not_the_weights_own(tiny_weights) -> None:
    from types import SimpleNamespace

    from tmics_cli.derain import Derainer

    with pytest.raises(ValueError, match="unknown flow"):
        Derainer(weights=tiny_weights, flow="raft")
    info = SimpleNamespace(kind="video")
    for job_device, flow, recorded in [
        ("cpu", "auto", None),
        ("cuda", "auto", "device"),
        ("cpu", "device", "device"),
    ]:
        derainer = Derainer(weights=tiny_weights, device="cpu", job_device=job_device, flow=flow)
        restorer, path, sha = derainer.model("custom")
        assert derainer.settings(restorer, path, sha, info, "custom").get("flow") == recorded  # type: ignore[arg-type]
        assert derainer.kwargs["flow"] == flow
