"""Small shared helpers: atomic writes, error classes, seeding."""

from __future__ import annotations

import contextlib
import os
import random
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
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def set_seed(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:
        pass
