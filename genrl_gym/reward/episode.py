"""The per-step GenRL reward of a whole recorded episode, computed as the envs compute it step by step.

:func:`score_episode` is what the report, the benchmarks and the tests use to score recorded frames: posterior modes of
each frame read one at a time (:func:`episode_features`, the envs' filter), then the score of every step after aligning
its growing window against the target (:func:`env_rewards`). On one machine the result equals, bit for bit, the
rewards :class:`~genrl_gym.wrappers.GenRLReward` returns on the same frames (``tests/test_reward_identity.py``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from genrl_gym.reward.core import ALIGN_WINDOW, DEFAULT_HISTORY, DEFAULT_SCORE, KL_SCORES, trajectory_match
from genrl_gym.reward.scorer import frame_posterior, has_frame_posterior, intra_op_threads, posterior_step
from genrl_gym.reward.spec import RewardSpec, aligned_target, reward_spec, target_logits

if TYPE_CHECKING:
    from genrl_gym.models import MFWM
    from genrl_gym.prompts import TargetTrajectory

__all__ = ["posterior_modes", "episode_features", "env_rewards", "score_episode"]


@torch.no_grad()
def posterior_modes(model: MFWM, images: np.ndarray, *, batch: int = 256) -> tuple[Tensor, Tensor]:
    """Posterior modes of frames and their reward features, ``batch`` frames per model call.

    The same computation as the envs' (:func:`~genrl_gym.reward.scorer.frame_posterior`), batched for speed: values
    differ from the envs' one-frame calls by float rounding (~1e-7); :func:`episode_features` gives the envs' numbers.

    :param images: uint8 frames ``[L, H, W, 3]``.
    :return: ``(stoch [L, S*C], features [L, F])`` float32 on CPU.
    """
    dev = model.device
    stochs, feats = [], []
    for i in range(0, len(images), batch):
        stoch, _ = frame_posterior(model, torch.as_tensor(np.ascontiguousarray(images[i:i + batch]), device=dev))
        stochs.append(stoch.float().cpu())
        feats.append(model.reward_features(stoch).float().cpu())
    return torch.cat(stochs), torch.cat(feats)


def episode_features(model: MFWM, images: np.ndarray, actions: np.ndarray | None = None, *, track_latent: bool = False,
                     num_threads: int | None = 1) -> tuple[Tensor, Tensor]:
    """Reward features and latent logits of an episode's frames, filtered one frame per call as the envs filter them.

    :param images: uint8 frames ``[L, S, S, 3]``; frame 0 is the reset frame.
    :param actions: float ``[L - 1, A]`` (the action before each frame after the first) or ``[L, A]`` (row 0 ignored);
        read only by the full filter (``track_latent``), clipped to ``[-1, 1]`` as the envs apply them. None: zeros.
    :param track_latent: run the full filter (GRU included) as the wrappers do with ``track_latent=True`` (same values).
    :param num_threads: torch intra-op threads on CPU while filtering (the wrappers' default 1; None: unchanged).
    :return: ``(features [L, F], logits [L, S, C])`` float32 on the model's device.
    """
    images = np.asarray(images)
    length = len(images)
    a_dim = int(model.config.action_dim)
    acts = np.zeros((length, a_dim), np.float32)
    if actions is not None:
        given = np.asarray(actions, dtype=np.float32).reshape(-1, a_dim)
        if len(given) not in (length - 1, length):
            raise ValueError(f"{len(given)} actions for {length} frames: pass one per step ({length - 1}, the reset "
                             f"frame has none) or one per frame ({length})")
        acts[length - len(given):] = np.clip(given, -1.0, 1.0)
    dev = model.device
    state = model.initial_state(1).to(dev) if track_latent or not has_frame_posterior(model) else None
    feats, logits = [], []
    with torch.inference_mode(), intra_op_threads(num_threads if dev.type == "cpu" else None):
        for t in range(length):
            state, stoch, logit = posterior_step(model, state, torch.as_tensor(acts[t:t + 1], device=dev),
                                                 torch.as_tensor(images[t:t + 1], device=dev),
                                                 torch.as_tensor([t == 0], device=dev))
            feats.append(model.reward_features(stoch).float())
            logits.append(logit.float())
    return torch.cat(feats), torch.cat(logits)


@torch.no_grad()
def env_rewards(features: Tensor, target: Tensor, *, history: int = DEFAULT_HISTORY, score_kind: str = DEFAULT_SCORE,
                align: str = "sequence", a_logits: Tensor | None = None, b_logits: Tensor | None = None) -> np.ndarray:
    """GenRL reward of every step of one episode, as ``GenRLReward`` returns it step by step.

    Row ``t``'s reward is the score of frame ``t`` after aligning frames ``max(0, t - history + 1) .. t`` against the
    target (:func:`genrl_gym.reward.trajectory_match`, window 8); row 0 (the reset frame) gets 0. The growing windows
    are scored one call each, the full ones in one batched call.

    :param features: reward features of the episode's frames ``[L, F]``.
    :param target: target reward features ``[Tt, F]``.
    :param a_logits: latent logits of the frames ``[L, S, C]``, for the KL scores.
    :param b_logits: target logits ``[Tt, S, C]``, for the KL scores.
    :return: float64 ``[L]``.
    """
    feats = features.float()
    target = target.float().to(feats.device)
    b_logits = None if b_logits is None else b_logits.float().to(feats.device)
    a_logits = None if a_logits is None else a_logits.float().to(feats.device)
    length = feats.shape[0]
    out = np.zeros(length, dtype=np.float64)
    kw: dict[str, Any] = {"score_kind": score_kind, "align": align, "window": ALIGN_WINDOW, "b_logits": b_logits}
    for t in range(1, min(history - 1, length)):  # growing windows: one call each (the envs' first steps)
        win_logits = None if a_logits is None else a_logits[:t + 1, None]
        out[t] = float(trajectory_match(feats[:t + 1, None], target, a_logits=win_logits, **kw)[-1, 0])
    if length >= history:  # full windows: all at once, one batch column per step
        windows = feats.unfold(0, history, 1).permute(2, 0, 1)  # [history, L - history + 1, F]
        win_logits = None if a_logits is None else a_logits.unfold(0, history, 1).permute(3, 0, 1, 2)
        out[history - 1:] = trajectory_match(windows, target, a_logits=win_logits, **kw)[-1].double().cpu().numpy()
    out[0] = 0.0  # the reset frame is no transition (with history=1 the batch above scored it)
    return out


def score_episode(spec: RewardSpec | MFWM | str | os.PathLike[str], images: np.ndarray,
                  actions: np.ndarray | None = None, *, target: TargetTrajectory | None = None,
                  features: tuple[Tensor, Tensor] | None = None, **overrides: Any) -> np.ndarray:
    """The per-step GenRL reward of one recorded episode, exactly as the ``GenRL/<Domain>-v0`` envs give it.

    :param spec: a :class:`RewardSpec`, or its ``model`` (an MFWM, a checkpoint path or a model name).
    :param images: uint8 frames ``[L, S, S, 3]`` of the episode; frame 0 is the reset frame.
    :param actions: the actions (see :func:`episode_features`; read with ``track_latent`` only, the rewards do not depend
        on them).
    :param target: the prompt's target trajectory, to score several episodes against one target without rebuilding it
        (default: built from the spec's prompt as the envs build it, :func:`~genrl_gym.reward.aligned_target`).
    :param features: ``(features [L, F], logits [L, S, C])`` of :func:`episode_features`, to score one episode against
        several targets without filtering it again (``images`` is then ignored).
    :param overrides: :class:`RewardSpec` fields replacing the spec's (``prompt=``, ``score_kind=``...).
    :return: float32 ``[L]``: row ``t`` is the reward of agent step ``t`` (row 0, the reset frame, is 0.0).
    """
    if not isinstance(spec, RewardSpec):
        spec = RewardSpec(model=spec)
    spec = reward_spec(spec, **overrides)
    model = spec.resolve_model()
    if target is None:
        target, align = aligned_target(model, spec.prompt, spec.vlm, history=spec.history, horizon=spec.horizon,
                                       align=spec.align)
    else:
        align = model.reward_align if spec.align is None else spec.align
    if features is None:
        features = episode_features(model, images, actions, track_latent=spec.track_latent, num_threads=spec.num_threads)
    feats, logits = features
    kl = target_logits(target) if spec.score_kind in KL_SCORES else None
    with intra_op_threads(spec.num_threads if model.device.type == "cpu" else None):
        rewards = env_rewards(feats, target.features.detach(), history=spec.history, score_kind=spec.score_kind,
                              align=align, a_logits=None if kl is None else logits, b_logits=kl)
    return rewards.astype(np.float32)
