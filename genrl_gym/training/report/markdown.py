"""The prose of the model report: ``REPORT.md`` from :class:`~genrl_gym.training.report.numbers.ReportNumbers`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from genrl_gym.envs.tasks import env_id
from genrl_gym.training.export import vlm_line
from genrl_gym.training.report.numbers import ReportNumbers

__all__ = ["report_markdown", "md_table", "short_path"]


def short_path(path: str | os.PathLike[str]) -> str:
    """The last two components of a path (``walker-pipeline/heldout``): reports travel, this machine's paths don't."""
    return "/".join(Path(path).resolve().parts[-2:])


def md_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table of ``header`` and ``rows`` (cells already formatted)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def report_markdown(r: ReportNumbers) -> str:
    """The text of ``REPORT.md`` describing the report's numbers (the pictures are linked by file name)."""
    m, d, tasks = r.model, r.discrimination, r.tasks
    lines = [f"# {m['domain']} world model: quality report", "",
             f"- preset `{m['preset']}`, {m['updates']} world-model updates, trained on {m['frames']} frames",
             vlm_line(m["vlm"]),
             f"- render settings: {json.dumps(m['render_settings'])}",
             f"- model file: `{m['model_file'] or '(in memory)'}`"
             + (f", sha256 `{m['model_sha256'][:16]}...`" if m["model_sha256"] else ""),
             f"- held-out store: `{m['heldout_store']}` ({sum(len(v) for v in d['episodes'].values())} episodes "
             f"of tasks {', '.join(tasks)})", ""]
    lines += ["## Training curves", ""]
    if "curves.png" in r.files:
        rows = [[tag.removeprefix("train/"), f"{c['first']:.4g}", f"{c['last_10pct_mean']:.4g}", str(c["last_step"])]
                for tag, c in sorted(r.curves.items())
                if tag.removeprefix("train/") in ("image_loss", "kl", "wm_loss", "connector_loss", "connector_kl",
                                                  "aligner_cosine_distance")]
        lines += ["![training curves](curves.png)", "",
                  "Faint lines: logged values (each a mean over the logging interval); bold: centred moving average.", "",
                  md_table(["scalar", "first", "mean of last 10%", "last update"], rows), ""]
    else:
        lines += ["No TensorBoard logs were given (pass the pipeline run folder).", ""]
    lines += ["## Reconstructions of held-out episodes", "",
              "![reconstructions](reconstructions.png)", "",
              "Per task: real frames of one held-out episode (first row, time steps evenly spread over the episode) above "
              "the decoded posterior modes of the same frames (second row). MSE/PSNR over all held-out frames of the task "
              "(pixels in [0, 1]):", "",
              md_table(["task", "MSE", "PSNR (dB)", "episodes"],
                        [[t, f"{v['mse']:.5f}", f"{v['psnr_db']:.1f}", str(v["episodes"])]
                         for t, v in r.reconstruction.items()]), ""]
    clip_rows = []
    for t in tasks:
        c = r.clips.get(t) or {}
        mean = c.get("mean_task_reward_per_step")
        clip_rows.append([t, f"`{t}.gif`", str(c.get("episode")), str(c.get("start")), str(c.get("frames")),
                          f"{mean:.3f}" if isinstance(mean, (int, float)) else "?"])
    lines += ["## Prompt clips and what the model thinks they look like", "",
              "![prompts](prompts.png)", "",
              "Per clip: the clip's first 17 frames; their reconstruction through the world model's posterior; and the "
              "decoded target trajectory of the clip (the connector's 17 states from the clip's VLM embedding, decoded): "
              "what a GenRL agent is asked to reproduce. The prompt's embedding is the mean over every 8-frame window of "
              "the clip (`genrl_gym.prompts.embed_video_prompt`).", "",
              "Each clip is the window of its task's held-out episodes with the highest true reward:", "",
              md_table(["task", "clip", "held-out episode", "start row", "frames", "mean true reward per agent step (max 2)"],
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
              f"b**, computed as the `{env_id(m['domain'])}` envs compute it: score `{d['score_kind']}` of "
              f"each frame's posterior-mode reward features after {d.get('align', 'sequence')} alignment of the last "
              f"{d['history']} frames against the {d.get('target_steps', 17)}-step target (8-step alignment window), "
              f"reset frames excluded, mean over all steps of all episodes of b. The criterion (issue): the diagonal "
              "entry exceeds every other entry of its row.", "",
              (f"**{passed} of {len(tasks)} rows pass" + (" — all rows pass.**" if d["all_rows_pass"] else ".**")
               if len(tasks) > 1 else "**One in-distribution task: there is no pair of tasks to compare; the random "
               "column is the check.**"), "",
              md_table(header, rows), "",
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
              md_table(["prompt \\ episodes"] + [f"{b} episodes" for b in tasks], rows_all), "",
              "Spread: standard deviation of the per-episode means (number of episodes):", "",
              md_table(["prompt \\ episodes"] + [f"{b} episodes" for b in tasks], spread), "",
              "## Files", "", md_table(["file", "bytes"], [[k, str(v)] for k, v in r.files.items()]), "",
              f"Reproduce: `genrl export --run <pipeline run> --domain {m['domain']}"
              + (f" --align {m['align']}" if m.get("align") else "")
              + "`, then `genrl report --run <pipeline "
              f"run> --out <model folder> --model <model folder>` (the shipped folder: genrl_gym/pretrained/{m['domain']}).",
              ""]
    return "\n".join(lines)
