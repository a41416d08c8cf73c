"""The render guard: after an EGL render, building and stepping torch.optim.Adam must not crash the process.

Without ``genrl_gym._compat`` (imported by ``import genrl_gym``), torch 2.14 on Mesa's EGL segfaults when
``torch._dynamo`` is first imported after a render, and ``torch.optim.Adam`` imports it lazily. The check runs in a
fresh subprocess because the crash (or its absence) depends on import order within one process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import genrl_gym
    import numpy as np
    from genrl_gym.envs import make_pixel_env

    env = make_pixel_env("walker", "stand", render_mode="rgb_array", seed=0)
    obs, _ = env.reset(seed=0)
    env.step(np.zeros(env.action_space.shape, np.float32))
    frame = env.render()
    assert frame.shape == (64, 64, 3) and frame.mean() > 0

    import torch
    param = torch.nn.Parameter(torch.ones(4))
    opt = torch.optim.Adam([param], lr=0.1)
    (param ** 2).sum().backward()
    opt.step()
    assert float(param.detach().sum()) < 4.0
    env.close()
    print("GUARD-OK")
""")


def test_render_then_adam_step_in_fresh_process() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}  # genrl_gym sets them
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"exit code {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-3000:]}"
    assert "GUARD-OK" in proc.stdout
