"""MFWM training loop: world model, then connector + aligner on the same batch (GenRL paper: world model, connector, aligner).

One update = one Adam step on the world model (KL + image loss), then one Adam step on connector + aligner with the
world model's *detached* posterior of the same batch. Both optimisers: lr 1e-4, eps 1e-8, global-norm clip 1000, decoupled
weight decay ``w <- (1 - 1e-6) w`` after clipping (as the reference). bf16 autocast on CUDA only.

Multi-GPU: launch with ``torchrun --nproc_per_node=N``; each rank samples its own batches (seed + rank), gradients are
averaged by DistributedDataParallel (NCCL on GPU, gloo on CPU); rank 0 logs and writes checkpoints.

Outputs in ``out_dir``: ``config.json`` (resolved), ``checkpoint.pt`` (model + optimisers + step + RNG, atomic, resumable),
``mfwm.pt`` (final model, :meth:`MFWM.save` format), ``tb/`` (TensorBoard scalars, images, GIF videos), ``videos/*.gif``.
"""

from __future__ import annotations

import json
import os
import queue
import random
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
import torch
import torch.distributed as dist
from tensorboard.compat.proto.summary_pb2 import Summary
from torch import Tensor, nn
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from genrl_gym.data import EpisodeStore, SequenceSampler
from genrl_gym.models.aligner import Aligner
from genrl_gym.models.connector import Connector
from genrl_gym.models.mfwm import MFWM, identity_str, read_torch_file
from genrl_gym.models.presets import MFWMConfig, preset
from genrl_gym.models.rssm import State
from genrl_gym.models.world_model import WorldModel
from genrl_gym.prompts import embed_prompt, write_video
from genrl_gym.training.losses import connector_aligner_loss, world_model_loss
from genrl_gym.utils import CheckpointError, atomic_write, remove_stale_temp_files

__all__ = ["Trainer", "train_mfwm", "init_distributed", "STAGES"]

STAGES = ("joint", "wm", "connector")
TRAIN_FORMAT = "genrl_gym.mfwm_train"
_BATCH_DTYPES = {"image": torch.uint8, "action": torch.float32, "is_first": torch.bool, "embedding": torch.float32}


# ----------------------------------------------------------------------------------------------------------------------
# small helpers


def init_distributed(device: str | torch.device | None = None) -> tuple[int, int, torch.device]:
    """Join the process group when launched by torchrun (``WORLD_SIZE > 1``); return ``(rank, world_size, device)``.

    Backend NCCL when CUDA is available, gloo otherwise. Already-initialised groups are reused. ``device`` defaults to
    ``cuda:<LOCAL_RANK>`` or ``cpu``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    if device is None:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return rank, world, device


class _WorldModelObjective(nn.Module):
    """Module whose forward is the world-model loss (what DistributedDataParallel wraps)."""

    def __init__(self, wm: WorldModel, cfg: MFWMConfig) -> None:
        super().__init__()
        self.wm, self.cfg = wm, cfg

    def forward(self, batch: dict[str, Tensor], generator: torch.Generator | None) -> tuple[Tensor, State, dict[str, Tensor]]:
        return world_model_loss(self.wm, batch, self.cfg, generator)


class _ConnectorObjective(nn.Module):
    """Module whose forward is the connector + aligner loss."""

    def __init__(self, connector: Connector, aligner: Aligner, cfg: MFWMConfig) -> None:
        super().__init__()
        self.connector, self.aligner, self.cfg = connector, aligner, cfg

    def forward(self, embedding: Tensor, post: State, generator: torch.Generator | None) -> tuple[Tensor, dict[str, Tensor]]:
        return connector_aligner_loss(self.connector, self.aligner, embedding, post, self.cfg, generator)


def _adam(params: list[nn.Parameter], cfg: MFWMConfig) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=cfg.train.lr, eps=cfg.train.eps)


def _optimise(opt: torch.optim.Optimizer, params: list[nn.Parameter], loss: Tensor, clip: float, wd: float) -> Tensor:
    """backward, global-norm clip, decoupled weight decay, Adam step; skips the step on a non-finite gradient norm."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(params, clip)
    if torch.isfinite(norm):
        if wd:
            with torch.no_grad():
                torch._foreach_mul_(list[Tensor](params), 1.0 - wd)
        opt.step()
    return norm.detach()


