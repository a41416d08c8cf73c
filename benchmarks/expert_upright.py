"""Does an expert keep the body upright? Return and torso up-axis z per episode of one expert stage.

``python -m benchmarks.expert_upright runs/quadruped-sac1m/experts/stand/stage-00300000.zip --domain quadruped
--task stand --episodes 6``. The up-axis z of the torso is 1 upright, 0 on its side, -1 upside down; a high true
return with a mean near 0 means the expert scores without doing the task (e.g. quadruped stand lying on its side).
"""
from __future__ import annotations

import argparse

import numpy as np

from genrl_gym.training.experts import ExpertPolicy, make_proprio_env


def rollout_upright(stage: str, domain: str, task: str, seed: int) -> dict[str, float]:
    """One 1000-frame episode of ``stage`` (stochastic actions): true return and torso up-axis z (start, mean, end)."""
    policy = ExpertPolicy(stage)
    env = make_proprio_env(domain, task, seed=seed)
    obs, _ = env.reset(seed=seed)
    physics = env.unwrapped.physics  # type: ignore[attr-defined]
    start = float(physics.torso_upright())  # the domain's own definition, the one its rewards use
    ret, ups, done = 0.0, [], False
    while not done:
        action, _ = policy.predict(obs[None], deterministic=False)
        obs, reward, terminated, truncated, _ = env.step(action[0])
        ret += float(reward)
        ups.append(float(physics.torso_upright()))
        done = terminated or truncated
    env.close()
    return {"return": ret, "upright_start": start, "upright_mean": float(np.mean(ups)), "upright_end": ups[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", help="an expert's stage-*.zip")
    parser.add_argument("--domain", default="quadruped")
    parser.add_argument("--task", required=True)
    parser.add_argument("--episodes", type=int, default=6)
    parser.add_argument("--seed", type=int, default=200)
    args = parser.parse_args()
    for i in range(args.episodes):
        r = rollout_upright(args.stage, args.domain, args.task, args.seed + i)
        print(f"{args.task} seed {args.seed + i}: return {r['return']:6.1f}  upright start {r['upright_start']:+.2f}  "
              f"mean {r['upright_mean']:+.2f}  end {r['upright_end']:+.2f}")


if __name__ == "__main__":
    main()
