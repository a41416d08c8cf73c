"""open_clip backend: any open_clip architecture as a (text-capable) VLM for 8-frame windows.

Spec: ``"open_clip:<arch>:<pretrained tag | local weights file>"``, e.g. ``"open_clip:ViT-B-32:laion2b_s34b_b79k"``
or ``"open_clip:ViT-B-32:/path/open_clip_pytorch_model.bin"`` (any file ``open_clip.create_model(arch,
pretrained=<file>)`` reads: ``.bin``/``.pt``/``.pth`` state dicts or ``.safetensors``). Weights trained with
QuickGELU (the OpenAI ones) need the ``-quickgelu`` architecture name when given as a file
(``ViT-B-32-quickgelu``); a tag sets it automatically.

Offline by default: a pretrained tag is resolved only from the local caches (the Hugging Face hub cache, and
open_clip's URL cache ``~/.cache/clip``); the model and tokenizer are built with the hub in offline mode, so nothing
is ever downloaded unless ``allow_download=True`` (then a missing tag is fetched into the hub cache).

Video windows: every frame goes through the model's own preprocessing (resize to the image tower's size with its
interpolation and resize mode, its mean/std; re-implemented on tensors so it runs batched on the model's device),
through the image tower, and the per-frame embeddings are **L2-normalised, averaged over the T frames and
L2-normalised again** (the mean-pooling baseline of CLIP-based video retrieval). This is an image-language model's
approximation of a video embedding: it sees poses, not the order of frames.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from genrl_gym.utils import VLMError, file_sha256
from genrl_gym.vlm.base import DEFAULT_WINDOW, VLMIdentity, as_video_batch

__all__ = ["OpenCLIPVLM", "resolve_pretrained", "file_fingerprint", "hub_cache_dir"]

BACKEND = "open_clip"
_WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".safetensors", ".npz", ".ckpt")


def _open_clip() -> Any:
    try:
        import open_clip
    except ImportError as e:  # pragma: no cover - open_clip is a test dependency
        raise VLMError("the open_clip backend needs the open_clip_torch package: pip install 'genrl-gym[clip]'") from e
    return open_clip


def hub_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The Hugging Face hub cache searched for pretrained tags (``HF_HUB_CACHE`` / ``HF_HOME``/hub by default)."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    try:
        from huggingface_hub import constants

        return Path(constants.HF_HUB_CACHE)
    except ImportError:  # pragma: no cover
        home = Path(os.environ.get("HF_HOME", "~/.cache/huggingface"))
        return Path(os.environ.get("HF_HUB_CACHE", home / "hub")).expanduser()


@contextlib.contextmanager
def _hub_offline(enabled: bool = True) -> Iterator[None]:
    """Put huggingface_hub in offline mode while building a model/tokenizer (no request can leave the machine)."""
    if not enabled:
        yield
        return
    old_env = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants: Any = None
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover
        pass
    old_const = getattr(constants, "HF_HUB_OFFLINE", None)
    if constants is not None:
        constants.HF_HUB_OFFLINE = True  # read at call time by huggingface_hub's HTTP layer
    try:
        yield
    finally:
        if constants is not None:
            constants.HF_HUB_OFFLINE = old_const
        if old_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old_env


_FINGERPRINTS: dict[tuple[str, int, int], str] = {}


def file_fingerprint(path: str | os.PathLike[str]) -> str:
    """``"sha256:<first 16 hex digits>"`` of a file's bytes (cached per path, size and mtime within the process)."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _FINGERPRINTS:
        _FINGERPRINTS[key] = "sha256:" + file_sha256(p)[:16]
    return _FINGERPRINTS[key]


def _looks_like_path(weights: str) -> bool:
    return (os.sep in weights or "/" in weights or weights.startswith((".", "~"))
            or weights.lower().endswith(_WEIGHT_SUFFIXES) or Path(weights).expanduser().exists())


def _how_to_provide(arch: str, tag: str, hub: Path) -> str:
    return (f"To use it: on a machine with internet run `python -c \"import open_clip; "
            f"open_clip.create_model('{arch}', pretrained='{tag}')\"` (or load_vlm(..., allow_download=True)) and copy "
            f"its hub cache ({hub}) to this machine (or point HF_HUB_CACHE at a copy), or download the weights file "
            f"and pass its path: 'open_clip:{arch}:/path/to/open_clip_pytorch_model.bin'.")


