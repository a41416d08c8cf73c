"""Stickman: a planar humanoid-like dm_control domain (GenRL's custom domain, re-written for genrl-gym).

GenRL introduced "stickman" as a simplified 2-D humanoid so that upper-body tasks (boxing, hands up, headstand)
are possible without the cost of the full humanoid. This module and ``assets/stickman.xml`` are our own
implementation of that description; the task rewards follow the reference's formulas (see each reward function).

Body (MJCF ``genrl_gym/envs/assets/stickman.xml``; 15 bodies incl. world, ~35.5 kg at density 1000):

* planar root: ``rootz`` (slide), ``rootx`` (slide), ``rooty`` (hinge, unlimited); the torso body is spawned at
  z = 1.25 m (standing torso centre 1.24 m, so a standing body starts 1 cm above the floor).
* torso: capsule, 0.44 m + 2 x 0.07 m caps (8.2 kg); head: sphere r 0.1 m on a short neck, head top at 1.78 m.
* legs (x2): hip 0.25 m below the torso centre; thigh 0.45 m (r 0.05), shin 0.50 m (r 0.04), foot 0.18 m (r 0.04)
  pointing forward (+x). Joints: hip [-30, 120] deg, knee [-150, 0] deg (bends backwards), ankle [-45, 45] deg.
* arms (x2): shoulder 0.20 m above the torso centre; upper arm 0.30 m (r 0.04), forearm 0.30 m (r 0.035) to the
  hand sphere (r 0.045, hangs at 0.85 m). Joints: shoulder [-60, 180] deg (180 = arm straight up), elbow [0, 150].
* all limb hinges turn about -y: a positive angle swings the distal segment forward (towards +x, the facing side).
  Leg joints: damping 0.1, armature 0.01 (as dm_control's walker); arm joints: damping 1, armature 0.1, because the
  arms carry leg-sized gears on ~6x lighter segments (without it random actions flail them at ~3x leg joint speeds).
* 10 motors, ctrl in [-1, 1], in the reference action layout:
  right_hip 100, right_knee 50, right_ankle 20, left_hip 100, left_knee 50, left_ankle 20,
  left_shoulder 100, left_elbow 50, right_shoulder 100, right_elbow 50 (gear, N m per unit control).
* camera 0 ``side``: at (0, -2.25, 1.0) from the torso at spawn, pitched 30 deg down, tracking the centre of mass.
* physics dt 0.0025 s, control dt 0.025 s (10 substeps), 25 s episodes -> 1000 control steps.
* episodes start from uniformly random limb angles (within limits) and a random body pitch in [-pi, pi], then fall.

Reward "points" (heights in metres, world frame), shared by all tasks and matching the reference's body frames:
torso = torso centre; thigh = hip joint; leg = shin centre; foot = foot centre; hand = hand centre.
``tol(x >= a, m)`` below means ``dm_control.utils.rewards.tolerance(x, bounds=(a, inf), margin=m)`` (Gaussian,
0.1 at the margin) unless marked ``lin`` (linear sigmoid) and/or with an explicit value at the margin.

Usage::

    from genrl_gym.envs.domains import stickman
    env = stickman.load("walk", random=0)        # dm_control.rl.control.Environment
"""

from __future__ import annotations

import collections
import functools
from pathlib import Path
from typing import Callable

import numpy as np
from dm_control import mujoco
from dm_control.rl import control
from dm_control.suite import base, common
from dm_control.suite.utils import randomizers

from genrl_gym.envs import rewards

__all__ = ["TASK_NAMES", "load", "reward_doc", "Physics", "Stickman", "get_model_and_assets"]

_ASSET_PATH = Path(__file__).resolve().parent.parent / "assets" / "stickman.xml"

_DEFAULT_TIME_LIMIT = 25.0  # seconds
_CONTROL_TIMESTEP = 0.025  # seconds; 25 s / 0.025 s = 1000 control steps

# Task constants (metres, metres/second, kg m^2/s), as in the reference stickman/walker tasks; the pose heights
# (one_foot ... headstand) are the walker's "yoga" constants in genrl_gym.envs.rewards.
_STAND_HEIGHT = 1.15
_WALK_SPEED = 1.0
_RUN_SPEED = 8.0
_SPIN_SPEED = 2 * _RUN_SPEED  # angular-momentum target of flip/flipping (16)
_PUNCH_SPEED = 5.0
_HANDS_UP_HEIGHT = 1.75

