"""GenRL's trajectory-matching reward for Stable-Baselines3: a ``VecEnvWrapper`` scoring all envs in one batch.

Follows the pattern of imitation's ``RewardVecEnvWrapper``: the wrapper sits between the algorithm and a VecEnv of pixel
envs, replaces the rewards with GenRL scores (one batched world-model call per step), keeps the env's true reward in
``infos[i]["task_reward"]`` (as the Gymnasium wrappers do) and the score in ``infos[i]["genrl_score"]``.

Episode boundaries: SB3 VecEnvs reset an env as soon as it is done and return the *next* episode's first frame, the
real last frame being ``infos[i]["terminal_observation"]``. The wrapper scores the last transition on that terminal
frame, then restarts env ``i``'s latent from the returned first frame (``is_first``), so no transition ever crosses an
episode boundary.

Observations: a Dict space with an ``"image"`` entry (genrl-gym pixel envs) or a plain Box image, uint8, either HWC
``(64, 64, 3)`` or CHW ``(3, 64, 64)`` (SB3's ``VecTransposeImage``, which algorithms add *outside* this wrapper when they
wrap it themselves; placed inside, it is handled too).

Logging: a ``Monitor`` inside the VecEnv records the env's own rewards in ``ep_rew_mean`` (SB3 issue #146); wrap the
result in ``VecMonitor`` to log GenRL episode returns, and add :class:`genrl_gym.wrappers.GenRLLogCallback` to log the
mean score and the mean true task reward.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn

from genrl_gym.wrappers.gym_reward import RewardAdapter, task_rewards, to_hwc

if TYPE_CHECKING:
    from genrl_gym.models import MFWM
    from genrl_gym.reward import RewardSpec

__all__ = ["VecGenRLReward"]


class VecGenRLReward(RewardAdapter, VecEnvWrapper):
    """Replace a VecEnv's rewards with GenRL scores, computed for all envs in one batched world-model call.

    :param venv: an SB3 VecEnv of pixel envs (e.g. ``make_vec_env(lambda: make_pixel_env("walker", "stand"), n_envs=4)``).
    :param domain: the envs' domain, checked against the model's (default: read from the envs when they say).

    The other arguments (``model``, ``prompt``, ``spec``, ``obs_key`` and the :class:`~genrl_gym.reward.RewardSpec`
    overrides) are those of :class:`~genrl_gym.wrappers.GenRLReward`.

    ``step_wait`` returns rewards ``float32 [N]``; see the module docstring for episode boundaries.
    """

    def __init__(self, venv: VecEnv, model: str | os.PathLike[str] | MFWM | None = None,
                 prompt: str | os.PathLike[str] | np.ndarray | None = None, *, spec: RewardSpec | None = None,
                 obs_key: str = "image", domain: str | None = None, **overrides: Any) -> None:
        super().__init__(venv)
        if domain is None:
            domain = _venv_domain(venv)
        self._attach_reward(spec, model, prompt, overrides, observation_space=venv.observation_space,
                            action_space=venv.action_space, num_envs=venv.num_envs, obs_key=obs_key, domain=domain)
        self._low = venv.action_space.low  # type: ignore[attr-defined]
        self._high = venv.action_space.high  # type: ignore[attr-defined]
        self._actions: np.ndarray | None = None

    def _images(self, obs: Any) -> np.ndarray:
        """Batch of frames ``uint8 [N, S, S, 3]`` from a VecEnv observation."""
        img = obs[self._key] if self._key is not None else obs
        return to_hwc(np.asarray(img), self._layout)

    def _terminal_image(self, info: Mapping[str, Any], i: int) -> np.ndarray:
        term = info.get("terminal_observation")
        if term is None:
            raise RuntimeError(f"env {i} is done but infos[{i}] has no 'terminal_observation': VecGenRLReward needs an SB3 "
                               "VecEnv (DummyVecEnv/SubprocVecEnv), which records the last frame of every episode there")
        img = term[self._key] if self._key is not None else term
        return to_hwc(np.asarray(img), self._layout)

    def reset(self) -> VecEnvObs:
        """Reset all envs and start every latent from its first frame. Returns the VecEnv's observation."""
        obs = self.venv.reset()
        self.scorer.observe(None, self._images(obs), np.ones(self.num_envs, dtype=bool))
        self._actions = None
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        """Remember the actions (the model reads them, clipped to the action space as the envs apply them) and step."""
        self._actions = np.clip(np.asarray(actions, dtype=np.float32).reshape(self.num_envs, -1), self._low, self._high)
        self.venv.step_async(actions)

    def step_wait(self) -> VecEnvStepReturn:
        """``(obs, rewards float32 [N] = GenRL scores, dones [N], infos)``; see the module docstring."""
        obs, rewards, dones, infos = self.venv.step_wait()
        if self._actions is None:
            raise RuntimeError("VecGenRLReward.step_wait() called without step_async() after reset()")
        images = self._images(obs)
        done_idx = np.nonzero(np.asarray(dones, dtype=bool))[0]
        frames = images
        if len(done_idx):
            frames = images.copy()
            for i in done_idx:
                frames[i] = self._terminal_image(infos[i], int(i))
        scores = self.scorer.observe(self._actions, frames, np.zeros(self.num_envs, dtype=bool))
        if len(done_idx):  # SB3 already reset these envs: their returned frame starts a new latent episode
            self.scorer.observe(None, images[done_idx], np.ones(len(done_idx), dtype=bool), done_idx)
        task_rewards(infos, rewards)
        for j, info in enumerate(infos):
            info["genrl_score"] = float(scores[j])
        self._actions = None
        return obs, scores.astype(np.float32), dones, infos


def _venv_domain(venv: VecEnv) -> str | None:
    """The sub-envs' common domain when they expose it (genrl-gym pixel envs do, through ``task_spec``), else None."""
    try:
        specs = venv.get_attr("task_spec")
    except (AttributeError, NotImplementedError):
        return None
    found = {getattr(s, "domain", None) for s in specs}
    found.discard(None)
    return found.pop() if len(found) == 1 else None
