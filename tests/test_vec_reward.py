"""VecGenRLReward (SB3): batched rewards equal the single-env wrapper's, terminal_observation handling at episode
boundaries, HWC/CHW images, infos, and errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnvWrapper, VecTransposeImage

import genrl_gym  # noqa: F401  (render guard first)
from genrl_gym.envs import make_pixel_env
from genrl_gym.utils import CheckpointError
from genrl_gym.wrappers import GenRLReward, VecGenRLReward
from helpers import image_only, save_random_clip, save_tiny_model

EPISODE_FRAMES = 8  # 4 agent steps per episode: every test crosses episode boundaries


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("genrl_vec")
    save_random_clip(root / "prompt.gif", 9)
    return {"walker": save_tiny_model(root / "walker.pt", "walker"),
            "cheetah": save_tiny_model(root / "cheetah.pt", "cheetah"),
            "prompt": root / "prompt.gif"}


def _pixel_venv(n: int, **kw: Any) -> DummyVecEnv:
    return DummyVecEnv([lambda: make_pixel_env("walker", "stand", episode_frames=EPISODE_FRAMES, **kw) for _ in range(n)])


class _RewardSpy(VecEnvWrapper):
    """Records the rewards of the VecEnv it wraps (what the env itself returned before any reward wrapper)."""

    def reset(self) -> Any:
        return self.venv.reset()

    def step_wait(self) -> Any:
        obs, rewards, dones, infos = self.venv.step_wait()
        self.last = np.array(rewards, copy=True)
        return obs, rewards, dones, infos


def _single_env_rewards(assets: dict[str, Path], actions: np.ndarray, seed: int) -> list[float]:
    """What GenRLReward gives for one env of the VecEnv: reset with the seed, then plain resets after each episode."""
    env = GenRLReward(make_pixel_env("walker", "stand", episode_frames=EPISODE_FRAMES), assets["walker"], assets["prompt"])
    env.reset(seed=seed)
    out = []
    for a in actions:
        _, r, term, trunc, _ = env.step(a)
        out.append(r)
        if term or trunc:
            env.reset()
    env.close()
    return out


def test_batched_rewards_equal_single_env_across_episode_boundaries(assets: dict[str, Path]) -> None:
    n, steps = 3, 10
    spy = _RewardSpy(_pixel_venv(n))
    venv = VecGenRLReward(spy, assets["walker"], assets["prompt"])
    venv.seed(40)
    venv.reset()
    acts = np.random.default_rng(3).uniform(-1, 1, (steps, n, 6)).astype(np.float32)
    rewards, dones = [], []
    for a in acts:
        obs, r, d, infos = venv.step(a)
        assert r.dtype == np.float32 and r.shape == (n,)
        for i, info in enumerate(infos):
            assert info["genrl_score"] == pytest.approx(float(r[i]))
            assert info["task_reward"] == pytest.approx(float(spy.last[i]), rel=1e-6)  # SB3 buffers are float32
            assert "original_env_rew" not in info  # one key for the true reward in every wrapper
            if d[i]:  # the last frame of the episode is in terminal_observation, obs holds the next episode's first
                assert not np.array_equal(info["terminal_observation"]["image"], obs["image"][i])
        rewards.append(r)
        dones.append(d)
    assert np.asarray(dones)[[3, 7]].all() and not np.asarray(dones)[[0, 1, 2, 4, 5, 6]].any()
    got = np.asarray(rewards)
    for i in range(n):
        np.testing.assert_allclose(got[:, i], _single_env_rewards(assets, acts[:, i], seed=40 + i), rtol=1e-5, atol=1e-6)
    # after a boundary the latent window restarted from the new episode's first frame
    assert (venv.scorer.lengths == 10 - 8 + 1).all()
    venv.close()


def test_terminal_observation_is_the_frame_scored(assets: dict[str, Path]) -> None:
    """Scoring the auto-reset frame instead of terminal_observation would change the boundary step's reward."""
    venv = VecGenRLReward(_pixel_venv(1), assets["walker"], assets["prompt"])
    venv.seed(5)
    venv.reset()
    acts = np.random.default_rng(0).uniform(-1, 1, (4, 1, 6)).astype(np.float32)
    for a in acts:
        _, r, d, infos = venv.step(a)
    assert d[0]
    expected = _single_env_rewards(assets, acts[:, 0], seed=5)[-1]
    assert float(r[0]) == pytest.approx(expected, rel=1e-5, abs=1e-6)
    venv.close()


def test_hwc_chw_dict_and_box_give_the_same_rewards(assets: dict[str, Path]) -> None:
    acts = np.random.default_rng(1).uniform(-1, 1, (6, 2, 6)).astype(np.float32)
    venvs = {
        "dict-hwc": _pixel_venv(2),
        "dict-chw": VecTransposeImage(_pixel_venv(2)),
        "box-chw": VecTransposeImage(DummyVecEnv([lambda: image_only(make_pixel_env("walker", "stand",
                                                                                  episode_frames=EPISODE_FRAMES))] * 2)),
    }
    results = {}
    for name, base in venvs.items():
        venv = VecGenRLReward(base, assets["walker"], assets["prompt"], domain="walker")
        venv.seed(9)
        venv.reset()
        results[name] = np.stack([venv.step(a)[1] for a in acts])
        venv.close()
    np.testing.assert_array_equal(results["dict-hwc"], results["dict-chw"])
    np.testing.assert_array_equal(results["dict-hwc"], results["box-chw"])


class _DropTerminalObservation(VecEnvWrapper):
    """A VecEnv that does not follow SB3's protocol (no terminal_observation)."""

    def reset(self) -> Any:
        return self.venv.reset()

    def step_wait(self) -> Any:
        obs, rews, dones, infos = self.venv.step_wait()
        for info in infos:
            info.pop("terminal_observation", None)
        return obs, rews, dones, infos


def test_errors(assets: dict[str, Path]) -> None:
    with pytest.raises(CheckpointError, match="'cheetah' domain and cannot score 'walker'"):
        VecGenRLReward(_pixel_venv(1), assets["cheetah"], assets["prompt"])  # domain read from the envs' task_spec
    venv = VecGenRLReward(_DropTerminalObservation(_pixel_venv(1)), assets["walker"], assets["prompt"], domain="walker")
    venv.reset()
    with pytest.raises(RuntimeError, match="terminal_observation"):
        for _ in range(4):
            venv.step(np.zeros((1, 6), np.float32))
    venv.close()
    small = DummyVecEnv([lambda: make_pixel_env("walker", "stand", image_size=48)])
    with pytest.raises(ValueError, match="64x64"):
        VecGenRLReward(small, assets["walker"], assets["prompt"])
    small.close()
