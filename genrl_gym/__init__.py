"""genrl-gym: GenRL's multimodal-foundation world models for the everyday RL toolchain.

Importing the package registers the ``GenRL/<Domain>-v0`` Gymnasium ids.
"""

from __future__ import annotations

from genrl_gym import _compat  # noqa: F401  (render/torch guard: must run before dm_control renders)

__version__ = "0.1.0"

__all__ = ["__version__"]
