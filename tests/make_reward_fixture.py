"""Write ``tests/data/reward_fixture.json``: the per-step GenRL rewards the Gymnasium wrapper gives on fixed episodes.

Run ``python tests/make_reward_fixture.py`` from the repository root (``--domains walker``: re-record only the
cases of a shipped model that changed, as when the walker was replaced in session 19). For every shipped model
(``genrl_gym/pretrained/<domain>``) and each of its tasks' shipped prompt clips, the episode is the frames of a shipped
clip of the same domain (``genrl_gym.prompts.read_video``) replayed by :class:`ReplayEnv`, with actions drawn from a
seeded numpy generator, and the rewards are what :class:`genrl_gym.wrappers.GenRLReward` returns step by step (the
model's own alignment and the default score); walker adds the KL scores and the other alignments. Each case records the
rewards (float32), the sha256 of their float32 bytes, and the machine (git commit, CPU name), so that
``tests/test_reward_identity.py`` can check that a refactored reward engine still gives the same numbers.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "data" / "reward_fixture.json"
#: Extra reward options scored on walker (beside the model's defaults): KL scores and every alignment.
WALKER_VARIANTS: tuple[dict[str, str], ...] = ({"score_kind": "cosine_kl"}, {"score_kind": "neg_kl", "align": "sequence"},
                                               {"align": "sequence"}, {"align": "none", "score_kind": "cosine"})
ACTION_SEED = 1234


class ReplayEnv(gym.Env[dict[str, np.ndarray], np.ndarray]):
    """A pixel env that replays fixed frames ``uint8 [T, 64, 64, 3]``: reset returns frame 0, step ``t`` frame ``t``."""

    def __init__(self, frames: np.ndarray, action_dim: int, domain: str) -> None:
        self.frames, self.domain = frames, domain
        size = frames.shape[1]
        self.observation_space = spaces.Dict({"image": spaces.Box(0, 255, (size, size, 3), np.uint8)})
        self.action_space = spaces.Box(-1.0, 1.0, (action_dim,), np.float32)
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict[str, np.ndarray], dict]:
        super().reset(seed=seed)
        self.t = 0
        return {"image": self.frames[0]}, {}

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict]:
        self.t += 1
        return {"image": self.frames[self.t]}, 0.0, False, self.t == len(self.frames) - 1, {}


def episode_actions(steps: int, action_dim: int) -> np.ndarray:
    """The fixed actions of an episode of ``steps`` steps (beyond ``[-1, 1]`` in places: the wrappers clip them)."""
    return np.random.default_rng(ACTION_SEED).uniform(-1.3, 1.3, (steps, action_dim)).astype(np.float32)


def cases() -> list[dict[str, Any]]:
    """Every (domain, prompt clip, episode clip, options) case, in a fixed order."""
    from genrl_gym.prompts import list_examples

    clips = list_examples()
    out = []
    for domain in sorted({d for d, _ in clips}):
        tasks = sorted(t for d, t in clips if d == domain)
        for i, task in enumerate(tasks):
            episode_task = tasks[(i + 1) % len(tasks)]  # another task's clip where there is one
            variants: tuple[dict[str, str], ...] = ({},) + (WALKER_VARIANTS if domain == "walker" else ())
            for options in variants:
                out.append({"domain": domain, "prompt_task": task, "episode_task": episode_task, "options": options})
    return out


def sha256_f32(values: np.ndarray) -> str:
    """sha256 of the values as little-endian float32 bytes."""
    return hashlib.sha256(np.asarray(values, dtype="<f4").tobytes()).hexdigest()


#: Instruction-set extensions that change which float kernels torch and oneDNN run (and so the rounding).
KERNEL_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_bf16")


def cpu_name() -> str:
    """The CPU model name and its kernel-relevant instruction sets (``/proc/cpuinfo``), else ``platform.processor()``.

    Virtual machines often report a bare family name (e.g. "AMD EPYC"), so the flags tell generations apart.
    """
    name, flags = "", ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not name:
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = line.split(":", 1)[1]
    except OSError:
        pass
    if not name:
        return platform.processor() or "unknown"
    have = set(flags.split())
    return f"{name} [{' '.join(f for f in KERNEL_FLAGS if f in have)}]"


def wrapper_rewards(case: dict[str, Any]) -> np.ndarray:
    """The rewards ``float32 [T - 1]`` that ``GenRLReward`` gives on the case's episode (the reset step earns none)."""
    from genrl_gym.model_store import resolve_model
    from genrl_gym.prompts import example, read_video
    from genrl_gym.wrappers import GenRLReward

    domain = case["domain"]
    model = resolve_model(domain, domain=domain)
    frames = read_video(example(domain, case["episode_task"]))
    env = GenRLReward(ReplayEnv(frames, int(model.config.action_dim), domain), model, example(domain, case["prompt_task"]),
                      domain=domain, **case["options"])
    env.reset(seed=0)
    rewards = [env.step(a)[1] for a in episode_actions(len(frames) - 1, int(model.config.action_dim))]
    return np.asarray(rewards, dtype=np.float32)


def main(argv: list[str] | None = None) -> None:
    import argparse

    import torch

    import genrl_gym  # noqa: F401  (render guard first)
    from genrl_gym.model_store import resolve_model_path
    from genrl_gym.training.export import file_sha256
    from genrl_gym.utils import atomic_write

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--domains", nargs="+", default=None,
                   help="re-record only these domains' cases (a shipped model that changed), keeping the others as "
                        "recorded; each re-recorded case notes its commit and model sha256. Default: every case")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    old = json.loads(FIXTURE.read_text()) if args.domains else None
    if old is not None and old["cpu"] != cpu_name():
        raise SystemExit(f"{FIXTURE} was recorded on {old['cpu']!r}, this CPU is {cpu_name()!r}: re-record every case "
                         "(without --domains) so that the fixture holds one CPU's rounding")
    kept = {json.dumps({k: c[k] for k in ("domain", "prompt_task", "episode_task", "options")}, sort_keys=True): c
            for c in (old["cases"] if old else [])}
    records = []
    for case in cases():
        if args.domains and case["domain"] not in args.domains:
            records.append(kept[json.dumps(case, sort_keys=True)])
            continue
        rewards = wrapper_rewards(case)
        extra = ({"git_commit": commit, "model_sha256": file_sha256(resolve_model_path(case["domain"])[0])}
                 if args.domains else {})
        records.append({**case, "rewards": rewards.tolist(), "sha256": sha256_f32(rewards), **extra})
        print(f"{case['domain']:9s} prompt={case['prompt_task']:5s} episode={case['episode_task']:5s} {case['options']} "
              f"{sha256_f32(rewards)[:16]}", file=sys.stderr)
    header = ({k: old[k] for k in ("git_commit", "cpu", "torch", "action_seed")} if old else
              {"git_commit": commit, "cpu": cpu_name(), "torch": torch.__version__, "action_seed": ACTION_SEED})
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(FIXTURE, "w") as f:
        json.dump({**header, "cases": records}, f, indent=1)
        f.write("\n")
    print(f"wrote {len(records)} cases to {FIXTURE}", file=sys.stderr)


if __name__ == "__main__":
    main()
