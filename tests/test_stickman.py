"""Tests of the custom stickman dm_control domain (genrl_gym/envs/domains/stickman.py + assets/stickman.xml)."""

from __future__ import annotations

import genrl_gym  # noqa: F401  (first: sets MUJOCO_GL=egl before dm_control/mujoco are imported)

import numpy as np
import pytest
from dm_control import suite
from dm_control.rl import control

from genrl_gym.envs.domains import stickman

_CAPSULE, _SPHERE = 3, 2  # mjtGeom ids


def _lowest_point(physics: stickman.Physics) -> float:
    """Lowest z over the body's geoms (capsules and spheres), m."""
    model, data = physics.model, physics.data
    low = np.inf
    for g in range(model.ngeom):
        if model.geom_type[g] == _CAPSULE:
            half_z = abs(data.geom_xmat[g, 8]) * model.geom_size[g, 1]  # zz entry x half-length
            low = min(low, data.geom_xpos[g, 2] - half_z - model.geom_size[g, 0])
        elif model.geom_type[g] == _SPHERE:
            low = min(low, data.geom_xpos[g, 2] - model.geom_size[g, 0])
    return float(low)


def _pose(physics: stickman.Physics, pitch: float = 0.0, qvel: dict[str, float] | None = None, **deg: float) -> None:
    """Set a static pose resting on the floor: body pitch (rad, > 0 tips forward), limb angles in degrees, velocities."""
    physics.data.qpos[:] = 0.0
    physics.data.qvel[:] = 0.0
    physics.named.data.qpos["rooty"] = pitch
    for joint, angle in deg.items():
        physics.named.data.qpos[joint] = np.deg2rad(angle)
    physics.forward()
    physics.named.data.qpos["rootz"] -= _lowest_point(physics)  # lowest point touches the floor
    for dof, value in (qvel or {}).items():
        physics.named.data.qvel[dof] = value
    physics.forward()


STAND: dict = {}
LYING = dict(pitch=-np.pi / 2)  # on the back
HANDSTAND = dict(pitch=np.pi, right_shoulder=180, left_shoulder=180)
HEADSTAND = dict(pitch=np.pi, right_shoulder=120, left_shoulder=120, right_elbow=60, left_elbow=60)
ONE_FOOT = dict(right_hip=90, right_knee=-90)
HIGH_KICK = dict(right_hip=120)
LEGS_UP = dict(pitch=-np.pi / 2, right_hip=90, left_hip=90)
KNEEL = dict(right_hip=60, left_hip=60, right_knee=-150, left_knee=-150)  # sitting back on the heels
LUNGE = dict(right_hip=100, right_knee=-100, left_knee=-90)  # right foot forward, left knee down
HANDS_UP = dict(right_shoulder=180, left_shoulder=180)

# task -> (a pose that does the task, a clearly wrong pose); rewards must be > 0.7 and < 0.3 respectively.
POSE_CASES: dict[str, tuple[dict, dict]] = {
    "stand": (STAND, LYING),
    "walk": (dict(qvel={"rootx": 1.5}), STAND),  # standing still: 1/6 of the stand term
    "run": (dict(qvel={"rootx": 9.0}), STAND),
    "flip": (dict(HANDSTAND, qvel={"rooty": 6.0}), dict(HANDSTAND, qvel={"rooty": -6.0})),  # front flip only
    "one_foot": (ONE_FOOT, STAND),
    "high_kick": (HIGH_KICK, STAND),
    "lying_down": (LYING, STAND),
    "legs_up": (LEGS_UP, LYING),
    "sit_knees": (KNEEL, LYING),  # note: plain standing already scores ~0.56 (lenient reference reward)
    "lunge_pose": (LUNGE, STAND),
    "headstand": (HEADSTAND, LYING),
    "flipping": (dict(HANDSTAND, qvel={"rooty": -6.0}), HANDSTAND),  # either direction; not spinning: 1/6
    "boxing": (dict(qvel={"right_shoulder": 12.0}), STAND),  # hand swings forward at ~7 m/s
    "hands_up": (HANDS_UP, STAND),
}


def test_task_names_and_pose_cases_agree() -> None:
    assert len(stickman.TASK_NAMES) == 14 and len(set(stickman.TASK_NAMES)) == 14
    assert set(POSE_CASES) == set(stickman.TASK_NAMES)
    for task in stickman.TASK_NAMES:
        assert len(stickman.reward_doc(task).strip().splitlines()) >= 2, task  # documented, one line per term


