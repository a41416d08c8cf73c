"""The batched scorer behind every GenRL reward wrapper: posterior filter + trajectory matching of the newest step.

:class:`LatentRewardScorer` filters ``B`` parallel observation streams through the world model's posterior in one
batched call per step (modes, not samples, so the reward is a deterministic function of seed and actions), keeps the
last ``history`` reward features of each stream's episode, and scores the newest step with
:func:`genrl_gym.reward.trajectory_match` against the prompt's target trajectory.

Reward on a growing window
--------------------------
The reward of agent step ``t`` (the transition that produced frame ``t``; frame 0 is the reset frame) is::

    window = features of frames max(0, t - history + 1) .. t of this episode      # [L, F], L = min(t + 1, history)
    r_t = trajectory_match(window[:, None], target.features, score_kind=...)[-1, 0]

i.e. the score of the newest frame after GenRL's sequence alignment of the window against the target. How alignment
plays out as the window grows (``window=8`` alignment steps, ``history=17``, a 17-step target):

- ``L <= 9``: there is only one possible offset, so frame ``i`` of the window is compared with target step ``i``: the
  episode's first frames are matched with the prompt's first steps, in order.
- ``10 <= L <= 17``: offsets ``0 .. L - 9`` are tried; the best-matching offset ``k*`` (the 8-step window of the agent's
  frames that best matches the target's first 8 steps) decides where the target "starts", and the newest frame is
  compared with target step ``L - 1 - k*``.
- once the window is full (``L = 17``) it slides: the newest frame is always compared with a target step in ``8 .. 16``,
  chosen by where the target's opening 8 steps best fit the last 17 frames.

So the reward rewards *being at the right phase* of the prompt's motion given the recent past, which is how the
reference scores imagined trajectories (it aligns whole imagined sequences the same way). The reset step itself earns no
reward (it is not a transition); in vector envs, autoreset steps return ``0.0``.

Filtering: GenRL's posterior reads the current frame only, and only its stochastic state enters the reward features
(``MFWM.reward_features(stoch)``), so the score of a frame needs the encoder and the posterior head but neither the GRU nor
the action. By default the wrappers therefore skip the GRU (the result is bit-identical to ``MFWM.obs_step`` with
``sample=False``, at a fraction of its cost); ``track_latent=True`` runs the full ``obs_step`` filter (``is_first`` on
reset frames, the clipped action otherwise) and exposes the posterior latent ``State`` as ``.latent``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from genrl_gym.reward.core import (ALIGN_WINDOW, ALIGNS, DEFAULT_HISTORY, DEFAULT_SCORE, KL_SCORES, SCORES,
                                   trajectory_match)

if TYPE_CHECKING:
    from genrl_gym.models import MFWM

__all__ = ["LatentRewardScorer", "frame_posterior", "posterior_step", "has_frame_posterior", "intra_op_threads"]


def frame_posterior(model: MFWM, frames: Tensor) -> tuple[Tensor, Tensor]:
    """Posterior mode of frames read one by one, without the GRU: ``(stoch [n, S*C], logits [n, S, C])``.

    GenRL's posterior reads the current frame only, so this equals ``MFWM.obs_step(..., sample=False)``'s stoch.

    :param model: the world model (its ``world_model`` must have ``encode`` and ``rssm.post_logits``).
    :param frames: uint8 ``[n, S, S, 3]`` on the model's device.
    """
    wm = model.world_model
    logits = wm.rssm.post_logits(wm.encode(frames))
    return wm.rssm.to_stoch(logits, False), logits


def has_frame_posterior(model: MFWM) -> bool:
    """True when the model's posterior can be called on frames alone (:func:`frame_posterior`)."""
    wm = getattr(model, "world_model", None)
    return hasattr(wm, "encode") and hasattr(getattr(wm, "rssm", None), "post_logits")


def posterior_step(model: MFWM, state: Any, actions: Tensor, frames: Tensor, is_first: Tensor) -> tuple[Any, Tensor, Tensor]:
    """One posterior filter step of ``n`` streams -> ``(new state or None, stoch [n, S*C], logits [n, S, C])``.

    :param state: the streams' latent ``State [n]`` for the full filter (``MFWM.obs_step``, GRU included), or None for
        the frame-only posterior (:func:`frame_posterior`; same stoch, a fraction of the cost).
    :param actions: float ``[n, A]``, the actions that led to the frames (read by the full filter only).
    :param frames: uint8 ``[n, S, S, 3]``. :param is_first: bool ``[n]``, True on reset frames.
    """
    if state is None:
        stoch, logits = frame_posterior(model, frames)
        return None, stoch, logits
    post = model.obs_step(state, actions, frames, is_first, sample=False)
    return post, post.stoch, post.logits


