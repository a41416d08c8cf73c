"""Mean true return of each data source of a ``genrl pipeline`` run, and of its held-out episodes.

Reads the per-episode ``source``, ``task`` and ``task_return`` (true return of the episode's task) that the collect
stage records in each store's ``store.json`` (:meth:`genrl_gym.data.EpisodeStore.episode_info`).

    python -m benchmarks.data_returns runs/stickman-sac
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from genrl_gym.data import EpisodeStore


def returns_by_source(store: EpisodeStore) -> dict[tuple[str, str], list[float]]:
    """``{(source, task): [true return of each episode]}`` in the order the episodes were stored."""
    out: dict[tuple[str, str], list[float]] = {}
    for name, info in sorted(store.episode_info().items()):
        if "task_return" not in info:
            raise ValueError(f"{store.root}: episode {name} records no task_return; it was not written by "
                             "`genrl pipeline` (genrl_gym.data.collect)")
        out.setdefault((info.get("source", "?"), info.get("task", "?")), []).append(float(info["task_return"]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="`genrl pipeline --out` folder (with data/ and heldout/)")
    args = parser.parse_args()
    for sub in ("data", "heldout"):
        for (source, task), rets in returns_by_source(EpisodeStore(args.run / sub, create=False)).items():
            print(f"{source:32s} {task:6s} n={len(rets):2d} mean={np.mean(rets):7.1f} "
                  f"min={min(rets):7.1f} max={max(rets):7.1f}")


if __name__ == "__main__":
    main()
