"""GenRL's trajectory-matching reward on real observations, as Gymnasium wrappers (METHOD.md section 7).

Three layers, one computation:

- :class:`LatentRewardScorer` filters ``B`` parallel observation streams through the world model's posterior in one
  batched call per step (modes, not samples, so the reward is a deterministic function of seed and actions), keeps the
  last ``history`` reward features of each stream's episode, and scores the newest step with
  :func:`genrl_gym.reward.trajectory_match` against the prompt's target trajectory.
- :class:`GenRLReward` (a :class:`gymnasium.Wrapper`) uses it with ``B = 1`` around a single pixel env.
- :class:`GenRLVectorReward` (a :class:`gymnasium.vector.VectorWrapper`) uses it with ``B = num_envs`` around a Gymnasium
  vector env of pixel envs (what ``gym.make_vec("GenRL/Walker-v0", num_envs=N)`` builds), in every autoreset mode.

The SB3 counterpart, :class:`genrl_gym.wrappers.VecGenRLReward`, shares the scorer.

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
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, SupportsFloat

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv, VectorWrapper
from torch import Tensor

from genrl_gym.reward import ALIGNS, SCORES, target_horizon, trajectory_match
from genrl_gym.utils import CheckpointError, PromptError

if TYPE_CHECKING:
    from genrl_gym.models import MFWM
    from genrl_gym.prompts import TargetTrajectory
    from genrl_gym.vlm import VLM

__all__ = ["LatentRewardScorer", "GenRLReward", "GenRLVectorReward", "build_target", "aligned_target", "image_layout",
           "to_hwc", "env_domain", "DEFAULT_HISTORY", "DEFAULT_HORIZON"]

#: Target horizon H of GenRL's imagination (the target has H + 1 steps).
DEFAULT_HORIZON = 16
#: Frames of the episode kept for alignment: H + 1, the length of an imagined trajectory.
DEFAULT_HISTORY = DEFAULT_HORIZON + 1
#: Alignment window (the VLM's 8 frames).
_ALIGN_WINDOW = 8
_KL_SCORES = ("neg_kl", "cosine_kl")


# ----------------------------------------------------------------------------------------------------------------------
# helpers shared with the SB3 wrapper


def image_layout(space: spaces.Space[Any], image_size: int, obs_key: str = "image") -> tuple[str | None, str]:
    """Where the image is in an observation space and how it is laid out.

    :param space: a ``Dict`` space with an ``obs_key`` entry, or a ``Box`` image space (single-env, no batch dim).
    :param image_size: the model's frame size S.
    :return: ``(key or None, "hwc" | "chw")``: ``"hwc"`` for ``(S, S, 3)``, ``"chw"`` for ``(3, S, S)`` (e.g. after SB3's
        ``VecTransposeImage``).
    :raises ValueError: no image entry, wrong dtype or shape (message says what the model needs).
    """
    key: str | None = None
    if isinstance(space, spaces.Dict):
        if obs_key not in space.spaces:
            raise ValueError(f"observation space has no {obs_key!r} entry (keys: {list(space.spaces)}); GenRL rewards need "
                             f"the pixel observation: wrap a genrl_gym.envs.make_pixel_env env or pass obs_key=")
        key, space = obs_key, space.spaces[obs_key]
    if not isinstance(space, spaces.Box) or space.dtype != np.uint8:
        raise ValueError(f"GenRL rewards need uint8 image observations, got {space}")
    s = image_size
    if tuple(space.shape) == (s, s, 3):
        return key, "hwc"
    if tuple(space.shape) == (3, s, s):
        return key, "chw"
    raise ValueError(f"image observations of shape {space.shape} do not match the world model's {s}x{s} RGB frames "
                     f"(expected ({s}, {s}, 3) or (3, {s}, {s})); render the env at image_size={s}")


def to_hwc(images: np.ndarray, layout: str) -> np.ndarray:
    """``uint8 [..., S, S, 3]`` (hwc) or ``[..., 3, S, S]`` (chw) -> ``uint8 [..., S, S, 3]``."""
    images = np.asarray(images)
    return np.moveaxis(images, -3, -1) if layout == "chw" else images


def env_domain(env: Any) -> str | None:
    """The dm_control domain of a genrl-gym pixel env (``"walker"``...), or None when the env does not say."""
    base = getattr(env, "unwrapped", env)
    for attr in ("domain", "domain_name"):
        value = getattr(base, attr, None)
        if isinstance(value, str) and value:
            return value
    spec = getattr(base, "task_spec", None)  # genrl_gym.envs.PixelEnv
    if isinstance(getattr(spec, "domain", None), str):
        return spec.domain
    settings = getattr(base, "render_settings", None)
    if isinstance(settings, Mapping) and isinstance(settings.get("domain"), str):
        return settings["domain"]
    return None


def _check_prompt(prompt: object) -> None:
    if prompt is None:
        raise PromptError("a prompt is required: pass a text (e.g. prompt='walk fast'), a video (a path to a .gif/.mp4 or "
                          "a uint8 array [T, H, W, 3]) or an image (a .png/.jpg path or a uint8 array [H, W, 3])")
    if isinstance(prompt, str) and not prompt.strip():
        raise PromptError("the prompt is empty: pass a text describing the behaviour (e.g. 'walk fast') or a video path")


def build_target(model: MFWM, prompt: str | os.PathLike[str] | np.ndarray, vlm: VLM | str | Mapping[str, Any] | None,
                 horizon: int = DEFAULT_HORIZON) -> TargetTrajectory:
    """The prompt's target trajectory (``features [H + 1, F]``) via :func:`genrl_gym.prompts.target_from_prompt`.

    :param prompt: text, a video (path or uint8 ``[T, H, W, 3]``) or an image (path or uint8 ``[H, W, 3]``).
    :param vlm: a VLM, a ``load_vlm`` spec, or None (the model's own VLM).
    :raises PromptError: empty, over-long or unreadable prompt; an array of ambiguous layout; a text prompt for a VLM
        without language.
    """
    from genrl_gym.prompts import target_from_prompt

    _check_prompt(prompt)
    if isinstance(prompt, os.PathLike) and not isinstance(prompt, Path):
        prompt = Path(os.fspath(prompt))  # any PathLike is a video file (prompts treats Path objects as such)
    if vlm is not None and not hasattr(vlm, "embed_video"):
        from genrl_gym.vlm import load_vlm

        vlm = load_vlm(vlm)
    return target_from_prompt(model, prompt, vlm=vlm, horizon=horizon)


def aligned_target(model: MFWM, prompt: str | os.PathLike[str] | np.ndarray, vlm: VLM | str | Mapping[str, Any] | None,
                   *, history: int = DEFAULT_HISTORY, horizon: int | None = None,
                   align: str | None = None) -> tuple[TargetTrajectory, str]:
    """The wrappers' target and alignment: ``align`` (default the model's ``reward_align``) and the prompt's target of
    ``horizon`` steps after the first (default what that alignment expects for ``history`` frames,
    :func:`genrl_gym.reward.target_horizon`). -> ``(target, align)``."""
    align = model.reward_align if align is None else align
    return build_target(model, prompt, vlm, target_horizon(align, history) if horizon is None else horizon), align


# ----------------------------------------------------------------------------------------------------------------------
# the batched scorer


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
                 score_kind: str = "max_cosine", target_logits: Tensor | None = None, device: str | torch.device = "cpu",
                 align: str = "sequence", track_latent: bool = False, num_threads: int | None = 1) -> None:
        if score_kind not in SCORES:
            raise ValueError(f"unknown score_kind {score_kind!r}; choose one of {', '.join(SCORES)}")
        if score_kind in _KL_SCORES and target_logits is None:
            raise ValueError(f"score_kind={score_kind!r} compares latent distributions but the target has no logits; "
                             f"use a feature score ({', '.join(s for s in SCORES if s not in _KL_SCORES)})")
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
        if align != "none" and target_features.shape[0] < _ALIGN_WINDOW:
            raise ValueError(f"{align} alignment needs a target of >= {_ALIGN_WINDOW} steps, got {target_features.shape[0]}")
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
        self.use_logits = score_kind in _KL_SCORES
        cfg = model.config
        self.action_dim = int(cfg.action_dim)
        self.image_size = int(cfg.image_size)
        feat_dim = int(self.target.shape[-1])
        if feat_dim != cfg.feature_dim:
            raise ValueError(f"target features have F={feat_dim} but the model's reward features have F={cfg.feature_dim}; "
                             "build the target with the same model")
        wm = getattr(model, "world_model", None)
        if not (hasattr(wm, "encode") and hasattr(getattr(wm, "rssm", None), "post_logits")):
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
        with torch.inference_mode(), _intra_op_threads(self.num_threads):
            dev = self.device
            full = n == self.num_envs and bool(np.all(idx == np.arange(self.num_envs)))
            t_idx = None if full else torch.as_tensor(idx, device=dev)
            frames = torch.as_tensor(images, device=dev)
            if self.state is not None:  # full filter: GRU + posterior, keeps the whole latent
                prev = self.state if full else self.state.index(t_idx)
                post = self.model.obs_step(prev, torch.as_tensor(actions, device=dev), frames,
                                           torch.as_tensor(first, device=dev), sample=False)
                self.state = post if full else _scatter_state(self.state, t_idx, post)
                stoch, logits = post.stoch, post.logits
            else:  # the posterior reads the current frame only: its mode needs neither the GRU nor the action
                wm = self.model.world_model
                logits = wm.rssm.post_logits(wm.encode(frames))
                stoch = wm.rssm.to_stoch(logits, False)
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
                                 window=_ALIGN_WINDOW, a_logits=a_logits, b_logits=self.target_logits)
            out[rows] = r[-1].float().cpu().numpy()
        return out

    def window_features(self, stream: int = 0) -> Tensor:
        """The features of stream ``stream``'s current window, ``[L, F]`` (oldest first)."""
        return self.window[self.history - int(self.lengths[stream]):, stream].clone()


