import pytest
import torch
from torch.nn import functional as F

from tests.conftest import textured_frames
from tmics_cli.model import (
    GENOTYPES,
    TMICS,
    AttentionAveraging,
    AuxiliaryRainStreaks,
    build_model,
    change_scale,
    model_config,
)
from tmics_cli.model.gars import default_streak_bank


def _nonzero_grad(params) -> bool:
    return any(p.grad is not None and p.grad.abs().sum() > 0 for p in params)


def test_one_loss_reaches_weights_alpha_beta_gars_and_aas() -> None:
    model = build_model(None, "tiny")
    frames = textured_frames(2, 5, 24, 28)
    target = frames[:, 2].flip(-1)
    out = model(frames, return_all=True)
    loss = (
        (out.derained - target).abs().mean()
        + (out.dna - target).abs().mean()
        + (out.cna - target).abs().mean()
    )
    loss.backward()
    assert model.alpha.grad.abs().sum() > 0
    assert model.beta.grad.abs().sum() > 0
    assert _nonzero_grad(model.dna.cells.parameters()) and _nonzero_grad(model.cna.cells.parameters())
    assert _nonzero_grad(model.align.ofm.fuse.parameters()) and _nonzero_grad(model.align.tgm.parameters())
    assert model.gars.kernels.grad.abs().sum() > 0 and model.gars.kernel_weights.grad.abs().sum() > 0
    assert _nonzero_grad(model.gars.estimator.parameters())
    assert _nonzero_grad(model.aas.parameters())
    groups = model.architecture_parameters() + model.fusion_parameters() + model.network_parameters()
    assert sorted(map(id, groups)) == sorted(map(id, model.parameters()))


@pytest.mark.parametrize("preset", ["light", "heavy", None])
def test_odd_frame_sizes_come_back_the_same_size(preset: str | None) -> None:
    model = build_model(preset, "tiny").eval()
    out = model(textured_frames(1, 5, 61, 97), return_all=True)
    assert out.derained.shape == out.dna.shape == out.cna.shape == (1, 3, 61, 97)
    assert out.lam.shape == (1, 3, 1, 1)
    assert torch.isfinite(out.derained).all()


def test_derived_networks_follow_their_genotype() -> None:
    light, heavy = build_model("light", "tiny"), build_model("heavy", "tiny")
    assert (
        type(light.align).__name__ == "OpticalFlowAlign" and type(light.flow_estimator).__name__ == "DISFlow"
    )
    assert type(heavy.align).__name__ == "TemporalGroupingAlign" and heavy.flow_estimator is None
    ops = [type(layer).__name__ for layer in heavy.dna.cells[0].layers]
    assert ops == ["ResidualBlock", "SpatialAttention", "ChannelAttention", "ResidualBlock"]
    assert heavy.dna.cells[0].layers[0].body[0][0].kernel_size == (5, 5)
    assert len(heavy.dna.cells) == len(heavy.cna.cells) == 4
    assert light.architecture_parameters() == []


def test_frames_must_be_five_rgb_frames() -> None:
    model = build_model("heavy", "tiny")
    with pytest.raises(ValueError, match=r"\(B, 5, 3, H, W\)"):
        model(torch.rand(1, 3, 3, 16, 16))


def test_search_model_mixes_ofm_and_tgm_by_beta() -> None:
    model = build_model(None, "tiny").eval()
    frames = textured_frames(1, 5, 16, 20)
    flows = torch.zeros(1, 4, 2, 16, 16 + 4)
    with torch.no_grad():
        model.beta.copy_(torch.tensor([30.0, -30.0]))
        ofm_only = model(frames, flows)
        model.align.tgm.fuse[0].weight.add_(1.0)  # TGM's weight is ~0: changing TGM changes nothing
        torch.testing.assert_close(model(frames, flows), ofm_only)
        model.beta.copy_(torch.tensor([-30.0, 30.0]))
        assert not torch.allclose(model(frames, flows), ofm_only)


