"""The paper's model-free baseline reward: cosine between VLM embeddings of the last frames and the prompt."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecTransposeImage

from genrl_gym.envs import make_pixel_env
from genrl_gym.utils import PromptError
from genrl_gym.wrappers import VecEmbeddingSimilarityReward
from genrl_gym.wrappers.embedding_reward import embedding_similarity


def _venv(n: int = 2, frames: int = 20, seed: int = 0):
    return make_vec_env(lambda: make_pixel_env("walker", "stand", episode_frames=frames), n_envs=n, seed=seed)


def _first_frames(seed: int = 0) -> np.ndarray:
    env = make_pixel_env("walker", "stand")
    obs, _ = env.reset(seed=seed)
    frames = [obs["image"]]
    for _ in range(15):
        obs, *_ = env.step(np.zeros(6, np.float32))
        frames.append(obs["image"])
    env.close()
    return np.stack(frames)


def test_embedding_similarity_is_cosine() -> None:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(5, 16, generator=g)
    p = torch.randn(16, generator=g)
    expected = torch.nn.functional.cosine_similarity(w, p[None], dim=-1)
    assert torch.allclose(embedding_similarity(w, p), expected, atol=1e-6)
    assert torch.allclose(embedding_similarity(p[None] * 3.0, p), torch.ones(1), atol=1e-6)
    assert torch.allclose(embedding_similarity(-p[None], p), -torch.ones(1), atol=1e-6)


def test_rewards_are_cosines_and_prefer_the_matching_prompt() -> None:
    """A prompt cut from the env's own (seeded) frames scores higher than a noise clip, and rewards lie in [-1, 1]."""
    own = _first_frames(seed=0)
    noise = np.random.default_rng(0).integers(0, 256, own.shape, dtype=np.uint8)
    scores = {}
    for name, prompt in (("own", own), ("noise", noise)):
        venv = VecEmbeddingSimilarityReward(_venv(n=2), "video-only", prompt)
        venv.seed(0)
        venv.reset()
        rewards = [venv.step(np.zeros((2, 6), np.float32))[1] for _ in range(5)]
        venv.close()
        r = np.stack(rewards)
        assert r.shape == (5, 2) and r.dtype == np.float32
        assert np.all(np.abs(r) <= 1.0 + 1e-5)
        scores[name] = float(r.mean())
    assert scores["own"] > scores["noise"] + 0.05, scores


def test_window_restarts_at_episode_end_and_infos_keep_env_reward() -> None:
    venv = VecEmbeddingSimilarityReward(_venv(n=2, frames=8), "video-only", _first_frames())
    obs = venv.reset()
    done = np.zeros(2, bool)
    infos: list = []
    for _ in range(4):  # 8 frames / action repeat 2 = 4 steps
        obs, _, done, infos = venv.step(np.zeros((2, 6), np.float32))
    assert done.all()
    # after the auto-reset every window holds only the new episode's first frame
    for i in range(2):
        assert np.array_equal(venv._frames[i], np.repeat(obs["image"][i][None], venv.window, 0))
        assert "task_reward" in infos[i] and "embedding_similarity" in infos[i]
    venv.close()


def test_channel_first_observations_work() -> None:
    prompt = _first_frames()
    hwc = VecEmbeddingSimilarityReward(_venv(n=1), "video-only", prompt)
    chw = VecEmbeddingSimilarityReward(VecTransposeImage(_venv(n=1)), "video-only", prompt)
    for v in (hwc, chw):
        v.seed(3)
        v.reset()
    a = np.full((1, 6), 0.3, np.float32)
    r1, r2 = hwc.step(a)[1], chw.step(a)[1]
    assert np.allclose(r1, r2, atol=1e-6)


def test_bad_prompts_are_refused_clearly() -> None:
    with pytest.raises(PromptError, match="genrl pipeline"):
        VecEmbeddingSimilarityReward(_venv(n=1), "video-only", "walk fast")
    with pytest.raises(PromptError, match="needs a prompt"):
        VecEmbeddingSimilarityReward(_venv(n=1), "video-only", None)
    with pytest.raises(PromptError, match="at least 8"):
        VecEmbeddingSimilarityReward(_venv(n=1), "video-only", np.zeros((3, 64, 64, 3), np.uint8))