def _prefetch(it: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """Run ``it`` in a background thread ``depth`` items ahead (sampling overlaps the update)."""
    q: queue.Queue[Any] = queue.Queue(depth)
    done = object()

    def work() -> None:
        try:
            for item in it:
                q.put(item)
        except BaseException as e:  # re-raised in the consumer
            q.put(e)
        q.put(done)

    threading.Thread(target=work, daemon=True).start()
    while (item := q.get()) is not done:
        if isinstance(item, BaseException):
            raise item
        yield item


def _gif_bytes(frames: np.ndarray, fps: int = 10) -> bytes:
    return iio.imwrite("<bytes>", frames, extension=".gif", duration=max(20, 10 * round(100 / fps)), loop=0)


# ----------------------------------------------------------------------------------------------------------------------
# Trainer


class Trainer:
    """Owns the optimisers, the step counter, logging and checkpoints of one MFWM training run.

    ``stages``: ``"joint"`` (world model + connector/aligner), ``"wm"`` (world model only), ``"connector"`` (connector and
    aligner on a frozen, already-trained world model). Use :meth:`fit` with any iterator of batches (dicts of numpy arrays
    or tensors: ``image uint8 [B, T, 64, 64, 3]``, ``action [B, T, A]``, ``is_first bool [B, T]``, ``embedding [B, T, D]``).
    """

    def __init__(self, model: MFWM, out_dir: str | os.PathLike[str], *, stages: str = "joint", seed: int = 0,
                 device: str | torch.device | None = None, log_every: int | None = None, video_every: int | None = None,
                 checkpoint_every: int | None = None, progress: bool = True, prompt_for_video: Any = None,
                 vlm: Any = None) -> None:
        """``prompt_for_video`` (text, video path or frames; embedded once with ``vlm``, default the model's VLM) adds a
        decoded connector target of that prompt to the periodic videos; the other video rows are reconstructions of the
        current batch and the connector target of a fixed dataset embedding (the first batch's window ending at row 7).
        """
        if stages not in STAGES:
            raise ValueError(f"stages={stages!r}; choose one of {STAGES}")
        self.rank, self.world, self.device = init_distributed(device)
        self.model = model.to(self.device)
        self.cfg = model.config
        tc = self.cfg.train
        self.out_dir = Path(out_dir)
        self.stages, self.seed, self.progress = stages, seed, progress
        self.log_every = log_every or tc.log_every
        self.video_every = video_every if video_every is not None else tc.video_every
        self.checkpoint_every = checkpoint_every or tc.checkpoint_every
        self.prompt_embedding: tuple[Tensor, str] | None = None
        if prompt_for_video is not None and self.rank == 0:  # embed once now: a bad prompt fails here, not at step N

            self.prompt_embedding = embed_prompt(model, prompt_for_video, vlm)
        self.amp = tc.amp and self.device.type == "cuda"
        self.step = 0
        self.video_embedding: Tensor | None = None
        # one generator for every sample this trainer draws (latents, aligner noise): resumable and per-rank
        self.gen = torch.Generator(self.device).manual_seed(seed * 1_000_003 + self.rank)
        self.train_wm, self.train_conn = stages in ("joint", "wm"), stages in ("joint", "connector")
        wm_obj: nn.Module = _WorldModelObjective(model.world_model, self.cfg)
        conn_obj: nn.Module = _ConnectorObjective(model.connector, model.aligner, self.cfg)
        if self.world > 1:
            ddp = lambda m: nn.parallel.DistributedDataParallel(  # noqa: E731
                m, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            wm_obj = ddp(wm_obj) if self.train_wm else wm_obj
            conn_obj = ddp(conn_obj) if self.train_conn else conn_obj
        self.wm_obj, self.conn_obj = wm_obj, conn_obj
        self.wm_params = list(model.world_model.parameters())
        self.conn_params = list(model.connector.parameters()) + list(model.aligner.parameters())
        self.wm_opt = _adam(self.wm_params, self.cfg) if self.train_wm else None
        self.conn_opt = _adam(self.conn_params, self.cfg) if self.train_conn else None
        self.writer: Any = None

    @property
    def is_main(self) -> bool:
        """True on rank 0 (the process that logs and writes files)."""
        return self.rank == 0

    @property
    def checkpoint_path(self) -> Path:
        """``out_dir/checkpoint.pt``."""
        return self.out_dir / "checkpoint.pt"

    # ------------------------------------------------------------------------------------------------ one update
    def _to_device(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        out = {}
        for key, dtype in _BATCH_DTYPES.items():
            if key in batch:
                x = batch[key] if isinstance(batch[key], Tensor) else torch.from_numpy(np.asarray(batch[key]))
                out[key] = x.to(self.device, dtype, non_blocking=True)
        missing = {"image", "action", "is_first"} - set(out) | ({"embedding"} - set(out) if self.train_conn else set())
        if missing:
            raise KeyError(f"batch lacks {sorted(missing)} (have {sorted(batch)}); the connector needs store embeddings: "
                           "run `genrl embed` (genrl_gym.vlm.embed.embed_store) first, or train with stages='wm'")
        return out

    def train_step(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """One update on ``batch`` (see class docstring); returns metrics as detached 0-d tensors."""
        b = self._to_device(batch)
        if self.video_embedding is None and "embedding" in b:
            self.video_embedding = b["embedding"][0, self.cfg.connector.n_frames - 1].detach().clone()
        self.model.train()
        with torch.autocast("cuda", torch.bfloat16, enabled=self.amp):
            if self.train_wm:
                loss, post, metrics = self.wm_obj(b, self.gen)
            else:
                with torch.no_grad():
                    _, post, metrics = self.wm_obj(b, self.gen)
        if self.train_wm:
            assert self.wm_opt is not None  # built in __init__ whenever train_wm
            tc = self.cfg.train
            metrics["wm_grad_norm"] = _optimise(self.wm_opt, self.wm_params, loss, tc.clip, tc.weight_decay)
        if self.train_conn:
            with torch.autocast("cuda", torch.bfloat16, enabled=self.amp):
                closs, cmetrics = self.conn_obj(b["embedding"], post.detach(), self.gen)
            metrics.update(cmetrics)
            tc = self.cfg.train
            assert self.conn_opt is not None  # built in __init__ whenever train_conn
            metrics["connector_grad_norm"] = _optimise(self.conn_opt, self.conn_params, closs, tc.clip, tc.weight_decay)
        self.step += 1
        return metrics

    # ------------------------------------------------------------------------------------------------ loop
    def fit(self, batches: Iterable[dict[str, Any]], steps: int) -> MFWM:
        """Train until ``self.step == steps`` (a resumed trainer continues from its step); returns the model.

        Logs every ``log_every``, writes videos every ``video_every`` (0 = never) and ``checkpoint.pt`` every
        ``checkpoint_every`` updates and at the end, plus the final ``mfwm.pt``.
        """
        if self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            for name in ("checkpoint.pt", "mfwm.pt"):  # left by a run killed while writing them
                remove_stale_temp_files(self.out_dir / name)
            self._write_config(steps)
        if self.step >= steps:
            if self.is_main:  # a run killed after its final checkpoint but before (or while) writing mfwm.pt
                self.model.save(self.out_dir / "mfwm.pt")
            return self.model
        it = _prefetch(iter(batches))
        bar = tqdm(total=steps, initial=self.step, disable=not (self.progress and self.is_main), desc="mfwm", unit="upd")
        sums: dict[str, Tensor] = {}
        count, t0 = 0, time.perf_counter()
        try:
            while self.step < steps:
                batch = next(it, None)
                if batch is None:
                    raise ValueError(f"the batch iterator ran out at step {self.step} of {steps}")
                metrics = self.train_step(batch)
                frames_per_update = int(np.prod(np.shape(batch["is_first"])[:2])) * self.world
                for k, v in metrics.items():
                    sums[k] = sums.get(k, 0) + v.float()
                count += 1
                bar.update(1)
                if self.step % self.log_every == 0 or self.step == steps:
                    dt = time.perf_counter() - t0
                    scalars = {k: float(v) / count for k, v in sums.items()}
                    scalars["updates_per_s"] = count / dt
                    scalars["frames_per_s"] = count * frames_per_update / dt
                    self._log(scalars)
                    bar.set_postfix(loss=f"{scalars.get('wm_loss', scalars.get('connector_loss', 0.0)):.1f}",
                                    kl=f"{scalars.get('connector_kl', 0.0):.2f}")
                    sums, count, t0 = {}, 0, time.perf_counter()
                if self.video_every and self.step % self.video_every == 0:
                    self._videos(batch)
                if self.step % self.checkpoint_every == 0 and self.step < steps:
                    self.save_checkpoint()
        finally:
            bar.close()
        self.save_checkpoint()
        if self.is_main:
            self.model.save(self.out_dir / "mfwm.pt")
            if self.writer is not None:
                self.writer.close()
                self.writer = None
        return self.model

    # ------------------------------------------------------------------------------------------------ logging
    def _tb(self) -> Any:
        if self.writer is None and self.is_main:
            self.writer = SummaryWriter(str(self.out_dir / "tb"))
        return self.writer

    def _log(self, scalars: dict[str, float]) -> None:
        if not self.is_main:
            return
        w = self._tb()
        for k, v in scalars.items():
            group = "perf" if k.endswith("_per_s") else "train"
            w.add_scalar(f"{group}/{k}", v, self.step)

    @torch.no_grad()
    def _videos(self, batch: dict[str, Any]) -> None:
        """Reconstruction strip (truth over prediction) and the decoded connector target of a fixed embedding/prompt."""
        if not self.is_main:
            return

        self.model.eval()
        b = self._to_device({k: v[:1] for k, v in batch.items() if k in _BATCH_DTYPES})
        post, _ = self.model.observe(b["image"], b["action"], b["is_first"], sample=False)
        recon = (self.model.decode(post.stoch)[0] * 255).round().to(torch.uint8).cpu().numpy()
        truth = b["image"][0].cpu().numpy()
        videos = {"reconstruction": np.concatenate([truth, recon], 1)}  # [T, 2H, W, 3]
        fixed = {"connector_embedding": (self.video_embedding, False)} if self.video_embedding is not None else {}
        if self.prompt_embedding is not None:  # text prompts go through the aligner, video prompts do not (prompts.py)
            fixed["connector_prompt"] = (self.prompt_embedding[0], self.prompt_embedding[1] == "text")
        for name, (e, align) in fixed.items():
            g = torch.Generator(self.device).manual_seed(self.seed)
            states = self.model.connector_rollout(e[None, None].expand(1, self.cfg.train.seq_len, -1), sample=False,
                                                  align=align, generator=g)
            videos[name] = (self.model.decode(states.stoch)[0] * 255).round().to(torch.uint8).cpu().numpy()
        w = self._tb()

        for name, frames in videos.items():
            write_video(frames, self.out_dir / "videos" / f"{name}-{self.step:07d}.gif")
            gif = _gif_bytes(frames)
            image = Summary.Image(height=frames.shape[1], width=frames.shape[2], colorspace=3, encoded_image_string=gif)
            w._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=f"video/{name}", image=image)]), self.step)
            w.add_image(f"strip/{name}", np.concatenate(list(frames[:16]), 1), self.step, dataformats="HWC")
        self.model.train()

    def _write_config(self, steps: int) -> None:
        m = self.model
        resolved = {"config": self.cfg.to_dict(), "stages": self.stages, "seed": self.seed, "steps": steps,
                    "world_size": self.world, "device": str(self.device), "amp_bf16": self.amp, "domain": m.domain,
                    "vlm": m._vlm, "render_settings": m.render_settings, "log_every": self.log_every,
                    "video_every": self.video_every, "checkpoint_every": self.checkpoint_every}
        with atomic_write(self.out_dir / "config.json", "w") as f:
            json.dump(resolved, f, indent=2, sort_keys=True, default=str)

    # ------------------------------------------------------------------------------------------------ checkpoints
    def _generator_states(self) -> list[Tensor]:
        """Every rank's sampling-generator state, in rank order (a collective: all ranks must call it)."""
        state = self.gen.get_state()
        if self.world == 1:
            return [state]
        gathered = [torch.empty_like(state, device=self.device) for _ in range(self.world)]
        dist.all_gather(gathered, state.to(self.device))
        return [g.cpu() for g in gathered]

    def state_dict(self, generator_states: list[Tensor] | None = None) -> dict[str, Any]:
        """Everything needed to resume: model payload, optimiser states, step, RNG states (with every rank's sampling
        generator, ``generator_states``, default this process's), fixed video embedding."""
        np_state: Any = np.random.get_state()  # the legacy tuple (name, keys, pos, has_gauss, cached)
        return {
            "format": TRAIN_FORMAT, "version": 1, "step": self.step, "stages": self.stages, "seed": self.seed,
            "model": self.model.to_payload(),
            "wm_opt": self.wm_opt.state_dict() if self.wm_opt else None,
            "conn_opt": self.conn_opt.state_dict() if self.conn_opt else None,
            "rng": {"generator": self.gen.get_state(), "generators": generator_states or [self.gen.get_state()],
                    "torch": torch.get_rng_state(), "python": random.getstate(),
                    "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:]))},
            "video_embedding": None if self.video_embedding is None else self.video_embedding.cpu(),
        }

    def save_checkpoint(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write :meth:`state_dict` atomically (rank 0; other ranks wait at a barrier). Returns the path."""
        path = Path(path) if path is not None else self.checkpoint_path
        generators = self._generator_states()  # every rank's: a resumed run samples exactly as an uninterrupted one
        if self.is_main:
            with atomic_write(path, "wb") as f:
                torch.save(self.state_dict(generators), f)
        if self.world > 1:
            dist.barrier()
        return path

    def load_checkpoint(self, path: str | os.PathLike[str] | None = None) -> bool:
        """Resume from ``path`` (default ``checkpoint.pt``) if it exists; returns whether it did.

        A checkpoint of another model configuration, domain or VLM identity is a CheckpointError naming both (use
        another ``out_dir`` or ``resume=False``): a store re-embedded with another VLM of the same width would otherwise
        resume the connector on embeddings it was not trained on and relabel it with the new VLM.
        """
        path = Path(path) if path is not None else self.checkpoint_path
        if not path.is_file():
            return False
        ck = read_torch_file(path, "training", fix="delete it to restart training from step 0 (or pass resume=False / "
                              "`genrl train-mfwm --no-resume`)")
        if not isinstance(ck, dict) or ck.get("format") != TRAIN_FORMAT:
            raise CheckpointError(f"{path}: not a genrl-gym training checkpoint; remove it or pick another out_dir")
        saved = MFWM.from_payload(ck["model"], str(path), map_location=None)
        if _model_shape(saved.config) != _model_shape(self.cfg):
            raise CheckpointError(f"{path}: holds a model of another configuration ({saved.config.preset} preset) than "
                                  f"the one asked for ({self.cfg.preset}); use another out_dir or resume=False")
        if saved.domain != self.model.domain:
            raise CheckpointError(f"{path}: holds a model of domain {saved.domain!r} but this run trains domain "
                                  f"{self.model.domain!r}; use another out_dir or resume=False")
        check_same_vlm(saved._vlm, self.model._vlm, f"{path}: the checkpoint to resume",
                       "use another out_dir or resume=False (or resume with the store embedded by the checkpoint's VLM)")
        self.model.load_state_dict(saved.state_dict())
        if self.wm_opt is not None and ck["wm_opt"] is not None:
            self.wm_opt.load_state_dict(ck["wm_opt"])
        if self.conn_opt is not None and ck["conn_opt"] is not None:
            self.conn_opt.load_state_dict(ck["conn_opt"])
        self.step = int(ck["step"])
        rng = ck["rng"]
        generators = rng.get("generators")
        if generators is not None and len(generators) == self.world:  # each rank continues its own stream
            self.gen.set_state(generators[self.rank])
        elif self.rank == 0:  # older checkpoint or another world size: other ranks keep their fresh (rank-offset) streams
            self.gen.set_state(rng["generator"])
        torch.set_rng_state(rng["torch"])
        random.setstate(rng["python"])
        n = rng["numpy"]
        np.random.set_state((n[0], n[1].numpy().astype(np.uint32), int(n[2]), int(n[3]), float(n[4])))
        if ck["video_embedding"] is not None:
            self.video_embedding = ck["video_embedding"].to(self.device)
        return True


def check_same_vlm(recorded: dict[str, Any] | None, current: dict[str, Any] | None, what: str, fix: str) -> None:
    """CheckpointError naming both identities when ``what`` (a checkpoint, an init model) was trained with another VLM
    than this run's (its store's embeddings). Identities compare in full (backend, model, weights, width): two VLMs of
    the same width are still different embedding spaces. Nothing is compared when either side records none."""
    if recorded is not None and current is not None and dict(recorded) != dict(current):
        raise CheckpointError(f"{what} was trained with VLM {identity_str(recorded)} but this run's store is embedded "
                              f"with {identity_str(current)}; embeddings of different VLMs are not interchangeable, "
                              f"even of the same width: {fix}")


def _model_shape(cfg: MFWMConfig) -> dict[str, Any]:
    d = cfg.to_dict()
    return {k: d[k] for k in ("world_model", "connector", "aligner", "embed_dim", "action_dim", "image_size")}


# ----------------------------------------------------------------------------------------------------------------------
# entry point


def _store_dims(store: Any) -> tuple[int | None, int | None]:
    """(action_dim, embed_dim) from store metadata, else from the first episode."""
    meta = dict(getattr(store, "metadata", {}) or {})
    action_dim = meta.get("action_dim")
    embed_dim = (meta.get("vlm") or {}).get("embed_dim") if isinstance(meta.get("vlm"), dict) else None
    if (action_dim is None or embed_dim is None) and len(store.paths()):
        try:
            ep = store.load(store.paths()[0], with_embeddings=True)
        except Exception:
            ep = store.load(store.paths()[0])
        action_dim = action_dim or ep["action"].shape[-1]
        embed_dim = embed_dim or (ep["embedding"].shape[-1] if "embedding" in ep else None)
    return (int(action_dim) if action_dim else None), (int(embed_dim) if embed_dim else None)


def train_mfwm(store: Any, config: MFWMConfig | str | dict[str, Any] = "small", *, out_dir: str | os.PathLike[str],
               steps: int | None = None, stages: str = "joint", resume: bool = True, seed: int = 0,
               device: str | torch.device | None = None, log_every: int | None = None, video_every: int | None = None,
               checkpoint_every: int | None = None, progress: bool = True, prompt_for_video: Any = None, vlm: Any = None,
               init: MFWM | str | os.PathLike[str] | None = None) -> MFWM:
    """Train an MFWM on an episode store (with embeddings) and return it; also writes ``out_dir/mfwm.pt``.

    ``store``: ``genrl_gym.data.EpisodeStore`` or its root path. ``config``: MFWMConfig, preset name or dict; ``action_dim``
    and ``embed_dim`` left at 0/default are taken from the store. ``steps``: total updates (default ``config.train.steps``);
    with ``resume=True`` an existing ``out_dir/checkpoint.pt`` is continued up to ``steps``. ``stages``: ``"joint"``,
    ``"wm"`` (no embeddings needed) or ``"connector"`` (needs ``init``: a trained MFWM or its path, or a checkpoint).
    ``init`` starts from those weights. Batches: ``SequenceSampler(store, B, T, seed=f(seed, rank, step))``, so a resumed
    run draws a fresh but deterministic data stream.
    """
    if isinstance(store, (str, os.PathLike)):
        store = EpisodeStore(store, create=False)
    cfg = preset(config) if isinstance(config, str) else (MFWMConfig.from_dict(config) if isinstance(config, dict)
                                                          else MFWMConfig.from_dict(config.to_dict()))
    meta = dict(store.metadata or {})
    action_dim, embed_dim = _store_dims(store)
    if action_dim is None:
        raise ValueError(f"{store}: cannot tell the action size (empty store without metadata); collect episodes first")
    if cfg.action_dim and cfg.action_dim != action_dim:
        raise ValueError(f"config.action_dim={cfg.action_dim} but the store's actions have {action_dim} dims")
    cfg.action_dim = action_dim
    if embed_dim is not None:
        cfg.embed_dim = embed_dim
    elif stages != "wm":
        raise ValueError(f"{store}: the store has no embeddings; run genrl_gym.vlm.embed.embed_store first, "
                         "or train with stages='wm'")
    init_name = f"init={os.fspath(init)}" if isinstance(init, (str, os.PathLike)) else "the init= model"
    if isinstance(init, (str, os.PathLike)):
        init = MFWM.load(init, expect_domain=meta.get("domain"))
    if init is not None:
        if meta.get("domain") is not None and init.domain not in ("unknown", meta["domain"]):
            raise CheckpointError(f"{init_name} is a model of domain {init.domain!r} but the store holds "
                                  f"{meta['domain']!r} episodes; start from a {meta['domain']} model")
        check_same_vlm(init._vlm, meta.get("vlm"), init_name, "start from a model trained on this VLM's embeddings, "
                       "or re-embed the store with the init model's VLM (`genrl embed --vlm ...`)")
    model = MFWM(cfg, domain=meta.get("domain", "unknown"), vlm_identity=meta.get("vlm"),
                 render_settings=meta.get("render_settings"),
                 metadata={"store": str(getattr(store, "root", store)), "num_frames": getattr(store, "num_frames", None),
                           "stages": stages})
    if init is not None:
        model.load_state_dict(init.state_dict())
    trainer = Trainer(model, out_dir, stages=stages, seed=seed, device=device, log_every=log_every,
                      video_every=video_every, checkpoint_every=checkpoint_every, progress=progress,
                      prompt_for_video=prompt_for_video, vlm=vlm)
    resumed = resume and trainer.load_checkpoint()
    if stages == "connector" and init is None and not resumed:
        raise ValueError("stages='connector' trains on a frozen world model: pass init=<trained MFWM or path>")
    tc = cfg.train
    sampler = SequenceSampler(store, tc.batch_size, tc.seq_len, seed=seed * 1_000_003 + trainer.step * 101 + trainer.rank,
                              with_embeddings=stages != "wm")
    return trainer.fit(sampler, steps if steps is not None else tc.steps)
