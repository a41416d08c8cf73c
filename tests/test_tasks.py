"""Task table and true rewards of the walker, cheetah and quadruped tasks (stickman poses: tests/test_stickman.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import genrl_gym  # noqa: F401  (render guard first)
from dm_control import suite
from dm_control.suite import cheetah as suite_cheetah
from dm_control.suite import quadruped as suite_quadruped
from dm_control.suite import walker as suite_walker

from genrl_gym.envs import DOMAINS, TASKS, TaskSpec, domains, get_task
from genrl_gym.envs.tasks import tasks_of

# ---------------------------------------------------------------------------------------------------------------- table


def test_table_matches_domain_modules() -> None:
    assert DOMAINS == ("walker", "cheetah", "quadruped", "stickman")
    for domain in DOMAINS:
        assert set(domains.domain_module(domain).TASK_NAMES) == set(tasks_of(domain)), domain
    assert len(TASKS) == 10 + 4 + 6 + 14


def test_table_facts_from_reference() -> None:
    # Spot checks against GenRL's TASK2PROMPT and tools/task_scores.py (reference code mazpie/genrl).
    assert get_task("walker", "stand").prompt == "standing up straight"
    assert get_task("walker", "flipping").prompt == "doing backflips"
    assert get_task("quadruped", "walk").prompt == "spider walking fast"
    assert get_task("cheetah", "run").prompt == "running like a quadruped"
    assert get_task("stickman", "legs_up").prompt == "lifting legs up while lying down"
    assert (get_task("walker", "run").random_score, get_task("walker", "run").expert_score) == (30, 770)
    assert (get_task("quadruped", "lie_down").random_score, get_task("quadruped", "lie_down").expert_score) == (750, 965)
    assert get_task("walker", "flip").random_score is None and get_task("walker", "flip").expert_score is None
    for spec in TASKS.values():
        assert spec.camera_id == (2 if spec.domain == "quadruped" else 0)
        assert spec.prompt and spec.description
        assert TASKS[spec.name] is spec
        if spec.random_score is not None:
            assert spec.expert_score is not None and spec.random_score < spec.expert_score
    in_dist = {s.name for s in TASKS.values() if s.in_distribution}
    assert in_dist == {f"{d}_{t}" for d in ("walker", "quadruped", "stickman") for t in ("stand", "walk", "run")} | {
        "cheetah_run"}


def test_taskspec_frozen_and_normalize() -> None:
    spec = get_task("walker", "stand")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.prompt = "x"  # type: ignore[misc]
    assert spec.normalize(970) == pytest.approx(1.0)
    assert spec.normalize(150) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="no random/expert"):
        get_task("walker", "flip").normalize(100.0)
    assert isinstance(spec, TaskSpec)


def test_get_task_errors_list_valid_names() -> None:
    with pytest.raises(ValueError, match=r"Unknown domain 'cheeta'.*Did you mean 'cheetah'.*walker, cheetah, quadruped"):
        get_task("cheeta", "run")
    with pytest.raises(ValueError, match=r"Unknown quadruped task 'lie'.*Valid quadruped tasks: stand, walk"):
        get_task("quadruped", "lie")
    with pytest.raises(ValueError, match=r"Did you mean 'one_foot'"):
        get_task("walker", "one-foot")


def test_dm_control_globals_untouched() -> None:
    for domain, task in (("walker", "flipping"), ("cheetah", "standing"), ("quadruped", "jump"), ("stickman", "boxing")):
        domains.load(domain, task, random=0)
    assert "stickman" not in suite._DOMAINS  # noqa: SLF001  (GenRL injects it; we must not)
    assert ("walker", "one_foot") not in suite.ALL_TASKS
    assert "flipping" not in suite_walker.SUITE


# ---------------------------------------------------------------------------------------------------------- rewards


@pytest.mark.parametrize("name", sorted(TASKS))
def test_random_rollout_rewards_in_unit_interval(name: str) -> None:
    spec = TASKS[name]
    env = domains.load(spec.domain, spec.task, random=0)
    rng = np.random.default_rng(0)
    action_spec = env.action_spec()
    env.reset()
    rewards = []
    for _ in range(40):
        ts = env.step(rng.uniform(action_spec.minimum, action_spec.maximum))
        rewards.append(ts.reward)
    rewards = np.asarray(rewards, dtype=np.float64)
    assert np.all(np.isfinite(rewards)) and rewards.min() >= 0.0 and rewards.max() <= 1.0, (name, rewards)


def _set_state(env, qpos: dict, qvel: dict | None = None, *, zero: bool = True) -> float:
    """Put the physics in a constructed state (named joints), run forward kinematics, return the task's reward."""
    physics = env.physics
    if zero:
        physics.data.qpos[:] = 0.0
    physics.data.qvel[:] = 0.0
    for joint, value in qpos.items():
        physics.named.data.qpos[joint] = value
    for dof, value in (qvel or {}).items():
        physics.named.data.qvel[dof] = value
    physics.forward()
    return float(env.task.get_reward(physics))


