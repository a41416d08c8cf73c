"""The Franka kitchen tasks (genrl_gym.envs.kitchen) on gymnasium-robotics' FrankaKitchen-v1.

Needs the ``kitchen`` extra (gymnasium-robotics, installed by ``make test``). Rendering the kitchen on a software
(Mesa llvmpipe) EGL costs ~0.08 s per 64x64 frame even with the fast settings, so the tests take few steps.
"""

from __future__ import annotations

import numpy as np
import pytest

import gymnasium_robotics  # noqa: F401,E402  (the kitchen extra; installed by make test)

from genrl_gym.envs.kitchen import KITCHEN_TASKS, MAX_AGENT_STEPS, KitchenEnv, make_kitchen_env


@pytest.fixture(scope="module")
def microwave() -> KitchenEnv:
    env = make_kitchen_env("microwave", image_size=64, seed=0)
    yield env
    env.close()


def test_spaces_observation_and_failure_reward(microwave: KitchenEnv) -> None:
    assert microwave.action_space.shape == (9,)
    assert np.all(microwave.action_space.low == -1.0) and np.all(microwave.action_space.high == 1.0)
    obs, info = microwave.reset(seed=0)
    assert set(obs) == {"image"}
    assert obs["image"].shape == (64, 64, 3) and obs["image"].dtype == np.uint8
    assert microwave.observation_space.contains(obs)
    assert obs["image"].std() > 10  # a rendered scene, not a blank frame
    assert not info["success"] and info["distance"] == pytest.approx(0.75, abs=0.02)
    obs, reward, terminated, truncated, info = microwave.step(microwave.action_space.sample())
    assert obs["image"].shape == (64, 64, 3)
    assert reward == 0.0 and info["task_reward"] == 0.0 and not terminated and not truncated
    assert info["dense_reward"] == pytest.approx(-info["distance"])


def test_episode_truncates_after_140_agent_steps(microwave: KitchenEnv) -> None:
    microwave.reset(seed=1)
    microwave._steps = MAX_AGENT_STEPS - 1  # skip 139 slow rendered steps
    _, _, terminated, truncated, _ = microwave.step(np.zeros(9))
    assert MAX_AGENT_STEPS == 140 and truncated and not terminated


def test_same_seed_same_first_frame() -> None:
    a = KitchenEnv("microwave", seed=3)
    b = KitchenEnv("microwave", seed=3)
    try:
        np.testing.assert_array_equal(a.reset()[0]["image"], b.reset()[0]["image"])
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("task", sorted(KITCHEN_TASKS))
def test_sparse_success_when_object_reaches_goal(task: str) -> None:
    env = KitchenEnv(task)
    try:
        env.reset(seed=0)
        _, indices, goal, threshold = KITCHEN_TASKS[task]
        assert env._distance() > threshold  # not solved at the start
        env._env.data.qpos[list(indices)] = goal
        env._env.data.qvel[:] = 0.0
        _, reward, terminated, truncated, info = env.step(np.zeros(9))
        assert info["success"] and reward == 1.0 and info["task_reward"] == 1.0
        assert terminated and not truncated
    finally:
        env.close()


def test_fast_render_quality() -> None:
    env = make_kitchen_env("slide", render_quality="fast")
    try:
        image = env.reset(seed=0)[0]["image"]
        assert image.shape == (64, 64, 3) and image.std() > 10
        assert env.unwrapped.render_settings == {"image_size": 64, "camera_id": None, "render_quality": "fast"}
    finally:
        env.close()


def test_unknown_task_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown kitchen task"):
        KitchenEnv("kettle")  # type: ignore[arg-type]


def test_kitchen_and_dm_control_render_in_one_process() -> None:
    from dm_control import suite
    walker = suite.load("walker", "walk", task_kwargs={"random": 0})
    walker.reset()
    before = walker.physics.render(64, 64, camera_id=0)
    env = KitchenEnv("light")
    try:
        kitchen_frame = env.reset(seed=0)[0]["image"]
        after = walker.physics.render(64, 64, camera_id=0)
        np.testing.assert_array_equal(before, after)  # dm_control still draws into its own context
        np.testing.assert_array_equal(env.render(), kitchen_frame)
    finally:
        env.close()
