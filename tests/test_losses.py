"""Loss functions against hand computations, and the world-model loss falling on real walker frames."""

from __future__ import annotations

import genrl_gym  # noqa: F401  (render guard first)

from pathlib import Path

import numpy as np
import pytest
import torch

from genrl_gym.data import EpisodeStore, SequenceSampler, collect
from genrl_gym.models import MFWM, preset
from genrl_gym.models.aligner import corrupt
from genrl_gym.training.losses import (aligner_loss, connector_kl_loss, image_loss, kl_balance_loss, world_model_loss)



def _np_kl(a: np.ndarray, b: np.ndarray, unimix: float) -> np.ndarray:
    """KL[a || b] of unimixed categoricals, summed over the categoricals: [..., S, C] -> [...] (float64 reference)."""
    def p(x: np.ndarray) -> np.ndarray:
        e = np.exp(x - x.max(-1, keepdims=True))
        return (1 - unimix) * e / e.sum(-1, keepdims=True) + unimix / x.shape[-1]
    pa, pb = p(a), p(b)
    return (pa * (np.log(pa) - np.log(pb))).sum((-2, -1))


# fixed logits [B=1, T=3, S=2, C=3]: step 0 has KL < 1 nat (clamped by the free nats), steps 1-2 have KL > 1
POST = np.array([[[[0.0, 0.0, 0.0], [0.1, 0.0, -0.1]],
                  [[4.0, 0.0, -2.0], [0.0, 3.0, 0.0]],
                  [[0.0, 0.0, 5.0], [-3.0, 2.0, 1.0]]]])
PRIOR = np.array([[[[0.2, 0.0, -0.2], [0.0, 0.1, 0.0]],
                   [[-2.0, 1.0, 2.0], [1.0, -1.0, 2.0]],
                   [[2.0, 0.0, -3.0], [1.0, 0.0, -2.0]]]])


def test_kl_balance_matches_hand_computation() -> None:
    kl = _np_kl(POST, PRIOR, 0.01)  # [1, 3]
    assert kl[0, 0] < 1.0 < kl[0, 1] and kl[0, 2] > 1.0  # the free-nats clamp matters for step 0 only
    expected = 0.6 * (0.15 * np.maximum(kl, 1.0).mean() + 0.85 * np.maximum(kl, 1.0).mean())
    post = torch.tensor(POST, dtype=torch.float32, requires_grad=True)
    prior = torch.tensor(PRIOR, dtype=torch.float32, requires_grad=True)
    loss, metrics = kl_balance_loss(post, prior, unimix=0.01, free=1.0, balance=0.85, scale=0.6)
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)
    assert float(metrics["kl"]) == pytest.approx(kl.mean(), rel=1e-5)
    # clamp per (b, t) *before* the mean: differs from clamping the mean
    assert expected != pytest.approx(0.6 * max(kl.mean(), 1.0))
    # gradients: step 0 is below the free nats -> no gradient at all there
    loss.backward()
    assert torch.all(post.grad[0, 0] == 0) and torch.all(prior.grad[0, 0] == 0)
    assert post.grad[0, 1:].abs().sum() > 0 and prior.grad[0, 1:].abs().sum() > 0


def test_kl_balance_splits_gradients() -> None:
    """Representation term (weight 1 - balance) trains the posterior only, dynamics term (balance) the prior only."""
    post = torch.tensor(POST[:, 1:], dtype=torch.float32, requires_grad=True)
    prior = torch.tensor(PRIOR[:, 1:], dtype=torch.float32, requires_grad=True)
    kl_balance_loss(post, prior, unimix=0.01, free=1.0, balance=0.85, scale=0.6)[0].backward()
    gq, gp = post.grad.clone(), prior.grad.clone()
    # reference gradients: each direction of the KL alone, both operands live
    q2 = torch.tensor(POST[:, 1:], dtype=torch.float32, requires_grad=True)
    p2 = torch.tensor(PRIOR[:, 1:], dtype=torch.float32, requires_grad=True)
    from genrl_gym.models.rssm import categorical_kl

    categorical_kl(q2, p2, 0.01).mean().backward()
    torch.testing.assert_close(gq, 0.6 * 0.15 * q2.grad)
    torch.testing.assert_close(gp, 0.6 * 0.85 * p2.grad)