TASK_NAMES: tuple[str, ...] = (
    "stand",
    "walk",
    "run",
    "flip",
    "one_foot",
    "high_kick",
    "lying_down",
    "legs_up",
    "sit_knees",
    "lunge_pose",
    "headstand",
    "flipping",
    "boxing",
    "hands_up",
)


def get_model_and_assets() -> tuple[bytes, dict[str, bytes]]:
    """Return the stickman MJCF (bytes) and the dm_control common assets its ``<include>``s need.

    :raises FileNotFoundError: the XML is missing from the installed package (package data not installed).
    """
    if not _ASSET_PATH.is_file():
        raise FileNotFoundError(
            f"stickman model not found at {_ASSET_PATH}; reinstall genrl-gym so that genrl_gym/envs/assets/*.xml "
            "is included as package data"
        )
    return _ASSET_PATH.read_bytes(), common.ASSETS


# ----------------------------------------------------------------------------------------------------------------
# Physics
# ----------------------------------------------------------------------------------------------------------------
class Physics(mujoco.Physics):
    """Stickman physics with the body measurements the rewards and observations use (world frame, SI units)."""

    def torso_upright(self) -> float:
        """Cosine between the torso's long axis and world +z (1 upright, 0 horizontal, -1 upside down)."""
        return float(self.named.data.xmat["torso", "zz"])

    def torso_height(self) -> float:
        """Height of the torso centre, m."""
        return float(self.named.data.xpos["torso", "z"])

    def horizontal_velocity(self) -> float:
        """Forward (+x) velocity of the whole body's centre of mass, m/s."""
        return float(self.named.data.sensordata["torso_subtreelinvel"][0])

    def angmomentum(self) -> float:
        """Whole-body angular momentum about the centre of mass around +y, kg m^2/s (> 0: forward rotation)."""
        return float(self.named.data.sensordata["torso_subtreeangmom"][1])

    def thigh_heights(self) -> np.ndarray:
        """Heights of the hip joints (the thigh bodies' origins), ``[left, right]``, m."""
        return self.named.data.xpos[["left_thigh", "right_thigh"], "z"].copy()

    def leg_heights(self) -> np.ndarray:
        """Heights of the shin centres, ``[left, right]``, m."""
        return self.named.data.geom_xpos[["left_leg", "right_leg"], "z"].copy()

    def foot_heights(self) -> np.ndarray:
        """Heights of the foot centres, ``[left, right]``, m."""
        return self.named.data.geom_xpos[["left_foot", "right_foot"], "z"].copy()

    def hand_heights(self) -> np.ndarray:
        """Heights of the hand centres, ``[left, right]``, m."""
        return self.named.data.xpos[["left_hand", "right_hand"], "z"].copy()

    def hand_x_velocities(self) -> np.ndarray:
        """Forward (+x) velocities of the hands, ``[left, right]``, m/s."""
        sensors = self.named.data.sensordata
        return np.array([sensors["left_hand_subtreelinvel"][0], sensors["right_hand_subtreelinvel"][0]])

    def orientations(self) -> np.ndarray:
        """Planar orientations of all 14 bodies: the ``xx`` and ``xz`` entries of each rotation matrix, ``[28]``."""
        return self.named.data.xmat[1:, ["xx", "xz"]].ravel()

    def extremities(self) -> np.ndarray:
        """Hand and foot centres relative to the torso, in the torso frame, (x, z) each, ``[8]`` m.

        Order: left hand, right hand, left foot, right foot.
        """
        torso_pos = self.named.data.xpos["torso"]
        torso_rot = self.named.data.xmat["torso"].reshape(3, 3)
        points = np.stack(
            [
                self.named.data.xpos["left_hand"],
                self.named.data.xpos["right_hand"],
                self.named.data.geom_xpos["left_foot"],
                self.named.data.geom_xpos["right_foot"],
            ]
        )
        local = (points - torso_pos) @ torso_rot  # row-vector form of R^T (p - p_torso)
        return local[:, [0, 2]].ravel()


# ----------------------------------------------------------------------------------------------------------------
# Task rewards (built on genrl_gym.envs.rewards, measured at the stickman's reward points)
# ----------------------------------------------------------------------------------------------------------------
#: torso and thighs are measured at their body origins (torso centre, hip joint), shins and feet at their geom centres
POINTS = rewards.BipedPoints(geom_centred=frozenset({"left_leg", "right_leg", "left_foot", "right_foot"}))


