"""Building blocks: dense and conv layers with LayerNorm + SiLU, the 64x64 CNN encoder/decoder and the LayerNorm GRU.

Shapes follow DreamerV3 / GenRL (the paper's world model). Linear layers followed by a LayerNorm carry no bias (the norm
has one); PyTorch default initialisation everywhere, as the reference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["dense", "ChannelNorm", "Encoder", "Decoder", "LayerNormGRU", "image_to_input"]


def dense(inp: int, out: int) -> nn.Sequential:
    """``Linear(inp -> out, no bias) -> LayerNorm -> SiLU``."""
    return nn.Sequential(nn.Linear(inp, out, bias=False), nn.LayerNorm(out), nn.SiLU())


class ChannelNorm(nn.LayerNorm):
    """LayerNorm over the channel axis of ``[N, C, H, W]`` maps (eps 1e-3 as the reference)."""

    def __init__(self, channels: int, eps: float = 1e-3) -> None:
        super().__init__(channels, eps=eps)

    def forward(self, x: Tensor) -> Tensor:  # [N, C, H, W] -> [N, C, H, W]
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def image_to_input(image: Tensor) -> Tensor:
    """uint8 (or 0..255 float) frames ``[..., H, W, 3]`` -> float ``[..., 3, H, W]`` in [-0.5, 0.5] (x / 255 - 0.5)."""
    return (image.float() / 255.0 - 0.5).movedim(-1, -3)


class Encoder(nn.Module):
    """4 x [Conv k4 s2 (no padding) -> ChannelNorm -> SiLU], channels depth * (1, 2, 4, 8); 64 -> 31 -> 14 -> 6 -> 2.

    ``forward(x [..., 3, 64, 64]) -> [..., 32 * depth]``.
    """

    def __init__(self, depth: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = 3
        for i in range(4):
            ch = depth * 2**i
            layers += [nn.Conv2d(prev, ch, 4, stride=2), ChannelNorm(ch), nn.SiLU()]
            prev = ch
        self.net = nn.Sequential(*layers)
        self.out_dim = 8 * depth * 2 * 2

    def forward(self, x: Tensor) -> Tensor:
        batch = x.shape[:-3]
        return self.net(x.reshape(-1, *x.shape[-3:])).reshape(*batch, self.out_dim)


class Decoder(nn.Module):
    """Reads the one-hot stochastic state only. ``Linear(stoch -> 32 * depth, bias)`` (the reward projection) then
    4 transposed convs (k 5, 5, 6, 6, stride 2; 1 -> 5 -> 13 -> 30 -> 64), channels 4d, 2d, d, 3, ChannelNorm + SiLU
    except on the last. ``forward(stoch [..., S*C]) -> mean image [..., 3, 64, 64]`` in the x/255 - 0.5 space.
    """

    def __init__(self, stoch_dim: int, depth: int) -> None:
        super().__init__()
        self.depth = depth
        self.linear = nn.Linear(stoch_dim, 32 * depth)  # g(z): GenRL's reward features
        chans = [32 * depth, 4 * depth, 2 * depth, depth, 3]
        layers: list[nn.Module] = []
        for i, k in enumerate((5, 5, 6, 6)):
            layers.append(nn.ConvTranspose2d(chans[i], chans[i + 1], k, stride=2))
            if i < 3:
                layers += [ChannelNorm(chans[i + 1]), nn.SiLU()]
        self.net = nn.Sequential(*layers)

    def forward(self, stoch: Tensor) -> Tensor:
        batch = stoch.shape[:-1]
        x = self.linear(stoch).reshape(-1, 32 * self.depth, 1, 1)
        return self.net(x).reshape(*batch, 3, 64, 64)


class LayerNormGRU(nn.Module):
    """GRU cell with one fused Linear (no bias) and a LayerNorm over the 3 gates (DreamerV3).

    ``forward(x [B, inp], h [B, size]) -> h' [B, size]``; the update gate has a bias of ``update_bias`` (-1: keep h).
    For sequences whose inputs are known in advance, :meth:`scan` projects all inputs in one matmul and loops only over
    the recurrent half of the Linear (same result as calling :meth:`forward` step by step).
    """

    def __init__(self, inp: int, size: int, update_bias: float = -1.0) -> None:
        super().__init__()
        self.inp = inp
        self.linear = nn.Linear(inp + size, 3 * size, bias=False)
        self.norm = nn.LayerNorm(3 * size)
        self.update_bias = update_bias

    def _gates(self, parts: Tensor, h: Tensor) -> Tensor:
        reset, cand, update = self.norm(parts).chunk(3, -1)
        cand = torch.tanh(torch.sigmoid(reset) * cand)
        update = torch.sigmoid(update + self.update_bias)
        return update * cand + (1 - update) * h

    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        return self._gates(self.linear(torch.cat([x, h], -1)), h)

    def scan(self, x: Tensor, h: Tensor, keep: Tensor | None = None) -> Tensor:
        """Run over time: ``x [B, T, inp]``, initial ``h [B, size]``, optional ``keep [B, T, 1]`` (0 resets h before step t)
        -> all states ``[B, T, size]``."""
        w = self.linear.weight
        xp = F.linear(x, w[:, : self.inp])  # input half for every step at once
        w_h = w[:, self.inp:]
        out = []
        for t in range(x.shape[1]):
            if keep is not None:
                h = h * keep[:, t]
            h = self._gates(xp[:, t] + F.linear(h, w_h), h)
            out.append(h)
        return torch.stack(out, 1)
