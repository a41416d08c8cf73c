"""One command from nothing to a multimodal-foundation world model of a domain (``genrl pipeline``).

Stages, each resumable (a finished stage is skipped, an interrupted one continues):

1. ``experts``  SB3 PPO (or SAC) per in-distribution task on proprioception, checkpoints at several stages
                (:mod:`genrl_gym.training.experts`);
2. ``collect``  pixel episodes into ``<out>/data``: every expert stage with action noise, plus random episodes;
                held-out episodes per task (final stage, other seeds) into ``<out>/heldout``;
3. ``embed``    VLM embedding of every 8-frame window of both stores (:func:`genrl_gym.vlm.embed.embed_store`);
4. ``train``    world model + connector + aligner (:func:`genrl_gym.training.train_mfwm`) -> ``<out>/mfwm/mfwm.pt``;
5. ``clips``    per task, the 32-frame held-out window with the highest true reward (with
                ``clip_reward_tolerance``: the stillest of the near-best windows) -> ``<out>/clips/<task>.gif``.

The data recipe (policies, stages, episodes per source, frames) is written to ``<out>/recipe.json`` and into the
model's metadata, so a shipped model says what it was trained on.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genrl_gym.data import EpisodeStore, HandoverPolicy, RandomPolicy, SB3Policy, collect
from genrl_gym.envs import TASKS, get_task
from genrl_gym.models import MFWM
from genrl_gym.prompts import write_video
from genrl_gym.training.experts import ExpertConfig, ExpertPolicy, train_expert
from genrl_gym.training.export import read_json
from genrl_gym.training.trainer import train_mfwm
from genrl_gym.utils import CheckpointError, atomic_write, file_sha256
from genrl_gym.vlm import load_vlm
from genrl_gym.vlm.embed import embed_store

log = logging.getLogger(__name__)

PIPELINE_STAGES = ("experts", "collect", "embed", "train", "clips")


@dataclass
class PipelineConfig:
    """Everything ``genrl pipeline`` does for one domain; saved as ``<out>/pipeline.json``."""

    domain: str = "walker"
    """Domain of the world model (a domain of the task table :data:`genrl_gym.envs.TASKS`)."""
    tasks: tuple[str, ...] = ()
    """Tasks with task-solving data; empty = the domain's in-distribution tasks of the task table."""
    preset: str = field(default="cpu", metadata={"choices": "genrl_gym.models.presets:PRESETS"})
    """MFWM size preset (:data:`genrl_gym.models.PRESETS`)."""
    vlm: str = "video-only"
    """VLM spec (:func:`genrl_gym.vlm.load_vlm`); ``open_clip:ViT-B-32:<weights>`` gives a text-capable model."""
    mfwm_steps: int = field(default=20_000, metadata={"positive": True})
    """World-model updates (of this run; with ``mfwm_init``, on top of the init model's)."""
    mfwm_init: str = ""
    """Continue the world model from these weights instead of starting from scratch: a model's ``model.pt`` (e.g.
    ``genrl_gym/pretrained/walker/model.pt``) or a run's ``mfwm/mfwm.pt`` of the same domain, preset and VLM. The
    Dreamer data loop uses it: a model continued on episodes its own agents collected
    (``benchmarks.collect_agents``). Its sha256 and updates are recorded in ``<out>/mfwm_init.json`` and model.json."""
    expert: ExpertConfig = field(default_factory=ExpertConfig)
    """How each task's expert is trained."""
    expert_algo: dict[str, str] = field(default_factory=dict, metadata={"metavar": "TASK=ALGO"})
    """Per-task expert algorithm ``{task: "ppo" | "sac"}`` overriding ``expert.algo``. Walker: ``{"run": "sac"}``
    (PPO's run expert plateaus at a true return near 260 and moves like the walk expert)."""
    expert_task_steps: dict[str, int] = field(default_factory=dict, metadata={"metavar": "TASK=STEPS", "positive": True})
    """Per-task training steps ``{task: steps}`` overriding ``expert.total_steps`` (an easy task needs fewer)."""
    warm_start: dict[str, str] = field(default_factory=dict, metadata={"metavar": "TASK=SOURCE"})
    """Expert curriculum ``{task: source task}``: the task's expert starts from the final stage of the source task's
    expert (which must come earlier in ``tasks``). Walker: ``{"walk": "stand", "run": "walk"}``."""
    episodes_per_stage: int = field(default=6, metadata={"positive": True})
    """Pixel episodes per (task, expert stage)."""
    random_episodes: int = 24
    """Episodes of random actions."""
    handover_episodes: int = 0
    """Per task, episodes of random actions for ``handover_steps`` steps, then the final expert (with the action
    noise): the expert gets up from wherever chance left the body, states its own episodes show only at the start."""
    handover_steps: int = field(default=50, metadata={"positive": True})
    """Random-action steps at the start of a handover episode."""
    explore_noise: tuple[float, ...] = ()
    """Extra episodes of every expert stage at each of these action-noise stds (larger than ``action_noise``): the
    expert stumbles, falls and gets up again, states near its own that its clean episodes never show and that an
    agent learning in imagination visits first. Walker: ``(0.6, 1.0)``."""
    explore_episodes: int = field(default=3, metadata={"positive": True})
    """Episodes per (task, expert stage, ``explore_noise`` level)."""
    cycle_episodes: int = 0
    """Per task, episodes that alternate ``cycle_random_steps`` steps of random actions with ``cycle_expert_steps``
    steps of the final expert, all episode long: falls from wherever the expert had got to (upright, mid-stride)
    and the recoveries, where a handover episode shows one fall at the start."""
    cycle_random_steps: int = field(default=40, metadata={"positive": True})
    """Random-action steps per cycle of a cycle episode."""
    cycle_expert_steps: int = field(default=80, metadata={"positive": True})
    """Final-expert steps per cycle of a cycle episode."""
    heldout_episodes: int = field(default=3, metadata={"positive": True})
    """Held-out episodes per task (final expert stage, seeds disjoint from training data): the prompt clips and the
    report's reconstructions and discrimination check (3 are enough for the clips, few for the check)."""
    action_noise: float = 0.3
    """Std of Gaussian noise on expert actions while collecting (diversity)."""
    episode_frames: int = field(default=1000, metadata={"positive": True})
    """Physics frames per collected episode."""
    num_envs: int = field(default=2, metadata={"positive": True})
    """Parallel environments while collecting."""
    vectorization: str = "async"
    """``async`` (one worker process per environment) or ``sync``, while collecting."""
    clip_frames: int = field(default=32, metadata={"positive": True})
    """Frames of a prompt clip."""
    clip_reward_tolerance: float = 0.0
    """Clips: among held-out windows within this fraction of the best mean true reward, the stillest is cut
    (:func:`write_prompt_clips`); 0 cuts the highest-reward window."""
    seed: int = 0
    """Seed of every stage (experts, collection, training)."""
    device: str | None = None
    """Torch device of the world-model training (``cpu``, ``cuda``, ``cuda:1`` ...); None: cuda if available."""

    def resolved_tasks(self) -> tuple[str, ...]:
        """The tasks this pipeline trains experts for."""
        if self.tasks:
            return tuple(self.tasks)
        return tuple(s.task for s in TASKS.values() if s.domain == self.domain and s.in_distribution)

    def expert_config(self, task: str) -> ExpertConfig:
        """The expert settings of ``task``: :attr:`expert` with the task's :attr:`expert_algo` and
        :attr:`expert_task_steps`."""
        return dataclasses.replace(self.expert, algo=self.expert_algo.get(task, self.expert.algo),
                                   total_steps=int(self.expert_task_steps.get(task, self.expert.total_steps)))


