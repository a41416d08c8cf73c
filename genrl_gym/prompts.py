"""Prompt -> target latent trajectory (GenRL paper: task prompting).

* text: VLM text embedding -> aligner -> connector rollout (needs a VLM with language weights, or, for a model of the
  video-only VLM, the model's text grounding: :mod:`genrl_gym.vlm.grounding`, loaded with the model by
  :func:`genrl_gym.model_store.resolve_model`, maps a sentence embedding onto the VLM's video embeddings, which then
  skip the aligner as video embeddings do).
* video (a file path: mp4/gif/webm/..., or a uint8 array ``[T, H, W, 3]``): frames resized to the model's image size and,
  as the reference's video prompts, strided by ``k = max(T // 128, 1)``; the embedding is the mean over **every 8-frame
  window** of the strided clip (:func:`embed_video_prompt`; the reference embeds the first 8 frames, which for the
  video-only VLM describes one phase of a gait, not the behaviour). Video embeddings skip the aligner by default (it
  maps text towards video; ``align=True`` applies it, as the reference code does).
* image (a file path: png/jpg/jpeg/bmp/webp, or a uint8 array ``[H, W, 3]``, ``[H, W, 4]`` or grey ``[H, W]``): the
  frame repeated over one VLM window of 8 frames, then embedded as a video (a still pose; no aligner by default); the
  target's ``kind`` is ``"image"``. A 3-d array whose layout cannot be told apart (e.g. ``[3, 64, 64]``, channel-first,
  or ``[3, 8, 3]``) is a PromptError saying which layouts are read.
* the connector rolls ``horizon + 2`` steps on its modes (initial stoch sampled with a seeded generator) and the first
  state is dropped -> ``T = horizon + 1`` target states, matched against ``horizon + 1`` imagined states.

Targets are cached per (model, prompt, horizon, align, seed, VLM); :func:`clear_cache` empties the cache.
"""

from __future__ import annotations

import hashlib
import os
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageSequence
from torch import Tensor

from genrl_gym import model_store
from genrl_gym.models.mfwm import MFWM, identity_str, identity_dict
from genrl_gym.utils import PromptError, atomic_write
from genrl_gym.vlm import load_vlm
from genrl_gym.vlm.grounding import GroundedTextVLM

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_PROMPT_CHARS",
    "VIDEO_SUFFIXES",
    "VIDEO_PROMPT_RULE",
    "TargetTrajectory",
    "clear_cache",
    "decode_target",
    "embed_prompt",
    "embed_prompt_with",
    "embed_video_prompt",
    "example",
    "image_prompt_frames",
    "list_examples",
    "read_image",
    "read_video",
    "target_from_prompt",
    "video_prompt_frames",
    "write_video",
]

MAX_PROMPT_CHARS = 300  # CLIP-style text towers read <= 77 tokens; longer text is almost surely a mistake (or a path)
MIN_VIDEO_FRAMES = 8  # one VLM window
#: how a video prompt becomes one embedding (recorded with benchmark results; before session 21: the first window)
VIDEO_PROMPT_RULE = "mean over every 8-frame window"
VIDEO_SUFFIXES = (".mp4", ".gif", ".webm", ".avi", ".mov", ".mkv", ".m4v")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
_CHANNELS = (1, 3, 4)  # grey, RGB, RGBA

_CACHE: weakref.WeakKeyDictionary[MFWM, dict[tuple[Any, ...], TargetTrajectory]] = weakref.WeakKeyDictionary()


