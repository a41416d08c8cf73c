"""The ``genrl`` command: subcommands follow the data flow.

``collect -> embed -> train-mfwm`` (or ``pipeline`` for all three, with expert data), then ``prompts``,
``imagine``, ``train-agent``, ``train-sb3``, ``evaluate`` and ``demo``; ``export`` and ``report`` ship a model;
``store verify`` checks an episode store and moves damaged files aside. Every command that produces
something writes into one run folder (``--out``): its resolved configuration (``config.json``), TensorBoard logs
(``tb/``) and its outputs. Long commands show progress bars and can be interrupted with Ctrl-C and run again with
the same arguments to resume; that also holds after a ``kill -9`` (``benchmarks/bench_faults.py`` checks it).

Each subcommand's flags are the fields of its configuration dataclass (``PipelineConfig``, ``DemoConfig``, and the
``*Args`` classes of ``genrl_gym.cli``), with the fields' docstrings as help. Benchmarks live in the repository, not
in the installed command: ``python -m benchmarks`` (or ``make bench``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import textwrap
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, cast

import gymnasium as gym
import numpy as np
import stable_baselines3 as sb3
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy

from genrl_gym import prompts
from genrl_gym._argparse_dataclass import add_dataclass_arguments, dataclass_from_args, plain_text
from genrl_gym.agents import GenRLAgent, RealityCheck, evaluate_task_return
from genrl_gym.agents.actor_critic import AgentPresetName
from genrl_gym.data import EpisodeStore, SB3Policy, collect
from genrl_gym.demo import DemoConfig, run_demo
from genrl_gym.envs import env_id, get_task, make_pixel_env
from genrl_gym.model_store import available_models, resolve_model
from genrl_gym.prompts import IMAGE_SUFFIXES, VIDEO_SUFFIXES, decode_target, example, target_from_prompt, write_video
from genrl_gym.training.experts import ExpertPolicy, is_expert_stage
from genrl_gym.training.export import export_model
from genrl_gym.training.grounding import (DEFAULT_CAPTION_SETS, DEFAULT_METHOD, DEFAULT_RIDGE, DEFAULT_SEEDS,
                                         DEFAULT_TARGET_HORIZON, ground_model)
from genrl_gym.training.pipeline import PipelineConfig, run_pipeline
from genrl_gym.training.report import model_report
from genrl_gym.training.trainer import train_mfwm
from genrl_gym.utils import GenRLError, atomic_write, remove_stale_temp_files
from genrl_gym.vlm import load_vlm
from genrl_gym.vlm.embed import embed_store
from genrl_gym.vlm.grounding import DEFAULT_THRESHOLD, GROUNDING_FILE, TextGrounding
from genrl_gym.wrappers import GenRLLogCallback

if TYPE_CHECKING:
    from genrl_gym.demo import DemoConfig
    from genrl_gym.training.pipeline import PipelineConfig

_POSITIVE = {"positive": True}
_ALIGNS = {"choices": "genrl_gym.reward:ALIGNS"}


def _write_config(out: Path, command: str, *configs: Any) -> None:
    """Record the resolved configuration of a run (its config dataclasses) in ``<out>/config.json``."""
    out.mkdir(parents=True, exist_ok=True)
    cfg: dict[str, Any] = {}
    for c in configs:
        cfg.update(dataclasses.asdict(c))
    cfg = {k: (str(v) if isinstance(v, Path) else v) for k, v in cfg.items()}
    cfg.update(command=command, time=time.strftime("%Y-%m-%dT%H:%M:%S"))
    with atomic_write(out / "config.json", "w") as f:
        json.dump(cfg, f, indent=2, default=str)


# ------------------------------------------------------------------------------------------------- command configs
# One dataclass per command that has no configuration class of its own in the library; its fields are the flags.
@dataclass(kw_only=True)
class CollectArgs:
    """Collect pixel episodes of a task into an episode store (resumable)."""

    domain: str
    """walker, cheetah, quadruped or stickman (the domains of :data:`genrl_gym.envs.TASKS`)."""
    task: str
    """A task of the domain (see :data:`genrl_gym.envs.TASKS`)."""
    out: Path
    """Episode store folder (created; resumes if it exists)."""
    episodes: int = field(default=10, metadata=_POSITIVE)
    """Episodes of this source the store should hold."""
    envs: int = field(default=1, metadata=_POSITIVE)
    """Parallel environments."""
    vectorization: Literal["sync", "async"] = "sync"
    """``async`` = one worker process per environment."""
    policy: str = "random"
    """``random`` or the path of an SB3 model zip (or of an expert stage written by ``genrl pipeline``)."""
    obs_key: str = "proprio"
    """What the SB3 policy reads: proprio or image."""
    noise: float = 0.0
    """Std of Gaussian noise added to policy actions."""
    deterministic: bool = False
    """The policy's mean action (then ``noise``); how the pipeline collects with SAC experts."""
    episode_frames: int = field(default=1000, metadata=_POSITIVE)
    """Physics frames per episode."""
    render_quality: str = field(default="fast", metadata={"choices": "genrl_gym.envs.pixel_env:RENDER_QUALITIES"})
    """Renderer settings."""
    seed: int = 0
    """Seed of the first episode (episode i uses seed + i)."""


