"""Mean true return of each data source of a ``genrl pipeline`` run, and of its held-out episodes.

Episodes are stored in the order of ``recipe.json``'s sources (the collect stage writes them source by source), and
held-out episodes task by task, ``heldout_episodes`` each. A return is the sum of an episode's stored ``task_reward``
(the first row is the reset frame, which carries none).

    python -m benchmarks.data_returns runs/stickman-sac
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def episode_return(path: Path) -> float:
    """True task return of one stored episode (sum of ``task_reward`` after the reset row)."""
    with np.load(path) as ep:
        return float(ep["task_reward"][1:].sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="`genrl pipeline --out` folder")
    args = parser.parse_args()
    recipe = json.loads((args.run / "recipe.json").read_text())
    files = sorted((args.run / "data").glob("ep-*.npz"))
    if len(files) != recipe["episodes"]:
        raise SystemExit(f"{args.run}/data has {len(files)} episodes, recipe.json lists {recipe['episodes']}")
    start = 0
    for source in recipe["sources"]:
        rets = [episode_return(f) for f in files[start:start + source["episodes"]]]
        start += source["episodes"]
        print(f"{source['source']:32s} {source['task']:6s} n={len(rets):2d} mean={np.mean(rets):7.1f} "
              f"min={min(rets):7.1f} max={max(rets):7.1f}")
    held = sorted((args.run / "heldout").glob("ep-*.npz"))
    per_task = json.loads((args.run / "pipeline.json").read_text())["heldout_episodes"]
    tasks = list(dict.fromkeys(s["task"] for s in recipe["sources"] if s["source"] != "random"))
    for i, task in enumerate(tasks):
        rets = [episode_return(f) for f in held[i * per_task:(i + 1) * per_task]]
        print(f"heldout {task}: mean={np.mean(rets):.1f} min={min(rets):.1f} max={max(rets):.1f}")


if __name__ == "__main__":
    main()
