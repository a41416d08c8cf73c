"""GenRL's behaviour learner: actor-critic in imagination behind the Stable-Baselines3 API.

- :class:`GenRLAgent`: ``learn`` / ``predict`` / ``save`` / ``load`` (one timestep = one behaviour update).
- :mod:`genrl_gym.agents.actor_critic`: the DreamerV3-style losses, returns and networks as small pure pieces.
- :func:`evaluate_task_return`: true task return (and GenRL's normalised score) of a policy on pixel envs.
- :class:`RealityCheck`: a callback that logs the imagined GenRL reward beside the real one and the true return.
"""

from __future__ import annotations

from genrl_gym.agents.actor_critic import AGENT_PRESETS, ActorCriticConfig, agent_preset
from genrl_gym.agents.evaluation import RealityCheck, evaluate_task_return
from genrl_gym.agents.genrl_agent import GenRLAgent, GenRLPolicy

__all__ = ["GenRLAgent", "GenRLPolicy", "ActorCriticConfig", "AGENT_PRESETS", "agent_preset", "evaluate_task_return",
           "RealityCheck"]
