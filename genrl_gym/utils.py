"""Small shared helpers: atomic writes, error classes, seeding."""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import stat
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

    A crash or exception mid-write leaves any previous ``path`` untouched; an exception removes the temporary file.
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
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _create_temp(path: Path) -> tuple[int, str]:
    """Create ``.<name>.<random>.tmp`` beside ``path`` exclusively -> ``(fd, temp path)``.

    Created with mode ``0o666`` so that the kernel applies the umask (and any default ACL) exactly as for a plain
    ``open()``; ``tempfile.mkstemp`` would force ``0o600``. When ``path`` exists its permission bits are copied, as an
    ``open(path, "w")`` that truncates it would keep them.
    """
    for _ in range(100):
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp")
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


def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:
        pass
