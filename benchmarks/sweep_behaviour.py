"""Study of GenRLAgent's behaviour-learner settings on a shipped model: which levers make a prompt yield the behaviour.

Each job trains a data-free GenRLAgent from a task's shipped clip with one *variant* (``name=JSON`` overrides of
:class:`genrl_gym.agents.actor_critic.ActorCriticConfig`) for a budget of **CPU seconds** of its own process (one torch
thread), so that jobs sharing a loaded machine still get equal compute, then evaluates it on the true reward and on the
GenRL reward it earns in the real env (beside the reward it saw in imagination). Every finished job is written to
``<out>/<variant>_<task>_seed<k>.json`` at once, so an interrupted sweep resumes where it stopped.

    python -m benchmarks.sweep_behaviour --domain walker --tasks stand --seeds 0 1 --cpu-seconds 300 \\
        --variants base='{}' lr3e-4='{"learning_rate": 3e-4}' --out runs/sweep --name sweep_walker
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np


def run_job(domain: str, task: str, seed: int, variant: str, overrides: dict[str, Any], cpu_seconds: float,
            model: str, preset: str, eval_seeds: list[int], out: str) -> dict[str, Any]:
    """Train one agent for ``cpu_seconds`` of process CPU time, evaluate it, write and return its row."""
    import torch

    import genrl_gym  # noqa: F401
    from stable_baselines3.common.callbacks import BaseCallback

    from genrl_gym.agents import GenRLAgent, evaluate_task_return
    from genrl_gym.model_store import resolve_model
    from genrl_gym.prompts import example
    from genrl_gym.utils import atomic_write

    torch.set_num_threads(1)
    mfwm = resolve_model(model, domain=domain)
    clip = str(example(domain, task))
    curve: list[tuple[int, float, float]] = []  # (update, cpu seconds, imagined reward per step)

    class Budget(BaseCallback):
        def _on_training_start(self) -> None:
            self.c0 = time.process_time()

        def _on_step(self) -> bool:
            used = time.process_time() - self.c0
            info = self.locals.get("metrics") or {}
            if "reward_mean" in info:
                curve.append((self.num_timesteps, used, float(info["reward_mean"])))
            return used < cpu_seconds

    opts = dict(overrides)
    start = opts.pop("start", "data_free")
    agent = GenRLAgent(mfwm, clip, preset=preset, start=start, seed=seed, overrides=opts)
    w0 = time.time()
    agent.learn(10**9, callback=Budget())
    wall = time.time() - w0
    agent.save(Path(out) / f"{variant}_{task}_seed{seed}.zip", model_storage="embed_fp16")
    ev = evaluate_task_return(agent, domain, task, seeds=eval_seeds, reward_prompt=clip)
    tail = [r for _, _, r in curve[-max(1, len(curve) // 10):]]
    row = {"domain": domain, "task": task, "seed": seed, "variant": variant, "overrides": overrides,
           "updates": agent.num_timesteps, "cpu_seconds": cpu_seconds, "wall_seconds": wall,
           "imagined_reward_per_step": float(np.mean(tail)) if tail else None,
           "real_genrl_reward_per_step": float(np.mean(ev["genrl_reward_per_step"])),
           "returns": ev["returns"], "mean": ev["mean"], "normalized_mean": ev["normalized_mean"],
           "curve": curve[:: max(1, len(curve) // 50)]}
    with atomic_write(Path(out) / f"{variant}_{task}_seed{seed}.json", "w") as f:
        json.dump(row, f, indent=1)
    return row


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--domain", default="walker")
    p.add_argument("--tasks", nargs="+", default=["stand"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--eval-seeds", type=int, default=3)
    p.add_argument("--cpu-seconds", type=float, default=300.0, help="process CPU-time training budget per job")
    p.add_argument("--variants", nargs="+", default=["base={}"], help="NAME=JSON overrides of ActorCriticConfig "
                   '(plus "start": "data_free" | "offline")')
    p.add_argument("--model", default=None)
    p.add_argument("--preset", default="small")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default="runs/sweep_behaviour", help="folder of per-job JSON rows (resume point)")
    p.add_argument("--name", default=None, help="results name under benchmarks/results (default: no summary file)")
    args = p.parse_args(argv)

    variants = {}
    for v in args.variants:
        name, _, spec = v.partition("=")
        variants[name] = json.loads(spec or "{}")
    os.makedirs(args.out, exist_ok=True)
    model = args.model or args.domain
    eval_seeds = list(range(args.eval_seeds))
    jobs = [(v, t, s) for s in args.seeds for t in args.tasks for v in variants]
    rows: dict[tuple[str, str, int], dict[str, Any]] = {}
    todo = []
    for v, t, s in jobs:
        f = Path(args.out) / f"{v}_{t}_seed{s}.json"
        if f.exists():
            rows[(v, t, s)] = json.loads(f.read_text())
        else:
            todo.append((v, t, s))
    print(f"{len(jobs)} jobs, {len(todo)} to run", flush=True)
    with ProcessPoolExecutor(max_workers=args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {k: pool.submit(run_job, args.domain, k[1], k[2], k[0], variants[k[0]], args.cpu_seconds, model,
                                  args.preset, eval_seeds, args.out) for k in todo}
        for k, fut in futures.items():
            rows[k] = fut.result()
            r = rows[k]
            print(f"{k}: {r['updates']} updates, true {r['mean']:.1f} ({r['normalized_mean']:.3f}), imagined "
                  f"{r['imagined_reward_per_step']:.3f}, real genrl {r['real_genrl_reward_per_step']:.3f}", flush=True)

    lines = ["| variant | task | updates | true return per seed | normalised | imagined reward/step | real GenRL "
             "reward/step |", "|---|---|---|---|---|---|---|"]
    summary = []
    for v in variants:
        for t in args.tasks:
            rs = [rows[(v, t, s)] for s in args.seeds]
            entry = {"variant": v, "overrides": variants[v], "task": t,
                     "updates": [r["updates"] for r in rs], "returns": [r["mean"] for r in rs],
                     "normalized_mean": float(np.mean([r["normalized_mean"] for r in rs])),
                     "imagined": float(np.mean([r["imagined_reward_per_step"] for r in rs])),
                     "real_genrl": float(np.mean([r["real_genrl_reward_per_step"] for r in rs]))}
            summary.append(entry)
            lines.append(f"| {v} | {t} | {int(np.mean(entry['updates']))} | "
                         f"{', '.join(f'{x:.0f}' for x in entry['returns'])} | {entry['normalized_mean']:.3f} | "
                         f"{entry['imagined']:.3f} | {entry['real_genrl']:.3f} |")
    table = "\n".join(lines)
    print(table)
    if args.name:
        from benchmarks._machine import write_results

        cmd = ("python -m benchmarks.sweep_behaviour --domain " + args.domain + " --tasks " + " ".join(args.tasks)
               + " --seeds " + " ".join(map(str, args.seeds)) + f" --cpu-seconds {args.cpu_seconds:.0f} --variants "
               + " ".join(f"{k}='{json.dumps(v)}'" for k, v in variants.items()) + (f" --model {args.model}" if args.model else ""))
        write_results(args.name, {"model": model, "preset": args.preset, "cpu_seconds": args.cpu_seconds,
                                  "eval_seeds": eval_seeds, "rows": summary},
                      table, f"Data-free GenRLAgent from the shipped clip, {args.cpu_seconds:.0f} CPU seconds per job "
                      f"(one torch thread), {len(eval_seeds)} evaluation episodes of 1000 frames. Reproduce: `{cmd}`.")


if __name__ == "__main__":
    main()
