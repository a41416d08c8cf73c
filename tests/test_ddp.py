"""Two CPU processes (gloo), started as torchrun starts them (RANK/WORLD_SIZE/MASTER_* variables read by
``init_distributed``), train the tiny MFWM with DistributedDataParallel: each rank steps with the mean of the ranks' own
gradients, both end with identical weights, and a run resumed from its checkpoint matches an uninterrupted one."""

from __future__ import annotations

import genrl_gym  # noqa: F401  (render guard first)

import os
import socket
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


def _tiny_model(seed: int) -> MFWM:
    torch.manual_seed(seed)  # different initial weights per rank: DDP must broadcast rank 0's
    return MFWM(preset("tiny", embed_dim=16, action_dim=2, train__clip=1e9))  # no clipping: gradients compare raw


def _local_grads(trainer: Trainer, batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """This rank's own gradient of its batch (world model, then connector + aligner, as Trainer.train_step), on a
    copy of the model outside DDP, with a copy of the trainer's generator in its current state."""
    import copy

    from genrl_gym.training.losses import connector_aligner_loss, world_model_loss

    m = copy.deepcopy(trainer.model).train()
    g = torch.Generator().set_state(trainer.gen.get_state())
    b = trainer._to_device(batch)
    loss, post, _ = world_model_loss(m.world_model, b, trainer.cfg, g)
    loss.backward()
    closs, _ = connector_aligner_loss(m.connector, m.aligner, b["embedding"], post.detach(), trainer.cfg, g)
    closs.backward()
    return {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}


def _record_synced_grads(trainer: Trainer, out: dict[str, torch.Tensor]) -> list:
    """Keep the gradients each optimiser steps with (after DDP's all-reduce) -> hook handles."""
    groups = [(trainer.wm_opt, ["world_model"]), (trainer.conn_opt, ["connector", "aligner"])]

    def hook_for(prefixes: list[str]):  # noqa: ANN202
        def hook(opt, args, kwargs) -> None:  # noqa: ANN001
            for prefix in prefixes:
                for n, p in getattr(trainer.model, prefix).named_parameters():
                    if p.grad is not None:
                        out[f"{prefix}.{n}"] = p.grad.clone()
        return hook

    return [opt.register_step_pre_hook(hook_for(prefixes)) for opt, prefixes in groups]


def _worker(rank: int, tmp: str, port: int) -> None:
    # launched as torchrun would: the trainer's init_distributed() joins the group from these variables
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    try:
        batches = _batches(rank, STEPS + 1)
        model = _tiny_model(rank)
        trainer = Trainer(model, f"{tmp}/run", seed=0, device="cpu", progress=False, video_every=0, log_every=1)
        assert dist.is_initialized() and (trainer.rank, trainer.world) == (rank, WORLD)
        assert dist.get_backend() == "gloo"
        if rank == 0:
            torch.save(model.state_dict(), f"{tmp}/init.pt")  # after DDP's broadcast: every rank's starting point
        local = _local_grads(trainer, batches[0])
        synced: dict[str, torch.Tensor] = {}
        hooks = _record_synced_grads(trainer, synced)
        trainer.train_step(batches[0])
        for h in hooks:
            h.remove()
        torch.save({"local": local, "synced": synced}, f"{tmp}/grads{rank}.pt")
        trainer.fit(batches[1:], STEPS + 1)  # uninterrupted: STEPS + 1 updates
        torch.save(model.state_dict(), f"{tmp}/rank{rank}.pt")
        # interrupted: the same run stopped after STEPS updates, then fresh trainers (other initial weights, fresh
        # generators) resume from its checkpoint for one more
        Trainer(_tiny_model(rank), f"{tmp}/cut", seed=0, device="cpu", progress=False, video_every=0).fit(
            batches[:STEPS], STEPS)
        resumed = Trainer(_tiny_model(20 + rank), f"{tmp}/cut", seed=0, device="cpu", progress=False, video_every=0)
        assert resumed.load_checkpoint() and resumed.step == STEPS
        resumed.fit(batches[STEPS:], STEPS + 1)
        torch.save(resumed.model.state_dict(), f"{tmp}/resumed{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow  # two spawned interpreters import torch + genrl_gym and train three times (20-60 s on 2 cores)
def test_ddp_two_cpu_processes_average_gradients_and_resume(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(str(tmp_path), _free_port()), nprocs=WORLD, join=True)
    load = lambda name: torch.load(tmp_path / name, weights_only=True)  # noqa: E731
    # the gradient each rank steps with is the mean of the ranks' own gradients (a sum would be twice it)
    g0, g1 = load("grads0.pt"), load("grads1.pt")
    assert g0["synced"].keys() == g0["local"].keys() == g1["local"].keys()
    assert any(k.startswith("connector.") for k in g0["synced"]) and any(k.startswith("world_model.") for k in g0["synced"])
    differ = 0
    for k in g0["synced"]:
        mean = (g0["local"][k] + g1["local"][k]) / 2
        torch.testing.assert_close(g0["synced"][k], mean, rtol=1e-4, atol=1e-6, msg=k)
        assert torch.equal(g0["synced"][k], g1["synced"][k]), k
        differ += not torch.allclose(g0["local"][k], g1["local"][k])
    assert differ > 0.8 * len(g0["synced"])  # the ranks' own gradients differ: the check can tell mean from sum
    init, r0, r1 = load("init.pt"), load("rank0.pt"), load("rank1.pt")
    for key in r0:
        assert torch.equal(r0[key], r1[key]), key
    changed = [k for k in r0 if r0[k].is_floating_point() and not torch.equal(r0[k], init[k])]
    assert len(changed) > 0.9 * len(r0)  # both world model and connector/aligner trained
    assert any(k.startswith("connector.") for k in changed) and any(k.startswith("world_model.") for k in changed)
    ck = load("run/checkpoint.pt")  # written once, by rank 0, with every rank's generator
    assert ck["step"] == STEPS + 1 and len(ck["rng"]["generators"]) == WORLD
    assert not torch.equal(ck["rng"]["generators"][0], ck["rng"]["generators"][1])
    assert (tmp_path / "run" / "mfwm.pt").is_file()
    # resumed after STEPS updates for one more: exactly the uninterrupted run's weights, on both ranks
    for rank in range(WORLD):
        resumed = load(f"resumed{rank}.pt")
        for key in r0:
            assert torch.equal(resumed[key], r0[key]), (rank, key)
