"""MFWM training throughput: genrl_gym's update vs a plain eager PyTorch reference of the same step, plus FLOP/s.

One update = world-model step (encoder, RSSM over T steps, decoder, KL balancing + image loss, Adam) followed by the
connector + aligner step on the detached posterior (teacher-forced connector KL + aligner cosine loss, Adam), exactly
what ``genrl_gym.training.Trainer.train_step`` does. The reference below is the same computation written the
straightforward way (a posterior/prior loop in the style of public Dreamer ports, ``torch.distributions`` for the
categorical KLs, one module per part); same sizes, same optimiser settings. Both run eagerly, side by side, alternating
(``ours, ref, ours, ref, ...``) so background load hits both alike; the median step time is reported.

FLOPs: counted with ``torch.utils.flop_counter.FlopCounterMode`` over one forward + backward of our update on a small
batch and scaled by ``B*T`` (every op of the model is per (b, t), so the count is linear in ``B*T``; checked on the fly
at two sizes). Achieved FLOP/s is divided by the machine's fp32 matmul FLOP/s (best of 3 timed 2048x2048 matmuls, same
thread count).

Run: ``.venv/bin/python -m benchmarks.bench_world_model [--threads 1] [--small-steps 4] [--paper-steps 2]
[--paper-batch 8 48]``. The ``paper`` preset keeps GenRL's network sizes (depth 48, 1024-unit GRU, 32 x 32 latents) but,
on a CPU, a batch of 8 x 48 sequences instead of 48 x 48 (about a minute per update here, with first-touch allocation
effects larger than the difference being measured); every cost is per (b, t), so frames/s and the ratio carry over.
Each preset gets one untimed full-size warm-up update per implementation.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from typing import Any

import numpy as np
import torch
import torch.distributions as D
import torch.nn.functional as F
from torch import Tensor, nn

from benchmarks._machine import write_results
from genrl_gym.models import MFWM, MFWMConfig, preset
from genrl_gym.training import Trainer

A, EMBED = 6, 512
BATCHES = {"small": (16, 32), "paper": (8, 48)}  # paper: the 48 x 48 batch takes about a minute per update on a CPU


# ----------------------------------------------------------------------------------------------------------------------
# plain eager reference (straightforward nn.Module code, same sizes and losses)


class ChLN(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(ch, eps=1e-3)

    def forward(self, x: Tensor) -> Tensor:
        return self.ln(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def mlp(i: int, o: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(i, o, bias=False), nn.LayerNorm(o), nn.SiLU())


class RefGRU(nn.Module):
    def __init__(self, i: int, h: int) -> None:
        super().__init__()
        self.lin, self.ln = nn.Linear(i + h, 3 * h, bias=False), nn.LayerNorm(3 * h)

    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        r, c, u = torch.chunk(self.ln(self.lin(torch.cat([x, h], -1))), 3, -1)
        u = torch.sigmoid(u - 1)
        return u * torch.tanh(torch.sigmoid(r) * c) + (1 - u) * h


def dist(logits: Tensor) -> D.Distribution:
    probs = 0.99 * torch.softmax(logits, -1) + 0.01 / logits.shape[-1]
    return D.Independent(D.OneHotCategorical(probs=probs), 1)


def st_sample(logits: Tensor) -> Tensor:
    d = dist(logits)
    probs = d.base_dist.probs
    return (d.sample() + probs - probs.detach()).flatten(-2)


class RefWorldModel(nn.Module):
    def __init__(self, cfg: MFWMConfig) -> None:
        super().__init__()
        c = cfg.world_model
        self.S, self.C, d = c.stoch, c.classes, c.cnn_depth
        layers: list[nn.Module] = []
        for i, ch in enumerate([d, 2 * d, 4 * d, 8 * d]):
            layers += [nn.Conv2d(3 if i == 0 else ch // 2, ch, 4, 2), ChLN(ch), nn.SiLU()]
        self.encoder = nn.Sequential(*layers)
        self.img_in = mlp(self.S * self.C + cfg.action_dim, c.hidden)
        self.gru = RefGRU(c.hidden, c.deter)
        self.prior = nn.Sequential(mlp(c.deter, c.hidden), nn.Linear(c.hidden, self.S * self.C))
        self.post = nn.Sequential(mlp(32 * d, c.hidden), nn.Linear(c.hidden, self.S * self.C))
        self.dec_in = nn.Linear(self.S * self.C, 32 * d)
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(32 * d, 4 * d, 5, 2), ChLN(4 * d), nn.SiLU(), nn.ConvTranspose2d(4 * d, 2 * d, 5, 2),
            ChLN(2 * d), nn.SiLU(), nn.ConvTranspose2d(2 * d, d, 6, 2), ChLN(d), nn.SiLU(), nn.ConvTranspose2d(d, 3, 6, 2))
        self.deter = c.deter

    def forward(self, image: Tensor, action: Tensor, is_first: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        B, T = image.shape[:2]
        x = image.float().permute(0, 1, 4, 2, 3) / 255.0 - 0.5
        embed = self.encoder(x.reshape(B * T, 3, 64, 64)).reshape(B, T, -1)
        deter = torch.zeros(B, self.deter)
        stoch = torch.zeros(B, self.S * self.C)
        posts, priors, stochs = [], [], []
        for t in range(T):
            keep = 1.0 - is_first[:, t].float()[:, None]
            deter = self.gru(self.img_in(torch.cat([stoch * keep, action[:, t] * keep], -1)), deter * keep)
            prior_logits = self.prior(deter).reshape(B, self.S, self.C)
            post_logits = self.post(embed[:, t]).reshape(B, self.S, self.C)
            stoch = st_sample(post_logits)
            posts.append(post_logits)
            priors.append(prior_logits)
            stochs.append(stoch)
        post, prior, stoch = torch.stack(posts, 1), torch.stack(priors, 1), torch.stack(stochs, 1)
        rep = D.kl_divergence(dist(post), dist(prior.detach()))
        dyn = D.kl_divergence(dist(post.detach()), dist(prior))
        kl = 0.6 * (0.15 * torch.clamp(rep, min=1.0).mean() + 0.85 * torch.clamp(dyn, min=1.0).mean())
        recon = self.decoder(self.dec_in(stoch).reshape(B * T, -1, 1, 1)).reshape(B, T, 3, 64, 64)
        img = ((recon - x) ** 2).sum((2, 3, 4)).mean()
        return kl + img, stoch.detach(), post.detach()


class RefConnector(nn.Module):
    def __init__(self, cfg: MFWMConfig) -> None:
        super().__init__()
        c, w = cfg.connector, cfg.world_model
        self.S, self.C, self.D = w.stoch, w.classes, cfg.embed_dim
        inp = cfg.embed_dim + 8
        self.img_in = mlp(self.S * self.C + inp, c.hidden)
        self.gru = RefGRU(c.hidden, c.deter)
        self.prior = nn.Sequential(mlp(c.deter, c.hidden), nn.Linear(c.hidden, self.S * self.C))
        self.init = nn.Sequential(mlp(inp, c.hidden), mlp(c.hidden, c.hidden), nn.Linear(c.hidden, c.deter))
        D_, mid = cfg.embed_dim, cfg.embed_dim // 2
        self.aligner = nn.ModuleList([nn.Linear(D_, D_), nn.Linear(D_, mid), nn.Linear(mid, mid), nn.Linear(mid, mid),
                                      nn.Linear(2 * mid, D_), nn.Linear(2 * D_, D_)])
        self.aligner_norms = nn.ModuleList([nn.LayerNorm(n) for n in (D_, mid, mid, mid, D_)])
        self.aligner_proj = nn.ModuleList([nn.Linear(D_, mid), nn.Linear(2 * D_, D_)])

    def align(self, e: Tensor) -> Tensor:
        L, N, P = self.aligner, self.aligner_norms, self.aligner_proj
        d0 = F.silu(N[0](L[0](e))) + e
        d1 = F.silu(N[1](L[1](d0))) + P[0](d0)
        x = F.silu(N[2](L[2](d1))) + d1
        x = F.silu(N[3](L[3](x))) + x
        x = L[4](torch.cat([x, d1], -1)) + torch.cat([x, d1], -1)
        x = F.silu(N[4](L[5](torch.cat([x, d0], -1)))) + P[1](torch.cat([x, d0], -1))
        return F.normalize(x, dim=-1)

    def forward(self, embedding: Tensor, post_stoch: Tensor, post_logits: Tensor) -> Tensor:
        B, T, _ = embedding.shape
        e = embedding[:, 7::8].repeat_interleave(8, 1)
        a = torch.cat([e * math.sqrt(self.D), torch.zeros(B, T, 8)], -1)
        deter = self.init(a[:, 0])
        stoch = st_sample(self.prior(deter).reshape(B, self.S, self.C))
        priors = []
        for t in range(T):
            if t > 0:
                stoch = post_stoch[:, t - 1]
            deter = self.gru(self.img_in(torch.cat([stoch, a[:, t]], -1)), deter)
            priors.append(self.prior(deter).reshape(B, self.S, self.C))
        prior = torch.stack(priors, 1)
        conn = 0.8 * D.kl_divergence(dist(prior), dist(post_logits)).mean()
        noise = F.normalize(torch.randn_like(e), dim=-1)
        aligned = self.align(F.normalize(0.5 * e + 0.5 * noise, dim=-1))
        return conn + 1 - F.cosine_similarity(aligned, e, dim=-1).mean()


class RefStep:
    """The reference update: WM Adam step, then connector+aligner Adam step (clip 1000, decoupled wd 1e-6)."""

    def __init__(self, cfg: MFWMConfig) -> None:
        self.wm, self.conn = RefWorldModel(cfg), RefConnector(cfg)
        self.wm_opt = torch.optim.Adam(self.wm.parameters(), lr=1e-4, eps=1e-8)
        self.conn_opt = torch.optim.Adam(self.conn.parameters(), lr=1e-4, eps=1e-8)

    @staticmethod
    def _opt(opt: torch.optim.Optimizer, module: nn.Module, loss: Tensor) -> None:
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(module.parameters(), 1000.0)
        with torch.no_grad():
            for p in module.parameters():
                p.mul_(1 - 1e-6)
        opt.step()

    def __call__(self, b: dict[str, Tensor]) -> None:
        loss, stoch, post = self.wm(b["image"], b["action"], b["is_first"])
        self._opt(self.wm_opt, self.wm, loss)
        self._opt(self.conn_opt, self.conn, self.conn(b["embedding"], stoch, post))


# ----------------------------------------------------------------------------------------------------------------------
# measurement


def make_batch(B: int, T: int, seed: int = 0) -> dict[str, Tensor]:
    rng = np.random.default_rng(seed)
    e = rng.normal(size=(B, T, EMBED)).astype(np.float32)
    return {"image": torch.from_numpy(rng.integers(0, 256, (B, T, 64, 64, 3), dtype=np.uint8)),
            "action": torch.from_numpy(rng.uniform(-1, 1, (B, T, A)).astype(np.float32)),
            "is_first": torch.zeros(B, T, dtype=torch.bool),
            "embedding": torch.from_numpy(e / np.linalg.norm(e, axis=-1, keepdims=True))}


def matmul_flops(n: int = 2048, reps: int = 3) -> float:
    """Best fp32 matmul FLOP/s of ``reps`` timed ``n x n @ n x n`` products."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = math.inf
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def count_flops(trainer: Trainer, B: int, T: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        trainer.train_step(make_batch(B, T, seed=1))
    return float(fc.get_total_flops())


def bench(name: str, steps: int, out: str, batch_size: tuple[int, int]) -> dict[str, Any]:
    B, T = batch_size
    cfg = preset(name, action_dim=A, embed_dim=EMBED)
    torch.manual_seed(0)
    ours = Trainer(MFWM(cfg), out, progress=False, video_every=0)
    ref = RefStep(cfg)
    n_ours = sum(p.numel() for p in ours.model.parameters())
    n_ref = sum(p.numel() for p in [*ref.wm.parameters(), *ref.conn.parameters()])
    # FLOPs per (b, t), from two small batches (also the warm-up); linear in B*T
    f1, f2 = count_flops(ours, 2, 8), count_flops(ours, 2, 16)
    flops = f2 / 32 * B * T
    batch = make_batch(B, T)
    ours.train_step(batch)  # one untimed full-size update each (first-touch allocations)
    ref(batch)
    t_ours, t_ref = [], []
    for _ in range(steps):
        t = time.perf_counter()
        ours.train_step(batch)
        t_ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        ref(batch)
        t_ref.append(time.perf_counter() - t)
        print(f"{name}: ours {t_ours[-1]:.2f} s, reference {t_ref[-1]:.2f} s", flush=True)
    so, sr = statistics.median(t_ours), statistics.median(t_ref)
    return {"batch": [B, T], "params_ours": n_ours, "params_ref": n_ref, "timed_steps": steps,
            "step_s_ours": so, "step_s_ref": sr, "updates_per_s_ours": 1 / so, "updates_per_s_ref": 1 / sr,
            "frames_per_s_ours": B * T / so, "frames_per_s_ref": B * T / sr, "speedup_vs_ref": sr / so,
            "flops_per_update": flops, "flops_linearity_check": f2 / (2 * f1), "achieved_flops_ours": flops / so,
            "achieved_flops_ref": flops / sr, "step_times_ours": t_ours, "step_times_ref": t_ref}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the shared 2-core CI machine: 1)")
    ap.add_argument("--small-steps", type=int, default=4)
    ap.add_argument("--paper-steps", type=int, default=2)
    ap.add_argument("--paper-batch", type=int, nargs=2, default=list(BATCHES["paper"]), metavar=("B", "T"),
                    help="paper-preset batch (GenRL: 48 48; default 8 48 on a CPU)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    peak = matmul_flops()
    print(f"matmul fp32: {peak / 1e9:.1f} GFLOP/s ({args.threads} threads)", flush=True)
    results: dict[str, Any] = {"threads": args.threads, "matmul_flops": peak, "device": "cpu"}
    with tempfile.TemporaryDirectory() as tmp:
        for name, steps in (("small", args.small_steps), ("paper", args.paper_steps)):
            size = tuple(args.paper_batch) if name == "paper" else BATCHES[name]
            results[name] = r = bench(name, steps, f"{tmp}/{name}", size)
            r["mfu_ours"] = r["achieved_flops_ours"] / peak
            r["mfu_ref"] = r["achieved_flops_ref"] / peak
    peak_after = matmul_flops()
    results["matmul_flops_after"] = peak_after
    rows = ["| preset | batch B x T | timed updates | updates/s (ours) | updates/s (reference) | ours / reference | "
            "frames/s (ours) | GFLOP / update | achieved GFLOP/s (ours) | of matmul peak |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for name in ("small", "paper"):
        r = results[name]
        rows.append(f"| {name} | {r['batch'][0]} x {r['batch'][1]} | {r['timed_steps']} | {r['updates_per_s_ours']:.3f} | "
                    f"{r['updates_per_s_ref']:.3f} | {r['speedup_vs_ref']:.2f}x | {r['frames_per_s_ours']:.0f} | "
                    f"{r['flops_per_update'] / 1e9:.1f} | {r['achieved_flops_ours'] / 1e9:.1f} | {r['mfu_ours']:.0%} |")
    notes = (f"CPU run with {args.threads} torch thread(s); fp32 matmul peak {peak / 1e9:.1f} GFLOP/s before and "
             f"{peak_after / 1e9:.1f} GFLOP/s after the runs (2048x2048, best of 3). One update = world-model Adam step + "
             "connector/aligner Adam step on the same batch. 'reference' = the plain eager implementation in this file "
             "(per-step posterior inside the loop, torch.distributions KLs), same sizes; ours / reference > 1 means ours is "
             "faster. Median over the timed updates (after one untimed full-size update each), measured alternately. "
             f"The paper preset has GenRL's network sizes but a {args.paper_batch[0]} x {args.paper_batch[1]} batch "
             "(GenRL trains on 48 x 48, about a minute per update on this CPU); costs are per (b, t), so frames/s and the "
             f"ratio carry over; {args.paper_steps} timed updates. "
             "The machine is shared with other jobs, so absolute numbers vary run to run; the side-by-side ratio is the "
             "stable figure. FLOPs: FlopCounterMode on our update (forward + backward) scaled linearly in B*T "
             f"(linearity check f(2x16) / 2 f(2x8) = {results['small']['flops_linearity_check']:.3f}).")
    write_results("world_model", results, "\n".join(rows), notes)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