@dataclass
class TargetTrajectory:
    """A prompt's target in the world model's latent space (tensors on the model's device, no gradients).

    ``stoch [T, S*C]`` one-hot connector modes, ``features [T, F]`` reward features of ``stoch``, ``logits [T, S, C]``,
    ``embedding [D]`` the prompt's VLM embedding (before the aligner), ``prompt`` (text, file path or array description),
    ``kind`` ``"text"``, ``"video"`` or ``"image"``, ``aligned`` whether the aligner was applied. ``T = horizon + 1``.
    """

    stoch: Tensor
    features: Tensor
    embedding: Tensor
    prompt: str
    kind: str
    logits: Tensor | None = None
    aligned: bool = False

    def __len__(self) -> int:
        return int(self.stoch.shape[0])

    @property
    def horizon(self) -> int:
        """Imagination horizon this target was built for (``T - 1``)."""
        return len(self) - 1


# ----------------------------------------------------------------------------------------------------------------------
# video input


def read_video(path: str | os.PathLike[str]) -> np.ndarray:
    """All frames of a video/GIF file as uint8 ``[T, H, W, 3]`` (alpha dropped, grey expanded); PromptError if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise PromptError(f"video prompt {path}: no such file")
    try:
        frames = _read_gif(path) if path.suffix.lower() == ".gif" else np.asarray(iio.imread(path, index=None))
    except Exception as e:
        raise PromptError(f"video prompt {path}: cannot be read as a video ({type(e).__name__}: {e}); "
                          f"use an mp4/gif/webm file") from e
    return _as_rgb_frames(frames, str(path))


def _read_gif(path: Path) -> np.ndarray:
    """GIF frames with each repeated by its display time over the shortest one: GIF encoders (Pillow) merge identical
    consecutive frames into one longer frame, which would otherwise shorten still passages of a prompt."""
    with Image.open(path) as im:
        pairs = [(np.asarray(f.convert("RGB")), float(f.info.get("duration") or 0)) for f in ImageSequence.Iterator(im)]
    base = min((d for _, d in pairs if d > 0), default=0.0)
    reps = [max(1, round(d / base)) if base > 0 else 1 for _, d in pairs]
    return np.concatenate([np.repeat(f[None], r, 0) for (f, _), r in zip(pairs, reps)])


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """One image file (png/jpg/...) as uint8 ``[H, W, 3]`` (alpha dropped, grey expanded); PromptError if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise PromptError(f"image prompt {path}: no such file")
    try:
        image = np.asarray(iio.imread(path, plugin="pillow"))
    except Exception as e:
        raise PromptError(f"image prompt {path}: cannot be read as an image ({type(e).__name__}: {e}); use a png or jpg "
                          "file") from e
    if image.dtype == np.uint16:  # 16-bit PNG
        image = (image >> 8).astype(np.uint8)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in _CHANNELS:
        raise PromptError(f"image prompt {path}: expected one RGB image, got an array of shape {tuple(image.shape)} "
                          "(an animation? pass it as a .gif/.mp4 video prompt)")
    return _as_rgb_frames(image[None], str(path))[0]


def image_prompt_frames(image: np.ndarray, window: int = MIN_VIDEO_FRAMES) -> np.ndarray:
    """An image prompt as a still video: uint8 ``[H, W, 3]`` repeated -> ``[window, H, W, 3]`` (one VLM window)."""
    return np.repeat(np.asarray(image)[None], window, 0)


def _array_layout(x: np.ndarray) -> str:
    """``"video"`` or ``"image"`` for a uint8 prompt array, from its shape; PromptError when it cannot be told.

    4-d ``[T, H, W, C]``: video. 2-d ``[H, W]``: grey image. 3-d: ``[H, W, C]`` image when only the last axis is a
    channel count (1, 3 or 4), ``[T, H, W]`` grey video when no axis is; a channel count in the first axis (channel-first
    image or a 1-4 frame grey video) or in both end axes is ambiguous.
    """
    if x.ndim in (2, 4):
        return "image" if x.ndim == 2 else "video"
    if x.ndim != 3:
        raise PromptError(f"prompt array of shape {tuple(x.shape)}: expected a video uint8 [T, H, W, 3] or an image "
                          "uint8 [H, W, 3]")
    first, last = x.shape[0] in _CHANNELS, x.shape[-1] in _CHANNELS
    if last and not first:
        return "image"
    if not first and not last:
        return "video"  # [T, H, W] grey frames
    raise PromptError(f"prompt array of shape {tuple(x.shape)} is ambiguous: pass an image as uint8 [H, W, 3] "
                      "(channel-last; np.moveaxis(x, 0, -1) turns [3, H, W] into it) or a video as uint8 [T, H, W, 3] "
                      f"with T >= {MIN_VIDEO_FRAMES}")


