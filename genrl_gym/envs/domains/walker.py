"""Planar walker: dm_control's stand/walk/run plus GenRL's custom pose and flip tasks.

Custom tasks subclass the suite's ``PlanarWalker`` (same model, initial-state randomisation, observations,
25 s at a 0.025 s control step = 1000 frames) and replace only ``get_reward`` with GenRL's true reward
(``genrl_gym.envs.rewards``; reference code ``envs/custom_dmc_tasks``). GenRL loads them from a copy of ``walker.xml`` that is
identical to dm_control's, so the suite model is used as is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from dm_control.rl import control
from dm_control.suite import walker as suite_walker

from genrl_gym.envs import rewards
from genrl_gym.envs.domains import split_time_limit

TASK_NAMES: tuple[str, ...] = (
    "stand", "walk", "run", "flip", "one_foot", "high_kick", "lying_down", "sit_knees", "lunge_pose", "flipping",
)

DEFAULT_TIME_LIMIT = 25.0  # seconds (dm_control walker)
CONTROL_TIMESTEP = 0.025  # seconds per frame (dm_control walker)
STAND_HEIGHT = 1.2  # dm_control walker's stand height (m), used as the high-kick foot height
RUN_SPEED = 8.0  # dm_control walker's run speed; GenRL's flips spin at twice it
FLIP_SPIN = 2 * RUN_SPEED  # target torso angular momentum about y for flip/flipping


class _GenRLWalkerTask(suite_walker.PlanarWalker):
    """Base of the custom walker tasks: the suite task with the reward replaced (``move_speed`` unused)."""

    def __init__(self, random: int | np.random.RandomState | None = None) -> None:
        super().__init__(move_speed=0, random=random)


class OneFoot(_GenRLWalkerTask):
    """Stand on one foot (``walker_one_foot``); product of three terms:

    - tol(torso_z >= 1.0, margin 0.5)
    - tol(max(foot_z) >= 0.5, margin 0.25)
    - tol(min(foot_z) <= 0.1, margin 0.15)
    """

    def get_reward(self, physics: Any) -> float:
        """Per-frame reward in [0, 1]."""
        return rewards.one_foot(physics)


class HighKick(_GenRLWalkerTask):
    """Stand up and kick (``walker_high_kick``); standing x feet, where:

    - standing = tol(torso_z >= 1.0, margin 0.5)
    - feet = (3 tol(max(foot_z) >= 1.2, margin 0.6) + tol(min(foot_z) <= 0.1, margin 0.15)) / 4
    """

    def get_reward(self, physics: Any) -> float:
        """Per-frame reward in [0, 1]."""
        return rewards.high_kick(physics, kick_height=STAND_HEIGHT)


class LyingDown(_GenRLWalkerTask):
    """Lie down horizontally (``walker_lying_down``); weighted mean (weights 3,1,1,1,1 over 7) of:

    - tol(torso_z <= 0.1, margin 0.15) (weight 3)
    - 1 - |torso upright| (horizontal torso)
    - tol(mean thigh_z <= 0.1, margin 0.15)
    - tol(mean leg_z <= 0.1, margin 0.15)
    - tol(mean foot_z <= 0.1, margin 0.15)
    """

    def get_reward(self, physics: Any) -> float:
        """Per-frame reward in [0, 1]."""
        return rewards.lying_down(physics)


class SitKnees(_GenRLWalkerTask):
    """Kneel upright, "praying" (``walker_sit_knees``); product of:

    - torso_up = (3 tol(torso_z >= 0.55, margin 0.275) + (1 + upright) / 2) / 4
    - legs = (3 tol(mean leg_z <= 0.15, margin 0.225) + tol(mean foot_z <= 0.1, margin 0.15)) / 4
    - close = exp(-mean over sides of (max(0.1, |foot_x - thigh_x|) - 0.1)) (feet tucked under the hips)
    """

    def get_reward(self, physics: Any) -> float:
        """Per-frame reward in [0, 1]."""
        return rewards.sit_knees(physics)


class LungePose(_GenRLWalkerTask):
    """Lunge (``walker_lunge_pose``); torso x legs, where:

    - torso = (3 tol(torso_z >= 0.75, margin 0.375) + (1 + upright) / 2) / 4
    - legs = mean of: tol(lower leg_z <= 0.1, margin 0.15); tol(higher leg_z >= 0.25, margin 0.125);
      1 - |zz| of the higher side's thigh (horizontal thigh); 1 - |zz| of the lower leg (horizontal shin)
    """

    def get_reward(self, physics: Any) -> float:
        """Per-frame reward in [0, 1]."""
        return rewards.lunge_pose(physics)


class Flip(_GenRLWalkerTask):
    """Flip forwards (``walker_flip``, GenRL goal "flip" with speed +16); upside_down x (5 spin + 1) / 6, where:

    - upside_down = (3 tol(mean foot_z >= 1.1, margin 0.55) + 2 tol(mean thigh_z >= 1.0, margin 0.5)) / 5
    - spin = linear tol(L_y >= 16, margin 8, 0.5 at the margin), L_y = torso subtree angular momentum about y
    """

    def __init__(self, spin_speed: float = FLIP_SPIN, random: int | np.random.RandomState | None = None) -> None:
        super().__init__(random=random)
        self._spin_speed = spin_speed

    def get_reward(self, physics: Any) -> float:
        """Per-frame reward in [0, 1]."""
        return rewards.flip(physics, self._spin_speed)


class Flipping(Flip):
    """Flips in either direction (``walker_flipping``): max over the spin sign s in {+1, -1} of:

    - upside_down = (3 tol(mean foot_z >= 1.1, margin 0.55) + 2 tol(mean thigh_z >= 1.0, margin 0.5)) / 5
    - times (5 linear tol(s L_y >= 16, margin 8, 0.5 at the margin) + 1) / 6
    """

    def get_reward(self, physics: Any) -> float:
        """Per-frame reward in [0, 1]."""
        return rewards.flipping(physics, self._spin_speed)


_CUSTOM: dict[str, Callable[[Any], _GenRLWalkerTask]] = {
    "flip": lambda random: Flip(random=random),
    "one_foot": OneFoot,
    "high_kick": HighKick,
    "lying_down": LyingDown,
    "sit_knees": SitKnees,
    "lunge_pose": LungePose,
    "flipping": lambda random: Flipping(random=random),
}

_SUITE: dict[str, Callable[..., control.Environment]] = {
    "stand": suite_walker.stand, "walk": suite_walker.walk, "run": suite_walker.run,
}


def load(task: str, random: int | np.random.RandomState | None = None,
         environment_kwargs: dict[str, Any] | None = None) -> control.Environment:
    """Build walker ``task`` (one of ``TASK_NAMES``) as a dm_control ``control.Environment``.

    :param task: task name.
    :param random: seed or ``RandomState`` of the initial-state randomisation.
    :param environment_kwargs: ``control.Environment`` kwargs; ``"time_limit"`` (s) overrides the default 25 s.

    :raises ValueError: unknown task.
    """
    time_limit, kwargs = split_time_limit(environment_kwargs, DEFAULT_TIME_LIMIT)
    if task in _SUITE:
        return _SUITE[task](time_limit=time_limit, random=random, environment_kwargs=kwargs)
    if task not in _CUSTOM:
        raise ValueError(f"Unknown walker task {task!r}; valid tasks: {', '.join(TASK_NAMES)}.")
    physics = suite_walker.Physics.from_xml_string(*suite_walker.get_model_and_assets())
    return control.Environment(physics, _CUSTOM[task](random), time_limit=time_limit,
                               control_timestep=CONTROL_TIMESTEP, **kwargs)
