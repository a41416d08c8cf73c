"""Pixel env contract (INTERFACES.md "envs"): spaces, checkers, seeding, action repeat, truncation, rendering, errors."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest

import genrl_gym  # noqa: F401  (render guard first)
from genrl_gym.envs import DOMAINS, TASKS, domains, get_task, make_pixel_env

# Short episodes keep every test at a fraction of a second per env.
FRAMES = 12


def _first_task(domain: str) -> str:
    return next(spec.task for spec in TASKS.values() if spec.domain == domain)


@pytest.mark.filterwarnings("ignore:.*Box observation space m(inimum|aximum) value is:UserWarning")  # proprio is unbounded
@pytest.mark.parametrize("domain", DOMAINS)
def test_checkers_pass(domain: str) -> None:
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env_id = "GenRLEnvsTest/Pixel-v0"
    gymnasium.register(env_id, entry_point=make_pixel_env)
    try:
        # Through gymnasium.make so that check_env can also build render_mode="rgb_array" copies and test close().
        wrapped = gymnasium.make(env_id, domain=domain, task=_first_task(domain), episode_frames=FRAMES, proprio=True,
                                 seed=0, disable_env_checker=True)
        env = wrapped.unwrapped
        check_env(env)
        sb3_check_env(env, warn=True)
        obs, _ = env.reset(seed=0)
        assert obs["image"].dtype == np.uint8 and obs["image"].shape == (64, 64, 3)
        assert env.action_space == gymnasium.spaces.Box(-1, 1, env.action_space.shape, np.float32)
        assert env.render_settings == {"image_size": 64, "camera_id": get_task(domain, _first_task(domain)).camera_id,
                                       "render_quality": "fast"}
        wrapped.close()
    finally:
        del gymnasium.registry[env_id]


def test_reproducible_by_seed() -> None:
    actions = np.random.default_rng(0).uniform(-1, 1, (6, 6)).astype(np.float32)

    def rollout(env: gymnasium.Env, seed: int) -> tuple[list[np.ndarray], list[float]]:
        obs, _ = env.reset(seed=seed)
        images, rewards = [obs["image"]], []
        for a in actions:
            obs, r, *_ = env.step(a)
            images.append(obs["image"])
            rewards.append(r)
        return images, rewards

    a, b = make_pixel_env("walker", "walk", episode_frames=100), make_pixel_env("walker", "walk", episode_frames=100)
    img_a, rew_a = rollout(a, 7)
    img_b, rew_b = rollout(b, 7)
    img_a2, rew_a2 = rollout(a, 7)  # same env, reseeded mid-life
    assert rew_a == rew_b == rew_a2
    assert not np.shares_memory(img_a[0], img_a[1]), "observations must not alias the renderer's buffer"
    for x, y, z in zip(img_a, img_b, img_a2, strict=True):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(x, z)
    img_c, _ = rollout(a, 8)
    assert not np.array_equal(img_a[0], img_c[0]), "a different seed should give a different initial pose"

    # A seed given at construction makes the first unseeded reset reproducible too.
    c, d = make_pixel_env("walker", "walk", seed=3), make_pixel_env("walker", "walk", seed=3)
    np.testing.assert_array_equal(c.reset()[0]["image"], d.reset()[0]["image"])
    for env in (a, b, c, d):
        env.close()


def test_proprio_option() -> None:
    env = make_pixel_env("walker", "stand", proprio=True, seed=0)
    obs, _ = env.reset(seed=0)
    # walker: 14 orientations + height + 9 velocities
    assert env.observation_space["proprio"].shape == (24,)
    assert obs["proprio"].dtype == np.float32 and obs["proprio"].shape == (24,)
    assert env.observation_space.contains(obs)
    assert obs["proprio"][14] == pytest.approx(env.physics.named.data.xpos["torso", "z"], abs=1e-6)
    env.close()
    plain = make_pixel_env("walker", "stand")
    assert set(plain.observation_space.spaces) == {"image"}
    assert set(plain.reset(seed=0)[0]) == {"image"}
    plain.close()


def test_state_only_mode_matches_pixel_env() -> None:
    state = make_pixel_env("walker", "walk", proprio=True, pixels=False, seed=2)
    pixel = make_pixel_env("walker", "walk", proprio=True, seed=2)
    assert set(state.observation_space.spaces) == {"proprio"}
    a, _ = state.reset(seed=2)
    b, _ = pixel.reset(seed=2)
    assert set(a) == {"proprio"}
    np.testing.assert_array_equal(a["proprio"], b["proprio"])
    for action in np.random.default_rng(0).uniform(-1, 1, (4, 6)).astype(np.float32):
        a, ra, *_ = state.step(action)
        b, rb, *_ = pixel.step(action)
        np.testing.assert_array_equal(a["proprio"], b["proprio"])
        assert ra == rb
    assert state.physics._contexts is None, "pixels=False must not create a render context"  # noqa: SLF001
    state.close()
    pixel.close()
    with pytest.raises(ValueError, match="proprio=True"):
        make_pixel_env("walker", "walk", pixels=False)


@pytest.mark.parametrize(("frames", "repeat", "steps"), [(10, 2, 5), (10, 3, 3), (4, 1, 4)])
def test_truncation_at_episode_frames(frames: int, repeat: int, steps: int) -> None:
    env = make_pixel_env("cheetah", "run", episode_frames=frames, action_repeat=repeat, seed=0)
    env.reset(seed=0)
    zero = np.zeros(env.action_space.shape, np.float32)
    for i in range(steps):
        _, _, terminated, truncated, _ = env.step(zero)
        assert not terminated
        assert truncated == (i == steps - 1)
    assert env.physics.data.time == pytest.approx(steps * repeat * env.dm_env.control_timestep())
    with pytest.raises(RuntimeError, match="reset"):
        env.step(zero)
    env.reset()
    env.step(zero)  # a new episode runs again
    env.close()


def test_action_repeat_sums_true_rewards_and_clips() -> None:
    actions = np.random.default_rng(1).uniform(-1.5, 1.5, (5, 6)).astype(np.float32)
    env = make_pixel_env("walker", "walk", action_repeat=2, seed=4)
    env.reset(seed=4)
    ref = domains.load("walker", "walk", random=4, environment_kwargs={"time_limit": float("inf")})
    ref.reset()
    for a in actions:
        _, reward, _, _, info = env.step(a)
        expected = sum(ref.step(np.clip(a, -1, 1)).reward for _ in range(2))
        assert reward == pytest.approx(expected, abs=1e-12)
        assert info["task_reward"] == reward
        assert 0.0 <= reward <= 2.0
    env.close()


def test_render_rgb_array_and_larger_size() -> None:
    env = make_pixel_env("walker", "stand", render_mode="rgb_array", seed=0)
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(env.render(), obs["image"])
    env.close()
    big = make_pixel_env("walker", "stand", render_mode="rgb_array", render_size=128, seed=0)
    big.reset(seed=0)
    frame = big.render()
    assert frame.shape == (128, 128, 3) and frame.dtype == np.uint8
    big.close()
    none = make_pixel_env("walker", "stand")
    none.reset(seed=0)
    with pytest.warns(UserWarning, match="render_mode"):
        assert none.render() is None
    none.close()


def test_fast_render_looks_like_default() -> None:
    frames = {}
    for quality in ("fast", "default"):
        env = make_pixel_env("walker", "stand", render_quality=quality, seed=0)
        frames[quality] = env.reset(seed=0)[0]["image"].astype(np.float32)
        assert env.render_settings["render_quality"] == quality
        env.close()
    diff = np.abs(frames["fast"] - frames["default"])
    # Same scene and pose: only the floor's reflection/shadow and edge anti-aliasing differ.
    assert diff.mean() < 12.0, diff.mean()
    assert np.median(diff) < 4.0
    assert diff.max() > 0, "fast and default rendering produced identical frames: the setting had no effect"


def test_unknown_domain_and_task_errors() -> None:
    with pytest.raises(ValueError, match=r"Unknown domain 'walkr'.*Did you mean 'walker'.*Valid domains: walker"):
        make_pixel_env("walkr", "stand")
    with pytest.raises(ValueError, match=r"Unknown walker task 'stnd'.*'stand'.*Valid walker tasks: stand, walk"):
        make_pixel_env("walker", "stnd")
    with pytest.raises(ValueError, match="Unknown domain 'kitchenette'"):
        domains.load("kitchenette", "x")


@pytest.mark.parametrize("kwargs", [
    {"image_size": 0}, {"image_size": -64}, {"image_size": 64.0}, {"image_size": True}, {"image_size": 100_000},
    {"action_repeat": 0}, {"action_repeat": 1.5}, {"episode_frames": 1, "action_repeat": 2},
    {"render_quality": "ultra"}, {"render_mode": "human"}, {"camera_id": 7},
])
def test_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        make_pixel_env("walker", "stand", **kwargs)


def test_bad_actions() -> None:
    env = make_pixel_env("walker", "stand")
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(6))
    env.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(5))
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.full(6, np.nan))
    env.close()
    with pytest.raises(RuntimeError, match="closed"):
        env.reset()


def test_render_env_kwargs_keeps_only_set_render_settings() -> None:
    from genrl_gym.envs import render_env_kwargs

    settings = {"image_size": 64, "camera_id": None, "render_quality": "fast", "domain": "walker", "action_repeat": 2}
    assert render_env_kwargs(settings) == {"image_size": 64, "render_quality": "fast", "action_repeat": 2}
    assert render_env_kwargs(None) == {}
    env = make_pixel_env("walker", "stand", episode_frames=4, **render_env_kwargs(settings))
    assert env.observation_space["image"].shape == (64, 64, 3)
    env.close()