def _as_rgb_frames(frames: np.ndarray, what: str) -> np.ndarray:
    if frames.dtype != np.uint8:
        raise PromptError(f"video prompt {what}: frames must be uint8 [T, H, W, 3], got dtype {frames.dtype}")
    if frames.ndim == 3:  # [T, H, W] grey
        frames = frames[..., None]
    if frames.ndim != 4 or frames.shape[-1] not in (1, 3, 4):
        raise PromptError(f"video prompt {what}: expected frames [T, H, W, 3], got shape {tuple(frames.shape)}")
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, -1)
    return np.ascontiguousarray(frames[..., :3])


def video_prompt_frames(frames: np.ndarray, image_size: int = 64) -> np.ndarray:
    """The frames a video prompt is embedded from: stride ``max(T // 128, 1)`` (at most 255 frames), resized
    (bilinear, antialiased) to ``image_size``. ``frames uint8 [T, H, W, 3]`` (``T >= 8``) -> ``uint8 [L, S, S, 3]``."""
    T = frames.shape[0]
    if T < MIN_VIDEO_FRAMES:
        raise PromptError(f"video prompt has {T} frames; at least {MIN_VIDEO_FRAMES} are needed (one VLM window); a "
                          "single image is an image prompt: pass it as uint8 [H, W, 3] or a .png/.jpg path")
    clip = frames[:: max(T // 128, 1)]
    x = torch.from_numpy(np.ascontiguousarray(clip)).permute(0, 3, 1, 2).float()
    if x.shape[-2:] != (image_size, image_size):
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def embed_video_prompt(vlm: Any, clip: np.ndarray) -> Tensor:
    """A video prompt's embedding: the mean of the unit embeddings of every 8-frame window of ``clip`` (uint8
    ``[L, S, S, 3]``, :func:`video_prompt_frames`), re-normalised -> float32 ``[D]``.

    Why every window and not the first: the video-only VLM's window embeddings follow the phase of a gait (two windows
    of one walking clip can be orthogonal), so one window describes a moment of the behaviour and the mean describes
    the behaviour (docs/models.md, "Video prompts"). Uses the VLM's ``embed_sliding`` (each frame through the VLM once)
    when it has one.
    """
    window = int(getattr(vlm, "window", MIN_VIDEO_FRAMES))
    if clip.shape[0] < window:
        raise PromptError(f"video prompt has {clip.shape[0]} frames after striding; the VLM needs {window}")
    if hasattr(vlm, "embed_sliding"):
        e = vlm.embed_sliding(clip)
    else:
        starts = range(clip.shape[0] - window + 1)
        e = vlm.embed_video(np.stack([clip[s:s + window] for s in starts]))
    e = F.normalize(torch.as_tensor(e, dtype=torch.float32).reshape(-1, torch.as_tensor(e).shape[-1]), dim=-1)
    return F.normalize(e.mean(0), dim=-1)


# ----------------------------------------------------------------------------------------------------------------------
# prompt -> embedding


def _classify(prompt: Any) -> tuple[str, Any, str, tuple[Any, ...]]:
    """-> (kind, payload, description, cache key) for a text, path or array prompt."""
    if isinstance(prompt, Tensor):
        prompt = prompt.detach().cpu().numpy()
    if isinstance(prompt, np.ndarray):
        if prompt.dtype != np.uint8:
            raise PromptError(f"prompt array: frames must be uint8 (a video [T, H, W, 3] or an image [H, W, 3]), got "
                              f"dtype {prompt.dtype}")
        if _array_layout(prompt) == "image":
            image = _as_rgb_frames((prompt[..., None] if prompt.ndim == 2 else prompt)[None], "array")[0]
            digest = hashlib.sha1(image.tobytes()).hexdigest()
            return "image", image, f"<image array {tuple(image.shape)}>", ("image", image.shape, digest)
        frames = _as_rgb_frames(prompt, "array")
        digest = hashlib.sha1(frames.tobytes()).hexdigest()
        return "video", frames, f"<video array {tuple(frames.shape)}>", ("array", frames.shape, digest)
    if isinstance(prompt, Path) or (isinstance(prompt, str) and
                                    prompt.strip().lower().endswith(VIDEO_SUFFIXES + IMAGE_SUFFIXES)):
        return _file_prompt(Path(prompt).expanduser())
    if not isinstance(prompt, str):
        raise PromptError("a prompt is text, a video (path or uint8 array [T, H, W, 3]) or an image (path or uint8 array "
                          f"[H, W, 3]); got {type(prompt).__name__}")
    text = " ".join(prompt.split())
    if not text:
        raise PromptError("empty text prompt: describe the behaviour, e.g. 'standing up straight'")
    if len(text) > MAX_PROMPT_CHARS:
        raise PromptError(f"text prompt of {len(text)} characters is longer than {MAX_PROMPT_CHARS}: VLM text towers read "
                          "a short sentence (CLIP: 77 tokens); shorten it")
    if os.path.isfile(text):
        return _file_prompt(Path(text))
    return "text", text, text, ("text", text)


def _file_prompt(path: Path) -> tuple[str, Any, str, tuple[Any, ...]]:
    """A video or image file (by suffix; anything else is read as a video) -> ``_classify``'s tuple."""
    kind = "image" if path.suffix.lower() in IMAGE_SUFFIXES else "video"
    if not path.is_file():
        raise PromptError(f"{kind} prompt {path}: no such file")
    st = path.stat()
    return kind, path, str(path), ("file", str(path.resolve()), st.st_size, st.st_mtime_ns)


def _resolve_vlm(model: MFWM, vlm: Any) -> Any:
    """The VLM to embed prompts with: ``vlm`` (checked against the model's) or the model's own, loaded by identity."""
    have = model._vlm
    if vlm is None:
        if have is None:
            raise PromptError("this model records no VLM identity: pass vlm=<the VLM its embeddings were made with>")
        try:
            vlm = load_vlm(dict(have))
        except Exception as e:
            raise PromptError(f"cannot load the model's VLM {identity_str(have)} ({type(e).__name__}: {e}); pass vlm= "
                              "explicitly") from e
    given = identity_dict(vlm)
    if have is not None and given != have:
        raise PromptError(f"the prompt VLM {identity_str(given)} is not the VLM this model was trained with "
                          f"({identity_str(have)}); embeddings of different VLMs are not interchangeable: use the "
                          "model's VLM (vlm=None loads it) or a model trained on yours")
    if int(getattr(vlm, "embed_dim", model.config.embed_dim)) != model.config.embed_dim:
        raise PromptError(f"VLM embeds in {vlm.embed_dim} dims but the model expects {model.config.embed_dim}")
    grounding = getattr(model, "text_grounding", None)
    if grounding is not None and not getattr(vlm, "has_language", False):
        vlm = GroundedTextVLM(vlm, grounding)  # text through the model's fitted map; video unchanged
    return vlm


def embed_prompt(model: MFWM, prompt: str | os.PathLike[str] | np.ndarray | Tensor, vlm: Any = None) -> tuple[Tensor, str]:
    """Embed a prompt with the model's VLM: -> (unit-norm embedding ``[D]`` on the model's device, kind)."""
    vlm = _resolve_vlm(model, vlm)
    e, kind = embed_prompt_with(vlm, prompt, image_size=model.config.image_size, domain=model.domain)
    if e.numel() != model.config.embed_dim:
        raise PromptError(f"VLM embeds in {e.numel()} dims but the model expects {model.config.embed_dim}")
    return e.to(model.device), kind


def embed_prompt_with(vlm: Any, prompt: str | os.PathLike[str] | np.ndarray | Tensor, *, image_size: int = 64,
                      domain: str = "walker") -> tuple[Tensor, str]:
    """Embed a prompt with any VLM (no world model): -> (unit-norm float32 CPU embedding ``[D]``, kind), kind
    ``"text"``, ``"video"`` or ``"image"``.

    Video prompts: the mean over every 8-frame window of :func:`video_prompt_frames` (strided, resized to ``image_size``
    pixels; :func:`embed_video_prompt`); image prompts: the image repeated over one window (:func:`image_prompt_frames`);
    text needs
    ``vlm.has_language``. ``domain`` only words the error for a text prompt to a video-only VLM.
    """
    kind, payload, _, _ = _classify(prompt)
    if kind == "text":
        if not getattr(vlm, "has_language", False):
            raise PromptError(f"text prompt {payload!r}: the VLM {identity_str(identity_dict(vlm))} has no "
                              "language weights (video only), so text cannot be embedded. Use a video prompt (e.g. "
                              f"genrl_gym.prompts.example({domain!r}, 'stand'); `genrl prompts` lists the shipped "
                              "clips), or build a text-capable model with real open_clip weights: `genrl pipeline "
                              f"--domain {domain} --vlm open_clip:ViT-B-32:/path/to/open_clip_weights.bin` (or a "
                              "pretrained tag present in the local hub cache).")
        e = vlm.embed_text([payload])
    elif kind == "image":
        image = read_image(payload) if isinstance(payload, Path) else payload
        e = vlm.embed_video(video_prompt_frames(image_prompt_frames(image), image_size)[None])
    else:
        frames = read_video(payload) if isinstance(payload, Path) else payload
        e = embed_video_prompt(vlm, video_prompt_frames(frames, image_size))
    e = torch.as_tensor(e, dtype=torch.float32).reshape(1, -1)[0]
    return F.normalize(e, dim=-1).cpu(), kind


# ----------------------------------------------------------------------------------------------------------------------
# target


@torch.no_grad()
def target_from_prompt(model: MFWM, prompt: str | os.PathLike[str] | np.ndarray | Tensor, vlm: Any = None,
                       horizon: int = 16, *, align: bool | None = None, seed: int = 0,
                       cache: bool = True) -> TargetTrajectory:
    """Prompt -> :class:`TargetTrajectory` of ``horizon + 1`` states.

    :param prompt: text; a video (file path, or uint8 frames ``[T, H, W, 3]``); or an image (png/jpg path, or uint8
        ``[H, W, 3]``), embedded as that frame repeated over one 8-frame VLM window (``kind="image"``).
    ``vlm``: the VLM to embed with; must be the model's (None loads the model's VLM by identity). ``align``: apply the
    aligner (default: text yes, video and image no; text of a video-only model's text grounding no, since the grounding
    already maps it onto video embeddings, see :mod:`genrl_gym.vlm.grounding`). ``seed`` seeds the connector's sampled
    initial stoch. Raises PromptError on an empty/over-long text, a text prompt with a video-only VLM and no text
    grounding (or one the grounding refuses), an unreadable or too short
    (< 8 frames) video, an unreadable image, an array whose layout is ambiguous (e.g. ``[3, H, W]``), or a VLM
    other than the model's.
    """
    if int(horizon) < 1:
        raise PromptError(f"horizon={horizon} must be >= 1")
    kind, _, description, key = _classify(prompt)
    grounding = getattr(model, "text_grounding", None) if kind == "text" else None
    if align is None:  # text: the aligner, unless a text grounding makes it (its embeddings already are video ones);
        # a grounding is only fitted for, and used with, a VLM without language (genrl_gym.training.grounding)
        align = kind == "text" and grounding is None
    full_key = (*key, int(horizon), align, int(seed), identity_str(model._vlm),
                grounding.fingerprint() if grounding is not None else None)
    store = _CACHE.setdefault(model, {})
    if cache and full_key in store:
        return store[full_key]
    e, kind = embed_prompt(model, prompt, vlm)
    g = torch.Generator(model.device).manual_seed(int(seed))
    states = model.connector_rollout(e[None, None].expand(1, horizon + 2, -1), sample=False, align=align, generator=g)
    stoch = states.stoch[0, 1:].detach()
    target = TargetTrajectory(stoch=stoch, features=model.reward_features(stoch).detach(), embedding=e,
                              prompt=description, kind=kind, logits=states.logits[0, 1:].detach(), aligned=align)
    if cache:
        store[full_key] = target
    return target


def clear_cache(model: MFWM | None = None) -> None:
    """Forget cached targets (of ``model``, or all)."""
    if model is None:
        _CACHE.clear()
    else:
        _CACHE.pop(model, None)


@torch.no_grad()
def decode_target(model: MFWM, target: TargetTrajectory) -> np.ndarray:
    """What the model thinks the prompt looks like: decoded target ``uint8 [T, 64, 64, 3]``."""
    frames = model.decode(target.stoch.to(model.device))
    return (frames * 255).round().to(torch.uint8).cpu().numpy()


def write_video(frames: np.ndarray | Tensor, path: str | os.PathLike[str], fps: int = 15) -> Path:
    """Write uint8 frames ``[T, H, W, 3]`` to ``.gif`` (imageio/Pillow; frame delay rounded to GIF's 10 ms unit, identical
    consecutive frames merged by Pillow and expanded again by :func:`read_video`) or ``.mp4``/``.webm``
    (imageio-ffmpeg), atomically."""
    path = Path(path)
    frames = frames.detach().cpu().numpy() if isinstance(frames, Tensor) else np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {tuple(frames.shape)}")
    suffix = path.suffix.lower()
    if suffix == ".gif":
        # GIF stores delays in 10 ms units: a whole number keeps merged identical frames an exact multiple (read_video)
        data = iio.imwrite("<bytes>", frames, extension=".gif", duration=max(20, 10 * round(100 / fps)), loop=0)
    elif suffix in (".mp4", ".webm"):
        data = iio.imwrite("<bytes>", frames, extension=suffix, fps=fps)
    else:
        raise ValueError(f"{path}: unsupported video format {suffix!r}; use .gif, .mp4 or .webm")
    with atomic_write(path, "wb") as f:
        f.write(data)
    return path


def list_examples(domain: str | None = None) -> dict[tuple[str, str], Path]:
    """Shipped prompt clips ``{(domain, task): path}`` found under ``genrl_gym/pretrained/<domain>/prompts/<task>.<ext>``
    (ext gif, mp4 or webm; the first in that order wins), of one ``domain`` or all."""
    found: dict[tuple[str, str], Path] = {}
    for suffix in (".gif", ".mp4", ".webm"):
        for path in sorted(model_store.PRETRAINED_DIR.glob(f"{domain or '*'}/prompts/*{suffix}")):
            found.setdefault((path.parent.parent.name, path.stem), path)
    return found


def example(domain: str, task: str) -> Path:
    """Path of the shipped in-domain prompt clip of ``domain``/``task`` (see :func:`list_examples`).

    Raises PromptError naming the clips that exist when there is none.
    """
    clips = list_examples(domain)
    if (domain, task) in clips:
        return clips[(domain, task)]
    have = sorted(f"{d}/{t}" for d, t in list_examples())
    raise PromptError(f"no shipped prompt clip for {domain}/{task}; available: {', '.join(have) or 'none'}; pass the path "
                      "of any video file of the behaviour instead")
