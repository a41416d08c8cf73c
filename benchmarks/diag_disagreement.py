r"""Would an ensemble-disagreement penalty (MOPO, Plan2Explore) catch the model exploitation of GenRLAgent?

``benchmarks.diag_exploitation`` shows the actor steering imagination into the world model's errors: from the same real
start states, the reward it imagines under its own feedback (closed loop) is far above what the model predicts for its
recorded real actions (open loop) and above what it earns in reality. The textbook fix is to subtract the epistemic
uncertainty of the model from the imagined reward, measured as the disagreement of an ensemble trained on the same
data. That only helps if the disagreement is high exactly where the actor exploits. This diagnostic measures it:

1. **Ensemble.** ``members`` one-step predictors (MLPs, different initialisations and minibatches) fitted on the world
   model's posterior latents of its own training data: input ``[feat(s_t), a_{t+1}]``, target the posterior class
   probabilities of ``s_{t+1}`` (GenRL's posterior reads only the frame, so this is what the next frame says). The
   disagreement of a transition is the variance over members of the predicted probabilities, averaged over the
   ``S*C`` classes, in units of its mean on held-out data transitions (1 = as certain as on the data).
2. **Data-free imagination** (where GenRLAgent learns): the disagreement per imagined step of the agent's actor and of
   uniform random actions, from the same start states.
3. **Real episodes** (the windows of ``diag_exploitation``): the disagreement of the real posterior transitions, of
   the open-loop imagination (recorded actions) and of the closed-loop imagination (the actor on imagined states).

A disagreement penalty can target the exploitation only where the closed loop (and the actor in data-free imagination)
is clearly more uncertain than the open loop, the real transitions (and random actions).

    python -m benchmarks.diag_disagreement runs/bb/stand_seed0.zip runs/bb/walk_seed0.zip --task stand walk \
        --model runs/export/walker/model.pt --data runs/walker/data
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


class LatentEnsemble(nn.Module):
    """``members`` MLPs ``[N, in] -> [members, N, S*C]`` logits of the next posterior's ``S`` categoricals of ``C``
    classes (2 hidden layers, LayerNorm, SiLU), evaluated as batched matrix products."""

    def __init__(self, inp: int, stoch: int, classes: int, members: int = 5, units: int = 256) -> None:
        super().__init__()
        self.stoch, self.classes = stoch, classes
        out = stoch * classes

        def weight(i: int, o: int) -> nn.Parameter:
            return nn.Parameter(torch.randn(members, i, o) / i ** 0.5)

        self.w = nn.ParameterList([weight(inp, units), weight(units, units), weight(units, out)])
        self.b = nn.ParameterList([nn.Parameter(torch.zeros(members, 1, o)) for o in (units, units, out)])

    def forward(self, x: Tensor) -> Tensor:
        """``x [N, in]`` (the same inputs for every member) or ``[members, N, in]`` -> logits ``[members, N, S*C]``."""
        h = x.expand(self.w[0].shape[0], *x.shape) if x.dim() == 2 else x
        for i, (w, b) in enumerate(zip(self.w, self.b)):
            h = torch.baddbmm(b, h, w)
            if i < len(self.w) - 1:
                h = F.silu(F.layer_norm(h, h.shape[-1:]))
        return h

    def probs(self, x: Tensor) -> Tensor:
        """Predicted class probabilities ``[members, N, S*C]``."""
        return self(x).unflatten(-1, (self.stoch, self.classes)).softmax(-1).flatten(-2)

    def disagreement(self, x: Tensor) -> Tensor:
        """Variance over members of the predicted probabilities, averaged over classes: ``[N]``."""
        return self.probs(x).var(0).mean(-1)

    def loss(self, x: Tensor, target: Tensor) -> Tensor:
        """Cross-entropy against target probabilities; ``x [members, N, in]``, ``target [members, N, S*C]``."""
        logp = self(x).unflatten(-1, (self.stoch, self.classes)).log_softmax(-1)
        return -(target.unflatten(-1, (self.stoch, self.classes)) * logp).sum(-1).mean()


def data_transitions(wm: Any, store: Any, batches: int = 300, batch_size: int = 16, seq_len: int = 64,
                     seed: int = 0) -> tuple[Tensor, Tensor]:
    """Posterior transitions of replayed sequences: ``X [N, S*C + Dd + A]`` = ``[feat(s_t), a_{t+1}]`` (sampled
    posteriors), ``Y [N, S*C]`` = class probabilities of ``s_{t+1}``; episode boundaries dropped."""
    from genrl_gym.data import SequenceSampler

    sampler = SequenceSampler(store, batch_size=batch_size, seq_len=seq_len, seed=seed,
                              keys=("image", "action", "is_first"))
    xs, ys = [], []
    with torch.no_grad():
        for _ in range(batches):
            batch = next(sampler)
            post, _ = wm.observe(batch["image"], batch["action"], batch["is_first"], sample=True)
            action = torch.as_tensor(batch["action"], dtype=torch.float32)
            keep = ~torch.as_tensor(batch["is_first"], dtype=torch.bool)[:, 1:]
            xs.append(torch.cat([post.feat()[:, :-1], action[:, 1:]], -1)[keep])
            ys.append(post.logits[:, 1:].softmax(-1).flatten(2)[keep])
    return torch.cat(xs), torch.cat(ys)


def fit_ensemble(x: Tensor, y: Tensor, stoch: int, classes: int, *, members: int = 5, units: int = 256,
                 steps: int = 4000, batch: int = 512, lr: float = 1e-3, holdout: float = 0.1,
                 seed: int = 0) -> tuple[LatentEnsemble, dict[str, float]]:
    """Fit :class:`LatentEnsemble` on ``(x, y)`` (each member its own random minibatches); returns it with the held-out
    cross-entropy and the held-out disagreement's mean and 95th percentile (the unit of every other figure)."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    perm = torch.randperm(x.shape[0], generator=gen)
    n_val = max(1, int(x.shape[0] * holdout))
    xv, yv, xt, yt = x[perm[:n_val]], y[perm[:n_val]], x[perm[n_val:]], y[perm[n_val:]]
    ens = LatentEnsemble(x.shape[1], stoch, classes, members, units).to(x.device)
    opt = torch.optim.Adam(ens.parameters(), lr=lr)
    for _ in range(steps):
        idx = torch.randint(0, xt.shape[0], (members, batch), generator=gen)
        loss = ens.loss(xt[idx], yt[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    ens.requires_grad_(False)
    with torch.no_grad():
        u = ens.disagreement(xv)
        val = ens.loss(xv.expand(members, *xv.shape), yv.expand(members, *yv.shape))
    return ens, {"val_cross_entropy": float(val), "u_mean": float(u.mean()), "u_p95": float(u.quantile(0.95)),
                 "train_transitions": int(xt.shape[0]), "val_transitions": int(n_val)}


def _u(ens: LatentEnsemble, unit: float, states: Any, actions: Tensor) -> Tensor:
    """Disagreement of imagined transitions ``states [H+1, N]``, ``actions [H, N, A]`` -> ``[H, N]`` in data units."""
    x = torch.cat([states.feat()[:-1], actions.clamp(-1, 1)], -1)
    return ens.disagreement(x.flatten(0, 1)).view(x.shape[:2]) / unit


def imagination_disagreement(agent: Any, ens: LatentEnsemble, unit: float, seed: int = 0) -> dict[str, list[float]]:
    """Per imagined step (mean over the batch): the actor's actions and uniform random actions from the same data-free
    start states (``agent.start_states()``), ``H`` steps each."""
    torch.manual_seed(seed)
    wm, dim = agent.world_model, agent.action_space.shape[0]
    with torch.no_grad():
        start = agent.start_states()
        states, actions, _ = agent.imagine(start)
        r_states, r_actions = wm.imagine(lambda s: torch.rand(s.deter.shape[0], dim, device=s.deter.device) * 2 - 1,
                                         start, agent.config.horizon)
    return {"actor": _u(ens, unit, states, actions).mean(1).tolist(),
            "random": _u(ens, unit, r_states, r_actions).mean(1).tolist()}


def episode_disagreement(agent: Any, ens: LatentEnsemble, unit: float, task: str, episodes: int = 1,
                         steps: int = 300, every: int = 20, horizon: int = 16) -> dict[str, float]:
    """Along real episodes of the agent (mean action): mean disagreement of the real posterior transitions, and of the
    open-loop and closed-loop imaginations of ``horizon`` steps started every ``every`` steps (the windows of
    :func:`benchmarks.diag_exploitation.window_imaginations`)."""
    from benchmarks.diag_exploitation import record_episode, window_imaginations
    from genrl_gym.envs import make_pixel_env, render_env_kwargs

    wm = agent.world_model
    env = make_pixel_env(wm.domain, task, **render_env_kwargs(wm.render_settings))
    out: dict[str, list[float]] = {"real": [], "open_loop": [], "closed_loop": []}
    try:
        for ep in range(episodes):
            post, act, _, _ = record_episode(agent, env, steps, seed=ep)
            with torch.no_grad():
                x = torch.cat([post.feat()[0, :-1], act[0, 1:]], -1)
                out["real"].append(float(ens.disagreement(x).mean() / unit))
            for _, open_loop, closed_loop in window_imaginations(agent, post, act, steps, every, horizon):
                with torch.no_grad():
                    out["open_loop"].append(float(_u(ens, unit, *open_loop).mean()))
                    out["closed_loop"].append(float(_u(ens, unit, *closed_loop).mean()))
    finally:
        env.close()
    return {k: float(np.mean(v)) for k, v in out.items()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("agents", nargs="+", help="GenRLAgent zip files trained on --model (bench_behaviour --save-agents)")
    p.add_argument("--model", required=True, help="the world model the agents were trained with (path or name)")
    p.add_argument("--data", required=True, help="that model's training data (an episode store folder)")
    p.add_argument("--task", nargs="+", required=True,
                   help="the task of each agent's real episodes: one for all agents, or one per agent")
    p.add_argument("--members", type=int, default=5)
    p.add_argument("--fit-steps", type=int, default=4000)
    p.add_argument("--batches", type=int, default=300, help="replayed sequences (16 x 64 steps each) of transitions")
    p.add_argument("--episodes", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--name", default="", help="write <name>.json/.md into --results-dir (default: print only)")
    p.add_argument("--results-dir", type=Path, default=None)
    args = p.parse_args(argv)
    if len(args.task) not in (1, len(args.agents)):
        p.error(f"--task: give one task for all agents or one per agent ({len(args.agents)}), got {len(args.task)}")
    tasks = args.task * len(args.agents) if len(args.task) == 1 else args.task

    import genrl_gym  # noqa: F401
    from genrl_gym.agents import GenRLAgent
    from genrl_gym.data import EpisodeStore
    from genrl_gym.model_store import resolve_model

    torch.set_num_threads(args.threads)
    wm = resolve_model(args.model)
    wm.requires_grad_(False)
    c = wm.config.world_model
    x, y = data_transitions(wm, EpisodeStore(args.data, create=False), args.batches)
    ens, fit = fit_ensemble(x, y, c.stoch, c.classes, members=args.members, steps=args.fit_steps)
    print(f"ensemble: {fit}", flush=True)
    rows = []
    for path, task in zip(args.agents, tasks):
        agent = GenRLAgent.load(path)
        if agent.world_model.weights_sha256() != wm.weights_sha256():
            sys.exit(f"{path}: trained on another world model than --model {args.model}; pass the agents' model")
        row = {"agent": path, "task": task, "imagination": imagination_disagreement(agent, ens, fit["u_mean"]),
               **episode_disagreement(agent, ens, fit["u_mean"], task, args.episodes)}
        rows.append(row)
        print(row, flush=True)
    table = ("| agent | task | data-free imagination, actor (step 1 -> H) | same starts, random actions | real transitions | "
             "open loop (recorded actions) | closed loop (actor) |\n|---|---|---|---|---|---|---|\n")
    for r in rows:
        im = r["imagination"]
        table += (f"| `{Path(r['agent']).name}` | {r['task']} | {im['actor'][0]:.2f} -> {im['actor'][-1]:.2f} (mean "
                  f"{np.mean(im['actor']):.2f}) | {im['random'][0]:.2f} -> {im['random'][-1]:.2f} (mean "
                  f"{np.mean(im['random']):.2f}) | {r['real']:.2f} | {r['open_loop']:.2f} | {r['closed_loop']:.2f} |\n")
    results = {"model": args.model, "model_sha256": wm.weights_sha256(), "data": args.data,
               "ensemble": {"members": args.members, "fit_steps": args.fit_steps, **fit}, "agents": rows,
               "command": "python -m benchmarks.diag_disagreement " + " ".join(argv if argv is not None else sys.argv[1:])}
    print(table)
    if args.name:
        from benchmarks._machine import write_results

        notes = ("Disagreement in units of its mean on held-out data transitions (1 = as certain as on the data). "
                 f"Ensemble: {args.members} members, held-out cross-entropy {fit['val_cross_entropy']:.3f}, data p95 "
                 f"{fit['u_p95'] / fit['u_mean']:.2f}. Reproduce: `{results['command']}`.")
        write_results(args.name, results, table, notes, results_dir=args.results_dir)
    return results


if __name__ == "__main__":
    main()
