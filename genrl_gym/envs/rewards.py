"""Shared true-reward helpers for the custom dm_control tasks (GenRL's evaluation rewards).

Every reward here is built from ``dm_control.utils.rewards.tolerance`` exactly as GenRL's task files do
(reference code ``custom_dmc_tasks``: ``tol(x >= a, m)`` = ``tolerance(x, bounds=(a, inf), margin=m)`` with the default
Gaussian sigmoid, which is 0.1 at the margin, unless a linear sigmoid or another ``value_at_margin`` is named).
All values are per control step (one "frame") and lie in [0, 1]. Heights and positions are in metres
(world frame, ``physics.named.data.xpos``), angular momenta in kg m^2 / s.

The planar-biped rewards take a physics whose model has bodies named ``torso``, ``left_thigh``,
``right_thigh``, ``left_leg``, ``right_leg``, ``left_foot``, ``right_foot``: dm_control's planar walker and
GenRL's stickman both do, so the stickman domain reuses them with its own constants and its own measuring points
(:class:`BipedPoints`: the walker is measured at body-frame origins, the stickman's shins and feet at their geom
centres).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from dm_control.utils import rewards

INF = float("inf")

# GenRL's walker pose constants (metres; reference code's "yoga" constants).
YOGA_STAND_HEIGHT = 1.0
YOGA_LIE_DOWN_HEIGHT = 0.1
YOGA_LEGS_UP_HEIGHT = 1.1
YOGA_FEET_UP_HEIGHT = 0.5
YOGA_FEET_UP_LIE_DOWN_HEIGHT = 0.35
YOGA_KNEE_HEIGHT = 0.25
YOGA_KNEESTAND_HEIGHT = 0.75
YOGA_SITTING_HEIGHT = 0.55
YOGA_SITTING_LEGS_HEIGHT = 0.15


def above(x: float, bound: float, margin: float) -> float:
    """``tol(x >= bound, margin)``: 1 at or above ``bound``, Gaussian fall-off to 0.1 at ``bound - margin``."""
    return float(rewards.tolerance(x, bounds=(bound, INF), margin=margin))


def below(x: float, bound: float, margin: float) -> float:
    """``tol(x <= bound, margin)``: 1 at or below ``bound``, Gaussian fall-off to 0.1 at ``bound + margin``."""
    return float(rewards.tolerance(x, bounds=(-INF, bound), margin=margin))


def linear_above(x: float, bound: float, margin: float, value_at_margin: float) -> float:
    """Linear ``tol(x >= bound)``: 1 at or above ``bound``, linear down to ``value_at_margin`` at ``bound - margin``.

    With ``value_at_margin`` > 0 the linear sigmoid reaches 0 only at ``bound - margin / (1 - value_at_margin)``.
    """
    return float(rewards.tolerance(x, bounds=(bound, INF), margin=margin, value_at_margin=value_at_margin,
                                   sigmoid="linear"))


def linear_below(x: float, bound: float, margin: float, value_at_margin: float) -> float:
    """Linear ``tol(x <= bound)``, the mirror image of :func:`linear_above`."""
    return float(rewards.tolerance(x, bounds=(-INF, bound), margin=margin, value_at_margin=value_at_margin,
                                   sigmoid="linear"))


@dataclass(frozen=True)
class BipedPoints:
    """Where the biped rewards measure each body: its frame origin, or the centre of its same-named geom.

    :param geom_centred: bodies measured at the centre of the geom of the same name (``data.geom_xpos``) instead of
        at the body frame's origin (``data.xpos``). Empty for dm_control's walker (:data:`BODY_ORIGINS`).
    """

    geom_centred: frozenset[str] = frozenset()

    def position(self, physics: Any, body: str) -> np.ndarray:
        """World position ``[3]`` (m) of ``body``'s measuring point."""
        data = physics.named.data
        return data.geom_xpos[body] if body in self.geom_centred else data.xpos[body]

    def z(self, physics: Any, body: str) -> float:
        """World height (m) of ``body``'s measuring point."""
        return float(self.position(physics, body)[2])

    def x(self, physics: Any, body: str) -> float:
        """World x position (m) of ``body``'s measuring point."""
        return float(self.position(physics, body)[0])

    def mean_z(self, physics: Any, part: str) -> float:
        """Mean height (m) of the measuring points of ``left_<part>`` and ``right_<part>``."""
        return (self.z(physics, f"left_{part}") + self.z(physics, f"right_{part}")) / 2


#: every body measured at its frame origin (dm_control's planar walker, GenRL's walker tasks)
BODY_ORIGINS = BipedPoints()


def upright(physics: Any, body: str = "torso") -> float:
    """z-component of the body's z-axis in world coordinates: 1 upright, -1 upside down, 0 horizontal."""
    return float(physics.named.data.xmat[body, "zz"])