def resolve_pretrained(arch: str, tag: str, *, cache_dir: str | os.PathLike[str] | None = None,
                       allow_download: bool = False) -> tuple[Path, dict[str, Any]]:
    """Find the local weights file of an open_clip pretrained tag without touching the network.

    :param arch: open_clip architecture name (``"ViT-B-32"``).
    :param tag: pretrained tag (``"laion2b_s34b_b79k"``).
    :param cache_dir: hub cache to search (default: the Hugging Face hub cache).
    :param allow_download: if the file is not cached, download it (into the hub cache, or open_clip's URL cache).

    :return: (path of the weights file, the tag's open_clip config: hf_hub/url, mean, std, interpolation, quick_gelu, ...).

    :raises VLMError: unknown tag for ``arch`` (listing the known ones), or not cached (naming what was looked for,
        where, and how to provide it).
    """
    oc = _open_clip()
    cfg = oc.get_pretrained_cfg(arch, tag)
    if not cfg:
        tags = oc.list_pretrained_tags_by_model(arch)
        raise VLMError(f"{tag!r} is neither a weights file nor a pretrained tag of open_clip architecture {arch!r} "
                       f"(known tags: {', '.join(tags) if tags else 'none'}); pass an existing file path or one of the tags")
    hub = hub_cache_dir(cache_dir)
    looked: list[str] = []
    if cfg.get("file"):
        return Path(cfg["file"]), cfg
    if cfg.get("hf_hub"):
        from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME
        from huggingface_hub import try_to_load_from_cache

        # open_clip's convention: 'org/repo/filename' or 'org/repo/' (then its default file name)
        model_id, filename = os.path.split(cfg["hf_hub"])
        filename = filename or HF_WEIGHTS_NAME
        names = [HF_SAFE_WEIGHTS_NAME] if filename == HF_WEIGHTS_NAME else []
        if filename.endswith((".bin", ".pth")) and filename != HF_WEIGHTS_NAME:
            names.append(filename[:-4] + ".safetensors")
        names.append(filename)
        for name in names:
            found = try_to_load_from_cache(model_id, name, cache_dir=str(hub))
            if isinstance(found, str) and os.path.isfile(found):
                return Path(found), cfg
        looked.append(f"hub repo {model_id!r} file {filename!r} under {hub}/models--{model_id.replace('/', '--')}/snapshots/")
    if cfg.get("url"):
        url_cache = Path(cache_dir).expanduser() if cache_dir is not None else Path("~/.cache/clip").expanduser()
        target = url_cache / os.path.basename(cfg["url"])
        if target.is_file():
            return target, cfg
        looked.append(f"{target} (open_clip's URL cache)")
    if allow_download:
        try:
            path = oc.pretrained.download_pretrained(cfg, cache_dir=str(cache_dir) if cache_dir is not None else None)
        except Exception as e:  # network/HTTP errors of several libraries
            raise VLMError(f"could not download open_clip weights {arch}:{tag} ({type(e).__name__}: {e}). "
                           + _how_to_provide(arch, tag, hub)) from e
        if not path or not os.path.isfile(path):
            raise VLMError(f"downloading open_clip weights {arch}:{tag} gave no file. " + _how_to_provide(arch, tag, hub))
        return Path(path), cfg
    raise VLMError(f"open_clip weights for {arch}:{tag} are not in the local cache (looked for: {'; '.join(looked)}); "
                   "nothing is downloaded unless allow_download=True. " + _how_to_provide(arch, tag, hub))