class LatentRewardScorer:
    """Posterior filter + trajectory-matching score for ``num_envs`` parallel episode streams.

    :param model: the world model (eval mode; never trained here).
    :param target_features: target reward features ``[Tt, F]`` (``TargetTrajectory.features``), ``Tt >= 8``.
    :param num_envs: B, the number of streams.
    :param history: frames kept per stream for alignment (H + 1 = 17 by default).
    :param score_kind: a feature score of :data:`genrl_gym.reward.SCORES`, or a KL score when ``target_logits`` is given.
    :param target_logits: target latent logits ``[Tt, S, C]``, needed by ``neg_kl``/``cosine_kl`` only.
    :param device: torch device of the computation (the model's device).
    :param align: ``"sequence"`` (GenRL's alignment), ``"phase"`` or ``"none"`` (:func:`genrl_gym.reward.trajectory_match`).
    :param track_latent: also run the GRU so that :attr:`state` is the model's full posterior latent ``State [B]`` (for
        agents and diagnostics). Rewards are identical either way: GenRL's posterior reads the current frame only, and
        the reward features read the posterior's stochastic state only, so by default the GRU and the prior head are
        skipped (a third or more of the model's per-step cost, benchmarks/results/reward.md).
    :param num_threads: torch intra-op threads used for the reward computation on CPU, set for the duration of each
        :meth:`observe` call and restored afterwards (None: leave torch's setting alone). Batch-1 inference of a small
        CNN gains nothing from intra-op parallelism, and on a loaded machine (other processes, subprocess vector envs)
        two threads were measured 10-40x slower than one (benchmarks/results/reward.md). The setting is process-wide
        while a call runs: other Python threads running torch at that moment see it too.
    """

    def __init__(self, model: MFWM, target_features: Tensor, num_envs: int, *, history: int = DEFAULT_HISTORY,
                 score_kind: str = DEFAULT_SCORE, target_logits: Tensor | None = None, device: str | torch.device = "cpu",
                 align: str = "sequence", track_latent: bool = False, num_threads: int | None = 1) -> None:
        if score_kind not in SCORES:
            raise ValueError(f"unknown score_kind {score_kind!r}; choose one of {', '.join(SCORES)}")
        if score_kind in KL_SCORES and target_logits is None:
            raise ValueError(f"score_kind={score_kind!r} compares latent distributions but the target has no logits; "
                             f"use a feature score ({', '.join(s for s in SCORES if s not in KL_SCORES)})")
        if history < 1:
            raise ValueError(f"history must be >= 1 frame, got {history}")
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if num_threads is not None and num_threads < 1:
            raise ValueError(f"num_threads must be None or >= 1, got {num_threads}")
        if target_features.dim() != 2:
            raise ValueError(f"target features must be [Tt, F], got {tuple(target_features.shape)}")
        if align not in ALIGNS:
            raise ValueError(f"unknown align {align!r}; choose one of {', '.join(ALIGNS)}")
        if align != "none" and target_features.shape[0] < ALIGN_WINDOW:
            raise ValueError(f"{align} alignment needs a target of >= {ALIGN_WINDOW} steps, got {target_features.shape[0]}")
        self.device = torch.device(device)
        self.model = model
        model_device = next(model.parameters()).device
        if model_device.type != self.device.type or (self.device.index is not None and model_device != self.device):
            raise ValueError(f"the world model is on {model_device} but device={str(self.device)!r}; pass device="
                             f"{str(model_device)!r} or move the model (model.to(...)) first")
        self.num_envs, self.history, self.score_kind, self.align = num_envs, history, score_kind, align
        self.num_threads = num_threads if self.device.type == "cpu" else None
        self.target = target_features.detach().to(self.device, torch.float32)
        self.target_logits = None if target_logits is None else target_logits.detach().to(self.device, torch.float32)
        self.use_logits = score_kind in KL_SCORES
        cfg = model.config
        self.action_dim = int(cfg.action_dim)
        self.image_size = int(cfg.image_size)
        feat_dim = int(self.target.shape[-1])
        if feat_dim != cfg.feature_dim:
            raise ValueError(f"target features have F={feat_dim} but the model's reward features have F={cfg.feature_dim}; "
                             "build the target with the same model")
        if not has_frame_posterior(model):
            track_latent = True  # no image-only posterior to call directly: use the model's full filter
        self.state: Any = None
        if track_latent:
            with torch.inference_mode():
                self.state = model.initial_state(num_envs).to(self.device)
        # window[:, i] holds stream i's last `history` features in time order, right-aligned; lengths[i] are valid
        self.window = torch.zeros(history, num_envs, feat_dim, device=self.device)
        s, c = cfg.world_model.stoch, cfg.world_model.classes
        self.logit_window = torch.zeros(history, num_envs, s, c, device=self.device) if self.use_logits else None
        self.lengths = np.zeros(num_envs, dtype=np.int64)

    def observe(self, actions: np.ndarray | None, images: np.ndarray, is_first: np.ndarray | Sequence[bool],
                indices: np.ndarray | Sequence[int] | None = None) -> np.ndarray:
        """Filter one frame per selected stream and score it.

        :param actions: float ``[n, A]``, the action that led to each frame (ignored where ``is_first``; None = zeros).
        :param images: uint8 ``[n, S, S, 3]`` (HWC) frames.
        :param is_first: bool ``[n]``: True starts a new episode for that stream with this frame (reset frame).
        :param indices: int ``[n]`` streams the rows belong to (None = all ``num_envs`` streams in order).
        :return: float32 ``[n]`` rewards of these steps; 0.0 for reset frames.
        """
        idx = np.arange(self.num_envs) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(idx)
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        images = np.asarray(images)
        if images.shape != (n, self.image_size, self.image_size, 3) or images.dtype != np.uint8:
            raise ValueError(f"expected uint8 frames [{n}, {self.image_size}, {self.image_size}, 3], "
                             f"got {images.dtype} {images.shape}")
        first = np.asarray(is_first, dtype=bool).reshape(n)
        if actions is None:
            actions = np.zeros((n, self.action_dim), dtype=np.float32)
        actions = np.asarray(actions, dtype=np.float32).reshape(n, -1)
        if actions.shape[1] != self.action_dim:
            raise ValueError(f"actions have {actions.shape[1]} dims but the world model was trained with {self.action_dim}; "
                             "use an env of the model's domain")
        with torch.inference_mode(), intra_op_threads(self.num_threads):
            dev = self.device
            full = n == self.num_envs and bool(np.all(idx == np.arange(self.num_envs)))
            t_idx = None if full else torch.as_tensor(idx, device=dev)
            frames = torch.as_tensor(images, device=dev)
            prev = None if self.state is None else (self.state if full else self.state.index(t_idx))
            post, stoch, logits = posterior_step(self.model, prev, torch.as_tensor(actions, device=dev), frames,
                                                 torch.as_tensor(first, device=dev))
            if self.state is not None:
                self.state = post if t_idx is None else _scatter_state(self.state, t_idx, post)  # t_idx None <=> full
            feats = self.model.reward_features(stoch).float()  # [n, F]
            if full:
                self.window = torch.cat([self.window[1:], feats[None]], 0)
                if self.logit_window is not None:
                    self.logit_window = torch.cat([self.logit_window[1:], logits.float()[None]], 0)
            else:
                col = self.window[:, t_idx]
                self.window[:, t_idx] = torch.cat([col[1:], feats[None]], 0)
                if self.logit_window is not None:
                    lcol = self.logit_window[:, t_idx]
                    self.logit_window[:, t_idx] = torch.cat([lcol[1:], logits.float()[None]], 0)
            self.lengths[idx] = np.where(first, 1, np.minimum(self.lengths[idx] + 1, self.history))
            rewards = np.zeros(n, dtype=np.float32)
            scored = ~first
            if scored.any():
                rewards[scored] = self._score(idx[scored])
        return rewards

    def _score(self, streams: np.ndarray) -> np.ndarray:
        """Score the newest frame of each stream; streams with equal window lengths share one call (exact, no padding)."""
        out = np.zeros(len(streams), dtype=np.float32)
        lengths = self.lengths[streams]
        for length in np.unique(lengths):
            rows = np.nonzero(lengths == length)[0]
            cols = torch.as_tensor(streams[rows], device=self.device)
            win = self.window[-int(length):, cols]  # [L, b, F]
            a_logits = None if self.logit_window is None else self.logit_window[-int(length):, cols]
            r = trajectory_match(win, self.target, score_kind=self.score_kind, align=self.align,  # type: ignore[arg-type]
                                 window=ALIGN_WINDOW, a_logits=a_logits, b_logits=self.target_logits)
            out[rows] = r[-1].float().cpu().numpy()
        return out

    def window_features(self, stream: int = 0) -> Tensor:
        """The features of stream ``stream``'s current window, ``[L, F]`` (oldest first)."""
        return self.window[self.history - int(self.lengths[stream]):, stream].clone()


@contextlib.contextmanager
def intra_op_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads (None or already ``n``: unchanged), then restore the setting."""
    before = torch.get_num_threads()
    if n is None or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _scatter_state(state: Any, index: Tensor, rows: Any) -> Any:
    """Copy ``rows`` (a State ``[n]``) into ``state`` (``[B]``) at ``index`` -> new State ``[B]``."""
    fields = []
    for full, part in zip(state, rows):
        new = full.clone()
        new[index] = part.to(new.dtype)
        fields.append(new)
    return type(state)(*fields)


