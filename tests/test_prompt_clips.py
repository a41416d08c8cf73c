"""Prompt clips cut from held-out episodes (genrl_gym.training.pipeline.write_prompt_clips)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from genrl_gym.data import EpisodeStore
from genrl_gym.prompts import read_video
from genrl_gym.training.pipeline import frame_motion, window_sums, write_prompt_clips

L = 41  # rows: a reset and 40 steps


def episode(task_reward: np.ndarray, moving_rows: slice, seed: int) -> dict[str, np.ndarray]:
    """An episode whose frames are still (one grey level) except on ``moving_rows``, where they flicker."""
    rng = np.random.default_rng(seed)
    image = np.full((L, 64, 64, 3), 100, np.uint8)
    image[moving_rows] = rng.integers(0, 256, image[moving_rows].shape, dtype=np.uint8)
    image[:, 0, 0, 0] = np.arange(L)  # a row stamp: which row a clip frame came from
    zeros = np.zeros(L, np.float32)
    return {"image": image, "action": np.zeros((L, 6), np.float32), "reward": zeros, "task_reward": task_reward,
            "is_first": np.arange(L) == 0, "is_last": np.arange(L) == L - 1, "is_terminal": np.zeros(L, bool)}


def rewards(*pieces: tuple[int, float]) -> np.ndarray:
    r = np.concatenate([np.full(n, v, np.float32) for n, v in pieces])
    assert len(r) == L
    return r


@pytest.fixture()
def store(tmp_path: Path) -> EpisodeStore:
    s = EpisodeStore(tmp_path / "heldout")
    # episode a: the highest reward (1.0 per step) on rows 1-20, but the walker moves there
    s.save(episode(rewards((1, 0.0), (20, 1.0), (20, 0.2)), slice(0, 21), seed=0), name="a", info={"task": "stand"})
    # episode b: 0.99 per step on rows 21-40 (within 2% of the best) with a still picture
    s.save(episode(rewards((21, 0.1), (20, 0.99)), slice(0, 21), seed=1), name="b", info={"task": "stand"})
    s.save(episode(rewards((1, 0.0), (40, 0.5)), slice(0, 0), seed=2), name="c", info={"task": "walk"})
    return s


def test_window_sums_and_motion_are_aligned_with_rows() -> None:
    r = np.arange(L, dtype=np.float32)
    sums = window_sums(r, 4)
    assert len(sums) == L - 4 and sums[0] == 1 + 2 + 3 + 4  # the reset row 0 never counts
    frames = np.zeros((5, 2, 2, 3), np.uint8)
    frames[3] = 30
    assert frame_motion(frames).tolist() == [0, 0, 30, 30]
    with pytest.raises(ValueError, match="fewer than the clip length"):
        window_sums(r[:4], 4)


def test_among_near_ties_the_stillest_window_is_cut(store: EpisodeStore, tmp_path: Path) -> None:
    write_prompt_clips(store, ("stand", "walk"), tmp_path / "clips", frames=16, reward_tolerance=0.02)
    info = json.loads((tmp_path / "clips" / "clips.json").read_text())
    assert info["stand"]["episode"] == "b-L41.npz" and info["stand"]["start"] >= 21
    assert info["stand"]["mean_task_reward_per_step"] == pytest.approx(0.99)
    assert info["stand"]["best_mean_task_reward_per_step"] == pytest.approx(1.0)
    assert info["stand"]["mean_motion"] < 0.01  # only the row stamp changes
    clip = read_video(tmp_path / "clips" / "stand.gif")
    assert clip.shape[0] == 16 and clip[0, 0, 0, 0] == info["stand"]["start"]  # frames of the rows named in clips.json
    assert info["walk"]["episode"] == "c-L41.npz"


def test_zero_tolerance_cuts_the_highest_reward_window(store: EpisodeStore, tmp_path: Path) -> None:
    write_prompt_clips(store, ("stand",), tmp_path / "clips", frames=16, reward_tolerance=0.0)
    info = json.loads((tmp_path / "clips" / "clips.json").read_text())["stand"]
    assert info["episode"] == "a-L41.npz" and info["start"] == 1
    assert info["mean_task_reward_per_step"] == pytest.approx(1.0) and info["mean_motion"] > 10


def test_a_task_without_long_enough_episodes_is_a_clear_error(store: EpisodeStore, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no held-out episode of task 'run'"):
        write_prompt_clips(store, ("run",), tmp_path / "clips", frames=16)
    with pytest.raises(ValueError, match="reward_tolerance"):
        write_prompt_clips(store, ("stand",), tmp_path / "clips", frames=16, reward_tolerance=1.5)