@dataclass(kw_only=True)
class EmbedArgs:
    """Embed every 8-frame window of an episode store with a VLM (resumable)."""

    data: Path
    """Episode store folder."""
    vlm: str = "video-only"
    """VLM spec: ``video-only`` (offline default) or ``open_clip:<arch>:<pretrained tag or weights file>``."""
    batch_size: int = field(default=64, metadata=_POSITIVE)
    """Windows per VLM call."""
    overwrite: bool = False
    """Re-embed (also replaces another VLM's embeddings)."""
    device: str = "cpu"
    """Torch device of the VLM."""


@dataclass(kw_only=True)
class TrainMFWMArgs:
    """Train a multimodal-foundation world model on an embedded store."""

    data: Path
    """Embedded episode store."""
    out: Path
    """Run folder: config.json, checkpoint.pt, mfwm.pt, tb/."""
    preset: str = field(default="cpu", metadata={"choices": "genrl_gym.models.presets:PRESETS"})
    """Model size preset (:data:`genrl_gym.models.PRESETS`)."""
    steps: int | None = field(default=None, metadata=_POSITIVE)
    """Updates (default: the preset's)."""
    stages: str = field(default="joint", metadata={"choices": "genrl_gym.training.trainer:STAGES"})
    """What is trained: ``joint`` (world model + connector/aligner), ``wm`` or ``connector``."""
    resume: bool = True
    """Resume from an existing checkpoint in ``out`` (``--no-resume`` ignores it)."""
    checkpoint_every: int | None = field(default=None, metadata=_POSITIVE)
    """Write checkpoint.pt every this many updates (default: the preset's)."""
    seed: int = 0
    """Training seed."""
    device: str | None = None
    """cpu, cuda, cuda:1 ... (default: cuda if available)."""
    init: Path | None = None
    """Start from these weights (a ``model.pt`` or ``mfwm.pt`` of the same preset and VLM) instead of from scratch."""


@dataclass(kw_only=True)
class PipelineArgs:
    """Where ``genrl pipeline`` writes and how far it goes (the rest is :class:`PipelineConfig`)."""

    out: Path
    """Run folder (resumable)."""
    until: str = field(default="clips", metadata={"choices": "genrl_gym.training.pipeline:PIPELINE_STAGES"})
    """Last stage to run."""


@dataclass(kw_only=True)
class PromptsArgs:
    """List the shipped in-domain prompt clips."""

    domain: str | None = None
    """Only this domain's clips (default: all)."""


@dataclass(kw_only=True)
class GroundArgs:
    """Fit a video-only model's text grounding (sentence encoder -> its VLM space) and write grounding.npz beside it
    (recorded in its model.json)."""

    model: str
    """Checkpoint path, model folder or model name."""
    out: Path | None = None
    """Folder to write into (default: the model's folder)."""
    store: Path | None = None
    """Episode store with task-labelled episodes to fit on too."""
    seeds: int = field(default=DEFAULT_SEEDS, metadata=_POSITIVE)
    """Connector seeds of each clip's decoded target."""
    target_steps: int = field(default=DEFAULT_TARGET_HORIZON, metadata=_POSITIVE)
    """Steps of each decoded target rollout; the fitting windows are its 8-frame windows (7 steps: the first only)."""
    method: Literal["kernel", "ridge"] = DEFAULT_METHOD
    """The map: kernel regression over the captions or a ridge (linear) map."""
    ridge: float = DEFAULT_RIDGE
    """Ridge penalty of the ridge map."""
    threshold: float = DEFAULT_THRESHOLD
    """Grounding threshold: the least sentence cosine similarity to a known behaviour's captions."""
    caption_sets: tuple[str, ...] = DEFAULT_CAPTION_SETS
    """Fitting caption sets of genrl_gym/vlm/captions.json (e.g. fitting fitting_extra)."""


