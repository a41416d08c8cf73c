"""An SB3 VecEnvWrapper that hands the policy one entry of a Dict observation.

Typical use: a proprioceptive policy trained on a pixel-based reward. The reward wrapper (e.g.
:class:`~genrl_gym.wrappers.VecGenRLReward`) reads ``obs["image"]``; this wrapper, outside it, passes only
``obs["proprio"]`` on to the policy.
"""

from __future__ import annotations

from typing import cast

import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn

__all__ = ["VecSelectKey"]


class VecSelectKey(VecEnvWrapper):
    """Dict-observation VecEnv -> its ``key`` entry, terminal observations included (SB3 bootstraps from them).

    :param venv: a VecEnv with a ``Dict`` observation space.
    :param key: the entry the policy sees, e.g. ``"proprio"``.
    :raises KeyError: the observation space has no ``key`` entry (the message lists the keys).
    """

    def __init__(self, venv: VecEnv, key: str) -> None:
        spaces = getattr(venv.observation_space, "spaces", None)
        if not spaces or key not in spaces:
            raise KeyError(f"observation space has no {key!r} entry (entries: {list(spaces or [])}); for 'proprio' build "
                           "the envs with make_pixel_env(..., proprio=True)")
        super().__init__(venv, observation_space=spaces[key])
        self.key = key

    def reset(self) -> VecEnvObs:
        """Reset all envs; returns the ``key`` entry of the observation."""
        return cast(dict[str, np.ndarray], self.venv.reset())[self.key]

    def step_wait(self) -> VecEnvStepReturn:
        """``(obs[key], rewards, dones, infos)`` with ``infos[i]["terminal_observation"]`` reduced to its ``key``."""
        obs, rewards, dones, infos = self.venv.step_wait()
        obs = cast(dict[str, np.ndarray], obs)  # a Dict observation space (checked in __init__)
        for info in infos:
            if "terminal_observation" in info:
                info["terminal_observation"] = info["terminal_observation"][self.key]
        return obs[self.key], rewards, dones, infos
