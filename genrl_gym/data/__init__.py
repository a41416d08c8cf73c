"""Episode store, streaming replay sampler and data collection.

``embed_store`` (the VLM embedding pass, :mod:`genrl_gym.data.embed`) is imported lazily, on first access, so that
importing the data package does not pull in the VLM stack.
"""

from __future__ import annotations

from typing import Any

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
    "embed_store",
    "validate_episode",
]


def __getattr__(name: str) -> Any:
    """Lazy ``embed_store`` from :mod:`genrl_gym.data.embed` (written separately; absent until it lands)."""
    if name == "embed_store":
        try:
            from genrl_gym.data.embed import embed_store
        except ModuleNotFoundError as e:
            if e.name != "genrl_gym.data.embed":
                raise
            raise AttributeError("genrl_gym.data.embed_store is not available: genrl_gym/data/embed.py is missing "
                                 "from this installation.") from e
        return embed_store
    raise AttributeError(f"module 'genrl_gym.data' has no attribute {name!r}")
