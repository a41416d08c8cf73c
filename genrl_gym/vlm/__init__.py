"""Vision-language models that embed 8-frame video windows (and texts) into one unit-norm space.

Backends (``load_vlm`` specs):

- ``"video-only"`` (offline default): a deterministic pixel + motion random-projection embedder with NO language
  semantics (``has_language=False``). See :mod:`genrl_gym.vlm.video_only`.
- ``"open_clip:<arch>:<pretrained tag | local weights file>"``: any open_clip architecture, e.g.
  ``"open_clip:ViT-B-32:laion2b_s34b_b79k"`` (tag resolved from the local hub cache only) or
  ``"open_clip:ViT-B-32:/path/open_clip_pytorch_model.bin"``. Frames are embedded one by one and mean-pooled over the
  window. See :mod:`genrl_gym.vlm.open_clip_backend`.

More backends (e.g. a video-native ViCLIP/InternVideo2 from a local weights file) plug in with
:func:`register_backend`; the protocol hands them whole windows, so nothing assumes frame pooling.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import torch

from genrl_gym.utils import VLMError
from genrl_gym.vlm.base import DEFAULT_WINDOW, VLM, VLMIdentity, as_video_batch
from genrl_gym.vlm.open_clip_backend import OpenCLIPVLM
from genrl_gym.vlm.video_only import VideoOnlyVLM

__all__ = ["VLM", "VLMIdentity", "VLMError", "DEFAULT_WINDOW", "DEFAULT_VLM", "as_video_batch", "load_vlm",
           "register_backend", "backends"]

#: Spec of the offline default VLM.
DEFAULT_VLM = "video-only"

#: ``factory(model, weights, *, device, **options) -> VLM``; ``model``/``weights`` are None when the spec omits them.
BackendFactory = Callable[..., VLM]


@dataclasses.dataclass(frozen=True)
class _Backend:
    factory: BackendFactory
    forms: tuple[str, ...]  # spec forms shown in error messages
    summary: str


_BACKENDS: dict[str, _Backend] = {}


def register_backend(name: str, factory: BackendFactory, *, forms: tuple[str, ...] = (), summary: str = "",
                     replace: bool = False) -> None:
    """Register a VLM backend under ``name`` (the part of a spec before the first ``:``).

    ``factory(model: str | None, weights: str | None, *, device: str, **options) -> VLM`` builds it; import heavy
    dependencies inside the factory so that importing :mod:`genrl_gym.vlm` stays cheap. ``forms`` are example specs
    listed in error messages. Re-registering a name raises ValueError unless ``replace=True``.
    """
    if not name or ":" in name:
        raise ValueError(f"backend name must be non-empty and contain no ':', got {name!r}")
    if name in _BACKENDS and not replace:
        raise ValueError(f"VLM backend {name!r} is already registered (pass replace=True to override it)")
    _BACKENDS[name] = _Backend(factory, tuple(forms) or (f"{name}:<model>:<weights>",), summary)


def backends() -> dict[str, str]:
    """Registered backend names -> one-line summaries."""
    return {name: b.summary for name, b in _BACKENDS.items()}


def _valid_forms() -> str:
    lines = [f"  {form!r}" + (f"  ({b.summary})" if i == 0 and b.summary else "")
             for b in _BACKENDS.values() for i, form in enumerate(b.forms)]
    return ("valid VLM specs:\n" + "\n".join(lines) +
            "\n  a dict {'backend': NAME, 'model': ..., 'weights': ..., [other backend options]}, or a VLM instance")


def _video_only_factory(model: str | None, weights: str | None, *, device: str | torch.device = "cpu",
                        **options: Any) -> VLM:
    return VideoOnlyVLM.from_spec(model, weights, device=device, **options)


def _open_clip_factory(model: str | None, weights: str | None, *, device: str | torch.device = "cpu",
                       **options: Any) -> VLM:
    if not model or not weights:
        raise VLMError("an open_clip spec needs an architecture and weights: "
                       "'open_clip:<arch>:<pretrained tag or local file>', e.g. 'open_clip:ViT-B-32:laion2b_s34b_b79k' "
                       "or 'open_clip:ViT-B-32:/path/open_clip_pytorch_model.bin'\n"
                       + _valid_forms())
    return OpenCLIPVLM(model, weights, device=device, **options)


register_backend("video-only", _video_only_factory, forms=("video-only",),
                 summary="offline default: pixel+motion random projection, no language, D=512")
register_backend("open_clip", _open_clip_factory,
                 forms=("open_clip:<arch>:<pretrained tag in the local cache>", "open_clip:<arch>:/path/to/weights.bin",
                        "open_clip:ViT-B-32:laion2b_s34b_b79k"),
                 summary="any open_clip architecture; frames embedded by the image tower, mean-pooled over the window")


def _is_vlm(obj: object) -> bool:
    return all(hasattr(obj, a) for a in ("identity", "embed_video", "embed_text", "has_language", "embed_dim"))


def load_vlm(spec: str | Mapping[str, Any] | VLM | None = None, *, device: str | torch.device = "cpu") -> VLM:
    """Build a VLM from a spec.

    :param spec: ``"video-only"``, ``"open_clip:<arch>:<tag or path>"``, a dict ``{"backend": ..., "model": ...,
        "weights": ..., **options}`` (options go to the backend, e.g. ``allow_download=True`` or ``batch_size``;
        an ``embed_dim`` key is checked against the built model), an already built VLM (returned as is), or
        None for :data:`DEFAULT_VLM`.
    :param device: torch device the model runs on (outputs are always float32 CPU tensors).

    :raises VLMError: unknown backend or malformed spec (listing the valid forms), or the backend cannot load.
    """
    if spec is None:
        spec = DEFAULT_VLM
    if not isinstance(spec, (str, Mapping)):
        if _is_vlm(spec):
            return spec
        raise VLMError(f"cannot make a VLM from {type(spec).__name__}\n" + _valid_forms())
    expect_dim = None
    if isinstance(spec, str):
        parts = spec.strip().split(":", 2)  # weights (a path) may itself contain ':'
        name = parts[0]
        model = parts[1] if len(parts) > 1 and parts[1] else None
        weights = parts[2] if len(parts) > 2 and parts[2] else None
        options: dict[str, Any] = {}
    else:
        options = dict(spec)
        name = options.pop("backend", None)
        model = options.pop("model", None)
        weights = options.pop("weights", None)
        expect_dim = options.pop("embed_dim", None)
    if not isinstance(name, str) or name not in _BACKENDS:
        raise VLMError(f"unknown VLM spec {spec!r} (backend {name!r}; registered: {sorted(_BACKENDS)})\n" + _valid_forms())
    try:
        vlm = _BACKENDS[name].factory(model, weights, device=device, **options)
    except TypeError as e:  # unexpected option names (other TypeErrors are bugs: let them through)
        if "unexpected keyword argument" not in str(e):
            raise
        raise VLMError(f"bad options for VLM backend {name!r} in spec {spec!r}: {e}\n" + _valid_forms()) from e
    if expect_dim is not None and int(expect_dim) != vlm.embed_dim:
        raise VLMError(f"VLM {vlm.identity} has embed_dim {vlm.embed_dim}, but the spec asks for {expect_dim}")
    return vlm
