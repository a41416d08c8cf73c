"""Half-cheetah: dm_control's run plus GenRL's custom standing, lying-down and flipping tasks.

Custom tasks subclass the suite's ``Cheetah`` task (random joint angles within limits followed by 200
settling physics steps; 10 s at the model's 0.01 s step = 1000 frames) and replace only ``get_reward``.
As in GenRL, the custom tasks use the suite model with the ground plane widened from 100 to 200 m half-length;
``run`` is the stock suite task on the stock model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from dm_control.rl import control
from dm_control.suite import cheetah as suite_cheetah
from dm_control.suite import common
from lxml import etree

from genrl_gym.envs import rewards
from genrl_gym.envs.domains import split_time_limit

TASK_NAMES: tuple[str, ...] = ("run", "standing", "lying_down", "flipping")

DEFAULT_TIME_LIMIT = 10.0  # seconds (dm_control cheetah; control step = physics step 0.01 s)
DOWN_HEIGHT = 0.15  # m: a body part counts as "down" at or below this height
HIGH_HEIGHT = 1.0  # m: the raised foot's target height when standing
MID_HEIGHT = 0.45  # m: target for the sum of both feet heights when lying on the back
SPIN_SPEED = 5.0  # target torso angular momentum about y for flipping
GROUND_HALF_LENGTH = 200  # m, GenRL's widened ground for the custom tasks


class Physics(suite_cheetah.Physics):
    """Suite cheetah physics plus the torso's angular momentum."""

    def angular_momentum_y(self) -> float:
        """Angular momentum of the torso subtree about the world y-axis."""
        return float(self.named.data.subtree_angmom["torso"][1])


class Standing(suite_cheetah.Cheetah):
    """Stand up on the hind or front foot like a human (``cheetah_standing``); product of:

    - tol(max(bfoot_z, ffoot_z) >= 1.0, margin 0.5) (one foot high)
    - tol(min(bfoot_z, ffoot_z) <= 0.15, margin 0.225) (the other on the ground)
    """

    def get_reward(self, physics: Any) -> float:
        """Per-frame reward in [0, 1]."""
        feet = (float(physics.named.data.xpos["bfoot", "z"]), float(physics.named.data.xpos["ffoot", "z"]))
        high = rewards.above(max(feet), HIGH_HEIGHT, HIGH_HEIGHT / 2)
        low = rewards.below(min(feet), DOWN_HEIGHT, DOWN_HEIGHT * 1.5)
        return high * low


class LyingDown(suite_cheetah.Cheetah):
    """Lie on the back (``cheetah_lying_down``); mean of:

    - tol(torso_z <= 0.15, margin 0.225)
    - tol(bfoot_z + ffoot_z >= 0.45, margin 0.225) (feet up)
    """

    def get_reward(self, physics: Any) -> float:
        """Per-frame reward in [0, 1]."""
        torso_down = rewards.below(float(physics.named.data.xpos["torso", "z"]), DOWN_HEIGHT, DOWN_HEIGHT * 1.5)
        feet = float(physics.named.data.xpos["bfoot", "z"] + physics.named.data.xpos["ffoot", "z"])
        feet_up = rewards.above(feet, MID_HEIGHT, MID_HEIGHT / 2)
        return (torso_down + feet_up) / 2


class Flipping(suite_cheetah.Cheetah):
    """Rotating flips (``cheetah_flipping``), GenRL's evaluated reward:

    - linear tol(L_y >= 5, margin 5, 0 at the margin), L_y = torso subtree angular momentum about y

    GenRL means max over both spin directions, but its code multiplies L_y by the boolean ``False`` for the
    backward term, which is therefore tol(0 >= 5) = 0; only positive L_y is rewarded. We keep that behaviour
    so returns stay comparable with GenRL's (reference code mazpie/genrl).
    """

    def get_reward(self, physics: Any) -> float:
        """Per-frame reward in [0, 1]."""
        return rewards.linear_above(physics.angular_momentum_y(), SPIN_SPEED, SPIN_SPEED, 0.0)


_CUSTOM: dict[str, type[suite_cheetah.Cheetah]] = {"standing": Standing, "lying_down": LyingDown, "flipping": Flipping}


def custom_model_xml() -> bytes:
    """The suite cheetah MJCF with GenRL's widened ground plane (``size="200 .8 .5"``)."""
    xml, _ = suite_cheetah.get_model_and_assets()
    root = etree.fromstring(xml)
    ground = root.find(".//geom[@name='ground']")
    if ground is None:  # a dm_control release renamed the geom: fail loudly rather than build another model
        raise RuntimeError("dm_control's cheetah.xml has no geom named 'ground'; update genrl_gym.envs.domains.cheetah.")
    size = ground.get("size", "100 .8 .5").split()
    ground.set("size", " ".join([str(GROUND_HALF_LENGTH)] + size[1:]))
    return etree.tostring(root)


def load(task: str, random: int | np.random.RandomState | None = None,
         environment_kwargs: dict[str, Any] | None = None) -> control.Environment:
    """Build cheetah ``task`` (one of ``TASK_NAMES``) as a dm_control ``control.Environment``.

    :param task: task name.
    :param random: seed or ``RandomState`` of the initial joint angles.
    :param environment_kwargs: ``control.Environment`` kwargs; ``"time_limit"`` (s) overrides the default 10 s.

    :raises ValueError: unknown task.
    """
    time_limit, kwargs = split_time_limit(environment_kwargs, DEFAULT_TIME_LIMIT)
    if task == "run":
        return suite_cheetah.run(time_limit=time_limit, random=random, environment_kwargs=kwargs)
    if task not in _CUSTOM:
        raise ValueError(f"Unknown cheetah task {task!r}; valid tasks: {', '.join(TASK_NAMES)}.")
    physics = Physics.from_xml_string(custom_model_xml(), common.ASSETS)
    return control.Environment(physics, _CUSTOM[task](random=random), time_limit=time_limit, **kwargs)
