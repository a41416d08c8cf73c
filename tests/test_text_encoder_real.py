"""The real sentence encoder (all-MiniLM-L6-v2 from its PyPI package, ~9-12 s to load once) and text prompts of a
shipped model through gym.make."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from genrl_gym.utils import PromptError
from genrl_gym.vlm.text_encoder import ENCODER_SHA256, load_sentence_encoder


@pytest.mark.slow
def test_the_packaged_encoder_reproduces_the_model_card() -> None:
    enc = load_sentence_encoder()
    assert enc.sha256 == ENCODER_SHA256 and enc.dim == 384
    e = enc.encode(["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."])
    assert e.shape == (3, 384) and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    sims = e @ e.T
    # sentence-transformers/all-MiniLM-L6-v2 model card: 0.6660, 0.1046 (and 0.1411 between the last two)
    assert sims[0, 1] == pytest.approx(0.6660, abs=1e-3)
    assert sims[0, 2] == pytest.approx(0.1046, abs=1e-3)
    assert sims[1, 2] == pytest.approx(0.1411, abs=1e-3)
    assert load_sentence_encoder() is enc  # once per process


def test_gym_make_with_a_text_prompt_on_the_shipped_walker() -> None:
    env = gym.make("GenRL/Walker-v0", prompt="run", episode_frames=40)
    try:
        obs, _ = env.reset(seed=0)
        rewards = []
        for _ in range(12):
            obs, r, *_ = env.step(env.action_space.sample())
            rewards.append(r)
        assert np.isfinite(rewards).all() and any(r != 0 for r in rewards)
        target = env.get_wrapper_attr("target")
        assert target.kind == "text" and target.prompt == "run" and not target.aligned
        assert env.get_wrapper_attr("prompt") == "run"
    finally:
        env.close()
    with pytest.raises(PromptError, match="stand, walk, run"):
        gym.make("GenRL/Walker-v0", prompt="make coffee", episode_frames=40)
