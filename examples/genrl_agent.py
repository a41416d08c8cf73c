"""GenRL's agent: learns walker stand in the world model's imagination from the shipped clip, data-free, then is
evaluated on the true reward and saved.

    python examples/genrl_agent.py --seconds 300        # the benchmark's budget (about 500 behaviour updates)
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from genrl_gym.agents import GenRLAgent, evaluate_task_return
from genrl_gym.prompts import example
from genrl_gym.wrappers import learn_for


def main(seconds: float, eval_seeds: int, eval_frames: int, seed: int, out: Path) -> dict[str, float]:
    """Train for a wall-time budget, evaluate, save and reload.

    :param seconds: training budget in seconds of wall time.
    :param eval_seeds: number of evaluation episodes (seeds ``0 .. n-1``).
    :param eval_frames: simulator frames per evaluation episode (1000 for normalised scores).
    :param seed: the agent's seed.
    :param out: where the trained agent is saved (a ``.zip``).
    :return: the mean true return and the number of behaviour updates done.
    """
    agent = GenRLAgent(model="walker", prompt=example("walker", "stand"), start="data_free", seed=seed)
    budget = learn_for(agent, seconds=seconds)
    agent.save(out)
    agent = GenRLAgent.load(out)
    result = evaluate_task_return(agent, "walker", "stand", seeds=list(range(eval_seeds)), episode_frames=eval_frames)
    return {"mean_return": float(result["mean"]), "updates": float(budget.steps_done)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--eval-seeds", type=int, default=3)
    parser.add_argument("--eval-frames", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "genrl_walker_stand.zip")
    args = parser.parse_args()
    print(main(args.seconds, args.eval_seeds, args.eval_frames, args.seed, args.out))