class OpenCLIPVLM:
    """An open_clip model as a VLM: text tower for prompts, image tower mean-pooled over each window.

    :param arch: open_clip architecture (``open_clip.list_models()``), e.g. ``"ViT-B-32"``.
    :param weights: a pretrained tag present in the local cache, or a path to a weights file.
    :param device: torch device ("cpu", "cuda", ...). Outputs are float32 CPU tensors.
    :param batch_size: windows per image-tower call (each window is ``T`` images).
    :param text_batch_size: texts per text-tower call.
    :param precision: "auto" (bf16 autocast on CUDA if supported, else fp16 autocast; fp32 on CPU), "fp32", "bf16", "fp16".
    :param allow_download: fetch a missing pretrained tag (needs internet); default False: local cache only.
    :param cache_dir: hub cache to search/download into (default: the Hugging Face hub cache).
    :param preprocess: overrides of the image preprocessing (``mean``, ``std``, ``interpolation``, ``resize_mode``), e.g.
        for a local file whose training used other statistics than open_clip's default (OpenAI mean/std).

    :raises VLMError: unknown architecture, unknown/uncached tag, missing, unreadable or mismatched weights file.
    """

    window: int = DEFAULT_WINDOW
    has_language: bool = True

    def __init__(self, arch: str, weights: str, *, device: str | torch.device = "cpu", batch_size: int = 32,
                 text_batch_size: int = 256, precision: str = "auto", allow_download: bool = False,
                 cache_dir: str | os.PathLike[str] | None = None, preprocess: Mapping[str, Any] | None = None) -> None:
        oc = _open_clip()
        if arch not in oc.list_models():
            raise VLMError(f"unknown open_clip architecture {arch!r}; known: {', '.join(oc.list_models()[:40])}, ... "
                           "(open_clip.list_models()); register a custom one with open_clip.add_model_config(json)")
        if precision not in ("auto", "fp32", "bf16", "fp16"):  # checked before the (slow) load
            raise VLMError(f"precision must be 'auto', 'fp32', 'bf16' or 'fp16', got {precision!r}")
        if batch_size <= 0 or text_batch_size <= 0:
            raise VLMError(f"batch sizes must be positive, got {batch_size}, {text_batch_size}")
        self.device = torch.device(device)
        self.batch_size, self.text_batch_size = int(batch_size), int(text_batch_size)
        force_pp: dict[str, Any] = {}
        quick_gelu = False
        if weights.startswith("sha256:") and not Path(weights).expanduser().exists():
            raise VLMError(f"{weights!r} is the fingerprint of a local weights file recorded in an identity, not something "
                           f"that can be loaded: pass the file itself, 'open_clip:{arch}:/path/to/weights.bin' (its sha256 "
                           f"must start with {weights[7:]})")
        if _looks_like_path(weights):
            path = Path(weights).expanduser()
            if not path.is_file():
                raise VLMError(f"open_clip weights file {str(path)!r} not found (spec 'open_clip:{arch}:{weights}'); "
                               "pass an existing file, or a pretrained tag present in the hub cache "
                               f"({hub_cache_dir(cache_dir)}), e.g. open_clip:ViT-B-32:laion2b_s34b_b79k")
            try:
                weights_id = file_fingerprint(path)
            except OSError as e:
                raise VLMError(f"cannot read open_clip weights file {str(path)!r}: {e}") from e
        else:
            path, tag_cfg = resolve_pretrained(arch, weights, cache_dir=cache_dir, allow_download=allow_download)
            weights_id = weights.lower().replace("-", "_")  # open_clip's tag normalisation
            force_pp = {k: tag_cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in tag_cfg}
            quick_gelu = bool(tag_cfg.get("quick_gelu", False))
        force_pp.update(dict(preprocess or {}))
        try:
            with _hub_offline(not allow_download):
                model = oc.create_model(arch, pretrained=str(path), device=self.device, precision="fp32",
                                        force_quick_gelu=quick_gelu, force_preprocess_cfg=force_pp or None)
                tokenizer = oc.get_tokenizer(arch)
        except Exception as e:  # torch.load / safetensors / state-dict errors come as many types
            raise self._load_error(oc, arch, path, e) from e
        self._setup(model, tokenizer, arch, weights_id, precision)

    @classmethod
    def from_model(cls, model: torch.nn.Module, arch: str, weights: str, *, tokenizer: Any = None,
                   device: str | torch.device = "cpu", batch_size: int = 32, text_batch_size: int = 256,
                   precision: str = "auto") -> OpenCLIPVLM:
        """Wrap an already built open_clip model (e.g. ``open_clip.create_model(arch)`` from your own code).

        ``weights`` is the label recorded in the identity (a tag, ``file_fingerprint(path)``, or e.g. ``"random-init"``
        for speed measurements). ``tokenizer`` defaults to ``open_clip.get_tokenizer(arch)``.
        """
        oc = _open_clip()
        self = cls.__new__(cls)
        self.device = torch.device(device)
        self.batch_size, self.text_batch_size = int(batch_size), int(text_batch_size)
        if tokenizer is None:
            with _hub_offline():
                tokenizer = oc.get_tokenizer(arch)
        self._setup(model.to(self.device), tokenizer, arch, weights, precision)
        return self

    def _setup(self, model: torch.nn.Module, tokenizer: Any, arch: str, weights_id: str, precision: str) -> None:
        """Read the model's preprocessing config and embedding size; set identity and autocast."""
        if precision not in ("auto", "fp32", "bf16", "fp16"):
            raise VLMError(f"precision must be 'auto', 'fp32', 'bf16' or 'fp16', got {precision!r}")
        model.eval()
        self.model: Any = model  # an open_clip CLIP (encode_text / encode_image)
        self._tokenizer = tokenizer
        self.arch = arch
        pp = dict(getattr(model.visual, "preprocess_cfg", {}) or {})
        size = pp.get("size", getattr(model.visual, "image_size", 224))
        self.image_size: tuple[int, int] = (size, size) if isinstance(size, int) else tuple(size)
        self.interpolation = "bilinear" if pp.get("interpolation") == "bilinear" else "bicubic"
        self.resize_mode = pp.get("resize_mode", "shortest")
        self.fill = float(pp.get("fill_color", 0)) / 255.0
        self._mean = torch.tensor(pp.get("mean", (0.48145466, 0.4578275, 0.40821073)), device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(pp.get("std", (0.26862954, 0.26130258, 0.27577711)), device=self.device).view(1, 3, 1, 1)
        cfg = _open_clip().get_model_config(arch)
        if cfg is not None:
            dim = int(cfg["embed_dim"])
        else:  # a model built outside open_clip's registry: ask it (one tiny text forward)
            with torch.inference_mode():
                dim = int(self.model.encode_text(tokenizer(["a"]).to(self.device)).shape[-1])  # type: ignore[operator]
        self.identity = VLMIdentity(BACKEND, arch, weights_id, dim)
        self._autocast = self._pick_autocast(precision)

    @staticmethod
    def _load_error(oc: Any, arch: str, path: Path, err: Exception) -> VLMError:
        """Tell an unreadable file from a readable one that does not fit the architecture (only on the error path)."""
        first = (str(err).splitlines() or [""])[0][:200]
        try:
            oc.factory.load_state_dict(str(path))
        except Exception as e2:
            first2 = (str(e2).splitlines() or [""])[0][:120]
            return VLMError(f"cannot read open_clip weights file {str(path)!r}: truncated, corrupt or not a torch/safetensors "
                            f"checkpoint ({type(e2).__name__}: {first2}); re-download it or pass another file")
        return VLMError(f"open_clip weights file {str(path)!r} does not fit architecture {arch!r} ({type(err).__name__}: "
                        f"{first}); check the architecture name (e.g. a '-quickgelu' variant, or the one the file was "
                        "trained with) or the file")

    def _pick_autocast(self, precision: str) -> torch.dtype | None:
        if precision == "fp32" or (precision == "auto" and self.device.type != "cuda"):
            return None
        if precision == "auto":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if precision == "bf16" else torch.float16

    def _amp(self) -> contextlib.AbstractContextManager[Any]:
        if self._autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self._autocast)

    @property
    def embed_dim(self) -> int:
        """D, the joint embedding size of the architecture."""
        return self.identity.embed_dim

    def __repr__(self) -> str:
        return f"OpenCLIPVLM({self.identity}, device={self.device})"

    @torch.inference_mode()
    def embed_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Tokenise (the architecture's tokenizer) and embed N texts -> float32 ``[N, D]`` unit-norm (CPU)."""
        if isinstance(texts, str) or not isinstance(texts, Sequence) or not texts:
            raise VLMError(f"embed_text takes a non-empty list of strings, got {texts!r:.80}")
        if not all(isinstance(t, str) for t in texts):
            raise VLMError("embed_text takes a list of strings")
        out = []
        for i in range(0, len(texts), self.text_batch_size):
            tokens = self._tokenizer(list(texts[i:i + self.text_batch_size])).to(self.device)
            with self._amp():
                feats = self.model.encode_text(tokens)
            out.append(F.normalize(feats.float(), dim=-1).cpu())
        return torch.cat(out)

    @torch.inference_mode()
    def embed_video(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Embed windows ``uint8 [N, T, H, W, 3]`` -> float32 ``[N, D]`` unit-norm (CPU).

        Each frame: model preprocessing -> image tower -> L2-normalise; then mean over T and L2-normalise.
        """
        x = as_video_batch(frames)
        n, t = x.shape[:2]
        out = []
        for i in range(0, n, self.batch_size):
            chunk = x[i:i + self.batch_size]
            m = chunk.shape[0]
            images = self.preprocess(chunk.reshape(m * t, *chunk.shape[2:]))  # [m*T, 3, S, S]
            with self._amp():
                feats = self.model.encode_image(images)
            feats = F.normalize(feats.float(), dim=-1).view(m, t, -1).mean(dim=1)
            out.append(F.normalize(feats, dim=-1).cpu())
        return torch.cat(out)

    @torch.inference_mode()
    def embed_frames_each(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Per-frame embeddings of a clip ``uint8 [L, H, W, 3]`` -> float32 ``[L, D]`` unit-norm (CPU)."""
        if getattr(frames, "ndim", 0) != 4:
            raise VLMError(f"expected one clip uint8 [L, H, W, 3], got {getattr(frames, 'shape', type(frames))}")
        x = as_video_batch(frames[None], name="frames")[0]
        out = []
        step = self.batch_size * self.window  # as many images per call as embed_video uses
        for i in range(0, x.shape[0], step):
            with self._amp():
                feats = self.model.encode_image(self.preprocess(x[i:i + step]))
            out.append(F.normalize(feats.float(), dim=-1).cpu())
        return torch.cat(out)

    def embed_sliding(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Embed every stride-1 window of a clip ``uint8 [L, H, W, 3]`` -> ``[L - window + 1, D]``.

        Same result as ``embed_video`` on the windows (mean pooling is linear) with each frame through the image tower
        once instead of ``window`` times.
        """
        if getattr(frames, "ndim", 0) != 4:
            raise VLMError(f"embed_sliding takes one clip uint8 [L, H, W, 3], got {getattr(frames, 'shape', type(frames))}")
        if frames.shape[0] < self.window:
            raise VLMError(f"embed_sliding needs at least {self.window} frames, got {frames.shape[0]}")
        per_frame = self.embed_frames_each(frames).double()  # float64 running sums: no drift over long clips
        csum = torch.cat([torch.zeros(1, per_frame.shape[1], dtype=torch.float64), per_frame.cumsum(0)])
        means = (csum[self.window:] - csum[:-self.window]) / self.window
        return F.normalize(means, dim=-1).float()

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 ``[M, H, W, 3]`` -> float ``[M, 3, S, S]`` normalised model input on the model's device.

        Tensor version of open_clip's eval transform: resize (``shortest``: shortest side to S then centre crop;
        ``longest``: longest side to S then centre pad with the fill colour; ``squash``: straight to S x S) with
        the model's interpolation (antialiased, clamped to [0, 1]), then ``(x - mean) / std``.
        """
        x = frames.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
        h, w = x.shape[-2:]
        th, tw = self.image_size
        if (h, w) != (th, tw):
            if self.resize_mode == "squash":
                size = (th, tw)
            elif self.resize_mode == "longest":
                s = min(th / h, tw / w)
                size = (max(1, round(h * s)), max(1, round(w * s)))
            else:  # shortest
                s = max(th / h, tw / w)
                size = (max(th, round(h * s)), max(tw, round(w * s)))
            x = F.interpolate(x, size=size, mode=self.interpolation, antialias=True, align_corners=False).clamp_(0, 1)
            if self.resize_mode == "longest":
                ph, pw = th - x.shape[-2], tw - x.shape[-1]
                x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), value=self.fill)
            elif x.shape[-2:] != (th, tw):
                top, left = (x.shape[-2] - th) // 2, (x.shape[-1] - tw) // 2
                x = x[..., top:top + th, left:left + tw]
        return (x - self._mean) / self._std
