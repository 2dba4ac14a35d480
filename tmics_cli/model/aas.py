"""AAS: attention-based averaging of the two restored frames (the paper, Sec. III-B1, Eq. 3).

    lambda = softmax over {D, C} of GAP(conv3x3(relu(conv3x3(B_x))))   (two shared 3x3 convs)
    B = lambda * B_D + (1 - lambda) * B_C

lambda has one value per colour channel and per frame: (B, 3, 1, 1). It comes from global pooling, so a
caller that processes a frame in tiles computes it once on the whole frame (`weights`) and then fuses each
tile with it (`fuse`). The last conv starts at zero, so a fresh AAS averages the two estimates equally.
"""

from __future__ import annotations

import torch
from torch import nn


class AttentionAveraging(nn.Module):
    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.score = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(width, 3, 3, padding=1)
        )
        nn.init.zeros_(self.score[-1].weight)
        nn.init.zeros_(self.score[-1].bias)

    def weights(self, dna: torch.Tensor, cna: torch.Tensor) -> torch.Tensor:
        """lambda (B, 3, 1, 1), the DNA's share, from the two estimates (B, 3, H, W)."""
        scores = torch.stack([self.score(dna).mean((2, 3)), self.score(cna).mean((2, 3))], 0)  # (2, B, 3)
        return torch.softmax(scores, 0)[0][:, :, None, None]

    @staticmethod
    def fuse(dna: torch.Tensor, cna: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        return lam * dna + (1 - lam) * cna

    def forward(self, dna: torch.Tensor, cna: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # dna, cna: (B, 3, H, W) -> fused (B, 3, H, W), lambda (B, 3, 1, 1)
        lam = self.weights(dna, cna)
        return self.fuse(dna, cna, lam), lam