def test_model_layout() -> None:
    env = stickman.load("stand", random=0)
    physics = env.physics
    assert isinstance(env, control.Environment)
    assert physics.model.nu == 10 and physics.model.nq == 13 and physics.model.nbody == 15
    names = [physics.model.id2name(i, "actuator") for i in range(10)]
    assert names == [
        "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
        "left_shoulder", "left_elbow", "right_shoulder", "right_elbow",
    ]  # fmt: skip
    np.testing.assert_allclose(physics.model.actuator_gear[:, 0], [100, 50, 20, 100, 50, 20, 100, 50, 100, 50])
    spec = env.action_spec()
    assert spec.shape == (10,)
    np.testing.assert_array_equal(spec.minimum, -1.0)
    np.testing.assert_array_equal(spec.maximum, 1.0)
    assert physics.model.id2name(0, "camera") == "side"
    np.testing.assert_allclose(physics.named.model.body_pos["torso"], [0, 0, 1.25])
    np.testing.assert_allclose(physics.named.model.cam_pos["side"], [0, -2.25, 1.0])
    assert env.control_timestep() == pytest.approx(0.025)
    # Standing with all joints at 0 the body is about 1.78 m tall and the torso centre is just under the spawn height.
    _pose(physics, **STAND)
    assert physics.torso_height() == pytest.approx(1.24, abs=0.005)
    assert physics.named.data.xpos["head", "z"] > physics.torso_height() > physics.thigh_heights().max()
    assert physics.hand_heights().min() < physics.torso_height()


def test_episode_is_1000_steps_and_not_registered() -> None:
    env = stickman.load("walk", random=0)
    ts = env.reset()
    steps = 0
    while not ts.last():
        ts = env.step(np.zeros(10))
        steps += 1
    assert steps == 1000
    assert "stickman" not in suite._DOMAINS  # we never touch dm_control's suite globals


def test_environment_kwargs() -> None:
    env = stickman.load("stand", random=0, environment_kwargs={"time_limit": 1.0, "flat_observation": True})
    ts = env.reset()
    assert ts.observation["observations"].shape == (50,)
    steps = 0
    while not ts.last():
        ts = env.step(np.zeros(10))
        steps += 1
    assert steps == 40


def test_unknown_task_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match="hands_up") as info:
        stickman.load("moonwalk")
    assert "moonwalk" in str(info.value) and "stand" in str(info.value)


def test_render_64_shows_the_body() -> None:
    env = stickman.load("stand", random=0)
    for pose in (STAND, LYING, HEADSTAND):
        _pose(env.physics, **pose)
        image = env.physics.render(64, 64, camera_id=0)
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8
        rgb = image.astype(int)
        # The body's "self" material is orange (R > G > B); sky and floor are blue-grey.
        body = (rgb[..., 0] > rgb[..., 2] + 60) & (rgb[..., 0] > 100)
        assert body.sum() > 20, pose


def test_random_actions_are_stable() -> None:
    env = stickman.load("stand", random=1)
    rng = np.random.RandomState(1)
    ts = env.reset()
    for _ in range(200):
        ts = env.step(rng.uniform(-1, 1, 10))
        physics = env.physics
        assert np.all(np.isfinite(physics.data.qpos)) and np.all(np.isfinite(physics.data.qvel))
        assert 0.0 < physics.torso_height() < 1.6
        assert np.abs(physics.data.qvel).max() < 200.0
        assert abs(physics.named.data.qpos["rootx"][0]) < 5.0
        assert _lowest_point(physics) > -0.05  # no deep floor penetration
    obs = ts.observation
    assert {k: v.shape for k, v in obs.items()} == {
        "orientations": (28,), "height": (1,), "velocity": (13,), "extremities": (8,)
    }  # fmt: skip
    assert all(np.all(np.isfinite(v)) for v in obs.values())


@pytest.mark.parametrize("task", stickman.TASK_NAMES)
def test_reward_in_unit_interval_on_random_rollouts(task: str) -> None:
    env = stickman.load(task, random=3)
    rng = np.random.RandomState(3)
    env.reset()
    rewards = [env.step(rng.uniform(-1, 1, 10)).reward for _ in range(60)]
    assert all(isinstance(r, float) and 0.0 <= r <= 1.0 for r in rewards), rewards


@pytest.mark.parametrize("task", stickman.TASK_NAMES)
def test_constructed_states(task: str) -> None:
    env = stickman.load(task, random=0)
    good, bad = POSE_CASES[task]
    _pose(env.physics, **good)
    r_good = env.task.get_reward(env.physics)
    _pose(env.physics, **bad)
    r_bad = env.task.get_reward(env.physics)
    assert r_good > 0.7 and r_bad < 0.3, (r_good, r_bad)


def test_stand_velocity_quirk() -> None:
    """The reference's stand uses speed 0 with margin 0: any backwards drift keeps only 1/6 of the stand term."""
    env = stickman.load("stand", random=0)
    _pose(env.physics, qvel={"rootx": 0.05})
    assert env.task.get_reward(env.physics) == pytest.approx(1.0, abs=1e-6)
    _pose(env.physics, qvel={"rootx": -0.05})
    assert env.task.get_reward(env.physics) == pytest.approx(1.0 / 6.0, abs=1e-6)


