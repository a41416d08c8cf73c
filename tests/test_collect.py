"""collect(): episode boundaries with vector envs, flags, seeding/resume, policies (random, SB3), real walker env."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import genrl_gym  # noqa: F401  (render/torch guard, project rule)
from genrl_gym.data import EpisodeStore, HandoverPolicy, RandomPolicy, SB3Policy, collect
from genrl_gym.data.collect import episode_seed
from genrl_gym.utils import DatasetError


class TinyPixelEnv(gym.Env):
    """Same observation/info structure as make_pixel_env, with rows that identify themselves.

    proprio = [t, episode tag from the reset seed, cumulative action]; image[..., 0] = t; reward = action[0] + 1;
    info["task_reward"] = t. With ``variable=True`` an episode terminates after 2..5 steps (drawn at reset),
    otherwise it is truncated after ``max_steps``.
    """

    def __init__(self, max_steps: int = 5, variable: bool = False, with_task_reward: bool = True) -> None:
        self.observation_space = gym.spaces.Dict({
            "image": gym.spaces.Box(0, 255, (8, 8, 3), np.uint8),
            "proprio": gym.spaces.Box(-np.inf, np.inf, (3,), np.float32),
        })
        self.action_space = gym.spaces.Box(-1, 1, (2,), np.float32)
        self.max_steps, self.variable, self.with_task_reward = max_steps, variable, with_task_reward
        self.render_settings = {"image_size": 8, "camera_id": 0, "render_quality": "tiny"}

    def _obs(self) -> dict[str, np.ndarray]:
        image = np.zeros((8, 8, 3), np.uint8)
        image[..., 0] = self.t
        return {"image": image, "proprio": np.array([self.t, self.tag, self.x], np.float32)}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.t, self.x = 0, 0.0
        self.tag = float(self.np_random.integers(0, 2**20))
        self.length = int(self.np_random.integers(2, 6)) if self.variable else self.max_steps
        return self._obs(), {}

    def step(self, action):
        assert self.t < self.length, "stepped a finished episode"
        self.t += 1
        self.x += float(np.sum(action))
        terminated = self.variable and self.t == self.length
        truncated = not self.variable and self.t == self.max_steps
        info = {"task_reward": float(self.t)} if self.with_task_reward else {}
        return self._obs(), float(action[0]) + 1.0, terminated, truncated, info


class ProprioOnly(gym.Env):
    """Box-observation env with TinyPixelEnv's proprio/action spaces (to build an SB3 model on proprioception)."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    action_space = gym.spaces.Box(-1, 1, (2,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(3, np.float32), {}

    def step(self, action):
        return np.zeros(3, np.float32), 0.0, False, True, {}


def tiny(**kw: Any):
    """Picklable factory (AsyncVectorEnv workers import this module)."""
    import functools

    return functools.partial(TinyPixelEnv, **kw)


