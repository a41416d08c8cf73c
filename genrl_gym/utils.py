"""Small shared helpers: atomic writes, error classes, seeding."""

from __future__ import annotations

import contextlib
import fnmatch
from glob import escape as glob_escape
import os
import random
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np


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

    A crash or exception mid-write leaves any previous ``path`` untouched and removes the temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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


def remove_stale_temp_files(path: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files (``.<name>.*.tmp`` beside ``path``) that :func:`atomic_write` leaves when its process
    is killed mid-write. Only call it while no other process writes ``path`` (e.g. at the start of a resumed run).

    :param path: the file that :func:`atomic_write` writes.
    :return: the files removed.
    """
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f".{glob_escape(path.name)}.*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
            removed.append(tmp)
    return removed


def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:
        pass