@contextlib.contextmanager
def _intra_op_threads(n: int | None) -> Iterator[None]:
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


def _target_logits(target: Any) -> Tensor | None:
    logits = getattr(target, "logits", None)
    return logits if isinstance(logits, Tensor) else None


# ----------------------------------------------------------------------------------------------------------------------
# single env


class GenRLReward(gym.Wrapper[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray], np.ndarray]):
    """Replace a pixel env's reward with GenRL's trajectory-matching score of the latest step.

    :param env: a genrl-gym pixel env (observation ``{"image": uint8 [64, 64, 3]}``; a Box image space works too).
    :param model: an MFWM, a checkpoint path or a model name (:func:`genrl_gym.model_store.resolve_model`); it must belong
        to the env's domain.
    :param prompt: text, a video path (``.gif``/``.mp4``...) or a video as uint8 ``[T, H, W, 3]``, or an image (a
        ``.png``/``.jpg`` path or uint8 ``[H, W, 3]``: a still pose, :func:`genrl_gym.prompts.target_from_prompt`).
    :param vlm: VLM instance or ``load_vlm`` spec used to embed the prompt (None = the model's own VLM).
    :param score_kind: per-step score (:data:`genrl_gym.reward.SCORES`), default GenRL's max-norm cosine.
    :param history: frames of the episode kept for alignment (H + 1).
    :param horizon: target horizon H (the target has H + 1 steps); default what ``align`` expects
        (:func:`genrl_gym.reward.target_horizon`: 16 for ``"sequence"``, 48 for ``"phase"``).
    :param align: the reward's alignment: ``"sequence"`` (GenRL's), ``"phase"`` (also searches where inside a longer
        target the episode's window starts; see :mod:`genrl_gym.reward`) or ``"none"``; default the model's
        :attr:`~genrl_gym.models.MFWM.reward_align` (``"sequence"`` unless its export recorded another).
    :param device: torch device of the reward computation.
    :param obs_key: the image entry of a Dict observation.
    :param domain: the env's domain (default: read from the env, e.g. ``PixelEnv.task_spec.domain``); checked against the
        model's.
    :param track_latent: also filter the GRU and expose the posterior latent as :attr:`latent` (same rewards).
    :param num_threads: torch intra-op threads for the reward computation on CPU (see :class:`LatentRewardScorer`).

    :attr:`prompt` describes the prompt (the text, the file path, or the array's shape).

    ``step`` returns the score as reward (a Python float); ``info["genrl_score"]`` repeats it and ``info["task_reward"]``
    holds the domain's true reward (from the inner env's info, else its reward). The score is a deterministic function of
    the seed and the actions (posterior modes, no sampling).
    """

    def __init__(self, env: gym.Env[Any, Any], model: str | os.PathLike[str] | MFWM,
                 prompt: str | os.PathLike[str] | np.ndarray, *, vlm: VLM | str | Mapping[str, Any] | None = None,
                 score_kind: str = "max_cosine", history: int = DEFAULT_HISTORY, horizon: int | None = None,
                 align: str | None = None,
                 device: str | torch.device = "cpu", obs_key: str = "image", domain: str | None = None,
                 track_latent: bool = False, num_threads: int | None = 1) -> None:
        super().__init__(env)
        from genrl_gym.model_store import resolve_model

        domain = env_domain(env) if domain is None else domain
        self.model = resolve_model(model, domain=domain, map_location=str(device))
        self._key, self._layout = image_layout(env.observation_space, int(self.model.config.image_size), obs_key)
        _check_action_space(env.action_space, int(self.model.config.action_dim), domain)
        self.target, align = aligned_target(self.model, prompt, vlm, history=history, horizon=horizon, align=align)
        self.scorer = LatentRewardScorer(self.model, self.target.features, 1, history=history, score_kind=score_kind,
                                         target_logits=_target_logits(self.target), device=device, track_latent=track_latent,
                                         num_threads=num_threads, align=align)
        self.prompt = self.target.prompt
        #: True when ``GenRL/<Domain>-v0`` got no prompt and used the task's shipped clip (``prompt`` is its path).
        self.prompt_is_default = False
        self._needs_reset = True

    def _image(self, obs: Any) -> np.ndarray:
        img = obs[self._key] if self._key is not None else obs
        return to_hwc(img, self._layout)[None]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Reset the env and the latent; the first frame is filtered with ``is_first=True``. Returns ``(obs, info)``."""
        obs, info = self.env.reset(seed=seed, options=options)
        self.scorer.observe(None, self._image(obs), [True])
        self._needs_reset = False
        return obs, info

    def step(self, action: np.ndarray) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step the env, filter ``(action, new frame)`` and return the score of this step as reward."""
        if self._needs_reset:
            raise gym.error.ResetNeeded("call reset() before step() on a GenRLReward env")
        obs, reward, terminated, truncated, info = self.env.step(action)
        low, high = self.env.action_space.low, self.env.action_space.high  # type: ignore[attr-defined]
        act = np.clip(np.asarray(action, dtype=np.float32), low, high)[None]  # the env applies clipped actions
        score = float(self.scorer.observe(act, self._image(obs), [False])[0])
        info = dict(info)
        info.setdefault("task_reward", float(reward))
        info["genrl_score"] = score
        return obs, score, terminated, truncated, info

    @property
    def latent(self) -> Any:
        """The current posterior latent State ``[1]`` (deter, stoch, logits) with ``track_latent=True``, else None."""
        return self.scorer.state


