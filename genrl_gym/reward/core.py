"""GenRL's trajectory-matching reward as pure tensor functions (GenRL paper), and the reward's constants.

One implementation, used by the Gymnasium/SB3 wrappers (on posterior latents of real observations) and
by :class:`genrl_gym.agents.GenRLAgent` (on imagined latents), so that both optimise the same number.

Features are the world model's *reward features*: the decoder's first linear layer applied to the
one-hot stochastic state (``MFWM.reward_features``), for the agent's states and for the prompt's target
states alike. Scores compare them one time step at a time:

========================  ======================================================================
``"max_cosine"``          ``u.v / max(|u|, |v|)^2``: the cosine when norms match, lower when they
                          differ (the reference code's default, and ours)
``"cosine"``              ``u.v / (|u| |v|)`` (the paper's text)
``"neg_mse"``             ``-|u - v| / sqrt(F)`` (an L2 distance, as the reference scales it)
``"exp_neg_mse"``         ``exp(neg_mse)``
``"neg_kl"``              ``-KL[p_agent || p_target] / (S log C)`` on the latent categoricals
``"cosine_kl"``           ``cosine + neg_kl``
========================  ======================================================================

Sequence alignment (``align="sequence"``, the default) lets a behaviour start at any moment: the first
``window`` target steps are slid over the agent's trajectory, the offset ``k*`` with the best mean score
is where the target starts, and agent step ``i`` is compared with target step ``max(0, i - k*)``.
Offsets ``0 .. T - window - 1`` are tried (9 offsets for the usual T = 17), as the reference code does.

Phase alignment (``align="phase"``, ours, not the reference's) also lets the agent join the target part-way: with a
target longer than the agent's trajectory (``Tt > T``), every pair of agent offset ``k`` and target start ``j`` in
``0 .. Tt - T`` is tried on the same window, and agent step ``i`` is compared with target step ``j + max(0, i - k)``.
Why: a periodic motion (a walking gait) only matches when the phases line up. With the reference alignment a
17-step target can be delayed by at most 8 steps, less than half a walker's stride, so half the windows of a real
gait meet the target out of phase and score below a still, upright pose; a 49-step target searched over its start
covers a whole stride (``benchmarks/results/walker_phase/``). With ``Tt == T`` it equals ``"sequence"``.
"""

from __future__ import annotations

import math
from typing import Final, Literal, cast

import torch
from torch import Tensor

ScoreKind = Literal["max_cosine", "cosine", "neg_mse", "exp_neg_mse", "neg_kl", "cosine_kl"]
AlignKind = Literal["sequence", "phase", "none"]
ALIGNS: tuple[str, ...] = ("sequence", "phase", "none")

#: Every per-step score :func:`score` knows.
SCORES: tuple[str, ...] = ("max_cosine", "cosine", "neg_mse", "exp_neg_mse", "neg_kl", "cosine_kl")
#: The scores that compare latent distributions (they need the target's logits).
KL_SCORES: tuple[str, ...] = ("neg_kl", "cosine_kl")
#: The scores of reward features alone.
FEATURE_SCORES: tuple[str, ...] = ("max_cosine", "cosine", "neg_mse", "exp_neg_mse")
#: The default score: GenRL's max-norm cosine (the reference code's default).
DEFAULT_SCORE: Final = "max_cosine"
#: Alignment window in steps (the VLM's 8 frames).
ALIGN_WINDOW = 8
#: Target horizon H of GenRL's imagination (the target has H + 1 steps).
DEFAULT_HORIZON = 16
#: Frames of an episode kept for alignment: H + 1, the length of an imagined trajectory.
DEFAULT_HISTORY = DEFAULT_HORIZON + 1
#: Extra target steps ``align="phase"`` searches over by default: 32 steps (1.6 s at action repeat 2) hold a whole
#: walker stride, so a 17-step trajectory's target is 49 steps long.
PHASE_EXTRA_STEPS = 32
_EPS = 1e-8
#: Alignment candidates whose mean score is within this of the best (relative beyond magnitude 1) count as tied, and
#: the smallest index wins, as documented. Why: repeated target steps (a still pose) give exact ties, and which of them
#: float rounding puts on top differs between CPU instruction sets (AVX2 / AVX-512 kernels): the reward differed
#: between machines (session 22: one step of the quadruped fixture, by 0.009).
ALIGN_TIE_TOLERANCE = 1e-5


