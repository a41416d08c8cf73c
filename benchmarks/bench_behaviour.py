"""Behaviour from prompts: GenRLAgent (data-free) trained from each task's shipped clip vs a random policy.

For every task and training seed, a fresh GenRLAgent learns in imagination for a wall-time budget from the task's
shipped video prompt (``genrl_gym.prompts.example(domain, task)``), then is evaluated on the task's TRUE reward
(1000-frame episodes, evaluation seeds 0..n-1) next to a uniform random policy on the same seeds. Runs two
(task, seed) jobs at a time, one torch thread each (2-core machine).

    python -m benchmarks.bench_behaviour --domain walker --tasks stand walk run --seeds 0 1 2 --seconds 180
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import time
import multiprocessing
from pathlib import Path
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np


def train_and_evaluate(domain: str, task: str, seed: int, seconds: float, model: str, prompt: str | None,
                       preset: str, eval_seeds: list[int], video_dir: str | None,
                       align: str | None = None, overrides: dict[str, Any] | None = None,
                       clock: str = "wall", save_path: str | None = None,
                       eval_at: list[float] | None = None, select: tuple[int, int] | None = None) -> dict[str, Any]:
    """One job: train GenRLAgent for ``seconds`` (of wall time, or of this process's CPU time with ``clock="cpu"``)
    from the task's clip, then evaluate it on the true reward and on the GenRL reward it earns in the real env.

    ``eval_at``: budgets (seconds, below ``seconds``) at which the agent in training is evaluated the same way too, so
    that one job gives the learning curve over budgets. The evaluation's time is kept off the budget clock and the
    random number generators are restored after it, so training goes on as if it had not happened.

    ``select=(every, episodes)``: a :class:`~genrl_gym.agents.RealityCheck` with ``keep_best`` runs every ``every``
    updates on ``episodes`` real episodes (seeds 100.., apart from the evaluation seeds) and the agent ends as the
    policy of the check with the highest real GenRL reward per step; the checks' time counts in the budget."""
    import torch

    import genrl_gym  # noqa: F401
    from genrl_gym.agents import GenRLAgent, RealityCheck, evaluate_task_return
    from genrl_gym.model_store import resolve_model
    from genrl_gym.prompts import example
    from stable_baselines3.common.callbacks import BaseCallback

    torch.set_num_threads(1)
    mfwm = resolve_model(model, domain=domain)
    clip = prompt or str(example(domain, task))

    now = time.process_time if clock == "cpu" else time.time
    imagined: list[float] = []
    last_policy: dict[str, Any] = {}  # with select: the evaluation of the policy training ended with
    checkpoints: list[dict[str, Any]] = []
    pending = sorted(float(s) for s in eval_at or [] if 0 < float(s) < seconds)
    paused = {"wall": 0.0, "cpu": 0.0}  # time spent evaluating checkpoints, kept off the budget
    clock_key = "cpu" if clock == "cpu" else "wall"

    def evaluate(agent: Any, video_path: str | None = None) -> dict[str, Any]:
        """The agent's true return and real GenRL reward per step, beside its imagined reward of late training."""
        ev = evaluate_task_return(agent, domain, task, seeds=eval_seeds, video_path=video_path, reward_prompt=clip)
        tail = imagined[-max(1, len(imagined) // 10):]  # the policy at the end of training (so far)
        return {"updates": agent.num_timesteps, "imagined_reward_per_step": float(np.mean(tail)) if tail else None,
                "real_genrl_reward_per_step": float(np.mean(ev["genrl_reward_per_step"])),
                "returns": ev["returns"], "mean": ev["mean"], "normalized_mean": ev["normalized_mean"]}

    @contextlib.contextmanager
    def off_clock() -> Iterator[None]:
        """Keep the block's time (an evaluation) off the budget clock."""
        w, c = time.time(), time.process_time()
        yield
        paused["wall"] += time.time() - w
        paused["cpu"] += time.process_time() - c

    class Budget(BaseCallback):
        def _on_training_start(self) -> None:
            self.t0 = now()

        def _on_step(self) -> bool:
            imagined.append(float(self.locals["metrics"]["reward_mean"]))
            spent = now() - self.t0 - paused[clock_key]
            if pending and spent >= pending[0]:
                with off_clock():
                    rng = (torch.get_rng_state(), np.random.get_state())
                    checkpoints.append({"seconds": pending.pop(0), **evaluate(self.model)})
                    torch.set_rng_state(rng[0])
                    np.random.set_state(rng[1])
            if spent >= seconds and reality is not None:  # the last policy, before RealityCheck restores the best
                with off_clock():
                    last_policy.update(evaluate(self.model))
            return spent < seconds

    agent = GenRLAgent(mfwm, clip, preset=preset, start="data_free", seed=seed, align=align, overrides=overrides)
    reality = None if select is None else RealityCheck(task, domain=domain, every=select[0], episodes=select[1],
                                                       episode_frames=1000, seed=100, prompt=clip, keep_best=True)
    t0, c0 = time.time(), time.process_time()
    agent.learn(10**9, callback=[Budget()] + ([reality] if reality is not None else []))
    train_s, train_cpu = time.time() - t0 - paused["wall"], time.process_time() - c0 - paused["cpu"]
    if save_path is not None:  # the trained agent, for diagnostics such as benchmarks.diag_exploitation
        agent.save(save_path, model_storage="embed_fp16")
    video = None if video_dir is None else f"{video_dir}/{domain}_{task}_seed{seed}.gif"
    selected = None if reality is None else {"best": reality.best, "checks": reality.rows, "last_policy": last_policy}
    return {"task": task, "seed": seed, "align": agent.align, "train_seconds": train_s, "train_cpu_seconds": train_cpu,
            "prompt": clip, "agent_config": agent.agent_config, **evaluate(agent, video), "checkpoints": checkpoints,
            "selected": selected}


def random_returns(domain: str, task: str, eval_seeds: list[int]) -> dict[str, Any]:
    """Uniform random actions on the same evaluation seeds."""
    import genrl_gym  # noqa: F401
    from genrl_gym.agents import evaluate_task_return
    from genrl_gym.envs import make_pixel_env

    dim = make_pixel_env(domain, task).action_space.shape[0]
    rng = np.random.default_rng(0)
    ev = evaluate_task_return(lambda obs: rng.uniform(-1, 1, dim).astype(np.float32), domain, task, seeds=eval_seeds)
    return {"returns": ev["returns"], "mean": ev["mean"], "normalized_mean": ev["normalized_mean"]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--domain", default="walker")
    p.add_argument("--tasks", nargs="+", default=["stand", "walk", "run"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    p.add_argument("--eval-seeds", type=int, default=3, help="evaluation episodes (seeds 0..n-1) per trained agent")
    p.add_argument("--seconds", type=float, default=180.0, help="wall-time training budget per agent")
    p.add_argument("--eval-at", type=float, nargs="+", default=[],
                   help="also evaluate each agent after these budgets (seconds below --seconds, same clock): the "
                   "learning curve over budgets from the same jobs")
    p.add_argument("--model", default=None, help="default: the domain's model (shipped or GENRL_HOME)")
    p.add_argument("--prompt-dir", default=None, help="use <dir>/<task>.gif instead of the shipped clips")
    p.add_argument("--text", action="store_true", help="prompt each task with its name as text (e.g. 'run'; the "
                   "shipped models' text grounding, docs/text-prompts.md) instead of the shipped clips")
    p.add_argument("--preset", default="small")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--name", default=None, help="results name (default behaviour_<domain>)")
    p.add_argument("--video-dir", default=None)
    p.add_argument("--overrides", default=None, help="JSON overrides of the agent config (ActorCriticConfig fields)")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="what --seconds counts: wall time, or each job's own CPU time (fair on a loaded machine)")
    p.add_argument("--summary", default="behaviour_summary",
                   help="summary file under benchmarks/results whose rows for these tasks are replaced ('' = none)")
    p.add_argument("--run-dir", default=None, help="per-job results, the resume point (default runs/<name>)")
    p.add_argument("--save-agents", action="store_true",
                   help="keep each trained agent as <run-dir>/<task>_seed<k>.zip (for benchmarks.diag_exploitation)")
    p.add_argument("--results-dir", default=None, help="where results go (default benchmarks/results)")
    p.add_argument("--select", type=int, nargs=2, default=None, metavar=("EVERY", "EPISODES"),
                   help="keep the policy with the highest real GenRL reward per step, checked every EVERY updates on "
                   "EPISODES real 1000-frame episodes (genrl_gym.agents.RealityCheck keep_best; its time counts in "
                   "the budget)")
    p.add_argument("--align", choices=["sequence", "phase", "none"], default=None,
                   help="the reward's alignment (genrl_gym.reward.trajectory_match; default: the model's)")
    args = p.parse_args(argv)

    from benchmarks._machine import repo_relative, reproduce_command, write_results
    from genrl_gym.envs import get_task
    from genrl_gym.prompts import VIDEO_PROMPT_RULE
    from genrl_gym.utils import atomic_write

    eval_seeds = list(range(args.eval_seeds))
    model = args.model or args.domain
    overrides = json.loads(args.overrides) if args.overrides else None
    jobs = [(t, s) for t in args.tasks for s in args.seeds]
    run_dir = Path(args.run_dir or f"runs/{args.name or f'behaviour_{args.domain}'}")
    run_dir.mkdir(parents=True, exist_ok=True)
    # per task: the text, the clip file, or None for the shipped clip
    prompts = {t: t if args.text else None if args.prompt_dir is None else f"{args.prompt_dir}/{t}.gif"
               for t in args.tasks}
    model_sha256 = _model_sha256(model)
    identity = {t: job_identity(args.domain, t, model_sha256, prompts[t], args.seconds, args.clock, args.preset,
                                overrides, args.align, args.select) for t in args.tasks}
    done = {(t, s): json.loads((run_dir / f"{t}_seed{s}.json").read_text()) for t, s in jobs
            if (run_dir / f"{t}_seed{s}.json").exists()}  # finished jobs of an interrupted run are not redone
    for (t, s), job in done.items():  # ... if they are the same job: model, prompt and budget
        if "identity" not in job:
            print(f"warning: {run_dir}/{t}_seed{s}.json records no job identity (written before it was recorded); "
                  "reusing it unverified")
        elif job["identity"] != identity[t]:
            diff = {k: (job["identity"].get(k), v) for k, v in identity[t].items() if job["identity"].get(k) != v}
            raise SystemExit(f"{run_dir}/{t}_seed{s}.json is another job (recorded vs now: {diff}); give another "
                             "--run-dir or delete that file")
    # spawn, not fork: a forked child of a process that holds torch/OpenMP or EGL threads can deadlock on their locks
    with ProcessPoolExecutor(max_workers=args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {(t, s): pool.submit(train_and_evaluate, args.domain, t, s, args.seconds, model,
                                       prompts[t], args.preset,
                                       eval_seeds, args.video_dir, args.align, overrides, args.clock,
                                       str(run_dir / f"{t}_seed{s}.zip") if args.save_agents else None, args.eval_at,
                                       tuple(args.select) if args.select else None)
                   for t, s in jobs if (t, s) not in done}
        rand = {t: pool.submit(random_returns, args.domain, t, eval_seeds) for t in args.tasks}
        runs = dict(done)
        for k, f in futures.items():
            runs[k] = {**f.result(), "identity": identity[k[0]]}
            with atomic_write(run_dir / f"{k[0]}_seed{k[1]}.json", "w") as fh:
                json.dump(runs[k], fh)
        randoms = {t: f.result() for t, f in rand.items()}

    results: dict[str, Any] = {"domain": args.domain, "model": model, "preset": args.preset, "seconds": args.seconds,
                               "clock": args.clock, "overrides": overrides, "model_sha256": model_sha256,
                               "align": sorted({r["align"] for r in runs.values()}), "eval_seeds": eval_seeds, "tasks": {}}
    rows = ["| task | GenRLAgent mean (per training seed) | std over seeds | normalised | random mean | random normalised "
            "| beats random on every seed | imagined reward/step | real GenRL reward/step |",
            "|---|---|---|---|---|---|---|---|---|"]
    for t in args.tasks:
        spec = get_task(args.domain, t)
        per_seed = [runs[(t, s)]["mean"] for s in args.seeds]
        norm = [runs[(t, s)]["normalized_mean"] for s in args.seeds]
        r = randoms[t]
        beats = all(m > r["mean"] for m in per_seed)
        results["tasks"][t] = {"runs": [runs[(t, s)] for s in args.seeds], "random": r, "mean": float(np.mean(per_seed)),
                               "std": float(np.std(per_seed)), "normalized_mean": float(np.mean(norm)),
                               "beats_random_every_seed": beats, "random_score": spec.random_score,
                               "expert_score": spec.expert_score}
        rows.append(f"| {t} | {np.mean(per_seed):.1f} ({', '.join(f'{m:.0f}' for m in per_seed)}) | "
                    f"{np.std(per_seed):.1f} | {np.mean(norm):.3f} | {r['mean']:.1f} | {r['normalized_mean']:.3f} | "
                    f"{'yes' if beats else 'no'} | "
                    f"{np.mean([runs[(t, s)]['imagined_reward_per_step'] for s in args.seeds]):.3f} | "
                    f"{np.mean([runs[(t, s)]['real_genrl_reward_per_step'] for s in args.seeds]):.3f} |")
    budgets = sorted({c["seconds"] for r in runs.values() for c in r.get("checkpoints", [])})
    if budgets:  # the learning curve over budgets: the same agents evaluated on the way to the full budget
        rows += ["", "| task | training budget (s) | behaviour updates (per seed) | GenRLAgent mean (per training seed) "
                 "| normalised | imagined reward/step | real GenRL reward/step |", "|---|---|---|---|---|---|---|"]
        for t in args.tasks:
            for b in budgets + [args.seconds]:
                at = [a for s in args.seeds if (a := _at_budget(runs[(t, s)], b, args.seconds)) is not None]
                if len(at) != len(args.seeds):  # a job without this checkpoint (e.g. from an earlier run)
                    continue
                row = {k: float(np.mean([a[k] for a in at])) for k in ("mean", "normalized_mean",
                                                                       "imagined_reward_per_step",
                                                                       "real_genrl_reward_per_step")}
                results["tasks"][t].setdefault("by_budget", {})[f"{b:g}"] = {
                    "mean": row["mean"], "normalized_mean": row["normalized_mean"], "updates": [a["updates"] for a in at]}
                per_seed_means = ", ".join(f"{a['mean']:.0f}" for a in at)
                rows.append(f"| {t} | {b:g} | {', '.join(str(a['updates']) for a in at)} | {row['mean']:.1f} "
                            f"({per_seed_means}) | {row['normalized_mean']:.3f} | {row['imagined_reward_per_step']:.3f} | "
                            f"{row['real_genrl_reward_per_step']:.3f} |")
    if args.select:  # which check's policy each agent ended as
        rows += ["", "| task | kept policy: update of the check (per seed) | its real GenRL reward/step (checks) | checks "
                 "per seed | kept policy: normalised | last policy (without selection): mean (per seed) | normalised |",
                 "|---|---|---|---|---|---|---|"]
        for t in args.tasks:
            sel = [runs[(t, s)]["selected"] for s in args.seeds]
            kept = ", ".join(f"{x['best']['updates']:.0f}" for x in sel)
            real = ", ".join(f"{x['best']['real_reward_per_step']:.3f}" for x in sel)
            checks = ", ".join(str(len(x["checks"])) for x in sel)
            last = [x.get("last_policy") or {} for x in sel]
            last_cells = "- | -"  # jobs recorded before the last policy was evaluated
            if all("mean" in x for x in last):
                per_seed = ", ".join(f"{x['mean']:.0f}" for x in last)
                last_cells = (f"{np.mean([x['mean'] for x in last]):.1f} ({per_seed}) | "
                              f"{np.mean([x['normalized_mean'] for x in last]):.3f}")
                results["tasks"][t]["last_policy_normalized_mean"] = float(np.mean([x["normalized_mean"] for x in last]))
            rows.append(f"| {t} | {kept} | {real} | {checks} | {results['tasks'][t]['normalized_mean']:.3f} | "
                        f"{last_cells} |")
    updates = [runs[k]["updates"] for k in jobs]
    reproduce = reproduce_command(
        "benchmarks.bench_behaviour", ("domain", args.domain), ("tasks", args.tasks), ("seeds", args.seeds),
        ("seconds", f"{args.seconds:.0f}"), ("model", args.model or None), ("prompt-dir", args.prompt_dir or None),
        ("text", bool(args.text)), ("align", args.align or None),
        ("overrides", f"'{args.overrides}'" if args.overrides else None),
        ("clock", args.clock if args.clock != "wall" else None),
        ("eval-at", [f"{b:g}" for b in args.eval_at] or None),
        ("select", [str(v) for v in args.select] if args.select else None),
        ("workers", args.workers if args.workers != 2 else None), ("name", args.name or None),
        ("save-agents", bool(args.save_agents)),
        ("summary", "''" if not args.summary else args.summary if args.summary != "behaviour_summary" else None))
    notes = (f"GenRLAgent (`{args.preset}` preset, data-free starts) trained for {args.seconds:.0f} s of "
             f"{'wall time' if args.clock == 'wall' else 'its own CPU time'} per run "
             f"({min(updates)}-{max(updates)} behaviour updates; the paper uses 50k) from "
             + ("the task's name as a text prompt, " if args.text else "the task's shipped video clip, ")
             + f"{args.workers} runs in parallel at one torch thread each; model `{model}`. Each trained agent is evaluated "
             f"on {len(eval_seeds)} episodes of 1000 frames (seeds {eval_seeds}) on the TRUE task reward; the random "
             "policy on the same seeds. Normalised = (return - random) / (expert - random) with the task table's "
             f"constants. Reproduce: `{reproduce}`. Imagined reward/step: the mean GenRL "
             "reward of the imagined trajectories over the last 10% of updates; real GenRL reward/step: what the same "
             "policy earns per step from the same prompt in the real env during evaluation."
             + ("" if not args.select else
                f" Policy selection: every {args.select[0]} updates and at the end, the policy ran {args.select[1]} real "
                "episodes of 1000 frames (seeds 100.., not the evaluation seeds) and each agent ended as the policy of "
                "the check with the highest real GenRL reward per step (the prompt's reward; the true reward is never "
                "used), genrl_gym.agents.RealityCheck(keep_best=True); the checks' time counts in the budget, the "
                "updates learn in imagination only."))
    results_dir = Path(args.results_dir) if args.results_dir else None
    write_results(args.name or f"behaviour_{args.domain}", results, "\n".join(rows), notes, results_dir)
    if args.summary:
        update_summary(args.summary, results_dir, [
            {"domain": args.domain, "task": t, "model_sha256": results["model_sha256"],
             "prompt": repo_relative(runs[(t, args.seeds[0])]["prompt"]),
             "prompt_embedding": "text grounding" if args.text else f"video: {VIDEO_PROMPT_RULE}",
             "seconds_per_seed": args.seconds,
             **({"select": {"every_updates": args.select[0], "episodes": args.select[1]}} if args.select else {}),
             "clock": args.clock,
             "seeds": list(args.seeds), "returns": [runs[(t, s)]["mean"] for s in args.seeds],
             "random_mean": randoms[t]["mean"], "normalised_mean": results["tasks"][t]["normalized_mean"],
             "imagined_reward_per_step": [runs[(t, s)]["imagined_reward_per_step"] for s in args.seeds],
             "real_genrl_reward_per_step": [runs[(t, s)]["real_genrl_reward_per_step"] for s in args.seeds],
             "agent_config": runs[(t, args.seeds[0])]["agent_config"],  # the resolved preset + overrides
             "results_file": f"{args.name or f'behaviour_{args.domain}'}.json"} for t in args.tasks])
    print("\n".join(rows))
    return results


def _at_budget(run: dict[str, Any], budget: float, full: float) -> dict[str, Any] | None:
    """A job's evaluation after ``budget`` seconds of training: the final one, or the checkpoint of that budget."""
    if budget == full:
        return run
    return next((c for c in run.get("checkpoints", []) if c["seconds"] == budget), None)


def job_identity(domain: str, task: str, model_sha256: str | None, prompt: str | None, seconds: float, clock: str,
                 preset: str, overrides: dict[str, Any] | None, align: str | None,
                 select: list[int] | None = None) -> dict[str, Any]:
    """What makes two jobs of one (task, seed) the same: the model file's sha256 (``model_sha256``), the prompt's (a
    clip's file, or a text prompt's text) and the training settings. A resumed run reuses a finished job only if they
    match."""
    from genrl_gym.prompts import example
    from genrl_gym.training.export import file_sha256

    clip = prompt or str(example(domain, task))
    prompt_sha = file_sha256(Path(clip)) if Path(clip).is_file() else hashlib.sha256(clip.encode()).hexdigest()
    identity = {"model_sha256": model_sha256, "prompt_sha256": prompt_sha, "seconds": float(seconds),
                "clock": clock, "preset": preset, "overrides": overrides, "align": align}
    if select:  # only when set: jobs recorded before the option existed keep their identity
        identity["select"] = [int(v) for v in select]
    return identity


def _model_sha256(model: str) -> str | None:
    """sha256 of the model file that ``model`` (a path or store name) resolves to."""
    from genrl_gym.model_store import resolve_model_path
    from genrl_gym.training.export import file_sha256

    return file_sha256(resolve_model_path(model)[0])


def update_summary(name: str, results_dir: Path | None, new_rows: list[dict[str, Any]]) -> None:
    """Replace the rows of ``benchmarks/results/<name>.json`` with the same (domain, task) by ``new_rows``; keep the
    rest (one row per shipped task, each from the last behaviour run of its domain)."""
    from benchmarks._machine import RESULTS, machine_info
    from genrl_gym.utils import atomic_write

    path = (results_dir or RESULTS) / f"{name.removesuffix('.json')}.json"  # `--summary x.json` means x.json too
    rows = json.loads(path.read_text()) if path.exists() else []
    keys = {(r["domain"], r["task"]) for r in new_rows}
    machine = machine_info()
    rows = [r for r in rows if (r["domain"], r["task"]) not in keys] + [{**r, "machine": machine["cpu"],
                                                                       "git_commit": machine["git_commit"]}
                                                                      for r in new_rows]
    rows.sort(key=lambda r: (r["domain"], r["task"]))
    with atomic_write(path, "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
