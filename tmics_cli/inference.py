"""Running a TMICS model over frames held in memory. (The streaming video pipeline builds on this.)"""

from __future__ import annotations

import torch

from .model.network import TMICS
from .video.windows import window_indices


@torch.no_grad()
def derain_frames(model: TMICS, frames: torch.Tensor, batch: int = 4) -> torch.Tensor:
    """Derain a short clip held in memory, one output frame per input frame, in order.

    frames: (T, 3, H, W) RGB in [0, 1] -> (T, 3, H, W) in [0, 1]. Each output frame t comes from the
    window t-2..t+2, reflected at the clip's ends (frame 0 sees 2, 1, 0, 1, 2).
    """
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"expected frames (T, 3, H, W), got {tuple(frames.shape)}")
    if batch < 1:
        raise ValueError("batch must be at least 1")
    model.eval()
    device = next(model.parameters()).device
    length = frames.shape[0]
    out = []
    for start in range(0, length, batch):
        centres = range(start, min(start + batch, length))
        windows = torch.stack([frames[window_indices(t, length)] for t in centres])  # (b, 5, 3, H, W)
        out.append(model(windows.to(device)).clamp(0, 1).to(frames.device, frames.dtype))
    return torch.cat(out)
