"""One description of a GenRL reward (:class:`RewardSpec`) and the prompt's target trajectory it scores against.

Every reward option is a field of :class:`RewardSpec`, with its default, once. The wrappers
(:class:`~genrl_gym.wrappers.GenRLReward`, :class:`~genrl_gym.wrappers.GenRLVectorReward`,
:class:`~genrl_gym.wrappers.VecGenRLReward`), the ``GenRL/<Domain>-v0`` entry points and
:func:`genrl_gym.reward.score_episode` take a spec, keyword overrides of its fields, or both
(:func:`reward_spec` merges them).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from genrl_gym.model_store import resolve_model
from genrl_gym.prompts import target_from_prompt
from genrl_gym.reward.core import DEFAULT_HISTORY, DEFAULT_HORIZON, DEFAULT_SCORE, target_horizon
from genrl_gym.reward.scorer import LatentRewardScorer
from genrl_gym.utils import PromptError
from genrl_gym.vlm import load_vlm

if TYPE_CHECKING:
    from genrl_gym.models import MFWM
    from genrl_gym.prompts import TargetTrajectory
    from genrl_gym.vlm import VLM

__all__ = ["RewardSpec", "reward_spec", "build_target", "aligned_target", "target_logits", "build_scorer"]


@dataclasses.dataclass(frozen=True)
class RewardSpec:
    """Every option of a GenRL trajectory-matching reward (GenRL paper), with its default.

    :param model: the world model: an MFWM, a checkpoint path or a model name
        (:func:`genrl_gym.model_store.resolve_model`); it must belong to the env's domain. None: the caller's default
        (the domain's shipped model for ``GenRL/<Domain>-v0``; the wrappers need one).
    :param prompt: text, a video (a ``.gif``/``.mp4``... path or uint8 ``[T, H, W, 3]``) or an image (a ``.png``/
        ``.jpg`` path or uint8 ``[H, W, 3]``: a still pose, :func:`genrl_gym.prompts.target_from_prompt`). None: the
        caller's default (the task's shipped clip for ``GenRL/<Domain>-v0``; the wrappers need one).
    :param vlm: VLM instance or :func:`genrl_gym.vlm.load_vlm` spec embedding the prompt (None = the model's own VLM).
    :param score_kind: per-step score, one of :data:`genrl_gym.reward.SCORES` (default GenRL's max-norm cosine).
    :param history: frames of the episode kept for alignment (H + 1 = 17 by default, an imagined trajectory's length).
    :param horizon: target horizon H in steps (the target has H + 1 steps); None: what ``align`` expects for
        ``history`` frames (:func:`genrl_gym.reward.target_horizon`: 16 for ``"sequence"``, 48 for ``"phase"``).
    :param align: the reward's alignment: ``"sequence"`` (GenRL's), ``"phase"`` (also searches where inside a longer
        target the episode's window starts; see :mod:`genrl_gym.reward.core`) or ``"none"``; None: the model's
        :attr:`~genrl_gym.models.MFWM.reward_align` (``"sequence"`` unless its export recorded another).
    :param device: torch device of the reward computation (the model is loaded there).
    :param track_latent: also filter the GRU and keep the full posterior latent (same rewards, more compute).
    :param num_threads: torch intra-op threads for the reward computation on CPU, set while it runs (None: torch's
        setting; see :class:`~genrl_gym.reward.LatentRewardScorer`).
    """

    model: str | os.PathLike[str] | MFWM | None = None
    prompt: str | os.PathLike[str] | np.ndarray | None = None
    vlm: VLM | str | Mapping[str, Any] | None = None
    score_kind: str = DEFAULT_SCORE
    history: int = DEFAULT_HISTORY
    horizon: int | None = None
    align: str | None = None
    device: str | torch.device = "cpu"
    track_latent: bool = False
    num_threads: int | None = 1

    def __repr__(self) -> str:
        """The options, with a loaded model shown by its domain and an array prompt by its shape."""
        def short(value: Any) -> str:
            if hasattr(value, "config") and hasattr(value, "domain"):
                return f"<{type(value).__name__} {value.domain}>"
            if isinstance(value, np.ndarray):
                return f"<array {value.dtype} {list(value.shape)}>"
            return repr(value)

        return f"RewardSpec({', '.join(f'{f.name}={short(getattr(self, f.name))}' for f in dataclasses.fields(self))})"

    def resolve_model(self, domain: str | None = None) -> MFWM:
        """The world model of :attr:`model`, loaded on :attr:`device` and checked against ``domain`` when given.

        :raises ValueError: no model in the spec.
        """
        if self.model is None:
            raise ValueError("the reward has no world model: pass model= (an MFWM, a checkpoint path or a model name "
                             "such as 'walker')")
        return resolve_model(self.model, domain=domain, map_location=str(self.device))


def reward_spec(spec: RewardSpec | None = None, /, **overrides: Any) -> RewardSpec:
    """``spec`` (default :class:`RewardSpec()`) with the given fields replaced: the one place where keyword arguments of
    the wrappers and entry points become a spec.

    :param overrides: :class:`RewardSpec` fields (``model=``, ``prompt=``, ``score_kind=``...); ``model=None`` and
        ``prompt=None`` keep the spec's (the wrappers' positional ``model``/``prompt`` default to None).
    :raises TypeError: a name that is not a :class:`RewardSpec` field (the message lists them).
    """
    overrides = {k: v for k, v in overrides.items() if v is not None or k not in ("model", "prompt")}
    names = {f.name for f in dataclasses.fields(RewardSpec)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise TypeError(f"unknown reward option(s) {', '.join(unknown)}; RewardSpec fields: {', '.join(sorted(names))}")
    base = RewardSpec() if spec is None else spec
    if not isinstance(base, RewardSpec):
        raise TypeError(f"spec must be a genrl_gym.reward.RewardSpec or None, got {type(base).__name__}")
    return dataclasses.replace(base, **overrides) if overrides else base


def _check_prompt(prompt: str | os.PathLike[str] | np.ndarray | None) -> str | os.PathLike[str] | np.ndarray:
    """``prompt`` when it is one; a PromptError saying what to pass when it is missing or empty."""
    if prompt is None:
        raise PromptError("a prompt is required: pass a text (e.g. prompt='walk fast'), a video (a path to a .gif/.mp4 or "
                          "a uint8 array [T, H, W, 3]) or an image (a .png/.jpg path or a uint8 array [H, W, 3])")
    if isinstance(prompt, str) and not prompt.strip():
        raise PromptError("the prompt is empty: pass a text describing the behaviour (e.g. 'walk fast') or a video path")
    return prompt


def build_target(model: MFWM, prompt: str | os.PathLike[str] | np.ndarray | None, vlm: VLM | str | Mapping[str, Any] | None,
                 horizon: int = DEFAULT_HORIZON) -> TargetTrajectory:
    """The prompt's target trajectory (``features [H + 1, F]``) via :func:`genrl_gym.prompts.target_from_prompt`.

    :param prompt: text, a video (path or uint8 ``[T, H, W, 3]``) or an image (path or uint8 ``[H, W, 3]``).
    :param vlm: a VLM, a ``load_vlm`` spec, or None (the model's own VLM).
    :raises PromptError: empty, over-long or unreadable prompt; an array of ambiguous layout; a text prompt for a VLM
        without language.
    """
    prompt = _check_prompt(prompt)
    if isinstance(prompt, os.PathLike) and not isinstance(prompt, Path):
        prompt = Path(os.fspath(prompt))  # any PathLike is a video file (prompts treats Path objects as such)
    if vlm is not None and not hasattr(vlm, "embed_video"):
        vlm = load_vlm(vlm)
    return target_from_prompt(model, prompt, vlm=vlm, horizon=horizon)


def aligned_target(model: MFWM, prompt: str | os.PathLike[str] | np.ndarray | None, vlm: VLM | str | Mapping[str, Any] | None,
                   *, history: int = DEFAULT_HISTORY, horizon: int | None = None,
                   align: str | None = None) -> tuple[TargetTrajectory, str]:
    """The wrappers' target and alignment: ``align`` (default the model's ``reward_align``) and the prompt's target of
    ``horizon`` steps after the first (default what that alignment expects for ``history`` frames,
    :func:`genrl_gym.reward.target_horizon`). -> ``(target, align)``."""
    align = model.reward_align if align is None else align
    return build_target(model, prompt, vlm, target_horizon(align, history) if horizon is None else horizon), align


def target_logits(target: Any) -> Tensor | None:
    """The target's latent logits ``[Tt, S, C]`` (for the KL scores), or None when it has none."""
    logits = getattr(target, "logits", None)
    return logits if isinstance(logits, Tensor) else None


def build_scorer(spec: RewardSpec, model: MFWM, num_envs: int) -> tuple[TargetTrajectory, LatentRewardScorer]:
    """The spec's target (:func:`aligned_target`) and a :class:`LatentRewardScorer` of ``num_envs`` streams scoring it.

    :param model: the spec's world model (:meth:`RewardSpec.resolve_model`).
    :return: ``(target, scorer)``.
    """
    target, align = aligned_target(model, spec.prompt, spec.vlm, history=spec.history, horizon=spec.horizon,
                                   align=spec.align)
    scorer = LatentRewardScorer(model, target.features, num_envs, history=spec.history, score_kind=spec.score_kind,
                                target_logits=target_logits(target), device=spec.device, track_latent=spec.track_latent,
                                num_threads=spec.num_threads, align=align)
    return target, scorer
