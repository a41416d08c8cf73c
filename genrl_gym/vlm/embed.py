"""The embedding pass: the VLM embedding of the 8-frame window ending at every frame of every stored episode.

Row ``t`` of ``root/embeddings/<episode stem>.npy`` (float32 ``[L, D]``) is the embedding of frames ``t-7 .. t``
(GenRL's data preparation). **Start-of-episode rule:** for ``t < 7`` the missing frames before row 0 are filled with
copies of frame 0 (``window[k] = frames[max(t - 7 + k, 0)]``), so every row holds a real embedding of a (partly
still) video. GenRL's reference left those rows as zero vectors, which the connector would then learn to map from;
a repeated first frame is what a video prompt of a still start looks like, so it is the better input.

The pass is resumable (episodes whose embedding file exists for the same VLM are skipped; an unreadable one is
embedded again), holds the store's ``"embeddings"`` writer lock (a second pass on the same store is refused), writes
every file atomically, and records the VLM identity in ``store.json["vlm"]`` (and the windowing rule in
``store.json["embedding_rule"]``). A store embedded by another VLM is refused (:class:`VLMError`) unless
``overwrite=True``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from genrl_gym.data.episodes import EMBEDDINGS_DIR
from genrl_gym.utils import DatasetError, VLMError
from genrl_gym.vlm import VLM, VLMIdentity, load_vlm
from genrl_gym.vlm.base import DEFAULT_WINDOW

if TYPE_CHECKING:
    from genrl_gym.data.episodes import EpisodeStore

__all__ = ["windows", "embed_frames", "embed_store", "embedding_rule", "PAD_RULE"]

log = logging.getLogger(__name__)

#: How rows t < window-1 are filled (recorded in store.json["embedding_rule"]).
PAD_RULE = "repeat_first"


def embedding_rule(window: int = DEFAULT_WINDOW) -> dict[str, Any]:
    """The windowing convention recorded beside the VLM identity: ``{"window", "pad", "row"}`` (JSON-able)."""
    return {"window": int(window), "pad": PAD_RULE, "row": f"embedding of frames t-{window - 1}..t"}


def windows(frames: np.ndarray | torch.Tensor, window: int = DEFAULT_WINDOW, *, pad: str = PAD_RULE
            ) -> np.ndarray | torch.Tensor:
    """All stride-1 windows of a clip: ``out[t] = frames[t-window+1 .. t]``.

    :param frames: ``[L, H, W, C]`` (numpy or torch; any dtype).
    :param window: frames per window.
    :param pad: ``"repeat_first"`` (default): the result has L rows and frames before row 0 are copies of frame 0,
        ``out[t, k] = frames[max(t - window + 1 + k, 0)]``; ``"none"``: only full windows, ``L - window + 1`` rows
        (``out[i] = frames[i .. i+window-1]``).

    :return: ``[L, window, H, W, C]`` (or ``[L-window+1, ...]`` for ``pad="none"``): a strided view, no per-window copy
        (with padding, of one ``[L+window-1, ...]`` padded copy of the clip). Numpy results are read-only views.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if frames.ndim < 1 or frames.shape[0] == 0:
        raise ValueError(f"frames must be a non-empty clip [L, ...], got shape {tuple(frames.shape)}")
    if pad == PAD_RULE:
        if window > 1:
            if isinstance(frames, torch.Tensor):
                frames = torch.cat([frames[:1].expand(window - 1, *frames.shape[1:]), frames])
            else:
                frames = np.concatenate([np.repeat(frames[:1], window - 1, axis=0), frames])
    elif pad == "none":
        if frames.shape[0] < window:
            raise ValueError(f"pad='none' needs at least window={window} frames, got {frames.shape[0]}")
    else:
        raise ValueError(f"pad must be {PAD_RULE!r} or 'none', got {pad!r}")
    if isinstance(frames, torch.Tensor):
        # unfold puts the window axis last: [N, H, W, C, window] -> [N, window, H, W, C] (still a view)
        return frames.unfold(0, window, 1).movedim(-1, 1)
    return np.moveaxis(np.lib.stride_tricks.sliding_window_view(frames, window, axis=0), -1, 1)


def embed_frames(frames: np.ndarray | torch.Tensor, vlm: VLM, *, batch_size: int = 64) -> np.ndarray:
    """Embed the window ending at every frame of one clip (start rule: repeat frame 0, see :func:`windows`).

    :param frames: ``uint8 [L, H, W, 3]``.
    :param vlm: the VLM; its ``window`` (default 8) sets the window length. A VLM with an ``embed_sliding(clip)``
        method (the video-only default) computes per-frame work once per frame instead of once per window.
    :param batch_size: windows per ``embed_video`` call.

    :return: float32 ``[L, D]``, unit-norm rows; row t embeds frames ``t-window+1 .. t``.
    """
    window = int(getattr(vlm, "window", DEFAULT_WINDOW))
    if isinstance(frames, torch.Tensor):
        frames = frames.cpu().numpy()
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise VLMError(f"frames must be uint8 [L, H, W, 3], got {frames.dtype} {tuple(frames.shape)}")
    length = frames.shape[0]
    sliding = getattr(vlm, "embed_sliding", None)
    if callable(sliding):
        padded = np.concatenate([np.repeat(frames[:1], window - 1, axis=0), frames]) if window > 1 else frames
        out = sliding(padded)
    else:
        wins = windows(frames, window)
        out = torch.cat([vlm.embed_video(wins[i:i + batch_size]) for i in range(0, length, batch_size)])
    emb = out.detach().to("cpu", torch.float32).numpy() if isinstance(out, torch.Tensor) else np.asarray(out, np.float32)
    if emb.shape != (length, vlm.embed_dim):
        raise VLMError(f"VLM {vlm.identity} returned embeddings of shape {emb.shape}, expected {(length, vlm.embed_dim)}")
    return np.ascontiguousarray(emb, dtype=np.float32)


