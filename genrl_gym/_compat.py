"""Process-level guards that must run before anything renders.

Two facts of the headless stack this package runs on:

* MuJoCo picks its OpenGL backend when it is first imported, so ``MUJOCO_GL`` must be set
  before ``dm_control``/``mujoco`` are imported. We default to EGL (works headless on Mesa and
  on NVIDIA drivers) unless the user chose a backend.
* With torch 2.14 on Mesa's EGL, importing ``torch._dynamo`` *after* the first EGL render
  segfaults the process. ``torch.optim.Adam`` imports it lazily, so SB3 and our trainers would
  crash after an env has rendered. Importing it once, before any rendering, avoids the crash.
"""

from __future__ import annotations

import os

_GUARDED = False


def ensure_render_safe() -> None:
    """Set a headless GL default and pre-import ``torch._dynamo`` (idempotent, cheap after the first call)."""
    global _GUARDED
    if _GUARDED:
        return
    os.environ.setdefault("MUJOCO_GL", "egl")
    if os.environ["MUJOCO_GL"] == "egl":
        os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    try:
        import torch._dynamo  # noqa: F401  (must precede the first EGL render, see module docstring)
    except ImportError:  # torch without dynamo: nothing to guard
        pass
    _GUARDED = True


ensure_render_safe()
