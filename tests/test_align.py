import torch

from tests.conftest import textured_frames
from tmics_cli.model import (
    DISFlow,
    MixedAlign,
    OpticalFlowAlign,
    PyramidFlowNet,
    TemporalGroupingAlign,
    align_frames,
    backward_warp,
    estimate_flows,
)


def test_zero_flow_is_identity() -> None:
    img = torch.rand(2, 3, 17, 23)
    warped, mask = backward_warp(img, torch.zeros(2, 2, 17, 23))
    torch.testing.assert_close(warped, img)
    assert mask.min() == 1


def test_integer_flow_reproduces_the_shifted_frame() -> None:
    img = torch.rand(1, 3, 30, 40)
    dx, dy = 3, -2
    flow = torch.zeros(1, 2, 30, 40)
    flow[:, 0], flow[:, 1] = dx, dy
    warped, mask = backward_warp(img, flow)
    # warped(y, x) = img(y + dy, x + dx) wherever that lies inside the image
    torch.testing.assert_close(warped[..., 2:, : 40 - dx], img[..., : 30 + dy, dx:])
    assert mask[..., 2:, : 40 - dx].min() == 1
    assert mask[..., :, 40 - dx + 1 :].max() == 0 and mask[..., :1, :].max() == 0


def test_align_frames_puts_neighbours_onto_the_centre() -> None:
    base = textured_frames(1, 1, 32, 48)[:, 0]  # (1, 3, H, W)
    shifts = [-4, -2, 0, 2, 4]  # frame k is the scene moved right by shifts[k] pixels
    frames = torch.stack([torch.roll(base, s, dims=-1) for s in shifts], 1)
    flows = torch.zeros(1, 4, 2, 32, 48)
    for i, s in enumerate(s for s in shifts if s != 0):
        flows[:, i, 0] = s  # centre pixel x sits at x + s in that neighbour
    aligned, valid = align_frames(frames, flows)
    for k in range(5):
        torch.testing.assert_close(aligned[:, k, ..., 6:42], frames[:, 2, ..., 6:42])
    assert valid[:, 2].min() == 1 and valid.shape == (1, 5, 1, 32, 48)


def test_dis_flow_recovers_a_known_translation() -> None:
    base = textured_frames(1, 1, 64, 80)[:, 0]
    nbr = torch.roll(base, shifts=(2, 3), dims=(-2, -1))  # moved down 2, right 3
    flow = DISFlow("medium")(base, nbr.unsqueeze(1))  # (1, 1, 2, H, W)
    inner = flow[0, 0, :, 12:-12, 12:-12]
    assert abs(inner[0].median().item() - 3) < 0.5
    assert abs(inner[1].median().item() - 2) < 0.5


def test_pyramid_flow_net_shapes_gradients_and_zero_start() -> None:
    net = PyramidFlowNet(levels=3, width=8)
    frames = textured_frames(2, 5, 27, 35).requires_grad_(True)
    flows = estimate_flows(net, frames)
    assert flows.shape == (2, 4, 2, 27, 35)
    assert flows.abs().max() == 0  # zero-initialised: starts as the identity alignment
    # a non-zero output layer makes the flow depend on the frames, differentiably
    torch.nn.init.normal_(net.estimators[0][-1].weight, std=0.1)
    estimate_flows(net, frames).square().mean().backward()
    assert frames.grad is not None and frames.grad.abs().sum() > 0


def test_ofm_uses_given_flows_and_fuses_to_features() -> None:
    ofm = OpticalFlowAlign(6, flow="dis")
    frames = textured_frames(1, 5, 24, 32)
    zero = torch.zeros(1, 4, 2, 24, 32)
    out = ofm(frames, zero)
    assert out.shape == (1, 6, 24, 32)
    moved = zero.clone()
    moved[:, 0, 0] = 5.0
    assert not torch.allclose(ofm(frames, moved), out)


def _embed_inputs(tgm: TemporalGroupingAlign, frames: torch.Tensor) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    handle = tgm.embed.register_forward_hook(lambda m, inp, out: seen.append(inp[0].detach().clone()))
    tgm(frames)
    handle.remove()
    return seen


