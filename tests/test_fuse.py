"""BatchNorm folding (tmics_cli.model.fuse): the same outputs up to float rounding, inference only."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.conftest import textured_frames
from tmics_cli.inference import Restorer
from tmics_cli.model import OPERATION_NAMES, build_model, build_operation, save_model
from tmics_cli.model.fuse import (
    FoldedBatchNorm,
    fold_batchnorm,
    for_inference,
    fuse_heads,
    is_rewritten,
    unfolded_batchnorms,
)


def _random_statistics(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters, so that folding has something to fold."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(c, generator=g) * 2 + 0.1)
                m.weight.copy_(torch.randn(c, generator=g))
                m.bias.copy_(torch.randn(c, generator=g) * 0.3)
    return model.eval()


@pytest.mark.parametrize("name", OPERATION_NAMES)
def test_every_operation_folds_to_the_same_output(name: str) -> None:
    op = _random_statistics(build_operation(name, 6))
    x = torch.randn(2, 6, 13, 11)
    expected = op(x)
    folded = fold_batchnorm(copy.deepcopy(op))
    assert unfolded_batchnorms(folded) == [] and is_rewritten(folded)
    torch.testing.assert_close(folded(x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("preset", ["light", "heavy"])
def test_a_whole_network_folds_to_the_same_output(preset: str) -> None:
    model = _random_statistics(build_model(preset, "tiny"))
    frames = textured_frames(1, 5, 24, 32)
    with torch.no_grad():
        expected = model(frames, return_all=True)
        folded = fold_batchnorm(copy.deepcopy(model))
        got = folded(frames, return_all=True)
    assert unfolded_batchnorms(folded) == []
    assert unfolded_batchnorms(model)  # the original is untouched
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_a_conv_with_a_bias_and_a_batchnorm_without_affine_fold_too() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=True), nn.BatchNorm2d(4, affine=False), nn.ReLU())
    with torch.no_grad():
        net[1].running_mean.uniform_(-1, 1)
        net[1].running_var.uniform_(0.2, 3)
    net.eval()
    x = torch.randn(1, 3, 8, 8)
    expected = net(x)
    torch.testing.assert_close(fold_batchnorm(net)(x), expected, atol=1e-5, rtol=1e-5)
    assert isinstance(net[1], FoldedBatchNorm)


def test_only_a_batchnorm_right_after_a_conv_is_folded() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.BatchNorm2d(4)).eval()
    fold_batchnorm(net)
    assert unfolded_batchnorms(net) == ["2"] and not is_rewritten(net)


def test_folding_is_for_inference_only(tmp_path: Path) -> None:
    model = build_model("light", "tiny")
    with pytest.raises(ValueError, match="eval"):
        fold_batchnorm(model)  # still in training mode
    folded = fold_batchnorm(model.eval())
    folded.eval()  # eval stays allowed
    with pytest.raises(RuntimeError, match="cannot be trained"):
        folded.train()
    with pytest.raises(ValueError, match="rewritten for inference"):
        save_model(folded, tmp_path / "folded.safetensors")
    fused = fuse_heads(build_model("light", "tiny").eval())
    assert is_rewritten(fused)
    with pytest.raises(RuntimeError, match="cannot be trained"):
        fused.train()
    with pytest.raises(ValueError, match="rewritten for inference"):
        save_model(fused, tmp_path / "fused.safetensors")


@pytest.mark.parametrize(("size", "scale"), [("tiny", 2), ("small-full", 1), ("tiny", 4)])
@pytest.mark.parametrize("hw", [(24, 32), (21, 30)])  # the second padded up to a multiple of the scale
def test_fused_heads_give_the_unshuffled_heads_output(size: str, scale: int, hw: tuple[int, int]) -> None:
    model = _random_statistics(build_model("light", size, scale=scale, width=6))
    frames = textured_frames(2, 5, *hw)
    with torch.no_grad():
        expected = model(frames, return_all=True)
        fast = for_inference(copy.deepcopy(model))
        assert all(net.fused_head is not None for net in (fast.dna, fast.cna))
        got = fast(frames, return_all=True)
        features, centre = torch.randn(1, 6, 4 * scale, 8 * scale), torch.rand(1, 3, 4 * scale, 8 * scale)
        torch.testing.assert_close(fast.dna.embed(features, centre), model.dna.embed(features, centre))
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_the_restorer_runs_a_rewritten_copy_and_leaves_the_model_alone() -> None:
    model = _random_statistics(build_model("light", "tiny"))
    windows = textured_frames(1, 5, 24, 32)  # (1, 5, 3, H, W) in [0, 1]
    fast = Restorer(model, torch.device("cpu"))
    plain = Restorer(model, torch.device("cpu"), optimize=False)
    assert fast.model is not model and is_rewritten(fast.model)
    assert plain.model is model and not is_rewritten(model) and unfolded_batchnorms(model)
    torch.testing.assert_close(fast.restore(windows), plain.restore(windows), atol=1e-5, rtol=1e-5)
