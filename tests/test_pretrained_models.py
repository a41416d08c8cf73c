"""Every shipped model (genrl_gym/pretrained/<domain>/): compact, self-describing, resolvable, prompt clips present,
video prompts and, through each model's text grounding, text of its behaviours only (other text is refused), and usable
through ``gym.make`` with no arguments but the episode length."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

from genrl_gym.envs import env_id, get_task
from genrl_gym.model_store import PRETRAINED_DIR, resolve_model
from genrl_gym.prompts import example, list_examples, read_video
from genrl_gym.utils import PromptError

SHIPPED = sorted(p.parent.name for p in PRETRAINED_DIR.glob("*/model.pt"))
MAX_BYTES = 25 * 2**20  # the budget per domain


def test_walker_is_shipped() -> None:
    assert "walker" in SHIPPED


@pytest.mark.parametrize("domain", SHIPPED)
def test_shipped_model_is_compact_and_self_describing(domain: str) -> None:
    folder = PRETRAINED_DIR / domain
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert size <= MAX_BYTES, f"{domain}: {size / 2**20:.1f} MB shipped"
    meta = json.loads((folder / "model.json").read_text())
    assert meta["domain"] == domain and meta["weights_dtype"] == "float16"
    assert meta["vlm"]["identity"]["backend"] == "video-only" and meta["vlm"]["has_language"] is False
    assert meta["render_settings"]["image_size"] == 64
    assert meta["recipe"]["sources"], "the data mix (policies, stages, episodes) must be recorded"
    assert "genrl pipeline" in meta["reproduce"]
    model = resolve_model(domain)
    assert model.domain == domain and model.vlm_identity.backend == "video-only"
    assert model.config.action_dim == gym.make(env_id(domain), episode_frames=4).action_space.shape[0]


@pytest.mark.parametrize("domain", SHIPPED)
def test_shipped_clips_cover_the_in_distribution_tasks(domain: str) -> None:
    clips = list_examples(domain)
    meta = json.loads((PRETRAINED_DIR / domain / "model.json").read_text())
    for task in meta["prompts"]:
        assert get_task(domain, task).in_distribution
        assert (domain, task) in clips and example(domain, task) == clips[(domain, task)]
        frames = read_video(clips[(domain, task)])
        assert frames.shape[1:] == (64, 64, 3) and frames.shape[0] >= 8


@pytest.mark.parametrize("domain", SHIPPED)
def test_registered_env_runs_on_the_shipped_model_and_refuses_text(domain: str) -> None:
    env = gym.make(env_id(domain), episode_frames=20)  # shipped model + its first task's clip
    env.reset(seed=0)
    rewards = [env.step(env.action_space.sample())[1] for _ in range(5)]
    assert all(np.isfinite(rewards))
    env.close()
    with pytest.raises(PromptError, match="genrl pipeline"):
        gym.make(env_id(domain), prompt="do the task well")
