"""The main job (``genrl demo`` / ``make demo``): prompt -> imagined target -> GenRLAgent vs SB3 vs random.

Readable top to bottom:

1. resolve the world model: the shipped model of the domain, or (when this version ships none) a tiny one built on
   the spot from random episodes, said loudly: it shows the whole data flow, not meaningful behaviour;
2. pick the prompt: text when the model's VLM has language (the task table's prompt) or the model has a text
   grounding of the task (the task name, e.g. "run"; genrl_gym.vlm.grounding), else the shipped clip of the task
   (or, for a model built on the spot, the collected window with the highest true reward); print which and why;
3. write the imagined-prompt GIF (what the model thinks the prompt looks like);
4. train GenRLAgent in imagination (data-free) for a wall-time budget;
5. train SB3 SAC on the GenRL reward of the registered env for the same wall time;
6. evaluate both and a random policy on the prompted task's true reward over several seeds;
7. write a report folder: REPORT.md (means, spread, seeds, normalised scores), learning curves PNG, GIFs, results.json.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3 import SAC

from genrl_gym.agents import GenRLAgent, evaluate_task_return
from genrl_gym.agents.actor_critic import AgentPresetName
from genrl_gym.data import EpisodeStore, collect
from genrl_gym.envs import env_id, get_task
from genrl_gym.pictures import new_figure, save_figure
from genrl_gym.model_store import resolve_model
from genrl_gym.prompts import decode_target, example, target_from_prompt, write_video
from genrl_gym.reward import target_horizon
from genrl_gym.training.pipeline import write_prompt_clips
from genrl_gym.training.trainer import train_mfwm
from genrl_gym.utils import CheckpointError, atomic_write
from genrl_gym.vlm.embed import embed_store
from genrl_gym.wrappers.callbacks import learn_for


@dataclass
class DemoConfig:
    """What the demo does; saved as ``<out>/config.json``."""

    domain: str = "walker"
    """Domain of the world model and the task."""
    task: str = "stand"
    """Task whose prompt is given and whose true reward is reported."""
    out: str = "runs/demo"
    """Report folder: REPORT.md, results.json, GIFs, learning curves."""
    prompt: str | None = None
    """Text or a video path; default: text if the model has language, else the task's shipped clip."""
    model: str | None = None
    """Checkpoint path or model name; default: the domain name (shipped model)."""
    agent_seconds: float = field(default=360.0, metadata={"positive": True})
    """Wall-time budget of GenRLAgent training (imagination); with SAC's equal share and the evaluations the default
    demo takes about 13 minutes on 2 CPU cores."""
    sb3_seconds: float | None = field(default=None, metadata={"positive": True})
    """Wall-time budget of SAC on the GenRL reward; default: the agent's."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Evaluation seeds (one episode each) of every policy."""
    episode_frames: int = field(default=1000, metadata={"positive": True})
    """Physics frames per evaluation episode (1000: the paper's)."""
    agent_preset: AgentPresetName = field(default="small",
                                          metadata={"choices": "genrl_gym.agents.actor_critic:AGENT_PRESETS"})
    """GenRLAgent size preset (:data:`genrl_gym.agents.AGENT_PRESETS`)."""
    seed: int = 0
    """Seed of the agents' training."""
    tiny_episodes: int = field(default=8, metadata={"positive": True})
    """Random episodes for the tiny on-the-spot model (only when no model is shipped or given)."""
    tiny_episode_frames: int = field(default=200, metadata={"positive": True})
    """Physics frames per episode of the tiny on-the-spot model's data."""
    tiny_steps: int = field(default=300, metadata={"positive": True})
    """World-model updates of the tiny on-the-spot model."""


def resolve_demo_model(cfg: DemoConfig, out: Path, log: Any = print) -> tuple[Any, str, dict[str, Any]]:
    """The MFWM to use and where it came from: ``("shipped" | "path" | "built", info)``."""
    name = cfg.model or cfg.domain
    try:
        return resolve_model(name, domain=cfg.domain), "resolved", {"model": name}
    except (CheckpointError, FileNotFoundError) as e:
        if cfg.model is not None:
            raise
        log(f"No {cfg.domain} model is shipped with this version ({type(e).__name__}).")
        log("Building a TINY world model from random episodes on the spot: this shows the whole data flow in a few "
            "minutes, NOT meaningful behaviour. Real models come from `genrl pipeline` (hours on CPU).")
        return build_tiny_model(cfg, out / "tiny-model", episodes=cfg.tiny_episodes,
                                episode_frames=cfg.tiny_episode_frames, steps=cfg.tiny_steps), "built", \
            {"model": str(out / "tiny-model" / "mfwm" / "mfwm.pt")}


