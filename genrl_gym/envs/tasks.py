"""The task table: every domain/task genrl-gym knows, with GenRL's prompt, camera and score normalisers.

Sources (the reference code mazpie/genrl): prompts are GenRL's ``TASK2PROMPT`` strings at its HEAD commit,
random/expert scores its ``tools/task_scores.py`` ``MIN``/``MAX`` (episode returns over 1000 frames; ``None``
where GenRL gives none). ``in_distribution`` marks the 14 "behaviour retrieval" tasks that have task data in
GenRL's datasets (kitchen excluded here). The implementations live in ``genrl_gym.envs.domains.<domain>``; a test
checks that each module's ``TASK_NAMES`` matches this table.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from genrl_gym.utils import env_id  # noqa: F401  (re-exported: genrl_gym.envs.env_id)


@dataclass(frozen=True)
class TaskSpec:
    """One task.

    :ivar domain: e.g. ``"walker"``.
    :ivar task: e.g. ``"stand"``.
    :ivar prompt: GenRL's text prompt for the task.
    :ivar camera_id: dm_control camera rendered for pixels (quadruped 2, others 0).
    :ivar random_score: episode return of a random policy (GenRL ``MIN``), or None if unknown.
    :ivar expert_score: episode return of an expert (GenRL ``MAX``), or None if unknown.
    :ivar in_distribution: True for GenRL's in-distribution ("behaviour retrieval") tasks.
    :ivar description: one line summarising the true per-frame reward.
    """

    domain: str
    task: str
    prompt: str
    camera_id: int
    random_score: float | None
    expert_score: float | None
    in_distribution: bool
    description: str

    @property
    def name(self) -> str:
        """``"<domain>_<task>"``, the key of :data:`TASKS`."""
        return f"{self.domain}_{self.task}"

    def normalize(self, episode_return: float) -> float:
        """GenRL's normalised score ``(return - random) / (expert - random)`` (1000-frame episode return).

        :raises ValueError: the task has no random/expert scores.
        """
        if self.random_score is None or self.expert_score is None:
            raise ValueError(f"{self.name} has no random/expert scores in GenRL's table, so it cannot be normalised.")
        return (episode_return - self.random_score) / (self.expert_score - self.random_score)


_CAMERA = {"quadruped": 2}

# (domain, task, prompt, random, expert, in_distribution, description)
_ROWS: list[tuple[str, str, str, float | None, float | None, bool, str]] = [
    ("walker", "stand", "standing up straight", 150, 970, True,
     "dm_control stand: (3 tol(torso_z >= 1.2, .6) + (1 + upright)/2) / 4"),
    ("walker", "walk", "walk fast clean", 45, 960, True,
     "dm_control walk: stand x (5 lin tol(v_x >= 1, .5, .5) + 1) / 6"),
    ("walker", "run", "run fast clean", 30, 770, True,
     "dm_control run: stand x (5 lin tol(v_x >= 8, 4, .5) + 1) / 6"),
    ("walker", "flip", "doing flips", None, None, False,
     "upside_down x (5 lin tol(L_y >= 16, 8, .5) + 1) / 6; upside_down = (3 tol(feet >= 1.1) + 2 tol(thighs >= 1.0)) / 5"),
    ("walker", "one_foot", "stand on one foot", 20, 955, False,
     "tol(torso >= 1.0, .5) x tol(max foot >= .5, .25) x tol(min foot <= .1, .15)"),
    ("walker", "high_kick", "stand up and kick", 25, 960, False,
     "tol(torso >= 1.0, .5) x (3 tol(max foot >= 1.2, .6) + tol(min foot <= .1, .15)) / 4"),
    ("walker", "lying_down", "lying down horizontally", 170, 975, False,
     "(3 tol(torso <= .1) + (1 - |upright|) + tol(thighs <= .1) + tol(legs <= .1) + tol(feet <= .1)) / 7"),
    ("walker", "sit_knees", "praying", 100, 945, False,
     "torso_up(torso >= .55) x legs(legs <= .15, feet <= .1) x exp(-mean foot-thigh x-gap beyond .1)"),
    ("walker", "lunge_pose", "lunge_pose", 150, 945, False,
     "torso(torso >= .75, upright) x mean(low leg <= .1, high leg >= .25, high thigh horizontal, low leg horizontal)"),
    ("walker", "flipping", "doing backflips", 20, 720, False,
     "max over spin sign of upside_down x (5 lin tol(+-L_y >= 16, 8, .5) + 1) / 6"),
    ("cheetah", "run", "running like a quadruped", 9, 890, True,
     "dm_control run: lin tol(v_x >= 10, 10, 0)"),
    ("cheetah", "standing", "standing like a human", 5, 930, False,
     "tol(high foot >= 1.0, .5) x tol(low foot <= .15, .225)"),
    ("cheetah", "lying_down", "lying down", 430, 920, False,
     "(tol(torso <= .15, .225) + tol(bfoot_z + ffoot_z >= .45, .225)) / 2"),
    ("cheetah", "flipping", "quadruped rotating flips", None, None, False,
     "lin tol(L_y >= 5, 5, 0) (GenRL's backward term is always 0)"),
    ("quadruped", "stand", "spider standing", 15, 990, True,
     "upright only: (1 + torso zz) / 2"),
    ("quadruped", "walk", "spider walking fast", 10, 960, True,
     "upright x lin tol(v_x >= .5, .5, .5)"),
    ("quadruped", "run", "spider running fast", 10, 930, True,
     "dm_control run: upright x lin tol(v_x >= 5, 5, .5)"),
    ("quadruped", "jump", "spider jumping", 15, 875, False,
     "upright x lin tol(CoM height >= 1.0, 1.0, .5)"),
    ("quadruped", "two_legs", "on two legs", 14, 875, False,
     "step(mean 2 highest toes >= .8) x tol(mean 2 lowest toes <= .2, .3)"),
    ("quadruped", "lie_down", "lying down", 750, 965, False,
     "tol(torso <= .2, .3)"),
    ("stickman", "stand", "standing up", 70, 970, True,
     "stand x (5 [v_x >= 0] + 1) / 6 (GenRL's speed-0 quirk); stand = (3 tol(torso >= 1.15) + upright) / 4"),
    ("stickman", "walk", "robot walk fast clean", 35, 960, True,
     "stand x (5 lin tol(v_x >= 1, .5, .5) + 1) / 6"),
    ("stickman", "run", "robot run fast clean", 25, 830, True,
     "stand x (5 lin tol(v_x >= 8, 4, .5) + 1) / 6"),
    ("stickman", "flip", "doing flips", None, None, False,
     "upside_down x (5 lin tol(L_y >= 16, 8, .5) + 1) / 6 (as walker flip)"),
    ("stickman", "one_foot", "stand on one foot", 20, 865, False,
     "as walker: tol(torso >= 1.0) x tol(max foot >= .5) x tol(min foot <= .1)"),
    ("stickman", "high_kick", "stand up and kick", 55, 920, False,
     "as walker, kick foot >= 1.15"),
    ("stickman", "lying_down", "lying down horizontally", 380, 965, False,
     "as walker lying_down"),
    ("stickman", "legs_up", "lifting legs up while lying down", 115, 935, False,
     "((3 tol(torso <= .1) + horizontal) / 4) x tol(mean feet >= .35, .175)"),
    ("stickman", "sit_knees", "praying", 40, 966, False,
     "as walker sit_knees"),
    ("stickman", "lunge_pose", "lunge_pose", 100, 950, False,
     "as walker lunge_pose"),
    ("stickman", "headstand", "headstand", 180, 955, False,
     "upside_down only (flip goal at speed 0)"),
    ("stickman", "flipping", "doing flips", 45, 790, False,
     "as walker flipping (spin 16)"),
    ("stickman", "boxing", "punch", 80, 920, False,
     "stand x lin tol(max |hand x-velocity| >= 5, 2.5, .5)"),
    ("stickman", "hands_up", "standing with the hands up", 5, 830, False,
     "stand x tol(mean hand z >= 1.75, .875)"),
]

TASKS: dict[str, TaskSpec] = {
    f"{d}_{t}": TaskSpec(d, t, p, _CAMERA.get(d, 0), None if lo is None else float(lo),
                         None if hi is None else float(hi), ind, desc)
    for d, t, p, lo, hi, ind, desc in _ROWS
}

DOMAINS: tuple[str, ...] = tuple(dict.fromkeys(spec.domain for spec in TASKS.values()))


def tasks_of(domain: str) -> tuple[str, ...]:
    """Task names of ``domain`` in table order.

    :raises ValueError: unknown domain (lists the valid ones, suggests close matches).
    """
    _check_domain(domain)
    return tuple(spec.task for spec in TASKS.values() if spec.domain == domain)


def get_task(domain: str, task: str) -> TaskSpec:
    """Return the :class:`TaskSpec` of ``domain``/``task``.

    :raises ValueError: unknown domain or task; the message lists the valid ones and suggests close matches.
    """
    _check_domain(domain)
    spec = TASKS.get(f"{domain}_{task}")
    if spec is None:
        valid = tasks_of(domain)
        raise ValueError(f"Unknown {domain} task {task!r}.{_suggest(task, valid)} Valid {domain} tasks: {', '.join(valid)}.")
    return spec


def _check_domain(domain: str) -> None:
    if domain not in DOMAINS:
        raise ValueError(f"Unknown domain {domain!r}.{_suggest(domain, DOMAINS)} Valid domains: {', '.join(DOMAINS)}.")


def _suggest(name: object, valid: tuple[str, ...]) -> str:
    """`` Did you mean 'x'?`` for the closest valid names, or an empty string."""
    close = difflib.get_close_matches(str(name), valid, n=3, cutoff=0.6)
    return f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