def torso_angular_momentum_y(physics: Any) -> float:
    """Angular momentum of the subtree rooted at the torso about the world y-axis (the planar spin axis)."""
    return float(physics.named.data.subtree_angmom["torso"][1])


def stand(physics: Any, *, stand_height: float, points: BipedPoints = BODY_ORIGINS) -> float:
    """dm_control walker's standing term: ``(3 tol(torso_z >= h, h/2) + (1 + upright) / 2) / 4``, ``h`` = ``stand_height``."""
    standing = above(points.z(physics, "torso"), stand_height, stand_height / 2)
    return (3 * standing + (1 + upright(physics)) / 2) / 4


def move(physics: Any, velocity: float, speed: float, *, stand_height: float,
         points: BipedPoints = BODY_ORIGINS) -> float:
    """dm_control walker's stand/walk/run reward: ``stand x (5 move + 1) / 6``.

    stand is :func:`stand`; move = linear tol(``velocity`` >= ``speed``, margin ``speed``/2, 0.5 at the margin), so
    ``speed`` 0 makes move an indicator of ``velocity >= 0`` (GenRL's stand task). ``velocity`` is the forward speed
    (m/s) the domain rewards, e.g. its centre of mass's x-velocity.
    """
    go = linear_above(velocity, speed, speed / 2, 0.5)
    return stand(physics, stand_height=stand_height, points=points) * (5 * go + 1) / 6


def one_foot(physics: Any, *, stand_height: float = YOGA_STAND_HEIGHT, points: BipedPoints = BODY_ORIGINS) -> float:
    """Stand on one foot: ``tol(torso_z >= h, h/2) x tol(max foot_z >= .5, .25) x tol(min foot_z <= .1, .15)``.

    ``h`` = ``stand_height`` (1.0 m for walker and stickman).
    """
    feet = (points.z(physics, "left_foot"), points.z(physics, "right_foot"))
    standing = above(points.z(physics, "torso"), stand_height, stand_height / 2)
    foot_up = above(max(feet), YOGA_FEET_UP_HEIGHT, YOGA_FEET_UP_HEIGHT / 2)
    foot_down = below(min(feet), YOGA_LIE_DOWN_HEIGHT, YOGA_LIE_DOWN_HEIGHT * 1.5)
    return standing * foot_up * foot_down


def high_kick(physics: Any, *, kick_height: float, stand_height: float = YOGA_STAND_HEIGHT,
              points: BipedPoints = BODY_ORIGINS) -> float:
    """Kick: ``tol(torso_z >= 1.0, .5) x (3 tol(max foot_z >= kick_height, kick_height/2) + tol(min foot_z <= .1, .15)) / 4``.

    ``kick_height`` is the domain's stand height (walker 1.2, stickman 1.15).
    """
    feet = (points.z(physics, "left_foot"), points.z(physics, "right_foot"))
    standing = above(points.z(physics, "torso"), stand_height, stand_height / 2)
    foot_up = above(max(feet), kick_height, kick_height / 2)
    foot_down = below(min(feet), YOGA_LIE_DOWN_HEIGHT, YOGA_LIE_DOWN_HEIGHT * 1.5)
    return standing * (3 * foot_up + foot_down) / 4


def lying_down(physics: Any, *, points: BipedPoints = BODY_ORIGINS) -> float:
    """Lie down: ``(3 tol(torso_z <= .1, .15) + (1 - |upright|) + tol(mean thigh_z <= .1, .15) + same for legs, feet) / 7``."""
    low, margin = YOGA_LIE_DOWN_HEIGHT, YOGA_LIE_DOWN_HEIGHT * 1.5
    torso_down = below(points.z(physics, "torso"), low, margin)
    horizontal = 1 - abs(upright(physics))
    thighs_down = below(points.mean_z(physics, "thigh"), low, margin)
    legs_down = below(points.mean_z(physics, "leg"), low, margin)
    feet_down = below(points.mean_z(physics, "foot"), low, margin)
    return (3 * torso_down + horizontal + thighs_down + legs_down + feet_down) / 7


def legs_up(physics: Any, *, points: BipedPoints = BODY_ORIGINS) -> float:
    """Legs up while lying: ``(3 tol(torso_z <= .1, .15) + (1 - |upright|)) / 4 x tol(mean foot_z >= .35, .175)``."""
    torso_down = below(points.z(physics, "torso"), YOGA_LIE_DOWN_HEIGHT, YOGA_LIE_DOWN_HEIGHT * 1.5)
    horizontal = 1 - abs(upright(physics))
    feet_up = above(points.mean_z(physics, "foot"), YOGA_FEET_UP_LIE_DOWN_HEIGHT, YOGA_FEET_UP_LIE_DOWN_HEIGHT / 2)
    return (3 * torso_down + horizontal) / 4 * feet_up


