r"""Comparison benchmark: GenRLAgent vs SB3 on three rewards vs random, each for the same wall-time budget.

For every task, training seed and method, a fresh learner trains for ``--seconds`` of wall time from the task's shipped
video prompt (``genrl_gym.prompts.example``), then is evaluated on the task's TRUE reward (1000-frame episodes, the same
evaluation seeds for every method). Methods (``METHODS``):

* ``genrl_data_free``: GenRLAgent, imagination from data-free starts (no dataset; GenRL's default);
* ``genrl_offline``: GenRLAgent, imagination from posteriors of replayed sequences (``--offline-data``: the model's
  training episodes, as the paper's offline setting);
* ``sb3_genrl_pixels``: SB3 PPO, pixel policy, GenRL reward (:class:`~genrl_gym.wrappers.VecGenRLReward`);
* ``sb3_genrl_proprio``: SB3 PPO, proprioceptive policy, the same pixel-based GenRL reward;
* ``sb3_embedding``: SB3 PPO, pixel policy, the paper's model-free baseline reward: cosine between the VLM embedding
  of the last 8 frames and the prompt's (:class:`~genrl_gym.wrappers.VecEmbeddingSimilarityReward`);
* ``sb3_true``: SB3 PPO, proprioceptive policy, the TRUE task reward (an upper bound: it sees the answer);
* ``random``: uniform random actions (no training).

Jobs run one at a time by default (``--workers``), each at one torch thread; finished jobs are appended to
``<run-dir>/jobs.jsonl`` so an interrupted run resumes where it stopped. Results: ``benchmarks/results/compare_<domain>``
(JSON + Markdown + PNG).

    python -m benchmarks.compare --domain walker --tasks stand walk run --seeds 0 1 2 --seconds 60 \\
        --offline-data runs/walker-pipeline/data
"""

from __future__ import annotations

import argparse
import json
import os
import time
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

METHODS: dict[str, str] = {
    "genrl_data_free": "GenRLAgent, data-free starts",
    "genrl_offline": "GenRLAgent, offline starts",
    "sb3_genrl_pixels": "PPO pixels, GenRL reward",
    "sb3_genrl_proprio": "PPO proprio, GenRL reward",
    "sb3_embedding": "PPO pixels, embedding-similarity reward",
    "sb3_true": "PPO proprio, TRUE reward (upper bound)",
    "random": "random",
}

#: One PPO configuration for every SB3 row (on CPU under a wall-time budget, PPO gets the most env steps per second).
PPO_KWARGS: dict[str, Any] = {"n_steps": 128, "batch_size": 128, "n_epochs": 4, "learning_rate": 3e-4, "gamma": 0.99,
                              "gae_lambda": 0.95, "clip_range": 0.2, "ent_coef": 0.0}
N_ENVS = 4


def _venv(domain: str, task: str, seed: int, env_kwargs: dict[str, Any], *, proprio: bool, pixels: bool) -> Any:
    from stable_baselines3.common.env_util import make_vec_env

    from genrl_gym.envs import make_pixel_env

    return make_vec_env(lambda: make_pixel_env(domain, task, proprio=proprio, pixels=pixels, **env_kwargs),
                        n_envs=N_ENVS, seed=seed)