def test_gars_adds_streak_shaped_rain_with_the_combined_kernel() -> None:
    gars = AuxiliaryRainStreaks(4)
    rain = torch.zeros(1, 3, 21, 21)
    rain[..., 10, 10] = 1
    aux = gars.auxiliary_rain(rain)
    k = gars.kernels.shape[-1]
    # Eq.: sum_i W_i (K_i conv R) + R, computed filter by filter
    expected = rain.clone()
    for w, kern in zip(gars.kernel_weights, gars.kernels, strict=True):
        expected += w * F.conv2d(F.pad(rain, (k // 2,) * 4, mode="replicate"), kern.unsqueeze(1), groups=3)
    torch.testing.assert_close(aux, expected)
    assert aux[0, 0, 10, 10] > 1 and aux[0, 0, 6:15, 10].gt(0).sum() > 1  # a streak, not a dot
    centre = torch.rand(2, 3, 16, 16)
    assert gars(centre).shape == centre.shape


def test_gars_filter_bank_holds_two_groups_of_oriented_streaks() -> None:
    bank = default_streak_bank(9)
    assert bank.shape == (16, 9, 9)
    torch.testing.assert_close(bank.sum((1, 2)), torch.ones(16))
    sharp, blurred = bank[:8], bank[8:]
    assert (sharp.amax((1, 2)) > blurred.amax((1, 2))).all()  # group 2 is the wide, soft version
    # kernel 6 is a long sharp streak leaning right at the top (+8 degrees): more mass top-right
    k = sharp[6]
    assert k[:4, 5:].sum() > k[:4, :4].sum() and k[5:, :4].sum() > k[5:, 5:].sum()
    assert sharp[5][:4, :4].sum() > sharp[5][:4, 5:].sum()  # and kernel 5 (-8 degrees) the other way


def test_aas_starts_at_an_even_mix_and_fuses_with_lambda() -> None:
    aas = AttentionAveraging(4)
    d, c = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    fused, lam = aas(d, c)
    torch.testing.assert_close(lam, torch.full((2, 3, 1, 1), 0.5))
    torch.testing.assert_close(fused, (d + c) / 2)
    torch.nn.init.normal_(aas.score[-1].weight)
    fused, lam = aas(d, c)
    assert not torch.allclose(lam, torch.full_like(lam, 0.5))
    torch.testing.assert_close(fused, lam * d + (1 - lam) * c)
    assert torch.all((lam > 0) & (lam < 1))


def test_named_sizes_and_paper_width() -> None:
    assert model_config("light", "paper").width == 96
    assert model_config("heavy", "paper").genotype == GENOTYPES["paper-heavy"]
    with pytest.raises(ValueError, match="unknown size"):
        model_config("light", "huge")
    with pytest.raises(ValueError, match="unknown preset"):
        model_config("drizzle", "tiny")
    tiny, small = build_model("light", "tiny"), build_model("light", "small")
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(tiny) < count(small) < count(TMICS(model_config("light", "paper")))


@pytest.mark.parametrize(("size", "divisor"), [("small", 2), ("small-full", 1)])
def test_cells_run_at_the_size_s_resolution(size: str, divisor: int) -> None:
    model = build_model("light", size).eval()
    seen = []
    model.dna.cells[0].register_forward_hook(lambda _m, _i, out: seen.append(tuple(out.shape[-2:])))
    with torch.no_grad():
        out = model(torch.rand(1, 5, 3, 24, 34))
    assert out.shape == (1, 3, 24, 34)
    assert seen == [(24 // divisor, 34 // divisor)]


@pytest.mark.parametrize(("old", "new"), [(2, 1), (4, 2)])
def test_change_scale_keeps_the_response_to_a_periodic_input(old: int, new: int) -> None:
    torch.manual_seed(0)
    model = build_model("light", "tiny", scale=old).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    rescaled = change_scale(model, new).eval()
    assert rescaled.config.scale == new and rescaled.config.width == model.config.width
    # an input of period `new`: each head sees one value at all its positions, so away from the borders the
    # cells see a flat input (global pools see the borders, as 1/size)
    size, k = 256, old // new
    features = torch.rand(1, model.config.width, new, new).repeat(1, 1, size // new, size // new)
    centre = torch.rand(1, 3, new, new).repeat(1, 1, size // new, size // new)
    with torch.no_grad():
        before, after = model.dna(features, centre), rescaled.dna(features, centre)  # (1, 3, size, size)

    def per_subpixel(x: torch.Tensor) -> torch.Tensor:  # mean per new sub-pixel over an old block
        return x.reshape(1, 3, size // old, k, new, size // old, k, new).mean((3, 6))

    mid = size // old // 2
    window = (slice(None), slice(None), slice(mid - 2, mid + 2), slice(None), slice(mid - 2, mid + 2))
    assert (before - centre).abs().mean() > 0.02  # the network does change its input
    torch.testing.assert_close(per_subpixel(after)[window], per_subpixel(before)[window], atol=2e-4, rtol=0)
    unchanged = [name for name in model.state_dict() if "head" not in name and "tail" not in name]
    before_state, after_state = model.state_dict(), rescaled.state_dict()
    assert all(torch.equal(before_state[name], after_state[name]) for name in unchanged)
    with pytest.raises(ValueError, match="must divide"):
        change_scale(model, 3)
