"""Test-wide settings: seeded, one torch thread (tiny models are faster single-threaded on 2 shared cores)."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import genrl_gym  # noqa: E402,F401  (render guard + registration before any test renders)
import torch  # noqa: E402

torch.set_num_threads(1)
