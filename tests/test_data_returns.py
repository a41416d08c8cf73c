"""benchmarks.data_returns: per-source true returns read from a store's recorded episode info."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.data_returns import returns_by_source
from genrl_gym.data import EpisodeStore


def _episode(length: int = 5) -> dict[str, np.ndarray]:
    first = np.zeros(length, bool)
    first[0] = True
    last = np.zeros(length, bool)
    last[-1] = True
    return {"image": np.zeros((length, 8, 8, 3), np.uint8), "action": np.zeros((length, 2), np.float32),
            "reward": np.zeros(length, np.float32), "task_reward": np.zeros(length, np.float32),
            "is_first": first, "is_last": last, "is_terminal": np.zeros(length, bool)}


def test_returns_are_grouped_by_source_and_task_in_storage_order(tmp_path: Path) -> None:
    store = EpisodeStore(tmp_path / "data")
    for source, task, ret in [("expert:stand:s1", "stand", 10.0), ("expert:stand:s1", "stand", 30.0),
                              ("random", "stand", 5.0), ("expert:walk:s1", "walk", 7.0)]:
        store.save(_episode(), info={"source": source, "task": task, "task_return": ret})
    got = returns_by_source(store)
    assert list(got) == [("expert:stand:s1", "stand"), ("random", "stand"), ("expert:walk:s1", "walk")]
    assert got[("expert:stand:s1", "stand")] == [10.0, 30.0]


def test_a_store_without_recorded_returns_is_refused(tmp_path: Path) -> None:
    store = EpisodeStore(tmp_path / "data")
    store.save(_episode(), info={"source": "random", "task": "stand"})
    with pytest.raises(ValueError, match="no task_return"):
        returns_by_source(store)