def test_tgm_reads_exactly_its_groups() -> None:
    tgm = TemporalGroupingAlign(4)
    frames = torch.rand(1, 5, 3, 12, 12)
    g1, g2 = _embed_inputs(tgm, frames)
    for changed, group_changes in (
        (0, (True, False)),
        (4, (True, False)),
        (1, (False, True)),
        (3, (False, True)),
    ):
        other = frames.clone()
        other[:, changed] = torch.rand(1, 3, 12, 12)
        h1, h2 = _embed_inputs(tgm, other)
        assert (not torch.equal(g1, h1)) == group_changes[0], f"frame {changed} and G1"
        assert (not torch.equal(g2, h2)) == group_changes[1], f"frame {changed} and G2"
    centre = frames.clone()
    centre[:, 2] = 0
    h1, h2 = _embed_inputs(tgm, centre)
    assert not torch.equal(g1, h1) and not torch.equal(g2, h2)
    torch.testing.assert_close(g1.reshape(1, 3, 3, 12, 12), frames[:, [0, 2, 4]])


def test_mixed_align_is_the_beta_weighted_sum() -> None:
    mixed = MixedAlign(4).eval()
    frames = textured_frames(1, 5, 16, 16)
    flows = torch.zeros(1, 4, 2, 16, 16)
    w = torch.tensor([0.3, 0.7])
    expected = 0.3 * mixed.ofm(frames, flows) + 0.7 * mixed.tgm(frames)
    torch.testing.assert_close(mixed(frames, w, flows), expected)


def test_dis_flows_in_threads_equal_one_thread(monkeypatch) -> None:
    from tmics_cli.model import align

    torch.manual_seed(0)
    base = torch.rand(1, 3, 40, 48)
    frames = torch.stack([torch.roll(base, shifts=(d, 2 * d), dims=(-2, -1)) for d in range(-2, 3)], 1)
    frames = torch.cat([frames, frames.flip(-1)])  # (2, 5, 3, 40, 48): 8 flows
    monkeypatch.setattr(align, "flow_threads", lambda tasks, pixels: 4)
    threaded = align.estimate_flows(align.DISFlow(), frames)
    monkeypatch.setattr(align, "flow_threads", lambda tasks, pixels: 1)
    single = align.estimate_flows(align.DISFlow(), frames)
    assert torch.equal(threaded, single) and threaded.abs().max() > 0.5  # real motion was found


class _ThreadsInWorker(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> int:
        from tmics_cli.model import align

        return align.flow_threads(32, 1920 * 1080)


def test_flow_threads_only_on_many_cores_for_large_frames_outside_loader_workers(monkeypatch) -> None:
    from tmics_cli.model import align

    monkeypatch.setattr(align.os, "cpu_count", lambda: 2)
    assert align.flow_threads(32, 1920 * 1080) == 1  # DIS already uses both cores
    monkeypatch.setattr(align.os, "cpu_count", lambda: 16)
    assert align.flow_threads(32, 1920 * 1080) == 8 and align.flow_threads(4, 1920 * 1080) == 4
    assert align.flow_threads(32, 320 * 240) == 1
    loader = torch.utils.data.DataLoader(_ThreadsInWorker(), num_workers=1, batch_size=None)
    assert list(loader) == [1]


def test_ofm_input_is_the_aligned_frames_then_their_masks() -> None:
    ofm = OpticalFlowAlign(6).eval()
    frames = textured_frames(2, 5, 20, 24)
    flows = torch.randn(2, 4, 2, 20, 24) * 2
    aligned, valid = align_frames(frames, flows)  # (B, 5, 3, H, W), (B, 5, 1, H, W)
    expected = ofm.fuse(torch.cat([aligned.flatten(1, 2), valid.flatten(1, 2)], 1))
    torch.testing.assert_close(ofm(frames, flows), expected, rtol=0, atol=0)


def test_dis_flows_are_the_same_under_bf16_autocast() -> None:
    frames = textured_frames(1, 5, 48, 64)
    flows = estimate_flows(DISFlow(), frames)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.testing.assert_close(estimate_flows(DISFlow(), frames), flows, rtol=0, atol=0)
