"""Quality report of a multimodal-foundation world model (``genrl report``): Markdown + small PNGs + JSON.

``model_report(run_or_model, heldout, out_dir)`` writes into ``out_dir``:

``curves.png``           training curves from the trainer's TensorBoard logs (image loss, KL, connector, aligner);
``reconstructions.png``  held-out frames (row "real") over the decoded posterior modes (row "recon"), a few time steps per
                         task;
``prompts.png``          per prompt clip: the clip's frames, their reconstruction, and the decoded target trajectory of the
                         clip ("what the model thinks the prompt looks like");
``discrimination.png``   heatmap of the prompt discrimination matrix;
``REPORT.md``            all of it with tables and the checks; ``report.json`` the numbers.

Prompt discrimination matrix
----------------------------
``M[a, b]`` = mean GenRL reward per step of the target of task ``a``'s prompt clip on the held-out episodes of task ``b``,
computed exactly as the ``GenRL/<Domain>-v0`` envs compute it (:class:`genrl_gym.wrappers.LatentRewardScorer`, the
default ``max_cosine`` score with sequence alignment): posterior modes of every frame, reward features, and for every
agent step ``t >= 1`` the score of frame ``t`` after aligning the window of frames ``max(0, t - 16) .. t`` against the
17-step target (:func:`env_rewards`; a test checks it against the scorer). Row 0 (the reset frame) earns no reward and
is left out. The issue's criterion: every diagonal entry exceeds the other entries of its row (target ``a`` rewards
``a``'s episodes more than any other task's episodes).

The clips are cut from held-out episodes, so the episode a clip comes from is also one of the evaluation episodes of its
task. For that (target, episode) pair the rows whose 17-frame reward window overlaps the clip's frames are excluded
(``exclude_clip_window=True``, the default); the matrix with those rows included is reported beside it.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from genrl_gym.utils import atomic_write

if TYPE_CHECKING:
    from genrl_gym.data import EpisodeStore
    from genrl_gym.models import MFWM

__all__ = ["model_report", "read_scalars", "posterior_modes", "env_rewards", "discrimination_matrix", "save_png",
           "MAX_PNG_BYTES", "HISTORY"]

log = logging.getLogger(__name__)

#: Size budget of each report PNG (bytes); larger images are palette-quantised, then downscaled.
MAX_PNG_BYTES = 300_000
#: Frames of the episode the envs align against the target (H + 1 with H = 16).
HISTORY = 17
_ALIGN_WINDOW = 8
_CURVES = (  # (title, [(tag, label)], log-scale y)
    ("image loss (NLL per frame)", [("train/image_loss", "image")], True),
    ("KL (posterior || prior)", [("train/kl", "kl"), ("train/kl_dyn_loss", "dyn loss"), ("train/kl_rep_loss", "rep loss")],
     False),
    ("connector", [("train/connector_loss", "loss"), ("train/connector_kl", "kl")], True),
    ("aligner", [("train/aligner_cosine_distance", "cosine distance")], False),
)


# ----------------------------------------------------------------------------------------------------------------------
# numbers


def read_scalars(tb_dir: str | os.PathLike[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """All scalar series of a TensorBoard log folder: ``{tag: (steps int64 [N], values float64 [N])}`` sorted by step.

    Several event files (a resumed run) are merged; for a step logged twice the last value wins.
    :raises FileNotFoundError: no such folder or no event file in it.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = Path(tb_dir)
    if not tb.is_dir() or not any(tb.glob("events.out.tfevents.*")):
        raise FileNotFoundError(f"{tb}: no TensorBoard event files (the trainer writes them to <run>/mfwm/tb)")
    acc = EventAccumulator(str(tb), size_guidance={"scalars": 0})
    acc.Reload()
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for tag in acc.Tags().get("scalars", []):
        by_step = {int(e.step): float(e.value) for e in acc.Scalars(tag)}
        steps = np.array(sorted(by_step), dtype=np.int64)
        out[tag] = (steps, np.array([by_step[s] for s in steps], dtype=np.float64))
    return out