def run_pipeline(out_dir: str | Path, config: PipelineConfig | None = None, *, until: str = "clips",
                 progress: bool = True) -> Path:
    """Run (or resume) the pipeline into ``out_dir`` up to and including stage ``until``; return ``out_dir``."""
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
        if config.expert_config(task).algo != config.expert_config(source).algo:
            raise ValueError(f"warm start {task}={source}: {task!r} uses {config.expert_config(task).algo} and "
                             f"{source!r} {config.expert_config(source).algo}; a warm start needs the same algorithm")
    for what, per_task in (("expert algo", config.expert_algo), ("expert steps", config.expert_task_steps)):
        for task in per_task:
            if task not in tasks:
                raise ValueError(f"{what} for {task!r}: not one of the expert tasks {tasks}")
            if config.expert_config(task).total_steps <= 0:  # expert_config itself refuses an unknown algorithm
                raise ValueError(f"expert steps for {task!r} must be positive")
    for name in ("handover_episodes", "cycle_episodes"):
        if getattr(config, name) < 0:
            raise ValueError(f"{name} must be >= 0, got {getattr(config, name)}")
    if any(not noise > 0 for noise in config.explore_noise):
        raise ValueError(f"explore_noise must hold action-noise stds > 0, got {config.explore_noise}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "pipeline.json", "w") as f:
        json.dump(asdict(config), f, indent=2, default=str)
    last = PIPELINE_STAGES.index(until)

    # 1. experts ------------------------------------------------------------------------------------------------------
    stages: dict[str, list[Path]] = {}
    for task in tasks:
        warm_from = config.warm_start.get(task)
        stages[task] = train_expert(config.domain, task, out / "experts" / task, config.expert_config(task),
                                    progress=progress,
                                    tensorboard_log=str(out / "tb"),
                                    init_from=stages[warm_from][-1] if warm_from else None)
    if last == 0:
        return out

    # 2. collect ------------------------------------------------------------------------------------------------------
    data, heldout = EpisodeStore(out / "data"), EpisodeStore(out / "heldout")
    env_kwargs = {"episode_frames": config.episode_frames}
    recipe: dict[str, Any] = {"domain": config.domain, "sources": []}
    common: dict[str, Any] = {"domain": config.domain, "env_kwargs": env_kwargs, "num_envs": config.num_envs,
              "vectorization": config.vectorization, "progress": progress}
    for ti, task in enumerate(tasks):
        algo = config.expert_config(task).algo
        # SAC samples with a maximum-entropy spread tuned for exploring, not for showing the task: its experts act
        # with their mean action (plus the noise below). PPO's learned spread is part of the policy it evaluated.
        mean_action = algo == "sac"

        def expert(model: Any, noise: float, seed: int, tag: str) -> SB3Policy:
            """The expert acting on proprioception with Gaussian action noise ``noise``."""
            return SB3Policy(model, obs_key="proprio", noise_std=noise, deterministic=mean_action, seed=seed, tag=tag)

        def record(tag: str, policy: Any, episodes: int, seed: int, **fields: Any) -> None:
            """Collect ``episodes`` episodes of ``policy`` into the data and note the source in the recipe."""
            collect(task=task, policy=policy, store=data, num_episodes=episodes, source=tag, seed=seed, **common)
            recipe["sources"].append({"source": tag, "task": task, "episodes": episodes, **fields,
                                      "expert_algo": algo, "mean_action": mean_action})

        final_expert = ExpertPolicy(stages[task][-1])  # the cycle, handover and held-out episodes' expert
        warm = config.warm_start.get(task)
        for si, stage in enumerate(stages[task]):
            stage_expert = ExpertPolicy(stage)
            tag = f"expert:{task}:{stage.stem}"
            record(tag, expert(stage_expert, config.action_noise, config.seed + 17 * si, tag),
                   config.episodes_per_stage, config.seed + 1000 * (ti + 1) + 100 * si,
                   action_noise=config.action_noise, expert_warm_start=warm)
            for ni, noise in enumerate(config.explore_noise):
                tag = f"explore:{task}:{stage.stem}:noise{noise:g}"
                record(tag, expert(stage_expert, noise, config.seed + 17 * si + 1000 * (ni + 1), tag),
                       config.explore_episodes, config.seed + 300_000 + 1000 * ti + 100 * si + ni,
                       action_noise=noise, expert_warm_start=warm)
        if config.cycle_episodes:
            tag = f"cycle:{task}"
            cycle = HandoverPolicy(RandomPolicy(final_expert.action_space, seed=config.seed + 889),
                                   expert(final_expert, config.action_noise, config.seed + 888, tag),
                                   config.cycle_random_steps, then_steps=config.cycle_expert_steps)
            record(tag, cycle, config.cycle_episodes, config.seed + 800_000 + 1000 * ti,
                   random_steps_per_cycle=config.cycle_random_steps, expert_steps_per_cycle=config.cycle_expert_steps,
                   action_noise=config.action_noise)
        if config.handover_episodes:
            tag = f"handover:{task}"
            handover = HandoverPolicy(RandomPolicy(final_expert.action_space, seed=config.seed + 778),
                                      expert(final_expert, config.action_noise, config.seed + 777, tag),
                                      config.handover_steps)
            record(tag, handover, config.handover_episodes, config.seed + 700_000 + 1000 * ti,
                   random_steps_first=config.handover_steps, action_noise=config.action_noise)
        final = expert(final_expert, config.action_noise / 2, config.seed + 999, f"heldout:{task}")
        collect(task=task, policy=final, store=heldout, num_episodes=config.heldout_episodes, source=f"heldout:{task}",
                seed=config.seed + 500_000 + 1000 * ti, **common)
    collect(task=tasks[0], policy="random", store=data, num_episodes=config.random_episodes, source="random",
            seed=config.seed + 900_000, **common)
    recipe["sources"].append({"source": "random", "task": tasks[0], "episodes": config.random_episodes})
    recipe["sources"] += other_sources(data, {s["source"] for s in recipe["sources"]})
    recipe.update(episodes=len(data), frames=data.num_frames, heldout_episodes=len(heldout),
                  expert=asdict(config.expert), expert_algo=config.expert_algo,
                  expert_task_steps=config.expert_task_steps)
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
    init = record_mfwm_init(out, config.mfwm_init) if config.mfwm_init else None
    train_mfwm(data, config.preset, out_dir=out / "mfwm", steps=config.mfwm_steps, seed=config.seed,
               device=config.device, progress=progress, vlm=vlm, init=init)
    if last == 3:
        return out

    # 5. clips --------------------------------------------------------------------------------------------------------
    write_prompt_clips(heldout, tasks, out / "clips", frames=config.clip_frames,
                       reward_tolerance=config.clip_reward_tolerance)
    return out


def other_sources(store: Any, known: set[str]) -> list[dict[str, Any]]:
    """Recipe entries for the episodes of ``store`` whose source is not in ``known``: episodes added by another command
    (``benchmarks.collect_agents``: a model's own agents), so that the recipe accounts for every episode trained on."""
    found: dict[str, dict[str, Any]] = {}
    for info in store.episode_info().values():
        source = str(info.get("source"))
        if source not in known:
            entry = found.setdefault(source, {"source": source, "task": info.get("task"), "episodes": 0,
                                              "added_outside_the_pipeline": True})
            entry["episodes"] += 1
    return sorted(found.values(), key=lambda e: e["source"])


def record_mfwm_init(out_dir: str | Path, init: str | os.PathLike[str]) -> Path:
    """Check the world model a run continues and record it in ``<out_dir>/mfwm_init.json`` (file, sha256, updates).

    :raises FileNotFoundError: no such file.
    :raises CheckpointError: a resumed run whose recorded init has other bytes (its checkpoint continues that one).
    """
    path = Path(init).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"mfwm_init {path} does not exist: pass a model.pt (e.g. genrl_gym/pretrained/<domain>/"
                                "model.pt) or a run's mfwm/mfwm.pt")
    record_path = Path(out_dir) / "mfwm_init.json"
    digest = file_sha256(path)
    if record_path.is_file():
        before = read_json(record_path)  # a corrupt record is a CheckpointError that names the file
        if before.get("sha256") != digest:
            raise CheckpointError(f"{record_path}: this run continues {before.get('file')} (sha256 "
                                  f"{str(before.get('sha256'))[:12]}...), but mfwm_init {path} has sha256 {digest[:12]}...; "
                                  "use another --out or the same init file")
        return path
    meta = MFWM.load(path).metadata
    updates = meta.get("updates")
    record = {"file": str(path), "sha256": digest, "updates": updates if isinstance(updates, int) else None,
              "exported_from": meta.get("exported_from")}
    with atomic_write(record_path, "w") as f:
        json.dump(record, f, indent=2)
    return path


