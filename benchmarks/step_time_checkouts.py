"""Per-step cost of ``GenRL/Walker-v0`` (shipped walker, shipped stand clip) in two checkouts, interleaved.

Used to show that a refactor did not slow the env down: each round runs one fresh process per checkout (its own
``genrl_gym``), 50 warm-up steps then the median of 350 seeded random steps.

    git worktree add /tmp/old <commit>   # then, from this repository:
    python -m benchmarks.step_time_checkouts /tmp/old . --rounds 5
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

PROBE = """
import json, time, numpy as np
import genrl_gym, gymnasium as gym
from genrl_gym.prompts import example
env = gym.make("GenRL/Walker-v0", model="walker", prompt=str(example("walker", "stand")), task="stand")
env.reset(seed=0)
acts = np.random.default_rng(0).uniform(-1, 1, (400, 6)).astype(np.float32)
times = []
for i, a in enumerate(acts):
    t = time.perf_counter(); env.step(a)
    if i >= 50: times.append(time.perf_counter() - t)
print(json.dumps({"median_ms": 1000 * float(np.median(times))}))
"""


def step_ms(checkout: Path) -> float:
    """Median step time in ms of the env built by ``checkout``'s ``genrl_gym`` (a fresh process)."""
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=checkout, capture_output=True, text=True, check=True)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["median_ms"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rows = [(step_ms(args.old), step_ms(args.new)) for _ in range(args.rounds)]
    old, new = np.median([r[0] for r in rows]), np.median([r[1] for r in rows])
    print(json.dumps({"rounds": rows, "old_median_ms": old, "new_median_ms": new, "new_over_old": new / old}))


if __name__ == "__main__":
    main()
