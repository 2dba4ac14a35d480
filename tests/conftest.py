import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny untrained light network saved as weights: fast for tests of the I/O around the model."""
    from tmics_cli.model import build_model, save_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    save_model(build_model("light", "tiny"), path)
    return path


@pytest.fixture(scope="session", autouse=True)
def _own_tmics_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The suite's runs (subprocesses too) keep their caches in a folder of their own, not the user's."""
    before = os.environ.get("TMICS_HOME")
    os.environ["TMICS_HOME"] = str(tmp_path_factory.mktemp("tmics-home"))
    yield
    if before is None:
        os.environ.pop("TMICS_HOME", None)
    else:
        os.environ["TMICS_HOME"] = before


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)


def textured_frames(batch: int = 1, frames: int = 5, h: int = 32, w: int = 40, seed: int = 0) -> torch.Tensor:
    """Smooth random texture (B, T, 3, H, W) in [0, 1], varied enough for optical flow to lock on."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(batch * frames, 3, h // 4 + 1, w // 4 + 1, generator=g)
    up = torch.nn.functional.interpolate(base, size=(h, w), mode="bicubic", align_corners=False)
    return up.clamp(0, 1).reshape(batch, frames, 3, h, w)