def target_horizon(align: str, trajectory_steps: int = DEFAULT_HISTORY) -> int:
    """Target horizon ``H`` (the target has ``H + 1`` steps) that ``align`` expects for trajectories of
    ``trajectory_steps`` steps: ``trajectory_steps - 1`` for ``"sequence"``/``"none"``, plus
    :data:`PHASE_EXTRA_STEPS` for ``"phase"``."""
    if align not in ALIGNS:
        raise ValueError(f"unknown align {align!r}; choose one of {', '.join(ALIGNS)}")
    return trajectory_steps - 1 + (PHASE_EXTRA_STEPS if align == "phase" else 0)


def score(a: Tensor, b: Tensor, kind: ScoreKind = DEFAULT_SCORE, *, a_logits: Tensor | None = None,
          b_logits: Tensor | None = None) -> Tensor:
    """Per-step similarity of two feature tensors.

    :param a: agent features ``[..., F]``.
    :param b: target features ``[..., F]`` (broadcastable to ``a``).
    :param kind: one of :data:`SCORES`.
    :param a_logits: agent latent logits ``[..., S, C]``, required by ``neg_kl`` and ``cosine_kl``.
    :param b_logits: target latent logits ``[..., S, C]``, likewise.
    :return: scores ``[...]`` (higher is better); cosine kinds lie in ``[-1, 1]``.
    """
    if kind == "max_cosine":
        norm = torch.maximum(a.norm(dim=-1), b.norm(dim=-1)).clamp_min(_EPS)
        return (a * b).sum(-1) / norm.square()
    if kind == "cosine":
        return torch.nn.functional.cosine_similarity(a, b, dim=-1, eps=_EPS)
    if kind == "neg_mse":
        return -(a - b).norm(dim=-1) / math.sqrt(a.shape[-1])
    if kind == "exp_neg_mse":
        return torch.exp(-(a - b).norm(dim=-1) / math.sqrt(a.shape[-1]))
    if kind in ("neg_kl", "cosine_kl"):
        if a_logits is None or b_logits is None:
            raise ValueError(f"score {kind!r} compares latent distributions: pass a_logits and b_logits ([..., S, C])")
        kl = kl_score(a_logits, b_logits)
        if kind == "neg_kl":
            return kl
        return torch.nn.functional.cosine_similarity(a, b, dim=-1, eps=_EPS) + kl
    raise ValueError(f"unknown score {kind!r}; choose one of {', '.join(SCORES)}")


def kl_score(agent_logits: Tensor, target_logits: Tensor) -> Tensor:
    """``-KL[p_agent || p_target] / (S log C)`` for categorical latents with logits ``[..., S, C]`` -> ``[...]``."""
    s, c = agent_logits.shape[-2:]
    logp = agent_logits.log_softmax(-1)
    logq = target_logits.log_softmax(-1)
    kl = (logp.exp() * (logp - logq)).sum((-1, -2))
    return -kl / (s * math.log(c))


def alignment_offsets(features: Tensor, target: Tensor, *, kind: ScoreKind = DEFAULT_SCORE, window: int = ALIGN_WINDOW,
                      a_logits: Tensor | None = None, b_logits: Tensor | None = None) -> Tensor:
    """Best start offset of the target inside each agent trajectory.

    :param features: agent features ``[T, B, F]``.
    :param target: target features ``[Tt, F]`` or ``[Tt, B, F]`` (``Tt >= window``).
    :return: ``k*`` per trajectory, int64 ``[B]``; zeros when ``T <= window`` (no offset but 0 fits).
    """
    t, b = features.shape[:2]
    n_offsets = t - window
    if n_offsets <= 1:
        return torch.zeros(b, dtype=torch.long, device=features.device)
    head = target[:window]
    head_logits = None if b_logits is None else b_logits[:window]
    if head.dim() == 2:  # [W, F] -> [W, 1, F] broadcast over the batch
        head = head[:, None]
        head_logits = None if head_logits is None else head_logits[:, None]
    means = []
    for k in range(n_offsets):
        win_logits = None if a_logits is None else a_logits[k:k + window]
        s = score(features[k:k + window], head, kind, a_logits=win_logits, b_logits=head_logits)  # [W, B]
        means.append(s.mean(0))
    return first_best(torch.stack(means))