def sit_knees(physics: Any, *, points: BipedPoints = BODY_ORIGINS) -> float:
    """Kneel ("praying"): ``torso_up x legs x close``.

    torso_up = (3 tol(torso_z >= .55, .275) + (1 + upright)/2) / 4;
    legs = (3 tol(mean leg_z <= .15, .225) + tol(mean foot_z <= .1, .15)) / 4;
    close = exp(-mean over sides of (max(.1, |foot_x - thigh_x|) - .1)).
    """
    standing = above(points.z(physics, "torso"), YOGA_SITTING_HEIGHT, YOGA_SITTING_HEIGHT / 2)
    torso_up = (3 * standing + (1 + upright(physics)) / 2) / 4
    legs_down = below(points.mean_z(physics, "leg"), YOGA_SITTING_LEGS_HEIGHT, YOGA_SITTING_LEGS_HEIGHT * 1.5)
    feet_down = below(points.mean_z(physics, "foot"), YOGA_LIE_DOWN_HEIGHT, YOGA_LIE_DOWN_HEIGHT * 1.5)
    gaps = [max(0.1, abs(points.x(physics, f"{s}_foot") - points.x(physics, f"{s}_thigh"))) - 0.1 for s in ("left", "right")]
    close = math.exp(-sum(gaps) / 2)
    return torso_up * (3 * legs_down + feet_down) / 4 * close


def lunge_pose(physics: Any, *, points: BipedPoints = BODY_ORIGINS) -> float:
    """Lunge: ``torso x legs``.

    torso = (3 tol(torso_z >= .75, .375) + (1 + upright)/2) / 4;
    legs = mean(tol(low leg_z <= .1, .15), tol(high leg_z >= .25, .125), 1 - |high-side thigh zz|, 1 - |low leg zz|),
    where "high"/"low" pick the side whose leg (shin) body is higher/lower (ties pick the left side, as GenRL does).
    """
    standing = above(points.z(physics, "torso"), YOGA_KNEESTAND_HEIGHT, YOGA_KNEESTAND_HEIGHT / 2)
    torso = (3 * standing + (1 + upright(physics)) / 2) / 4
    left, right = points.z(physics, "left_leg"), points.z(physics, "right_leg")
    high_side = "left" if left >= right else "right"
    low_side = "left" if left <= right else "right"
    low_leg_down = below(min(left, right), YOGA_LIE_DOWN_HEIGHT, YOGA_LIE_DOWN_HEIGHT * 1.5)
    high_leg_up = above(max(left, right), YOGA_KNEE_HEIGHT, YOGA_KNEE_HEIGHT / 2)
    high_thigh_horizontal = 1 - abs(upright(physics, f"{high_side}_thigh"))
    low_leg_horizontal = 1 - abs(upright(physics, f"{low_side}_leg"))
    return torso * (low_leg_down + high_leg_up + high_thigh_horizontal + low_leg_horizontal) / 4


def upside_down(physics: Any, *, points: BipedPoints = BODY_ORIGINS) -> float:
    """Upside down (headstand / flip goal): ``(3 tol(mean foot_z >= 1.1, .55) + 2 tol(mean thigh_z >= 1.0, .5)) / 5``."""
    feet_up = above(points.mean_z(physics, "foot"), YOGA_LEGS_UP_HEIGHT, YOGA_LEGS_UP_HEIGHT / 2)
    thighs_up = above(points.mean_z(physics, "thigh"), YOGA_STAND_HEIGHT, YOGA_STAND_HEIGHT / 2)
    return (3 * feet_up + 2 * thighs_up) / 5


def flip(physics: Any, spin_speed: float, *, points: BipedPoints = BODY_ORIGINS) -> float:
    """Flip in one direction: ``upside_down x (5 spin + 1) / 6``.

    spin = linear tol(sign(spin_speed) L_y >= |spin_speed|, margin |spin_speed|/2, 0.5 at the margin), L_y being the
    torso subtree's angular momentum about the world y-axis. ``spin_speed == 0`` gives ``upside_down`` alone
    (GenRL's headstand).
    """
    base = upside_down(physics, points=points)
    if spin_speed == 0:
        return base
    return base * (5 * spin(physics, spin_speed) + 1) / 6


def spin(physics: Any, spin_speed: float) -> float:
    """Spin term of :func:`flip`: linear tol(sign(spin_speed) L_y >= |spin_speed|, |spin_speed|/2, 0.5 at the margin).

    ``spin_speed`` must be non-zero (kg m^2/s); L_y is :func:`torso_angular_momentum_y`.
    """
    speed = abs(spin_speed)
    return linear_above(math.copysign(1.0, spin_speed) * torso_angular_momentum_y(physics), speed, speed / 2, 0.5)


def flipping(physics: Any, spin_speed: float, *, points: BipedPoints = BODY_ORIGINS) -> float:
    """Flips in either direction: ``max(flip(+spin_speed), flip(-spin_speed))`` (GenRL's "flipping" goal)."""
    return max(flip(physics, abs(spin_speed), points=points), flip(physics, -abs(spin_speed), points=points))

