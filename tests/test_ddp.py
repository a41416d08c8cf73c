"""Two CPU processes (gloo) train the tiny MFWM with DistributedDataParallel and end with identical weights."""

from __future__ import annotations

import genrl_gym  # noqa: F401  (render guard first)

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from genrl_gym.models import MFWM, preset
from genrl_gym.training import Trainer

WORLD = 2
STEPS = 3


def _batches(rank: int, n: int) -> list[dict[str, np.ndarray]]:
    """Per-rank data: a bright square moving with a rank-specific velocity, random actions and embeddings."""
    rng = np.random.default_rng(100 + rank)
    out = []
    for _ in range(n):
        B, T = 4, 16
        image = np.zeros((B, T, 64, 64, 3), np.uint8)
        start = rng.integers(0, 40, (B, 2))
        for t in range(T):
            for b in range(B):
                y, x = np.clip(start[b] + (rank + 1) * t, 0, 48)
                image[b, t, y:y + 16, x:x + 16] = 255
        e = rng.normal(size=(B, T, 16)).astype(np.float32)
        out.append({"image": image, "action": rng.uniform(-1, 1, (B, T, 2)).astype(np.float32),
                    "is_first": np.zeros((B, T), bool), "embedding": e / np.linalg.norm(e, axis=-1, keepdims=True)})
    return out


def _worker(rank: int, tmp: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/rendezvous", rank=rank, world_size=WORLD)
    try:
        torch.manual_seed(rank)  # different initial weights per rank: DDP must broadcast rank 0's
        model = MFWM(preset("tiny", embed_dim=16, action_dim=2))
        if rank == 0:
            torch.save(model.state_dict(), f"{tmp}/init.pt")
        trainer = Trainer(model, f"{tmp}/run", seed=0, device="cpu", progress=False, video_every=0, log_every=1)
        assert (trainer.rank, trainer.world) == (rank, WORLD)
        trainer.fit(_batches(rank, STEPS), STEPS)
        torch.save(model.state_dict(), f"{tmp}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two spawned interpreters import torch + genrl_gym (10-30 s on the shared 2-core machine)
def test_ddp_two_cpu_processes_identical_weights(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(str(tmp_path),), nprocs=WORLD, join=True)
    init = torch.load(tmp_path / "init.pt", weights_only=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for key in r0:
        assert torch.equal(r0[key], r1[key]), key
    changed = [k for k in r0 if r0[k].is_floating_point() and not torch.equal(r0[k], init[k])]
    assert len(changed) > 0.9 * len(r0)  # both world model and connector/aligner trained
    assert any(k.startswith("connector.") for k in changed) and any(k.startswith("world_model.") for k in changed)
    ck = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)  # written once, by rank 0
    assert ck["step"] == STEPS
    assert (tmp_path / "run" / "mfwm.pt").is_file()