def first_best(scores: Tensor) -> Tensor:
    """Index along dim 0 of the first candidate within :data:`ALIGN_TIE_TOLERANCE` of the best (relative to the best
    where its magnitude exceeds 1, as the KL scores'), ``[N, B] -> [B]``."""
    best = scores.max(0, keepdim=True).values
    near = scores >= best - ALIGN_TIE_TOLERANCE * best.abs().clamp_min(1.0)
    return near.to(torch.uint8).argmax(0)  # argmax returns the first of equal maxima


def pairwise_scores(features: Tensor, target: Tensor, kind: ScoreKind = DEFAULT_SCORE) -> Tensor:
    """Feature score of every agent step against every target step, ``[T, B, F] x [Tt, F] -> [T, Tt, B]``.

    One batched product instead of ``T * Tt`` calls of :func:`score` (same values up to float rounding); feature
    scores only (the KL scores need the logits).
    """
    if kind not in FEATURE_SCORES:
        raise ValueError(f"pairwise scores exist for the feature scores {', '.join(FEATURE_SCORES)}, not {kind!r}")
    if target.dim() == 2:
        dot = torch.einsum("tbf,sf->tsb", features, target)
        tn = target.norm(dim=-1)[None, :, None]  # [1, Tt, 1]
    else:
        dot = torch.einsum("tbf,sbf->tsb", features, target)
        tn = target.norm(dim=-1)[None]  # [1, Tt, B]
    an = features.norm(dim=-1)[:, None]  # [T, 1, B]
    if kind == "max_cosine":
        return dot / torch.maximum(an, tn).clamp_min(_EPS).square()
    if kind == "cosine":
        return dot / (an.clamp_min(_EPS) * tn.clamp_min(_EPS))
    dist = (an.square() + tn.square() - 2 * dot).clamp_min(0).sqrt() / math.sqrt(features.shape[-1])
    return -dist if kind == "neg_mse" else torch.exp(-dist)