def test_image_loss_is_summed_over_pixels() -> None:
    image = torch.full((2, 3, 64, 64, 3), 255, dtype=torch.uint8)
    pred = torch.zeros(2, 3, 3, 64, 64)  # 0 in the x/255 - 0.5 space = grey 127.5
    assert float(image_loss(pred, image)) == pytest.approx(0.25 * 64 * 64 * 3)
    pred[0, 0, 0, 0, 0] = 0.5  # one exact pixel removes 0.25 from one of the 6 frames
    assert float(image_loss(pred, image)) == pytest.approx(0.25 * 64 * 64 * 3 - 0.25 / 6)


def test_connector_kl_direction_weight_and_detach() -> None:
    conn = torch.tensor(PRIOR, dtype=torch.float32, requires_grad=True)
    post = torch.tensor(POST, dtype=torch.float32, requires_grad=True)
    loss, kl = connector_kl_loss(conn, post, unimix=0.01, balance=0.8, free=0.0)
    expected = _np_kl(PRIOR, POST, 0.01)  # KL[p_conn || q_wm]
    assert float(loss.detach()) == pytest.approx(0.8 * expected.mean(), rel=1e-5)
    np.testing.assert_allclose(kl.numpy(), expected, rtol=1e-5)
    loss.backward()
    assert post.grad is None  # the world model's posterior is a target only
    assert conn.grad.abs().sum() > 0


def test_aligner_noise_and_loss() -> None:
    g = torch.Generator().manual_seed(0)
    e = torch.nn.functional.normalize(torch.randn(2000, 256, generator=g), dim=-1)
    noisy = corrupt(e, 0.5, g)
    torch.testing.assert_close(noisy.norm(dim=-1), torch.ones(2000))
    cos = (noisy * e).sum(-1)
    # n/||n|| is nearly orthogonal to e in 256 dims: cos(e', e) ~ 0.5 / ||0.5 e + 0.5 n|| ~ 1/sqrt(2)
    assert float(cos.mean()) == pytest.approx(2 ** -0.5, abs=0.02)
    normalize = lambda x: torch.nn.functional.normalize(x, dim=-1)  # noqa: E731  (an aligner that does nothing)
    assert float(aligner_loss(normalize, e, noise=0.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(aligner_loss(normalize, e, noise=0.5, generator=g)) == pytest.approx(1 - 2 ** -0.5, abs=0.02)


# ---------------------------------------------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def walker_store(tmp_path_factory: pytest.TempPathFactory) -> EpisodeStore:
    """Four short random-policy walker episodes rendered by the real pixel env (41 rows each)."""
    store = EpisodeStore(Path(tmp_path_factory.mktemp("walker")))
    collect(domain="walker", task="stand", env_kwargs={"episode_frames": 80}, policy="random", store=store,
            num_episodes=4, seed=0, progress=False)
    return store


def test_world_model_loss_falls_on_walker_frames(walker_store: EpisodeStore) -> None:
    torch.manual_seed(0)
    cfg = preset("tiny", embed_dim=16, action_dim=walker_store.metadata["action_dim"])
    model = MFWM(cfg, domain="walker")
    sampler = SequenceSampler(walker_store, 4, 16, seed=0)
    held_out = {k: torch.as_tensor(v) for k, v in next(SequenceSampler(walker_store, 8, 16, seed=123)).items()}

    def eval_loss() -> tuple[float, float]:
        with torch.no_grad():
            loss, _, m = world_model_loss(model.world_model, held_out, cfg, torch.Generator().manual_seed(0))
        return float(loss), float(m["image_loss"])

    before, img_before = eval_loss()
    opt = torch.optim.Adam(model.world_model.parameters(), lr=1e-3)
    for _ in range(30):
        batch = {k: torch.as_tensor(v) for k, v in next(sampler).items()}
        loss, post, _ = world_model_loss(model.world_model, batch, cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after, img_after = eval_loss()
    assert np.isfinite(after)
    assert after < 0.8 * before, (before, after)
    assert img_after < 0.8 * img_before