def check_episode(ep: dict[str, np.ndarray], *, terminal: bool) -> None:
    n = len(ep["is_first"])
    rows = np.arange(n)
    np.testing.assert_array_equal(ep["is_first"], rows == 0)
    np.testing.assert_array_equal(ep["is_last"], rows == n - 1)
    np.testing.assert_array_equal(ep["is_terminal"], (rows == n - 1) & terminal)
    # every row belongs to this episode and they are in order: reset obs at row 0, final obs at the last row
    np.testing.assert_array_equal(ep["proprio"][:, 0], rows)
    np.testing.assert_array_equal(ep["image"][:, 0, 0, 0], rows)
    assert (ep["proprio"][:, 1] == ep["proprio"][0, 1]).all()
    # action t led to row t: row 0 holds zeros, reward[t] = action[t, 0] + 1, cumulative action matches
    np.testing.assert_array_equal(ep["action"][0], 0)
    np.testing.assert_allclose(ep["reward"][1:], ep["action"][1:, 0] + 1, rtol=1e-6)
    np.testing.assert_allclose(ep["proprio"][:, 2], np.cumsum(ep["action"].sum(1)), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(ep["task_reward"], rows)
    assert ep["reward"][0] == 0 and (np.abs(ep["action"]) <= 1).all()


def test_collect_one_env(tmp_path: Path) -> None:
    store = EpisodeStore(tmp_path)
    stats = collect(tiny(max_steps=5), store=store, num_episodes=3, seed=7, progress=False)
    assert stats.episodes_collected == 3 and stats.episodes_existing == 0 and stats.frames == 18
    assert [p.name for p in store.paths()] == [f"ep-00000{i}-L6.npz" for i in range(3)]
    infos = store.episode_info()
    tags = set()
    for j, p in enumerate(store.paths()):
        ep = store.load(p)
        check_episode(ep, terminal=False)
        info = infos[p.stem]
        assert info["source"] == "random" and info["episode_index"] == j and info["seed"] == episode_seed(7, j)
        assert info["return"] == pytest.approx(float(ep["reward"].sum()))
        assert info["task_return"] == pytest.approx(15.0)
        tags.add(ep["proprio"][0, 1])
    assert len(tags) == 3  # each episode was reset with its own seed
    assert store.metadata["render_settings"]["render_quality"] == "tiny"
    assert stats.returns == [infos[p.stem]["return"] for p in store.paths()]


@pytest.mark.parametrize("vectorization", ["sync", "async"])
def test_collect_two_envs_variable_length(tmp_path: Path, vectorization: str) -> None:
    store = EpisodeStore(tmp_path / vectorization)
    stats = collect(tiny(variable=True), store=store, num_episodes=5, num_envs=2, vectorization=vectorization, seed=1,
                    progress=False)
    assert stats.episodes_collected == 5 and len(store) == 5
    infos = store.episode_info()
    assert sorted(i["episode_index"] for i in infos.values()) == list(range(5))
    lengths = set()
    for p in store.paths():
        ep = store.load(p)
        check_episode(ep, terminal=True)
        lengths.add(len(ep["is_first"]))
        # the episode's reset seed decides its initial state: recollecting that seed reproduces the tag
        env = TinyPixelEnv(variable=True)
        obs, _ = env.reset(seed=infos[p.stem]["seed"])
        assert obs["proprio"][1] == ep["proprio"][0, 1]
    assert len(lengths) > 1


def test_sync_and_async_collect_identical_data(tmp_path: Path) -> None:
    results = {}
    for mode in ("sync", "async"):
        store = EpisodeStore(tmp_path / mode)
        collect(tiny(variable=True), store=store, num_episodes=3, num_envs=2, vectorization=mode, seed=3, progress=False)
        results[mode] = {i["episode_index"]: store.load(stem) for stem, i in store.episode_info().items()}
    assert results["sync"].keys() == results["async"].keys()
    for j in results["sync"]:
        for k, v in results["sync"][j].items():
            np.testing.assert_array_equal(v, results["async"][j][k])


def test_resume_collects_only_missing_episodes(tmp_path: Path) -> None:
    store = EpisodeStore(tmp_path)
    first = collect(tiny(), store=store, num_episodes=2, seed=0, progress=False)
    again = collect(tiny(), store=store, num_episodes=4, seed=0, progress=False)
    assert (first.episodes_collected, again.episodes_existing, again.episodes_collected) == (2, 2, 2)
    infos = store.episode_info()
    assert sorted(i["episode_index"] for i in infos.values()) == [0, 1, 2, 3]
    assert len({i["seed"] for i in infos.values()}) == 4  # resumed episodes do not repeat seeds
    done = collect(tiny(), store=store, num_episodes=4, seed=0, progress=False)
    assert done.episodes_collected == 0 and len(store) == 4
    # another source tag is counted separately; a deleted episode is re-collected
    other = collect(tiny(), store=store, num_episodes=1, seed=0, source="random-b", progress=False)
    assert other.episodes_collected == 1 and store.count(source="random-b") == 1
    deleted = store.paths()[0]
    deleted_info = store.episode_info()[deleted.stem]
    deleted_ep = store.load(deleted)
    deleted.unlink()  # e.g. a corrupt file removed as the error message says
    refill = collect(tiny(), store=store, num_episodes=4, seed=0, progress=False)
    assert refill.episodes_collected == 1 and store.count(source="random") == 4
    info = store.episode_info()[refill.paths[0].stem]
    assert (info["episode_index"], info["seed"]) == (deleted_info["episode_index"], deleted_info["seed"])
    np.testing.assert_array_equal(store.load(refill.paths[0])["proprio"][0], deleted_ep["proprio"][0])  # same reset


def test_collect_is_reproducible(tmp_path: Path) -> None:
    a, b = EpisodeStore(tmp_path / "a"), EpisodeStore(tmp_path / "b")
    for s in (a, b):
        collect(tiny(), store=s, num_episodes=2, num_envs=2, seed=5, progress=False)
    for pa, pb in zip(a.paths(), b.paths(), strict=True):
        for k, v in a.load(pa).items():
            np.testing.assert_array_equal(v, b.load(pb)[k])


def test_sb3_policy_on_proprio_drives_pixel_collection(tmp_path: Path) -> None:
    from stable_baselines3 import PPO

    model = PPO("MlpPolicy", ProprioOnly(), n_steps=8, batch_size=8, seed=0, device="cpu")
    store = EpisodeStore(tmp_path)
    policy = SB3Policy(model, obs_key="proprio", deterministic=True, tag="stage1")
    stats = collect(tiny(max_steps=4), policy=policy, store=store, num_episodes=3, num_envs=2, progress=False)
    assert stats.source == "sb3:PPO:stage1" and store.count(source="sb3:PPO:stage1") == 3
    for p in store.paths():
        ep = store.load(p)
        check_episode(ep, terminal=False)
        # action t was chosen by the model from proprio t-1 (deterministic, no noise)
        expected, _ = model.predict(ep["proprio"][:-1], deterministic=True)
        np.testing.assert_allclose(ep["action"][1:], np.clip(expected, -1, 1), rtol=1e-5, atol=1e-6)
    noisy = SB3Policy(model, obs_key="proprio", deterministic=True, noise_std=0.3, seed=0)
    collect(tiny(max_steps=4), policy=noisy, store=store, num_episodes=1, progress=False)
    ep = store.load(store.paths()[-1])
    clean, _ = model.predict(ep["proprio"][:-1], deterministic=True)
    assert not np.allclose(ep["action"][1:], np.clip(clean, -1, 1))
    assert (np.abs(ep["action"]) <= 1).all()


def test_sb3_policy_space_mismatch(tmp_path: Path) -> None:
    from stable_baselines3 import PPO

    class WideProprio(ProprioOnly):
        observation_space = gym.spaces.Box(-np.inf, np.inf, (5,), np.float32)

    model = PPO("MlpPolicy", WideProprio(), n_steps=8, batch_size=8, seed=0, device="cpu")
    with pytest.raises(ValueError, match=r"shape \(5,\).*\(3,\)"):
        collect(tiny(), policy=SB3Policy(model, obs_key="proprio"), store=EpisodeStore(tmp_path), num_episodes=1,
                progress=False)
    with pytest.raises(ValueError, match="obs_key 'state'"):
        collect(tiny(), policy=SB3Policy(model, obs_key="state"), store=EpisodeStore(tmp_path), num_episodes=1,
                progress=False)
    assert len(EpisodeStore(tmp_path)) == 0


def test_collect_errors(tmp_path: Path) -> None:
    store = EpisodeStore(tmp_path)
    with pytest.raises(ValueError, match="task_reward"):
        collect(tiny(with_task_reward=False), store=store, num_episodes=1, progress=False)
    with pytest.raises(ValueError, match="domain and task"):
        collect(store=store, num_episodes=1, progress=False)
    with pytest.raises(ValueError, match="'random' or a Policy"):
        collect(tiny(), policy="expert", store=store, num_episodes=1, progress=False)

    class BadPolicy(RandomPolicy):
        def act(self, obs, episode_start):
            return np.zeros((len(episode_start), 3), np.float32)

    with pytest.raises(ValueError, match="shape"):
        collect(tiny(), policy=BadPolicy(gym.spaces.Box(-1, 1, (2,)), 0), store=store, num_episodes=1, progress=False)
    store.update_metadata(domain="cheetah")
    with pytest.raises(DatasetError, match="domain 'cheetah'"):
        collect(tiny(), domain="walker", store=store, num_episodes=1, progress=False)
    assert len(store) == 0


@pytest.mark.parametrize("num_envs, vectorization", [(1, "sync"), (2, "async")])
def test_collect_real_walker(tmp_path: Path, num_envs: int, vectorization: str) -> None:
    store = EpisodeStore(tmp_path)
    stats = collect(domain="walker", task="stand", env_kwargs={"episode_frames": 40}, store=store, num_episodes=3,
                    num_envs=num_envs, vectorization=vectorization, seed=0, progress=False)
    assert stats.episodes_collected == 3 and [store.episode_length(p) for p in store.paths()] == [21, 21, 21]
    meta = store.metadata
    assert meta["domain"] == "walker" and meta["tasks"] == ["stand"] and meta["action_dim"] == 6
    assert meta["render_settings"] == {"image_size": 64, "camera_id": 0, "render_quality": "fast"}
    assert meta["image_size"] == [64, 64] and meta["proprio_dim"] > 0
    for p in store.paths():
        ep = store.load(p)
        n = len(ep["is_first"])
        np.testing.assert_array_equal(ep["is_first"], np.arange(n) == 0)
        np.testing.assert_array_equal(ep["is_last"], np.arange(n) == n - 1)
        assert not ep["is_terminal"].any()  # dm_control episodes end by time limit
        assert (ep["task_reward"] >= 0).all() and (ep["task_reward"] <= 2 + 1e-6).all()  # action repeat 2
        assert len(np.unique(ep["image"].reshape(n, -1), axis=0)) > n // 2  # frames change
        info = store.episode_info()[p.stem]
        assert info["env_kwargs"] == {"episode_frames": 40}
        assert info["task_return"] == pytest.approx(float(ep["task_reward"].sum()), rel=1e-5)


class _Constant:
    """A policy that always answers ``value`` (stands in for an expert)."""

    source = "constant"

    def __init__(self, value: float) -> None:
        self.value = value

    def reset(self) -> None:
        pass

    def act(self, obs: dict[str, np.ndarray], episode_start: np.ndarray) -> np.ndarray:
        return np.full((len(episode_start), 6), self.value, np.float32)


def test_handover_policy_switches_after_its_steps_in_every_episode(tmp_path: Path) -> None:
    space = gym.spaces.Box(-1.0, 1.0, (6,), np.float32)
    policy = HandoverPolicy(RandomPolicy(space, seed=0), _Constant(0.5), steps=3)
    assert policy.source == "random>constant@3"
    store = EpisodeStore(tmp_path / "d")
    collect(domain="walker", task="stand", env_kwargs={"episode_frames": 20}, policy=policy, store=store,
            num_episodes=2, num_envs=2, seed=0, progress=False)
    for path in store.paths():
        actions = store.load(path)["action"][1:]  # row 0 is the reset
        assert len(actions) == 10
        assert not np.allclose(actions[:3], 0.5) and np.allclose(actions[3:], 0.5)  # 3 random steps, then the expert
    with pytest.raises(ValueError, match="steps must be > 0"):
        HandoverPolicy(RandomPolicy(space), _Constant(0.5), steps=0)


def test_handover_policy_with_then_steps_alternates_all_episode_long(tmp_path: Path) -> None:
    space = gym.spaces.Box(-1.0, 1.0, (6,), np.float32)
    policy = HandoverPolicy(RandomPolicy(space, seed=0), _Constant(0.5), steps=2, then_steps=3)
    assert policy.source == "random>constant@2/3"
    store = EpisodeStore(tmp_path / "d")
    collect(domain="walker", task="stand", env_kwargs={"episode_frames": 20}, policy=policy, store=store,
            num_episodes=2, num_envs=2, seed=0, progress=False)
    expert_steps = np.array([t % 5 >= 2 for t in range(10)])  # cycles of 2 random + 3 expert steps, each episode
    for path in store.paths():
        actions = store.load(path)["action"][1:]
        assert len(actions) == 10
        constant = np.all(np.isclose(actions, 0.5), axis=1)
        np.testing.assert_array_equal(constant, expert_steps)
    with pytest.raises(ValueError, match="then_steps must be > 0"):
        HandoverPolicy(RandomPolicy(space), _Constant(0.5), steps=2, then_steps=0)
