"""genrl_gym.sb3_compat: the SB3 private API and zip format genrl-gym relies on still exist in the installed SB3.

An SB3 upgrade that renames or re-signs one of them fails here, naming it, rather than deep inside training.
"""

from __future__ import annotations

import importlib
import inspect
import re
import tomllib
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import stable_baselines3
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm

import genrl_gym  # noqa: F401  (render/torch guard, project rule)
from genrl_gym import sb3_compat

ROOT = Path(__file__).resolve().parents[1]


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(n) for n in text.split("."))


def test_declared_range_is_pyprojects_and_holds_the_installed_sb3() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (spec,) = [d for d in deps if d.startswith("stable-baselines3")]
    low, high = re.fullmatch(r"stable-baselines3>=([\d.]+),<([\d.]+)", spec).groups()  # type: ignore[union-attr]
    assert sb3_compat.SB3_VERSION_RANGE == (_version(low), _version(high)), spec
    assert sb3_compat.version_supported(), (stable_baselines3.__version__, sb3_compat.SB3_VERSION_RANGE)
    assert sb3_compat.version_supported("2.5.0") and sb3_compat.version_supported("2.9.2a1")
    assert not sb3_compat.version_supported("2.4.1") and not sb3_compat.version_supported("3.0.0")


@pytest.mark.parametrize("dotted", sorted(sb3_compat.PRIVATE_FUNCTIONS))
def test_private_functions_exist_with_their_parameters(dotted: str) -> None:
    module, name = dotted.rsplit(".", 1)
    func = getattr(importlib.import_module(module), name, None)
    assert callable(func), f"{dotted} is gone from stable_baselines3 {stable_baselines3.__version__}"
    assert tuple(inspect.signature(func).parameters) == sb3_compat.PRIVATE_FUNCTIONS[dotted], dotted


@pytest.mark.parametrize("name", sorted(sb3_compat.BASE_ALGORITHM_HOOKS))
def test_base_algorithm_hooks_exist_with_their_parameters(name: str) -> None:
    hook = getattr(BaseAlgorithm, name, None)
    assert callable(hook), f"BaseAlgorithm.{name} is gone from stable_baselines3 {stable_baselines3.__version__}"
    assert tuple(inspect.signature(hook).parameters) == sb3_compat.BASE_ALGORITHM_HOOKS[name], name


def _ppo() -> PPO:
    return PPO("MlpPolicy", gym.make("Pendulum-v1"), n_steps=16, batch_size=16, device="cpu", seed=0)


def test_setup_learn_sets_what_sb3s_own_does() -> None:
    ours, theirs = _ppo(), _ppo()
    ours.num_timesteps = theirs.num_timesteps = 40
    total_ours = sb3_compat.setup_learn(ours, 100, False, "run")
    total_theirs, _ = theirs._setup_learn(100, None, reset_num_timesteps=False, tb_log_name="run")
    missing = [a for a in sb3_compat.SETUP_LEARN_ATTRIBUTES if not hasattr(theirs, a)]
    assert not missing, f"SB3's own _setup_learn no longer sets {missing}"
    assert total_ours == total_theirs == 140
    for attr in sb3_compat.SETUP_LEARN_ATTRIBUTES:
        a, b = getattr(ours, attr), getattr(theirs, attr)
        if attr == "start_time":
            assert abs(a - b) < 60e9
        elif attr in ("ep_info_buffer", "ep_success_buffer"):
            assert (list(a), a.maxlen) == (list(b), b.maxlen), attr
        elif attr == "_logger":
            assert type(a) is type(b)
        else:
            assert a == b, attr
    sb3_compat.setup_learn(ours, 100, True, "run")
    assert (ours.num_timesteps, ours._total_timesteps, ours._episode_num) == (0, 100, 0)


def test_zip_format_round_trip(tmp_path: Path) -> None:
    model = _ppo()
    model.learn(32)
    path = tmp_path / "ppo.zip"
    model.save(path)
    data = sb3_compat.read_data(path)
    with zipfile.ZipFile(path) as archive:
        assert sb3_compat.read_data(archive) == data
    with open(path, "rb") as fh:
        assert sb3_compat.read_data(fh) == data
    pickled = sb3_compat.pickled_keys(data)
    assert {"observation_space", "action_space", "policy_class"} <= set(pickled), pickled
    assert "num_timesteps" not in pickled
    assert sb3_compat.space_shape(data, "observation_space") == (3,)
    assert sb3_compat.space_shape(data, "action_space") == (1,)
    loaded, params, variables = sb3_compat.load_zip(path, device="cpu", custom_objects=dict.fromkeys(pickled))
    assert loaded is not None and all(loaded[k] is None for k in pickled)  # nothing unpickled
    assert loaded["num_timesteps"] == model.num_timesteps
    assert set(params) >= {"policy", "policy.optimizer"}

    fresh = _ppo()
    fresh.set_parameters(params, exact_match=True, device="cpu")
    sb3_compat.restore_torch_variables(fresh, variables)
    sb3_compat.restore_counters(fresh, data)
    assert (fresh.num_timesteps, fresh._n_updates, fresh._episode_num) == (
        model.num_timesteps, model._n_updates, model._episode_num)
    obs = np.zeros((1, 3), np.float32)
    np.testing.assert_array_equal(fresh.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])


def test_missing_data_entry_is_a_key_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("policy.pth", b"")
    with pytest.raises(KeyError):
        sb3_compat.read_data(path)


def test_patch_env_keeps_a_gymnasium_env() -> None:
    env = gym.make("Pendulum-v1")
    assert sb3_compat.patch_env(env) is env
