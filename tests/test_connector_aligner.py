"""Connector (window indexing, teacher forcing, learning latent sequences) and aligner (closing a modality gap)."""

from __future__ import annotations

import genrl_gym  # noqa: F401  (render guard first)

import math

import pytest
import torch
import torch.nn.functional as F

from genrl_gym.models import MFWM, State, preset, window_embeddings
from genrl_gym.models.aligner import Aligner
from genrl_gym.models.connector import Connector
from genrl_gym.models.presets import AlignerConfig
from genrl_gym.training.losses import aligner_loss, connector_aligner_loss

D = 16


def tiny_model(seed: int = 0) -> MFWM:
    torch.manual_seed(seed)
    return MFWM(preset("tiny", embed_dim=D, action_dim=2))


def test_window_embeddings_indexing() -> None:
    # row t of the store = embedding of the window ending at t; encode t in the vector to follow the indexing
    e = torch.arange(24.0)[None, :, None].expand(2, 24, 3)
    w = window_embeddings(e, 8)
    assert w[0, :, 0].tolist() == [7.0] * 8 + [15.0] * 8 + [23.0] * 8
    with pytest.raises(ValueError, match="multiple"):
        window_embeddings(e[:, :20], 8)


def test_connector_inputs_scaled_and_temporal_zeroed() -> None:
    m = tiny_model()
    e = F.normalize(torch.randn(2, 10, D), dim=-1)
    x = m.connector.inputs(e)
    assert x.shape == (2, 10, D + 8)
    torch.testing.assert_close(x[..., :D].norm(dim=-1), torch.full((2, 10), math.sqrt(D)))
    assert torch.all(x[..., D:] == 0)
    cfg = preset("tiny", embed_dim=D, action_dim=2, connector__temporal_embeds=True)
    x = Connector(cfg.connector, cfg.world_model, D).inputs(e)
    assert x[0, :, D:].argmax(-1).tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 0, 1]


def test_teacher_forcing_reads_previous_posterior() -> None:
    m = tiny_model()
    e = F.normalize(torch.randn(2, 16, D), dim=-1)
    post = F.one_hot(torch.randint(0, 4, (2, 16, 4)), 4).float().flatten(-2)
    a = m.connector.teacher_forced(e, post, torch.Generator().manual_seed(0))
    changed = post.clone()
    changed[:, 5] = F.one_hot((post[:, 5].reshape(2, 4, 4).argmax(-1) + 1) % 4, 4).float().flatten(-2)
    b = m.connector.teacher_forced(e, changed, torch.Generator().manual_seed(0))
    torch.testing.assert_close(a.logits[:, :6], b.logits[:, :6])  # steps <= 5 do not see post[5]
    assert not torch.allclose(a.logits[:, 6], b.logits[:, 6])  # step 6 reads post[5]


def test_rollout_seeded_and_initial_stoch_sampled() -> None:
    m = tiny_model()
    e = F.normalize(torch.randn(8, 1, D), dim=-1).expand(8, 6, D)
    r1 = m.connector_rollout(e, generator=torch.Generator().manual_seed(1))
    r2 = m.connector_rollout(e, generator=torch.Generator().manual_seed(1))
    assert torch.equal(r1.stoch, r2.stoch) and torch.equal(r1.deter, r2.deter)
    # modes after the first step, but the initial stoch is sampled: different seeds -> different starts
    starts = {tuple(m.connector_rollout(e[:1], generator=torch.Generator().manual_seed(s)).deter[0, 0].tolist())
              for s in range(10)}
    assert len(starts) > 1
    init = m.connector.initial(m.connector.inputs(e)[:, 0], torch.Generator().manual_seed(0))
    assert init.stoch.shape == (8, 16)
    torch.testing.assert_close(init.stoch.detach().reshape(8, 4, 4).sum(-1), torch.ones(8, 4))


def _behaviours(K: int, T: int, S: int = 4, C: int = 4) -> torch.Tensor:
    """Class indices [K, T, S]: categorical s starts at (k + s) mod C and moves by k + 1 each step (embedding-specific
    dynamics: the connector must use both its embedding and the previous latent)."""
    k = torch.arange(K)[:, None, None]
    t = torch.arange(T)[None, :, None]
    s = torch.arange(S)[None, None, :]
    return (k + s + t * (k + 1)) % C


def test_connector_learns_latent_sequences_from_embeddings() -> None:
    torch.manual_seed(0)
    cfg = preset("tiny", embed_dim=D, action_dim=2)
    connector = Connector(cfg.connector, cfg.world_model, D)
    K, T = 4, 16
    classes = _behaviours(K, T)
    emb = F.normalize(torch.randn(K, D), dim=-1)
    g = torch.Generator().manual_seed(0)

    def accuracy() -> float:
        with torch.no_grad():
            s = connector.rollout(emb[:, None].expand(K, T, D), sample=False, generator=g)
        return float((s.stoch.reshape(K, T, 4, 4).argmax(-1) == classes).float().mean())

    before = accuracy()
    opt = torch.optim.Adam(connector.parameters(), lr=3e-3)
    for _ in range(150):
        idx = torch.randint(0, K, (8,), generator=g)
        onehot = F.one_hot(classes[idx], 4).float()
        post = State(torch.zeros(8, T, 1), onehot.flatten(-2), 6.0 * onehot)  # a confident WM posterior
        loss, metrics = connector_aligner_loss(connector, None, emb[idx, None].expand(8, T, D), post, cfg, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = accuracy()
    assert before < 0.5
    assert after > 0.95, (before, after, float(metrics["connector_kl"]))


def test_aligner_closes_a_synthetic_modality_gap() -> None:
    """Video embeddings cluster around 16 concepts; 'text' = video + a fixed offset (renormalised), never seen in
    training. The aligner, trained on noised video embeddings only, maps text back near its concept's video."""
    torch.manual_seed(0)
    Dm, K = 32, 16
    centers = F.normalize(torch.randn(K, Dm), dim=-1)
    offset = torch.randn(Dm)
    offset = 0.9 * offset / offset.norm()
    text = F.normalize(centers + offset, dim=-1)
    gap_before = float((text * centers).sum(-1).mean())
    aligner = Aligner(Dm, AlignerConfig())
    opt = torch.optim.Adam(aligner.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        idx = torch.randint(0, K, (64,), generator=g)
        video = F.normalize(centers[idx] + 0.05 * torch.randn(64, Dm, generator=g), dim=-1)
        loss = aligner_loss(aligner, video, noise=0.5, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        aligned = aligner(text)
    gap_after = float((aligned * centers).sum(-1).mean())
    assert 0.5 < gap_before < 0.8
    assert gap_after > gap_before + 0.15 and gap_after > 0.85, (gap_before, gap_after)
    torch.testing.assert_close(aligned.norm(dim=-1), torch.ones(K))


def test_aligner_architecture_scales_with_embed_dim() -> None:
    a = Aligner(64, AlignerConfig())
    widths = [(b.layer.in_features, b.layer.out_features) for b in [*a.down, *a.mid, *a.up]]
    assert widths == [(64, 64), (64, 32), (32, 32), (32, 32), (64, 64), (128, 64)]
    assert isinstance(a.up[0].norm, torch.nn.Identity) and isinstance(a.up[0].act, torch.nn.Identity)
    assert isinstance(a.up[1].norm, torch.nn.LayerNorm)
