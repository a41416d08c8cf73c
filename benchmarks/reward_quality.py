r"""Does the GenRL reward track the true task reward? Correlations on held-out episodes of mixed quality.

For one domain, episodes are recorded from a mix of policies (uniform random, GenRLAgent checkpoints, pipeline expert
stages), each also with Gaussian action noise. Every episode is recorded once, with pixels, in the env of the domain's
first task; the true reward of each other task on the *same* trajectory comes from replaying its actions from the same
seed in that task's env without rendering (the replay checks that it starts from the same state). Each task's prompt
(default: its shipped clip) then scores every episode exactly as the ``GenRL/<Domain>-v0`` envs do
(:func:`genrl_gym.reward.score_episode`), and for each prompt:

- **episode Spearman**: rank correlation over episodes between the episode's GenRL return and its true return
  (issue #21's goal: at least 0.8);
- **per-step Pearson**: correlation over all agent steps of all episodes between the GenRL reward and the true reward
  of that step (goal: at least 0.5; the reset step, which the envs pay 0, is left out).

Every recorded episode is kept in ``--out`` (``<policy>_noise<s>_seed<k>.npz``), so an interrupted run resumes.

    python -m benchmarks.reward_quality --domain walker --policies random runs/agent_stand.zip \
        --noise 0 0.5 --seeds 0 1 --out runs/reward_quality_walker --name reward_quality_walker
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import numpy as np


def load_policy(spec: str, domain: str) -> tuple[str, Any]:
    """``"random"``, a GenRLAgent ``.zip`` or a pipeline expert ``stage-*.zip`` -> ``(name, act)`` with
    ``act(obs, state, start, rng, action_dim) -> (action [A], state)``."""
    from genrl_gym.agents import GenRLAgent
    from genrl_gym.training.experts import ExpertPolicy, is_expert_stage

    if spec == "random":
        def act_random(obs: dict[str, np.ndarray], state: Any, start: bool, rng: np.random.Generator,
                       dim: int) -> tuple[np.ndarray, Any]:
            return rng.uniform(-1, 1, size=dim).astype(np.float32), None
        return "random", act_random
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"policy {spec!r}: not 'random' and no such file")
    name = path.stem if path.parent.name in ("", ".") else f"{path.parent.name}-{path.stem}"
    if is_expert_stage(path):
        expert = ExpertPolicy(path)

        def act_expert(obs: dict[str, np.ndarray], state: Any, start: bool, rng: np.random.Generator,
                       dim: int) -> tuple[np.ndarray, Any]:
            a, _ = expert.predict(obs["proprio"][None], deterministic=True)
            return np.asarray(a, dtype=np.float32).reshape(-1), None
        return name, act_expert
    agent = GenRLAgent.load(path)
    if agent.world_model.domain != domain:
        raise ValueError(f"policy {spec}: a GenRLAgent of domain {agent.world_model.domain!r}, not {domain!r}")

    def act_agent(obs: dict[str, np.ndarray], state: Any, start: bool, rng: np.random.Generator,
                  dim: int) -> tuple[np.ndarray, Any]:
        a, state = agent.predict({"image": obs["image"]}, state=state, episode_start=np.array([start]),
                                 deterministic=True)
        return np.asarray(a, dtype=np.float32).reshape(-1), state
    return name, act_agent


def record_episode(domain: str, tasks: list[str], act: Any, noise: float, seed: int,
                   episode_frames: int, render: dict[str, Any]) -> dict[str, np.ndarray]:
    """One episode in the first task's env (pixels + proprio); the other tasks' true rewards by replay.

    :return: ``{"image": uint8 [L, S, S, 3], "action": float32 [L - 1, A], "true": float32 [n_tasks, L]}`` where row
        ``t`` of ``true`` is the true reward of agent step ``t`` (row 0, the reset, 0).
    """
    from genrl_gym.envs import make_pixel_env

    rng = np.random.default_rng(10_000 + seed)
    env = make_pixel_env(domain, tasks[0], proprio=True, episode_frames=episode_frames, **render)
    try:
        obs, _ = env.reset(seed=seed)
        first_proprio = obs["proprio"].copy()
        images, actions, rewards = [obs["image"]], [], [0.0]
        state, start, done = None, True, False
        dim = int(env.action_space.shape[0])
        while not done:
            a, state = act(obs, state, start, rng, dim)
            if noise > 0:
                a = a + noise * rng.standard_normal(dim).astype(np.float32)
            a = np.clip(a, -1.0, 1.0).astype(np.float32)
            obs, _, terminated, truncated, info = env.step(a)
            images.append(obs["image"])
            actions.append(a)
            rewards.append(float(info["task_reward"]))
            start, done = False, bool(terminated or truncated)
    finally:
        env.close()
    true = [rewards]
    for task in tasks[1:]:
        replay = make_pixel_env(domain, task, proprio=True, pixels=False, episode_frames=episode_frames)
        try:
            obs, _ = replay.reset(seed=seed)
            if not np.allclose(obs["proprio"], first_proprio):
                raise RuntimeError(f"{domain} {task} starts from another state than {tasks[0]} with seed {seed}; "
                                   "its true rewards cannot be replayed on this trajectory")
            r = [0.0] + [float(replay.step(a)[4]["task_reward"]) for a in actions]
        finally:
            replay.close()
        true.append(r)
    return {"image": np.stack(images).astype(np.uint8), "action": np.stack(actions),
            "true": np.asarray(true, dtype=np.float32)}


def correlations(genrl: list[np.ndarray], true: list[np.ndarray]) -> dict[str, float]:
    """Episode Spearman of the returns and per-step Pearson (reset steps left out) of per-step rewards ``[L]``."""
    from scipy.stats import pearsonr, spearmanr

    g_ret = [float(g[1:].sum()) for g in genrl]
    t_ret = [float(t[1:].sum()) for t in true]
    g_step = np.concatenate([g[1:] for g in genrl])
    t_step = np.concatenate([t[1:] for t in true])
    return {"episode_spearman": float(spearmanr(g_ret, t_ret).statistic),
            "step_pearson": float(pearsonr(g_step, t_step).statistic),
            "episodes": len(genrl), "steps": int(len(g_step))}


def score_by_task(spec: Any, episodes: list[dict[str, Any]], features: list[Any], targets: dict[str, Any]
                  ) -> dict[str, list[np.ndarray]]:
    """``{task: [per-step GenRL reward [L] of each episode]}`` under ``spec`` (a :class:`genrl_gym.reward.RewardSpec`),
    from the episodes' filtered ``features`` against each task's target."""
    from genrl_gym.reward import score_episode

    return {t: [score_episode(spec, ep["image"], target=target, features=f) for ep, f in zip(episodes, features)]
            for t, target in targets.items()}


def baseline_study(genrl: dict[str, list[np.ndarray]], true: list[np.ndarray], tasks: list[str],
                   lambdas: list[float], results: dict[str, Any]) -> list[str]:
    """Goal-baseline rewards (after VLM-RM's baseline prompt): each prompt's per-step reward minus ``lambda`` x the
    reward of another task's prompt on the same steps (or of the mean of the others), correlated with the prompt's own
    true reward. Returns the Markdown rows and records ``results["baselines"]``.

    :param true: per episode, the true rewards ``[len(tasks), L]`` (row order = ``tasks``).
    """
    rows = ["Goal minus lambda x baseline (episode Spearman / per-step Pearson against the goal's true reward; "
            "lambda 0 is the reward itself):", "",
            "| goal | baseline | " + " | ".join(f"lambda {lam:g}" for lam in [0.0, *lambdas]) + " |",
            "|---|---|" + "---|" * (len(lambdas) + 1)]
    results["baselines"] = {}
    for k, goal in enumerate(tasks):
        others = [t for t in tasks if t != goal]
        for base in [*others, "mean of the others"]:
            base_r = genrl[base] if base in genrl else [np.mean([genrl[t][i] for t in others], axis=0)
                                                         for i in range(len(true))]
            cells = []
            for lam in [0.0, *lambdas]:
                mixed = [g - lam * b for g, b in zip(genrl[goal], base_r)]
                c = correlations(mixed, [ep[k] for ep in true])
                results["baselines"][f"{goal} - {lam:g} x {base}"] = c
                cells.append(f"{c['episode_spearman']:.2f} / {c['step_pearson']:.2f}")
            rows.append(f"| {goal} | {base} | " + " | ".join(cells) + " |")
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--domain", default="walker")
    p.add_argument("--tasks", nargs="+", default=None, help="default: the domain's shipped clips' tasks")
    p.add_argument("--policies", nargs="+", default=["random"],
                   help="'random', GenRLAgent .zip files, or pipeline expert stage-*.zip files")
    p.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.5], help="Gaussian action noise levels (std)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="episode seeds per (policy, noise)")
    p.add_argument("--episode-frames", type=int, default=1000)
    p.add_argument("--model", default=None, help="default: the domain's model (shipped or GENRL_HOME)")
    p.add_argument("--prompt-dir", default=None, help="use <dir>/<task>.gif instead of the shipped clips")
    p.add_argument("--out", default=None, help="recorded episodes (the resume point); default runs/<name>")
    p.add_argument("--name", default=None, help="results name (default reward_quality_<domain>)")
    p.add_argument("--results-dir", default=None)
    p.add_argument("--note", default="", help="text added to the results' notes (e.g. where the checkpoints came from)")
    p.add_argument("--study", action="store_true",
                   help="also every score kind x alignment of genrl_gym.reward (a table of the same correlations)")
    p.add_argument("--baselines", type=float, nargs="*", default=[],
                   help="also a goal-baseline study: each prompt's reward minus LAMBDA x another task's prompt reward "
                        "(and minus LAMBDA x the mean of the others), for each LAMBDA given")
    args = p.parse_args(argv)

    import torch

    import genrl_gym  # noqa: F401  (render guard before any env renders)
    from benchmarks._machine import reproduce_command, write_results
    from genrl_gym.envs import render_env_kwargs
    from genrl_gym.model_store import resolve_model, resolve_model_path
    from genrl_gym.prompts import example, list_examples
    from genrl_gym.reward import RewardSpec, aligned_target, episode_features
    from genrl_gym.utils import atomic_write, file_sha256

    torch.set_num_threads(1)
    name = args.name or f"reward_quality_{args.domain}"
    out = Path(args.out or f"runs/{name}")
    out.mkdir(parents=True, exist_ok=True)
    model = resolve_model(args.model or args.domain, domain=args.domain)
    tasks = args.tasks or [t for (_, t) in list_examples(args.domain)]
    if not tasks:
        raise ValueError(f"{args.domain}: no shipped clips; name the tasks (--tasks) and their clips (--prompt-dir)")
    render = render_env_kwargs(model.render_settings)

    episodes: list[dict[str, Any]] = []
    for spec in args.policies:
        pname, act = load_policy(spec, args.domain)
        for noise in args.noise:
            for seed in args.seeds:
                f = out / f"{pname}_noise{noise:g}_seed{seed}.npz"
                if not f.exists():
                    ep = record_episode(args.domain, tasks, act, noise, seed, args.episode_frames, render)
                    with atomic_write(f, "wb") as fh:
                        np.savez(fh, **ep)
                    print(f"recorded {f.name}: true returns "
                          + ", ".join(f"{t} {ep['true'][i].sum():.1f}" for i, t in enumerate(tasks)), flush=True)
                with np.load(f) as z:
                    episodes.append({"policy": pname, "noise": noise, "seed": seed, "file": f.name,
                                     "image": z["image"], "action": z["action"], "true": z["true"]})

    clips = {t: str(example(args.domain, t)) if args.prompt_dir is None else f"{args.prompt_dir}/{t}.gif" for t in tasks}
    targets = {t: aligned_target(model, clips[t], None)[0] for t in tasks}
    spec = RewardSpec(model=model)
    features = [episode_features(model, ep["image"], ep["action"]) for ep in episodes]  # filtered once per episode
    genrl = score_by_task(spec, episodes, features, targets)

    results: dict[str, Any] = {"domain": args.domain,
                               "model_sha256": file_sha256(resolve_model_path(args.model or args.domain)[0]),
                               "tasks": tasks, "prompts_used": clips, "align": model.reward_align,
                               "score_kind": spec.score_kind, "policies": args.policies, "noise": args.noise,
                               "seeds": args.seeds, "episode_frames": args.episode_frames, "prompts": {}, "episodes": []}
    for i, ep in enumerate(episodes):
        results["episodes"].append({"policy": ep["policy"], "noise": ep["noise"], "seed": ep["seed"],
                                    "true_return": {t: float(ep["true"][k][1:].sum()) for k, t in enumerate(tasks)},
                                    "genrl_return": {t: float(genrl[t][i][1:].sum()) for t in tasks}})
    rows = ["| prompt (shipped clip) | episodes | episode Spearman (goal >= 0.8) | per-step Pearson (goal >= 0.5) "
            "| true return range |", "|---|---|---|---|---|"]
    for k, t in enumerate(tasks):
        true = [ep["true"][k] for ep in episodes]
        c = correlations(genrl[t], true)
        rets = [float(x[1:].sum()) for x in true]
        results["prompts"][t] = {**c, "true_return_min": min(rets), "true_return_max": max(rets)}
        rows.append(f"| {t} | {c['episodes']} | {c['episode_spearman']:.3f} | {c['step_pearson']:.3f} | "
                    f"{min(rets):.0f} - {max(rets):.0f} |")
    if args.study:  # the reward's levers (score kind, alignment) on the same episodes
        from genrl_gym.reward import ALIGNS, SCORES

        rows += ["", "Every score kind x alignment (episode Spearman / per-step Pearson per prompt):", "",
                 "| alignment | score kind | " + " | ".join(tasks) + " |", "|---|---|" + "---|" * len(tasks)]
        results["study"] = {}
        for align in ALIGNS:
            aligned = {t: aligned_target(model, clips[t], None, align=align)[0] for t in tasks}
            for kind in SCORES:
                scores = score_by_task(RewardSpec(model=model, score_kind=kind, align=align), episodes, features, aligned)
                cells = {t: correlations(scores[t], [ep["true"][k] for ep in episodes]) for k, t in enumerate(tasks)}
                results["study"][f"{align}/{kind}"] = cells
                rows.append(f"| {align} | {kind} | " + " | ".join(
                    f"{cells[t]['episode_spearman']:.2f} / {cells[t]['step_pearson']:.2f}" for t in tasks) + " |")
    if args.baselines and len(tasks) > 1:
        rows += ["", "", *baseline_study(genrl, [ep["true"] for ep in episodes], tasks, args.baselines, results)]
    reproduce = reproduce_command("benchmarks.reward_quality", ("domain", args.domain), ("tasks", args.tasks),
                                  ("policies", args.policies), ("noise", args.noise), ("seeds", args.seeds),
                                  ("model", args.model), ("prompt-dir", args.prompt_dir), ("name", args.name),
                                  ("study", bool(args.study)), ("baselines", args.baselines or None))
    notes = (f"Held-out episodes of {args.episode_frames} frames from {len(args.policies)} policies x noise levels "
             f"{args.noise} x seeds {args.seeds} ({len(episodes)} episodes): {', '.join(args.policies)}. Each episode "
             "is scored by every task's shipped clip as the GenRL/<Domain>-v0 envs score it; true rewards of the other "
             f"tasks by replaying the actions from the same seed. Reproduce: `{reproduce}`.")
    notes += f" {args.note}" if args.note else ""
    write_results(name, results, "\n".join(rows), notes, Path(args.results_dir) if args.results_dir else None)
    print("\n".join(rows))
    with atomic_write(out / "scores.json", "w") as fh:
        json.dump(results, fh)
    return results


if __name__ == "__main__":
    os.environ.setdefault("MUJOCO_GL", "egl")
    main()
