"""One command from nothing to a multimodal-foundation world model of a domain (``genrl pipeline``).

Stages, each resumable (a finished stage is skipped, an interrupted one continues):

1. ``experts``  SB3 PPO per in-distribution task on proprioception, checkpoints at several stages
                (:mod:`genrl_gym.training.experts`);
2. ``collect``  pixel episodes into ``<out>/data``: every expert stage with action noise, plus random episodes;
                held-out episodes per task (final stage, other seeds) into ``<out>/heldout``;
3. ``embed``    VLM embedding of every 8-frame window of both stores (:func:`genrl_gym.data.embed.embed_store`);
4. ``train``    world model + connector + aligner (:func:`genrl_gym.training.train_mfwm`) -> ``<out>/mfwm/mfwm.pt``;
5. ``clips``    per task, the 32-frame held-out window with the highest true reward -> ``<out>/clips/<task>.gif``.

The data recipe (policies, stages, episodes per source, frames) is written to ``<out>/recipe.json`` and into the
model's metadata, so a shipped model says what it was trained on.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genrl_gym.training.experts import ExpertConfig, ExpertPolicy, train_expert
from genrl_gym.utils import atomic_write

log = logging.getLogger(__name__)

PIPELINE_STAGES = ("experts", "collect", "embed", "train", "clips")


@dataclass
class PipelineConfig:
    """Everything ``genrl pipeline`` does for one domain; saved as ``<out>/pipeline.json``."""

    domain: str = "walker"
    tasks: tuple[str, ...] = ()
    """Tasks with task-solving data; empty = the domain's in-distribution tasks of the task table."""
    preset: str = "cpu"
    """MFWM size preset (``tiny``, ``cpu``, ``small``, ``paper``)."""
    vlm: str = "video-only"
    """VLM spec (:func:`genrl_gym.vlm.load_vlm`); ``open_clip:ViT-B-32:<weights>`` gives a text-capable model."""
    mfwm_steps: int = 20_000
    """World-model updates."""
    expert: ExpertConfig = field(default_factory=ExpertConfig)
    warm_start: dict[str, str] = field(default_factory=dict)
    """Expert curriculum ``{task: source task}``: the task's expert starts from the final stage of the source task's
    expert (which must come earlier in ``tasks``). Walker: ``{"walk": "stand", "run": "walk"}``."""
    episodes_per_stage: int = 6
    """Pixel episodes per (task, expert stage)."""
    random_episodes: int = 24
    heldout_episodes: int = 3
    """Held-out episodes per task (final expert stage, seeds disjoint from training data)."""
    action_noise: float = 0.3
    """Std of Gaussian noise on expert actions while collecting (diversity)."""
    episode_frames: int = 1000
    num_envs: int = 2
    vectorization: str = "async"
    clip_frames: int = 32
    seed: int = 0
    device: str | None = None

    def resolved_tasks(self) -> tuple[str, ...]:
        """The tasks this pipeline trains experts for."""
        from genrl_gym.envs import TASKS

        if self.tasks:
            return tuple(self.tasks)
        return tuple(s.task for s in TASKS.values() if s.domain == self.domain and s.in_distribution)


