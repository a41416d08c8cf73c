"""The render guard: after an EGL render, building and stepping torch.optim.Adam must not crash the process.

Without ``genrl_gym._compat`` (imported by ``import genrl_gym``), torch 2.14 on Mesa's EGL segfaults when
``torch._dynamo`` is first imported after a render, and ``torch.optim.Adam`` imports it lazily. The check runs in a
fresh subprocess because the crash (or its absence) depends on import order within one process.

The crash itself only shows on some stacks, so the ordering is also checked directly: an import probe records whether
``torch._dynamo`` was already imported when ``genrl_gym.registration`` (right after the guard in ``genrl_gym/__init__``)
and ``mujoco``/``dm_control`` (what renders) were first imported, through
``import genrl_gym`` and through Gymnasium's ``gym.make("genrl_gym:GenRL/Walker-v0")`` entry-point import; a control run
that imports dm_control without genrl_gym shows that the probe does see a missing guard.
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


PROBE = textwrap.dedent("""
    import importlib.abc
    import sys

    first_import = {}  # module -> was torch._dynamo already imported when it was first imported?

    class Probe(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name in ("genrl_gym.registration", "mujoco", "dm_control") and name not in first_import:
                first_import[name] = "torch._dynamo" in sys.modules
            return None

    sys.meta_path.insert(0, Probe())
""")

ENTRY_POINT = PROBE + textwrap.dedent("""
    import gymnasium as gym
    assert "genrl_gym" not in sys.modules and "torch._dynamo" not in sys.modules
    # Gymnasium imports the module named before the colon (genrl_gym: _compat, then the registration), then builds
    env = gym.make("genrl_gym:GenRL/Walker-v0", model=sys.argv[1], render_mode="rgb_array", seed=0)
    env.reset(seed=0)
    assert env.render().mean() > 0
    env.close()
    print("ORDER", sorted(first_import.items()))
""")

PLAIN_IMPORT = PROBE + textwrap.dedent("""
    import genrl_gym
    assert "torch._dynamo" in sys.modules, "import genrl_gym did not pre-import torch._dynamo"
    assert "mujoco" not in sys.modules and "dm_control" not in sys.modules  # the import is cheap: nothing rendered yet
    from genrl_gym.envs import make_pixel_env
    env = make_pixel_env("walker", "stand", render_mode="rgb_array", seed=0)
    env.reset(seed=0)
    env.close()
    print("ORDER", sorted(first_import.items()))
""")

CONTROL = PROBE + textwrap.dedent("""
    from dm_control import suite  # no genrl_gym: nothing imports torch._dynamo first
    print("ORDER", sorted(first_import.items()))
""")


def _run(script: str, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    env["MUJOCO_GL"] = "egl"  # the control imports dm_control without genrl_gym's default
    proc = subprocess.run([sys.executable, "-c", script, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, f"exit code {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-3000:]}"
    return next(line for line in proc.stdout.splitlines() if line.startswith("ORDER"))


def test_dynamo_is_imported_before_the_renderer_through_gym_make_entry_point(tmp_path: Path) -> None:
    from helpers import save_tiny_model

    model = save_tiny_model(tmp_path / "walker.pt")
    assert _run(ENTRY_POINT, str(model)) == "ORDER [('dm_control', True), ('genrl_gym.registration', True), ('mujoco', True)]"


def test_dynamo_is_imported_before_the_renderer_by_import_genrl_gym() -> None:
    assert _run(PLAIN_IMPORT) == "ORDER [('dm_control', True), ('genrl_gym.registration', True), ('mujoco', True)]"


def test_the_probe_sees_a_renderer_imported_without_the_guard() -> None:
    assert _run(CONTROL) == "ORDER [('dm_control', False), ('mujoco', False)]"
