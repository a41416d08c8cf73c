"""Quadruped: dm_control's run plus GenRL's stand, walk, jump, two-legs and lie-down tasks.

GenRL overrides the suite's ``walk`` (same speed 0.5, same reward, 1000 m floor) and adds ``stand`` (upright only),
``jump``, ``two_legs`` and ``lie_down``; ``run`` is the stock suite task (speed 5). Custom tasks subclass the
suite's ``Move`` task (random orientation dropped from a non-contacting height; 20 s at a 0.02 s control step =
1000 frames) and replace only ``get_reward``. Render with camera id 2 (the "y" side camera), as GenRL does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from dm_control.rl import control
from dm_control.suite import common
from dm_control.suite import quadruped as suite_quadruped

from genrl_gym.envs import rewards
from genrl_gym.envs.domains import split_time_limit

TASK_NAMES: tuple[str, ...] = ("stand", "walk", "run", "jump", "two_legs", "lie_down")

DEFAULT_TIME_LIMIT = 20.0  # seconds (dm_control quadruped)
CONTROL_TIMESTEP = 0.02  # seconds per frame (dm_control quadruped)
FLOOR_SIZE = 1000  # m, GenRL's floor for its quadruped tasks
WALK_SPEED = 0.5  # m/s, forward torso velocity for walk
JUMP_HEIGHT = 1.0  # m, centre-of-mass height for jump
LIE_DOWN_HEIGHT = 0.2  # m, torso height for lie_down
FOOT_DOWN_HEIGHT = 0.2  # m, "down" toes for two_legs
FOOT_UP_HEIGHT = 0.8  # m, "up" toes for two_legs
TOES = ("toe_front_left", "toe_front_right", "toe_back_left", "toe_back_right")


class Physics(suite_quadruped.Physics):
    """Suite quadruped physics plus the centre-of-mass height."""

    def com_height(self) -> float:
        """Height (m) of the torso subtree's centre of mass (the ``center_of_mass`` subtreecom sensor)."""
        return float(self.named.data.sensordata["center_of_mass"][2])


def upright(physics: Any) -> float:
    """dm_control's upright term: linear tol(torso zz >= 1, margin 2, 0 at the margin) = (1 + zz) / 2."""
    return rewards.linear_above(float(physics.torso_upright()), 1.0, 2.0, 0.0)


class _GenRLQuadrupedTask(suite_quadruped.Move):
    """Base of the custom quadruped tasks: the suite's ``Move`` with the reward replaced."""

    def __init__(self, random: int | np.random.RandomState | None = None) -> None:
        super().__init__(desired_speed=0.0, random=random)


class Stand(_GenRLQuadrupedTask):
    """Stand upright (``quadruped_stand``), GenRL's custom ``Stand``:

    - upright = linear tol(torso zz >= 1, margin 2, 0 at the margin) = (1 + zz) / 2
    """

    def get_reward(self, physics: Any) -> float:
        """Per-frame reward in [0, 1]."""
        return upright(physics)


class Walk(_GenRLQuadrupedTask):
    """Walk forwards at 0.5 m/s (``quadruped_walk``); product of:

    - upright = (1 + torso zz) / 2 (linear tol, as in ``Stand``)
    - linear tol(forward torso velocity >= 0.5, margin 0.5, 0.5 at the margin)
    """

    def get_reward(self, physics: Any) -> float:
        """Per-frame reward in [0, 1]."""
        move = rewards.linear_above(float(physics.torso_velocity()[0]), WALK_SPEED, WALK_SPEED, 0.5)
        return upright(physics) * move


class Jump(_GenRLQuadrupedTask):
    """Jump (``quadruped_jump``); product of:

    - upright = (1 + torso zz) / 2
    - linear tol(centre-of-mass height >= 1.0, margin 1.0, 0.5 at the margin)
    """

    def get_reward(self, physics: Any) -> float:
        """Per-frame reward in [0, 1]."""
        return upright(physics) * rewards.linear_above(physics.com_height(), JUMP_HEIGHT, JUMP_HEIGHT, 0.5)


class TwoLegs(_GenRLQuadrupedTask):
    """Stand on two legs (``quadruped_two_legs``); product of:

    - toes up = tol(mean of the 2 highest toe heights >= 0.8, margin 0): a hard step, as GenRL's ``0.8 // 2 == 0``
    - toes down = tol(mean of the 2 lowest toe heights <= 0.2, margin 0.3)
    """

    def get_reward(self, physics: Any) -> float:
        """Per-frame reward in [0, 1]."""
        toes = sorted(float(physics.named.data.xpos[t, "z"]) for t in TOES)
        # GenRL writes the margin as FOOT_UP_HEIGHT // 2, which is 0.0: kept, so the term is an indicator.
        up = rewards.above((toes[2] + toes[3]) / 2, FOOT_UP_HEIGHT, FOOT_UP_HEIGHT // 2)
        down = rewards.below((toes[0] + toes[1]) / 2, FOOT_DOWN_HEIGHT, FOOT_DOWN_HEIGHT * 1.5)
        return up * down


class LieDown(_GenRLQuadrupedTask):
    """Lie down (``quadruped_lie_down``):

    - tol(torso_z <= 0.2, margin 0.3)
    """

    def get_reward(self, physics: Any) -> float:
        """Per-frame reward in [0, 1]."""
        return rewards.below(float(physics.named.data.xpos["torso", "z"]), LIE_DOWN_HEIGHT, LIE_DOWN_HEIGHT * 1.5)


_CUSTOM: dict[str, type[_GenRLQuadrupedTask]] = {
    "stand": Stand, "walk": Walk, "jump": Jump, "two_legs": TwoLegs, "lie_down": LieDown,
}


def load(task: str, random: int | np.random.RandomState | None = None,
         environment_kwargs: dict[str, Any] | None = None) -> control.Environment:
    """Build quadruped ``task`` (one of ``TASK_NAMES``) as a dm_control ``control.Environment``.

    :param task: task name.
    :param random: seed or ``RandomState`` of the initial orientation.
    :param environment_kwargs: ``control.Environment`` kwargs; ``"time_limit"`` (s) overrides the default 20 s.

    :raises ValueError: unknown task.
    """
    time_limit, kwargs = split_time_limit(environment_kwargs, DEFAULT_TIME_LIMIT)
    if task == "run":
        return suite_quadruped.run(time_limit=time_limit, random=random, environment_kwargs=kwargs)
    if task not in _CUSTOM:
        raise ValueError(f"Unknown quadruped task {task!r}; valid tasks: {', '.join(TASK_NAMES)}.")
    physics = Physics.from_xml_string(suite_quadruped.make_model(floor_size=FLOOR_SIZE), common.ASSETS)
    return control.Environment(physics, _CUSTOM[task](random=random), time_limit=time_limit,
                               control_timestep=CONTROL_TIMESTEP, **kwargs)
