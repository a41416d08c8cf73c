"""The runnable examples in examples/ run end to end (tiny budgets) and return what their docstrings promise."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_gym_reward_sac() -> None:
    out = _load("gym_reward_sac").main(steps=64, eval_frames=20, seed=0)
    assert set(out) == {"genrl_return", "task_return"}
    assert all(math.isfinite(v) for v in out.values())
    assert out["task_return"] >= 0.0  # walker stand's true reward is in [0, 1] per frame


@pytest.mark.slow
def test_vec_reward_ppo() -> None:
    out = _load("vec_reward_ppo").main(steps=32, n_envs=2, seed=0)
    assert set(out) == {"genrl_reward_per_step", "task_reward_per_step"}
    assert all(math.isfinite(v) for v in out.values())


@pytest.mark.slow
def test_genrl_agent(tmp_path: Path) -> None:
    out = _load("genrl_agent").main(seconds=3.0, eval_seeds=1, eval_frames=20, seed=0, out=tmp_path / "a.zip")
    assert (tmp_path / "a.zip").is_file()
    assert out["updates"] >= 1
    assert math.isfinite(out["mean_return"])
