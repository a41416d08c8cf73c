"""genrl-gym: GenRL's multimodal-foundation world models for the everyday RL toolchain.

Importing the package registers the ``GenRL/<Domain>-v0`` Gymnasium ids (Walker, Cheetah, Quadruped, Stickman,
Kitchen). Public names are loaded on first use so that ``import genrl_gym`` stays cheap:

* ``MFWM`` (the multimodal-foundation world model), ``preset`` (size presets)
* ``make_pixel_env``, ``TASKS`` (the task table)
* ``GenRLAgent`` (actor-critic in imagination), ``GenRLReward``, ``VecGenRLReward`` (reward wrappers)
* ``target_from_prompt``, ``load_vlm``, ``resolve_model``
"""

from __future__ import annotations

from typing import Any

from genrl_gym import _compat  # noqa: F401  (render/torch guard: must run before dm_control renders)
from genrl_gym.registration import ENV_IDS, make_genrl_env, register_envs  # noqa: F401  (importing registers GenRL/* ids)

__version__ = "0.1.0"

_LAZY = {
    "MFWM": "genrl_gym.models",
    "preset": "genrl_gym.models",
    "make_pixel_env": "genrl_gym.envs",
    "TASKS": "genrl_gym.envs",
    "GenRLAgent": "genrl_gym.agents",
    "GenRLReward": "genrl_gym.wrappers",
    "VecGenRLReward": "genrl_gym.wrappers",
    "target_from_prompt": "genrl_gym.prompts",
    "load_vlm": "genrl_gym.vlm",
    "resolve_model": "genrl_gym.model_store",
}

__all__ = ["__version__", "ENV_IDS", "make_genrl_env", "register_envs", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'genrl_gym' has no attribute {name!r}")
