"""Rendering speed of the pixel envs: 64x64 frames/s per domain, render_quality "fast" vs "default", side by side.

Columns per domain:

* ``dm_control physics.render``: what dm_control's ``pixels.Wrapper`` (and GenRL) does per frame: a new camera and
  scene per call, dm_control's default render settings (4x multisampling, shadows, reflections);
* ``default``: our cached camera with dm_control's default settings;
* ``fast``: our cached camera without multisampling, shadows and reflections (the env's default);
* env steps/s of ``make_pixel_env`` (action repeat 2: two physics frames + one rendered frame per step), both qualities,
  and physics-only frames/s for reference.

Each number is the median over ``--repeats`` timed blocks of ``--frames`` renders/steps (after a warm-up), with the
physics advanced between renders so every frame is a new state. Also writes ``render_quality_walker.png``
(default | fast | 4x |difference|, 64x64 frames upscaled 4x) so the "looks the same" claim can be checked by eye.

Run: ``.venv/bin/python -m benchmarks.bench_render`` from the repository root.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import numpy as np

import genrl_gym  # noqa: F401  (render guard before dm_control)
from benchmarks._machine import RESULTS, write_results
from genrl_gym.envs import DOMAINS, make_pixel_env
from genrl_gym.utils import atomic_write

TASK = {"walker": "walk", "cheetah": "run", "quadruped": "walk", "stickman": "walk"}


def _median_ms(fn: Callable[[], object], frames: int, repeats: int, warmup: int = 5) -> float:
    """Median over ``repeats`` blocks of the mean wall time (ms) of one ``fn()`` call."""
    for _ in range(warmup):
        fn()
    blocks = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(frames):
            fn()
        blocks.append((time.perf_counter() - start) / frames * 1e3)
    return statistics.median(blocks)


def _bench_quality(domain: str, quality: str, frames: int, repeats: int) -> dict[str, float]:
    """Raw per-call times (ms) for one domain and render quality (physics advanced between renders)."""
    env = make_pixel_env(domain, TASK[domain], render_quality=quality, seed=0, episode_frames=10**9)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    shape = env.action_space.shape

    def advance() -> None:
        env.dm_env.step(rng.uniform(-1, 1, shape))

    def ours() -> None:
        advance()
        env.render_frame()

    def per_call_scene() -> None:
        advance()
        env.physics.render(64, 64, camera_id=env.camera_id)

    def env_step() -> None:
        env.step(rng.uniform(-1, 1, shape).astype(np.float32))

    out = {f"{quality}_ms": _median_ms(ours, frames, repeats)}
    if quality == "default":  # dm_control's own path and the physics alone, once per domain
        out["dm_control_ms"] = _median_ms(per_call_scene, frames, repeats)
        out["physics_frame_ms"] = _median_ms(advance, frames * 5, repeats)
    out[f"env_step_{quality}_ms"] = _median_ms(env_step, frames, repeats)
    env.close()
    return out


def bench_domain(domain: str, frames: int, repeats: int) -> dict[str, float]:
    """Times (ms) and rates (1/s) for one domain; see the module docstring for the columns."""
    out: dict[str, float] = {}
    for quality in ("default", "fast"):
        out.update(_bench_quality(domain, quality, frames, repeats))
    # Time of the render itself (physics advance subtracted), as frames/s.
    for key in ("dm_control", "default", "fast"):
        render_ms = max(out[f"{key}_ms"] - out["physics_frame_ms"], 1e-6)
        out[f"{key}_render_ms"] = render_ms
        out[f"{key}_fps"] = 1e3 / render_ms
    for quality in ("default", "fast"):
        out[f"env_steps_per_s_{quality}"] = 1e3 / out[f"env_step_{quality}_ms"]
    out["physics_frames_per_s"] = 1e3 / out["physics_frame_ms"]
    out["speedup_fast_vs_dm_control"] = out["dm_control_render_ms"] / out["fast_render_ms"]
    out["speedup_fast_vs_default"] = out["default_render_ms"] / out["fast_render_ms"]
    return out


ABLATION: dict[str, tuple[int, dict[str, bool]]] = {  # name -> (offsamples, render flag overrides)
    "default (4x MSAA, shadows, reflection)": (4, {}),
    "no MSAA": (0, {}),
    "no shadows": (4, {"shadow": False}),
    "no reflection": (4, {"reflection": False}),
    "no MSAA, no shadows": (0, {"shadow": False}),
    "fast (none of the three)": (0, {"shadow": False, "reflection": False}),
}


def ablation(frames: int, repeats: int) -> dict[str, float]:
    """Walker 64x64 render ms (cached camera, static state) for each combination of the three settings."""
    from dm_control.mujoco import engine

    out = {}
    for name, (offsamples, flags) in ABLATION.items():
        env = make_pixel_env("walker", "walk", render_quality="default", seed=0)
        env.reset(seed=0)
        env.physics.model.vis.quality.offsamples = offsamples
        env.physics._free_rendering_contexts()  # noqa: SLF001  (recreate the GL buffer with the new sample count)
        camera = engine.Camera(env.physics, height=64, width=64, camera_id=env.camera_id)
        out[name] = _median_ms(lambda c=camera, f=flags: c.render(render_flag_overrides=f), frames, repeats)
        camera._scene.free()  # noqa: SLF001
        env.close()
    return out


def quality_image(path_png: str) -> dict[str, float]:
    """Write default | fast | |diff| x4 of the same walker state; return pixel-difference statistics (0-255 scale)."""
    import imageio.v3 as iio

    frames = {}
    for quality in ("default", "fast"):
        env = make_pixel_env("walker", "walk", render_quality=quality, seed=0)
        env.reset(seed=0)
        for _ in range(15):
            env.step(np.zeros(env.action_space.shape, np.float32))
        frames[quality] = env.render_frame()
        env.close()
    diff = np.abs(frames["default"].astype(np.int16) - frames["fast"].astype(np.int16))
    panel = np.concatenate([frames["default"], frames["fast"], np.clip(diff * 4, 0, 255).astype(np.uint8)], axis=1)
    panel = np.kron(panel, np.ones((4, 4, 1), np.uint8))
    with atomic_write(path_png, "wb") as f:
        f.write(iio.imwrite("<bytes>", panel, extension=".png"))
    return {"mean_abs_diff": float(diff.mean()), "median_abs_diff": float(np.median(diff)),
            "frac_pixels_diff_gt_16": float((diff.max(axis=-1) > 16).mean())}


def main() -> None:
    """Run the benchmark and write ``benchmarks/results/render.{json,md}`` (+ the walker comparison PNG)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=40, help="renders/steps per timed block")
    parser.add_argument("--repeats", type=int, default=5, help="timed blocks per number (median reported)")
    parser.add_argument("--domains", nargs="*", default=list(DOMAINS), choices=list(DOMAINS))
    args = parser.parse_args()

    results: dict[str, object] = {"frames_per_block": args.frames, "repeats": args.repeats, "image_size": 64,
                                  "action_repeat": 2, "LP_NUM_THREADS": os.environ.get("LP_NUM_THREADS"),
                                  "load_average_before": os.getloadavg()[0], "domains": {}}
    for domain in args.domains:
        results["domains"][domain] = bench_domain(domain, args.frames, args.repeats)  # type: ignore[index]
        print(domain, {k: round(v, 2) for k, v in results["domains"][domain].items()}, flush=True)  # type: ignore[index]
    results["walker_setting_ablation_ms"] = ablation(args.frames, args.repeats)
    results["load_average_after"] = os.getloadavg()[0]
    results["walker_fast_vs_default_pixels"] = quality_image(str(RESULTS / "render_quality_walker.png"))

    rows = ["| domain | dm_control physics.render ms (fps) | ours default ms (fps) | ours fast ms (fps) | "
            "fast speed-up vs physics.render / vs default | env steps/s default | env steps/s fast | physics frames/s |",
            "|---|---|---|---|---|---|---|---|"]
    for domain, r in results["domains"].items():  # type: ignore[union-attr]
        rows.append(
            f"| {domain} | {r['dm_control_render_ms']:.2f} ({r['dm_control_fps']:.0f}) "
            f"| {r['default_render_ms']:.2f} ({r['default_fps']:.0f}) | {r['fast_render_ms']:.2f} "
            f"({r['fast_fps']:.0f}) | {r['speedup_fast_vs_dm_control']:.1f}x / {r['speedup_fast_vs_default']:.1f}x "
            f"| {r['env_steps_per_s_default']:.0f} | {r['env_steps_per_s_fast']:.0f} | {r['physics_frames_per_s']:.0f} |")
    rows += ["", "Walker, which setting costs what (64x64 render ms, cached camera):", "",
             "| setting | ms/frame |", "|---|---|"]
    rows += [f"| {k} | {v:.2f} |" for k, v in results["walker_setting_ablation_ms"].items()]  # type: ignore[union-attr]
    px = results["walker_fast_vs_default_pixels"]
    notes = (
        "64x64 RGB frames, one process, Mesa llvmpipe through EGL (MUJOCO_GL=egl). Render times are per frame with the "
        "physics advance subtracted; env steps/s include 2 physics frames and 1 render per step (action repeat 2). "
        f"Median of {args.repeats} blocks of {args.frames}. Load average {results['load_average_before']:.1f} before, "
        f"{results['load_average_after']:.1f} after (the machine is shared: absolute numbers are noisy, "
        "the ratios less so).\n\n"
        "`dm_control physics.render` builds a camera and scene per call (dm_control's pixels wrapper, GenRL); `ours` "
        "keeps one camera per env. `fast` = offsamples 0 (no multisampling), no shadows, no reflection.\n\n"
        f"Walker frame, fast vs default (render_quality_walker.png: default | fast | 4x|diff|): mean |diff| "
        f"{px['mean_abs_diff']:.1f}/255, median {px['median_abs_diff']:.0f}, {100 * px['frac_pixels_diff_gt_16']:.1f}% "
        "of pixels differ by more than 16 (the floor's reflection and shadow, and anti-aliased edges).")
    path = write_results("render", results, "\n".join(rows), notes)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