@dataclass(kw_only=True)
class ImagineArgs:
    """Decode a prompt's target trajectory to a GIF/MP4: what the model thinks it means."""

    model: str = "walker"
    """Checkpoint path or model name (GENRL_HOME or shipped)."""
    prompt: str
    """Text, a video file, or domain/task for a shipped clip."""
    out: Path = Path("imagined.gif")
    """.gif or .mp4."""
    vlm: str | None = None
    """VLM spec (default: the model's own)."""
    horizon: int = field(default=16, metadata=_POSITIVE)
    """Steps of the target trajectory."""


@dataclass(kw_only=True)
class TrainAgentArgs:
    """Train GenRLAgent in the world model's imagination from a prompt."""

    model: str = "walker"
    """Checkpoint path or model name (GENRL_HOME or shipped)."""
    prompt: str
    """Text, a video file, or domain/task for a shipped clip."""
    out: Path
    """Run folder: agent.zip, checkpoint.zip, config.json, tb/."""
    steps: int = field(default=5000, metadata=_POSITIVE)
    """Behaviour updates."""
    preset: AgentPresetName = field(default="small", metadata={"choices": "genrl_gym.agents.actor_critic:AGENT_PRESETS"})
    """GenRLAgent size preset (:data:`genrl_gym.agents.AGENT_PRESETS`)."""
    start: Literal["data_free", "offline"] = "data_free"
    """Imagination start states: ``data_free`` (no dataset) or ``offline`` (posteriors of ``data``)."""
    data: Path | None = None
    """Episode store for ``--start offline``."""
    vlm: str | None = None
    """VLM spec for the prompt (default: the model's)."""
    task: str = "stand"
    """Task whose true reward ``eval_episodes`` and the reality checks report."""
    eval_episodes: int = 0
    """Evaluate on the true reward after training (this many episodes)."""
    reality_every: int = 500
    """Every this many updates, run the policy for 500 real frames and log (TensorBoard ``reality/``) the GenRL reward
    per step it earns there beside the one it earns in imagination, and its true return; 0 = never."""
    checkpoint_every: int = field(default=500, metadata=_POSITIVE)
    """Write <out>/checkpoint.zip every this many updates; a rerun resumes from it."""
    resume: bool = True
    """Resume from an existing checkpoint.zip in ``out`` (``--no-resume`` ignores it)."""
    seed: int = 0
    """Training seed."""
    device: str = "auto"
    """Torch device (``auto``: cuda if available)."""


@dataclass(kw_only=True)
class StoreVerifyArgs:
    """Read every episode (CRC-checked) and embedding file of a store and list the damaged ones (exit status 1 if
    any). ``--quarantine`` moves them to <store>/quarantine/ so that training continues on the rest."""

    data: Path = field(metadata={"positional": True})
    """Episode store folder."""
    quarantine: bool = False
    """Move damaged files to <store>/quarantine/ (store.json updated atomically; refused while another process writes
    to the store)."""
    embeddings: bool = True
    """Check embedding files too (``--no-embeddings``: episode files only)."""


@dataclass(kw_only=True)
class TrainSB3Args:
    """Train any SB3 algorithm on the GenRL reward of GenRL/<Domain>-v0."""

    algo: str = "SAC"
    """SB3 algorithm class: SAC, PPO, TD3, A2C ..."""
    domain: str = "walker"
    """Domain of the env and the model."""
    task: str = "stand"
    """True reward reported in info['task_reward']."""
    model: str = "walker"
    """Checkpoint path or model name."""
    prompt: str
    """Text, a video file, or domain/task for a shipped clip."""
    out: Path
    """Run folder: model.zip, config.json, tb/."""
    steps: int = field(default=20_000, metadata=_POSITIVE)
    """Environment steps."""
    proprio: bool = False
    """Policy reads proprioception (reward still from pixels)."""
    eval_episodes: int = 0
    """Evaluate on the true reward after training (this many episodes)."""
    seed: int = 0
    """Training seed."""


@dataclass(kw_only=True)
class EvaluateArgs:
    """True task return (and optionally the GenRL score) of a trained policy."""

    agent: str
    """GenRLAgent zip, SB3 zip, pipeline expert stage, or ``random``."""
    domain: str = "walker"
    """Domain of the env."""
    task: str = "stand"
    """Task whose true return is reported."""
    episodes: int = field(default=3, metadata=_POSITIVE)
    """One episode per seed."""
    prompt: str | None = None
    """Also report the GenRL score of this prompt."""
    model: str | None = None
    """Model for ``prompt`` (default: the domain's)."""
    episode_frames: int = field(default=1000, metadata=_POSITIVE)
    """Physics frames per episode (1000: the paper's)."""
    out: Path = Path("runs/evaluate")
    """Folder for evaluation.json and rollout.gif."""
    seed: int = 0
    """First seed (episode i uses seed + i)."""


