"""Picture helpers shared by the model report, the demo and the benchmarks: size-capped PNGs, matplotlib figures
without pyplot state, labelled frame grids and curve smoothing. Every file is written atomically
(:func:`genrl_gym.utils.atomic_write`).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw
from torch import Tensor

from genrl_gym.utils import atomic_write

__all__ = ["MAX_PNG_BYTES", "save_png", "figure_rgb", "figure_png", "new_figure", "save_figure", "label_panel",
           "image_grid", "smooth", "to_uint8"]

#: Size budget of a report PNG (bytes); larger images are palette-quantised, then downscaled.
MAX_PNG_BYTES = 300_000


def save_png(image: np.ndarray, path: str | os.PathLike[str], *, max_bytes: int = MAX_PNG_BYTES) -> int:
    """Write uint8 ``[H, W, 3]`` as an optimised PNG (atomic), palette-quantised and then halved until under ``max_bytes``.

    :return: bytes written.
    """
    img = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))

    def encode(im: Any) -> bytes:
        buf = io.BytesIO()
        im.save(buf, format="PNG", optimize=True)
        return buf.getvalue()

    data = encode(img)
    if len(data) > max_bytes:
        img = img.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        data = encode(img)
    while len(data) > max_bytes and min(img.size) > 32:
        img = img.resize((img.width // 2, img.height // 2), Image.Resampling.NEAREST)
        data = encode(img)
    with atomic_write(path, "wb") as f:
        f.write(data)
    return len(data)


def figure_rgb(fig: Any) -> np.ndarray:
    """Render a matplotlib Figure (Agg canvas, no pyplot state) -> uint8 ``[H, W, 3]``."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3]


def figure_png(fig: Any, path: str | os.PathLike[str], *, max_bytes: int = MAX_PNG_BYTES) -> int:
    """Render a matplotlib Figure and save it with :func:`save_png` (size-capped). Returns the bytes written."""
    return save_png(figure_rgb(fig), path, max_bytes=max_bytes)


def new_figure(figsize: tuple[float, float], dpi: float = 100) -> Any:
    """A matplotlib ``Figure`` of ``figsize`` inches, drawn without pyplot (no global backend or figure state)."""
    return Figure(figsize=figsize, dpi=dpi)


def save_figure(fig: Any, path: str | os.PathLike[str], *, dpi: float = 100) -> Path:
    """Write a Figure (from :func:`new_figure`) as a PNG at ``dpi``, atomically. Returns the path."""
    FigureCanvasAgg(fig)
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=dpi)
    return Path(path)


def label_panel(text: str, height: int, width: int = 150) -> np.ndarray:
    """White ``[height, width, 3]`` panel with ``text`` (newlines allowed) in black, for the left of an image row."""
    panel = Image.new("RGB", (width, height), (255, 255, 255))
    ImageDraw.Draw(panel).multiline_text((4, 4), text, fill=(0, 0, 0), spacing=2)
    return np.asarray(panel)


def image_grid(rows: list[tuple[str, np.ndarray]], gap: int = 2, group: int = 0) -> np.ndarray:
    """Stack labelled rows of frames. Each row: (label, uint8 ``[K, H, W, 3]``); rows padded to the longest.

    ``group`` > 0 adds a white band after every ``group`` rows (separates tasks).
    """
    k = max(f.shape[0] for _, f in rows)
    h, w = rows[0][1].shape[1:3]
    out = []
    for r, (text, frames) in enumerate(rows):
        pad = np.full((k - frames.shape[0], h, w, 3), 255, np.uint8)
        frames = np.concatenate([frames, pad]) if len(pad) else frames
        sep = np.full((h, gap, 3), 255, np.uint8)
        strip = np.concatenate([np.concatenate([f, sep], 1) for f in frames], 1)
        out.append(np.concatenate([label_panel(text, h), strip], 1))
        out.append(np.full((gap, out[-1].shape[1], 3), 255, np.uint8))
        if group and (r + 1) % group == 0 and r + 1 < len(rows):
            out.append(np.full((8, out[-1].shape[1], 3), 255, np.uint8))
    return np.concatenate(out, 0)


def smooth(values: np.ndarray) -> np.ndarray:
    """Centred moving average over ~2.5% of the points (no lag, unlike an EMA; edges average what exists)."""
    half = max(1, len(values) // 80)
    csum = np.concatenate([[0.0], np.cumsum(values)])
    idx = np.arange(len(values))
    lo, hi = np.maximum(idx - half, 0), np.minimum(idx + half + 1, len(values))
    return (csum[hi] - csum[lo]) / (hi - lo)


def to_uint8(frames: Tensor) -> np.ndarray:
    """Float frames in ``[0, 1]`` (a tensor, any shape) -> uint8 numpy (clamped, rounded)."""
    return (frames.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