def run_pipeline(out_dir: str | Path, config: PipelineConfig | None = None, *, until: str = "clips",
                 progress: bool = True) -> Path:
    """Run (or resume) the pipeline into ``out_dir`` up to and including stage ``until``; return ``out_dir``."""
    from genrl_gym.data import EpisodeStore, SB3Policy, collect
    from genrl_gym.data.embed import embed_store
    from genrl_gym.envs import get_task
    from genrl_gym.training.trainer import train_mfwm
    from genrl_gym.vlm import load_vlm

    if until not in PIPELINE_STAGES:
        raise ValueError(f"until must be one of {PIPELINE_STAGES}, got {until!r}")
    config = config or PipelineConfig()
    tasks = config.resolved_tasks()
    for t in tasks:
        get_task(config.domain, t)  # clear error for unknown tasks before hours of work
    if not tasks:
        raise ValueError(f"domain {config.domain!r} has no in-distribution tasks; pass tasks=(...)")
    for task, source in config.warm_start.items():
        if task not in tasks or source not in tasks or tasks.index(source) >= tasks.index(task):
            raise ValueError(f"warm start {task}={source}: both must be expert tasks {tasks} and {source!r} must come "
                             f"before {task!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "pipeline.json", "w") as f:
        json.dump(asdict(config), f, indent=2, default=str)
    last = PIPELINE_STAGES.index(until)

    # 1. experts ------------------------------------------------------------------------------------------------------
    stages: dict[str, list[Path]] = {}
    for task in tasks:
        source = config.warm_start.get(task)
        stages[task] = train_expert(config.domain, task, out / "experts" / task, config.expert, progress=progress,
                                    tensorboard_log=str(out / "tb"),
                                    init_from=stages[source][-1] if source else None)
    if last == 0:
        return out

    # 2. collect ------------------------------------------------------------------------------------------------------
    data, heldout = EpisodeStore(out / "data"), EpisodeStore(out / "heldout")
    env_kwargs = {"episode_frames": config.episode_frames}
    recipe: dict[str, Any] = {"domain": config.domain, "sources": []}
    common = {"domain": config.domain, "env_kwargs": env_kwargs, "num_envs": config.num_envs,
              "vectorization": config.vectorization, "progress": progress}
    for ti, task in enumerate(tasks):
        for si, stage in enumerate(stages[task]):
            tag = f"expert:{task}:{stage.stem}"
            policy = SB3Policy(ExpertPolicy(stage), obs_key="proprio", noise_std=config.action_noise,
                               seed=config.seed + 17 * si, tag=tag)
            collect(task=task, policy=policy, store=data, num_episodes=config.episodes_per_stage, source=tag,
                    seed=config.seed + 1000 * (ti + 1) + 100 * si, **common)
            recipe["sources"].append({"source": tag, "task": task, "episodes": config.episodes_per_stage,
                                      "action_noise": config.action_noise,
                                      "expert_warm_start": config.warm_start.get(task)})
        final = SB3Policy(ExpertPolicy(stages[task][-1]), obs_key="proprio", noise_std=config.action_noise / 2,
                          seed=config.seed + 999, tag=f"heldout:{task}")
        collect(task=task, policy=final, store=heldout, num_episodes=config.heldout_episodes, source=f"heldout:{task}",
                seed=config.seed + 500_000 + 1000 * ti, **common)
    collect(task=tasks[0], policy="random", store=data, num_episodes=config.random_episodes, source="random",
            seed=config.seed + 900_000, **common)
    recipe["sources"].append({"source": "random", "task": tasks[0], "episodes": config.random_episodes})
    recipe.update(episodes=len(data), frames=data.num_frames, heldout_episodes=len(heldout),
                  expert=asdict(config.expert))
    with atomic_write(out / "recipe.json", "w") as f:
        json.dump(recipe, f, indent=2)
    if last == 1:
        return out

    # 3. embed --------------------------------------------------------------------------------------------------------
    vlm = load_vlm(config.vlm, device=config.device or "cpu")
    embed_store(data, vlm, progress=progress)
    embed_store(heldout, vlm, progress=progress)
    if last == 2:
        return out

    # 4. train --------------------------------------------------------------------------------------------------------
    train_mfwm(data, config.preset, out_dir=out / "mfwm", steps=config.mfwm_steps, seed=config.seed,
               device=config.device, progress=progress, vlm=vlm)
    if last == 3:
        return out

    # 5. clips --------------------------------------------------------------------------------------------------------
    write_prompt_clips(heldout, tasks, out / "clips", frames=config.clip_frames)
    return out


def best_window(task_reward: np.ndarray, length: int) -> int:
    """Start index of the ``length``-row window with the highest summed true reward (first row excluded: a reset)."""
    r = np.asarray(task_reward, dtype=np.float64)[1:]
    if len(r) < length:
        raise ValueError(f"episode has {len(r)} steps, fewer than the clip length {length}")
    sums = np.convolve(r, np.ones(length), mode="valid")
    return int(np.argmax(sums)) + 1


def write_prompt_clips(heldout: Any, tasks: tuple[str, ...], out_dir: str | Path, *, frames: int = 32) -> dict[str, Path]:
    """For each task, cut the best ``frames``-frame window of its held-out episodes into ``<out_dir>/<task>.gif``.

    Also writes ``<out_dir>/clips.json``: per clip the source episode, start row and mean true reward per step.
    """
    from genrl_gym.prompts import write_video

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clips: dict[str, Path] = {}
    info: dict[str, Any] = {}
    episodes = heldout.episode_info()
    for task in tasks:
        best: tuple[float, Path, int] | None = None
        for path in heldout.paths():
            if episodes.get(path.stem, {}).get("task") != task:
                continue
            ep = heldout.load(path)
            if len(ep["task_reward"]) <= frames:
                continue
            start = best_window(ep["task_reward"], frames)
            score = float(ep["task_reward"][start:start + frames].mean())
            if best is None or score > best[0]:
                best = (score, path, start)
        if best is None:
            raise ValueError(f"no held-out episode of task {task!r} is longer than {frames} steps")
        score, path, start = best
        ep = heldout.load(path)
        clips[task] = write_video(ep["image"][start:start + frames], out / f"{task}.gif")
        info[task] = {"episode": path.name, "start": start, "frames": frames, "mean_task_reward_per_step": score}
    with atomic_write(out / "clips.json", "w") as f:
        json.dump(info, f, indent=2)
    return clips