@dataclass(kw_only=True)
class ExportArgs:
    """Ship a pipeline run's model: fp16 model.pt + prompt clips + model.json into a folder."""

    run: Path
    """``genrl pipeline --out`` folder (mfwm/, clips/, recipe.json)."""
    domain: str
    """The model's domain (checked against the checkpoint)."""
    dest: Path | None = None
    """Output folder (default: genrl_gym/pretrained/<domain>)."""
    fp32: bool = False
    """Keep fp32 weights (default: fp16)."""
    max_mb: float = field(default=25.0, metadata=_POSITIVE)
    """Refuse a model.pt larger than this (MB)."""
    align: str | None = field(default=None, metadata=_ALIGNS)
    """The reward alignment the model was checked with, recorded in its metadata; envs, agents and reports use it by
    default (default: keep the run's, else the reference's sequence)."""


@dataclass(kw_only=True)
class ReportArgs:
    """Quality report of a world model: curves, reconstructions, prompts, discrimination."""

    run: Path
    """``genrl pipeline --out`` folder (TensorBoard logs, clips, heldout)."""
    out: Path
    """Folder for REPORT.md, report.json and the PNGs."""
    model: Path | None = None
    """Model to report on (default: the run's mfwm/mfwm.pt; an exported folder uses its own prompts/)."""
    heldout: Path | None = None
    """Held-out episode store (default: <run>/heldout)."""
    tasks: tuple[str, ...] | None = None
    """Tasks (default: those with prompt clips)."""
    seed: int = 0
    """Connector seed of the prompt targets (0: the envs')."""
    random_episodes: int = 3
    """Random-action episodes scored as an extra column."""
    align: str | None = field(default=None, metadata=_ALIGNS)
    """Alignment of the discrimination reward (:mod:`genrl_gym.reward`; default: the model's, as the envs)."""


# ---------------------------------------------------------------------------------------------------------- commands
def cmd_collect(args: CollectArgs) -> int:
    get_task(args.domain, args.task)
    policy: Any = "random"
    if args.policy != "random":
        policy = SB3Policy(_load_sb3_like(args.policy), obs_key=args.obs_key, noise_std=args.noise, seed=args.seed,
                           deterministic=args.deterministic)
    _write_config(args.out, "collect", args)
    stats = collect(domain=args.domain, task=args.task, policy=policy, store=args.out, num_episodes=args.episodes,
                    num_envs=args.envs, vectorization=args.vectorization, seed=args.seed,
                    env_kwargs={"episode_frames": args.episode_frames, "render_quality": args.render_quality})
    print(f"{args.out}: {stats.episodes_collected} new episodes ({stats.episodes_existing} already there), "
          f"{stats.frames} frames at {stats.frames_per_second:.0f} frames/s")
    return 0