def run_job(domain: str, task: str, method: str, seed: int, seconds: float, model_name: str, prompt: str,
            offline_data: str | None, eval_seeds: list[int], preset: str, tb_dir: str | None) -> dict[str, Any]:
    """Train one learner for ``seconds`` of wall time and evaluate it on the true task reward."""
    import torch

    import genrl_gym  # noqa: F401  (render guard, ids)
    from genrl_gym.agents import GenRLAgent, evaluate_task_return
    from genrl_gym.envs import render_env_kwargs
    from genrl_gym.model_store import resolve_model
    from genrl_gym.utils import set_seed
    from genrl_gym.wrappers.callbacks import learn_for

    torch.set_num_threads(1)
    set_seed(seed)
    model = resolve_model(model_name, domain=domain)
    kw = render_env_kwargs(model.render_settings)  # every pixel policy sees the frames the model was trained on
    record: dict[str, Any] = {"domain": domain, "task": task, "method": method, "seed": seed, "seconds": seconds}
    if method == "random":
        rng = np.random.default_rng(seed)
        dim = int(model.config.action_dim)
        ev = evaluate_task_return(lambda obs: rng.uniform(-1, 1, dim).astype(np.float32), domain, task,
                                  seeds=eval_seeds, env_kwargs=kw)
        return {**record, "train_seconds": 0.0, "steps": 0, "steps_per_second": 0.0, "unit": "-", "curve": [],
                **_eval_fields(ev)}

    if method.startswith("genrl_"):
        start = "offline" if method == "genrl_offline" else "data_free"
        if start == "offline" and not offline_data:
            raise ValueError("genrl_offline needs --offline-data <episode store> (e.g. runs/<domain>-pipeline/data)")
        learner: Any = GenRLAgent(model, prompt, preset=preset, start=start, store=offline_data if start == "offline"
                                  else None, seed=seed, tensorboard_log=tb_dir)
        unit = "behaviour updates"
        t0 = time.time()
        budget = learn_for(learner, seconds, tb_log_name=f"{task}_{method}_s{seed}")
        train_s = time.time() - t0
        ev = evaluate_task_return(learner, domain, task, seeds=eval_seeds)
    else:
        from stable_baselines3 import PPO

        from genrl_gym.wrappers import VecEmbeddingSimilarityReward, VecGenRLReward, VecSelectKey

        policy_obs = "proprio" if method in ("sb3_genrl_proprio", "sb3_true") else "pixels"
        if method == "sb3_true":
            venv = VecSelectKey(_venv(domain, task, seed, kw, proprio=True, pixels=False), "proprio")
        elif method == "sb3_embedding":
            from genrl_gym.vlm.base import VLMIdentity

            vlm = VLMIdentity.from_dict(model.vlm_identity).to_dict()  # the model's own VLM, e.g. video-only
            venv = VecEmbeddingSimilarityReward(_venv(domain, task, seed, kw, proprio=False, pixels=True), vlm, prompt,
                                                domain=domain)
        else:
            venv = VecGenRLReward(_venv(domain, task, seed, kw, proprio=policy_obs == "proprio", pixels=True), model,
                                  prompt, domain=domain)
            if policy_obs == "proprio":
                venv = VecSelectKey(venv, "proprio")
        policy = "MlpPolicy" if policy_obs == "proprio" else "MultiInputPolicy"
        learner = PPO(policy, venv, seed=seed, verbose=0, tensorboard_log=tb_dir, device="cpu",
                      policy_kwargs={"log_std_init": -0.5}, **PPO_KWARGS)
        unit = "env steps"
        t0 = time.time()
        budget = learn_for(learner, seconds, tb_log_name=f"{task}_{method}_s{seed}")
        train_s = time.time() - t0
        venv.close()
        if policy_obs == "proprio":
            def act(obs: dict[str, np.ndarray]) -> np.ndarray:
                return learner.predict(obs["proprio"], deterministic=True)[0]

            pixels = method != "sb3_true"  # the true-reward policy needs no frames at all
            ev = evaluate_task_return(act, domain, task, seeds=eval_seeds,
                                      env_kwargs={**kw, "proprio": True, "pixels": pixels})
        else:
            ev = evaluate_task_return(learner, domain, task, seeds=eval_seeds, env_kwargs=kw)
    steps = int(learner.num_timesteps)
    return {**record, "train_seconds": train_s, "steps": steps, "steps_per_second": steps / max(train_s, 1e-9),
            "unit": unit, "curve": budget.curve[-2000:], **_eval_fields(ev)}


def _eval_fields(ev: dict[str, Any]) -> dict[str, Any]:
    return {"eval_seeds": ev["seeds"], "returns": ev["returns"], "mean": ev["mean"],
            "normalized_mean": ev["normalized_mean"]}


def _key(job: dict[str, Any]) -> tuple[str, str, int]:
    return job["task"], job["method"], int(job["seed"])


def load_jobs(path: Path) -> dict[tuple[str, str, int], dict[str, Any]]:
    """Finished jobs of a run (``jobs.jsonl``; a torn last line from a crash is ignored)."""
    done: dict[tuple[str, str, int], dict[str, Any]] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                job = json.loads(line)
            except json.JSONDecodeError:
                continue
            done[_key(job)] = job
    return done


