"""Everything genrl-gym knows about Stable-Baselines3 beyond its public API, in one place.

Two kinds of knowledge live here and nowhere else:

* SB3's private and protected names: the environment patcher ``_patch_env``, the attributes that
  ``BaseAlgorithm._setup_learn`` initialises (reproduced without its environment reset for
  :class:`~genrl_gym.agents.GenRLAgent`, which learns in imagination), the step counters of a saved model, and the
  protected ``BaseAlgorithm`` hooks ``GenRLAgent`` overrides or calls (:data:`BASE_ALGORITHM_HOOKS`).
* SB3's zip format: a model zip holds a JSON ``data`` entry whose non-JSON values (spaces, policy class, schedules)
  are cloudpickle blobs ``{":serialized:": ...}``, and whose spaces also keep their shape under ``"_shape"``.
  genrl-gym reads that entry as text and never unpickles a blob.

:data:`SB3_VERSION_RANGE` is the range these were checked against (the same as ``pyproject.toml``'s requirement);
``tests/test_sb3_compat.py`` checks that the installed SB3 lies inside it and that every name listed here still exists
with the expected parameters, so an SB3 upgrade that breaks one fails there, loudly, not deep inside training.

Imports only SB3 and the standard library, so both :mod:`genrl_gym.agents` and :mod:`genrl_gym.training` use it.
"""

from __future__ import annotations

import json
import os
import time
import zipfile
from collections import deque
from pathlib import Path
from typing import IO, Any

import stable_baselines3
from gymnasium import Env
from stable_baselines3.common import utils as sb3_utils
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.save_util import load_from_zip_file, recursive_setattr
from stable_baselines3.common.vec_env.patch_gym import _patch_env

__all__ = [
    "BASE_ALGORITHM_HOOKS",
    "DATA_ENTRY",
    "PRIVATE_FUNCTIONS",
    "SB3_VERSION_RANGE",
    "SETUP_LEARN_ATTRIBUTES",
    "load_zip",
    "patch_env",
    "pickled_keys",
    "read_data",
    "restore_counters",
    "restore_torch_variables",
    "setup_learn",
    "space_shape",
    "version_supported",
]

#: ``(lowest supported, first unsupported)`` SB3 release, as ``pyproject.toml``'s ``stable-baselines3>=2.5,<3``
SB3_VERSION_RANGE: tuple[tuple[int, ...], tuple[int, ...]] = ((2, 5), (3,))

#: the name of the JSON entry of an SB3 model zip that holds the algorithm's attributes
DATA_ENTRY = "data"
_SERIALIZED = ":serialized:"  # key of a cloudpickle blob inside DATA_ENTRY

#: private SB3 functions used here -> their expected parameter names
PRIVATE_FUNCTIONS: dict[str, tuple[str, ...]] = {
    "stable_baselines3.common.vec_env.patch_gym._patch_env": ("env",),
    "stable_baselines3.common.save_util.load_from_zip_file": ("load_path", "load_data", "custom_objects", "device",
                                                              "verbose", "print_system_info"),
    "stable_baselines3.common.save_util.recursive_setattr": ("obj", "attr", "val"),
    "stable_baselines3.common.utils.configure_logger": ("verbose", "tensorboard_log", "tb_log_name",
                                                        "reset_num_timesteps"),
}

#: protected ``BaseAlgorithm`` methods GenRLAgent overrides or calls -> their expected parameter names
BASE_ALGORITHM_HOOKS: dict[str, tuple[str, ...]] = {
    "_setup_learn": ("self", "total_timesteps", "callback", "reset_num_timesteps", "tb_log_name", "progress_bar"),
    "_init_callback": ("self", "callback", "progress_bar"),
    "_setup_model": ("self",),
    "_setup_lr_schedule": ("self",),
    "_wrap_env": ("env", "verbose", "monitor_wrapper"),
    "_excluded_save_params": ("self",),
    "_get_torch_save_params": ("self",),
    "_update_current_progress_remaining": ("self", "num_timesteps", "total_timesteps"),
    "_update_learning_rate": ("self", "optimizers"),
}

#: protected attributes of a ``BaseAlgorithm`` that :func:`setup_learn` and :func:`restore_counters` write, as SB3's
#: own ``_setup_learn`` / ``load`` do (checked on a live algorithm by the tests)
SETUP_LEARN_ATTRIBUTES: tuple[str, ...] = (
    "start_time", "ep_info_buffer", "ep_success_buffer", "_stats_window_size", "num_timesteps", "_episode_num",
    "_total_timesteps", "_num_timesteps_at_start", "_custom_logger", "_logger",
)


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split("+")[0].split("."):
        digits = "".join(ch for ch in piece if ch.isdigit()) if piece[:1].isdigit() else ""
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def version_supported(version: str | None = None) -> bool:
    """Whether SB3 ``version`` (default: the installed one) lies in :data:`SB3_VERSION_RANGE`.

    :param version: a version string such as ``"2.7.1"``.
    """
    v = _version_tuple(stable_baselines3.__version__ if version is None else version)
    low, high = SB3_VERSION_RANGE
    return low <= v < high


# ---------------------------------------------------------------------------------------------------- environments
def patch_env(env: Any) -> Env:
    """SB3's conversion of an old-Gym or Gymnasium env into a Gymnasium env (what ``BaseAlgorithm._wrap_env`` does
    first).

    :param env: the environment.
    :return: a Gymnasium env (``env`` itself when it already is one).
    """
    return _patch_env(env)