def window_sums(task_reward: np.ndarray, length: int) -> np.ndarray:
    """Summed true reward of every ``length``-row window; entry ``i`` is the window starting at row ``i + 1``
    (the first row is a reset and is never part of a clip)."""
    r = np.asarray(task_reward, dtype=np.float64)[1:]
    if len(r) < length:
        raise ValueError(f"episode has {len(r)} steps, fewer than the clip length {length}")
    return np.convolve(r, np.ones(length), mode="valid")


def frame_motion(images: np.ndarray) -> np.ndarray:
    """Mean absolute change between consecutive frames (``[T, H, W, C]`` uint8 -> ``[T - 1]``, in 0-255 units)."""
    x = np.asarray(images, dtype=np.int16)
    return np.abs(x[1:] - x[:-1]).mean(axis=(1, 2, 3))


def write_prompt_clips(heldout: Any, tasks: tuple[str, ...], out_dir: str | Path, *, frames: int = 32,
                       reward_tolerance: float = 0.0) -> dict[str, Path]:
    """For each task, cut a ``frames``-frame window of its held-out episodes into ``<out_dir>/<task>.gif``.

    The window has the highest mean true reward, up to ``reward_tolerance``: among all windows within that fraction
    of the best one, the one with the least frame-to-frame motion is cut. Rewards that saturate (walker stand pays
    full reward for any upright pose, walk for any speed above 1 m/s) leave many windows tied near the top, and the
    one without extra motion shows the behaviour most clearly (a stepping, swaying "stand" clip prompts motion).
    ``reward_tolerance=0`` (the default) picks the highest-reward window alone.

    Also writes ``<out_dir>/clips.json``: per clip the source episode, start row, mean true reward per step, mean
    motion and the best reward among all windows.
    """
    if not 0 <= reward_tolerance < 1:
        raise ValueError(f"reward_tolerance is a fraction of the best window's reward in [0, 1), got {reward_tolerance}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clips: dict[str, Path] = {}
    info: dict[str, Any] = {}
    episodes = heldout.episode_info()
    for task in tasks:
        windows: list[tuple[float, float, Path, int]] = []  # (mean reward per step, mean motion, episode, start row)
        for path in heldout.paths():
            if episodes.get(path.stem, {}).get("task") != task:
                continue
            ep = heldout.load(path)
            if len(ep["task_reward"]) <= frames:
                continue
            means = window_sums(ep["task_reward"], frames) / frames
            # motion inside the window starting at row i + 1: the changes between its frames
            motions = np.convolve(frame_motion(ep["image"])[1:], np.ones(frames - 1), mode="valid") / (frames - 1)
            windows += [(float(m), float(v), path, i + 1) for i, (m, v) in enumerate(zip(means, motions))]
        if not windows:
            raise ValueError(f"no held-out episode of task {task!r} is longer than {frames} steps")
        top = max(w[0] for w in windows)
        near_top = [w for w in windows if w[0] >= top - reward_tolerance * abs(top)]
        score, motion, path, start = min(near_top, key=lambda w: (w[1], -w[0]))
        ep = heldout.load(path)
        clips[task] = write_video(ep["image"][start:start + frames], out / f"{task}.gif")
        info[task] = {"episode": path.name, "start": start, "frames": frames, "mean_task_reward_per_step": score,
                      "mean_motion": motion, "best_mean_task_reward_per_step": top,
                      "reward_tolerance": reward_tolerance}
    with atomic_write(out / "clips.json", "w") as f:
        json.dump(info, f, indent=2)
    return clips