# Walker (torso at z = 1.3 + rootz; thigh 0.45 m, shin 0.5 m; hip/knee angles in rad, hip > 0 swings the thigh forward).
W_STAND: dict = {}
W_LYING = {"rootz": -1.25, "rooty": np.pi / 2}  # flat on the ground, everything at z ~ 0.05
W_ONE_FOOT = {"left_hip": 1.57}  # left leg held forward, horizontal at hip height
W_KICK = {"left_hip": 1.745}  # left leg kicked to the hip limit (foot at ~1.2 m)
W_KNEEL = {"rootz": -0.725, "right_hip": 1.05, "left_hip": 1.05, "right_knee": -2.62, "left_knee": -2.62}
W_LUNGE = {"rootz": -0.5, "left_hip": 1.57, "left_knee": -1.57, "right_knee": -1.57}  # front thigh level, back knee down
W_UPSIDE_DOWN = {"rootz": -0.5, "rooty": np.pi}  # handstand-like: hips 1.1 m, feet 2.05 m

# (domain, task): (satisfying state, non-satisfying state); each state = (qpos, qvel)
POSES: dict[tuple[str, str], tuple[tuple[dict, dict | None], tuple[dict, dict | None]]] = {
    ("walker", "one_foot"): ((W_ONE_FOOT, None), (W_STAND, None)),
    ("walker", "high_kick"): ((W_KICK, None), (W_LYING, None)),
    ("walker", "lying_down"): ((W_LYING, None), (W_STAND, None)),
    ("walker", "sit_knees"): ((W_KNEEL, None), (W_LYING, None)),
    ("walker", "lunge_pose"): ((W_LUNGE, None), (W_LYING, None)),
    ("walker", "flip"): ((W_UPSIDE_DOWN, {"rooty": 10.0}), (W_STAND, None)),
    ("walker", "flipping"): ((W_UPSIDE_DOWN, {"rooty": -10.0}), (W_UPSIDE_DOWN, None)),
    ("walker", "stand"): ((W_STAND, None), (W_LYING, None)),
    ("walker", "run"): ((W_STAND, {"rootx": 9.0}), (W_LYING, {"rootx": 9.0})),
    # Cheetah (torso at 0.7 m at rest; rooty = -pi/2 rears up on the back foot, pi lies on the back).
    ("cheetah", "standing"): (({"rooty": -np.pi / 2}, None), ({}, None)),
    ("cheetah", "lying_down"): (({"rooty": np.pi, "rootz": -0.6}, None), ({"rootz": -0.3}, None)),
    ("cheetah", "flipping"): (({}, {"rooty": 5.0}), ({}, None)),
    ("cheetah", "run"): (({}, {"rootx": 12.0}), ({}, None)),
    # Quadruped (root = x y z qw qx qy qz; upright at z 0.57; pitched nose-up 90 deg on the hind toes).
    ("quadruped", "stand"): (({"root": [0, 0, 0.57, 1, 0, 0, 0]}, None), ({"root": [0, 0, 0.3, 0, 1, 0, 0]}, None)),
    ("quadruped", "walk"): (({"root": [0, 0, 0.57, 1, 0, 0, 0]}, {"root": [1, 0, 0, 0, 0, 0]}),
                            ({"root": [0, 0, 0.57, 1, 0, 0, 0]}, {"root": [-1, 0, 0, 0, 0, 0]})),
    ("quadruped", "jump"): (({"root": [0, 0, 1.6, 1, 0, 0, 0]}, None), ({"root": [0, 0, 0.3, 0, 1, 0, 0]}, None)),
    ("quadruped", "two_legs"): (({"root": [0, 0, 0.64, np.sqrt(0.5), 0, -np.sqrt(0.5), 0]}, None),
                                ({"root": [0, 0, 0.57, 1, 0, 0, 0]}, None)),
    ("quadruped", "lie_down"): (({"root": [0, 0, 0.1, 1, 0, 0, 0]}, None), ({"root": [0, 0, 0.57, 1, 0, 0, 0]}, None)),
}