def _load_sb3_like(path: str) -> Any:
    """An SB3 zip (any algorithm) or an expert stage written by ``genrl pipeline``."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"--policy {path}: no such file; pass 'random' or the path of an SB3 model zip")

    if is_expert_stage(p):
        return ExpertPolicy(p)

    # An SB3 zip does not name its algorithm in a stable field: try the algorithms that fit continuous control.
    for name in ("PPO", "SAC", "TD3", "A2C", "DDPG"):
        try:
            return getattr(sb3, name).load(str(p), device="cpu")
        except Exception:  # noqa: BLE001  (try the next algorithm class)
            continue
    raise GenRLError(f"--policy {path}: not a Stable-Baselines3 PPO/SAC/TD3/A2C/DDPG model zip")


def cmd_embed(args: EmbedArgs) -> int:
    store = EpisodeStore(args.data, create=False)
    vlm = load_vlm(args.vlm, device=args.device)
    n = embed_store(store, vlm, batch_size=args.batch_size, overwrite=args.overwrite)
    print(f"{args.data}: embedded {n} episodes with {vlm.identity}")
    return 0


def cmd_train_mfwm(args: TrainMFWMArgs) -> int:
    _write_config(args.out, "train-mfwm", args)
    model = train_mfwm(args.data, args.preset, out_dir=args.out, steps=args.steps, stages=args.stages,
                       resume=args.resume, seed=args.seed, device=args.device,
                       checkpoint_every=args.checkpoint_every, init=args.init)
    print(f"model: {Path(args.out) / 'mfwm.pt'} ({model.domain}, VLM {model.vlm_identity})")
    return 0


def cmd_pipeline(args: PipelineArgs, cfg: PipelineConfig) -> int:
    cfg = dataclasses.replace(cfg, expert=dataclasses.replace(cfg.expert, seed=cfg.seed))  # one seed for all stages
    _write_config(args.out, "pipeline", args, cfg)
    run_pipeline(args.out, cfg, until=args.until)
    print(f"pipeline finished up to '{args.until}': {args.out}")
    return 0


def cmd_prompts(args: PromptsArgs) -> int:
    clips = prompts.list_examples(args.domain)
    if not clips:
        print(f"no prompt clips are shipped for {args.domain or 'any domain'} yet")
        return 0
    for (domain, task), path in sorted(clips.items()):
        print(f"{domain:10s} {task:12s} {path}")
    _print_text_behaviours(args.domain)
    return 0


def _print_text_behaviours(domain: str | None) -> None:
    """The text behaviours of each named model with a text grounding (``genrl prompts``)."""
    rows = []
    for name, ckpt in sorted(available_models().items()):
        file = ckpt.parent / GROUNDING_FILE
        if not file.is_file():
            continue
        g = TextGrounding.load(file)
        if domain is None or g.domain == domain:
            rows.append(f"{name:10s} {', '.join(g.behaviours)}  (paraphrases too, e.g. --prompt \"{g.behaviours[-1]}\"; "
                        f"{g.encoder} grounding, threshold {g.threshold:.2f})")
    if rows:
        print("\ntext prompts (offline models: paraphrases of the behaviours in each model's data):")
        print("\n".join(rows))


def cmd_ground(args: GroundArgs) -> int:
    command = "genrl ground " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else None
    grounding, path = ground_model(args.model, out=args.out, store=args.store, seeds=args.seeds,
                                   horizon=args.target_steps, method=args.method,
                                   ridge=args.ridge, threshold=args.threshold, caption_sets=args.caption_sets,
                                   command=command)
    print(f"text grounding of {args.model}: behaviours {', '.join(grounding.behaviours)}, "
          f"{grounding.info['windows']} windows, {len(grounding.caption_texts)} captions -> {path}")
    return 0


def cmd_imagine(args: ImagineArgs) -> int:
    model = resolve_model(args.model)
    vlm = load_vlm(args.vlm) if args.vlm else None
    target = target_from_prompt(model, _prompt_arg(args.prompt), vlm=vlm, horizon=args.horizon)
    path = write_video(decode_target(model, target), args.out)
    print(f"imagined '{target.prompt}' ({target.kind} prompt, {len(target.features)} steps): {path}")
    return 0


def _prompt_arg(prompt: str) -> str:
    """Prompts are text, a video or image path, or ``domain/task`` naming a shipped clip."""
    if not Path(prompt).exists() and "/" in prompt and not prompt.lower().endswith(VIDEO_SUFFIXES + IMAGE_SUFFIXES):
        domain, task = prompt.split("/", 1)

        return str(example(domain, task))
    return prompt


#: Arguments of ``train-agent`` that must match for a rerun to resume from ``<out>/checkpoint.zip``.
_AGENT_RUN_KEYS = ("model", "prompt", "preset", "start", "data", "vlm", "seed")


def _check_same_agent_run(args: TrainAgentArgs, checkpoint: Path) -> None:
    """Refuse to resume ``checkpoint`` with other arguments than the run that wrote it (recorded in config.json)."""
    try:
        old = json.loads((args.out / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return  # no readable record: the checkpoint's own model/prompt are used
    new = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(args).items()}
    diff = [f"--{k.replace('_', '-')} {old.get(k)!r} -> {new.get(k)!r}" for k in _AGENT_RUN_KEYS if old.get(k) != new.get(k)]
    if old.get("command") == "train-agent" and diff:
        raise GenRLError(f"{checkpoint}: written by a train-agent run with other arguments ({'; '.join(diff)}); rerun "
                         "with that run's arguments to resume it, pass --no-resume to start over in this folder, or use "
                         "another --out")


def cmd_train_agent(args: TrainAgentArgs) -> int:
    if args.reality_every < 0:
        raise ValueError(f"--reality-every {args.reality_every}: give a number of updates, or 0 for no reality checks")
    checkpoint = args.out / "checkpoint.zip"
    resume = checkpoint.is_file() and args.resume
    if resume:
        _check_same_agent_run(args, checkpoint)
    _write_config(args.out, "train-agent", args)
    for name in ("checkpoint.zip", "agent.zip"):  # left by a run killed while writing them
        remove_stale_temp_files(args.out / name)
    store = None
    if args.start == "offline":
        if args.data is None:
            raise ValueError("--start offline needs --data <episode store> (or use --start data_free)")

        store = EpisodeStore(args.data, create=False)
    tb = str(args.out / "tb")
    if resume:
        agent = GenRLAgent.load(checkpoint, store=store, device=args.device, tensorboard_log=tb, verbose=1)
        print(f"resuming from {checkpoint} at update {agent.num_timesteps} of {args.steps}")
    else:
        agent = GenRLAgent(args.model, _prompt_arg(args.prompt), vlm=args.vlm, preset=args.preset, start=args.start,
                           store=store, seed=args.seed, device=args.device, tensorboard_log=tb, verbose=1)

    class Checkpoint(BaseCallback):
        """Save the agent to ``checkpoint`` every ``--checkpoint-every`` updates (atomic; resumed by a rerun)."""

        def _on_step(self) -> bool:
            if self.num_timesteps % args.checkpoint_every == 0 and self.num_timesteps < args.steps:
                agent.save(checkpoint)
            return True

    remaining = args.steps - agent.num_timesteps
    if remaining > 0:
        callbacks: list[BaseCallback] = [Checkpoint()]
        if args.reality_every > 0:
            callbacks.append(RealityCheck(args.task, every=args.reality_every, prompt=_prompt_arg(args.prompt)))
        agent.learn(total_timesteps=remaining, callback=callbacks, reset_num_timesteps=not resume,
                    progress_bar=True)
        agent.save(checkpoint)  # the final state first: a kill while writing agent.zip resumes with 0 updates to go
    path = agent.save(args.out / "agent.zip")
    print(f"agent: {path}")
    if args.eval_episodes:
        return _evaluate(agent, agent.world_model.domain, args.task, args.eval_episodes, args.out / "rollout.gif")
    return 0


def cmd_store_verify(args: StoreVerifyArgs) -> int:
    store = EpisodeStore(args.data, create=False)
    damaged = store.check(with_embeddings=args.embeddings, progress=True)
    episodes = len(store.paths())
    missing = 0 if not args.embeddings else sum(not store.has_embedding(p) for p in store.paths())
    for d in damaged:
        print(f"damaged {d.kind}: {d.path}\n    {d.problem}")
    bad_eps = sum(d.kind == "episode" for d in damaged)
    bad_emb = len(damaged) - bad_eps
    print(f"{args.data}: {episodes} episodes checked, {bad_eps} damaged episode files, {bad_emb} damaged embedding "
          f"files" + (f", {missing} episodes without embeddings" if missing else ""))
    if not damaged:
        return 0
    if not args.quarantine:
        print("run again with --quarantine to move them to quarantine/ so that training uses the rest")
        return 1
    moved = store.quarantine(damaged)
    print(f"moved {len(moved)} files to {store.root / 'quarantine'}; training now uses the other episodes"
          + ("; `genrl collect` with the same arguments re-collects the quarantined episodes" if bad_eps else "")
          + ("; `genrl embed` re-embeds episodes whose embedding was quarantined" if bad_emb else ""))
    return 0


def cmd_train_sb3(args: TrainSB3Args) -> int:
    algo = getattr(sb3, args.algo, None)
    if algo is None:
        raise ValueError(f"--algo {args.algo}: not a Stable-Baselines3 algorithm (e.g. SAC, PPO, TD3, A2C)")
    _write_config(args.out, "train-sb3", args)

    env = gym.make(env_id(args.domain), prompt=_prompt_arg(args.prompt), model=args.model, task=args.task,
                   proprio=args.proprio)
    if args.proprio:
        env = gym.wrappers.FilterObservation(env, ["proprio"])
    model = algo("MultiInputPolicy", env, seed=args.seed, tensorboard_log=str(args.out / "tb"), verbose=1,
                 **({"buffer_size": 100_000} if args.algo in ("SAC", "TD3", "DDPG") else {}))
    model.learn(total_timesteps=args.steps, callback=GenRLLogCallback(), progress_bar=True)
    model.save(args.out / "model.zip")
    print(f"model: {args.out / 'model.zip'}")
    if args.eval_episodes and not args.proprio:
        return _evaluate(model, args.domain, args.task, args.eval_episodes, args.out / "rollout.gif")
    return 0


def cmd_evaluate(args: EvaluateArgs) -> int:
    _write_config(args.out, "evaluate", args)
    if args.agent == "random":
        env = make_pixel_env(args.domain, args.task)
        rng = np.random.default_rng(args.seed)
        policy: Any = lambda obs: rng.uniform(-1, 1, env.action_space.shape).astype("float32")  # noqa: E731
        env.close()
    elif Path(args.agent).exists():
        policy = _load_agent(args.agent)
    else:
        raise FileNotFoundError(f"--agent {args.agent}: no such file; pass a GenRLAgent/SB3 zip or 'random'")
    return _evaluate(policy, args.domain, args.task, args.episodes, args.out / "rollout.gif", seed=args.seed,
                     prompt=args.prompt, model=args.model, out=args.out, episode_frames=args.episode_frames)


def _load_agent(path: str) -> Any:
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError) as e:
        raise GenRLError(f"--agent {path}: truncated or corrupt zip file ({e}); save or train the agent again") from e
    if "genrl_agent.json" in names:
        return GenRLAgent.load(path)
    return _load_sb3_like(path)


def _evaluate(policy: Any, domain: str, task: str, episodes: int, video: Path, *, seed: int = 0,
              prompt: str | None = None, model: str | None = None, out: Path | None = None,
              episode_frames: int = 1000) -> int:
    seeds = list(range(seed, seed + episodes))
    env_kwargs = None
    if isinstance(policy, ExpertPolicy):  # a pipeline expert stage reads proprioception, not pixels
        if prompt is not None:
            raise GenRLError("--prompt: the GenRL score needs a pixel policy; an expert stage reads proprioception")
        expert = policy
        policy = lambda obs: expert.predict(obs["proprio"][None], deterministic=True)[0][0]  # noqa: E731
        env_kwargs = {"proprio": True}
    ev = evaluate_task_return(policy, domain, task, seeds=seeds, video_path=video, episode_frames=episode_frames,
                              env_kwargs=env_kwargs)
    norm = ev["normalized_mean"]
    print(f"{domain} {task}: true return {ev['mean']:.1f} +- {ev['std']:.1f} over seeds {seeds}"
          + ("" if norm is None else f", normalised {norm:.3f}") + f"; rollout video {ev['video_path']}")
    if prompt is not None:
        score = _genrl_score(policy, domain, task, prompt, model, seeds, episode_frames)
        ev["genrl_score_mean"] = score
        print(f"GenRL score of prompt {prompt!r}: {score:.3f} per step")
    if out is not None:
        with atomic_write(out / "evaluation.json", "w") as f:
            json.dump(ev, f, indent=2, default=str)
    return 0


def _genrl_score(policy: Any, domain: str, task: str, prompt: str, model: str | None, seeds: list[int],
                 episode_frames: int = 1000) -> float:
    """Mean per-step GenRL score of ``policy`` on ``GenRL/<Domain>-v0`` with ``prompt`` (SB3 ``evaluate_policy``)."""
    env = gym.make(env_id(domain), prompt=_prompt_arg(prompt), model=model or domain, task=task,
                   episode_frames=episode_frames)
    if not hasattr(policy, "predict"):
        raise ValueError("the GenRL score needs a policy with predict() (a GenRLAgent or SB3 model)")
    env.reset(seed=seeds[0])
    # return_episode_rewards=True: per-episode returns and lengths (SB3 types the return as a union of both forms)
    rewards, lengths = cast(tuple[list[float], list[int]],
                            evaluate_policy(policy, env, n_eval_episodes=len(seeds), deterministic=True,
                                            return_episode_rewards=True))
    env.close()
    return float(sum(rewards) / max(sum(lengths), 1))


def cmd_demo(cfg: DemoConfig) -> int:
    run_demo(cfg)  # saves cfg as <out>/config.json
    return 0


def cmd_export(args: ExportArgs) -> int:
    path = export_model(args.run, args.domain, args.dest, half=not args.fp32, max_mb=args.max_mb,
                        align=args.align)
    info = json.loads((path.parent / "model.json").read_text())
    print(f"exported {args.run} -> {path} ({info['size_bytes'] / 1e6:.1f} MB, {info['weights_dtype']}, "
          f"{len(info['prompts'])} prompt clips in {path.parent / 'prompts'})")
    return 0


def cmd_report(args: ReportArgs) -> int:
    result = model_report(args.model or args.run, args.heldout, args.out, tasks=args.tasks, seed=args.seed,
                          run_dir=args.run, random_episodes=args.random_episodes, align=args.align)
    d = result["discrimination"]
    beats = d.get("beats_random") or {}
    rows = (f"discrimination rows passing: {sum(d['row_check'].values())}/{len(d['tasks'])} "
            f"({', '.join(f'{k}: {v}' for k, v in d['row_check'].items())})" if len(d["tasks"]) > 1
            else "one task: no task pairs to discriminate")
    print(f"report: {Path(args.out) / 'REPORT.md'}; {rows}"
          + (f"; own task above random episodes: {sum(beats.values())}/{len(beats)}" if beats else ""))
    return 0


# ------------------------------------------------------------------------------------------------------------ parser
class Spec(NamedTuple):
    """One configuration dataclass of a command and how its fields become flags
    (:func:`genrl_gym._argparse_dataclass.add_dataclass_arguments`)."""

    cls: type
    exclude: tuple[str, ...] = ()
    aliases: Mapping[str, Sequence[str]] = {}
    deprecated: Mapping[str, Sequence[str]] = {}


class Command(NamedTuple):
    """A ``genrl`` subcommand: its function, called with one config per spec, and the specs of its flags."""

    func: Callable[..., int]
    help: str
    specs: tuple[Spec, ...]


def commands() -> dict[str, Command]:
    """Every ``genrl`` subcommand (``store verify`` is the ``verify`` subcommand of ``store``)."""
    def one(func: Callable[..., int], cls: type, help_: str | None = None) -> Command:
        return Command(func, help_ or (cls.__doc__ or ""), (Spec(cls),))

    return {
        "collect": one(cmd_collect, CollectArgs),
        "embed": one(cmd_embed, EmbedArgs),
        "train-mfwm": one(cmd_train_mfwm, TrainMFWMArgs),
        "pipeline": Command(cmd_pipeline, "Experts -> collect -> embed -> train-mfwm -> prompt clips for one domain.", (
            Spec(PipelineArgs),
            # the experts' seed is the pipeline's; their SB3 keyword arguments are no command-line business
            Spec(PipelineConfig, exclude=("expert.seed", "expert.ppo_kwargs", "expert.sac_kwargs"),
                 aliases={"mfwm_steps": ["--steps"], "expert.total_steps": ["--expert-steps"]}))),
        "prompts": one(cmd_prompts, PromptsArgs),
        "ground": one(cmd_ground, GroundArgs),
        "imagine": one(cmd_imagine, ImagineArgs),
        "train-agent": one(cmd_train_agent, TrainAgentArgs),
        "store verify": one(cmd_store_verify, StoreVerifyArgs),
        "train-sb3": one(cmd_train_sb3, TrainSB3Args),
        "evaluate": one(cmd_evaluate, EvaluateArgs),
        "demo": one(cmd_demo, DemoConfig, "The main job: prompt -> imagined GIF -> GenRLAgent vs SAC vs random on the "
                    "true reward."),
        "export": Command(cmd_export, ExportArgs.__doc__ or "", (Spec(ExportArgs, deprecated={"align": ["--reward-align"]}),)),
        "report": one(cmd_report, ReportArgs),
    }


_GROUPS = {"store": "Episode store maintenance: verify (and quarantine) damaged files."}


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults in the help, except for required arguments (which have none)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return action.help if action.required else super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    """The ``genrl`` argument parser: one subparser per command, its flags generated from its config dataclasses."""
    p = argparse.ArgumentParser(prog="genrl", description=plain_text_paragraphs(__doc__ or ""),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    groups: dict[str, Any] = {}
    for name, command in commands().items():
        parent = sub
        if " " in name:  # a group such as `store verify`
            group, name = name.split(" ", 1)
            if group not in groups:
                gp = sub.add_parser(group, help=_GROUPS[group], description=_GROUPS[group])
                groups[group] = gp.add_subparsers(dest=f"{group}_command", metavar=f"{group.upper()}_COMMAND",
                                                  required=True)
            parent = groups[group]
        help_ = plain_text(command.help)
        sp = parent.add_parser(name, help=help_, description=help_, formatter_class=_HelpFormatter)
        for spec in command.specs:
            add_dataclass_arguments(sp, spec.cls, exclude=spec.exclude, aliases=spec.aliases, deprecated=spec.deprecated)
        sp.set_defaults(func=command.func, specs=command.specs)
    return p


def plain_text_paragraphs(doc: str) -> str:
    """:func:`plain_text` of each paragraph of ``doc``, wrapped at 100 columns (blank lines kept)."""
    return "\n\n".join(textwrap.fill(plain_text(par), width=100) for par in doc.strip().split("\n\n"))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``genrl`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        configs = [dataclass_from_args(spec.cls, args) for spec in args.specs]
        return int(args.func(*configs))
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to resume", file=sys.stderr)
        return 130
    except (GenRLError, ValueError, FileNotFoundError) as e:
        print(f"genrl {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