@torch.no_grad()
def posterior_modes(model: MFWM, images: np.ndarray, *, batch: int = 256) -> tuple[Tensor, Tensor]:
    """Posterior modes of frames and their reward features, as the envs' reward computes them.

    GenRL's posterior reads the current frame only, so each frame's mode is ``to_stoch(post_logits(encode(frame)))``
    (bit-identical to ``MFWM.obs_step(..., sample=False)``'s stoch; see :mod:`genrl_gym.wrappers.gym_reward`).

    :param images: uint8 frames ``[L, H, W, 3]``.
    :return: ``(stoch [L, S*C], features [L, F])`` float32 on CPU.
    """
    wm = model.world_model
    dev = model.device
    stochs, feats = [], []
    for i in range(0, len(images), batch):
        frames = torch.as_tensor(np.ascontiguousarray(images[i:i + batch]), device=dev)
        stoch = wm.rssm.to_stoch(wm.rssm.post_logits(wm.encode(frames)), False)
        stochs.append(stoch.float().cpu())
        feats.append(model.reward_features(stoch).float().cpu())
    return torch.cat(stochs), torch.cat(feats)


@torch.no_grad()
def env_rewards(features: Tensor, target: Tensor, *, history: int = HISTORY, score_kind: str = "max_cosine",
                align: str = "sequence") -> np.ndarray:
    """GenRL reward of every step of one episode, as ``GenRLReward`` returns it step by step.

    Row ``t``'s reward is the score of frame ``t`` after aligning frames ``max(0, t - history + 1) .. t`` against the
    target (:func:`genrl_gym.reward.trajectory_match`, window 8); row 0 (the reset frame) gets 0.

    :param features: reward features of the episode's frames ``[L, F]``.
    :param target: target reward features ``[Tt, F]``.
    :return: float64 ``[L]``.
    """
    from genrl_gym.reward import trajectory_match

    feats = features.float()
    target = target.float().to(feats.device)
    length = feats.shape[0]
    out = np.zeros(length, dtype=np.float64)
    kw: dict[str, Any] = {"score_kind": score_kind, "align": align, "window": _ALIGN_WINDOW}
    for t in range(1, min(history - 1, length)):  # growing windows: one call each (the envs' first steps)
        out[t] = float(trajectory_match(feats[:t + 1, None], target, **kw)[-1, 0])
    if length >= history:  # full windows: all at once, one batch column per step
        windows = feats.unfold(0, history, 1).permute(2, 0, 1)  # [history, L - history + 1, F]
        out[history - 1:] = trajectory_match(windows, target, **kw)[-1].double().cpu().numpy()
    return out


def random_episode_frames(model: MFWM, task: str, episodes: int, *, episode_frames: int = 1000,
                          first_seed: int = 10_000) -> list[np.ndarray]:
    """Frames ``uint8 [T, S, S, 3]`` of ``episodes`` episodes of uniform random actions, rendered with the model's
    settings (the task only picks the env; its reward is not used)."""
    from genrl_gym.envs import make_pixel_env, render_env_kwargs

    settings = render_env_kwargs(model.render_settings)
    out = []
    for i in range(episodes):
        env = make_pixel_env(model.domain, task, episode_frames=episode_frames, seed=first_seed + i, **settings)
        rng = np.random.default_rng(first_seed + i)
        obs, _ = env.reset(seed=first_seed + i)
        frames, done = [obs["image"]], False
        while not done:
            obs, _, terminated, truncated, _ = env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
            frames.append(obs["image"])
            done = terminated or truncated
        env.close()
        out.append(np.stack(frames))
    return out


def _clip_rows(length: int, start: int, frames: int, history: int) -> np.ndarray:
    """bool ``[length]``: rows whose reward window (``t - history + 1 .. t``) overlaps the clip's rows
    ``start .. start + frames - 1``."""
    t = np.arange(length)
    return (t >= start) & (t - history + 1 <= start + frames - 1)


