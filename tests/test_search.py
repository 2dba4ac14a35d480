import csv
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from tests.test_datasets import write_clip
from tmics_cli.model.cell import MixedLayer
from tmics_cli.model.genotypes import Genotype
from tmics_cli.model.network import TMICS, model_config
from tmics_cli.model.ops import OPERATION_NAMES
from tmics_cli.training.losses import alpha_entropy, restoration_loss
from tmics_cli.training.search import SearchConfig, Searcher, architecture_step
from tmics_cli.training.train import TrainConfig, Trainer


@pytest.fixture
def clips(tmp_path: Path) -> Path:
    for i, name in enumerate(["alpha", "beta", "held"]):
        write_clip(tmp_path / "clips" / name, frames=7, h=40, w=48, seed=i)
    return tmp_path / "clips"


def _config(tmp_path: Path, clips: Path, **kw) -> SearchConfig:
    base = dict(
        output=str(tmp_path / "found.genotype.json"),
        data=[str(clips)],
        holdout=["held"],
        size="tiny",
        epochs=2,
        warmup=1,
        groups=2,
        val_groups=2,
        batch=2,
        crop=32,
        arch_optimizer="adam",
        arch_lr=0.01,
    )
    base.update(kw)
    return SearchConfig(**base)


def test_tiny_search_writes_a_genotype_that_train_accepts_and_resumes(tmp_path: Path, clips: Path) -> None:
    searcher = Searcher(_config(tmp_path, clips))
    genotype = searcher.fit()
    path = tmp_path / "found.genotype.json"
    loaded = Genotype.load(path)
    assert loaded == genotype and len(loaded.layers) == 4 and loaded.alignment in ("ofm", "tgm")
    alpha, beta = loaded.search["alpha"], loaded.search["beta"]
    assert len(alpha) == 4 and all(abs(sum(row) - 1) < 1e-4 for row in alpha)
    assert set(beta) == {"ofm", "tgm"} and abs(sum(beta.values()) - 1) < 1e-4
    assert loaded.search["rain"] == "light" and loaded.search["settings"]["epochs"] == 2
    # alpha moved once the warm start was over, and not before it
    history = searcher.history
    assert history[0]["searching"] is False and history[1]["searching"] is True
    assert history[0]["arch_loss"] is None and history[1]["lambda"] is not None
    rows = list(csv.reader((tmp_path / "found.genotype.history.csv").open()))
    assert len(rows) == 3 and len(rows[0]) == 6 + 2 + 4 * len(OPERATION_NAMES)
    # train --genotype takes it
    trainer = Trainer(
        TrainConfig(
            output=str(tmp_path / "w.safetensors"), data=[str(clips)], genotype=str(path), size="tiny"
        )
    )
    assert trainer.model.config.genotype.layers == genotype.layers
    # a resumed search continues from its checkpoint instead of starting again
    other = Searcher(_config(tmp_path, clips, epochs=3, resume=True, overwrite=True, arch_optimizer="sgd"))
    with pytest.raises(ValueError, match="--arch-optimizer 'adam'; resume with the same settings"):
        other.prepare()  # loading Adam's state into SGD ended in a traceback (KeyError 'step') or worse
    more = Searcher(_config(tmp_path, clips, epochs=3, resume=True, overwrite=True))
    more.fit()
    assert more.epoch == 3 and len(more.history) == 3 and more.history[:2] == history


class _OneMixedLayer(nn.Module):
    """A single searchable layer with fixed weights: the constructed task for the architecture step."""

    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.layer = MixedLayer(width)
        self.alpha = nn.Parameter(torch.zeros(1, len(OPERATION_NAMES)))

    def forward(self, x: torch.Tensor, flows=None, return_all: bool = True) -> SimpleNamespace:  # noqa: ANN001
        return SimpleNamespace(dna=self.layer(x, torch.softmax(self.alpha, -1)[0]))


@pytest.mark.parametrize("target_op", ["dilated_5x5", "channel_attention"])
def test_search_picks_the_one_operation_that_expresses_the_target(target_op: str) -> None:
    torch.manual_seed(1)
    model = _OneMixedLayer().eval()
    x = torch.rand(4, 4, 24, 24)
    k = OPERATION_NAMES.index(target_op)
    with torch.no_grad():
        target = model.layer.ops[k](x)
    optimizer = torch.optim.Adam([model.alpha], lr=0.05)
    for _ in range(150):
        architecture_step(model, optimizer, x, target)
    p = torch.softmax(model.alpha, -1)[0]
    assert int(p.argmax()) == k and p[k] > 0.5