def _check_action_space(space: spaces.Space[Any], action_dim: int, domain: str | None) -> None:
    if not isinstance(space, spaces.Box) or space.shape != (action_dim,):
        raise CheckpointError(f"the env's action space {space} does not match the world model's {action_dim}-dim actions"
                              + (f" (env domain {domain!r})" if domain else "") + "; use a model trained on this domain")


# ----------------------------------------------------------------------------------------------------------------------
# gymnasium vector env


class GenRLVectorReward(VectorWrapper):
    """GenRL rewards for every sub-env of a Gymnasium vector env, in one batched model call per step.

    Works with ``AutoresetMode.NEXT_STEP`` (Gymnasium's default: the step after a done is a reset step, whose reward is
    0.0 and whose frame starts a new latent episode), ``SAME_STEP`` (the final frame comes from ``infos["final_obs"]``,
    the returned frame starts the next episode) and ``DISABLED`` (``reset(options={"reset_mask": m})`` restarts the
    masked streams). ``infos["genrl_score"]`` holds the scores and ``infos["task_reward"]`` the true rewards.

    Arguments as :class:`GenRLReward`.
    """

    def __init__(self, env: VectorEnv, model: str | os.PathLike[str] | MFWM, prompt: str | os.PathLike[str] | np.ndarray,
                 *, vlm: VLM | str | Mapping[str, Any] | None = None, score_kind: str = "max_cosine",
                 history: int = DEFAULT_HISTORY, horizon: int | None = None,
                 align: str | None = None, device: str | torch.device = "cpu",
                 obs_key: str = "image", domain: str | None = None, track_latent: bool = False,
                 num_threads: int | None = 1) -> None:
        super().__init__(env)
        from genrl_gym.model_store import resolve_model

        if domain is None:
            domains = _vector_domains(env)
            domain = domains[0] if len(set(domains)) == 1 and domains else None
        self.model = resolve_model(model, domain=domain, map_location=str(device))
        self._key, self._layout = image_layout(env.single_observation_space, int(self.model.config.image_size), obs_key)
        _check_action_space(env.single_action_space, int(self.model.config.action_dim), domain)
        self._low = env.single_action_space.low  # type: ignore[attr-defined]
        self._high = env.single_action_space.high  # type: ignore[attr-defined]
        self.autoreset_mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        self.target, align = aligned_target(self.model, prompt, vlm, history=history, horizon=horizon, align=align)
        self.scorer = LatentRewardScorer(self.model, self.target.features, env.num_envs, history=history,
                                         score_kind=score_kind, target_logits=_target_logits(self.target), device=device,
                                         track_latent=track_latent, num_threads=num_threads, align=align)
        self.prompt = self.target.prompt
        self.prompt_is_default = False  # as GenRLReward's
        self._autoreset = np.zeros(env.num_envs, dtype=bool)

    def _images(self, obs: Any) -> np.ndarray:
        img = obs[self._key] if self._key is not None else obs
        return to_hwc(img, self._layout)

    def reset(self, *, seed: int | list[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Reset (all, or the ``options["reset_mask"]`` sub-envs) and restart their latents from the reset frames."""
        mask = None if options is None else options.get("reset_mask")  # read first: SyncVectorEnv pops it
        obs, info = self.env.reset(seed=seed, options=None if options is None else dict(options))
        idx = np.arange(self.num_envs) if mask is None else np.nonzero(np.asarray(mask, dtype=bool))[0]
        self.scorer.observe(None, self._images(obs)[idx], np.ones(len(idx), dtype=bool), idx)
        self._autoreset[idx] = False
        return obs, info

    def step(self, actions: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step all sub-envs; rewards ``float32 [N]`` are the GenRL scores (0.0 on NEXT_STEP autoreset steps)."""
        obs, rewards, terminated, truncated, infos = self.env.step(actions)
        acts = np.clip(np.asarray(actions, dtype=np.float32).reshape(self.num_envs, -1), self._low, self._high)
        images = self._images(obs)
        done = np.logical_or(terminated, truncated)
        infos = dict(infos)
        if self.autoreset_mode == AutoresetMode.SAME_STEP and done.any():
            final = infos.get("final_obs")
            if final is None:
                raise RuntimeError("a SAME_STEP vector env finished an episode without infos['final_obs']")
            frames = images.copy()
            for i in np.nonzero(done)[0]:
                frames[i] = to_hwc(final[i][self._key] if self._key is not None else final[i], self._layout)
            scores = self.scorer.observe(acts, frames, np.zeros(self.num_envs, dtype=bool))
            restart = np.nonzero(done)[0]
            self.scorer.observe(None, images[restart], np.ones(len(restart), dtype=bool), restart)
        else:
            # NEXT_STEP: sub-envs that finished last step were reset by this call (their action was ignored)
            first = self._autoreset.copy() if self.autoreset_mode == AutoresetMode.NEXT_STEP else np.zeros_like(done)
            scores = self.scorer.observe(acts, images, first)
            if self.autoreset_mode == AutoresetMode.NEXT_STEP:
                self._autoreset = done.copy()
        task = infos.get("task_reward")
        mask = infos.get("_task_reward")
        true = np.asarray(rewards, dtype=np.float64).copy()
        if task is not None:
            has = np.ones(self.num_envs, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
            true[has] = np.asarray(task, dtype=np.float64)[has]
        infos["task_reward"], infos["_task_reward"] = true, np.ones(self.num_envs, dtype=bool)
        infos["genrl_score"], infos["_genrl_score"] = scores.astype(np.float64), np.ones(self.num_envs, dtype=bool)
        return obs, scores.astype(np.float64), terminated, truncated, infos


def _vector_domains(env: VectorEnv) -> list[str]:
    """Domains of a vector env's sub-envs (empty when they can't be read)."""
    envs = getattr(env.unwrapped, "envs", None)
    if not envs:
        return []
    found = [env_domain(e) for e in envs]
    return [d for d in found if d is not None]

