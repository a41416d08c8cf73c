"""Shared test builders: tiny random-weight world models, prompt clips and a stand-in sentence encoder (tests never use
shipped models)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from typing import Any

import gymnasium as gym
import numpy as np
import torch

#: Action sizes of the domains (the tiny model must match the env it scores).
ACTION_DIMS = {"walker": 6, "cheetah": 6, "quadruped": 12, "stickman": 10, "kitchen": 9}


def save_tiny_model(path: Path, domain: str = "walker", seed: int = 0) -> Path:
    """A randomly initialised ``tiny`` MFWM of ``domain`` with the offline video-only VLM, saved at ``path``."""
    from genrl_gym.models import MFWM, preset
    from genrl_gym.vlm import load_vlm

    torch.manual_seed(seed)
    MFWM(preset("tiny", action_dim=ACTION_DIMS[domain]), domain=domain, vlm_identity=load_vlm("video-only").identity,
         render_settings={"image_size": 64, "render_quality": "fast"}).save(path)
    return path


def save_random_clip(path: Path, frames: int, seed: int = 0) -> Path:
    """A GIF of ``frames`` random 64x64 frames (a valid video prompt with no meaning)."""
    from genrl_gym.prompts import write_video

    rng = np.random.default_rng(seed)
    write_video(rng.integers(0, 256, (frames, 64, 64, 3), dtype=np.uint8), path)
    return path


def image_only(env: gym.Env[Any, Any]) -> gym.Env[Any, Any]:
    """A pixel env whose observation is the plain HWC image (Box) instead of ``{"image": ...}`` (CnnPolicy-ready)."""
    return gym.wrappers.TransformObservation(env, lambda obs: obs["image"], env.observation_space["image"])


def killed_mid_torch_save(action: Any, at_call: int = 1, timeout: float = 180.0) -> int:
    """Run ``action()`` in a forked child whose ``at_call``-th ``torch.save`` writes half its bytes and then dies like
    SIGKILL (``os._exit``: no exception handlers, no temp-file cleanup). Returns the child's exit code (9 when it died
    mid-write; 1 when ``action`` returned without reaching that call)."""
    import io
    import os
    import time

    pid = os.fork()  # the child inherits the imports and the test's state: no interpreter start-up
    if pid == 0:  # pragma: no cover - child process
        try:
            real, calls = torch.save, [0]

            def dying_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
                calls[0] += 1
                if calls[0] < at_call:
                    return real(obj, f, *args, **kwargs)
                buf = io.BytesIO()
                real(obj, buf, *args, **kwargs)
                f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
                f.flush()
                os._exit(9)

            torch.save = dying_save
            action()
        finally:
            os._exit(1)
    deadline = time.time() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.time() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise TimeoutError(f"the child writer did not finish in {timeout} s")
        time.sleep(0.05)


class BagOfWords:
    """Deterministic stand-in sentence encoder: unit-norm sum of one fixed random vector per lower-cased word."""

    name = "bag-of-words-test"
    sha256 = "0" * 64
    dim = 384

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().replace(",", " ").split():
                seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "little")
                out[i] += np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
            out[i] /= max(float(np.linalg.norm(out[i])), 1e-12)
        return out
