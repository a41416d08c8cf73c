"""The ``genrl`` command: subcommands follow the data flow.

``collect -> embed -> train-mfwm`` (or ``pipeline`` for all three, with expert data), then ``prompts``,
``imagine``, ``train-agent``, ``train-sb3``, ``evaluate``, ``bench`` and ``demo``; ``store verify`` checks an
episode store and moves damaged files aside. Every command that produces
something writes into one run folder (``--out``): its resolved configuration (``config.json``), TensorBoard logs
(``tb/``) and its outputs. Long commands show progress bars and can be interrupted with Ctrl-C and run again with
the same arguments to resume; that also holds after a ``kill -9`` (``benchmarks/bench_faults.py`` checks it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from genrl_gym import _compat  # noqa: F401  (render/torch guard before anything renders)
from genrl_gym.utils import GenRLError, atomic_write, remove_stale_temp_files


def _write_config(out: Path, command: str, args: argparse.Namespace, **extra: Any) -> None:
    """Record the resolved command-line configuration of a run in ``<out>/config.json``."""
    out.mkdir(parents=True, exist_ok=True)
    cfg = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "func"}
    cfg.update(command=command, time=time.strftime("%Y-%m-%dT%H:%M:%S"), **extra)
    with atomic_write(out / "config.json", "w") as f:
        json.dump(cfg, f, indent=2, default=str)


def _positive(kind: type = int) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from e
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    return parse


# ---------------------------------------------------------------------------------------------------------- commands
def cmd_collect(args: argparse.Namespace) -> int:
    from genrl_gym.data import SB3Policy, collect
    from genrl_gym.envs import get_task

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
    from genrl_gym.training.experts import ExpertPolicy, is_expert_stage

    if is_expert_stage(p):
        return ExpertPolicy(p)
    import stable_baselines3 as sb3

    # An SB3 zip does not name its algorithm in a stable field: try the algorithms that fit continuous control.
    for name in ("PPO", "SAC", "TD3", "A2C", "DDPG"):
        try:
            return getattr(sb3, name).load(str(p), device="cpu")
        except Exception:  # noqa: BLE001  (try the next algorithm class)
            continue
    raise GenRLError(f"--policy {path}: not a Stable-Baselines3 PPO/SAC/TD3/A2C/DDPG model zip")


def cmd_embed(args: argparse.Namespace) -> int:
    from genrl_gym.data import EpisodeStore
    from genrl_gym.data.embed import embed_store
    from genrl_gym.vlm import load_vlm

    store = EpisodeStore(args.data, create=False)
    vlm = load_vlm(args.vlm, device=args.device)
    n = embed_store(store, vlm, batch_size=args.batch_size, overwrite=args.overwrite)
    print(f"{args.data}: embedded {n} episodes with {vlm.identity}")
    return 0


def cmd_train_mfwm(args: argparse.Namespace) -> int:
    from genrl_gym.training.trainer import train_mfwm

    _write_config(args.out, "train-mfwm", args)
    model = train_mfwm(args.data, args.preset, out_dir=args.out, steps=args.steps, stages=args.stages,
                       resume=not args.no_resume, seed=args.seed, device=args.device,
                       checkpoint_every=args.checkpoint_every)
    print(f"model: {Path(args.out) / 'mfwm.pt'} ({model.domain}, VLM {model.vlm_identity})")
    return 0


def _task_pair(text: str) -> tuple[str, str]:
    task, sep, source = text.partition("=")
    if not sep or not task or not source:
        raise argparse.ArgumentTypeError(f"expected TASK=VALUE (e.g. walk=stand or run=sac), got {text!r}")
    return task, source


def _task_steps(text: str) -> tuple[str, int]:
    task, steps = _task_pair(text)
    return task, _positive()(steps)


def cmd_pipeline(args: argparse.Namespace) -> int:
    from genrl_gym.training.experts import ExpertConfig
    from genrl_gym.training.pipeline import PipelineConfig, run_pipeline

    cfg = PipelineConfig(domain=args.domain, preset=args.preset, vlm=args.vlm, mfwm_steps=args.steps,
                         tasks=tuple(args.tasks or ()), episodes_per_stage=args.episodes_per_stage,
                         random_episodes=args.random_episodes, handover_episodes=args.handover_episodes,
                         handover_steps=args.handover_steps, heldout_episodes=args.heldout_episodes,
                         seed=args.seed, device=args.device,
                         expert=ExpertConfig(total_steps=args.expert_steps, seed=args.seed),
                         warm_start=dict(args.warm_start or ()), expert_algo=dict(args.expert_algo or ()),
                         expert_task_steps=dict(args.expert_task_steps or ()),
                         clip_reward_tolerance=args.clip_reward_tolerance)
    _write_config(args.out, "pipeline", args)
    run_pipeline(args.out, cfg, until=args.until)
    print(f"pipeline finished up to '{args.until}': {args.out}")
    return 0


def cmd_prompts(args: argparse.Namespace) -> int:
    from genrl_gym import prompts

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
    from genrl_gym.model_store import available_models
    from genrl_gym.vlm.grounding import GROUNDING_FILE, TextGrounding

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


def cmd_ground(args: argparse.Namespace) -> int:
    from genrl_gym.training.grounding import DEFAULT_RIDGE, DEFAULT_SEEDS, ground_model
    from genrl_gym.vlm.grounding import DEFAULT_THRESHOLD

    command = "genrl ground " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else None
    grounding, path = ground_model(args.model, out=args.out, store=args.store,
                                   seeds=args.seeds or DEFAULT_SEEDS, method=args.method,
                                   ridge=DEFAULT_RIDGE if args.ridge is None else args.ridge,
                                   threshold=DEFAULT_THRESHOLD if args.threshold is None else args.threshold,
                                   command=command)
    print(f"text grounding of {args.model}: behaviours {', '.join(grounding.behaviours)}, "
          f"{grounding.info['windows']} windows, {len(grounding.caption_texts)} captions -> {path}")
    return 0


def cmd_imagine(args: argparse.Namespace) -> int:
    from genrl_gym.model_store import resolve_model
    from genrl_gym.prompts import decode_target, target_from_prompt, write_video
    from genrl_gym.vlm import load_vlm

    model = resolve_model(args.model)
    vlm = load_vlm(args.vlm) if args.vlm else None
    target = target_from_prompt(model, _prompt_arg(args.prompt), vlm=vlm, horizon=args.horizon)
    path = write_video(decode_target(model, target), args.out)
    print(f"imagined '{target.prompt}' ({target.kind} prompt, {len(target.features)} steps): {path}")
    return 0


def _prompt_arg(prompt: str) -> str:
    """Prompts are text, a video or image path, or ``domain/task`` naming a shipped clip."""
    from genrl_gym.prompts import IMAGE_SUFFIXES, VIDEO_SUFFIXES

    if not Path(prompt).exists() and "/" in prompt and not prompt.lower().endswith(VIDEO_SUFFIXES + IMAGE_SUFFIXES):
        domain, task = prompt.split("/", 1)
        from genrl_gym.prompts import example

        return str(example(domain, task))
    return prompt


QUICK_BENCHMARKS = ("render", "collect", "vlm", "world_model", "reward", "agent")
LONG_BENCHMARKS = ("behaviour", "compare", "faults")


def cmd_bench(args: argparse.Namespace) -> int:
    import importlib
    import inspect
    import shlex

    names = args.names or list(QUICK_BENCHMARKS)
    extra = shlex.split(args.args) if args.args else []
    for name in names:
        if name not in QUICK_BENCHMARKS + LONG_BENCHMARKS:
            raise ValueError(f"unknown benchmark {name!r}; choose from {', '.join(QUICK_BENCHMARKS + LONG_BENCHMARKS)}")
        try:
            mod = importlib.import_module("benchmarks.compare" if name == "compare" else f"benchmarks.bench_{name}")
        except ModuleNotFoundError as e:
            raise ValueError("benchmarks live in the repository's benchmarks/ folder: run `genrl bench` from the "
                             "repository root") from e
        print(f"== bench {name}")
        if "argv" in inspect.signature(mod.main).parameters:
            mod.main(extra)
        elif extra:
            raise ValueError(f"benchmark {name!r} takes no arguments (got --args {args.args!r})")
        else:
            mod.main()
    return 0


#: Arguments of ``train-agent`` that must match for a rerun to resume from ``<out>/checkpoint.zip``.
_AGENT_RUN_KEYS = ("model", "prompt", "preset", "start", "data", "vlm", "seed")


def _check_same_agent_run(args: argparse.Namespace, checkpoint: Path) -> None:
    """Refuse to resume ``checkpoint`` with other arguments than the run that wrote it (recorded in config.json)."""
    try:
        old = json.loads((args.out / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return  # no readable record: the checkpoint's own model/prompt are used
    new = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    diff = [f"--{k.replace('_', '-')} {old.get(k)!r} -> {new.get(k)!r}" for k in _AGENT_RUN_KEYS if old.get(k) != new.get(k)]
    if old.get("command") == "train-agent" and diff:
        raise GenRLError(f"{checkpoint}: written by a train-agent run with other arguments ({'; '.join(diff)}); rerun "
                         "with that run's arguments to resume it, pass --no-resume to start over in this folder, or use "
                         "another --out")


def cmd_train_agent(args: argparse.Namespace) -> int:
    from stable_baselines3.common.callbacks import BaseCallback

    from genrl_gym.agents import GenRLAgent

    checkpoint = args.out / "checkpoint.zip"
    resume = checkpoint.is_file() and not args.no_resume
    if resume:
        _check_same_agent_run(args, checkpoint)
    _write_config(args.out, "train-agent", args)
    for name in ("checkpoint.zip", "agent.zip"):  # left by a run killed while writing them
        remove_stale_temp_files(args.out / name)
    store = None
    if args.start == "offline":
        if args.data is None:
            raise ValueError("--start offline needs --data <episode store> (or use --start data_free)")
        from genrl_gym.data import EpisodeStore

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
        agent.learn(total_timesteps=remaining, callback=Checkpoint(), reset_num_timesteps=not resume,
                    progress_bar=True)
        agent.save(checkpoint)  # the final state first: a kill while writing agent.zip resumes with 0 updates to go
    path = agent.save(args.out / "agent.zip")
    print(f"agent: {path}")
    if args.eval_episodes:
        return _evaluate(agent, agent.world_model.domain, args.task, args.eval_episodes, args.out / "rollout.gif")
    return 0


def cmd_store_verify(args: argparse.Namespace) -> int:
    from genrl_gym.data import EpisodeStore

    store = EpisodeStore(args.data, create=False)
    damaged = store.check(with_embeddings=not args.no_embeddings, progress=True)
    episodes = len(store.paths())
    missing = 0 if args.no_embeddings else sum(not store.has_embedding(p) for p in store.paths())
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


def cmd_train_sb3(args: argparse.Namespace) -> int:
    import gymnasium as gym
    import stable_baselines3 as sb3

    import genrl_gym  # noqa: F401  (registers GenRL/<Domain>-v0)
    from genrl_gym.wrappers import GenRLLogCallback

    algo = getattr(sb3, args.algo, None)
    if algo is None:
        raise ValueError(f"--algo {args.algo}: not a Stable-Baselines3 algorithm (e.g. SAC, PPO, TD3, A2C)")
    _write_config(args.out, "train-sb3", args)
    env_id = f"GenRL/{args.domain.capitalize()}-v0"
    env = gym.make(env_id, prompt=_prompt_arg(args.prompt), model=args.model, task=args.task, proprio=args.proprio)
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


def cmd_evaluate(args: argparse.Namespace) -> int:
    _write_config(args.out, "evaluate", args)
    if args.agent == "random":
        import numpy as np

        from genrl_gym.envs import make_pixel_env

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
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError) as e:
        raise GenRLError(f"--agent {path}: truncated or corrupt zip file ({e}); save or train the agent again") from e
    if "genrl_agent.json" in names:
        from genrl_gym.agents import GenRLAgent

        return GenRLAgent.load(path)
    return _load_sb3_like(path)


def _evaluate(policy: Any, domain: str, task: str, episodes: int, video: Path, *, seed: int = 0,
              prompt: str | None = None, model: str | None = None, out: Path | None = None,
              episode_frames: int = 1000) -> int:
    from genrl_gym.agents import evaluate_task_return
    from genrl_gym.training.experts import ExpertPolicy

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
    import gymnasium as gym
    from stable_baselines3.common.evaluation import evaluate_policy

    import genrl_gym  # noqa: F401

    env = gym.make(f"GenRL/{domain.capitalize()}-v0", prompt=_prompt_arg(prompt), model=model or domain, task=task,
                   episode_frames=episode_frames)
    if not hasattr(policy, "predict"):
        raise ValueError("the GenRL score needs a policy with predict() (a GenRLAgent or SB3 model)")
    env.reset(seed=seeds[0])
    rewards, lengths = evaluate_policy(policy, env, n_eval_episodes=len(seeds), deterministic=True,
                                       return_episode_rewards=True)
    env.close()
    return float(sum(rewards) / max(sum(lengths), 1))


def cmd_demo(args: argparse.Namespace) -> int:
    from genrl_gym.demo import DemoConfig, run_demo

    cfg = DemoConfig(domain=args.domain, task=args.task, out=str(args.out), prompt=args.prompt, model=args.model,
                     agent_seconds=args.agent_seconds, sb3_seconds=args.sb3_seconds, seeds=tuple(args.seeds),
                     episode_frames=args.episode_frames, seed=args.seed)
    run_demo(cfg)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from genrl_gym.training.export import export_model

    path = export_model(args.run, args.domain, args.dest, half=not args.fp32, max_mb=args.max_mb,
                        reward_align=args.reward_align)
    info = json.loads((path.parent / "model.json").read_text())
    print(f"exported {args.run} -> {path} ({info['size_bytes'] / 1e6:.1f} MB, {info['weights_dtype']}, "
          f"{len(info['prompts'])} prompt clips in {path.parent / 'prompts'})")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from genrl_gym.training.report import model_report

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
def build_parser() -> argparse.ArgumentParser:
    """The ``genrl`` argument parser (one subparser per command)."""
    p = argparse.ArgumentParser(prog="genrl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, func: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        sp.set_defaults(func=func)
        return sp

    c = add("collect", cmd_collect, "Collect pixel episodes of a task into an episode store (resumable).")
    c.add_argument("--domain", required=True, help="walker, cheetah, quadruped or stickman")
    c.add_argument("--task", required=True, help="a task of the domain (see genrl_gym.envs.TASKS)")
    c.add_argument("--out", type=Path, required=True, help="episode store folder (created; resumes if it exists)")
    c.add_argument("--episodes", type=_positive(), default=10, help="episodes of this source the store should hold")
    c.add_argument("--envs", type=_positive(), default=1, help="parallel environments")
    c.add_argument("--vectorization", choices=["sync", "async"], default="sync",
                   help="async = one worker process per environment")
    c.add_argument("--policy", default="random", help="'random' or the path of an SB3 model zip")
    c.add_argument("--obs-key", default="proprio", help="what the SB3 policy reads: proprio or image")
    c.add_argument("--noise", type=float, default=0.0, help="std of Gaussian noise added to policy actions")
    c.add_argument("--deterministic", action="store_true",
                   help="the policy's mean action (then --noise); how the pipeline collects with SAC experts")
    c.add_argument("--episode-frames", type=_positive(), default=1000, help="physics frames per episode")
    c.add_argument("--render-quality", choices=["fast", "default"], default="fast", help="renderer settings")
    c.add_argument("--seed", type=int, default=0)

    e = add("embed", cmd_embed, "Embed every 8-frame window of an episode store with a VLM (resumable).")
    e.add_argument("--data", type=Path, required=True, help="episode store folder")
    e.add_argument("--vlm", default="video-only", help="VLM spec: video-only (offline default) or "
                   "open_clip:<arch>:<pretrained tag or weights file>")
    e.add_argument("--batch-size", type=_positive(), default=64, help="windows per VLM call")
    e.add_argument("--overwrite", action="store_true", help="re-embed (also replaces another VLM's embeddings)")
    e.add_argument("--device", default="cpu")

    t = add("train-mfwm", cmd_train_mfwm, "Train a multimodal-foundation world model on an embedded store.")
    t.add_argument("--data", type=Path, required=True, help="embedded episode store")
    t.add_argument("--out", type=Path, required=True, help="run folder: config.json, checkpoint.pt, mfwm.pt, tb/")
    t.add_argument("--preset", default="cpu", choices=["tiny", "cpu", "small", "paper"], help="model size preset")
    t.add_argument("--steps", type=_positive(), default=None, help="updates (default: the preset's)")
    t.add_argument("--stages", default="joint", choices=["joint", "wm", "connector"])
    t.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint in --out")
    t.add_argument("--checkpoint-every", type=_positive(), default=None,
                   help="write checkpoint.pt every this many updates (default: the preset's)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")

    pl = add("pipeline", cmd_pipeline, "Experts -> collect -> embed -> train-mfwm -> prompt clips for one domain.")
    pl.add_argument("--domain", default="walker")
    pl.add_argument("--out", type=Path, required=True, help="run folder (resumable)")
    pl.add_argument("--preset", default="cpu", choices=["tiny", "cpu", "small", "paper"])
    pl.add_argument("--vlm", default="video-only", help="VLM spec; open_clip:ViT-B-32:<weights> gives text prompts")
    pl.add_argument("--tasks", nargs="*", help="tasks with expert data (default: the in-distribution tasks)")
    pl.add_argument("--steps", type=_positive(), default=20_000, help="world-model updates")
    pl.add_argument("--expert-steps", type=_positive(), default=1_000_000, help="training steps per task expert")
    pl.add_argument("--expert-algo", nargs="*", type=_task_pair, metavar="TASK=ALGO",
                    help="expert algorithm per task, ppo (default) or sac, e.g. run=sac")
    pl.add_argument("--expert-task-steps", nargs="*", type=_task_steps, metavar="TASK=STEPS",
                    help="training steps of one task's expert instead of --expert-steps, e.g. run=1000000")
    pl.add_argument("--warm-start", nargs="*", type=_task_pair, metavar="TASK=SOURCE",
                    help="expert curriculum: TASK's expert starts from SOURCE's final stage, e.g. walk=stand run=walk")
    pl.add_argument("--episodes-per-stage", type=_positive(), default=6)
    pl.add_argument("--random-episodes", type=int, default=24)
    pl.add_argument("--handover-episodes", type=int, default=0,
                    help="per task, episodes of random actions for --handover-steps steps, then the final expert")
    pl.add_argument("--handover-steps", type=_positive(), default=50)
    # 3 per task is enough for the clips but few for the report's discrimination check (per-episode spread is large)
    pl.add_argument("--heldout-episodes", type=_positive(), default=3,
                    help="held-out episodes per task (prompt clips, report's reconstructions and discrimination)")
    pl.add_argument("--clip-reward-tolerance", type=float, default=0.0,
                    help="prompt clips: the stillest held-out window within this fraction of the best true reward "
                         "(default 0: the highest-reward window)")
    pl.add_argument("--until", default="clips", choices=["experts", "collect", "embed", "train", "clips"])
    pl.add_argument("--seed", type=int, default=0)
    pl.add_argument("--device", default=None)

    pr = add("prompts", cmd_prompts, "List the shipped in-domain prompt clips.")
    pr.add_argument("--domain", default=None)

    gr = add("ground", cmd_ground, "Fit a video-only model's text grounding (sentence encoder -> its VLM space) and "
             "write grounding.npz beside it (recorded in its model.json).")
    gr.add_argument("--model", required=True, help="checkpoint path, model folder or model name")
    gr.add_argument("--out", type=Path, default=None, help="folder to write into (default: the model's folder)")
    gr.add_argument("--store", type=Path, default=None, help="episode store with task-labelled episodes to fit on too")
    gr.add_argument("--seeds", type=_positive(), default=None, help="connector seeds of each clip's decoded target "
                    "(default genrl_gym.training.grounding.DEFAULT_SEEDS)")
    gr.add_argument("--method", choices=["kernel", "ridge"], default="kernel", help="the map: kernel regression over the "
                    "captions or a ridge (linear) map")
    gr.add_argument("--ridge", type=float, default=None, help="ridge penalty of the ridge map (default DEFAULT_RIDGE)")
    gr.add_argument("--threshold", type=float, default=None, help="grounding threshold, sentence cosine similarity "
                    "(default genrl_gym.vlm.grounding.DEFAULT_THRESHOLD)")

    im = add("imagine", cmd_imagine, "Decode a prompt's target trajectory to a GIF/MP4: what the model thinks it means.")
    im.add_argument("--model", default="walker", help="checkpoint path or model name (GENRL_HOME or shipped)")
    im.add_argument("--prompt", required=True, help="text, a video file, or domain/task for a shipped clip")
    im.add_argument("--out", type=Path, default=Path("imagined.gif"), help=".gif or .mp4")
    im.add_argument("--vlm", default=None, help="VLM spec (default: the model's own)")
    im.add_argument("--horizon", type=_positive(), default=16)


    ta = add("train-agent", cmd_train_agent, "Train GenRLAgent in the world model's imagination from a prompt.")
    ta.add_argument("--model", default="walker", help="checkpoint path or model name (GENRL_HOME or shipped)")
    ta.add_argument("--prompt", required=True, help="text, a video file, or domain/task for a shipped clip")
    ta.add_argument("--out", type=Path, required=True, help="run folder: agent.zip, checkpoint.zip, config.json, tb/")
    ta.add_argument("--steps", type=_positive(), default=5000, help="behaviour updates")
    ta.add_argument("--preset", default="small", choices=["tiny", "small", "paper"])
    ta.add_argument("--start", default="data_free", choices=["data_free", "offline"], help="imagination start states")
    ta.add_argument("--data", type=Path, default=None, help="episode store for --start offline")
    ta.add_argument("--vlm", default=None, help="VLM spec for the prompt (default: the model's)")
    ta.add_argument("--task", default="stand", help="task whose true reward --eval-episodes reports")
    ta.add_argument("--eval-episodes", type=int, default=0, help="evaluate on the true reward after training")
    ta.add_argument("--checkpoint-every", type=_positive(), default=500,
                    help="write <out>/checkpoint.zip every this many updates; a rerun resumes from it")
    ta.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint.zip in --out")
    ta.add_argument("--seed", type=int, default=0)
    ta.add_argument("--device", default="auto")

    st = sub.add_parser("store", help="Episode store maintenance: verify (and quarantine) damaged files.",
                        description="Episode store maintenance.")
    st_sub = st.add_subparsers(dest="store_command", metavar="STORE_COMMAND", required=True)
    sv = st_sub.add_parser("verify", help="Read every episode and embedding file of a store; list the damaged ones.",
                           description="Read every episode (CRC-checked) and embedding file of a store and list the "
                           "damaged ones (exit status 1 if any). --quarantine moves them to <store>/quarantine/ so that "
                           "training continues on the rest.", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sv.add_argument("data", type=Path, help="episode store folder")
    sv.add_argument("--quarantine", action="store_true", help="move damaged files to <store>/quarantine/ (store.json "
                    "updated atomically; refused while another process writes to the store)")
    sv.add_argument("--no-embeddings", action="store_true", help="check episode files only")
    sv.set_defaults(func=cmd_store_verify)

    ts = add("train-sb3", cmd_train_sb3, "Train any SB3 algorithm on the GenRL reward of GenRL/<Domain>-v0.")
    ts.add_argument("--algo", default="SAC", help="SB3 algorithm class: SAC, PPO, TD3, A2C ...")
    ts.add_argument("--domain", default="walker")
    ts.add_argument("--task", default="stand", help="true reward reported in info['task_reward']")
    ts.add_argument("--model", default="walker", help="checkpoint path or model name")
    ts.add_argument("--prompt", required=True, help="text, a video file, or domain/task for a shipped clip")
    ts.add_argument("--out", type=Path, required=True)
    ts.add_argument("--steps", type=_positive(), default=20_000, help="environment steps")
    ts.add_argument("--proprio", action="store_true", help="policy reads proprioception (reward still from pixels)")
    ts.add_argument("--eval-episodes", type=int, default=0)
    ts.add_argument("--seed", type=int, default=0)

    ev = add("evaluate", cmd_evaluate, "True task return (and optionally the GenRL score) of a trained policy.")
    ev.add_argument("--agent", required=True, help="GenRLAgent zip, SB3 zip, or 'random'")
    ev.add_argument("--domain", default="walker")
    ev.add_argument("--task", default="stand")
    ev.add_argument("--episodes", type=_positive(), default=3, help="one episode per seed")
    ev.add_argument("--prompt", default=None, help="also report the GenRL score of this prompt")
    ev.add_argument("--model", default=None, help="model for --prompt (default: the domain's)")
    ev.add_argument("--episode-frames", type=_positive(), default=1000, help="frames per episode (1000: the paper's)")
    ev.add_argument("--out", type=Path, default=Path("runs/evaluate"))
    ev.add_argument("--seed", type=int, default=0)

    d = add("demo", cmd_demo, "The main job: prompt -> imagined GIF -> GenRLAgent vs SAC vs random on the true reward.")
    d.add_argument("--domain", default="walker")
    d.add_argument("--task", default="stand")
    d.add_argument("--out", type=Path, default=Path("runs/demo"))
    d.add_argument("--prompt", default=None, help="default: text if the model has language, else the shipped clip")
    d.add_argument("--model", default=None, help="default: the domain's shipped model")
    d.add_argument("--agent-seconds", type=float, default=240.0, help="wall-time budget of GenRLAgent training")
    d.add_argument("--sb3-seconds", type=float, default=None, help="wall-time budget of SAC (default: the agent's)")
    d.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    d.add_argument("--episode-frames", type=_positive(), default=1000)
    d.add_argument("--seed", type=int, default=0)

    ex = add("export", cmd_export, "Ship a pipeline run's model: fp16 model.pt + prompt clips + model.json into a folder.")
    ex.add_argument("--run", type=Path, required=True, help="`genrl pipeline --out` folder (mfwm/, clips/, recipe.json)")
    ex.add_argument("--domain", required=True, help="the model's domain (checked against the checkpoint)")
    ex.add_argument("--dest", type=Path, default=None, help="output folder (default: genrl_gym/pretrained/<domain>)")
    ex.add_argument("--fp32", action="store_true", help="keep fp32 weights (default: fp16)")
    ex.add_argument("--max-mb", type=_positive(float), default=25.0, help="refuse a model.pt larger than this (MB)")
    ex.add_argument("--reward-align", choices=["sequence", "phase", "none"], default=None,
                    help="the reward alignment the model was checked with, recorded in its metadata; envs, agents and "
                    "reports use it by default (default: keep the run's, else the reference's sequence)")

    rp = add("report", cmd_report, "Quality report of a world model: curves, reconstructions, prompts, discrimination.")
    rp.add_argument("--run", type=Path, required=True, help="`genrl pipeline --out` folder (TensorBoard logs, clips, heldout)")
    rp.add_argument("--out", type=Path, required=True, help="folder for REPORT.md, report.json and the PNGs")
    rp.add_argument("--model", type=Path, default=None, help="model to report on (default: the run's mfwm/mfwm.pt; an "
                    "exported folder uses its own prompts/)")
    rp.add_argument("--heldout", type=Path, default=None, help="held-out episode store (default: <run>/heldout)")
    rp.add_argument("--tasks", nargs="*", default=None, help="tasks (default: those with prompt clips)")
    rp.add_argument("--seed", type=int, default=0, help="connector seed of the prompt targets (0: the envs')")
    rp.add_argument("--random-episodes", type=int, default=3, help="random-action episodes scored as an extra column")
    rp.add_argument("--align", choices=["sequence", "phase", "none"], default=None,
                    help="alignment of the discrimination reward (genrl_gym.reward; default: the model's, as the envs)")

    b = add("bench", cmd_bench, "Run benchmarks (results in benchmarks/results/).")
    b.add_argument("names", nargs="*", help="quick: render collect vlm world_model reward agent (default: these); "
                   "long (minutes to hours): behaviour compare faults")
    b.add_argument("--args", default="", help="arguments for the benchmarks' own parsers, written with '=', e.g. "
                   "--args=\"--domain walker --seconds 90 --offline-data runs/walker-pipeline/data\"")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``genrl`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to resume", file=sys.stderr)
        return 130
    except (GenRLError, ValueError, FileNotFoundError) as e:
        print(f"genrl {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
