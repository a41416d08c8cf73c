"""Quality report of a multimodal-foundation world model (``genrl report``): Markdown + small PNGs + JSON.

``model_report(run_or_model, heldout, out_dir)`` writes into ``out_dir``:

``curves.png``           training curves from the trainer's TensorBoard logs (image loss, KL, connector, aligner);
``reconstructions.png``  held-out frames (row "real") over the decoded posterior modes (row "recon"), a few time steps per
                         task;
``prompts.png``          per prompt clip: the clip's frames, their reconstruction, and the decoded target trajectory of the
                         clip ("what the model thinks the prompt looks like");
``discrimination.png``   heatmap of the prompt discrimination matrix;
``REPORT.md``            all of it with tables and the checks; ``report.json`` the numbers.

The report is built in three parts: the numbers (:mod:`~genrl_gym.training.report.numbers`, a
:class:`ReportNumbers`), the pictures (:mod:`~genrl_gym.training.report.plots` and :mod:`genrl_gym.pictures`) and the
prose (:mod:`~genrl_gym.training.report.markdown`). How the discrimination matrix is computed:
:mod:`genrl_gym.training.report.numbers`.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from genrl_gym.data import EpisodeStore
from genrl_gym.model_store import load_text_grounding
from genrl_gym.models import MFWM
from genrl_gym.pictures import MAX_PNG_BYTES, image_grid, save_png, to_uint8
from genrl_gym.prompts import decode_target, read_video, target_from_prompt
from genrl_gym.reward import DEFAULT_HORIZON, DEFAULT_SCORE, posterior_modes
from genrl_gym.training.export import read_json, vlm_summary, file_sha256, publish, read_run
from genrl_gym.training.report.markdown import report_markdown, short_path
from genrl_gym.training.report.numbers import (
    ReportNumbers,
    curve_summary,
    discrimination_matrix,
    random_episode_frames,
    read_scalars,
)
from genrl_gym.training.report.plots import plot_curves, plot_matrix
from genrl_gym.utils import atomic_write

if TYPE_CHECKING:
    from genrl_gym.data import EpisodeStore
    from genrl_gym.models import MFWM

__all__ = ["model_report", "ReportNumbers", "read_scalars", "discrimination_matrix", "save_png", "MAX_PNG_BYTES"]

log = logging.getLogger(__name__)


def _locate(run_or_model: Any, run_dir: str | os.PathLike[str] | None) -> dict[str, Any]:
    """Model, TensorBoard folder, clips and held-out store of a pipeline run folder or an (exported) model."""
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
        found.update(clips_dir=prompts.parent, clips=read_json(prompts))
    return found


def model_report(run_dir_or_model: str | os.PathLike[str] | MFWM, heldout_store: str | os.PathLike[str] | EpisodeStore |
                 None = None, out_dir: str | os.PathLike[str] = "report", *, tasks: list[str] | tuple[str, ...] | None = None,
                 seed: int = 0, run_dir: str | os.PathLike[str] | None = None, score_kind: str = DEFAULT_SCORE,
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
        files["curves.png"] = plot_curves(scalars, out / "curves.png")
        curves = curve_summary(scalars)

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
                               (f"{task}: recon\n(posterior mode)", to_uint8(dec[rows]))]
        mse = float(np.mean(mses))
        recon[task] = {"mse": mse, "psnr_db": float(10 * math.log10(1 / max(mse, 1e-12))), "episodes": len(paths),
                       "shown": shown.name}
    files["reconstructions.png"] = save_png(image_grid(recon_rows, group=2), out / "reconstructions.png")

    # 3. prompt clips beside their decoded targets ----------------------------------------------------------------------
    prompt_rows: list[tuple[str, np.ndarray]] = []
    with torch.no_grad():
        for task in tasks:
            frames = read_video(clips[task])
            target = target_from_prompt(model, Path(clips[task]), horizon=DEFAULT_HORIZON, seed=seed)
            decoded = decode_target(model, target)
            n = decoded.shape[0]
            clip_stoch, _ = posterior_modes(model, frames[:n])
            prompt_rows += [(f"{task}: clip\n(every 8-frame\nwindow embedded)", frames[:n]),
                            (f"{task}: clip recon", to_uint8(model.decode(clip_stoch.to(model.device)).float())),
                            (f"{task}: decoded\ntarget", decoded)]
    files["prompts.png"] = save_png(image_grid(prompt_rows, group=3), out / "prompts.png")

    # 4. discrimination matrix ------------------------------------------------------------------------------------------
    disc = discrimination_matrix(model, store, tasks, clips, clip_info, seed=seed, score_kind=score_kind,
                                 exclude_clip_window=exclude_clip_window,
                                 random_images=random_episode_frames(model, tasks[0], random_episodes), align=align)
    files["discrimination.png"] = plot_matrix(np.array(disc["matrix"]), tasks, out / "discrimination.png",
                                               f"mean GenRL reward per step ({score_kind}, {disc['align']} alignment)")

    # 5. summary ------------------------------------------------------------------------------------------------------
    cfg = model.config
    meta = model.metadata
    grounding = getattr(model, "text_grounding", None)  # the grounding beside the model file, if any
    if grounding is None and loc["model_path"] is not None:
        grounding = load_text_grounding(loc["model_path"], model)
    summary = {"domain": model.domain, "preset": cfg.preset, "updates": meta.get("updates"),
               "frames": (meta.get("recipe") or {}).get("frames", meta.get("num_frames")),
               "vlm": vlm_summary(model._vlm, grounding.behaviours if grounding is not None else None),
               "render_settings": model.render_settings,
               "align": meta.get("align", meta.get("reward_align")),
               "model_file": short_path(loc["model_path"]) if loc["model_path"] else None,
               "model_sha256": file_sha256(loc["model_path"]) if loc["model_path"] else None,
               "heldout_store": short_path(store.root)}
    if summary["updates"] is None and curves:
        summary["updates"] = max(c["last_step"] for c in curves.values())
    numbers = ReportNumbers(model=summary, tasks=tasks, discrimination=disc, reconstruction=recon, curves=curves,
                            clips={t: clip_info.get(t) for t in tasks}, files=files)
    result = numbers.as_dict()
    with atomic_write(out / "report.json", "w") as f:
        json.dump(result, f, indent=2, default=str)
    with atomic_write(out / "REPORT.md", "w") as f:
        f.write(report_markdown(numbers))
    publish(out / "report.json", out / "REPORT.md", *(out / name for name in files))
    return result
