"""Collection throughput: frames/s of genrl_gym.data.collect on walker at 64x64, 1 vs 2 worker processes.

Run from the repo root: ``.venv/bin/python -m benchmarks.bench_collect [--episodes-per-env 2] [--repeats 3]``.
Writes ``benchmarks/results/collect.json`` and ``.md``.

What is timed: a whole ``collect()`` call (random policy, fast render quality, 1000-frame episodes = 501 stored rows,
episodes written to a temporary store), i.e. worker env construction, stepping, rendering, IPC and saving. The
forkserver that the async workers fork from is started (and imports the env stack) by an untimed warm-up run, as it
is once per process in real use. Configurations: ``sync`` (1 env in the main process), ``async`` with 1 and with 2
worker processes; each does the same number of episodes per env. Frames = stored rows; physics frames = agent steps
x action repeat (2).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from typing import Any

import numpy as np

import genrl_gym  # noqa: F401  (render/torch guard before anything renders)
from benchmarks._machine import write_results
from genrl_gym.data import EpisodeStore, collect

CONFIGS = (("sync", 1), ("async", 1), ("async", 2))


def run_once(vectorization: str, num_envs: int, episodes_per_env: int, episode_frames: int, task: str,
             seed: int) -> dict[str, Any]:
    """One timed ``collect()`` into a fresh temporary store; returns its throughput numbers."""
    with tempfile.TemporaryDirectory(prefix="bench_collect_") as tmp:
        stats = collect(domain="walker", task=task, env_kwargs={"episode_frames": episode_frames},
                        store=EpisodeStore(tmp), num_episodes=episodes_per_env * num_envs, num_envs=num_envs,
                        vectorization=vectorization, seed=seed, progress=False)
    steps = stats.frames - stats.episodes_collected  # agent steps (rows minus the reset rows)
    return {
        "seconds": stats.seconds,
        "episodes": stats.episodes_collected,
        "frames": stats.frames,
        "frames_per_s": stats.frames_per_second,
        "agent_steps_per_s": steps / stats.seconds,
        "physics_frames_per_s": 2 * steps / stats.seconds,
    }


def main() -> None:
    """Parse arguments, run every configuration ``--repeats`` times (round-robin), write best and median."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes-per-env", type=int, default=2)
    parser.add_argument("--episode-frames", type=int, default=1000)
    parser.add_argument("--task", default="walk")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    load_before = os.getloadavg()
    run_once("async", 1, 1, 20, args.task, seed=123)  # warm-up: starts the forkserver (untimed)
    results: dict[str, Any] = {"config": vars(args), "loadavg_before": load_before, "runs": {}}
    runs: dict[str, list[dict[str, Any]]] = {f"{v}-{n}": [] for v, n in CONFIGS}
    for r in range(args.repeats):  # round-robin, so that drifting load on a shared machine hits every config alike
        for vectorization, num_envs in CONFIGS:
            run = run_once(vectorization, num_envs, args.episodes_per_env, args.episode_frames, args.task, seed=r)
            runs[f"{vectorization}-{num_envs}"].append(run)
            print(f"{vectorization}-{num_envs} #{r}: {run['frames_per_s']:.0f} frames/s ({run['seconds']:.1f} s for "
                  f"{run['frames']} frames)", flush=True)
    for name, all_runs in runs.items():
        results["runs"][name] = {"best": max(all_runs, key=lambda x: x["frames_per_s"]),
                                 "median_frames_per_s": float(np.median([x["frames_per_s"] for x in all_runs])),
                                 "all": all_runs}
    results["loadavg_after"] = os.getloadavg()
    base = results["runs"]["async-1"]["best"]["frames_per_s"]
    rows = ["| vectorization | worker processes | best frames/s (stored rows) | median frames/s | best physics frames/s | "
            "best seconds | speed-up vs async-1 (best) |", "|---|---|---|---|---|---|---|"]
    for vectorization, num_envs in CONFIGS:
        rec = results["runs"][f"{vectorization}-{num_envs}"]
        b = rec["best"]
        workers = "0 (main process)" if vectorization == "sync" else str(num_envs)
        rows.append(f"| {vectorization} | {workers} | {b['frames_per_s']:.0f} | {rec['median_frames_per_s']:.0f} | "
                    f"{b['physics_frames_per_s']:.0f} | "
                    f"{b['seconds']:.2f} | {b['frames_per_s'] / base:.2f}x |")
    notes = (f"walker_{args.task}, 64x64, render_quality=fast, action repeat 2, random policy, "
             f"{args.episode_frames}-frame episodes ({args.episode_frames // 2 + 1} rows), {args.episodes_per_env} "
             f"episodes per env, best and median of {args.repeats} (configs run round-robin). Each time is a whole "
             f"collect() call: env construction in the workers, stepping, rendering, IPC and writing the episodes. "
             f"Load average before/after: "
             f"{load_before[0]:.1f} / {results['loadavg_after'][0]:.1f} (the machine is shared; 2 workers can at best "
             f"double throughput on 2 cores).")
    path = write_results("collect", results, "\n".join(rows), notes)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
