"""Dreamer's data loop for a world-model run: record real episodes of trained GenRLAgents into the run's episode store.

Why: ``diag_exploitation`` and ``diag_disagreement`` found that the actor earns its imagined reward by steering the
world model into states where the model is confidently wrong, and that the data lack those states. Dreamer closes this
loop by training the world model on the episodes its own actor collects. This script collects them (the actors act on
pixels through their world model's posterior, with sampled actions plus optional Gaussian noise); resuming the
pipeline (``genrl pipeline ... --steps N``) then embeds the new episodes and trains the world model on the whole store,
old and new episodes alike. The behaviour learning stays data-free: only the world model sees these episodes.

Each (agent, noise) pair is one source tag in the store, so an interrupted run resumes where it stopped.

    python -m benchmarks.collect_agents runs/walker/data bb/stand_seed0.zip bb/walk_seed0.zip \
        --noise 0 0.3 --episodes 2 --name collect_agents_walker
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import genrl_gym  # noqa: F401  (render/torch guard, before any env renders)
from benchmarks._machine import write_results
from genrl_gym.agents import GenRLAgent
from genrl_gym.data import EpisodeStore, SB3Policy, collect
from genrl_gym.envs import get_task


def agent_task(agent_path: Path) -> str:
    """The task an agent was trained for: ``bench_behaviour --save-agents`` writes ``<task>_seed<k>.json`` beside it."""
    meta = agent_path.with_suffix(".json")
    if meta.is_file():
        return str(json.loads(meta.read_text())["task"])
    stem = agent_path.stem
    if "_seed" not in stem:
        raise ValueError(f"{agent_path}: cannot tell its task; name it <task>_seed<k>.zip or put <task>_seed<k>.json "
                         "(with a 'task' field) beside it")
    return stem.split("_seed")[0]


def agent_source(agent_path: Path, noise: float) -> str:
    """The store's source tag of one (agent, noise) pair: unique per agent file, so reruns resume."""
    return f"agent:{agent_path.parent.name}/{agent_path.stem}:noise{noise:g}"


def collect_with_agents(store: EpisodeStore, agents: Sequence[Path], *, domain: str, noise: Sequence[float],
                        episodes: int, seed: int = 0, num_envs: int = 2, episode_frames: int = 1000,
                        model: str | None = None, progress: bool = True) -> list[dict[str, Any]]:
    """Collect ``episodes`` episodes per (agent, noise) into ``store``; one row of statistics per pair.

    :param store: the run's episode store (its render settings must match the env's; ``collect`` checks).
    :param agents: GenRLAgent zips; each acts in its own task's env (the task only labels the episodes and sets the true
        reward recorded beside them).
    :param domain: e.g. ``"walker"``.
    :param noise: Gaussian action-noise stds (action units) on top of the actor's sampled actions.
    :param episodes: episodes per (agent, noise) pair.
    :param model: a world-model file every agent acts through instead of its own (default: each agent's own).
    :return: rows ``{"agent", "task", "noise", "source", "episodes_collected", "frames", "mean_task_return"}``;
        ``mean_task_return`` is over the episodes collected by this call (NaN when it collected none).
    """
    rows = []
    for ai, path in enumerate(agents):
        task = agent_task(path)
        get_task(domain, task)
        agent = GenRLAgent.load(path, model=model, allow_model_mismatch=model is not None, device="cpu")
        for ni, sigma in enumerate(noise):
            source = agent_source(path, sigma)
            policy = SB3Policy(agent, obs_key="image", deterministic=False, noise_std=sigma,
                               seed=seed + 1000 * ai + ni)
            stats = collect(domain=domain, task=task, policy=policy, store=store, num_episodes=episodes,
                            source=source, seed=seed + 100_000 * (ai + 1) + 1000 * ni, num_envs=num_envs,
                            vectorization="async" if num_envs > 1 else "sync",
                            env_kwargs={"episode_frames": episode_frames}, progress=progress)
            rows.append({"agent": str(path), "task": task, "noise": sigma, "source": source,
                         "episodes_collected": stats.episodes_collected, "frames": stats.frames,
                         "mean_task_return": stats.mean_task_return})
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("store", type=Path, help="the run's episode store (<run>/data)")
    p.add_argument("agents", type=Path, nargs="+", help="GenRLAgent zips (bench_behaviour --save-agents)")
    p.add_argument("--domain", default="walker")
    p.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.3])
    p.add_argument("--episodes", type=int, default=2, help="episodes per (agent, noise)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-envs", type=int, default=2)
    p.add_argument("--model", default=None, help="act through this world model instead of each agent's own")
    p.add_argument("--name", default=None, help="write benchmarks/results/<name>.json and .md (statistics, machine, command)")
    p.add_argument("--results-dir", type=Path, default=None, help="where results go (default benchmarks/results)")
    args = p.parse_args(argv)
    if any(n < 0 for n in args.noise) or args.episodes < 1:
        p.error("--noise must be >= 0 and --episodes >= 1")
    missing = [str(a) for a in args.agents if not a.is_file()]
    if missing:
        p.error(f"no such agent file(s): {missing}")
    torch.set_num_threads(1)
    store = EpisodeStore(args.store, create=False)
    t0 = time.perf_counter()
    rows = collect_with_agents(store, args.agents, domain=args.domain, noise=args.noise, episodes=args.episodes,
                               seed=args.seed, num_envs=args.num_envs, model=args.model)
    out = {"command": "python -m benchmarks.collect_agents " + " ".join(sys.argv[1:] if argv is None else argv),
           "store_episodes": len(store), "store_frames": store.num_frames, "seconds": time.perf_counter() - t0,
           "rows": rows}
    table = "\n".join(["| source | task | noise | episodes collected | frames | mean true return |",
                       "|---|---|---|---|---|---|"] +
                      [f"| {r['source']} | {r['task']} | {r['noise']:g} | {r['episodes_collected']} | {r['frames']} | "
                       f"{r['mean_task_return']:.1f} |" for r in rows])
    notes = (f"Store after collection: {out['store_episodes']} episodes, {out['store_frames']} frames; "
             f"{out['seconds']:.0f} s. Reproduce: `{out['command']}`.")
    print(table + "\n\n" + notes)
    if args.name:
        write_results(args.name, out, table, notes, results_dir=args.results_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
