"""Stable-Baselines3 end to end: SB3's env checker on every GenRL id, PPO and SAC on GenRL/Walker-v0 and on
VecGenRLReward (a few hundred steps each, small nets), and GenRLLogCallback's logged values."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_checker import check_env
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import KVWriter, Logger
from stable_baselines3.common.vec_env import VecEnv

import genrl_gym  # noqa: F401  (registers the ids; render guard)
from genrl_gym.envs import make_pixel_env
from genrl_gym.registration import ENV_IDS
from genrl_gym.wrappers import GenRLLogCallback, VecGenRLReward
from helpers import ACTION_DIMS, image_only, save_random_clip, save_tiny_model

EPISODE_FRAMES = 64  # 32-step episodes: 256 steps on 2 envs finish several episodes
TIMESTEPS = 256


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("genrl_sb3")
    save_random_clip(root / "prompt.gif", 10)
    out = {d: save_tiny_model(root / f"{d}.pt", d) for d in ACTION_DIMS}
    out["prompt"] = root / "prompt.gif"
    return out


@pytest.mark.parametrize("env_id", [pytest.param(i, marks=pytest.mark.slow) if d == "kitchen" else i
                                    for i, d in ENV_IDS.items()])
def test_sb3_check_env(assets: dict[str, Path], env_id: str) -> None:
    domain = ENV_IDS[env_id]
    kw: dict[str, Any] = {"model": str(assets[domain]), "prompt": str(assets["prompt"])}
    if domain == "kitchen":
        try:
            import gymnasium_robotics  # noqa: F401
        except ImportError:  # optional dependency: the error must say how to install it
            with pytest.raises(ImportError, match="pip install"):
                gym.make(env_id, **kw)
            return
    else:
        kw["episode_frames"] = 40
    env = gym.make(env_id, **kw)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, warn=True)  # SB3 warns about anything its algorithms would mishandle (image dtype/bounds...)
    sb3_warnings = [str(w.message) for w in caught if "stable_baselines3" in w.filename]
    assert not sb3_warnings, sb3_warnings
    env.close()


def _genrl_id_venv(assets: dict[str, Path]) -> VecEnv:
    kw = {"model": str(assets["walker"]), "prompt": str(assets["prompt"]), "episode_frames": EPISODE_FRAMES}
    return make_vec_env("GenRL/Walker-v0", n_envs=2, seed=0, env_kwargs=kw)


def _wrapped_venv(assets: dict[str, Path]) -> VecEnv:
    base = make_vec_env(lambda: image_only(make_pixel_env("walker", "stand", episode_frames=EPISODE_FRAMES)), n_envs=2, seed=0)
    return VecGenRLReward(base, assets["walker"], assets["prompt"], domain="walker")


def _algo(name: str, venv: VecEnv) -> BaseAlgorithm:
    policy = "MultiInputPolicy" if isinstance(venv.observation_space, spaces.Dict) else "CnnPolicy"
    extractor = {"cnn_output_dim": 16} if policy == "MultiInputPolicy" else {"features_dim": 16}
    policy_kwargs = {"net_arch": [16], "features_extractor_kwargs": extractor}
    if name == "PPO":
        return PPO(policy, venv, n_steps=64, batch_size=64, n_epochs=1, policy_kwargs=policy_kwargs, seed=0, device="cpu")
    return SAC(policy, venv, buffer_size=512, learning_starts=128, batch_size=16, train_freq=16, gradient_steps=2,
               policy_kwargs=policy_kwargs, seed=0, device="cpu")


class _Capture(KVWriter):
    """Keeps every dump of SB3's logger."""

    def __init__(self) -> None:
        self.dumps: list[dict[str, Any]] = []

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, Any], step: int = 0) -> None:
        self.dumps.append(dict(key_values))


@pytest.mark.slow
@pytest.mark.parametrize("source", ["GenRL/Walker-v0", "VecGenRLReward"])
@pytest.mark.parametrize("algo", ["PPO", "SAC"])
def test_learn_a_few_hundred_steps(assets: dict[str, Path], algo: str, source: str) -> None:
    venv = _genrl_id_venv(assets) if source == "GenRL/Walker-v0" else _wrapped_venv(assets)
    model = _algo(algo, venv)
    capture = _Capture()
    model.set_logger(Logger(folder=None, output_formats=[capture]))
    callback = GenRLLogCallback()
    start = time.perf_counter()
    model.learn(TIMESTEPS, callback=callback)
    elapsed = time.perf_counter() - start
    assert model.num_timesteps >= TIMESTEPS
    # 256 steps / 2 envs = 128 steps per env = 4 episodes of 32 steps each
    assert len(callback.ep_scores) == 8 and len(callback.ep_task_returns) == 8
    assert all(np.isfinite(callback.ep_scores)) and all(0 <= r <= 2 * 32 for r in callback.ep_task_returns)
    logged = set().union(*capture.dumps)
    assert {"genrl/score_mean", "genrl/task_reward_mean", "genrl/ep_score_mean", "genrl/ep_task_return_mean"} <= logged
    # the algorithm learned from GenRL scores: its replay/rollout rewards are the scores, not the task reward
    if algo == "SAC":
        stored = model.replay_buffer.rewards[:model.replay_buffer.pos].ravel()
        assert np.abs(stored).max() <= 1.0 + 1e-6  # max-norm cosine scores lie in [-1, 1]; task rewards reach 2
    print(f"{algo} on {source}: {TIMESTEPS} steps in {elapsed:.1f} s")
    venv.close()


def test_log_callback_logs_step_and_episode_means(assets: dict[str, Path]) -> None:
    venv = _wrapped_venv(assets)
    model = _algo("PPO", venv)
    capture = _Capture()
    model.set_logger(Logger(folder=None, output_formats=[capture]))
    scores: list[float] = []
    tasks: list[float] = []

    class Spy(GenRLLogCallback):
        def _on_step(self) -> bool:
            scores.extend(info["genrl_score"] for info in self.locals["infos"])
            tasks.extend(info["task_reward"] for info in self.locals["infos"])
            return super()._on_step()

    model.learn(128, callback=Spy())  # one rollout: 64 steps x 2 envs, two 32-step episodes per env
    first = capture.dumps[0]
    assert first["genrl/score_mean"] == pytest.approx(np.mean(scores), rel=1e-6)
    assert first["genrl/task_reward_mean"] == pytest.approx(np.mean(tasks), rel=1e-6)
    per_env = np.asarray(tasks).reshape(64, 2)
    episode_returns = [per_env[k:k + 32, i].sum() for i in range(2) for k in (0, 32)]
    assert first["genrl/ep_task_return_mean"] == pytest.approx(np.mean(episode_returns), rel=1e-6)
    per_env_scores = np.asarray(scores).reshape(64, 2)
    assert first["genrl/ep_score_mean"] == pytest.approx(np.mean([per_env_scores[k:k + 32, i].sum() for i in range(2)
                                                                  for k in (0, 32)]), rel=1e-5)
    venv.close()
