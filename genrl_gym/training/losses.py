"""Losses of the MFWM as small pure functions (GenRL paper; DreamerV3's KL balancing).

* world model: ``L = kl_scale * KL_balanced + image_scale * L_image``; the KL is summed over the S categoricals, clamped at
  ``free`` nats per (b, t) *before* the mean, split ``(1 - balance)`` representation / ``balance`` dynamics.
* connector: ``loss_scale * balance * max(KL[p_conn || sg(q_wm)], free)``; the WM posterior is detached, so the reference's
  second term ``(1 - balance) KL[sg(p_conn) || q_wm]`` has no gradient and is left out (its value is logged as the KL).
* aligner: ``1 - cos(aligner(corrupt(e)), e)`` on the clean per-step connector embeddings.
Metric dicts hold detached 0-d tensors (no device sync until logged).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from genrl_gym.models.aligner import Aligner, corrupt
from genrl_gym.models.connector import Connector, window_embeddings
from genrl_gym.models.networks import image_to_input
from genrl_gym.models.presets import MFWMConfig
from genrl_gym.models.rssm import State, categorical_kl, log_probs
from genrl_gym.models.world_model import WorldModel

__all__ = ["kl_balance_loss", "image_loss", "connector_kl_loss", "aligner_loss", "world_model_loss",
           "connector_aligner_loss"]

Metrics = dict[str, Tensor]


def kl_balance_loss(post_logits: Tensor, prior_logits: Tensor, *, unimix: float, free: float = 1.0, balance: float = 0.85,
                    scale: float = 0.6) -> tuple[Tensor, Metrics]:
    """DreamerV3 KL balancing. ``post_logits, prior_logits [B, T, S, C]`` -> (scalar loss, metrics).

    ``scale * ((1 - balance) * mean(max(KL[q || sg(p)], free)) + balance * mean(max(KL[sg(q) || p], free)))``.
    """
    rep = categorical_kl(post_logits, prior_logits.detach(), unimix)  # [B, T], trains the posterior (encoder)
    dyn = categorical_kl(post_logits.detach(), prior_logits, unimix)  # [B, T], trains the prior (dynamics)
    loss = scale * ((1 - balance) * rep.clamp(min=free).mean() + balance * dyn.clamp(min=free).mean())
    return loss, {"kl": dyn.detach().mean(), "kl_rep_loss": rep.detach().clamp(min=free).mean(),
                  "kl_dyn_loss": dyn.detach().clamp(min=free).mean()}


def image_loss(pred: Tensor, image: Tensor) -> Tensor:
    """Squared error summed over (C, H, W) on the x/255 - 0.5 scale, mean over the rest.

    ``pred [..., 3, H, W]`` (decoder mean), ``image uint8 [..., H, W, 3]`` -> scalar.
    """
    return (pred.float() - image_to_input(image)).square().sum((-3, -2, -1)).mean()


def connector_kl_loss(conn_logits: Tensor, post_logits: Tensor, *, unimix: float, balance: float = 0.8,
                      free: float = 0.0) -> tuple[Tensor, Tensor]:
    """``balance * mean(max(KL[p_conn || sg(q_wm)], free))``. ``[B, T, S, C]`` each -> (scalar loss, KL per (b, t) [B, T])."""
    kl = categorical_kl(conn_logits, post_logits.detach(), unimix)
    return balance * kl.clamp(min=free).mean(), kl.detach()


def aligner_loss(aligner: Aligner, embedding: Tensor, noise: float = 0.5,
                 generator: torch.Generator | None = None) -> Tensor:
    """``1 - cos(aligner(corrupt(e)), e)`` averaged; ``embedding [..., D]`` unit-norm -> scalar (fresh noise each row)."""
    e = embedding.float()
    return 1 - F.cosine_similarity(aligner(corrupt(e, noise, generator)), e, dim=-1).mean()


def world_model_loss(wm: WorldModel, batch: dict[str, Tensor], cfg: MFWMConfig,
                     generator: torch.Generator | None = None) -> tuple[Tensor, State, Metrics]:
    """World-model loss on a batch (``image uint8 [B, T, 64, 64, 3]``, ``action [B, T, A]``, ``is_first [B, T]``).

    Returns (scalar loss, posterior State [B, T] (with gradients), metrics).
    """
    c = cfg.world_model
    post, prior = wm.observe(batch["image"], batch["action"], batch["is_first"], generator=generator)
    kl, metrics = kl_balance_loss(post.logits, prior.logits, unimix=c.unimix, free=c.kl_free, balance=c.kl_balance,
                                  scale=c.kl_scale)
    img = image_loss(wm.decode(post.stoch), batch["image"])
    loss = kl + c.image_scale * img
    metrics.update(image_loss=img.detach(), wm_loss=loss.detach(),
                   post_entropy=_entropy(post.logits, c.unimix), prior_entropy=_entropy(prior.logits, c.unimix))
    return loss, post, metrics


def connector_aligner_loss(connector: Connector, aligner: Aligner | None, embedding: Tensor, post: State, cfg: MFWMConfig,
                           generator: torch.Generator | None = None) -> tuple[Tensor, Metrics]:
    """Connector KL (teacher-forced on the detached posterior ``post [B, T]``) plus the aligner loss.

    ``embedding [B, T, D]``: store embeddings of the segment (row t = window ending at t); windowed here.
    """
    cc, wc = cfg.connector, cfg.world_model
    e = window_embeddings(embedding.float(), cc.n_frames)
    post = post.detach()
    prior = connector.teacher_forced(e, post.stoch, generator)
    loss, kl = connector_kl_loss(prior.logits, post.logits, unimix=wc.unimix, balance=cc.kl_balance, free=cc.kl_free)
    loss = cc.loss_scale * loss
    metrics: Metrics = {"connector_kl": kl.mean(), "connector_loss": loss.detach()}
    if aligner is not None:
        al = aligner_loss(aligner, e, cfg.aligner.noise, generator)
        loss = loss + cfg.aligner.loss_scale * al
        metrics["aligner_cosine_distance"] = al.detach()
    return loss, metrics


def _entropy(logits: Tensor, unimix: float) -> Tensor:
    lp = log_probs(logits.detach(), unimix)
    return -(lp.exp() * lp).sum((-2, -1)).mean()
