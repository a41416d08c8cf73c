"""What a behaviour learner sees in a world model's imagination: two diagnostics of a model and its prompt clips.

1. **Action sensitivity.** From posteriors of held-out episodes (16 frames of context), imagine 15 steps with the
   recorded actions and with two independent uniform-random action sequences, decode the last state, and report the
   per-pixel MSE between the two random futures (how much the actions change the future), between the recorded-action
   future and a random one, and between the recorded-action future and the true frame (how well it predicts).
2. **Reward density at data-free starts.** A fresh ``GenRLAgent`` (``small`` preset, seed 0, the model's reward
   alignment) draws one batch of data-free start states, imagines its horizon with the untrained actor, and reports the
   GenRL reward's mean, standard deviation, 90th percentile and maximum for each task's clip: how much reward signal
   there is before any learning.

    python -m benchmarks.diag_imagination --store runs/walker-sac-eval30 --models genrl_gym/pretrained/walker /tmp/wh/walker

Each model is a folder with ``model.pt`` and ``prompts/<task>.gif`` (an exported model).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np


def action_sensitivity(model: Any, store: Any, *, episodes: int = 12, starts: int = 3, context: int = 16,
                       horizon: int = 15, seed: int = 0) -> dict[str, float]:
    """Mean per-pixel MSE of decoded imagined frames (values in [0, 1]) after ``horizon`` steps; see module docstring."""
    import torch

    paths = store.paths()
    paths = paths[:: max(1, len(paths) // episodes)][:episodes]
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    a_dim = model.config.action_dim
    out: dict[str, list[float]] = {"random_vs_random": [], "recorded_vs_random": [], "recorded_vs_true": []}
    with torch.no_grad():
        for p in paths:
            ep = store.load(p, keys=("image", "action"))
            for s in rng.integers(1, len(ep["image"]) - context - horizon - 1, starts):
                img = torch.as_tensor(ep["image"][s:s + context + horizon])[None]
                act = torch.as_tensor(ep["action"][s:s + context + horizon], dtype=torch.float32)[None]
                first = torch.zeros(1, context, dtype=torch.bool)
                first[0, 0] = True
                post, _ = model.observe(img[:, :context], act[:, :context], first, sample=False)
                start = post.index((slice(None), -1))
                finals = []
                for seq in (act[0, context:], torch.rand(horizon, a_dim, generator=gen) * 2 - 1,
                            torch.rand(horizon, a_dim, generator=gen) * 2 - 1):
                    steps = iter(seq[:, None])
                    states, _ = model.imagine(lambda _state, it=steps: next(it), start, horizon, sample=False)
                    finals.append(model.decode(states.stoch[-1])[0])
                true = img[0, -1].float() / 255
                out["random_vs_random"].append(float((finals[1] - finals[2]).square().mean()))
                out["recorded_vs_random"].append(float((finals[0] - finals[1]).square().mean()))
                out["recorded_vs_true"].append(float((finals[0] - true).square().mean()))
    return {k: float(np.mean(v)) for k, v in out.items()}


def start_rewards(model_dir: Path, task: str, seed: int = 0) -> dict[str, float]:
    """GenRL reward statistics of one batch of imagined trajectories from data-free starts (untrained actor)."""
    import torch

    from genrl_gym.agents import GenRLAgent

    agent = GenRLAgent(str(model_dir / "model.pt"), str(model_dir / "prompts" / f"{task}.gif"), preset="small", seed=seed)
    with torch.no_grad():
        states, _, _ = agent.imagine(agent.start_states())
        r = agent.rewards(states).cpu().numpy()
    return {"align": agent.align, "mean": float(r.mean()), "std": float(r.std()), "p90": float(np.percentile(r, 90)),
            "max": float(r.max())}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store", required=True, help="held-out episode store (images + actions)")
    p.add_argument("--models", nargs="+", required=True, help="exported model folders (model.pt + prompts/)")
    p.add_argument("--tasks", nargs="+", default=["stand", "walk", "run"])
    p.add_argument("--name", default="diag_imagination", help="results name")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)

    import torch

    from benchmarks._machine import write_results
    from genrl_gym.data import EpisodeStore
    from genrl_gym.models import MFWM

    torch.set_num_threads(args.threads)
    store = EpisodeStore(args.store, create=False)
    results: dict[str, Any] = {"store": args.store, "models": {}}
    rows = ["| model | actions: random vs random | recorded vs random | recorded vs true frame | "
            + " | ".join(f"{t}: reward mean / p90 / max" for t in args.tasks) + " |",
            "|---|---|---|---|" + "---|" * len(args.tasks)]
    for m in args.models:
        folder = Path(m)
        torch.manual_seed(0)
        sens = action_sensitivity(MFWM.load(folder / "model.pt").eval(), store)
        rewards = {t: start_rewards(folder, t) for t in args.tasks}
        results["models"][m] = {"action_sensitivity": sens, "start_rewards": rewards}
        rows.append(f"| `{m}` | {sens['random_vs_random']:.4f} | {sens['recorded_vs_random']:.4f} | "
                    f"{sens['recorded_vs_true']:.4f} | "
                    + " | ".join(f"{r['mean']:.3f} / {r['p90']:.3f} / {r['max']:.3f}" for r in rewards.values()) + " |")
        print(rows[-1], flush=True)
    notes = ("Per-pixel MSE of decoded frames 15 imagined steps after 16 filtered frames of 12 held-out episodes "
             f"(3 starts each) of `{args.store}`; rewards of one batch of data-free starts of a fresh small-preset "
             "GenRLAgent (seed 0, the model's reward alignment). Reproduce: `python -m benchmarks.diag_imagination "
             f"--store {args.store} --models {' '.join(args.models)} --tasks {' '.join(args.tasks)}`.")
    write_results(args.name, results, "\n".join(rows), notes)


if __name__ == "__main__":
    main()
