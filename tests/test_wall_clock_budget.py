"""WallClockBudget: stops SB3 learners and GenRLAgent after a wall-time budget and records a learning curve."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from helpers import save_random_clip, save_tiny_model
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

from genrl_gym.envs import make_pixel_env
from genrl_gym.wrappers import VecSelectKey, WallClockBudget


def test_stops_ppo_and_records_true_episode_returns() -> None:
    venv = make_vec_env(lambda: make_pixel_env("walker", "stand", proprio=True, pixels=False, episode_frames=40),
                        n_envs=2, seed=0)
    budget = WallClockBudget(1.5)
    model = PPO("MlpPolicy", VecSelectKey(venv, "proprio"), n_steps=32, batch_size=32, n_epochs=1, seed=0, device="cpu")
    t0 = time.time()
    model.learn(10**9, callback=budget)
    took = time.time() - t0
    assert 1.5 <= took < 15.0
    assert budget.elapsed >= 1.5 and model.num_timesteps > 0
    # 40 frames at action repeat 2 = 20-step episodes; every finished episode is one curve row of its true return
    assert len(budget.curve) >= model.num_timesteps // 20 - 2
    secs, steps, returns = zip(*budget.curve)
    assert list(secs) == sorted(secs) and list(steps) == sorted(steps)
    assert all(0.0 <= r <= 40.0 for r in returns)  # 20 steps of a true reward in [0, 2] (2 frames of [0, 1] each)


def test_stops_genrl_agent_and_records_imagined_reward(tmp_path: Path) -> None:
    from genrl_gym.agents import GenRLAgent

    model = save_tiny_model(tmp_path / "m.pt")
    clip = save_random_clip(tmp_path / "c.gif", 16)
    agent = GenRLAgent(str(model), str(clip), preset="tiny", seed=0)
    budget = WallClockBudget(1.0)
    agent.learn(10**9, callback=budget)
    assert agent.num_timesteps == len(budget.curve) > 0
    assert budget.curve[-1][0] >= 1.0


def test_rejects_non_positive_budget() -> None:
    with pytest.raises(ValueError, match="seconds"):
        WallClockBudget(0)


def test_select_key_names_the_missing_entry() -> None:
    venv = make_vec_env(lambda: make_pixel_env("walker", "stand", episode_frames=4), n_envs=1)
    with pytest.raises(KeyError, match="proprio=True"):
        VecSelectKey(venv, "proprio")
