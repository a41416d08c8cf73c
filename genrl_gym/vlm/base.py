"""The VLM protocol every backend implements, and the identity recorded with every embedding.

A VLM here maps *whole video windows* ``uint8 [N, T, H, W, 3]`` and/or texts to unit-norm vectors ``[N, D]`` in one
shared space. The protocol says nothing about how a window is turned into a vector: an image-language model pools
per-frame embeddings (the open_clip backend does), a video-native model (ViCLIP, InternVideo2, as in GenRL) reads the
window as a clip. Backends are registered in :mod:`genrl_gym.vlm` (``register_backend``).

``VLMIdentity`` names the embedding space: datasets (``store.json["vlm"]``) and MFWM checkpoints record it, and two
identities that differ in any field mean two incompatible spaces, so consumers refuse the mismatch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from genrl_gym.utils import VLMError

__all__ = ["VLM", "VLMIdentity", "as_video_batch", "DEFAULT_WINDOW"]

#: Frames per embedding window (GenRL: the 8 frames ending at t).
DEFAULT_WINDOW = 8


@dataclasses.dataclass(frozen=True)
class VLMIdentity:
    """What produced an embedding: two embeddings are comparable only if their identities are equal.

    :ivar backend: registry name of the backend, e.g. ``"open_clip"`` or ``"video-only"``.
    :ivar model: architecture / model name inside the backend, e.g. ``"ViT-B-32"`` or ``"pixel-motion-rp-512"``.
    :ivar weights: which weights: a pretrained tag (``"laion2b_s34b_b79k"``), ``"sha256:<16 hex>"`` of a local weights file,
        or, for the parameter-free video-only backend, its seed and the fingerprint of its projection matrix.
    :ivar embed_dim: D, the embedding size.
    """

    backend: str
    model: str
    weights: str
    embed_dim: int

    def __post_init__(self) -> None:
        for name in ("backend", "model", "weights"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise VLMError(f"VLMIdentity.{name} must be a non-empty string, got {value!r}")
        if isinstance(self.embed_dim, bool) or not isinstance(self.embed_dim, (int, np.integer)) or self.embed_dim <= 0:
            raise VLMError(f"VLMIdentity.embed_dim must be a positive int, got {self.embed_dim!r}")
        object.__setattr__(self, "embed_dim", int(self.embed_dim))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict ``{"backend", "model", "weights", "embed_dim"}`` (what store.json and checkpoints record)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | VLMIdentity) -> VLMIdentity:
        """Inverse of :meth:`to_dict`. Unknown or missing keys raise :class:`VLMError` (a record we cannot fully
        interpret must not be taken as a match)."""
        if isinstance(d, VLMIdentity):
            return d
        if not isinstance(d, Mapping):
            raise VLMError(f"a VLM identity must be a dict with keys backend/model/weights/embed_dim, got {type(d).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        missing, unknown = fields - set(d), set(d) - fields
        if missing or unknown:
            raise VLMError(f"malformed VLM identity {dict(d)!r}: missing keys {sorted(missing)}, "
                           f"unknown keys {sorted(unknown)}; "
                           f"expected exactly {sorted(fields)}")
        return cls(**{k: d[k] for k in fields})

    def __str__(self) -> str:
        return f"{self.backend}:{self.model} (weights {self.weights}, D={self.embed_dim})"

    def check_same(self, other: VLMIdentity | Mapping[str, Any], *, what: str = "these embeddings") -> None:
        """Raise :class:`VLMError` unless ``other`` is the same identity (``what`` names the other side in the message)."""
        other = VLMIdentity.from_dict(other)
        if other != self:
            raise VLMError(f"VLM mismatch: {what} were made by {other}, but the VLM in use is {self}; "
                           "embeddings of different VLMs live in different spaces and cannot be mixed")


@runtime_checkable
class VLM(Protocol):
    """A vision(-language) model that embeds video windows (and texts, if ``has_language``) into one unit-norm space.

    Outputs are float32 CPU tensors with L2 norm 1 along the last axis. Implementations are deterministic: the same
    input gives the same output (eval mode, no sampling).
    """

    identity: VLMIdentity
    #: Frames per window the backend was designed for (the embedding pass uses windows of this many frames).
    window: int

    @property
    def embed_dim(self) -> int:
        """D, the embedding size (== ``identity.embed_dim``)."""
        ...

    @property
    def has_language(self) -> bool:
        """True if :meth:`embed_text` works (the model has language weights)."""
        ...

    def embed_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Embed N texts -> float32 ``[N, D]`` unit-norm (CPU). Raises :class:`VLMError` if ``not has_language``."""
        ...

    def embed_video(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Embed N video windows ``uint8 [N, T, H, W, 3]`` (RGB, any H/W) -> float32 ``[N, D]`` unit-norm (CPU)."""
        ...


def as_video_batch(frames: np.ndarray | torch.Tensor, *, name: str = "frames") -> torch.Tensor:
    """Validate a batch of windows and return it as a uint8 torch tensor ``[N, T, H, W, 3]`` (no copy if possible).

    Accepts numpy arrays (including non-contiguous views, e.g. from :func:`genrl_gym.vlm.embed.windows`) and tensors.
    Raises :class:`VLMError` naming the problem for a wrong rank, channel count, dtype or an empty batch.
    """
    if isinstance(frames, np.ndarray):
        if frames.dtype != np.uint8:
            raise VLMError(f"{name} must be uint8 RGB in [0, 255], got dtype {frames.dtype}")
        if frames.ndim == 5 and frames.shape[0] > 0:
            frames = torch.from_numpy(np.ascontiguousarray(frames))
    elif isinstance(frames, torch.Tensor):
        if frames.dtype != torch.uint8:
            raise VLMError(f"{name} must be uint8 RGB in [0, 255], got dtype {frames.dtype}")
    else:
        raise VLMError(f"{name} must be a numpy array or torch tensor of shape [N, T, H, W, 3], got {type(frames).__name__}")
    if frames.ndim != 5 or frames.shape[-1] != 3 or min(frames.shape) == 0:
        raise VLMError(f"{name} must have shape [N, T, H, W, 3] (N windows of T RGB frames), got {tuple(frames.shape)}")
    assert isinstance(frames, torch.Tensor)  # numpy batches were converted above or refused
    return frames
