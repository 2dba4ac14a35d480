import pytest
import torch


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
