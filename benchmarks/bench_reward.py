"""Cost of GenRL's reward per env step: GenRL/Walker-v0 vs the bare pixel env vs a CLIP-per-frame reward (VLM-RM style).

Measured side by side in one process, in interleaved rounds (every configuration once per round, median over rounds) so
that load from other processes on a shared machine hits all configurations alike:

* ``bare``: ``make_pixel_env("walker", "stand")`` (64x64, render_quality "fast", action repeat 2), one ``step``;
* ``genrl``: ``gym.make("GenRL/Walker-v0")`` with a ``small``-preset MFWM: the same step plus the posterior of the new
  frame and the trajectory-matching score of a full 17-step window (the default: the GRU is skipped, which gives the
  same reward); ``genrl_full`` runs the model's full ``obs_step`` filter (``track_latent=True``);
* ``clip``: the bare step plus what VLM-RM-style rewards do on every frame: resize to 224x224, CLIP normalisation,
  open_clip ViT-B-32 image tower, cosine with a fixed (text) embedding;
* reward-only timings of the two reward models (no env step), the cleanest comparison of their cost;
* 4 envs: ``gym.make_vec("GenRL/Walker-v0", num_envs=4)`` (one batched model call per step) vs 4 single GenRL envs
  stepped one after another (4 model calls), plus the bare 4-env SyncVectorEnv and reward-only batch-4 vs 4 x batch-1;
  16 envs: batched GenRL vector env vs the bare 16-env SyncVectorEnv (how the overhead amortises with the batch).

Weights are random (``small`` MFWM from ``preset("small")``, ViT-B-32 with ``pretrained=None``): speed depends on the
architecture and sizes, not on the weight values. Every configuration is run at torch's default thread count and with
one thread (on a shared 2-core machine, two intra-op threads can be much slower for batch-1 inference).

Run: ``.venv/bin/python -m benchmarks.bench_reward`` from the repository root (about 3-5 minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

import genrl_gym  # noqa: F401  (render guard before dm_control; registers the ids)
import gymnasium as gym
from benchmarks._machine import write_results
from genrl_gym.envs import make_pixel_env
from genrl_gym.models import MFWM, preset
from genrl_gym.prompts import write_video
from genrl_gym.vlm import load_vlm
from genrl_gym.reward import DEFAULT_HISTORY, LatentRewardScorer

LONG = 10**7  # frames: no episode ends during the benchmark


class ClipPerFrameReward:
    """VLM-RM-style reward: CLIP image embedding of every frame at 224 px, cosine with a fixed goal embedding."""

    def __init__(self, seed: int = 0) -> None:
        import open_clip

        torch.manual_seed(seed)
        self.model = open_clip.create_model("ViT-B-32", pretrained=None).eval()  # random weights: same cost
        self.mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
        self.std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
        dim = int(self.model.visual.output_dim)
        self.goal = torch.nn.functional.normalize(torch.randn(dim), dim=0)

    @torch.inference_mode()
    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """uint8 ``[B, 64, 64, 3]`` -> rewards ``[B]``."""
        x = torch.as_tensor(frames).permute(0, 3, 1, 2).float() / 255.0
        x = torch.nn.functional.interpolate(x, size=(224, 224), mode="bicubic", align_corners=False)
        e = torch.nn.functional.normalize(self.model.encode_image((x - self.mean) / self.std), dim=-1)
        return (e @ self.goal).numpy()


def _block_ms(fn: Callable[[], Any], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e3


def _interleaved(configs: dict[str, tuple[Callable[[], Any], int]], rounds: int) -> dict[str, float]:
    """Median (over rounds) of each configuration's mean ms per call; all configurations run once per round."""
    for fn, _ in configs.values():  # warm-up
        for _ in range(3):
            fn()
    blocks: dict[str, list[float]] = {k: [] for k in configs}
    for _ in range(rounds):
        for name, (fn, n) in configs.items():
            blocks[name].append(_block_ms(fn, n))
    return {k: statistics.median(v) for k, v in blocks.items()}