def summarise(domain: str, tasks: list[str], methods: list[str], seeds: list[int],
              jobs: dict[tuple[str, str, int], dict[str, Any]]) -> dict[str, Any]:
    """Per task and method: mean and spread over training seeds of the per-seed mean true return."""
    from genrl_gym.envs import get_task

    out: dict[str, Any] = {}
    for task in tasks:
        spec = get_task(domain, task)
        rows: dict[str, Any] = {}
        for m in methods:
            runs = [jobs[(task, m, s)] for s in seeds if (task, m, s) in jobs]
            if not runs:
                continue
            means = [r["mean"] for r in runs]
            norm = [spec.normalize(x) for x in means] if spec.random_score is not None else None
            rows[m] = {"label": METHODS[m], "seeds": [r["seed"] for r in runs], "per_seed_mean": means,
                       "mean": float(np.mean(means)), "std": float(np.std(means)),
                       "normalized_mean": None if norm is None else float(np.mean(norm)),
                       "normalized_std": None if norm is None else float(np.std(norm)),
                       "steps_per_run": [r["steps"] for r in runs], "unit": runs[0]["unit"],
                       "steps_per_second": float(np.mean([r["steps_per_second"] for r in runs]))}
        out[task] = {"random_score": spec.random_score, "expert_score": spec.expert_score, "methods": rows}
    return out


def table(summary: dict[str, Any]) -> str:
    """Markdown: one row per (task, method)."""
    lines = ["| task | method | true return, mean ± std over seeds (per seed) | normalised | work per run |",
             "|---|---|---|---|---|"]
    for task, t in summary.items():
        for m, r in t["methods"].items():
            norm = "n/a" if r["normalized_mean"] is None else f"{r['normalized_mean']:.3f} ± {r['normalized_std']:.3f}"
            per = ", ".join(f"{x:.0f}" for x in r["per_seed_mean"])
            work = "-" if r["unit"] == "-" else f"{int(np.mean(r['steps_per_run'])):,} {r['unit']}"
            lines.append(f"| {task} | {r['label']} | {r['mean']:.1f} ± {r['std']:.1f} ({per}) | {norm} | {work} |")
    return "\n".join(lines)


