"""Reward wrappers: GenRL's trajectory-matching score as a Gymnasium wrapper, a Gymnasium vector wrapper and an SB3
``VecEnvWrapper``, plus an SB3 logging callback.

The SB3 names (:class:`VecGenRLReward`, :class:`GenRLLogCallback`) are imported on first use so that ``import
genrl_gym.wrappers`` does not import Stable-Baselines3.
"""

from __future__ import annotations

from typing import Any

from genrl_gym.wrappers.gym_reward import GenRLReward, GenRLVectorReward, LatentRewardScorer

__all__ = ["GenRLReward", "GenRLVectorReward", "LatentRewardScorer", "VecGenRLReward", "GenRLLogCallback"]


def __getattr__(name: str) -> Any:
    if name == "VecGenRLReward":
        from genrl_gym.wrappers.vec_reward import VecGenRLReward

        return VecGenRLReward
    if name == "GenRLLogCallback":
        from genrl_gym.wrappers.callbacks import GenRLLogCallback

        return GenRLLogCallback
    raise AttributeError(f"module 'genrl_gym.wrappers' has no attribute {name!r}")