def _move_reward(physics: Physics, speed: float) -> float:
    return rewards.move(physics, physics.horizontal_velocity(), speed, stand_height=_STAND_HEIGHT, points=POINTS)


def _stand_term(physics: Physics) -> float:
    return rewards.stand(physics, stand_height=_STAND_HEIGHT, points=POINTS)


def _reward_stand(physics: Physics) -> float:
    """Stand ("standing up").

    stand = (3 tol(torso z >= 1.15, 0.575) + (1 + torso_upright) / 2) / 4
    move  = lin tol(CoM x-velocity >= 0, margin 0) = 1 if v >= 0 else 0   (reference quirk: speed 0, margin 0)
    r     = stand x (5 move + 1) / 6   (standing still or drifting backwards by any amount costs 5/6 of it)
    """
    return _move_reward(physics, 0.0)


def _reward_walk(physics: Physics) -> float:
    """Walk ("robot walk fast clean").

    stand = (3 tol(torso z >= 1.15, 0.575) + (1 + torso_upright) / 2) / 4
    move  = lin tol(CoM x-velocity >= 1 m/s, margin 0.5, 0.5 at the margin)
    r     = stand x (5 move + 1) / 6
    """
    return _move_reward(physics, _WALK_SPEED)


def _reward_run(physics: Physics) -> float:
    """Run ("robot run fast clean").

    stand = (3 tol(torso z >= 1.15, 0.575) + (1 + torso_upright) / 2) / 4
    move  = lin tol(CoM x-velocity >= 8 m/s, margin 4, 0.5 at the margin)
    r     = stand x (5 move + 1) / 6
    """
    return _move_reward(physics, _RUN_SPEED)


def _reward_flip(physics: Physics) -> float:
    """Flip ("doing flips"): upside down while rotating forward (front flips; the reference's ``flip``).

    upside = (3 tol(mean foot z >= 1.1, 0.55) + 2 tol(mean hip z >= 1.0, 0.5)) / 5
    spin   = lin tol(angular momentum_y >= 16 kg m^2/s, margin 8, 0.5 at the margin)   (> 0: forward rotation)
    r      = upside x (5 spin + 1) / 6
    """
    return rewards.upside_down(physics, points=POINTS) * _flip_factor(physics, _SPIN_SPEED)


def _flip_factor(physics: Physics, spin_speed: float) -> float:
    # upside x ((5 spin + 1) / 6), not the walker's (upside x (5 spin + 1)) / 6: the two round differently in the last
    # bit, and each domain keeps its recorded rewards bit for bit.
    return (5.0 * rewards.spin(physics, spin_speed) + 1.0) / 6.0


def _reward_flipping(physics: Physics) -> float:
    """Flipping ("doing flips"): upside down while rotating in either direction.

    upside = (3 tol(mean foot z >= 1.1, 0.55) + 2 tol(mean hip z >= 1.0, 0.5)) / 5
    spin_s = lin tol(s x angular momentum_y >= 16, margin 8, 0.5 at the margin), s in {+1, -1}
    r      = max over s of upside x (5 spin_s + 1) / 6
    """
    upside = rewards.upside_down(physics, points=POINTS)
    return upside * max(_flip_factor(physics, _SPIN_SPEED), _flip_factor(physics, -_SPIN_SPEED))


def _reward_headstand(physics: Physics) -> float:
    """Headstand ("headstand"): the flip goal with speed 0, i.e. the upside-down term only.

    legs_up  = tol(mean foot z >= 1.1, 0.55)
    thigh_up = tol(mean hip z >= 1.0, 0.5)
    r        = (3 legs_up + 2 thigh_up) / 5
    """
    return rewards.upside_down(physics, points=POINTS)


def _reward_one_foot(physics: Physics) -> float:
    """One foot ("stand on one foot").

    standing  = tol(torso z >= 1.0, 0.5)
    foot_up   = tol(higher foot z >= 0.5, 0.25)
    foot_down = tol(lower foot z <= 0.1, 0.15)
    r         = standing x foot_up x foot_down
    """
    return rewards.one_foot(physics, points=POINTS)


def _reward_high_kick(physics: Physics) -> float:
    """High kick ("stand up and kick").

    standing  = tol(torso z >= 1.0, 0.5)
    foot_up   = tol(higher foot z >= 1.15, 0.575)
    foot_down = tol(lower foot z <= 0.1, 0.15)
    r         = standing x (3 foot_up + foot_down) / 4
    """
    return rewards.high_kick(physics, kick_height=_STAND_HEIGHT, points=POINTS)


