"""Episode store, streaming replay sampler and data collection.

The VLM embedding pass over a store sits one layer up, in :mod:`genrl_gym.vlm.embed` (``embed_store``): data comes
before the VLM in the import order.
"""

from __future__ import annotations

from genrl_gym.data.collect import CollectStats, HandoverPolicy, Policy, RandomPolicy, SB3Policy, collect
from genrl_gym.data.episodes import EpisodeStore, validate_episode
from genrl_gym.data.sampler import SequenceSampler

__all__ = [
    "CollectStats",
    "EpisodeStore",
    "HandoverPolicy",
    "Policy",
    "RandomPolicy",
    "SB3Policy",
    "SequenceSampler",
    "collect",
    "validate_episode",
]
