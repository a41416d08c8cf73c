"""The shipped walker model (genrl_gym/pretrained/walker): loads, its clips resolve, and prompt discrimination.

The discrimination check is the issue's criterion on a small scale: for each task a, the mean GenRL reward (as the
envs compute it) of the target of a's shipped clip on a's clip frames must exceed that on every other clip's frames.
Measured on this model (genrl_gym/pretrained/walker/REPORT.md has the full held-out matrix): the stand row passes;
the walk and run rows do not yet (every target scores the static stand clip highly), recorded as strict xfails so
that a better model turns them into failures to update, not silent passes.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from genrl_gym.model_store import resolve_model
from genrl_gym.prompts import example, read_video, target_from_prompt
from genrl_gym.training.report import env_rewards
from genrl_gym.utils import PromptError

TASKS = ("stand", "walk", "run")


@pytest.fixture(scope="module")
def walker():  # noqa: ANN201
    return resolve_model("walker")


@pytest.fixture(scope="module")
def matrix(walker) -> dict[str, dict[str, float]]:  # noqa: ANN001
    feats = {}
    for b in TASKS:
        frames = torch.as_tensor(read_video(example("walker", b)))[None]
        t = frames.shape[1]
        is_first = torch.zeros(1, t, dtype=torch.bool)
        is_first[0, 0] = True
        post, _ = walker.observe(frames, torch.zeros(1, t, walker.config.action_dim), is_first, sample=False)
        feats[b] = walker.reward_features(post.stoch[0]).detach()
    out: dict[str, dict[str, float]] = {}
    for a in TASKS:
        target = target_from_prompt(walker, example("walker", a)).features.detach()
        out[a] = {b: float(env_rewards(feats[b], target)[1:].mean()) for b in TASKS}
    return out


def test_shipped_model_and_clips(walker) -> None:  # noqa: ANN001
    assert walker.domain == "walker" and walker.config.action_dim == 6
    assert walker.vlm_identity.backend == "video-only"  # offline default: video prompts only
    for task in TASKS:
        assert example("walker", task).exists()
    env = gym.make("GenRL/Walker-v0", episode_frames=20)  # defaults: shipped model, shipped stand clip
    obs, _ = env.reset(seed=0)
    rewards = [env.step(env.action_space.sample())[1] for _ in range(5)]
    assert all(np.isfinite(rewards))
    env.close()
    with pytest.raises(PromptError, match="genrl pipeline"):
        gym.make("GenRL/Walker-v0", prompt="run fast")


@pytest.mark.parametrize("task", [
    "stand",
    pytest.param("walk", marks=pytest.mark.xfail(strict=True, reason="walk target scores the stand clip higher")),
    pytest.param("run", marks=pytest.mark.xfail(strict=True, reason="run target scores the stand clip higher")),
])
def test_prompt_discrimination_on_shipped_clips(matrix: dict[str, dict[str, float]], task: str) -> None:
    row = matrix[task]
    others = [row[b] for b in TASKS if b != task]
    assert row[task] > max(others), row
