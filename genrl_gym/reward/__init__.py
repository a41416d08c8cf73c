"""GenRL's trajectory-matching reward (GenRL paper): one engine for the envs, the agent, the report and the tests.

- :mod:`genrl_gym.reward.core`: the pure tensor functions (:func:`score`, :func:`kl_score`, :func:`trajectory_match`,
  :func:`phase_offsets`, :func:`target_horizon`...) and the reward's constants (:data:`ALIGN_WINDOW`,
  :data:`DEFAULT_HISTORY`, :data:`KL_SCORES`, :data:`DEFAULT_SCORE`...), used on imagined latents by
  :class:`genrl_gym.agents.GenRLAgent` and on real frames by everything below;
- :mod:`genrl_gym.reward.spec`: :class:`RewardSpec`, every reward option once, and the prompt's target
  (:func:`build_target`, :func:`aligned_target`);
- :mod:`genrl_gym.reward.scorer`: :class:`LatentRewardScorer`, the step-by-step scorer of ``B`` episode streams behind
  the Gymnasium and SB3 wrappers (:mod:`genrl_gym.wrappers`);
- :mod:`genrl_gym.reward.episode`: :func:`score_episode`, the per-step reward of a recorded episode exactly as the envs
  give it.

Layering: this package may import envs, data, vlm, models, prompts and utils, never wrappers, agents, training or cli.
"""

from __future__ import annotations

from genrl_gym.reward.core import (ALIGN_WINDOW, ALIGNS, DEFAULT_HISTORY, DEFAULT_HORIZON, DEFAULT_SCORE, FEATURE_SCORES,
                                   KL_SCORES, PHASE_EXTRA_STEPS, SCORES, AlignKind, ScoreKind, alignment_offsets,
                                   kl_score, pairwise_scores, phase_offsets, score, target_horizon, trajectory_match)
from genrl_gym.reward.episode import env_rewards, episode_features, posterior_modes, score_episode
from genrl_gym.reward.scorer import LatentRewardScorer
from genrl_gym.reward.spec import RewardSpec, aligned_target, build_scorer, build_target, reward_spec, target_logits

__all__ = [
    "ALIGNS", "ALIGN_WINDOW", "AlignKind", "DEFAULT_HISTORY", "DEFAULT_HORIZON", "DEFAULT_SCORE", "FEATURE_SCORES",
    "KL_SCORES", "LatentRewardScorer", "PHASE_EXTRA_STEPS", "RewardSpec", "SCORES", "ScoreKind", "aligned_target",
    "alignment_offsets", "build_scorer", "build_target", "env_rewards", "episode_features", "kl_score",
    "pairwise_scores", "phase_offsets", "posterior_modes", "reward_spec", "score", "score_episode", "target_horizon",
    "target_logits", "trajectory_match",
]