def build_tiny_model(cfg: DemoConfig, out: Path, *, episodes: int = 8, episode_frames: int = 200,
                     steps: int = 300) -> Any:
    """Random episodes -> video-only embeddings -> tiny MFWM (resumable; minutes on 2 CPU cores)."""
    store = EpisodeStore(out / "data")
    collect(domain=cfg.domain, task=cfg.task, policy="random", store=store, num_episodes=episodes,
            env_kwargs={"episode_frames": episode_frames}, seed=cfg.seed)
    embed_store(store, "video-only")
    return train_mfwm(store, "tiny", out_dir=out / "mfwm", steps=steps, seed=cfg.seed)


def pick_prompt(cfg: DemoConfig, model: Any, source: str, out: Path) -> tuple[Any, str]:
    """The prompt and why it was chosen."""
    spec = get_task(cfg.domain, cfg.task)
    if cfg.prompt:
        return cfg.prompt, "given on the command line"
    identity = model.vlm_identity
    backend = identity.backend if hasattr(identity, "backend") else (identity or {}).get("backend")
    if backend not in (None, "video-only"):
        return spec.prompt, f"the model's VLM ({identity}) has language: the task table's text prompt"
    grounding = getattr(model, "text_grounding", None)
    if grounding is not None and cfg.task in grounding.behaviours:
        return cfg.task, (f"text: the model's VLM is video-only, and its text grounding ({grounding.encoder} mapped into "
                          f"its video space; behaviours {', '.join(grounding.behaviours)}) grounds the task name")
    try:
        return str(example(cfg.domain, cfg.task)), "the model's VLM is video-only (no language): the shipped clip"
    except Exception:  # noqa: BLE001  (no clip shipped: cut one from the data the tiny model was built from)

        store = EpisodeStore(out / "tiny-model" / "data", create=False)
        clips = write_prompt_clips(store, (cfg.task,), out / "clips", frames=16)
        return str(clips[cfg.task]), ("video-only model and no shipped clip: the collected 16-frame window with the "
                                      "highest true reward")