def discrimination_matrix(model: MFWM, store: EpisodeStore, tasks: list[str], clips: dict[str, Path],
                          clip_info: dict[str, dict[str, Any]] | None = None, *, seed: int = 0,
                          score_kind: str = "max_cosine", history: int = HISTORY,
                          exclude_clip_window: bool = True,
                          random_images: list[np.ndarray] | None = None, align: str | None = None) -> dict[str, Any]:
    """Mean GenRL reward of each task's prompt-clip target on each task's held-out episodes.

    :param store: held-out episode store; each episode's info carries its ``"task"``.
    :param tasks: task order of rows (targets) and columns (episodes).
    :param clips: ``{task: clip file}`` for every task in ``tasks``.
    :param clip_info: ``{task: {"episode": file name, "start": row, "frames": n}}`` (clips.json) to exclude each clip's
        own window from its episode; None: nothing excluded.
    :param seed: connector seed of the targets (0: what the envs use).
    :param random_images: frames ``uint8 [T, S, S, 3]`` of episodes of uniform random actions: an extra column that
        every target should score below its own task's episodes (the only check a one-task domain has).
    :param align: the reward's alignment (:func:`genrl_gym.reward.trajectory_match`; default the model's
        ``reward_align``); the targets get the horizon it expects (:func:`genrl_gym.reward.target_horizon`).
    :return: dict with ``random_column`` ``{a: mean reward on the random episodes}`` and ``beats_random`` ``{a: bool}``
        (when ``random_images`` is given), and ``matrix`` ``[n, n]`` (rows = prompt task, columns = episode task;
        clip windows excluded when asked), ``matrix_all_rows`` (nothing excluded), ``episode_means``
        ``{a: {b: [per-episode means]}}``,
        ``episodes`` ``{b: [episode names]}``, ``true_reward`` ``{b: mean true reward per step}``, ``excluded_rows``,
        ``row_check`` ``{a: bool}`` (diagonal > every other entry of its row), ``column_check`` ``{b: bool}`` (diagonal >
        every other entry of its column), ``row_margin`` ``{a: diagonal - max off-diagonal}``, ``all_rows_pass``.
    """
    from genrl_gym.prompts import target_from_prompt

    info = store.episode_info()
    by_task: dict[str, list[Path]] = {t: [] for t in tasks}
    for path in store.paths():
        task = info.get(path.stem, {}).get("task")
        if task in by_task:
            by_task[task].append(path)
    missing = [t for t in tasks if not by_task[t]]
    if missing:
        raise ValueError(f"held-out store {store.root} has no episodes of task(s) {missing}; tasks there: "
                         f"{sorted({v.get('task') for v in info.values()})}")
    absent = [t for t in tasks if t not in clips]
    if absent:
        raise ValueError(f"no prompt clip for task(s) {absent}; clips: {sorted(clips)}")
    from genrl_gym.reward import target_horizon

    align = model.reward_align if align is None else align
    horizon = target_horizon(align, history)
    targets = {a: target_from_prompt(model, Path(clips[a]), horizon=horizon, seed=seed).features for a in tasks}

    n = len(tasks)
    sums, counts = np.zeros((n, n)), np.zeros((n, n))
    sums_all, counts_all = np.zeros((n, n)), np.zeros((n, n))
    episode_means: dict[str, dict[str, list[float]]] = {a: {b: [] for b in tasks} for a in tasks}
    true_reward: dict[str, float] = {}
    excluded: dict[str, int] = {}
    for j, b in enumerate(tasks):
        true_sum, true_n = 0.0, 0
        for path in by_task[b]:
            ep = store.load(path, keys=("image", "task_reward"))
            _, feats = posterior_modes(model, ep["image"])
            length = feats.shape[0]
            true_sum += float(ep["task_reward"][1:].sum())
            true_n += length - 1
            for i, a in enumerate(tasks):
                r = env_rewards(feats, targets[a], history=history, score_kind=score_kind, align=align)
                keep = np.ones(length, dtype=bool)
                keep[0] = False  # the reset frame earns no reward
                sums_all[i, j] += r[keep].sum()
                counts_all[i, j] += keep.sum()
                ci = (clip_info or {}).get(a)
                if exclude_clip_window and ci and ci.get("episode") in (path.name, path.stem) and a == b:
                    drop = _clip_rows(length, int(ci["start"]), int(ci["frames"]), history)
                    excluded[a] = int((keep & drop).sum())
                    keep &= ~drop
                if keep.any():
                    sums[i, j] += r[keep].sum()
                    counts[i, j] += keep.sum()
                    episode_means[a][b].append(float(r[keep].mean()))
        true_reward[b] = true_sum / max(true_n, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        matrix = sums / counts
        matrix_all = sums_all / counts_all
    if not np.isfinite(matrix).all():
        raise ValueError("a matrix entry has no rows left after excluding the clip windows: the held-out episodes are too "
                         "short for the clips; collect more or longer held-out episodes")
    random_column: dict[str, float] = {}
    for images in random_images or []:
        _, feats = posterior_modes(model, images)
        for a in tasks:
            r = env_rewards(feats, targets[a], history=history, score_kind=score_kind, align=align)[1:]
            random_column.setdefault(a, 0.0)
            random_column[a] += float(r.sum()) / sum(len(x) - 1 for x in random_images)
    beats_random = {a: bool(matrix[i, i] > random_column[a]) for i, a in enumerate(tasks) if a in random_column}
    off = ~np.eye(n, dtype=bool)
    row_check = {a: bool(np.all(matrix[i, i] > matrix[i][off[i]])) for i, a in enumerate(tasks)}
    col_check = {b: bool(np.all(matrix[j, j] > matrix[:, j][off[:, j]])) for j, b in enumerate(tasks)}
    margin = {a: float(matrix[i, i] - (matrix[i][off[i]].max() if n > 1 else -math.inf)) for i, a in enumerate(tasks)}
    return {"tasks": list(tasks), "matrix": matrix.tolist(), "matrix_all_rows": matrix_all.tolist(),
            "episode_means": episode_means, "episodes": {b: [p.name for p in by_task[b]] for b in tasks},
            "true_reward": true_reward, "excluded_rows": excluded, "row_check": row_check, "column_check": col_check,
            "row_margin": margin, "all_rows_pass": all(row_check.values()), "score_kind": score_kind, "history": history,
            "align": align, "target_steps": horizon + 1, "exclude_clip_window": exclude_clip_window,
            "seed": seed,
            "random_column": random_column,
            "beats_random": beats_random, "random_episodes": len(random_images or [])}


# ----------------------------------------------------------------------------------------------------------------------
# pictures


def save_png(image: np.ndarray, path: str | os.PathLike[str], *, max_bytes: int = MAX_PNG_BYTES) -> int:
    """Write uint8 ``[H, W, 3]`` as an optimised PNG (atomic), palette-quantised and then halved until under ``max_bytes``.

    :return: bytes written.
    """
    from PIL import Image

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


def _figure_png(fig: Any, path: Path) -> int:
    """Render a matplotlib Figure (Agg, no pyplot state) into an RGB array and save it with :func:`save_png`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    return save_png(rgba[..., :3], path)


def _label(text: str, height: int, width: int = 150) -> np.ndarray:
    """White ``[height, width, 3]`` panel with ``text`` (newlines allowed) in black, for the left of an image row."""
    from PIL import Image, ImageDraw

    panel = Image.new("RGB", (width, height), (255, 255, 255))
    ImageDraw.Draw(panel).multiline_text((4, 4), text, fill=(0, 0, 0), spacing=2)
    return np.asarray(panel)


def _grid(rows: list[tuple[str, np.ndarray]], gap: int = 2, group: int = 0) -> np.ndarray:
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
        out.append(np.concatenate([_label(text, h), strip], 1))
        out.append(np.full((gap, out[-1].shape[1], 3), 255, np.uint8))
        if group and (r + 1) % group == 0 and r + 1 < len(rows):
            out.append(np.full((8, out[-1].shape[1], 3), 255, np.uint8))
    return np.concatenate(out, 0)


def _smooth(values: np.ndarray) -> np.ndarray:
    """Centred moving average over ~2.5% of the points (no lag, unlike an EMA; edges average what exists)."""
    half = max(1, len(values) // 80)
    csum = np.concatenate([[0.0], np.cumsum(values)])
    idx = np.arange(len(values))
    lo, hi = np.maximum(idx - half, 0), np.minimum(idx + half + 1, len(values))
    return (csum[hi] - csum[lo]) / (hi - lo)


def _plot_curves(scalars: dict[str, tuple[np.ndarray, np.ndarray]], path: Path) -> int:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 6), dpi=80)
    axes = fig.subplots(2, 2).ravel()
    for ax, (title, series, logy) in zip(axes, _CURVES):
        drawn = False
        for tag, label in series:
            if tag not in scalars or len(scalars[tag][0]) == 0:
                continue
            steps, values = scalars[tag]
            line = ax.plot(steps, values, alpha=0.3, lw=0.8)[0]
            ax.plot(steps, _smooth(values), color=line.get_color(), lw=1.5, label=label)
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
    return _figure_png(fig, path)


def _plot_matrix(matrix: np.ndarray, tasks: list[str], path: Path, title: str) -> int:
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

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
    return _figure_png(fig, path)


def _to_uint8(frames: Tensor) -> np.ndarray:
    return (frames.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


# ----------------------------------------------------------------------------------------------------------------------
# the report


def _locate(run_or_model: Any, run_dir: str | os.PathLike[str] | None) -> dict[str, Any]:
    """Model, TensorBoard folder, clips and held-out store of a pipeline run folder or an (exported) model."""
    from genrl_gym.models import MFWM
    from genrl_gym.training.export import _read_json, read_run

    found: dict[str, Any] = {"model": None, "model_path": None, "tb": None, "clips_dir": None, "clips": None,
                             "heldout": None, "run": None}
    if run_dir is not None:
        files = read_run(run_dir)
        found.update(tb=files["tb"], clips_dir=files["clips_dir"], clips=files["clips"], heldout=files["heldout"],
                     run=files["run"], model_path=files["model"])
    if isinstance(run_or_model, MFWM):
        found.update(model=run_or_model, model_path=None)
        return found
    path = Path(run_or_model).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; pass a `genrl pipeline --out` folder, an exported "
                                "model folder (genrl_gym/pretrained/<domain>) or a checkpoint file")
    if path.is_dir() and (path / "mfwm").is_dir():  # a pipeline run
        files = read_run(path)
        found.update(tb=found["tb"] or files["tb"], clips_dir=found["clips_dir"] or files["clips_dir"],
                     clips=found["clips"] or files["clips"], heldout=found["heldout"] or files["heldout"], run=files["run"],
                     model_path=files["model"])
        return found
    model_dir = path if path.is_dir() else path.parent
    if path.is_dir():
        if not (path / "model.pt").is_file():
            raise FileNotFoundError(f"{path} holds neither a pipeline run (mfwm/mfwm.pt) nor an exported model (model.pt)")
        path = path / "model.pt"
    found["model_path"] = path
    prompts = model_dir / "prompts" / "clips.json"
    if prompts.is_file():  # an exported model's own clips win over the run's (they are what users get)
        found.update(clips_dir=prompts.parent, clips=_read_json(prompts))
    return found


def _short(path: str | os.PathLike[str]) -> str:
    """The last two components of a path (``walker-pipeline/heldout``): reports travel, this machine's paths don't."""
    return "/".join(Path(path).resolve().parts[-2:])


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def model_report(run_dir_or_model: str | os.PathLike[str] | MFWM, heldout_store: str | os.PathLike[str] | EpisodeStore |
                 None = None, out_dir: str | os.PathLike[str] = "report", *, tasks: list[str] | tuple[str, ...] | None = None,
                 seed: int = 0, run_dir: str | os.PathLike[str] | None = None, score_kind: str = "max_cosine",
                 steps_shown: int = 8, exclude_clip_window: bool = True, random_episodes: int = 3,
                 align: str | None = None) -> dict[str, Any]:
    """Write ``REPORT.md``, ``report.json`` and PNGs about a world model into ``out_dir``; return the numbers.

    :param run_dir_or_model: a ``genrl pipeline --out`` folder, an exported model folder (``model.pt`` +
        ``prompts/``), a checkpoint file, or an MFWM.
    :param heldout_store: held-out episode store (path or EpisodeStore); default the run's ``heldout/``.
    :param out_dir: where the report goes (created).
    :param tasks: tasks to report (default: the tasks with prompt clips, in clips.json order).
    :param seed: connector seed of the prompt targets (0: the envs') and of nothing else (all else is deterministic).
    :param run_dir: the pipeline run, for its TensorBoard logs, clips and held-out store when the first argument is a
        model (an exported model's own ``prompts/`` are used for the clips).
    :param score_kind: GenRL score of the discrimination matrix (default the envs' ``max_cosine``).
    :param align: alignment of the discrimination matrix's reward (default the model's ``reward_align``, what the envs
        use).
    :param steps_shown: time steps per task in ``reconstructions.png``.
    :param exclude_clip_window: leave each clip's own frames out of its task's diagonal entry (see module docstring).
    :param random_episodes: 1000-frame episodes of uniform random actions (seeds 10000..) rendered like the training
        data, scored by every target as an extra column (0: none).
    :return: the contents of ``report.json``: ``model`` (summary), ``discrimination`` (see
        :func:`discrimination_matrix`), ``reconstruction`` (per-task MSE/PSNR), ``curves`` (final smoothed values),
        ``clips``, ``files`` (PNG sizes).
    :raises FileNotFoundError: missing run/model/held-out store/clips (the message names the stage or flag to fix it).
    """
    from genrl_gym.data import EpisodeStore
    from genrl_gym.models import MFWM
    from genrl_gym.prompts import decode_target, read_video, target_from_prompt
    from genrl_gym.training.export import _vlm_summary, file_sha256, publish

    loc = _locate(run_dir_or_model, run_dir)
    model = loc["model"] or MFWM.load(loc["model_path"])
    model.eval()
    if heldout_store is None:
        if loc["heldout"] is None:
            raise FileNotFoundError("no held-out store: pass heldout_store= (the pipeline's <run>/heldout) or run_dir=")
        heldout_store = loc["heldout"]
    store = heldout_store if isinstance(heldout_store, EpisodeStore) else EpisodeStore(heldout_store, create=False)
    if len(store) == 0:
        raise FileNotFoundError(f"held-out store {store.root} holds no episodes")
    if loc["clips"] is None:
        raise FileNotFoundError("no prompt clips: pass a pipeline run whose 'clips' stage finished (clips/clips.json), or "
                                "an exported model folder with prompts/clips.json")
    clip_info: dict[str, dict[str, Any]] = loc["clips"]
    tasks = list(tasks) if tasks else list(clip_info)
    clips = {t: loc["clips_dir"] / f"{t}.gif" for t in clip_info}
    for t in tasks:
        if t not in clips or not clips[t].is_file():
            raise FileNotFoundError(f"no prompt clip for task {t!r} in {loc['clips_dir']} (clips: {sorted(clip_info)})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, int] = {}

    # 1. training curves ------------------------------------------------------------------------------------------------
    curves: dict[str, Any] = {}
    if loc["tb"] is not None:
        scalars = read_scalars(loc["tb"])
        files["curves.png"] = _plot_curves(scalars, out / "curves.png")
        for tag, (steps, values) in scalars.items():
            if tag.startswith("train/"):
                tail = values[-max(1, len(values) // 10):]
                curves[tag] = {"first": float(values[0]), "last_10pct_mean": float(tail.mean()), "last_step": int(steps[-1]),
                               "points": int(len(values))}

    # 2. reconstructions of held-out episodes ---------------------------------------------------------------------------
    info = store.episode_info()
    recon_rows: list[tuple[str, np.ndarray]] = []
    recon: dict[str, Any] = {}
    for task in tasks:
        paths = [p for p in store.paths() if info.get(p.stem, {}).get("task") == task]
        if not paths:
            raise ValueError(f"held-out store {store.root} has no episode of task {task!r}")
        not_clip = [p for p in paths if p.name != clip_info.get(task, {}).get("episode")]
        shown = (not_clip or paths)[0]
        mses = []
        for path in paths:
            ep = store.load(path, keys=("image",))
            stoch, _ = posterior_modes(model, ep["image"])
            with torch.no_grad():
                dec = torch.cat([model.decode(stoch[i:i + 256].to(model.device)).float().cpu()
                                 for i in range(0, len(stoch), 256)])
            real = torch.as_tensor(ep["image"]).float() / 255
            mses.append(float(((dec - real) ** 2).mean()))
            if path == shown:
                rows = np.linspace(0, len(stoch) - 1, steps_shown).round().astype(int)
                recon_rows += [(f"{task}: real\n{path.stem}\nrows {rows[0]}..{rows[-1]}", ep["image"][rows]),
                               (f"{task}: recon\n(posterior mode)", _to_uint8(dec[rows]))]
        mse = float(np.mean(mses))
        recon[task] = {"mse": mse, "psnr_db": float(10 * math.log10(1 / max(mse, 1e-12))), "episodes": len(paths),
                       "shown": shown.name}
    files["reconstructions.png"] = save_png(_grid(recon_rows, group=2), out / "reconstructions.png")

    # 3. prompt clips beside their decoded targets ----------------------------------------------------------------------
    prompt_rows: list[tuple[str, np.ndarray]] = []
    with torch.no_grad():
        for task in tasks:
            frames = read_video(clips[task])
            target = target_from_prompt(model, Path(clips[task]), horizon=HISTORY - 1, seed=seed)
            decoded = decode_target(model, target)
            n = decoded.shape[0]
            clip_stoch, _ = posterior_modes(model, frames[:n])
            prompt_rows += [(f"{task}: clip\n(first 8 frames\nare embedded)", frames[:n]),
                            (f"{task}: clip recon", _to_uint8(model.decode(clip_stoch.to(model.device)).float())),
                            (f"{task}: decoded\ntarget", decoded)]
    files["prompts.png"] = save_png(_grid(prompt_rows, group=3), out / "prompts.png")

    # 4. discrimination matrix ------------------------------------------------------------------------------------------
    disc = discrimination_matrix(model, store, tasks, clips, clip_info, seed=seed, score_kind=score_kind,
                                 exclude_clip_window=exclude_clip_window,
                                 random_images=random_episode_frames(model, tasks[0], random_episodes), align=align)
    files["discrimination.png"] = _plot_matrix(np.array(disc["matrix"]), tasks, out / "discrimination.png",
                                               f"mean GenRL reward per step ({score_kind}, {disc['align']} alignment)")

    # 5. summary ------------------------------------------------------------------------------------------------------
    cfg = model.config
    meta = model.metadata
    summary = {"domain": model.domain, "preset": cfg.preset, "updates": meta.get("updates"),
               "frames": (meta.get("recipe") or {}).get("frames", meta.get("num_frames")),
               "vlm": _vlm_summary(model._vlm), "render_settings": model.render_settings,
               "align": meta.get("align", meta.get("reward_align")),
               "model_file": _short(loc["model_path"]) if loc["model_path"] else None,
               "model_sha256": file_sha256(loc["model_path"]) if loc["model_path"] else None,
               "heldout_store": _short(store.root)}
    if summary["updates"] is None and curves:
        summary["updates"] = max(c["last_step"] for c in curves.values())
    result = {"model": summary, "tasks": tasks, "discrimination": disc, "reconstruction": recon, "curves": curves,
              "clips": {t: clip_info.get(t) for t in tasks}, "files": files}
    with atomic_write(out / "report.json", "w") as f:
        json.dump(result, f, indent=2, default=str)
    text = _markdown(result, out)
    with atomic_write(out / "REPORT.md", "w") as f:
        f.write(text)
    publish(out / "report.json", out / "REPORT.md", *(out / name for name in files))
    return result


def _markdown(r: dict[str, Any], out: Path) -> str:
    """REPORT.md text from :func:`model_report`'s result."""
    m, d, tasks = r["model"], r["discrimination"], r["tasks"]
    vlm = m["vlm"]
    ident = vlm["identity"] or {}
    lines = [f"# {m['domain']} world model: quality report", "",
             f"- preset `{m['preset']}`, {m['updates']} world-model updates, trained on {m['frames']} frames",
             f"- VLM: `{ident.get('backend')}:{ident.get('model')}` (weights `{ident.get('weights')}`, "
             f"{ident.get('embed_dim')}-d). {vlm['note']}.",
             f"- render settings: {json.dumps(m['render_settings'])}",
             f"- model file: `{m['model_file'] or '(in memory)'}`"
             + (f", sha256 `{m['model_sha256'][:16]}...`" if m["model_sha256"] else ""),
             f"- held-out store: `{m['heldout_store']}` ({sum(len(v) for v in d['episodes'].values())} episodes "
             f"of tasks {', '.join(tasks)})", ""]
    lines += ["## Training curves", ""]
    if "curves.png" in r["files"]:
        rows = [[tag.removeprefix("train/"), f"{c['first']:.4g}", f"{c['last_10pct_mean']:.4g}", str(c["last_step"])]
                for tag, c in sorted(r["curves"].items())
                if tag.removeprefix("train/") in ("image_loss", "kl", "wm_loss", "connector_loss", "connector_kl",
                                                  "aligner_cosine_distance")]
        lines += ["![training curves](curves.png)", "",
                  "Faint lines: logged values (each a mean over the logging interval); bold: centred moving average.", "",
                  _md_table(["scalar", "first", "mean of last 10%", "last update"], rows), ""]
    else:
        lines += ["No TensorBoard logs were given (pass the pipeline run folder).", ""]
    lines += ["## Reconstructions of held-out episodes", "",
              "![reconstructions](reconstructions.png)", "",
              "Per task: real frames of one held-out episode (first row, time steps evenly spread over the episode) above "
              "the decoded posterior modes of the same frames (second row). MSE/PSNR over all held-out frames of the task "
              "(pixels in [0, 1]):", "",
              _md_table(["task", "MSE", "PSNR (dB)", "episodes"],
                        [[t, f"{v['mse']:.5f}", f"{v['psnr_db']:.1f}", str(v["episodes"])]
                         for t, v in r["reconstruction"].items()]), ""]
    clip_rows = []
    for t in tasks:
        c = r["clips"].get(t) or {}
        mean = c.get("mean_task_reward_per_step")
        clip_rows.append([t, f"`{t}.gif`", str(c.get("episode")), str(c.get("start")), str(c.get("frames")),
                          f"{mean:.3f}" if isinstance(mean, (int, float)) else "?"])
    lines += ["## Prompt clips and what the model thinks they look like", "",
              "![prompts](prompts.png)", "",
              "Per clip: the clip's first 17 frames; their reconstruction through the world model's posterior; and the "
              "decoded target trajectory of the clip (the connector's 17 states from the clip's VLM embedding, decoded): "
              "what a GenRL agent is asked to reproduce. The VLM embeds the clip's first 8 frames.", "",
              "Each clip is the window of its task's held-out episodes with the highest true reward:", "",
              _md_table(["task", "clip", "held-out episode", "start row", "frames", "mean true reward per agent step (max 2)"],
                        clip_rows), ""]
    mat, mat_all = np.array(d["matrix"]), np.array(d["matrix_all_rows"])
    rnd = d.get("random_column") or {}
    header = (["prompt \\ episodes"] + [f"{b} episodes" for b in tasks] + (["random episodes"] if rnd else [])
              + ["diagonal > row?", "margin"] + (["diagonal > random?"] if rnd else []))
    rows = []
    for i, a in enumerate(tasks):
        cells = [(f"**{mat[i, j]:.4f}**" if i == j else f"{mat[i, j]:.4f}") for j in range(len(tasks))]
        row_ok = ("yes" if d["row_check"][a] else "**no**") if len(tasks) > 1 else "n/a (one task)"
        margin = f"{d['row_margin'][a]:+.4f}" if len(tasks) > 1 else "-"
        rows.append([f"{a} clip"] + cells + ([f"{rnd[a]:.4f}"] if rnd else []) + [row_ok, margin]
                    + (["yes" if d["beats_random"][a] else "**no**"] if rnd else []))
    rows_all = [[f"{a} clip"] + [f"{mat_all[i, j]:.4f}" for j in range(len(tasks))] for i, a in enumerate(tasks)]
    spread = [[f"{a} clip"] + [f"{np.std(d['episode_means'][a][b]):.4f} ({len(d['episode_means'][a][b])})" for b in tasks]
              for a in tasks]
    passed = sum(d["row_check"].values())
    excl = ", ".join(f"{a}: {n}" for a, n in d["excluded_rows"].items()) or "none"
    lines += ["## Prompt discrimination", "",
              f"Entry (a, b): mean GenRL reward per step of the target of **a's clip** on the held-out episodes of **task "
              f"b**, computed as the `GenRL/{m['domain'].capitalize()}-v0` envs compute it: score `{d['score_kind']}` of "
              f"each frame's posterior-mode reward features after {d.get('align', 'sequence')} alignment of the last "
              f"{d['history']} frames against the {d.get('target_steps', 17)}-step target (8-step alignment window), "
              f"reset frames excluded, mean over all steps of all episodes of b. The criterion (issue): the diagonal "
              "entry exceeds every other entry of its row.", "",
              (f"**{passed} of {len(tasks)} rows pass" + (" — all rows pass.**" if d["all_rows_pass"] else ".**")
               if len(tasks) > 1 else "**One in-distribution task: there is no pair of tasks to compare; the random "
               "column is the check.**"), "",
              _md_table(header, rows), "",
              *([f"Random episodes: {d['random_episodes']} episodes of 1000 frames of uniform random actions (seeds "
                 "10000..), rendered like the training data and scored the same way; "
                 f"{sum(d['beats_random'].values())} of {len(tasks)} targets score their own task's episodes higher.",
                 ""] if rnd else []),
              "![discrimination matrix](discrimination.png)", "",
              "Columns (does each task's own clip score its episodes highest?): "
              + ", ".join(f"{b}: {'yes' if ok else 'no'}" for b, ok in d["column_check"].items()) + ". "
              "Rows compare one target across episode sets and are the fair comparison: different targets have different "
              "score scales (max-norm cosine penalises norm mismatch), so columns mix scales.", "",
              "Mean true task reward per agent step (max 2) of the held-out episodes, each under its own task: "
              + ", ".join(f"{b} {v:.3f}" for b, v in d["true_reward"].items()) + ".", "",
              "### Overlap of clips and evaluation episodes", "",
              "Each clip is cut from one held-out episode of its task, which is also one of that task's evaluation "
              "episodes; the other held-out episodes are disjoint from the clip. "
              + ("For the diagonal entry the rows of the clip's episode whose 17-frame reward window overlaps the clip's "
                 f"frames are left out (rows excluded per task: {excl}). " if d["exclude_clip_window"] else
                 "Nothing was excluded (exclude_clip_window=False). ")
              + "With every row included the matrix is:", "",
              _md_table(["prompt \\ episodes"] + [f"{b} episodes" for b in tasks], rows_all), "",
              "Spread: standard deviation of the per-episode means (number of episodes):", "",
              _md_table(["prompt \\ episodes"] + [f"{b} episodes" for b in tasks], spread), "",
              "## Files", "", _md_table(["file", "bytes"], [[k, str(v)] for k, v in r["files"].items()]), "",
              f"Reproduce: `genrl export --run <pipeline run> --domain {m['domain']}"
              + (f" --align {m['align']}" if m.get("align") else "")
              + "`, then `genrl report --run <pipeline "
              f"run> --out <model folder> --model <model folder>` (the shipped folder: genrl_gym/pretrained/{m['domain']}).",
              ""]
    return "\n".join(lines)
