"""GenRLAgent throughput: behaviour updates/s and imagined states/s, against a plain eager reference step.

For each actor-critic preset (``small``: small MFWM + 3 x 256 MLPs; ``paper``: paper MFWM + 4 x 1024 MLPs) this times,
side by side and interleaved (agent, reference, agent, ...) so that both see the same machine load:

* one full behaviour update (data-free start states, H = 16 imagined steps with dynamics backprop, trajectory-matching
  rewards, lambda-returns, actor and critic steps, slow-critic schedule) of :class:`GenRLAgent` and of
  :class:`EagerReference`, a straightforward eager implementation of the same update written here the way the
  reference code structures it (its own MLPs and two-hot code, categorical sampling through ``torch.distributions``,
  the policy re-evaluated on ``feat[:-2]`` for the entropy term, separate actor and critic backward passes);
* imagination alone (no gradients): the actor rolled H steps through the prior.

Both use the same frozen world model and the same reward function (:func:`genrl_gym.reward.trajectory_match`).
Reported: median seconds per update, updates/s, imagined states/s (= starts x H / time) and agent/reference ratios
(> 1: the agent is faster).

Run: ``.venv/bin/python -m benchmarks.bench_agent [--threads 1] [--paper-batch 128] [--repeats 5] [--paper-repeats 3]``
(about 2 minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Independent, Normal, OneHotCategorical

import genrl_gym  # noqa: F401  (torch guard)
from benchmarks._machine import write_results
from genrl_gym.agents import GenRLAgent, agent_preset
from genrl_gym.models import MFWM, preset
from genrl_gym.prompts import TargetTrajectory
from genrl_gym.reward import target_horizon, trajectory_match

ACTION_DIM = 6  # walker


# ----------------------------------------------------------------------------------------------------------------------
# Plain eager reference


def _mlp(inp: int, out: int, layers: int, units: int) -> nn.Sequential:
    mods: list[nn.Module] = []
    for i in range(layers):
        mods += [nn.Linear(inp if i == 0 else units, units, bias=False), nn.LayerNorm(units), nn.SiLU()]
    mods.append(nn.Linear(units, out))
    return nn.Sequential(*mods)


class EagerReference:
    """The same behaviour update, written straightforwardly (see the module docstring)."""

    def __init__(self, wm: MFWM, cfg: Any, target: Tensor) -> None:
        self.wm, self.cfg, self.target = wm, cfg, target
        wmc = wm.config.world_model
        self.S, self.C, self.deter = wmc.stoch, wmc.classes, wmc.deter
        feat = self.S * self.C + self.deter
        self.actor = _mlp(feat, 2 * ACTION_DIM, cfg.layers, cfg.units)
        self.critic = _mlp(feat, 255, cfg.layers, cfg.units)
        with torch.no_grad():
            self.critic[-1].weight.zero_()
            self.critic[-1].bias.zero_()
        self.slow = _mlp(feat, 255, cfg.layers, cfg.units)
        self.slow.load_state_dict(self.critic.state_dict())
        self.slow.requires_grad_(False)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.learning_rate, eps=cfg.eps)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.learning_rate, eps=cfg.eps)
        self.bins = torch.linspace(-20, 20, 255)
        self.ema = torch.zeros(2)
        self.updates = 0

    def policy(self, feat: Tensor) -> Independent:
        mean, std = self.actor(feat).chunk(2, -1)
        return Independent(Normal(torch.tanh(mean), 0.9 * torch.sigmoid(std + 2.0) + 0.1), 1)

    def latent(self, logits: Tensor) -> Tensor:
        probs = 0.99 * logits.softmax(-1) + 0.01 / self.C
        sample = OneHotCategorical(probs=probs).sample()
        return (sample + probs - probs.detach()).flatten(-2)

    def img_step(self, stoch: Tensor, deter: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        rssm = self.wm.world_model.rssm
        deter = rssm.gru(rssm.img_in(torch.cat([stoch, action], -1)), deter)
        return self.latent(rssm.img_out(deter).unflatten(-1, (self.S, self.C))), deter

    @torch.no_grad()
    def starts(self) -> tuple[Tensor, Tensor]:
        n = self.cfg.batch_size // 2
        uniform = OneHotCategorical(logits=torch.zeros(n, self.S, self.C)).sample().flatten(-2)
        emb = F.normalize(torch.randn(math.ceil(n / 16), 16, self.wm.config.embed_dim), dim=-1)
        conn = self.wm.connector_rollout(emb, sample=True, align=True).stoch.flatten(0, 1)[:n]
        stoch = torch.where((torch.rand(n) < 0.5)[:, None], uniform, conn)
        deter = torch.zeros(n, self.deter)
        s1, d1, s2, d2 = stoch, deter, stoch, deter
        for _ in range(5):
            s1, d1 = self.img_step(s1, d1, torch.rand(n, ACTION_DIM) * 2 - 1)
            s2, d2 = self.img_step(s2, d2, self.policy(torch.cat([s2, d2], -1)).sample())
        return torch.cat([s1, s2]), torch.cat([d1, d2])

    def imagine(self, stoch: Tensor, deter: Tensor) -> tuple[Tensor, Tensor]:
        feats, stochs = [torch.cat([stoch, deter], -1)], [stoch]
        for _ in range(self.cfg.horizon):
            action = self.policy(feats[-1].detach()).rsample()
            stoch, deter = self.img_step(stoch, deter, action)
            feats.append(torch.cat([stoch, deter], -1))
            stochs.append(stoch)
        return torch.stack(feats), torch.stack(stochs)

    def value(self, net: nn.Module, feat: Tensor) -> Tensor:
        x = (net(feat).softmax(-1) * self.bins).sum(-1)
        return torch.sign(x) * (torch.exp(x.abs()) - 1)

    def log_prob(self, logits: Tensor, target: Tensor) -> Tensor:
        x = torch.sign(target) * torch.log(1 + target.abs())
        below = (self.bins <= x[..., None]).sum(-1) - 1
        above = len(self.bins) - (self.bins > x[..., None]).sum(-1)
        below, above = below.clamp(0, 254), above.clamp(0, 254)
        equal = below == above
        d_below = torch.where(equal, 1.0, (self.bins[below] - x).abs())
        d_above = torch.where(equal, 1.0, (self.bins[above] - x).abs())
        total = d_below + d_above
        twohot = F.one_hot(below, 255) * (d_above / total)[..., None] + F.one_hot(above, 255) * (d_below / total)[..., None]
        return (twohot * logits.log_softmax(-1)).sum(-1)

    def update(self) -> None:
        cfg = self.cfg
        stoch, deter = self.starts()
        feat, stochs = self.imagine(stoch, deter)
        reward = trajectory_match(self.wm.reward_features(stochs), self.target)
        value = self.value(self.slow, feat)
        # lambda-returns, bootstrap from the last value
        ret, targets = value[-1], []
        for t in reversed(range(cfg.horizon)):
            ret = reward[t] + 0.99 * ((1 - 0.95) * value[t + 1] + 0.95 * ret)
            targets.append(ret)
        target = torch.stack(targets[::-1])
        weight = 0.99 ** torch.arange(cfg.horizon + 1, dtype=torch.float32)[:, None]
        q = torch.quantile(target.detach().flatten(), torch.tensor([0.05, 0.95]))
        self.ema = 0.01 * q + 0.99 * self.ema
        scale = torch.clamp(self.ema[1] - self.ema[0], min=1.0)
        normed = (target - self.ema[0]) / scale
        ent = self.policy(feat[:-2].detach()).entropy()
        actor_loss = -(weight[:-2] * (normed[1:] + cfg.entropy_coef * ent)).mean()
        self.actor_opt.zero_grad()
        actor_loss.backward()
        nn.utils.clip_grad_norm_(self.actor.parameters(), cfg.clip)
        self.actor_opt.step()
        critic_loss = -(self.log_prob(self.critic(feat[:-1].detach()), target.detach()) * weight[:-1]).mean()
        self.critic_opt.zero_grad()
        critic_loss.backward()
        nn.utils.clip_grad_norm_(self.critic.parameters(), cfg.clip)
        self.critic_opt.step()
        with torch.no_grad():
            for net in (self.actor, self.critic):
                for p in net.parameters():
                    p.mul_(1 - cfg.weight_decay)
        if self.updates % 100 == 0:
            self.slow.load_state_dict(self.critic.state_dict())
        self.updates += 1


# ----------------------------------------------------------------------------------------------------------------------
# Measurement


def _target(wm: MFWM, horizon: int) -> TargetTrajectory:
    """A target straight from the connector (a random unit embedding): no VLM needed to time the learner."""
    with torch.no_grad():
        e = F.normalize(torch.randn(1, horizon + 2, wm.config.embed_dim), dim=-1)
        st = wm.connector_rollout(e).index((0, slice(1, None)))
        features = wm.reward_features(st.stoch)
    return TargetTrajectory(stoch=st.stoch, features=features, embedding=e[0, 0], prompt="random", kind="video",
                            logits=st.logits)


def _timed(fn: Any) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def bench_preset(name: str, model_preset: str, batch: int, repeats: int) -> dict[str, Any]:
    torch.manual_seed(0)
    wm = MFWM(preset(model_preset, action_dim=ACTION_DIM, embed_dim=512), domain="walker")
    # the target length the preset's imagined trajectories need under the model's alignment
    target = _target(wm, target_horizon(wm.reward_align, agent_preset(name).horizon + 1))
    agent = GenRLAgent(wm, target, preset=name, batch_size=batch, seed=0, device="cpu")
    ref = EagerReference(wm, agent.config, target.features)
    agent.learn(1, log_interval=0)  # warm-up: lazy imports, allocator
    ref.update()
    upd_a, upd_r, img_a, img_r = [], [], [], []
    for _ in range(repeats):
        upd_a.append(_timed(lambda: agent.learn(1, log_interval=0, reset_num_timesteps=False)))
        upd_r.append(_timed(ref.update))
        start = agent.start_states()
        s, d = ref.starts()
        with torch.no_grad():
            img_a.append(_timed(lambda: agent.imagine(start)))
            img_r.append(_timed(lambda: ref.imagine(s, d)))
    n_states = batch * agent.config.horizon
    ua, ur, ia, ir = (statistics.median(x) for x in (upd_a, upd_r, img_a, img_r))
    wmc = wm.config.world_model
    return {
        "preset": name, "model_preset": model_preset, "batch_size": batch, "horizon": agent.config.horizon,
        "mlp": f"{agent.config.layers}x{agent.config.units}", "deter": wmc.deter, "latent": f"{wmc.stoch}x{wmc.classes}",
        "repeats": repeats,
        "update_s": {"agent": ua, "reference": ur, "agent_all": upd_a, "reference_all": upd_r},
        "updates_per_s": {"agent": 1 / ua, "reference": 1 / ur, "ratio": ur / ua},
        "update_imagined_states_per_s": {"agent": n_states / ua, "reference": n_states / ur, "ratio": ur / ua},
        "imagination_only_states_per_s": {"agent": n_states / ia, "reference": n_states / ir, "ratio": ir / ia},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: stable on a shared 2-core machine)")
    parser.add_argument("--small-batch", type=int, default=256, help="start states per update, small preset")
    parser.add_argument("--paper-batch", type=int, default=128, help="start states per update, paper preset (paper: 1024)")
    parser.add_argument("--repeats", type=int, default=5, help="timed updates per implementation (small)")
    parser.add_argument("--paper-repeats", type=int, default=3, help="timed updates per implementation (paper)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    rows = [bench_preset("small", "small", args.small_batch, args.repeats),
            bench_preset("paper", "paper", args.paper_batch, args.paper_repeats)]
    load_after = os.getloadavg()
    results = {"threads": args.threads, "load_average_before": load_before, "load_average_after": load_after,
               "wall_s": time.perf_counter() - t0, "presets": rows}
    header = ("| preset | MLPs | WM deter / latent | starts x H | updates/s agent | updates/s reference | ratio | "
              "imagined states/s (update) agent | reference | imagination-only states/s agent | reference | ratio |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines = [f"| {r['preset']} | {r['mlp']} | {r['deter']} / {r['latent']} | {r['batch_size']} x {r['horizon']} | "
             f"{r['updates_per_s']['agent']:.3f} | {r['updates_per_s']['reference']:.3f} | "
             f"{r['updates_per_s']['ratio']:.2f}x | {r['update_imagined_states_per_s']['agent']:.0f} | "
             f"{r['update_imagined_states_per_s']['reference']:.0f} | {r['imagination_only_states_per_s']['agent']:.0f} | "
             f"{r['imagination_only_states_per_s']['reference']:.0f} | {r['imagination_only_states_per_s']['ratio']:.2f}x |"
             for r in rows]
    notes = (f"CPU, {args.threads} torch thread(s); medians of {args.repeats} (small) / {args.paper_repeats} (paper) "
             "interleaved runs after one warm-up each. Ratio = reference time / agent time (> 1: agent faster). "
             f"Paper preset: the paper's network sizes (4 x 1024 MLPs, deter 1024, 32 x 32 latents) with "
             f"{args.paper_batch} start states per update instead of the paper's 1024 so that the run fits in minutes on "
             "CPU (a full paper update costs roughly 1024 / batch times more; not measured here). Load average (1, 5, 15 min) "
             f"before {tuple(round(x, 1) for x in load_before)}, after {tuple(round(x, 1) for x in load_after)}: the "
             "machine is shared, so absolute numbers are noisy; the interleaved ratios are the comparable figures. "
             "Reference = the same update written plainly in this file (see its docstring).")
    path = write_results("agent", results, header + "\n".join(lines), notes)
    print(header + "\n".join(lines))
    print(notes)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
