"""Latent state, categorical-latent helpers and the RSSM (GenRL paper: the world model, a DreamerV3 RSSM).

The state of a batch is a :class:`State`: ``deter [..., Dd]`` (GRU), ``stoch [..., S*C]`` (flattened one-hot, straight-through
gradients) and ``logits [..., S, C]`` (raw logits; the 1 % uniform mix is applied by the helpers below, never stored).

GenRL's posterior reads the current image embedding only (``single_obs_posterior``), so :meth:`RSSM.observe` computes all
posteriors in one batched call and loops over time only for the GRU.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genrl_gym.models.networks import LayerNormGRU, dense

__all__ = ["State", "probs", "log_probs", "sample_onehot", "mode_onehot", "uniform_onehot", "categorical_kl", "PriorCore",
           "RSSM"]


class State(NamedTuple):
    """Latent state. ``deter [..., Dd]``, ``stoch [..., S*C]`` (one-hot), ``logits [..., S, C]``; ``...`` = batch dims."""

    deter: Tensor
    stoch: Tensor
    logits: Tensor

    def feat(self) -> Tensor:
        """``cat(stoch, deter) [..., S*C + Dd]`` (the actor/critic input)."""
        return torch.cat([self.stoch, self.deter], -1)

    @property
    def batch_shape(self) -> torch.Size:
        """Leading (batch/time) dims shared by all fields."""
        return self.deter.shape[:-1]

    def map(self, fn: Callable[[Tensor], Tensor]) -> State:
        """Apply ``fn`` to every field (``fn`` must act on leading dims only, e.g. indexing, ``.to``, ``.detach``)."""
        return State(*(fn(x) for x in self))

    def index(self, idx: int | slice | Tensor | tuple) -> State:  # type: ignore[override]  # not tuple.index
        """Index the leading dims of every field, e.g. ``state.index((slice(None), -1))`` = last time step of [B, T]."""
        return self.map(lambda x: x[idx])

    def detach(self) -> State:
        """Detached copy (no gradient to whatever produced it)."""
        return self.map(Tensor.detach)

    def to(self, *args: Any, **kwargs: Any) -> State:
        """``Tensor.to`` on every field."""
        return self.map(lambda x: x.to(*args, **kwargs))

    def flatten(self, ndims: int = 2) -> State:
        """Merge the first ``ndims`` leading dims into one (e.g. [B, T] -> [B*T])."""
        return self.map(lambda x: x.flatten(0, ndims - 1))

    def transpose(self) -> State:
        """Swap the first two leading dims ([B, T] <-> [T, B])."""
        return self.map(lambda x: x.transpose(0, 1))

    @staticmethod
    def stack(states: Sequence[State], dim: int = 0) -> State:
        """Stack states along a new leading-side dim ``dim`` (0 = time-major when stacking steps)."""
        return State(*(torch.stack(xs, dim) for xs in zip(*states)))

    @staticmethod
    def cat(states: Sequence[State], dim: int = 0) -> State:
        """Concatenate states along existing leading dim ``dim``."""
        return State(*(torch.cat(xs, dim) for xs in zip(*states)))

    @staticmethod
    def zeros(batch_shape: Sequence[int], deter: int, stoch: int, classes: int, device: torch.device | str = "cpu") -> State:
        """All-zero state (what the RSSM starts from and resets to at ``is_first``)."""
        b = tuple(batch_shape)
        return State(torch.zeros(*b, deter, device=device), torch.zeros(*b, stoch * classes, device=device),
                     torch.zeros(*b, stoch, classes, device=device))


# ----------------------------------------------------------------------------------------------------------------------
# Categorical latents: pure functions of logits [..., S, C]


def probs(logits: Tensor, unimix: float) -> Tensor:
    """Class probabilities with the uniform mix: ``(1 - unimix) softmax(logits) + unimix / C``, ``[..., S, C]`` (fp32)."""
    p = logits.float().softmax(-1)
    return (1.0 - unimix) * p + unimix / logits.shape[-1] if unimix > 0 else p


def log_probs(logits: Tensor, unimix: float) -> Tensor:
    """``log probs(logits, unimix)``, ``[..., S, C]`` (fp32)."""
    return torch.log(probs(logits, unimix)) if unimix > 0 else logits.float().log_softmax(-1)


def _straight_through(onehot: Tensor, p: Tensor) -> Tensor:
    # value = one-hot, gradient = d p (straight-through estimator), flattened to [..., S*C]
    return (onehot + p - p.detach()).flatten(-2)


def sample_onehot(logits: Tensor, unimix: float, generator: torch.Generator | None = None) -> Tensor:
    """Straight-through one-hot sample ``[..., S*C]`` from ``logits [..., S, C]`` (inverse-CDF; ``generator`` for seeding)."""
    p = probs(logits, unimix)
    dev = generator.device if generator is not None else p.device
    u = torch.rand(p.shape[:-1] + (1,), generator=generator, device=dev).to(p.device)
    idx = (p.detach().cumsum(-1) < u).sum(-1).clamp_max(p.shape[-1] - 1)
    return _straight_through(F.one_hot(idx, p.shape[-1]).to(p.dtype), p)


def mode_onehot(logits: Tensor, unimix: float) -> Tensor:
    """Straight-through one-hot of the most likely class ``[..., S*C]``."""
    p = probs(logits, unimix)
    return _straight_through(F.one_hot(logits.argmax(-1), p.shape[-1]).to(p.dtype), p)


def uniform_onehot(batch_shape: Sequence[int], stoch: int, classes: int, generator: torch.Generator | None = None,
                   device: torch.device | str = "cpu") -> Tensor:
    """One-hot samples ``[*batch_shape, S*C]`` from the uniform categorical (GenRL's data-free start states)."""
    logits = torch.zeros(*batch_shape, stoch, classes, device=device)
    return sample_onehot(logits, 0.0, generator).detach()


def categorical_kl(lhs: Tensor, rhs: Tensor, unimix: float) -> Tensor:
    """KL[lhs || rhs] between unimixed categoricals given logits ``[..., S, C]``, summed over the S variables -> ``[...]``."""
    lp, rp = log_probs(lhs, unimix), log_probs(rhs, unimix)
    return (lp.exp() * (lp - rp)).sum((-2, -1))


# ----------------------------------------------------------------------------------------------------------------------
# Networks


class PriorCore(nn.Module):
    """The prior half of an RSSM: ``(stoch_{t-1}, a_t) -> dense -> GRU -> deter_t -> dense -> logits_t``.

    Shared by the world model's RSSM and the connector (whose "action" is the scaled VLM embedding).
    """

    def __init__(self, action_dim: int, deter: int, hidden: int, stoch: int, classes: int, unimix: float,
                 update_bias: float = -1.0) -> None:
        super().__init__()
        self.deter_dim, self.stoch_vars, self.classes, self.unimix = deter, stoch, classes, unimix
        self.img_in = dense(stoch * classes + action_dim, hidden)
        self.gru = LayerNormGRU(hidden, deter, update_bias)
        self.img_out = nn.Sequential(dense(deter, hidden), nn.Linear(hidden, stoch * classes))

    def deter_step(self, stoch: Tensor, deter: Tensor, action: Tensor) -> Tensor:
        """One GRU step: ``stoch [B, S*C], deter [B, Dd], action [B, A] -> deter' [B, Dd]``."""
        return self.gru(self.img_in(torch.cat([stoch, action], -1)), deter)

    def deter_scan(self, stoch: Tensor, deter: Tensor, action: Tensor, keep: Tensor | None = None) -> Tensor:
        """Teacher-forced GRU over a sequence: previous stochs ``[B, T, S*C]``, initial ``deter [B, Dd]``, actions
        ``[B, T, A]``, optional ``keep [B, T, 1]`` (0 zeroes deter before step t) -> ``deter [B, T, Dd]``. Equals
        :meth:`deter_step` applied step by step; the input layer runs on all steps at once."""
        return self.gru.scan(self.img_in(torch.cat([stoch, action], -1)), deter, keep)

    def prior_logits(self, deter: Tensor) -> Tensor:
        """``deter [..., Dd] -> logits [..., S, C]``."""
        return self.img_out(deter).unflatten(-1, (self.stoch_vars, self.classes))

    def to_stoch(self, logits: Tensor, sample: bool, generator: torch.Generator | None = None) -> Tensor:
        """Sample (``sample=True``) or mode of ``logits [..., S, C]`` -> straight-through one-hot ``[..., S*C]``."""
        return sample_onehot(logits, self.unimix, generator) if sample else mode_onehot(logits, self.unimix)

    def from_deter(self, deter: Tensor, sample: bool = True, generator: torch.Generator | None = None) -> State:
        """State whose stoch follows from ``deter [..., Dd]`` through the prior head."""
        logits = self.prior_logits(deter)
        return State(deter, self.to_stoch(logits, sample, generator), logits)

    def img_step(self, prev: State, action: Tensor, sample: bool = True, generator: torch.Generator | None = None) -> State:
        """Prior step ``p(s_t | s_{t-1}, a_t)``: ``prev State [B], action [B, A] -> State [B]``."""
        return self.from_deter(self.deter_step(prev.stoch, prev.deter, action), sample, generator)


class RSSM(PriorCore):
    """World-model RSSM: :class:`PriorCore` plus a posterior ``q(s_t | x_t)`` that reads the image embedding only."""

    def __init__(self, embed_dim: int, action_dim: int, deter: int, hidden: int, stoch: int, classes: int, unimix: float,
                 update_bias: float = -1.0) -> None:
        super().__init__(action_dim, deter, hidden, stoch, classes, unimix, update_bias)
        self.obs_out = nn.Sequential(dense(embed_dim, hidden), nn.Linear(hidden, stoch * classes))

    def initial(self, batch: int, device: torch.device | str | None = None) -> State:
        """Zero state ``[batch]``."""
        device = device if device is not None else self.gru.linear.weight.device
        return State.zeros((batch,), self.deter_dim, self.stoch_vars, self.classes, device)

    def post_logits(self, embed: Tensor) -> Tensor:
        """``embed [..., E] -> posterior logits [..., S, C]`` (no dependence on deter)."""
        return self.obs_out(embed).unflatten(-1, (self.stoch_vars, self.classes))

    def obs_step(self, prev: State, prev_action: Tensor, embed: Tensor, is_first: Tensor, sample: bool = True,
                 generator: torch.Generator | None = None) -> tuple[State, State]:
        """One filtering step. ``prev [B]``, ``prev_action [B, A]`` (the action that led to this frame), ``embed [B, E]``,
        ``is_first bool [B]`` (zeroes state and action) -> ``(post [B], prior [B])``; post.deter = prior.deter."""
        keep = (~is_first.bool()).to(prev.deter.dtype)[:, None]
        prev = State(prev.deter * keep, prev.stoch * keep, prev.logits)
        prior = self.img_step(prev, prev_action * keep, sample, generator)
        logits = self.post_logits(embed)
        return State(prior.deter, self.to_stoch(logits, sample, generator), logits), prior

    def observe(self, embed: Tensor, action: Tensor, is_first: Tensor, state: State | None = None, sample: bool = True,
                generator: torch.Generator | None = None) -> tuple[State, State]:
        """Filter a sequence. ``embed [B, T, E]``, ``action [B, T, A]`` (action[t] led to frame t), ``is_first bool [B, T]``,
        ``state [B]`` (None = zeros) -> ``(post, prior)``, each State ``[B, T]``."""
        state = self.initial(embed.shape[0], embed.device) if state is None else state
        post_logits = self.post_logits(embed)
        post_stoch = self.to_stoch(post_logits, sample, generator)
        keep = (~is_first.bool()).to(post_stoch.dtype)[..., None]  # [B, T, 1]
        # the posterior does not read deter, so every GRU input is known up front: only the recurrence is sequential
        prev_stoch = torch.cat([state.stoch[:, None], post_stoch[:, :-1]], 1)
        deter = self.deter_scan(prev_stoch * keep, state.deter, action * keep, keep)
        prior_logits = self.prior_logits(deter)
        prior = State(deter, self.to_stoch(prior_logits, sample, generator), prior_logits)
        return State(deter, post_stoch, post_logits), prior