def _stepper(env: gym.Env[Any, Any] | gym.vector.VectorEnv, seed: int) -> Callable[[], Any]:
    env.reset(seed=seed)
    space = env.action_space
    rng = np.random.default_rng(seed)
    actions = rng.uniform(-1, 1, (256, *space.shape)).astype(np.float32)
    i = [0]

    def step() -> Any:
        i[0] = (i[0] + 1) % len(actions)
        return env.step(actions[i[0]])

    return step


def run(steps: int, clip_steps: int, rounds: int, threads: list[int]) -> tuple[dict[str, Any], str, str]:
    """Build everything once, then measure at each thread count. Returns (results, markdown table, notes)."""
    tmp = Path(tempfile.mkdtemp(prefix="bench_reward_"))
    torch.manual_seed(0)
    vlm = load_vlm("video-only")
    model = MFWM(preset("small", action_dim=6), domain="walker", vlm_identity=vlm.identity,
                 render_settings={"image_size": 64, "render_quality": "fast"})
    model.save(tmp / "walker_small.pt")
    clip_env = make_pixel_env("walker", "walk", episode_frames=LONG)  # a prompt clip from the domain itself
    clip_env.reset(seed=0)
    frames = [clip_env.step(clip_env.action_space.sample())[0]["image"] for _ in range(16)]
    clip_env.close()
    write_video(np.stack(frames), tmp / "prompt.gif")
    kw = {"model": str(tmp / "walker_small.pt"), "prompt": str(tmp / "prompt.gif"), "episode_frames": LONG}

    bare = make_pixel_env("walker", "stand", episode_frames=LONG)
    genrl = gym.make("GenRL/Walker-v0", max_episode_steps=LONG, **kw)
    genrl_full = gym.make("GenRL/Walker-v0", max_episode_steps=LONG, track_latent=True, **kw)
    genrl_unpinned = gym.make("GenRL/Walker-v0", max_episode_steps=LONG, num_threads=None, **kw)
    clip_reward = ClipPerFrameReward()
    clip_base = make_pixel_env("walker", "stand", episode_frames=LONG)
    clip_base_step = _stepper(clip_base, 1)

    def clip_step() -> Any:
        obs, *_ = clip_base_step()
        return clip_reward(obs["image"][None])

    scorer: LatentRewardScorer = genrl.get_wrapper_attr("scorer")
    target = scorer.target
    frame1 = np.stack(frames[:1])
    frame4 = np.stack(frames[:4])
    s1 = LatentRewardScorer(scorer.model, target, 1)
    s1u = LatentRewardScorer(scorer.model, target, 1, num_threads=None)
    s4 = LatentRewardScorer(scorer.model, target, 4)
    for s, f in ((s1, frame1), (s1u, frame1), (s4, frame4)):
        s.observe(None, f, [True] * len(f))
        for _ in range(20):  # full 17-step windows
            s.observe(np.zeros((len(f), 6)), f, [False] * len(f))

    n_envs = 4
    vec = gym.make_vec("GenRL/Walker-v0", num_envs=n_envs, max_episode_steps=LONG, **kw)
    singles = [gym.make("GenRL/Walker-v0", max_episode_steps=LONG, **kw) for _ in range(n_envs)]
    bare_vec = gym.vector.SyncVectorEnv([lambda: make_pixel_env("walker", "stand", episode_frames=LONG)] * n_envs)
    single_steps = [_stepper(e, 10 + i) for i, e in enumerate(singles)]
    n_big = 16
    vec_big = gym.make_vec("GenRL/Walker-v0", num_envs=n_big, max_episode_steps=LONG, **kw)
    bare_big = gym.vector.SyncVectorEnv([lambda: make_pixel_env("walker", "stand", episode_frames=LONG)] * n_big)

    single = {
        "bare": (_stepper(bare, 1), steps),
        "genrl": (_stepper(genrl, 1), steps),
        "genrl_full": (_stepper(genrl_full, 1), steps),
        "genrl_unpinned": (_stepper(genrl_unpinned, 1), steps),
        "clip": (clip_step, clip_steps),
        "reward_genrl": (lambda: s1.observe(np.zeros((1, 6)), frame1, [False]), steps),
        "reward_genrl_unpinned": (lambda: s1u.observe(np.zeros((1, 6)), frame1, [False]), steps),
        "reward_clip": (lambda: clip_reward(frame1), clip_steps),
    }
    vector = {
        "vec4_bare": (_stepper(bare_vec, 3), steps // 2),
        "vec4_batched": (_stepper(vec, 3), steps // 2),
        "vec4_per_env": (lambda: [s() for s in single_steps], steps // 2),
        "vec16_bare": (_stepper(bare_big, 5), max(steps // 8, 2)),
        "vec16_batched": (_stepper(vec_big, 5), max(steps // 8, 2)),
        "reward_batch4": (lambda: s4.observe(np.zeros((4, 6)), frame4, [False] * 4), steps),
        "reward_4x_batch1": (lambda: [s1.observe(np.zeros((1, 6)), frame1, [False]) for _ in range(4)], steps // 2),
    }
    default_threads = torch.get_num_threads()
    results: dict[str, Any] = {"config": {"preset": "small", "feature_dim": model.config.feature_dim,
                                          "history": DEFAULT_HISTORY, "image_size": 64, "render_quality": "fast",
                                          "action_repeat": 2,
                                          "steps_per_block": steps, "clip_steps_per_block": clip_steps, "rounds": rounds,
                                          "clip": "open_clip ViT-B-32, random weights, 224x224 bicubic"}}
    rows = []
    for t in threads:
        torch.set_num_threads(t)
        m = _interleaved({**single, **vector}, rounds)
        added_genrl = m["genrl"] - m["bare"]
        added_clip = m["clip"] - m["bare"]
        derived = {
            "genrl_over_bare": m["genrl"] / m["bare"],
            "genrl_full_over_bare": m["genrl_full"] / m["bare"],
            "genrl_unpinned_over_bare": m["genrl_unpinned"] / m["bare"],
            "clip_over_bare": m["clip"] / m["bare"],
            "clip_step_over_genrl_step": m["clip"] / m["genrl"],
            "clip_added_over_genrl_added": added_clip / added_genrl if added_genrl > 0 else float("inf"),
            "clip_reward_over_genrl_reward": m["reward_clip"] / m["reward_genrl"],
            "vec4_per_env_over_batched": m["vec4_per_env"] / m["vec4_batched"],
            "vec4_batched_over_bare": m["vec4_batched"] / m["vec4_bare"],
            "vec16_batched_over_bare": m["vec16_batched"] / m["vec16_bare"],
            "reward_4x_batch1_over_batch4": m["reward_4x_batch1"] / m["reward_batch4"],
        }
        results[f"threads_{t}"] = {"ms": m, "ratios": derived}
        rows.append((t, m, derived))
    torch.set_num_threads(default_threads)
    for e in [bare, genrl, genrl_full, genrl_unpinned, clip_base, vec, bare_vec, vec_big, bare_big, *singles]:
        e.close()

    table = ["| torch threads | bare step | GenRL step | GenRL, torch threads | GenRL, full filter | CLIP step "
             "| GenRL / bare (goal <= 1.2) | CLIP reward / GenRL reward (goal >= 20) | CLIP added / GenRL added |",
             "|---|---|---|---|---|---|---|---|---|"]
    for t, m, d in rows:
        table.append(f"| {t} | {m['bare']:.2f} ms | {m['genrl']:.2f} ms | {m['genrl_unpinned']:.2f} ms "
                     f"| {m['genrl_full']:.2f} ms | {m['clip']:.1f} ms | {d['genrl_over_bare']:.2f}x "
                     f"| {d['clip_reward_over_genrl_reward']:.0f}x | {d['clip_added_over_genrl_added']:.0f}x |")
    table += ["", "| torch threads | reward only: GenRL | reward only: CLIP | 4 envs bare | 4 envs batched GenRL "
              "| 4 envs per-env GenRL | per-env / batched | batched / bare | reward: 4 x batch-1 / batch-4 "
              "| 16 envs bare | 16 envs batched GenRL | batched / bare |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for t, m, d in rows:
        table.append(f"| {t} | {m['reward_genrl']:.2f} ms | {m['reward_clip']:.1f} ms | {m['vec4_bare']:.2f} ms "
                     f"| {m['vec4_batched']:.2f} ms | {m['vec4_per_env']:.2f} ms | {d['vec4_per_env_over_batched']:.2f}x "
                     f"| {d['vec4_batched_over_bare']:.2f}x | {d['reward_4x_batch1_over_batch4']:.2f}x "
                     f"| {m['vec16_bare']:.1f} ms | {m['vec16_batched']:.1f} ms | {d['vec16_batched_over_bare']:.2f}x |")
    verdict = []
    for t, m, d in rows:
        verdict.append(f"torch threads {t}: single env GenRL/bare {d['genrl_over_bare']:.2f}x (goal <= 1.2: "
                       f"{'met' if d['genrl_over_bare'] <= 1.2 else 'not met'}); batched vector env 4 envs "
                       f"{d['vec4_batched_over_bare']:.2f}x, 16 envs {d['vec16_batched_over_bare']:.2f}x; CLIP reward "
                       f"{d['clip_reward_over_genrl_reward']:.0f}x GenRL's (goal >= 20: "
                       f"{'met' if d['clip_reward_over_genrl_reward'] >= 20 else 'not met'}).")
    notes = (
        "Verdict of this run: " + " ".join(verdict) + "\n\n"
        "Times are wall-clock milliseconds per env step (4- and 16-env rows: per vector step), medians over "
        f"{rounds} interleaved rounds. 'GenRL step' = gym.make('GenRL/Walker-v0') with a `small`-preset MFWM "
        "(cnn_depth 16, F = 512 reward features, 17-step window, max-norm cosine with sequence alignment); 'full filter' "
        "also runs the GRU (track_latent=True, same rewards). GenRL computes its reward with one torch thread by default "
        "(num_threads=1, restored after each call); 'GenRL, torch threads' leaves torch's thread count (the row's) in "
        "place. 'CLIP' = the bare step plus open_clip ViT-B-32's image tower "
        "on the frame resized to 224 px and a cosine with a goal embedding (the VLM-RM approach). All weights are random: "
        "speed depends on the architecture, not the weight values. 'reward only' times the reward models alone on one "
        "frame; 'added' ratios use (step - bare step), which is noisier on a loaded machine. The machine is shared with "
        "other jobs, so absolute numbers move between runs; the interleaving keeps the ratios comparable.")
    return results, "\n".join(table), notes


def main() -> None:
    """Parse arguments, run, write ``benchmarks/results/reward.{json,md}``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=40, help="env steps per timed block")
    parser.add_argument("--clip-steps", type=int, default=5, help="steps per timed block of the CLIP configurations")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median taken)")
    parser.add_argument("--threads", default=f"{torch.get_num_threads()},1", help="comma-separated torch thread counts")
    args = parser.parse_args()
    threads = list(dict.fromkeys(int(t) for t in args.threads.split(",")))
    start = time.perf_counter()
    results, table, notes = run(args.steps, args.clip_steps, args.rounds, threads)
    results["wall_s"] = time.perf_counter() - start
    path = write_results("reward", results, table, notes)
    print(table)
    print(f"\nwrote {path} ({results['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