# ---------------------------------------------------------------------------------------------------- learning
def setup_learn(algo: BaseAlgorithm, total_timesteps: int, reset_num_timesteps: bool, tb_log_name: str) -> int:
    """``BaseAlgorithm._setup_learn`` without the environment reset and without the callback: the timers, episode
    buffers, step counters and logger an SB3 ``learn`` loop expects.

    :param algo: the algorithm about to learn.
    :param total_timesteps: timesteps of this call.
    :param reset_num_timesteps: restart the timestep counter (else count on from it).
    :param tb_log_name: TensorBoard run name.
    :return: the timestep count at which the call ends (``total_timesteps``, plus the current count if not reset).
    """
    algo.start_time = time.time_ns()
    if algo.ep_info_buffer is None or reset_num_timesteps:
        algo.ep_info_buffer = deque(maxlen=algo._stats_window_size)
        algo.ep_success_buffer = deque(maxlen=algo._stats_window_size)
    if reset_num_timesteps:
        algo.num_timesteps = 0
        algo._episode_num = 0
    else:
        total_timesteps += algo.num_timesteps
    algo._total_timesteps = total_timesteps
    algo._num_timesteps_at_start = algo.num_timesteps
    if not algo._custom_logger:
        algo._logger = sb3_utils.configure_logger(algo.verbose, algo.tensorboard_log, tb_log_name, reset_num_timesteps)
    return total_timesteps


def restore_counters(algo: BaseAlgorithm, data: dict[str, Any]) -> None:
    """Set the step counters of a saved model's ``data`` entry (:func:`read_data`) on a freshly built ``algo``.

    :param algo: an algorithm of the saved model's class and settings.
    :param data: the plain JSON fields of its zip's ``data`` entry.
    """
    algo.num_timesteps = int(data.get("num_timesteps", 0))
    algo._n_updates = int(data.get("_n_updates", 0))
    algo._episode_num = int(data.get("_episode_num", 0))


def restore_torch_variables(algo: BaseAlgorithm, variables: dict[str, Any]) -> None:
    """Copy the torch variables of a saved model (:func:`load_zip`'s third item, e.g. SAC's ``log_ent_coef``) into
    ``algo`` in place, as SB3's ``load`` does.

    :param algo: an algorithm of the saved model's class and settings.
    :param variables: name (dotted attribute path) -> tensor; ``None`` values are skipped.
    """
    for name, value in variables.items():
        if value is not None:
            recursive_setattr(algo, f"{name}.data", value.data)


# ---------------------------------------------------------------------------------------------------- zip format
def read_data(source: str | os.PathLike[str] | IO[bytes] | zipfile.ZipFile) -> dict[str, Any]:
    """The ``data`` entry of an SB3 model zip as plain JSON: cloudpickle blobs stay ``{":serialized:": text}``.

    :param source: the zip's path, an open binary file, or an open :class:`zipfile.ZipFile`.
    :return: attribute name -> JSON value.
    :raises KeyError: the zip has no ``data`` entry.
    :raises zipfile.BadZipFile: not a zip file. :raises ValueError: the entry is not JSON.
    :raises OSError: the file cannot be read.
    """
    if isinstance(source, zipfile.ZipFile):
        return dict(json.loads(source.read(DATA_ENTRY).decode()))
    with zipfile.ZipFile(source) as archive:
        return dict(json.loads(archive.read(DATA_ENTRY).decode()))


def pickled_keys(data: dict[str, Any]) -> list[str]:
    """Keys of a ``data`` entry (:func:`read_data`) stored as cloudpickle blobs, which must never be unpickled here.

    :param data: the plain JSON fields of a model zip's ``data`` entry.
    """
    return [k for k, v in data.items() if isinstance(v, dict) and _SERIALIZED in v]


def space_shape(data: dict[str, Any], key: str) -> tuple[int, ...]:
    """The shape of the space stored under ``key`` (``"observation_space"``, ``"action_space"``) of a ``data`` entry,
    read from SB3's JSON copy of the space's attributes, without unpickling the space.

    :raises KeyError: / :raises TypeError: no such space, or no recorded shape.
    """
    return tuple(int(n) for n in data[key]["_shape"])


def load_zip(path: str | os.PathLike[str], *, device: Any = "auto", custom_objects: dict[str, Any] | None = None,
             print_system_info: bool = False,
             load_data: bool = True) -> tuple[dict[str, Any] | None, dict[str, Any], dict[str, Any]]:
    """SB3's reader of a model zip: ``(data, state dicts, torch variables)``, tensors read with ``weights_only``.

    ``data`` values listed in ``custom_objects`` are taken from there instead of being unpickled: pass every key of
    :func:`pickled_keys` (e.g. mapped to ``None``) so that nothing is unpickled.

    :param path: the zip file.
    :param device: where tensors go.
    :param custom_objects: attribute name -> value used instead of the stored one.
    :param print_system_info: print the system info recorded at save time next to the current one.
    :param load_data: also parse the ``data`` entry (``None`` in the result otherwise).
    """
    data, params, variables = load_from_zip_file(Path(path), load_data=load_data, custom_objects=custom_objects,
                                                       device=device, print_system_info=print_system_info)
    return data, params or {}, variables or {}