def pivot(summary: dict[str, Any]) -> str:
    """Markdown: methods x tasks, each cell the normalised score (mean ± std over training seeds)."""
    tasks = list(summary)
    methods = [m for m in METHODS if any(m in summary[t]["methods"] for t in tasks)]
    lines = ["| method | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
    for m in methods:
        cells = []
        for t in tasks:
            r = summary[t]["methods"].get(m)
            if r is None:
                cells.append("-")
            elif r["normalized_mean"] is None:
                cells.append(f"{r['mean']:.1f}")
            else:
                cells.append(f"{r['normalized_mean']:.3f} ± {r['normalized_std']:.3f} ({r['mean']:.0f})")
        lines.append(f"| {METHODS[m]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(summary: dict[str, Any], path: Path, title: str) -> None:
    """Grouped bars: normalised true score per task and method, error bars = std over training seeds."""
    from genrl_gym.pictures import new_figure, save_figure

    tasks = list(summary)
    methods = [m for m in METHODS if any(m in summary[t]["methods"] for t in tasks)]
    width = 0.8 / max(len(methods), 1)
    fig = new_figure((4.5 + 1.8 * len(tasks), 4.0))
    ax = fig.subplots()
    for j, m in enumerate(methods):
        xs, ys, es = [], [], []
        for i, t in enumerate(tasks):
            r = summary[t]["methods"].get(m)
            if r is None or r["normalized_mean"] is None:
                continue
            xs.append(i + (j - (len(methods) - 1) / 2) * width)
            ys.append(r["normalized_mean"])
            es.append(r["normalized_std"])
        ax.bar(xs, ys, width, yerr=es, capsize=2, label=METHODS[m])
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xticks(range(len(tasks)), tasks)
    ax.set_ylabel("normalised true score\n(0 = random, 1 = expert)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--domain", default="walker")
    p.add_argument("--tasks", nargs="+", default=None, help="default: the domain's in-distribution tasks")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    p.add_argument("--eval-episodes", type=int, default=3, help="true-reward episodes per trained learner (seeds 100..)")
    p.add_argument("--seconds", type=float, default=60.0, help="wall-time training budget of every learner")
    p.add_argument("--model", default=None, help="default: the domain's model (shipped or GENRL_HOME)")
    p.add_argument("--offline-data", default=None, help="episode store for genrl_offline (the model's training data)")
    p.add_argument("--preset", default="small", help="GenRLAgent preset")
    p.add_argument("--workers", type=int, default=1, help="jobs in parallel (one torch thread each)")
    p.add_argument("--run-dir", default=None, help="resumable job log + TensorBoard (default runs/compare-<domain>)")
    p.add_argument("--name", default=None, help="results name (default compare_<domain>)")
    p.add_argument("--results-dir", default=None, help="default benchmarks/results")
    args = p.parse_args(argv)

    import genrl_gym  # noqa: F401
    from genrl_gym.envs.tasks import TASKS
    from genrl_gym.prompts import example

    tasks = args.tasks or [t.task for t in TASKS.values() if t.domain == args.domain and t.in_distribution]
    methods = [m for m in METHODS if m in args.methods]
    if "genrl_offline" in methods and not args.offline_data:
        p.error("genrl_offline needs --offline-data <episode store>, e.g. runs/<domain>-pipeline/data "
                "(or leave it out with --methods)")
    eval_seeds = [100 + i for i in range(args.eval_episodes)]
    model = args.model or args.domain
    run_dir = Path(args.run_dir or f"runs/compare-{args.domain}")
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / "jobs.jsonl"
    done = load_jobs(log_path)
    todo = [(t, m, s) for t in tasks for s in args.seeds for m in methods if (t, m, s) not in done]
    print(f"{len(done)} jobs done, {len(todo)} to run ({args.seconds:.0f} s budget each) -> {log_path}")
    # spawn, not fork: a forked child of a process that holds torch/OpenMP or EGL threads can deadlock on their locks
    with ProcessPoolExecutor(max_workers=args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(run_job, args.domain, t, m, s, args.seconds, model, str(example(args.domain, t)),
                               args.offline_data, eval_seeds, args.preset, str(run_dir / "tb")) for t, m, s in todo]
        for i, f in enumerate(futures):
            job = f.result()
            done[_key(job)] = job
            with open(log_path, "a") as fh:  # one line per finished job: a crash loses at most the running ones
                fh.write(json.dumps(job) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            print(f"[{i + 1}/{len(todo)}] {job['task']:>6} {job['method']:<18} seed {job['seed']}: true return "
                  f"{job['mean']:.1f} ({job['steps']} {job['unit']}, {job['steps_per_second']:.1f}/s)", flush=True)

    from benchmarks._machine import RESULTS, write_results

    summary = summarise(args.domain, tasks, methods, args.seeds, done)
    results = {"domain": args.domain, "model": model, "tasks": summary, "seconds": args.seconds, "seeds": args.seeds,
               "eval_seeds": eval_seeds, "agent_preset": args.preset, "ppo": {**PPO_KWARGS, "n_envs": N_ENVS},
               "offline_data": args.offline_data, "methods": {m: METHODS[m] for m in methods},
               "jobs": [done[k] for k in sorted(done) if k[0] in tasks and k[1] in methods and k[2] in args.seeds]}
    name = args.name or f"compare_{args.domain}"
    md = ("Normalised true score, mean ± std over training seeds (mean true return):\n\n" + pivot(summary)
          + "\n\nPer task and method:\n\n" + table(summary))
    notes = (f"Every learner trains for {args.seconds:.0f} s of wall time at one torch thread "
             f"({args.workers} job(s) at a time on this machine), from the task's shipped video prompt, with the "
             f"`{model}` world model; training seeds {args.seeds}; each trained learner is evaluated on "
             f"{len(eval_seeds)} episodes of 1000 frames (seeds {eval_seeds}) on the TRUE task reward. Normalised = "
             "(return - random) / (expert - random) with the task table's constants. SB3 rows: PPO "
             f"{PPO_KWARGS}, {N_ENVS} envs. GenRLAgent: `{args.preset}` preset. Offline starts: "
             f"`{args.offline_data}`. No GPU: CPU figures only.\n\nReproduce: `python -m benchmarks.compare --domain "
             f"{args.domain} --tasks {' '.join(tasks)} --seeds {' '.join(map(str, args.seeds))} --seconds "
             f"{args.seconds:.0f}" + (f" --offline-data {args.offline_data}" if args.offline_data else "") + "`\n\n"
             f"![normalised scores]({name}.png)")
    results_dir = Path(args.results_dir) if args.results_dir else RESULTS
    write_results(name, results, md, notes, results_dir)
    plot(summary, results_dir / f"{name}.png", f"{args.domain}: true score after {args.seconds:.0f} s of training "
                                                 f"(mean ± std over {len(args.seeds)} seeds)")
    print(md)
    return results


if __name__ == "__main__":
    main()
