"""DreamerV3-style actor-critic in imagination, as GenRL uses it (GenRL paper: behaviour learning in imagination).

Everything here is either a pure tensor function or a small network, so that each piece can be checked by hand:

=============================  =====================================================================================
:func:`lambda_returns`         ``R_t = r_t + g ((1 - l) v_{t+1} + l R_{t+1})``, ``R_H = v_H`` (bootstrap, slow critic)
:func:`step_weights`           ``w_t = discount^t`` multiplying both losses
:func:`update_return_ema`      EMA (rate 0.01, init 0) of the 5th / 95th percentiles of the lambda-returns
:func:`return_offset_scale`    ``offset = P5``, ``scale = max(1, P95 - P5)``; normalised return ``(R - offset) / scale``
:func:`actor_loss`             dynamics backprop: ``-mean(w[:-2] * (R_norm[1:] + entropy_coef * H[pi(s_{0..H-2})]))``
:func:`critic_loss`            ``-mean(w[:-1] * log p_critic(sg(R)))`` on the states ``0 .. H-1``
:func:`symlog`, :func:`twohot`  two-hot targets over 255 bins in symlog space ``[-20, 20]``
:class:`Actor`                 Normal with ``tanh`` mean and ``std = 0.9 sigmoid(s + 2) + 0.1``, *not* squashed
:class:`Critic`                MLP -> 255 two-hot logits, zero-initialised output layer
:func:`hard_update`            the slow critic is a hard copy of the critic every 100 updates
=============================  =====================================================================================

Time indexing of one imagined trajectory of ``H`` steps (``H + 1`` states, the start state included): state ``s_0`` is
the start, the actor at ``s_t`` draws ``a_t`` and the world model's prior gives ``s_{t+1}``; ``r_t`` is the reward *of
state* ``s_t`` (trajectory matching scores states). Hence ``R_0`` contains the start state's own reward, which no action
can change: it only enters the critic's target, and the actor maximises ``R_1 .. R_{H-1}`` (the action drawn at
``s_{t}`` is credited with ``R_{t+1}``, weighted by ``w_t``), exactly as the reference code indexes it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Independent, Normal

__all__ = [
    "ActorCriticConfig", "AGENT_PRESETS", "AgentPresetName", "agent_preset",
    "symlog", "symexp", "twohot", "twohot_bins", "twohot_log_prob", "twohot_mean",
    "lambda_returns", "step_weights", "update_return_ema", "return_offset_scale", "actor_loss", "critic_loss",
    "mlp", "Actor", "Critic", "hard_update",
]


# ----------------------------------------------------------------------------------------------------------------------
# Configuration


@dataclass
class ActorCriticConfig:
    """Sizes and optimisation of GenRL's behaviour learner. ``paper`` values are the GenRL paper's."""

    layers: int = 4  # hidden layers of actor and critic MLPs (Linear -> LayerNorm -> SiLU each)
    units: int = 1024  # width of those layers
    learning_rate: float = 3e-5  # Adam, actor and critic alike
    eps: float = 1e-5  # Adam epsilon
    clip: float = 100.0  # global gradient-norm clip, per network
    weight_decay: float = 1e-6  # decoupled: w <- (1 - wd) w after each step (independent of the lr, as the reference)
    batch_size: int = 1024  # start states per update (offline: batch_size // seq_len sequences x seq_len steps)
    seq_len: int = 32  # steps per replayed sequence for offline starts
    horizon: int = 16  # imagined steps per trajectory (H + 1 states with the start)
    discount: float = 0.99
    lambda_: float = 0.95
    slow_critic_every: int = 100  # hard copy critic -> slow critic every this many updates
    entropy_coef: float = 0.0  # GenRL uses 0 (its Dreamer baseline 3e-4)
    min_std: float = 0.1
    max_std: float = 1.0
    num_bins: int = 255  # two-hot critic bins over [-bins_range, bins_range] in symlog space
    bins_range: float = 20.0
    return_ema_rate: float = 0.01  # EMA rate of the return percentiles
    return_percentiles: tuple[float, float] = (0.05, 0.95)
    return_min_scale: float = 1.0  # scale = max(return_min_scale, P95 - P5)
    warmup_steps: int = 5  # data-free starts: prior steps before the start state
    connector_steps: int = 16  # data-free starts: steps of each connector rollout from random embeddings
    # Ours, not the reference's: this fraction of the data-free starts continues imagined *episodes*: each begins at the
    # world model's episode-start state (the prior after a reset) and carries on from the last state of its previous
    # imagined trajectory, restarting after about `episode_steps` imagined steps (geometric). The policy then learns on
    # the states its own behaviour reaches from where real episodes begin, not only on the reference's mixed states.
    episode_fraction: float = 0.0
    episode_steps: int = 250  # mean imagined steps before an imagined episode restarts (real DMC episodes: 500)
    # Ours: clip imagined actions to the env's [-1, 1] (straight-through gradient), as the real env clips them; the
    # reference feeds the unclipped Normal samples, which the world model never saw in its data.
    clip_actions: bool = False
    preset: str = "custom"

    @property
    def episode_starts(self) -> int:
        """Start states per update that continue imagined episodes (``episode_fraction`` of ``batch_size``)."""
        return int(round(self.batch_size * self.episode_fraction))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (tuples become lists)."""
        d = asdict(self)
        d["return_percentiles"] = list(self.return_percentiles)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ActorCriticConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ValueError naming the valid ones."""
        valid = {f.name for f in fields(cls)}
        unknown = set(d) - valid
        if unknown:
            raise ValueError(f"unknown actor-critic config keys {sorted(unknown)}; valid: {sorted(valid)}")
        d = dict(d)
        if "return_percentiles" in d:
            d["return_percentiles"] = tuple(d["return_percentiles"])
        return cls(**d).validate()

    def validate(self) -> ActorCriticConfig:
        """Raise ValueError naming the bad field and the fix; return self."""
        for name in ("layers", "units", "batch_size", "seq_len", "horizon", "slow_critic_every", "num_bins",
                     "connector_steps"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}={getattr(self, name)} must be a positive integer")
        if not 0.0 <= self.episode_fraction <= 1.0:
            raise ValueError(f"episode_fraction={self.episode_fraction} must be in [0, 1]")
        if self.episode_steps <= 0:
            raise ValueError(f"episode_steps={self.episode_steps} must be a positive integer")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps={self.warmup_steps} must be >= 0")
        if self.batch_size < 2:
            raise ValueError(f"batch_size={self.batch_size} must be >= 2 (data-free starts split it in two halves)")
        if self.horizon < 2:
            raise ValueError(f"horizon={self.horizon} must be >= 2 (the actor objective uses R_1 .. R_(H-1))")
        if not (0.0 < self.discount <= 1.0 and 0.0 <= self.lambda_ <= 1.0):
            raise ValueError(f"discount={self.discount} must be in (0, 1] and lambda_={self.lambda_} in [0, 1]")
        if not 0.0 < self.min_std < self.max_std:
            raise ValueError(f"need 0 < min_std ({self.min_std}) < max_std ({self.max_std})")
        if self.learning_rate <= 0 or self.eps <= 0 or self.clip <= 0 or self.weight_decay < 0:
            raise ValueError("learning_rate, eps and clip must be > 0 and weight_decay >= 0")
        lo, hi = self.return_percentiles
        if not 0.0 <= lo < hi <= 1.0:
            raise ValueError(f"return_percentiles={self.return_percentiles} must satisfy 0 <= lo < hi <= 1")
        return self


#: Named sizes. ``tiny``: unit tests (seconds); ``small``: CPU runs: a larger learning rate because CPU runs are short,
#: imagined actions clipped to the env's box (on the shipped walker, 300 CPU seconds of data-free learning on stand
#: gave 0.37-0.46 normalised with clipping against 0.00-0.15 without, at learning rates 3e-4 and 1e-3;
#: ``benchmarks/results/behaviour_levers.md``), and 8 imagined steps instead of 16: an update costs about 0.6x, and
#: the returns are the same within seed noise (walker, 300 CPU s, seeds 0-2: stand 0.32 vs 0.30, walk 0.07 vs 0.09, run
#: 0.04 vs 0.03 normalised; one seed had suggested more, ``behaviour_levers_s12.md``), with the imagined reward closer
#: to the real one; ``paper``: the reference's 4 x 1024 MLPs, lr 3e-5, eps 1e-5, clip 100, wd 1e-6, 1024 starts
#: (32 x 32), 16 steps, unclipped imagined actions.
AGENT_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(layers=2, units=32, learning_rate=1e-4, batch_size=16, seq_len=4),
    "small": dict(layers=3, units=256, learning_rate=3e-4, batch_size=256, seq_len=16, clip_actions=True, horizon=8),
    "paper": dict(),
}
#: the names of :data:`AGENT_PRESETS`, for type checkers (the command line reads its choices from the table itself)
AgentPresetName = Literal["tiny", "small", "paper"]


def agent_preset(name: str = "small", **overrides: Any) -> ActorCriticConfig:
    """The named preset (``tiny``, ``small``, ``paper``) with ``overrides`` (field names of :class:`ActorCriticConfig`)."""
    if name not in AGENT_PRESETS:
        raise ValueError(f"unknown agent preset {name!r}; choose one of {sorted(AGENT_PRESETS)}")
    d = {**asdict(ActorCriticConfig()), **AGENT_PRESETS[name], "preset": name}
    valid = set(d)
    unknown = set(overrides) - valid
    if unknown:
        raise ValueError(f"unknown agent config overrides {sorted(unknown)}; valid: {sorted(valid - {'preset'})}")
    d.update(overrides)
    return ActorCriticConfig(**d).validate()


# ----------------------------------------------------------------------------------------------------------------------
# Symlog two-hot


def symlog(x: Tensor) -> Tensor:
    """``sign(x) log(1 + |x|)``, elementwise."""
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: Tensor) -> Tensor:
    """Inverse of :func:`symlog`: ``sign(x) (exp(|x|) - 1)``."""
    return torch.sign(x) * torch.expm1(x.abs())


def twohot_bins(num_bins: int = 255, low: float = -20.0, high: float = 20.0, device: torch.device | str = "cpu") -> Tensor:
    """Bin centres ``[K]`` equally spaced in symlog space."""
    return torch.linspace(low, high, num_bins, device=device)


def twohot(y: Tensor, bins: Tensor) -> Tensor:
    """Two-hot encoding of ``y [...]`` (already in bin space) over sorted ``bins [K]`` -> ``[..., K]``.

    The two bins around ``y`` get weights proportional to closeness (summing to 1); values outside the range put all
    weight on the nearest end bin.
    """
    k = bins.shape[0]
    y = y.clamp(bins[0], bins[-1])
    above = torch.searchsorted(bins, y.contiguous(), right=False).clamp(1, k - 1)  # first bin >= y (at least 1)
    below = above - 1
    lo, hi = bins[below], bins[above]
    w_above = ((y - lo) / (hi - lo)).clamp(0.0, 1.0)
    return F.one_hot(below, k) * (1.0 - w_above)[..., None] + F.one_hot(above, k) * w_above[..., None]


def twohot_mean(logits: Tensor, bins: Tensor) -> Tensor:
    """Expected value of a two-hot critic: ``symexp(sum softmax(logits) * bins)``; ``logits [..., K]`` -> ``[...]``."""
    return symexp((logits.softmax(-1) * bins).sum(-1))


def twohot_log_prob(logits: Tensor, target: Tensor, bins: Tensor) -> Tensor:
    """``log p(target)`` under the two-hot critic: ``sum twohot(symlog(target)) * log_softmax(logits)``.

    :param logits: ``[..., K]``.
    :param target: raw (not symlog) values ``[...]``.
    :return: ``[...]``.
    """
    return (twohot(symlog(target), bins) * logits.log_softmax(-1)).sum(-1)


# ----------------------------------------------------------------------------------------------------------------------
# Returns, weights, normalisation, losses


def lambda_returns(rewards: Tensor, values: Tensor, discount: float = 0.99, lambda_: float = 0.95) -> Tensor:
    """TD(lambda) returns of imagined trajectories, bootstrapped from the last value.

    ``R_{H} = v_H``; ``R_t = r_t + discount * ((1 - lambda_) v_{t+1} + lambda_ R_{t+1})`` for ``t = H-1 .. 0``.

    :param rewards: ``[H+1, B]`` rewards of the states ``s_0 .. s_H`` (the last one is not used).
    :param values: ``[H+1, B]`` slow-critic values of the same states (``v_H`` is the bootstrap).
    :return: ``[H, B]`` returns ``R_0 .. R_{H-1}``. Differentiable in rewards and values.
    """
    if rewards.shape != values.shape or rewards.dim() < 1 or rewards.shape[0] < 2:
        raise ValueError(f"rewards and values must both be [H+1, ...] with H >= 1, got {tuple(rewards.shape)} and "
                         f"{tuple(values.shape)}")
    next_values = values[1:]
    inputs = rewards[:-1] + discount * (1.0 - lambda_) * next_values
    ret = values[-1]
    out = []
    for t in reversed(range(rewards.shape[0] - 1)):
        ret = inputs[t] + discount * lambda_ * ret
        out.append(ret)
    return torch.stack(out[::-1])


def step_weights(length: int, discount: float = 0.99, device: torch.device | str = "cpu") -> Tensor:
    """Loss weights ``w_t = discount^t`` for ``t = 0 .. length-1`` -> ``[length]``.

    This follows the GenRL paper's hyperparameter table. The reference *code* builds its weights from all-ones
    continue flags before applying the discount, so its effective weights are 1; ``discount=1.0`` reproduces that.
    """
    return discount ** torch.arange(length, device=device, dtype=torch.float32)


def update_return_ema(ema: Tensor, returns: Tensor, rate: float = 0.01,
                      percentiles: tuple[float, float] = (0.05, 0.95)) -> Tensor:
    """One EMA step of the return percentiles: ``ema <- (1 - rate) ema + rate [P_lo(R), P_hi(R)]``.

    :param ema: ``[2]`` current (low, high), initially zeros. Not modified; the new value is returned.
    :param returns: lambda-returns of any shape (gradients are ignored).
    :return: new ``[2]``.
    """
    q = torch.quantile(returns.detach().flatten().float(), torch.tensor(percentiles, device=returns.device))
    return (1.0 - rate) * ema + rate * q


def return_offset_scale(ema: Tensor, min_scale: float = 1.0) -> tuple[Tensor, Tensor]:
    """``(offset, scale) = (low, max(min_scale, high - low))`` from the ``[2]`` percentile EMA; both scalars."""
    return ema[0], torch.clamp(ema[1] - ema[0], min=min_scale)


def actor_loss(returns_norm: Tensor, weights: Tensor, entropy: Tensor | None = None, entropy_coef: float = 0.0) -> Tensor:
    """Dynamics-backpropagation actor loss ``-mean(w[:-2] * (R_norm[1:] + entropy_coef * entropy))``.

    :param returns_norm: ``[H, B]`` normalised lambda-returns, differentiable through the imagined dynamics.
    :param weights: ``[H+1]`` step weights (:func:`step_weights`).
    :param entropy: ``[H-1, B]`` entropy of the actor at states ``s_0 .. s_{H-2}`` (the draws credited with ``R_1 ..
        R_{H-1}``); may be None when ``entropy_coef == 0``.
    :return: scalar.
    """
    objective = returns_norm[1:]
    if entropy_coef != 0.0:
        if entropy is None:
            raise ValueError("entropy_coef != 0 needs the actor entropies [H-1, B]")
        objective = objective + entropy_coef * entropy
    w = weights[:-2].reshape(-1, *([1] * (objective.dim() - 1)))
    return -(w * objective).mean()


def critic_loss(logits: Tensor, returns: Tensor, weights: Tensor, bins: Tensor) -> Tensor:
    """Two-hot critic loss ``-mean(w[:-1] * log p(sg(R)))``.

    :param logits: ``[H, B, K]`` critic logits at the states ``s_0 .. s_{H-1}`` (from detached features).
    :param returns: ``[H, B]`` lambda-returns (detached here).
    :param weights: ``[H+1]`` step weights.
    :param bins: ``[K]`` bin centres in symlog space.
    :return: scalar.
    """
    logp = twohot_log_prob(logits, returns.detach(), bins)
    w = weights[:-1].reshape(-1, *([1] * (logp.dim() - 1)))
    return -(w * logp).mean()


# ----------------------------------------------------------------------------------------------------------------------
# Networks


def mlp(inp: int, out: int, layers: int, units: int) -> nn.Sequential:
    """``layers x [Linear(no bias) -> LayerNorm -> SiLU]`` then ``Linear(units -> out)``; ``[..., inp] -> [..., out]``."""
    mods: list[nn.Module] = []
    prev = inp
    for _ in range(layers):
        mods += [nn.Linear(prev, units, bias=False), nn.LayerNorm(units), nn.SiLU()]
        prev = units
    mods.append(nn.Linear(prev, out))
    return nn.Sequential(*mods)


class Actor(nn.Module):
    """Gaussian policy on latent features: mean ``tanh(m)``, std ``(max - min) sigmoid(s + 2) + min``.

    Not squashed or truncated, as the reference: imagined actions can leave ``[-1, 1]`` (real actions are clipped).
    ``forward(feat [..., F]) -> Independent(Normal, 1)`` over ``[..., A]``.
    """

    def __init__(self, feat_dim: int, action_dim: int, layers: int, units: int, min_std: float = 0.1,
                 max_std: float = 1.0) -> None:
        super().__init__()
        self.action_dim, self.min_std, self.max_std = action_dim, min_std, max_std
        self.net = mlp(feat_dim, 2 * action_dim, layers, units)

    def forward(self, feat: Tensor) -> Independent:
        mean, std = self.net(feat).chunk(2, -1)
        mean = torch.tanh(mean)
        std = (self.max_std - self.min_std) * torch.sigmoid(std + 2.0) + self.min_std
        return Independent(Normal(mean, std, validate_args=False), 1, validate_args=False)


class Critic(nn.Module):
    """Two-hot value network: ``feat [..., F] -> logits [..., K]`` over bins in symlog space; output layer zero-init
    (so every initial value is exactly 0)."""

    bins: Tensor

    def __init__(self, feat_dim: int, layers: int, units: int, num_bins: int = 255, bins_range: float = 20.0) -> None:
        super().__init__()
        self.net = mlp(feat_dim, num_bins, layers, units)
        out = self.net[-1]
        assert isinstance(out, nn.Linear)
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)
        self.register_buffer("bins", twohot_bins(num_bins, -bins_range, bins_range), persistent=False)

    def forward(self, feat: Tensor) -> Tensor:
        return self.net(feat)

    def value(self, feat: Tensor) -> Tensor:
        """Expected value ``[...]`` (raw, not symlog)."""
        return twohot_mean(self(feat), self.bins)


@torch.no_grad()
def hard_update(target: nn.Module, source: nn.Module) -> None:
    """Copy every parameter and buffer of ``source`` into ``target`` (same architecture)."""
    for t, s in zip(target.parameters(), source.parameters()):
        t.copy_(s)
    for tb, sb in zip(target.buffers(), source.buffers()):
        tb.copy_(sb)

