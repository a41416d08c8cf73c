"""Aligner (GenRL paper): a residual U-Net-style MLP that maps points near vision embeddings back onto them.

Trained on corrupted vision embeddings ``e' = normalize((1 - a) e + a n / ||n||)`` (a = 0.5) with ``1 - cos(f(e'), e)``;
at prompt time it moves a text embedding across the modality gap before the connector.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genrl_gym.models.presets import AlignerConfig

__all__ = ["Aligner", "ResidualLinear", "corrupt"]


class ResidualLinear(nn.Module):
    """``act(norm(Linear(x))) + P(x)``, P = identity when sizes match, else a Linear."""

    def __init__(self, inp: int, out: int, norm: bool = True, act: bool = True) -> None:
        super().__init__()
        self.layer = nn.Linear(inp, out)
        self.norm = nn.LayerNorm(out) if norm else nn.Identity()
        self.act = nn.SiLU() if act else nn.Identity()
        self.proj = nn.Identity() if inp == out else nn.Linear(inp, out)

    def forward(self, x: Tensor) -> Tensor:  # [..., inp] -> [..., out]
        return self.act(self.norm(self.layer(x))) + self.proj(x)


class Aligner(nn.Module):
    """U-Net MLP over the embedding space: down D -> D -> mid, mid blocks, up with skip concatenations; output unit-norm.

    ``n_layers=2``, ``mid = D * mid_ratio``: down RL(D, D), RL(D, D/2); mid RL(D/2, D/2) x 2; up RL(D, D) (no norm, no
    activation), RL(2D, D). ``forward(e [..., D]) -> [..., D]`` L2-normalised.
    """

    def __init__(self, embed_dim: int, cfg: AlignerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        D, mid, n = embed_dim, max(1, int(embed_dim * cfg.mid_ratio)), cfg.n_layers
        self.down = nn.ModuleList([ResidualLinear(D, mid if i == n - 1 else D) for i in range(n)])
        self.mid = nn.ModuleList([ResidualLinear(mid, mid) for _ in range(n)])
        self.up = nn.ModuleList([ResidualLinear(2 * mid, D, norm=False, act=False) if i == 0 else ResidualLinear(2 * D, D)
                                 for i in range(n)])

    def forward(self, e: Tensor) -> Tensor:
        skips, x = [], e
        for layer in self.down:
            x = layer(x)
            skips.append(x)
        for layer in self.mid:
            x = layer(x)
        for layer, skip in zip(self.up, reversed(skips)):
            x = layer(torch.cat([x, skip], -1))
        return F.normalize(x, dim=-1)


def corrupt(e: Tensor, noise: float = 0.5, generator: torch.Generator | None = None) -> Tensor:
    """``normalize((1 - noise) e + noise n / ||n||)`` with fresh Gaussian ``n`` per row; ``e [..., D]`` -> ``[..., D]``."""
    dev = generator.device if generator is not None else e.device
    n = torch.randn(e.shape, generator=generator, device=dev, dtype=torch.float32).to(e.device, e.dtype)
    return F.normalize((1 - noise) * e + noise * F.normalize(n, dim=-1), dim=-1)