def _recorded_identity(store: EpisodeStore, *, overwrite: bool) -> VLMIdentity | str | None:
    """The identity in store.json (None if none; with ``overwrite``, the string "unreadable" for a malformed entry)."""
    rec = store.metadata.get("vlm")
    if rec is None:
        return None
    try:
        return VLMIdentity.from_dict(rec)
    except VLMError as e:
        if overwrite:
            return "unreadable"
        raise VLMError(f"{store.root}/store.json: unreadable 'vlm' entry ({e}); pass overwrite=True to re-embed "
                       "the store") from e


def _existing_ok(store: EpisodeStore, path: Any, dim: int) -> bool:
    """Whether the episode's embedding file exists, is readable and has shape ``[L, dim]`` float32."""
    epath = store.embedding_path(path)
    if not epath.is_file():
        return False
    try:
        arr = np.load(epath, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError):
        return False
    return arr.dtype == np.float32 and arr.shape == (store.episode_length(path), dim)


def embed_store(store: EpisodeStore, vlm: VLM | str | Mapping[str, Any], *, batch_size: int = 64,
                progress: bool = True, overwrite: bool = False, device: str | torch.device = "cpu") -> int:
    """Embed every episode of a store (row t = embedding of frames t-7..t, see the module docstring).

    :param store: the :class:`~genrl_gym.data.EpisodeStore`.
    :param vlm: a VLM or a :func:`~genrl_gym.vlm.load_vlm` spec (built on ``device``).
    :param batch_size: windows per VLM call.
    :param progress: show a tqdm progress bar (episodes, with frames/s).
    :param overwrite: re-embed every episode. If the store was embedded by another VLM (or with another windowing
        rule), its old embedding files are deleted first, then the new identity is recorded.

    :return: The number of episodes embedded by this call (episodes already embedded with the same VLM are skipped, so a
        second call returns 0; an interrupted call resumes where it stopped).

    :raises VLMError: the store was embedded by a different VLM (or rule) and ``overwrite`` is False.
    :raises DatasetError: an episode file is truncated/corrupt (from the store).
    :raises StoreLockedError: another process is embedding the same store.
    """
    vlm = load_vlm(vlm, device=device)
    with store.writing("embeddings"):  # one embedding pass per store at a time
        return _embed_locked(store, vlm, batch_size=batch_size, progress=progress, overwrite=overwrite)


def _embed_locked(store: EpisodeStore, vlm: VLM, *, batch_size: int, progress: bool, overwrite: bool) -> int:
    """:func:`embed_store` once the store's ``"embeddings"`` writer lock is held."""
    identity = vlm.identity
    rule = embedding_rule(int(getattr(vlm, "window", DEFAULT_WINDOW)))
    recorded = _recorded_identity(store, overwrite=overwrite)
    recorded_rule = store.metadata.get("embedding_rule")
    emb_dir = store.root / EMBEDDINGS_DIR
    stale = sorted(emb_dir.glob("*.npy")) if emb_dir.is_dir() else []
    same = recorded is not None and recorded == identity and (recorded_rule in (None, rule))
    if not same:
        if stale and not overwrite:
            was = (f"by {recorded}" if recorded is not None and recorded != identity else
                   f"with windowing rule {recorded_rule}" if recorded is not None else "by an unrecorded VLM")
            raise VLMError(f"{store.root} was embedded {was}, not by {identity} (rule {rule}); embeddings of different "
                           "VLMs cannot be mixed. Pass overwrite=True (`genrl embed --overwrite`) to delete them and "
                           "re-embed every episode, or embed into another store.")
        for p in stale:  # delete before recording the new identity: a crash must not leave old files under it
            p.unlink(missing_ok=True)
    if recorded != identity or recorded_rule != rule:
        store.update_metadata(vlm=identity.to_dict(), embedding_rule=rule)

    paths = store.paths()
    todo = paths if overwrite else [p for p in paths if not _existing_ok(store, p, identity.embed_dim)]
    bar = None
    if progress:
        bar = tqdm(total=len(todo), desc=f"embed {identity.backend}:{identity.model}", unit="ep")
    done, frames_done, t0 = 0, 0, time.perf_counter()
    try:
        for path in todo:
            try:
                images = store.open(path)["image"]  # memory-mapped, CRC-checked
            except KeyError as e:
                raise DatasetError(f"{path}: episode has no 'image' key; cannot embed it.") from e
            emb = embed_frames(images, vlm, batch_size=batch_size)
            store.save_embedding(path, emb)
            done += 1
            frames_done += emb.shape[0]
            if bar is not None:
                bar.update(1)
                bar.set_postfix(frames_per_s=f"{frames_done / max(time.perf_counter() - t0, 1e-9):.0f}")
    finally:
        if bar is not None:
            bar.close()
    log.info("embedded %d of %d episodes of %s with %s", done, len(paths), store.root, identity)
    return done