def _reward_lying_down(physics: Physics) -> float:
    """Lying down ("lying down horizontally").

    torso_down = tol(torso z <= 0.1, 0.15)
    horizontal = 1 - |torso_upright|
    thigh_down = tol(mean hip z <= 0.1, 0.15)
    feet_down  = tol(mean foot z <= 0.1, 0.15)
    leg_down   = tol(mean shin-centre z <= 0.1, 0.15)
    r          = (3 torso_down + horizontal + thigh_down + feet_down + leg_down) / 7
    """
    # The terms of rewards.lying_down, summed in the stickman's order (feet before shins; the walker's order rounds
    # differently in the last bit).
    low, margin = rewards.YOGA_LIE_DOWN_HEIGHT, rewards.YOGA_LIE_DOWN_HEIGHT * 1.5
    torso_down = rewards.below(POINTS.z(physics, "torso"), low, margin)
    horizontal = 1.0 - abs(rewards.upright(physics))
    thigh_down = rewards.below(POINTS.mean_z(physics, "thigh"), low, margin)
    feet_down = rewards.below(POINTS.mean_z(physics, "foot"), low, margin)
    leg_down = rewards.below(POINTS.mean_z(physics, "leg"), low, margin)
    return (3.0 * torso_down + horizontal + thigh_down + feet_down + leg_down) / 7.0


def _reward_legs_up(physics: Physics) -> float:
    """Legs up ("lifting legs up while lying down").

    torso_down = (3 tol(torso z <= 0.1, 0.15) + (1 - |torso_upright|)) / 4
    feet_up    = tol(mean foot z >= 0.35, 0.175)
    r          = torso_down x feet_up
    """
    return rewards.legs_up(physics, points=POINTS)


def _reward_sit_knees(physics: Physics) -> float:
    """Sit on the knees ("praying": kneeling, sitting back on the heels, torso upright).

    torso_up  = (3 tol(torso z >= 0.55, 0.275) + (1 + torso_upright) / 2) / 4
    legs      = (3 tol(mean shin-centre z <= 0.15, 0.225) + tol(mean foot z <= 0.1, 0.15)) / 4
    close     = exp(-mean over sides of (max(0.1, |foot x - hip x|) - 0.1))   (feet under the hips)
    r         = torso_up x legs x close
    """
    return rewards.sit_knees(physics, points=POINTS)


def _reward_lunge_pose(physics: Physics) -> float:
    """Lunge pose ("lunge_pose": one knee down, the other leg bent forward).

    torso      = (3 tol(torso z >= 0.75, 0.375) + (1 + torso_upright) / 2) / 4
    low_down   = tol(lower shin-centre z <= 0.1, 0.15)
    high_up    = tol(higher shin-centre z >= 0.25, 0.125)
    thigh_hor  = 1 - |zz of the higher shin's thigh|   (front thigh horizontal)
    shin_hor   = 1 - |zz of the lower shin|            (back shin flat on the floor)
    r          = torso x (low_down + high_up + thigh_hor + shin_hor) / 4
    """
    return rewards.lunge_pose(physics, points=POINTS)


def _reward_boxing(physics: Physics) -> float:
    """Boxing ("punch").

    stand = (3 tol(torso z >= 1.15, 0.575) + (1 + torso_upright) / 2) / 4
    punch = lin tol(max over hands of |hand x-velocity| >= 5 m/s, margin 2.5, 0.5 at the margin)
    r     = stand x punch
    """
    punch = rewards.linear_above(float(np.abs(physics.hand_x_velocities()).max()), _PUNCH_SPEED, _PUNCH_SPEED / 2, 0.5)
    return _stand_term(physics) * punch


def _reward_hands_up(physics: Physics) -> float:
    """Hands up ("standing with the hands up").

    stand    = (3 tol(torso z >= 1.15, 0.575) + (1 + torso_upright) / 2) / 4
    hands_up = tol(mean hand z >= 1.75, 0.875)
    r        = stand x hands_up
    """
    hands_up = rewards.above(float(physics.hand_heights().mean()), _HANDS_UP_HEIGHT, _HANDS_UP_HEIGHT / 2)
    return _stand_term(physics) * hands_up


