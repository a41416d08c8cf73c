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


def _bar_text(capsys: pytest.CaptureFixture[str]) -> str:
    return capsys.readouterr().err.replace("\r", "\n")


def test_learn_for_shows_the_time_budget_not_the_huge_step_total(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from genrl_gym.agents import GenRLAgent
    from genrl_gym.wrappers import learn_for

    agent = GenRLAgent(str(save_tiny_model(tmp_path / "m.pt")), str(save_random_clip(tmp_path / "c.gif", 16)),
                       preset="tiny", seed=0)
    budget = learn_for(agent, 1.5, progress_bar=True)
    text = _bar_text(capsys)
    assert "1,000,000,000" not in text and "1000000000" not in text and "it/s" not in text
    last = [line for line in text.splitlines() if "time budget" in line][-1]
    # e.g. "time budget: 100%|#####| 2/2 s [00:02<00:00, 37 updates, 24.6/s]": budget in s, remaining, updates done
    assert "/2 s [" in last and f"{agent.num_timesteps:,} updates" in last and "<00:00," in last, last
    assert budget.steps_done == agent.num_timesteps > 0 and budget.pbar is None  # closed
    # GenRLAgent.learn(10**9, callback=WallClockBudget, progress_bar=True): the same bar, not a count towards 10**9
    agent.learn(10**9, callback=WallClockBudget(1.0), progress_bar=True)
    text = _bar_text(capsys)
    assert "1,000,000,000" not in text and "time budget" in text and f"{agent.num_timesteps:,} updates" in text


def test_the_time_budget_bar_counts_env_steps_of_sb3_learners(capsys: pytest.CaptureFixture[str]) -> None:
    from genrl_gym.wrappers import learn_for

    venv = make_vec_env(lambda: make_pixel_env("walker", "stand", proprio=True, pixels=False, episode_frames=40),
                        n_envs=2, seed=0)
    model = PPO("MlpPolicy", VecSelectKey(venv, "proprio"), n_steps=32, batch_size=32, n_epochs=1, seed=0, device="cpu")
    budget = learn_for(model, 1.0, progress_bar=True)
    text = _bar_text(capsys)
    assert "1,000,000,000" not in text
    last = [line for line in text.splitlines() if "time budget" in line][-1]
    assert f"{model.num_timesteps:,} steps" in last and "/1 s [" in last, last
    assert budget.elapsed >= 1.0


def test_the_remaining_time_is_the_rest_of_the_budget() -> None:
    budget = WallClockBudget(600.0, progress_bar=True)

    class Learner:  # all a callback reads from its model
        num_timesteps = 0

    budget.init_callback(Learner())  # type: ignore[arg-type]
    budget.on_training_start({}, {})
    budget.t0 -= 240.0  # as if 4 minutes of the 10-minute budget had passed
    budget._last_draw = 0.0
    Learner.num_timesteps = 650
    assert budget.on_step()  # budget left: go on
    text = str(budget.pbar)  # e.g. "time budget:  40%|####      | 240/600 s [04:00<06:00, 650 steps, 2.7/s]"
    assert " 40%|" in text and "240/600 s [04:00<06:00, 650 steps, 2.7/s]" in text, text
    budget.close_bar()
