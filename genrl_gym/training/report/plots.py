"""The pictures of the model report: training curves and the discrimination heatmap (the frame grids are
:func:`genrl_gym.pictures.image_grid`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from genrl_gym.pictures import figure_png, smooth

__all__ = ["plot_curves", "plot_matrix"]

_CURVES = (  # (title, [(tag, label)], log-scale y)
    ("image loss (NLL per frame)", [("train/image_loss", "image")], True),
    ("KL (posterior || prior)", [("train/kl", "kl"), ("train/kl_dyn_loss", "dyn loss"), ("train/kl_rep_loss", "rep loss")],
     False),
    ("connector", [("train/connector_loss", "loss"), ("train/connector_kl", "kl")], True),
    ("aligner", [("train/aligner_cosine_distance", "cosine distance")], False),
)


def plot_curves(scalars: dict[str, tuple[np.ndarray, np.ndarray]], path: Path) -> int:
    """``curves.png``: the trainer's loss curves (faint: logged values; bold: :func:`~genrl_gym.pictures.smooth`).
    Returns the PNG's bytes."""
    fig = Figure(figsize=(10, 6), dpi=80)
    axes = fig.subplots(2, 2).ravel()
    for ax, (title, series, logy) in zip(axes, _CURVES):
        drawn = False
        for tag, label in series:
            if tag not in scalars or len(scalars[tag][0]) == 0:
                continue
            steps, values = scalars[tag]
            line = ax.plot(steps, values, alpha=0.3, lw=0.8)[0]
            ax.plot(steps, smooth(values), color=line.get_color(), lw=1.5, label=label)
            drawn = True
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("update", fontsize=8)
        ax.tick_params(labelsize=8)
        if drawn:
            vals = np.concatenate([scalars[t][1] for t, _ in series if t in scalars])
            if logy and np.all(vals > 0) and vals.max() > 20 * vals.min():  # log only where it spans decades
                ax.set_yscale("log")
            ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
        else:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    return figure_png(fig, path)


def plot_matrix(matrix: np.ndarray, tasks: list[str], path: Path, title: str) -> int:
    """``discrimination.png``: heatmap of the prompt discrimination matrix ``[n, n]``, diagonal outlined. Returns the
    PNG's bytes."""
    n = len(tasks)
    fig = Figure(figsize=(1.3 * n + 2.6, 1.1 * n + 1.6), dpi=90)
    ax = fig.subplots()
    im = ax.imshow(matrix, cmap="viridis")
    ax.set_xticks(range(n), [f"{t}\nepisodes" for t in tasks], fontsize=8)
    ax.set_yticks(range(n), [f"{t} clip" for t in tasks], fontsize=8)
    ax.set_xlabel("held-out episodes of task", fontsize=9)
    ax.set_ylabel("prompt (target of the task's clip)", fontsize=9)
    lo, hi = float(np.nanmin(matrix)), float(np.nanmax(matrix))
    for i in range(n):
        for j in range(n):
            best = j == int(np.argmax(matrix[i]))
            ax.text(j, i, f"{matrix[i, j]:.3f}" + ("*" if best else ""), ha="center", va="center", fontsize=9,
                    color="black" if matrix[i, j] > (lo + hi) / 2 else "white")
    ax.set_title(title + "\n(* = row maximum; the criterion wants it on the diagonal)", fontsize=9)
    for k in range(n):  # outline the diagonal
        ax.add_patch(Rectangle((k - 0.5, k - 0.5), 1, 1, fill=False, edgecolor="red", lw=2))
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return figure_png(fig, path)