def test_every_custom_task_has_a_pose_case() -> None:
    stock = {("walker", "walk"), ("quadruped", "run")}  # stock suite rewards, not ours
    ours = {(s.domain, s.task) for s in TASKS.values() if s.domain in ("walker", "cheetah", "quadruped")}
    assert ours - stock <= set(POSES), sorted(ours - stock - set(POSES))


@pytest.mark.parametrize(("domain", "task"), sorted(POSES))
def test_reward_high_when_satisfied_low_when_not(domain: str, task: str) -> None:
    # Every custom reward reaches 1 in its satisfying pose (each term at its bound), so > 0.9 is required;
    # the non-satisfying poses violate the main term, so < 0.25.
    env = domains.load(domain, task, random=0)
    (good_q, good_v), (bad_q, bad_v) = POSES[domain, task]
    zero = domain != "quadruped"  # quadruped keeps its rest joint angles; only the root is set
    high = _set_state(env, good_q, good_v, zero=zero)
    low = _set_state(env, bad_q, bad_v, zero=zero)
    assert high > 0.9, (domain, task, high)
    assert low < 0.25, (domain, task, low)


def test_flip_direction_semantics() -> None:
    flip = domains.load("walker", "flip", random=0)
    flipping = domains.load("walker", "flipping", random=0)
    # walker_flip rewards positive spin only; walker_flipping either sign (upside-down term x spin term).
    assert _set_state(flip, W_UPSIDE_DOWN, {"rooty": 10.0}) > 0.9
    assert _set_state(flip, W_UPSIDE_DOWN, {"rooty": -10.0}) == pytest.approx(1 / 6, abs=0.01)
    for sign in (1.0, -1.0):
        assert _set_state(flipping, W_UPSIDE_DOWN, {"rooty": 10.0 * sign}) > 0.9
    # Upside down without spin: the spin term is (5 * 0 + 1) / 6.
    assert _set_state(flipping, W_UPSIDE_DOWN) == pytest.approx(1 / 6, abs=0.01)
    # cheetah_flipping reproduces GenRL's effective reward: only positive angular momentum counts.
    cheetah = domains.load("cheetah", "flipping", random=0)
    assert _set_state(cheetah, {}, {"rooty": 5.0}) == pytest.approx(1.0)
    assert _set_state(cheetah, {}, {"rooty": -5.0}) == 0.0


def test_quadruped_walk_partial_credit_and_two_legs_step() -> None:
    walk = domains.load("quadruped", "walk", random=0)
    upright = {"root": [0, 0, 0.57, 1, 0, 0, 0]}
    # Standing still upright: the linear move term is 0.5 at zero speed (one margin below 0.5 m/s).
    assert _set_state(walk, upright, zero=False) == pytest.approx(0.5, abs=1e-6)
    assert _set_state(walk, upright, {"root": [0.25, 0, 0, 0, 0, 0]}, zero=False) == pytest.approx(0.75, abs=1e-6)
    # two_legs' "toes up" term is a hard step (GenRL's margin 0.8 // 2 == 0): just below 0.8 m it is 0.
    two = domains.load("quadruped", "two_legs", random=0)
    pitched = np.sqrt(0.5)
    high = _set_state(two, {"root": [0, 0, 0.64, pitched, 0, -pitched, 0]}, zero=False)
    assert high == pytest.approx(1.0)
    toes = sorted(float(two.physics.named.data.xpos[t, "z"]) for t in domains.quadruped.TOES)
    drop = (toes[2] + toes[3]) / 2 - 0.79  # lower the body until the raised toes average 0.79 m
    low = _set_state(two, {"root": [0, 0, 0.64 - drop, pitched, 0, -pitched, 0]}, zero=False)
    assert low == 0.0


def test_custom_tasks_subclass_suite_tasks() -> None:
    assert isinstance(domains.load("walker", "lunge_pose").task, suite_walker.PlanarWalker)
    assert isinstance(domains.load("cheetah", "standing").task, suite_cheetah.Cheetah)
    assert isinstance(domains.load("quadruped", "jump").task, suite_quadruped.Move)
    # GenRL's custom-task models: cheetah ground 200 m, quadruped floor 1000 m.
    assert domains.load("cheetah", "standing").physics.named.model.geom_size["ground", 0] == 200
    assert domains.load("quadruped", "walk").physics.named.model.geom_size["floor", 0] == 1000