def run_demo(cfg: DemoConfig, log: Any = print) -> dict[str, Any]:
    """Run the main job; return the results dictionary also written to ``<out>/results.json``."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "config.json", "w") as f:
        json.dump(asdict(cfg), f, indent=2)
    spec = get_task(cfg.domain, cfg.task)
    t_start = time.time()

    # 1-2. model and prompt
    model, source, model_info = resolve_demo_model(cfg, out, log)
    prompt, why = pick_prompt(cfg, model, source, out)
    log(f"prompt: {prompt} ({why})")

    # 3. what the model thinks the prompt looks like
    # as long as the envs' reward alignment needs (49 steps for "phase"): what SAC's reward compares against
    target = target_from_prompt(model, prompt, horizon=target_horizon(model.reward_align))
    gif = write_video(decode_target(model, target), out / "imagined_prompt.gif")
    log(f"imagined prompt: {gif}")

    # 4. GenRLAgent in imagination, data-free (from the prompt: the agent's target has the length its preset's imagined
    # trajectories need, which can differ from the envs')
    agent = GenRLAgent(model, prompt, preset=cfg.agent_preset if source != "built" else "tiny", start="data_free",
                       seed=cfg.seed, tensorboard_log=str(out / "tb"))
    agent_cb = learn_for(agent, cfg.agent_seconds, progress_bar=True, tb_log_name="GenRLAgent")
    agent.save(out / "genrl_agent.zip")
    agent_wall = agent_cb.elapsed
    log(f"GenRLAgent: {agent.num_timesteps} updates in {agent_wall:.0f} s")

    # 5. SB3 SAC on the GenRL reward, same wall time
    sb3_seconds = cfg.sb3_seconds if cfg.sb3_seconds is not None else agent_wall
    env = gym.make(env_id(cfg.domain), model=model_info["model"] if source == "built" else model,
                   prompt=prompt if isinstance(prompt, str) else None, task=cfg.task, episode_frames=cfg.episode_frames)
    sac = SAC("MultiInputPolicy", env, buffer_size=50_000, learning_starts=500, batch_size=64, seed=cfg.seed,
              tensorboard_log=str(out / "tb"), verbose=0)
    sac_cb = learn_for(sac, sb3_seconds, progress_bar=True, tb_log_name="SAC_genrl_reward")
    sac.save(out / "sac_genrl_reward.zip")
    env.close()
    log(f"SAC on the GenRL reward: {sac.num_timesteps} env steps in {sac_cb.elapsed:.0f} s")

    # 6. evaluation on the true task reward
    seeds = list(cfg.seeds)
    # every policy also earns the GenRL reward of the same prompt in the real env, beside the true return, so that the
    # agent's imagined reward can be set against what its behaviour earns for real (model exploitation at a glance)
    scored = dict(episode_frames=cfg.episode_frames, reward_prompt=prompt,
                  reward_model=model)
    ev = {
        "GenRLAgent (data-free)": evaluate_task_return(agent, cfg.domain, cfg.task, seeds=seeds,
                                                       video_path=out / "rollout_genrl_agent.gif", **scored),
        "SAC on GenRL reward": evaluate_task_return(sac, cfg.domain, cfg.task, seeds=seeds,
                                                    video_path=out / "rollout_sac.gif", **scored),
        "random": evaluate_task_return(_RandomActor(model.config.action_dim, cfg.seed), cfg.domain, cfg.task,
                                       seeds=seeds, **scored),
    }
    tail = [v for _, _, v in agent_cb.curve[-max(1, len(agent_cb.curve) // 10):]]
    imagined = float(np.mean(tail)) if tail else None
    results: dict[str, Any]
    results = {"domain": cfg.domain, "task": cfg.task, "prompt": str(prompt), "prompt_reason": why,
               "model_source": source, "model": model_info, "seeds": seeds,
               "random_score": spec.random_score, "expert_score": spec.expert_score,
               "agent_updates": agent.num_timesteps, "sac_env_steps": sac.num_timesteps,
               "agent_imagined_reward_per_step": imagined,
               "wall_seconds": time.time() - t_start,
               "evaluation": {k: _jsonable(v) for k, v in ev.items()},
               "curves": {"GenRLAgent imagined reward": agent_cb.curve, "SAC true episode return": sac_cb.curve}}
    with atomic_write(out / "results.json", "w") as f:
        json.dump(results, f, indent=2)
    _plot_curves(results["curves"], out / "learning_curves.png")
    _write_report(results, out)
    log("")
    log(_summary_table(results))
    log(f"\nreport: {out / 'REPORT.md'}")
    return results


class _RandomActor:
    """Uniform random actions in [-1, 1] (the task table's 'random' reference policy)."""

    def __init__(self, action_dim: int, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.action_dim = action_dim

    def __call__(self, obs: Any) -> np.ndarray:
        return self.rng.uniform(-1, 1, self.action_dim).astype(np.float32)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    return x


def _summary_table(results: dict[str, Any]) -> str:
    rows = [f"{results['domain']} {results['task']}: true return over seeds {results['seeds']} "
            f"({results['model_source']} model)", "",
            "| policy | mean | std | normalised | GenRL reward/step, real env | GenRL reward/step, imagined |",
            "|---|---|---|---|---|---|"]
    for name, ev in results["evaluation"].items():
        norm = ev.get("normalized_mean")
        real = ev.get("genrl_reward_per_step")
        imagined = results.get("agent_imagined_reward_per_step") if name.startswith("GenRLAgent") else None
        rows.append(f"| {name} | {ev['mean']:.1f} | {ev['std']:.1f} | {'n/a' if norm is None else f'{norm:.3f}'} | "
                    f"{'n/a' if real is None else f'{np.mean(real):.3f}'} | "
                    f"{'-' if imagined is None else f'{imagined:.3f}'} |")
    return "\n".join(rows)


def _plot_curves(curves: dict[str, list[tuple[float, int, float]]], path: Path) -> None:
    fig = new_figure((5 * len(curves), 3.5))
    axes = fig.subplots(1, len(curves))
    for ax, (name, curve) in zip(np.atleast_1d(axes), curves.items()):
        if curve:
            t, _, v = zip(*curve)
            ax.plot(t, v, ".-" if len(v) < 50 else "-")
        ax.set_title(name)
        ax.set_xlabel("wall time (s)")
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def _write_report(results: dict[str, Any], out: Path) -> None:
    lines = [f"# genrl demo: {results['domain']} {results['task']}", "",
             f"- model: {results['model_source']} ({results['model']})",
             f"- prompt: `{results['prompt']}` ({results['prompt_reason']})",
             f"- GenRLAgent: {results['agent_updates']} behaviour updates (data-free, imagination); "
             f"SAC: {results['sac_env_steps']} env steps on the GenRL reward; same wall time",
             f"- true-reward normalisation: random {results['random_score']}, expert {results['expert_score']} "
             "(the task table's constants, 1000-frame episodes)",
             "- GenRL reward/step: the reward of the same prompt, per agent step; in the real env for every policy, and "
             "for GenRLAgent also in imagination (mean of its last 10% of updates). A large gap means the agent exploits "
             "the world model's errors.", "", _summary_table(results), "",
             "Per-seed returns:", ""]
    for name, ev in results["evaluation"].items():
        lines.append(f"- {name}: {', '.join(f'{r:.1f}' for r in ev['returns'])}")
    lines += ["", "![imagined prompt](imagined_prompt.gif) ![GenRLAgent](rollout_genrl_agent.gif) "
              "![SAC](rollout_sac.gif)", "", "![learning curves](learning_curves.png)", ""]
    if results["model_source"] == "built":
        lines.insert(2, "> This run used a TINY model built on the spot from random episodes: it demonstrates the data "
                        "flow, not GenRL's behaviour quality.\n")
    with atomic_write(out / "REPORT.md", "w") as f:
        f.write("\n".join(lines))
