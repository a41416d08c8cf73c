"""Small shared helpers: atomic writes, error classes, seeding."""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import os
import random
import secrets
import signal
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

#: Environment variable naming the local store root (models, encoders, caches).
GENRL_HOME_ENV = "GENRL_HOME"
#: Store root used when ``$GENRL_HOME`` is unset.
DEFAULT_GENRL_HOME = Path("~/.cache/genrl_gym")


def env_id(domain: str) -> str:
    """The Gymnasium id of ``domain``'s GenRL env (:mod:`genrl_gym.registration`): ``"walker"`` -> ``"GenRL/Walker-v0"``
    (``"kitchen"`` -> ``"GenRL/Kitchen-v0"``). The name is not checked (registration lists the ids it registers).

    It lives in the base layer so that the registration, which ``import genrl_gym`` runs, can name the ids without
    importing the env stack (dm_control, mujoco).
    """
    return f"GenRL/{domain.capitalize()}-v0"


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def genrl_home() -> Path:
    """The local store root: ``$GENRL_HOME`` if set (read on every call), else ``~/.cache/genrl_gym``, user-expanded."""
    return Path(os.environ.get(GENRL_HOME_ENV) or DEFAULT_GENRL_HOME).expanduser()


class GenRLError(Exception):
    """Base class of every error genrl-gym raises on bad input."""


class CheckpointError(GenRLError):
    """A checkpoint is missing, truncated, corrupt, or was built for another VLM/domain."""


class DatasetError(GenRLError):
    """An episode store or one of its files is missing, truncated or inconsistent."""


class PromptError(GenRLError, ValueError):
    """A prompt is empty, too long, unreadable, too short (video) or needs a VLM that is not there."""


class VLMError(GenRLError):
    """A vision-language model cannot be loaded or cannot do what was asked (e.g. text without language weights)."""


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on success fsync it and rename it over ``path``.

    A crash or exception mid-write leaves any previous ``path`` untouched; an exception removes the temporary file.
    A process killed mid-write cannot remove its own temporary file (``.<name>.<pid>-<random>.tmp``, hidden); the next
    successful write of ``path`` removes such stale siblings (:func:`remove_stale_temp_files`).
    The file gets the permissions a plain ``open(path, "w")`` would give it: those of the file it replaces, else
    ``0o666`` less the process umask (e.g. ``0o644`` with the usual umask ``0o022``), so group members can read
    reports when the umask lets them.

    :param path: the file to (over)write.
    :param mode: a write mode of :func:`open` (``"wb"``, ``"w"``, ``"w+b"``...).
    :return: a context manager yielding the open temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            if FAULT_ENV in os.environ:
                _fault_point(path, f)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        remove_stale_temp_files(path)


#: A temporary file whose name records no writer pid (written by older versions) counts as stale after this long.
STALE_TEMP_SECONDS = 3600.0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temp_files(path: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files that writers of ``path`` killed mid-write left beside it; return what was removed.

    A temporary file of :func:`atomic_write` is named ``.<name>.<pid>-<random>.tmp``: it is stale when that process no
    longer runs on this machine (a live writer's file is never touched). Names without a pid (older versions'
    ``mkstemp`` names) are stale after :data:`STALE_TEMP_SECONDS`. Writers on other machines sharing the folder are
    not supported.
    """
    path = Path(path)
    prefix, removed = f".{path.name}.", []
    for entry in os.scandir(path.parent):
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        token = name[len(prefix):-len(".tmp")]
        pid_text = token.split("-", 1)[0] if "-" in token else ""
        if pid_text.isdigit():
            stale = int(pid_text) != os.getpid() and not _pid_alive(int(pid_text))
        else:
            stale = time.time() - entry.stat().st_mtime > STALE_TEMP_SECONDS
        if stale:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def _create_temp(path: Path) -> tuple[int, str]:
    """Create ``.<name>.<pid>-<random>.tmp`` beside ``path`` exclusively -> ``(fd, temp path)``.

    Created with mode ``0o666`` so that the kernel applies the umask (and any default ACL) exactly as for a plain
    ``open()``; ``tempfile.mkstemp`` would force ``0o600``. When ``path`` exists its permission bits are copied, as an
    ``open(path, "w")`` that truncates it would keep them.
    """
    for _ in range(100):
        tmp = str(path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        except FileExistsError:
            continue
        try:
            with contextlib.suppress(FileNotFoundError):
                os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        return fd, tmp
    raise FileExistsError(f"could not create a temporary file beside {path}")


#: Environment variable of the opt-in fault hook of :func:`atomic_write` (see :func:`_fault_point`).
FAULT_ENV = "GENRL_FAULT_INJECT"
_fault_writes = 0


def _fault_point(path: Path, f: IO[Any]) -> None:
    """Test hook: ``GENRL_FAULT_INJECT=<glob>[:<n>]`` SIGKILLs this process inside the ``n``-th (default 1st)
    :func:`atomic_write` whose target file name matches ``<glob>`` (e.g. ``checkpoint.pt:2``, ``ep-*.npz``, ``*.zip``).

    The kill comes after the temporary file was written and then cut to half its size, before fsync and rename: what
    a ``kill -9`` or power cut in the middle of the write leaves behind. Used by ``benchmarks/bench_faults.py`` and
    ``tests/test_faults.py``; :func:`atomic_write` only calls it when the variable is set.

    :param path: the target of the write.
    :param f: the open temporary file (flushed).
    """
    global _fault_writes
    spec = os.environ.get(FAULT_ENV, "")
    pattern, _, nth = spec.rpartition(":") if spec.rpartition(":")[2].isdigit() else (spec, "", "1")
    if not pattern or not fnmatch.fnmatch(path.name, pattern):
        return
    _fault_writes += 1
    if _fault_writes == int(nth):
        size = os.fstat(f.fileno()).st_size
        os.ftruncate(f.fileno(), size // 2)
        os.kill(os.getpid(), signal.SIGKILL)


def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        torch.manual_seed(seed)
    except ImportError:
        pass
