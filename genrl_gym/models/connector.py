"""Connector (GenRL paper): a prior-only RSSM that turns VLM embeddings into world-model latent sequences.

Input per step ("action" slot): ``concat(sqrt(D) * e_t, onehot(t mod 8) * 0)``. The initial deterministic state comes from
an MLP of the first input; its stoch is *sampled* from the prior head (also for mode rollouts, as the reference).
Training is teacher-forced on the world model's (detached) posterior stoch; inference rolls out on its own latents.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genrl_gym.models.networks import dense
from genrl_gym.models.presets import ConnectorConfig, WorldModelConfig
from genrl_gym.models.rssm import PriorCore, State

__all__ = ["Connector", "window_embeddings"]


def window_embeddings(embedding: Tensor, n_frames: int = 8) -> Tensor:
    """Per-step connector embeddings of a training segment.

    Store row ``t`` holds the embedding of the window of frames ``t-7 .. t``, so segment rows ``7, 15, 23, ...`` are the
    windows that exactly cover chunks ``[0, 8), [8, 16), ...`` of the segment; each is repeated over its chunk.
    ``embedding [B, T, D]`` (T a multiple of ``n_frames``) -> ``[B, T, D]``.
    """
    B, T, D = embedding.shape
    if T % n_frames:
        raise ValueError(f"segment length {T} is not a multiple of the VLM window {n_frames}")
    return embedding[:, n_frames - 1::n_frames].repeat_interleave(n_frames, dim=1)


class Connector(nn.Module):
    """Embedding-conditioned prior over the world model's latent space (own weights, same S x C latents)."""

    def __init__(self, cfg: ConnectorConfig, wm_cfg: WorldModelConfig, embed_dim: int) -> None:
        super().__init__()
        self.cfg, self.embed_dim = cfg, embed_dim
        self.input_dim = embed_dim + cfg.n_frames
        self.core = PriorCore(self.input_dim, cfg.deter, cfg.hidden, wm_cfg.stoch, wm_cfg.classes, wm_cfg.unimix,
                              wm_cfg.gru_update_bias)
        self.init_mlp = nn.Sequential(dense(self.input_dim, cfg.hidden), dense(cfg.hidden, cfg.hidden),
                                      nn.Linear(cfg.hidden, cfg.deter))

    def inputs(self, embedding: Tensor) -> Tensor:
        """Unit-norm ``embedding [B, T, D]`` -> network inputs ``[B, T, D + n_frames]`` (scaled, temporal one-hot)."""
        B, T, _ = embedding.shape
        scale = math.sqrt(self.embed_dim) if self.cfg.rescale_embeds else 1.0
        pos = F.one_hot(torch.arange(T, device=embedding.device) % self.cfg.n_frames, self.cfg.n_frames).to(embedding.dtype)
        pos = pos * float(self.cfg.temporal_embeds)  # present but zeroed by default (reference)
        return torch.cat([embedding * scale, pos.expand(B, T, -1)], -1)

    def initial(self, first_input: Tensor, generator: torch.Generator | None = None) -> State:
        """Learned initial state from ``first_input [B, D + n_frames]``; stoch sampled from the prior head."""
        return self.core.from_deter(self.init_mlp(first_input), sample=True, generator=generator)

    def teacher_forced(self, embedding: Tensor, post_stoch: Tensor, generator: torch.Generator | None = None) -> State:
        """Connector priors ``[B, T]`` for a segment: step t reads the WM posterior stoch of step t-1 (``post_stoch
        [B, T, S*C]``, detach it before calling) and the connector's own deter; step 0 starts from the learned initial
        state. ``embedding [B, T, D]`` is already per-step (see :func:`window_embeddings`)."""
        x = self.inputs(embedding)
        init = self.initial(x[:, 0], generator)
        prev_stoch = torch.cat([init.stoch[:, None], post_stoch[:, :-1]], 1)
        deter = self.core.deter_scan(prev_stoch, init.deter, x)
        return self.core.from_deter(deter, sample=True, generator=generator)

    def rollout(self, embedding: Tensor, sample: bool = False, generator: torch.Generator | None = None) -> State:
        """Free-running imagination: ``embedding [B, T, D]`` -> States ``[B, T]`` (step 0 is one step after the learned
        initial state). ``sample=False`` uses modes after the (always sampled) initial stoch."""
        x = self.inputs(embedding)
        state, out = self.initial(x[:, 0], generator), []
        for t in range(x.shape[1]):
            state = self.core.img_step(state, x[:, t], sample, generator)
            out.append(state)
        return State.stack(out, 1)
