"""Per-domain task loaders (dm_control suite tasks plus GenRL's custom tasks).

Each domain module exposes the same two names:

* ``TASK_NAMES: tuple[str, ...]``: the tasks it can build;
* ``load(task, random=None, environment_kwargs=None) -> dm_control.rl.control.Environment``.

``environment_kwargs`` go to ``control.Environment``; the key ``"time_limit"`` (seconds) overrides the task's
default episode length (the pixel env passes ``inf`` and counts frames itself). Modules are imported lazily so
that building a walker env never compiles the other domains' models. Nothing here touches dm_control's globals
(``suite._DOMAINS``): custom tasks are reachable only through these loaders.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import numpy as np

# Domain name -> module path. The table of tasks with prompts and scores lives in ``genrl_gym.envs.tasks``.
DOMAIN_MODULES: dict[str, str] = {
    "walker": "genrl_gym.envs.domains.walker",
    "cheetah": "genrl_gym.envs.domains.cheetah",
    "quadruped": "genrl_gym.envs.domains.quadruped",
    "stickman": "genrl_gym.envs.domains.stickman",
}


def domain_module(domain: str) -> ModuleType:
    """Import and return the module implementing ``domain``.

    :raises ValueError: unknown domain (lists the known ones).
    :raises ImportError: the domain's module is missing or broken (names the module).
    """
    if domain not in DOMAIN_MODULES:
        raise ValueError(f"Unknown domain {domain!r}; valid domains: {', '.join(DOMAIN_MODULES)}.")
    path = DOMAIN_MODULES[domain]
    try:
        return importlib.import_module(path)
    except ModuleNotFoundError as e:
        if e.name == path:
            raise ImportError(f"The {domain!r} domain module {path} is not installed in this copy of genrl_gym.") from e
        raise


def load(domain: str, task: str, random: int | np.random.RandomState | None = None,
         environment_kwargs: dict[str, Any] | None = None) -> Any:
    """Build the dm_control ``control.Environment`` of ``domain``/``task``.

    :param domain: e.g. ``"walker"``.
    :param task: e.g. ``"stand"``; must be in the domain module's ``TASK_NAMES``.
    :param random: seed or ``RandomState`` for the task's initial-state randomisation (None: fresh entropy).
    :param environment_kwargs: forwarded to ``control.Environment`` (``"time_limit"`` in seconds overrides the default).

    :raises ValueError: unknown domain or task (lists the valid ones).
    """
    module = domain_module(domain)
    if task not in module.TASK_NAMES:
        raise ValueError(f"Unknown {domain} task {task!r}; valid tasks: {', '.join(module.TASK_NAMES)}.")
    return module.load(task, random=random, environment_kwargs=environment_kwargs)


def split_time_limit(environment_kwargs: dict[str, Any] | None, default: float) -> tuple[float, dict[str, Any]]:
    """Return ``(time_limit_seconds, remaining_kwargs)`` from ``environment_kwargs`` (helper for domain modules)."""
    kwargs = dict(environment_kwargs or {})
    return float(kwargs.pop("time_limit", default)), kwargs