_REWARDS: dict[str, Callable[[Physics], float]] = {
    "stand": _reward_stand,
    "walk": _reward_walk,
    "run": _reward_run,
    "flip": _reward_flip,
    "one_foot": _reward_one_foot,
    "high_kick": _reward_high_kick,
    "lying_down": _reward_lying_down,
    "legs_up": _reward_legs_up,
    "sit_knees": _reward_sit_knees,
    "lunge_pose": _reward_lunge_pose,
    "headstand": _reward_headstand,
    "flipping": _reward_flipping,
    "boxing": _reward_boxing,
    "hands_up": _reward_hands_up,
}
if tuple(_REWARDS) != TASK_NAMES:  # one reward per task, same order (guards future edits)
    raise RuntimeError("stickman: _REWARDS and TASK_NAMES disagree")


def reward_doc(task: str) -> str:
    """The docstring of ``task``'s true-reward function (one line per term); ValueError for an unknown task."""
    _check_task(task)
    return _REWARDS[task].__doc__ or ""


def _check_task(task: str) -> None:
    if task not in _REWARDS:
        raise ValueError(f"unknown stickman task {task!r}; valid tasks: {', '.join(TASK_NAMES)}")


# ----------------------------------------------------------------------------------------------------------------
# Task and loader
# ----------------------------------------------------------------------------------------------------------------
class Stickman(base.Task):
    """A stickman task: random initial pose, proprioceptive observations, the ``goal``'s true reward in [0, 1]."""

    def __init__(self, goal: str, random: int | np.random.RandomState | None = None) -> None:
        """Create the task.

        :param goal: one of ``TASK_NAMES``.
        :param random: a ``np.random.RandomState``, an integer seed, or None (fresh entropy).

        :raises ValueError: unknown goal.
        """
        _check_task(goal)
        self._goal = goal
        self._reward_fn = _REWARDS[goal]
        super().__init__(random=random)

    @property
    def goal(self) -> str:
        """The task name."""
        return self._goal

    def initialize_episode(self, physics: Physics) -> None:
        """Random limb angles within their limits and a random pitch in [-pi, pi]; the body then falls freely."""
        randomizers.randomize_limited_and_rotational_joints(physics, self.random)
        super().initialize_episode(physics)

    def get_observation(self, physics: Physics) -> collections.OrderedDict[str, np.ndarray]:
        """Proprioception, a flat dict of float64 1-D arrays (50 values in all).

        orientations [28] (xx, xz of each body's rotation), height [1] (torso centre, m), velocity [13] (qvel:
        rootz, rootx, rooty, then the 10 limb joints in model order), extremities [8] (hands and feet in the
        torso frame, (x, z) each, m).
        """
        obs: collections.OrderedDict[str, np.ndarray] = collections.OrderedDict()
        obs["orientations"] = physics.orientations()
        obs["height"] = np.array([physics.torso_height()])
        obs["velocity"] = physics.velocity().copy()
        obs["extremities"] = physics.extremities()
        return obs

    def get_reward(self, physics: Physics) -> float:
        """The goal's true per-frame reward, a float in [0, 1] (see the ``_reward_<goal>`` docstrings)."""
        return float(np.clip(self._reward_fn(physics), 0.0, 1.0))


@functools.lru_cache(maxsize=1)
def _model_xml() -> bytes:
    return get_model_and_assets()[0]


def load(
    task: str,
    random: int | np.random.RandomState | None = None,
    environment_kwargs: dict | None = None,
) -> control.Environment:
    """Build the stickman ``task`` as a dm_control environment (not registered in ``dm_control.suite``).

    :param task: one of ``TASK_NAMES``.
    :param random: seed or ``np.random.RandomState`` for the initial states (None: fresh entropy).
    :param environment_kwargs: extra ``control.Environment`` keyword arguments (e.g. ``flat_observation=True``);
        ``time_limit`` (default 25 s) and ``control_timestep`` (default 0.025 s) may be overridden here.

    :return: A ``dm_control.rl.control.Environment``: 10-dim action in [-1, 1], 1000 control steps per episode by
        default, per-step reward in [0, 1].

    :raises ValueError: unknown task (the message lists ``TASK_NAMES``).
    """
    _check_task(task)
    kwargs: dict = {"time_limit": _DEFAULT_TIME_LIMIT, "control_timestep": _CONTROL_TIMESTEP}
    kwargs.update(environment_kwargs or {})
    physics = Physics.from_xml_string(_model_xml(), common.ASSETS)
    return control.Environment(physics, Stickman(goal=task, random=random), **kwargs)
