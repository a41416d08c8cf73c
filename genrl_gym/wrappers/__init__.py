"""Reward wrappers: GenRL's trajectory-matching score as a Gymnasium wrapper, a Gymnasium vector wrapper and an SB3
``VecEnvWrapper``, the paper's model-free baseline reward (:class:`VecEmbeddingSimilarityReward`: cosine between VLM
embeddings of the last frames and the prompt), plus SB3 callbacks (logging, wall-time budget).

The SB3 names (:class:`VecGenRLReward`, :class:`VecEmbeddingSimilarityReward`, :class:`GenRLLogCallback`,
:class:`WallClockBudget`, :func:`learn_for`, :class:`VecSelectKey`) are imported on first use so that
``import genrl_gym.wrappers`` does not import Stable-Baselines3.
"""

from __future__ import annotations

from typing import Any

from genrl_gym.wrappers import callbacks
from genrl_gym.wrappers.embedding_reward import VecEmbeddingSimilarityReward
from genrl_gym.wrappers.gym_reward import GenRLReward, GenRLVectorReward, LatentRewardScorer
from genrl_gym.wrappers.vec_reward import VecGenRLReward
from genrl_gym.wrappers.vec_select import VecSelectKey

__all__ = [
    "GenRLLogCallback",
    "GenRLReward",
    "GenRLVectorReward",
    "LatentRewardScorer",
    "VecEmbeddingSimilarityReward",
    "VecGenRLReward",
    "VecSelectKey",
    "WallClockBudget",
    "learn_for",
]


def __getattr__(name: str) -> Any:
    if name == "VecGenRLReward":
        return VecGenRLReward
    if name == "VecSelectKey":
        return VecSelectKey
    if name == "VecEmbeddingSimilarityReward":
        return VecEmbeddingSimilarityReward
    if name in ("GenRLLogCallback", "WallClockBudget", "learn_for"):
        return getattr(callbacks, name)
    raise AttributeError(f"module 'genrl_gym.wrappers' has no attribute {name!r}")
