"""The trajectory-matching reward (genrl_gym.reward) against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from genrl_gym.reward import (PHASE_EXTRA_STEPS, SCORES, alignment_offsets, kl_score, pairwise_scores, phase_offsets, score,
                              target_horizon, trajectory_match)


def test_max_cosine_equals_cosine_for_equal_norms_and_penalises_scale() -> None:
    a = torch.tensor([3.0, 4.0])
    b = torch.tensor([4.0, 3.0])
    assert score(a, b, "max_cosine").item() == pytest.approx(24 / 25)
    assert score(a, b, "cosine").item() == pytest.approx(24 / 25)
    # Same direction, twice the norm: cosine 1, max-norm cosine 1*2/4 = 0.5.
    assert score(a, 2 * a, "cosine").item() == pytest.approx(1.0)
    assert score(a, 2 * a, "max_cosine").item() == pytest.approx(0.5)


def test_mse_scores() -> None:
    a = torch.tensor([1.0, 0.0, 0.0, 0.0])
    b = torch.tensor([0.0, 0.0, 0.0, 0.0])
    assert score(a, b, "neg_mse").item() == pytest.approx(-1 / 2)
    assert score(a, b, "exp_neg_mse").item() == pytest.approx(math.exp(-1 / 2))


def test_kl_score_is_zero_for_equal_and_negative_otherwise() -> None:
    logits = torch.randn(2, 4, 3, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(kl_score(logits, logits), torch.zeros(2), atol=1e-6)
    p = torch.tensor([[[0.0, 0.0]]])  # one categorical, 2 classes, uniform
    q = torch.tensor([[[math.log(3.0), 0.0]]])  # [0.75, 0.25]
    expected = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    assert kl_score(p, q).item() == pytest.approx(-expected / (1 * math.log(2)))
    with pytest.raises(ValueError, match="a_logits"):
        score(torch.ones(3), torch.ones(3), "neg_kl")


def _one_hot_features(ids: list[int], dim: int = 12) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(ids), dim).float()


def test_sequence_alignment_finds_the_shifted_target() -> None:
    # Target: orthogonal features 0..11; the agent does nothing (feature 11) for 3 steps, then the target's motion.
    target = _one_hot_features(list(range(12)))  # [12, F]
    agent_ids = [11, 11, 11] + list(range(9))  # T = 12: target step j appears at agent step j + 3
    features = _one_hot_features(agent_ids)[:, None]  # [12, 1, F]
    k = alignment_offsets(features, target, window=8)
    assert k.tolist() == [3]
    r = trajectory_match(features, target, score_kind="cosine")
    # Before the offset the agent is compared with target step 0 (feature 0): zero; after it, a perfect match.
    assert r[:3, 0].tolist() == [0.0, 0.0, 0.0]
    assert torch.allclose(r[3:, 0], torch.ones(9))
    # Without alignment the same agent never matches.
    assert trajectory_match(features, target, score_kind="cosine", align="none").abs().max().item() == 0.0


def test_offsets_follow_the_reference_count() -> None:
    # T = 17, window 8: offsets 0..8 (9 of them); a target placed at offset 9 cannot be found.
    target = _one_hot_features(list(range(8)), dim=20)
    for true_offset, expected in [(8, 8), (9, 0)]:
        ids = [19] * true_offset + list(range(8)) + [19] * (17 - 8 - true_offset)
        k = alignment_offsets(_one_hot_features(ids, dim=20)[:, None], target, window=8)
        # At offset 9 no tried window overlaps the target, every offset scores 0 and argmax falls back to 0.
        assert k.item() == expected


def test_batched_targets_and_gradients() -> None:
    gen = torch.Generator().manual_seed(1)
    features = torch.randn(17, 5, 6, generator=gen, requires_grad=True)
    shared = torch.randn(17, 6, generator=gen)
    r_shared = trajectory_match(features, shared)
    r_batched = trajectory_match(features, shared[:, None].expand(17, 5, 6).contiguous())
    assert r_shared.shape == (17, 5)
    assert torch.allclose(r_shared, r_batched)
    r_shared.sum().backward()
    assert features.grad is not None and features.grad.abs().sum() > 0


def test_kl_kinds_run_through_trajectory_match() -> None:
    gen = torch.Generator().manual_seed(2)
    feats, tgt = torch.randn(10, 3, 4, generator=gen), torch.randn(10, 4, generator=gen)
    a_logits, b_logits = torch.randn(10, 3, 2, 5, generator=gen), torch.randn(10, 2, 5, generator=gen)
    for kind in SCORES:
        r = trajectory_match(feats, tgt, score_kind=kind, a_logits=a_logits, b_logits=b_logits)  # type: ignore[arg-type]
        assert r.shape == (10, 3) and torch.isfinite(r).all()
    # phase alignment over a longer target: the KL kinds take the loop, the feature kinds the pairwise product
    long_tgt, long_logits = torch.randn(20, 4, generator=gen), torch.randn(20, 2, 5, generator=gen)
    for kind in SCORES:
        r = trajectory_match(feats, long_tgt, score_kind=kind, align="phase",  # type: ignore[arg-type]
                             a_logits=a_logits, b_logits=long_logits)
        assert r.shape == (10, 3) and torch.isfinite(r).all()


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match=r"\[T, B, F\]"):
        trajectory_match(torch.zeros(3, 4), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="unknown score"):
        trajectory_match(torch.zeros(9, 1, 4), torch.zeros(9, 4), score_kind="dot")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least window"):
        trajectory_match(torch.zeros(9, 1, 4), torch.zeros(4, 4))
    with pytest.raises(ValueError, match="unknown align"):
        trajectory_match(torch.zeros(9, 1, 4), torch.zeros(9, 4), align="dtw")  # type: ignore[arg-type]


def test_phase_alignment_joins_a_longer_target_part_way() -> None:
    # A 30-step target of distinct features; the agent shows target steps 12..28, i.e. it is in the middle of the
    # motion. Sequence alignment can only delay the target's start, so it never matches; phase alignment finds j = 12.
    target = _one_hot_features(list(range(30)), dim=30)
    features = _one_hot_features(list(range(12, 29)), dim=30)[:, None]  # T = 17
    assert trajectory_match(features, target[:17], score_kind="cosine").max().item() == 0.0
    k, j = phase_offsets(features, target, window=8)
    assert (k.item(), j.item()) == (0, 12)
    r = trajectory_match(features, target, score_kind="cosine", align="phase")
    assert torch.allclose(r[:, 0], torch.ones(17))


def test_phase_alignment_equals_sequence_alignment_for_a_target_as_long_as_the_trajectory() -> None:
    gen = torch.Generator().manual_seed(3)
    features, target = torch.randn(17, 6, 5, generator=gen), torch.randn(17, 5, generator=gen)
    for kind in ("max_cosine", "cosine", "neg_mse"):
        seq = trajectory_match(features, target, score_kind=kind)  # type: ignore[arg-type]
        phase = trajectory_match(features, target, score_kind=kind, align="phase")  # type: ignore[arg-type]
        assert torch.equal(seq, phase)
    assert target_horizon("sequence") == 16 and target_horizon("phase") == 16 + PHASE_EXTRA_STEPS
    with pytest.raises(ValueError, match="unknown align"):
        target_horizon("dtw")


def test_phase_alignment_delays_the_start_too_and_keeps_gradients() -> None:
    # The agent idles (feature 39) for 4 steps, then shows target steps 20..32: best pair k = 4, j = 20.
    target = _one_hot_features(list(range(39)), dim=40)
    features = _one_hot_features([39] * 4 + list(range(20, 33)), dim=40)[:, None].requires_grad_(True)
    k, j = phase_offsets(features, target, window=8)
    assert (k.item(), j.item()) == (4, 20)
    r = trajectory_match(features, target, score_kind="cosine", align="phase")
    assert torch.allclose(r[4:, 0], torch.ones(13)) and r[:4, 0].abs().max().item() == 0.0
    r.sum().backward()
    assert features.grad is not None and features.grad.abs().sum() > 0


def test_pairwise_scores_equal_the_per_step_scores() -> None:
    gen = torch.Generator().manual_seed(4)
    features, target = torch.randn(9, 3, 5, generator=gen), torch.randn(12, 5, generator=gen)
    for kind in ("max_cosine", "cosine", "neg_mse", "exp_neg_mse"):
        pair = pairwise_scores(features, target, kind)  # type: ignore[arg-type]
        loop = torch.stack([score(features, target[s][None, None], kind) for s in range(12)], 1)  # type: ignore[arg-type]
        assert pair.shape == (9, 12, 3) and torch.allclose(pair, loop, atol=1e-5)
        batched = pairwise_scores(features, target[:, None].expand(12, 3, 5), kind)  # type: ignore[arg-type]
        assert torch.allclose(batched, pair, atol=1e-6)
    with pytest.raises(ValueError, match="feature scores"):
        pairwise_scores(features, target, "neg_kl")


def test_alignment_ties_up_to_rounding_go_to_the_first_candidate() -> None:
    # a still target (every step the same feature): every start j ties, and float rounding must not pick a later one
    from genrl_gym.reward.core import ALIGN_TIE_TOLERANCE, first_best

    scores = torch.tensor([[0.5, 0.2], [0.5 + ALIGN_TIE_TOLERANCE / 10, 0.3], [0.4, 0.3 + 2 * ALIGN_TIE_TOLERANCE]])
    assert first_best(scores).tolist() == [0, 2]  # within the tolerance: the first; beyond it: the best
    features = _one_hot_features([0] * 17, dim=4)[:, None]
    features = features * (1 - 1e-7 * torch.arange(16.0, -1, -1))[:, None, None]  # later steps a rounding nearer
    target = _one_hot_features([0] * 30, dim=4)
    k, j = phase_offsets(features, target, window=8)
    assert (k.item(), j.item()) == (0, 0)