def test_entropy_term_drives_alpha_towards_one_hot() -> None:
    torch.manual_seed(0)
    model = _OneMixedLayer()
    model.alpha.data = 0.1 * torch.randn_like(model.alpha)
    x = torch.rand(2, 4, 16, 16)
    frozen = SimpleNamespace(dna=x)  # output independent of alpha: only the entropy term acts
    model.forward = lambda *a, **k: frozen  # type: ignore[method-assign]
    optimizer = torch.optim.SGD([model.alpha], lr=1.0)
    entropies = []
    for _ in range(60):
        architecture_step(model, optimizer, x, x, eta=1.0)
        entropies.append(alpha_entropy(model.alpha).item())
    assert all(b <= a + 1e-9 for a, b in zip(entropies, entropies[1:], strict=False))
    assert torch.softmax(model.alpha, -1).max() > 0.9


def test_beta_gradient_matches_finite_differences() -> None:
    """beta's gradient mechanics (an honest check that beta prefers OFM under motion needs more than a
    tiny untrained network gives; see the search issue)."""
    torch.manual_seed(0)
    model = TMICS(model_config(None, "tiny")).double().eval()
    frames = torch.rand(1, 5, 3, 16, 16, dtype=torch.float64)
    flows = 2 * torch.randn(1, 4, 2, 16, 16, dtype=torch.float64)
    target = torch.rand(1, 3, 16, 16, dtype=torch.float64)

    def loss() -> torch.Tensor:
        return restoration_loss(model(frames, flows, return_all=True).dna, target)

    model.beta.data = torch.tensor([0.3, -0.2], dtype=torch.float64)
    grad = torch.autograd.grad(loss(), model.beta)[0]
    eps = 1e-5
    for i in range(2):
        with torch.no_grad():
            model.beta[i] += eps
            up = loss().item()
            model.beta[i] -= 2 * eps
            down = loss().item()
            model.beta[i] += eps
        assert grad[i].item() == pytest.approx((up - down) / (2 * eps), rel=1e-4, abs=1e-9)
    assert grad.abs().sum() > 0


def test_pools_mix_clean_clips_and_paired_videos_and_hold_out_by_name(tmp_path: Path, clips: Path) -> None:
    import cv2
    import numpy as np

    from tmics_cli.training.search import build_pools

    for video in ("pair_a", "pair_b"):  # flat grey ground truth: easy to tell from the textured clips
        for i in range(6):
            for kind, value in (("rain", 140), ("gt", 128)):
                folder = tmp_path / "paired" / video / kind
                folder.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(folder / f"{i}.png"), np.full((40, 48, 3), value, np.uint8))
    cfg = _config(tmp_path, clips, data=[str(clips), str(tmp_path / "paired")], holdout=["held", "pair_b"])
    cfg.groups, cfg.val_groups = 4, 4
    train, val = build_pools(cfg)
    flat = [float(s["target"].std()) == 0.0 for s in train]
    assert flat == [False, True, False, True]  # clean clip, paired video, in turn
    assert [float(s["target"].std()) == 0.0 for s in val] == [False, True, False, True]
    assert all(s["flows"].shape == (4, 2, 32, 32) for s in train + val)


def test_cli_search_resumes_where_it_stopped_and_an_early_stop_leaves_no_run_folder(
    tmp_path: Path, clips: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from tmics_cli.cli import app

    out = tmp_path / "g.genotype.json"
    args = [
        "search",
        "--data",
        str(clips),
        "-o",
        str(out),
        "--size",
        "tiny",
        "--warmup",
        "0",
        "--groups",
        "1",
    ]
    args += ["--val-groups", "1", "--batch", "1", "--crop", "32", "--holdout", "held"]
    first = CliRunner().invoke(app, [*args, "--epochs", "1"])
    assert first.exit_code == 0, first.output
    more = CliRunner().invoke(app, [*args, "--epochs", "2", "--resume", "--overwrite"])
    assert more.exit_code == 0, more.output
    assert "resumed at epoch 1 of 2" in more.output and "epoch 2/2" in more.output, more.output
    assert "epoch 1/2" not in more.output  # the bar went on from the checkpoint, not from 0
    bare = tmp_path / "bare"
    bare.mkdir()

    def interrupted(self, train, val):  # noqa: ANN001 - Ctrl-C in the first epoch
        raise KeyboardInterrupt

    monkeypatch.setattr(Searcher, "run_epoch", interrupted)
    stopped = CliRunner().invoke(app, [*args[:4], str(bare / "g.genotype.json"), *args[5:], "--epochs", "1"])
    assert stopped.exit_code != 0 and "before the first checkpoint; nothing was kept" in stopped.output
    assert os.listdir(bare) == []  # the run folder it made for its lock went with it: nothing was in it
