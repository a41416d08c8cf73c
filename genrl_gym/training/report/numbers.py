"""The numbers of the model report: training-curve summaries, the prompt discrimination matrix, and
:class:`ReportNumbers`, the dataclass of everything ``report.json`` holds.

The report's files are listed in :mod:`genrl_gym.training.report`.

Prompt discrimination matrix
----------------------------
``M[a, b]`` = mean GenRL reward per step of the target of task ``a``'s prompt clip on the held-out episodes of task ``b``,
computed exactly as the ``GenRL/<Domain>-v0`` envs compute it (:func:`genrl_gym.reward.score_episode`, by default the
``max_cosine`` score with the model's alignment): posterior modes of every frame, reward features, and for every agent
step ``t >= 1`` the score of frame ``t`` after aligning the window of frames ``max(0, t - 16) .. t`` against the target
(tests/test_reward_identity.py checks it against the wrapper). Row 0 (the reset frame) earns no reward and
is left out. The issue's criterion: every diagonal entry exceeds the other entries of its row (target ``a`` rewards
``a``'s episodes more than any other task's episodes).

The clips are cut from held-out episodes, so the episode a clip comes from is also one of the evaluation episodes of its
task. For that (target, episode) pair the rows whose 17-frame reward window overlaps the clip's frames are excluded
(``exclude_clip_window=True``, the default); the matrix with those rows included is reported beside it.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from genrl_gym.envs import make_pixel_env, render_env_kwargs
from genrl_gym.prompts import target_from_prompt
from genrl_gym.reward import DEFAULT_HISTORY, DEFAULT_SCORE, RewardSpec, episode_features, score_episode, target_horizon

if TYPE_CHECKING:
    from genrl_gym.data import EpisodeStore
    from genrl_gym.models import MFWM

__all__ = ["ReportNumbers", "read_scalars", "curve_summary", "random_episode_frames", "discrimination_matrix"]


@dataclasses.dataclass
class ReportNumbers:
    """Every number of a model report: what ``report.json`` holds and ``REPORT.md`` describes.

    :param model: summary of the model (domain, preset, updates, frames, VLM, render settings, file and sha256...).
    :param tasks: the reported tasks, in order.
    :param discrimination: the prompt discrimination matrix and its checks (:func:`discrimination_matrix`).
    :param reconstruction: ``{task: {"mse", "psnr_db", "episodes", "shown"}}`` over the held-out frames (pixels in
        ``[0, 1]``).
    :param curves: ``{tag: {"first", "last_10pct_mean", "last_step", "points"}}`` (:func:`curve_summary`).
    :param clips: ``{task: clips.json entry}`` of the prompt clips.
    :param files: ``{file name: bytes}`` of the pictures written.
    """

    model: dict[str, Any]
    tasks: list[str]
    discrimination: dict[str, Any]
    reconstruction: dict[str, Any]
    curves: dict[str, Any]
    clips: dict[str, Any]
    files: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (``report.json``): the fields in order, as a plain dict."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def read_scalars(tb_dir: str | os.PathLike[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """All scalar series of a TensorBoard log folder: ``{tag: (steps int64 [N], values float64 [N])}`` sorted by step.

    Several event files (a resumed run) are merged; for a step logged twice the last value wins.
    :raises FileNotFoundError: no such folder or no event file in it.
    """
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



def curve_summary(scalars: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, dict[str, Any]]:
    """First value, mean of the last 10% of points, last step and point count of every ``train/`` scalar series of
    :func:`read_scalars`."""
    curves: dict[str, dict[str, Any]] = {}
    for tag, (steps, values) in scalars.items():
        if tag.startswith("train/"):
            tail = values[-max(1, len(values) // 10):]
            curves[tag] = {"first": float(values[0]), "last_10pct_mean": float(tail.mean()), "last_step": int(steps[-1]),
                           "points": int(len(values))}
    return curves


def random_episode_frames(model: MFWM, task: str, episodes: int, *, episode_frames: int = 1000,
                          first_seed: int = 10_000) -> list[np.ndarray]:
    """Frames ``uint8 [T, S, S, 3]`` of ``episodes`` episodes of uniform random actions, rendered with the model's
    settings (the task only picks the env; its reward is not used)."""
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
                          score_kind: str = DEFAULT_SCORE, history: int = DEFAULT_HISTORY,
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
    info = store.episode_info()
    by_task: dict[str, list[Path]] = {t: [] for t in tasks}
    for path in store.paths():
        task = info.get(path.stem, {}).get("task")
        if task in by_task:
            by_task[task].append(path)
    missing = [t for t in tasks if not by_task[t]]
    if missing:
        raise ValueError(f"held-out store {store.root} has no episodes of task(s) {missing}; tasks there: "
                         f"{sorted({v.get('task') for v in info.values()}, key=str)}")
    absent = [t for t in tasks if t not in clips]
    if absent:
        raise ValueError(f"no prompt clip for task(s) {absent}; clips: {sorted(clips)}")
    align = model.reward_align if align is None else align
    horizon = target_horizon(align, history)
    targets = {a: target_from_prompt(model, Path(clips[a]), horizon=horizon, seed=seed) for a in tasks}
    spec = RewardSpec(model=model, score_kind=score_kind, history=history, align=align)

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
            feats = episode_features(model, ep["image"])  # filtered once, scored against every target
            length = feats[0].shape[0]
            true_sum += float(ep["task_reward"][1:].sum())
            true_n += length - 1
            for i, a in enumerate(tasks):
                r = score_episode(spec, ep["image"], target=targets[a], features=feats).astype(np.float64)
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
    randoms = random_images or []
    for images in randoms:
        feats = episode_features(model, images)
        for a in tasks:
            r = score_episode(spec, images, target=targets[a], features=feats).astype(np.float64)[1:]
            random_column.setdefault(a, 0.0)
            random_column[a] += float(r.sum()) / sum(len(x) - 1 for x in randoms)
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
            "beats_random": beats_random, "random_episodes": len(randoms)}
