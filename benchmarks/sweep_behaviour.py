r"""Study of GenRLAgent's behaviour-learner settings on a shipped model: which levers make a prompt yield the behaviour.

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
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np


def run_job(domain: str, task: str, seed: int, variant: str, overrides: dict[str, Any], cpu_seconds: float,
            model: str, preset: str, eval_seeds: list[int], out: str) -> dict[str, Any]:
    """Train and evaluate one agent (:func:`benchmarks.bench_behaviour.train_and_evaluate` on the CPU clock), save it
    beside its row, write and return the row."""
    from benchmarks.bench_behaviour import train_and_evaluate
    from genrl_gym.utils import atomic_write

    stem = Path(out) / f"{variant}_{task}_seed{seed}"
    run = train_and_evaluate(domain, task, seed, cpu_seconds, model, None, preset, eval_seeds, None,
                             overrides=overrides, clock="cpu", save_path=f"{stem}.zip")
    row = {"domain": domain, "variant": variant, "overrides": overrides, "cpu_seconds": cpu_seconds, **run}
    with atomic_write(f"{stem}.json", "w") as f:
        json.dump(row, f, indent=1)
    return row


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--domain", default="walker")
    p.add_argument("--tasks", nargs="+", default=["stand"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--eval-seeds", type=int, default=3)
    p.add_argument("--cpu-seconds", type=float, default=300.0, help="process CPU-time training budget per job")
    p.add_argument("--variants", nargs="+", default=["base={}"], help="NAME=JSON overrides of ActorCriticConfig")
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
        from benchmarks._machine import reproduce_command, write_results

        cmd = reproduce_command(
            "benchmarks.sweep_behaviour", ("domain", args.domain), ("tasks", args.tasks), ("seeds", args.seeds),
            ("cpu-seconds", f"{args.cpu_seconds:.0f}"),
            ("variants", [f"{k}='{json.dumps(v)}'" for k, v in variants.items()]), ("model", args.model or None))
        write_results(args.name, {"model": model, "preset": args.preset, "cpu_seconds": args.cpu_seconds,
                                  "eval_seeds": eval_seeds, "rows": summary},
                      table, f"Data-free GenRLAgent from the shipped clip, {args.cpu_seconds:.0f} CPU seconds per job "
                      f"(one torch thread), {len(eval_seeds)} evaluation episodes of 1000 frames. Reproduce: `{cmd}`.")


if __name__ == "__main__":
    main()