def test_measurements_follow_the_pose() -> None:
    env = stickman.load("flip", random=0)
    physics = env.physics
    _pose(physics, **dict(HANDSTAND, qvel={"rooty": 6.0}))
    assert physics.angmomentum() > 16.0  # forward spin -> positive angular momentum about +y
    assert physics.foot_heights().min() > 1.8 and physics.torso_upright() < -0.99
    _pose(physics, qvel={"right_shoulder": 12.0})
    assert physics.hand_x_velocities()[1] > 5.0 and abs(physics.hand_x_velocities()[0]) < 1e-6
    _pose(physics, **HANDS_UP)
    assert physics.hand_heights().min() > 1.9
    # extremities are in the torso frame: unchanged by the body's pitch
    _pose(physics, **STAND)
    ext_standing = physics.extremities()
    _pose(physics, **LYING)
    np.testing.assert_allclose(physics.extremities(), ext_standing, atol=1e-9)


def test_seeding_is_reproducible() -> None:
    def rollout(seed: int) -> tuple[list[np.ndarray], list[float]]:
        env = stickman.load("walk", random=seed)
        rng = np.random.RandomState(0)
        ts = env.reset()
        obs, rews = [np.concatenate([v.ravel() for v in ts.observation.values()])], []
        for _ in range(30):
            ts = env.step(rng.uniform(-1, 1, 10))
            obs.append(np.concatenate([v.ravel() for v in ts.observation.values()]))
            rews.append(ts.reward)
        return obs, rews

    obs_a, rew_a = rollout(7)
    obs_b, rew_b = rollout(7)
    obs_c, _ = rollout(8)
    np.testing.assert_array_equal(np.stack(obs_a), np.stack(obs_b))
    assert rew_a == rew_b
    assert not np.allclose(obs_a[0], obs_c[0])  # a different seed gives a different random initial pose


def _reference_rewards(physics: stickman.Physics) -> dict[str, float]:
    """The stickman's true rewards written out from its documented formulas (the pre-refactor arithmetic, term by
    term), on the Physics measurement methods, with dm_control's tolerance directly."""
    from dm_control.utils.rewards import tolerance

    def above(x: float, a: float, m: float) -> float:
        return float(tolerance(x, bounds=(a, float("inf")), margin=m))

    def below(x: float, a: float, m: float) -> float:
        return float(tolerance(x, bounds=(-float("inf"), a), margin=m))

    def lin_above(x: float, a: float, m: float) -> float:
        return float(tolerance(x, bounds=(a, float("inf")), margin=m, value_at_margin=0.5, sigmoid="linear"))

    stand = (3.0 * above(physics.torso_height(), 1.15, 1.15 / 2) + (1.0 + physics.torso_upright()) / 2.0) / 4.0
    out = {name: stand * (5.0 * lin_above(physics.horizontal_velocity(), speed, speed / 2) + 1.0) / 6.0
           for name, speed in (("stand", 0.0), ("walk", 1.0), ("run", 8.0))}
    upside = (3.0 * above(float(physics.foot_heights().mean()), 1.1, 0.55)
              + 2.0 * above(float(physics.thigh_heights().mean()), 1.0, 0.5)) / 5.0
    flips = [(5.0 * lin_above(s * physics.angmomentum(), 16.0, 8.0) + 1.0) / 6.0 for s in (1.0, -1.0)]
    out["flip"] = upside * flips[0]
    out["flipping"] = upside * max(flips)
    out["headstand"] = upside
    margin = 0.1 * 1.5
    out["lying_down"] = (3.0 * below(physics.torso_height(), 0.1, margin) + (1.0 - abs(physics.torso_upright()))
                         + below(float(physics.thigh_heights().mean()), 0.1, margin)
                         + below(float(physics.foot_heights().mean()), 0.1, margin)
                         + below(float(physics.leg_heights().mean()), 0.1, margin)) / 7.0
    feet = physics.foot_heights()
    out["one_foot"] = (above(physics.torso_height(), 1.0, 0.5) * above(float(feet.max()), 0.5, 0.25)
                       * below(float(feet.min()), 0.1, margin))
    out["hands_up"] = stand * above(float(physics.hand_heights().mean()), 1.75, 0.875)
    return out


def test_true_rewards_match_the_written_out_formulas_bit_for_bit() -> None:
    """Every step of a seeded random rollout: the task rewards (built on genrl_gym.envs.rewards) equal the stickman's
    formulas computed independently, exactly (==, not approx), so moving helpers around cannot change a reward."""
    envs = {task: stickman.load(task, random=5) for task in _reference_rewards(stickman.load("stand").physics)}
    rng = np.random.RandomState(5)
    for env in envs.values():
        env.reset()
    nonzero = dict.fromkeys(envs, 0)
    for _ in range(200):
        action = rng.uniform(-1, 1, 10)
        for task, env in envs.items():
            reward = env.step(action).reward
            expected = _reference_rewards(env.physics)[task]
            assert reward == expected, (task, reward, expected)
            nonzero[task] += reward > 0
    assert all(n > 20 for n in nonzero.values()), nonzero  # the comparison covered informative values
