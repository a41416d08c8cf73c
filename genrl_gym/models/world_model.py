"""The pixel world model: CNN encoder -> RSSM (image-only posterior) -> stoch-only CNN decoder (GenRL paper)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from genrl_gym.models.networks import Decoder, Encoder, image_to_input
from genrl_gym.models.presets import WorldModelConfig
from genrl_gym.models.rssm import RSSM, State

__all__ = ["WorldModel"]


class WorldModel(nn.Module):
    """Encoder, RSSM and decoder of one domain. No reward head (GenRL does not use one).

    Latent sizes: deter ``Dd = cfg.deter``, stoch ``S*C = cfg.stoch * cfg.classes``, reward features ``F = 32 * cnn_depth``.
    """

    def __init__(self, cfg: WorldModelConfig, action_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg.cnn_depth)
        self.rssm = RSSM(self.encoder.out_dim, action_dim, cfg.deter, cfg.hidden, cfg.stoch, cfg.classes, cfg.unimix,
                         cfg.gru_update_bias)
        self.decoder = Decoder(cfg.stoch * cfg.classes, cfg.cnn_depth)

    def encode(self, image: Tensor) -> Tensor:
        """uint8 frames ``[..., 64, 64, 3]`` -> embeddings ``[..., 32 * cnn_depth]``."""
        return self.encoder(image_to_input(image))

    def observe(self, image: Tensor, action: Tensor, is_first: Tensor, state: State | None = None, sample: bool = True,
                generator: torch.Generator | None = None) -> tuple[State, State]:
        """``image uint8 [B, T, 64, 64, 3]``, ``action [B, T, A]``, ``is_first bool [B, T]`` -> (post, prior) ``[B, T]``."""
        return self.rssm.observe(self.encode(image), action.float(), is_first, state, sample, generator)

    def decode(self, stoch: Tensor) -> Tensor:
        """``stoch [..., S*C]`` -> predicted image mean ``[..., 3, 64, 64]`` in the x/255 - 0.5 space."""
        return self.decoder(stoch)

    def features(self, stoch: Tensor) -> Tensor:
        """GenRL's reward features: the decoder's first Linear (with bias) on ``stoch [..., S*C]`` -> ``[..., F]``."""
        return self.decoder.linear(stoch)