def phase_offsets(features: Tensor, target: Tensor, *, kind: ScoreKind = DEFAULT_SCORE, window: int = ALIGN_WINDOW,
                  a_logits: Tensor | None = None, b_logits: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Best (agent offset ``k``, target start ``j``) of each trajectory for ``align="phase"``.

    Pairs ``k in 0 .. T - window - 1`` (only 0 when ``T <= window + 1``, as :func:`alignment_offsets`) and
    ``j in 0 .. max(Tt - T, 0)`` are scored by the mean score of agent steps ``k .. k + w - 1`` against target steps
    ``j .. j + w - 1`` (``w = min(window, T, Tt - j)``); ties go to the smallest ``j``, then ``k``.

    :param features: agent features ``[T, B, F]``.
    :param target: target features ``[Tt, F]`` or ``[Tt, B, F]`` (``Tt >= window``).
    :return: ``(k [B], j [B])`` int64.
    """
    t = features.shape[0]
    n_k = t - window if t - window > 1 else 1
    n_j = max(target.shape[0] - t, 0) + 1
    if kind in FEATURE_SCORES:
        pair = pairwise_scores(features, target, kind)  # [T, Tt, B]
        w = min(window, t)
        heads = cast(Tensor, sum(pair[i:i + n_k, i:i + n_j] for i in range(w))) / w  # [n_k, n_j, B]
        best = first_best(heads.transpose(0, 1).flatten(0, 1))  # index j * n_k + k
        return best % n_k, best // n_k
    means = []
    for j in range(n_j):
        head = target[j:j + window]
        head_logits = None if b_logits is None else b_logits[j:j + window]
        if head.dim() == 2:
            head = head[:, None]
            head_logits = None if head_logits is None else head_logits[:, None]
        w = min(window, t, head.shape[0])
        for k in range(n_k):
            win_logits = None if a_logits is None else a_logits[k:k + w]
            s = score(features[k:k + w], head[:w], kind, a_logits=win_logits,
                      b_logits=None if head_logits is None else head_logits[:w])
            means.append(s.mean(0))
    best = first_best(torch.stack(means))  # index j * n_k + k
    return best % n_k, best // n_k


def trajectory_match(features: Tensor, target: Tensor, *, score_kind: ScoreKind = DEFAULT_SCORE,
                     align: AlignKind = "sequence", window: int = ALIGN_WINDOW, a_logits: Tensor | None = None,
                     b_logits: Tensor | None = None) -> Tensor:
    """GenRL reward of each step of agent trajectories against a prompt's target trajectory.

    :param features: agent reward features ``[T, B, F]`` (time-major; differentiable).
    :param target: target reward features ``[Tt, F]`` (one target for all) or ``[Tt, B, F]``.
    :param score_kind: per-step score, one of :data:`SCORES`.
    :param align: ``"sequence"`` (best-matching start offset, the reference's default), ``"phase"`` (also the best
        start inside a target longer than the trajectory) or ``"none"`` (step i vs target step i).
    :param window: alignment window in steps (the VLM's 8 frames).
    :param a_logits: agent logits ``[T, B, S, C]`` for the KL scores.
    :param b_logits: target logits ``[Tt, S, C]`` or ``[Tt, B, S, C]`` for the KL scores.
    :return: rewards ``[T, B]``. Target indices past its end are clamped to its last step.
    """
    if features.dim() != 3:
        raise ValueError(f"features must be [T, B, F], got shape {tuple(features.shape)}")
    if target.dim() not in (2, 3) or target.shape[-1] != features.shape[-1]:
        raise ValueError(f"target must be [Tt, F] or [Tt, B, F] with F={features.shape[-1]}, got {tuple(target.shape)}")
    if score_kind not in SCORES:
        raise ValueError(f"unknown score {score_kind!r}; choose one of {', '.join(SCORES)}")
    if align not in ALIGNS:
        raise ValueError(f"unknown align {align!r}; choose one of {', '.join(ALIGNS)}")
    t, b = features.shape[:2]
    steps = torch.arange(t, device=features.device)[:, None].expand(t, b)
    if align != "none":
        if target.shape[0] < window:
            raise ValueError(f"{align} alignment needs a target of at least window={window} steps, got {target.shape[0]}")
        detached = dict(kind=score_kind, window=window, a_logits=None if a_logits is None else a_logits.detach(),
                        b_logits=None if b_logits is None else b_logits.detach())
        if align == "sequence":
            k = alignment_offsets(features.detach(), target.detach(), **detached)  # type: ignore[arg-type]
            steps = (steps - k[None]).clamp_min(0)
        else:
            k, j = phase_offsets(features.detach(), target.detach(), **detached)  # type: ignore[arg-type]
            steps = (steps - k[None]).clamp_min(0) + j[None]
    index = steps.clamp(0, target.shape[0] - 1)  # [T, B]
    batched = target.dim() == 3
    matched = _gather_time(target, index, batched)
    matched_logits = None if b_logits is None else _gather_time(b_logits, index, batched)
    return score(features, matched, score_kind, a_logits=a_logits, b_logits=matched_logits)


def _gather_time(x: Tensor, index: Tensor, batched: bool) -> Tensor:
    """``x[index[t, b]]`` (shared ``[Tt, ...]``) or ``x[index[t, b], b]`` (``[Tt, B, ...]``) -> ``[T, B, ...]``."""
    if not batched:
        return x[index]
    return x[index, torch.arange(index.shape[1], device=x.device)[None]]
