"""Presets, networks, categorical latents, RSSM and the MFWM world-model API (tiny preset, CPU)."""

from __future__ import annotations

import genrl_gym  # noqa: F401  (render guard first)

import math

import numpy as np
import pytest
import torch

from genrl_gym.models import MFWM, MFWMConfig, State, preset
from genrl_gym.models.networks import Decoder, Encoder, LayerNormGRU
from genrl_gym.models.rssm import categorical_kl, mode_onehot, probs, sample_onehot, uniform_onehot



def tiny(**kw: object) -> MFWMConfig:
    return preset("tiny", embed_dim=16, action_dim=3, **kw)


def make_model(seed: int = 0, **kw: object) -> MFWM:
    torch.manual_seed(seed)
    return MFWM(tiny(**kw), domain="toy")


def batch(B: int = 2, T: int = 8, A: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (B, T, 64, 64, 3), dtype=torch.uint8, generator=g)
    actions = torch.rand(B, T, A, generator=g) * 2 - 1
    is_first = torch.zeros(B, T, dtype=torch.bool)
    is_first[:, 0] = True
    return images, actions, is_first


# ---------------------------------------------------------------------------------------------------------------- presets


@pytest.mark.parametrize("name", ["tiny", "cpu", "small", "paper"])
def test_presets_round_trip(name: str) -> None:
    cfg = preset(name, action_dim=6)
    assert cfg.preset == name
    again = MFWMConfig.from_dict(cfg.to_dict())
    assert again == cfg
    assert MFWMConfig.from_dict(__import__("json").loads(cfg.to_json())) == cfg
    cfg.validate()


def test_preset_values() -> None:
    p = preset("paper")
    assert (p.world_model.cnn_depth, p.world_model.deter, p.world_model.stoch, p.world_model.classes) == (48, 1024, 32, 32)
    assert (p.train.batch_size, p.train.seq_len, p.train.lr, p.train.eps, p.train.clip) == (48, 48, 1e-4, 1e-8, 1000.0)
    assert (p.world_model.kl_free, p.world_model.kl_balance, p.world_model.kl_scale) == (1.0, 0.85, 0.6)
    assert p.feature_dim == 1536 and p.stoch_dim == 1024
    t = preset("tiny")
    assert (t.world_model.cnn_depth, t.world_model.deter, t.world_model.stoch, t.train.batch_size, t.train.seq_len) == \
        (4, 32, 4, 4, 16)
    s, c = preset("small"), preset("cpu")
    assert (s.world_model.cnn_depth, s.world_model.deter, s.world_model.stoch, s.train.seq_len) == (16, 256, 16, 32)
    assert (c.world_model.cnn_depth, c.world_model.deter, c.train.seq_len) == (8, 256, 16)


def test_preset_overrides_and_errors() -> None:
    cfg = preset("tiny", embed_dim=32, world_model={"deter": 48}, train__batch_size=2)
    assert (cfg.embed_dim, cfg.world_model.deter, cfg.train.batch_size, cfg.world_model.hidden) == (32, 48, 2, 32)
    assert cfg.replace(world_model__hidden=8).world_model.hidden == 8 and cfg.world_model.hidden == 32
    with pytest.raises(ValueError, match="unknown preset"):
        preset("huge")
    with pytest.raises(ValueError, match="world_model.dter"):
        preset("tiny", world_model__dter=3)
    with pytest.raises(ValueError, match="unknown override key"):
        preset("tiny", batch=3)
    with pytest.raises(ValueError, match="64x64"):
        MFWM(tiny(image_size=84))
    with pytest.raises(ValueError, match="action_dim"):
        MFWM(preset("tiny", embed_dim=16))
    with pytest.raises(ValueError, match="multiple of"):
        MFWM(tiny(train__seq_len=12))


# ---------------------------------------------------------------------------------------------------------------- networks


def test_encoder_decoder_shapes() -> None:
    enc, dec = Encoder(4), Decoder(16, 4)
    sizes = []
    x = torch.zeros(2, 3, 64, 64)
    for m in enc.net:
        x = m(x)
        if isinstance(m, torch.nn.Conv2d):
            sizes.append(x.shape[-1])
    assert sizes == [31, 14, 6, 2]
    assert enc(torch.zeros(5, 2, 3, 64, 64)).shape == (5, 2, 128)
    sizes = []
    x = dec.linear(torch.zeros(2, 16)).reshape(2, 128, 1, 1)
    for m in dec.net:
        x = m(x)
        if isinstance(m, torch.nn.ConvTranspose2d):
            sizes.append(x.shape[-1])
    assert sizes == [5, 13, 30, 64]
    assert dec(torch.zeros(4, 3, 16)).shape == (4, 3, 3, 64, 64)
    assert [m.kernel_size[0] for m in dec.net if isinstance(m, torch.nn.ConvTranspose2d)] == [5, 5, 6, 6]


def test_layernorm_gru_matches_hand_computation() -> None:
    torch.manual_seed(0)
    gru = LayerNormGRU(3, 4, update_bias=-1.0)
    x, h = torch.randn(2, 3), torch.randn(2, 4)
    parts = torch.nn.functional.layer_norm(torch.cat([x, h], -1) @ gru.linear.weight.T, (12,), gru.norm.weight, gru.norm.bias)
    r, c, u = parts[:, :4], parts[:, 4:8], parts[:, 8:]
    u = torch.sigmoid(u - 1)
    expected = u * torch.tanh(torch.sigmoid(r) * c) + (1 - u) * h
    torch.testing.assert_close(gru(x, h), expected)
    assert gru.linear.bias is None


def test_gru_scan_equals_step_by_step() -> None:
    torch.manual_seed(0)
    gru = LayerNormGRU(3, 4)
    x, h0 = torch.randn(2, 5, 3), torch.randn(2, 4)
    keep = torch.ones(2, 5, 1)
    keep[1, 2] = 0  # reset the second sequence before step 2
    h, expected = h0, []
    for t in range(5):
        h = gru(x[:, t], h * keep[:, t])
        expected.append(h)
    torch.testing.assert_close(gru.scan(x, h0, keep), torch.stack(expected, 1))


# ---------------------------------------------------------------------------------------------------------------- latents


def test_unimix_probs_and_onehots() -> None:
    logits = torch.tensor([[[20.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]])  # [1, S=2, C=4]
    p = probs(logits, 0.01)
    assert torch.all(p >= 0.01 / 4 - 1e-7) and torch.allclose(p.sum(-1), torch.ones(1, 2))
    assert p[0, 0, 0] == pytest.approx(0.99 + 0.0025, abs=1e-6)
    m = mode_onehot(logits, 0.01)
    assert m.shape == (1, 8) and m[0, 0] == 1 and m.sum() == 2
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    s1, s2 = sample_onehot(logits.expand(1000, 2, 4), 0.01, g1), sample_onehot(logits.expand(1000, 2, 4), 0.01, g2)
    assert torch.equal(s1, s2)
    assert set(s1.detach().unique().tolist()) <= {0.0, 1.0}
    assert torch.all(s1.reshape(1000, 2, 4).sum(-1) == 1)
    freq = s1.reshape(1000, 2, 4).mean(0)  # second categorical is uniform
    assert torch.allclose(freq[1], torch.full((4,), 0.25), atol=0.06)
    assert freq[0, 0] > 0.97
    u = uniform_onehot((500,), 2, 4, torch.Generator().manual_seed(0))
    assert u.shape == (500, 8) and torch.allclose(u.reshape(500, 2, 4).mean(0), torch.full((2, 4), 0.25), atol=0.07)


def test_straight_through_gradient() -> None:
    logits = torch.randn(3, 2, 4, requires_grad=True)
    s = sample_onehot(logits, 0.01, torch.Generator().manual_seed(0))
    (s * torch.arange(8.0)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_categorical_kl_matches_manual() -> None:
    a, b = torch.randn(2, 3, 5), torch.randn(2, 3, 5)
    pa, pb = probs(a, 0.01), probs(b, 0.01)
    manual = (pa * (pa.log() - pb.log())).sum((-2, -1))
    torch.testing.assert_close(categorical_kl(a, b, 0.01), manual)
    assert torch.allclose(categorical_kl(a, a, 0.01), torch.zeros(2), atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------- RSSM / MFWM


def test_observe_shapes_and_dtypes() -> None:
    m = make_model()
    images, actions, is_first = batch()
    post, prior = m.observe(images, actions, is_first)
    for s in (post, prior):
        assert s.deter.shape == (2, 8, 32) and s.stoch.shape == (2, 8, 16) and s.logits.shape == (2, 8, 4, 4)
        assert s.deter.dtype == s.stoch.dtype == s.logits.dtype == torch.float32
    assert torch.equal(post.deter, prior.deter)
    assert post.feat().shape == (2, 8, 48) and post.batch_shape == (2, 8)
    assert m.decode(post.stoch).shape == (2, 8, 64, 64, 3)
    assert m.decode(post.stoch).min() >= 0 and m.decode(post.stoch).max() <= 1
    assert m.reward_features(post.stoch).shape == (2, 8, 128)
    # numpy inputs work too
    post_np, _ = m.observe(images.numpy(), actions.numpy(), is_first.numpy(), sample=False)
    assert post_np.stoch.shape == (2, 8, 16)


def test_observe_equals_obs_step_loop() -> None:
    m = make_model()
    images, actions, is_first = batch(T=6)
    post, _ = m.observe(images, actions, is_first, sample=False)
    state = m.initial_state(2)
    for t in range(6):
        state = m.obs_step(state, actions[:, t], images[:, t], is_first[:, t], sample=False)
        torch.testing.assert_close(state.deter, post.deter[:, t])
        torch.testing.assert_close(state.stoch, post.stoch[:, t])


def test_posterior_reads_current_image_only_and_is_first_resets() -> None:
    m = make_model()
    images, actions, is_first = batch(T=6)
    post, _ = m.observe(images, actions, is_first, sample=False)
    other = images.clone()
    other[:, :3] = 255 - other[:, :3]  # change the past
    post2, _ = m.observe(other, actions, is_first, sample=False)
    torch.testing.assert_close(post.logits[:, 3:], post2.logits[:, 3:])  # posterior: current image only
    assert not torch.allclose(post.deter[:, 3:], post2.deter[:, 3:])  # deter does carry the past
    # an is_first in the middle makes the rest independent of the past
    is_first2 = is_first.clone()
    is_first2[:, 3] = True
    a, _ = m.observe(images, actions, is_first2, sample=False)
    b, _ = m.observe(other, actions, is_first2, sample=False)
    torch.testing.assert_close(a.deter[:, 3:], b.deter[:, 3:])


def test_state_helpers() -> None:
    m = make_model()
    images, actions, is_first = batch()
    post, _ = m.observe(images, actions, is_first)
    last = post.index((slice(None), -1))
    assert last.deter.shape == (2, 32) and last.logits.shape == (2, 4, 4)
    stacked = State.stack([last, last], 0)
    assert stacked.stoch.shape == (2, 2, 16)
    assert post.flatten().deter.shape == (16, 32) and post.transpose().deter.shape == (8, 2, 32)
    assert State.cat([post, post], 1).deter.shape == (2, 16, 32)
    assert not post.detach().stoch.requires_grad


def test_reward_features_are_decoder_linear_with_bias() -> None:
    m = make_model()
    z = torch.zeros(3, 16)
    torch.testing.assert_close(m.reward_features(z), m.world_model.decoder.linear.bias.expand(3, -1))
    onehot = torch.nn.functional.one_hot(torch.tensor([0, 5, 10, 15]) % 4, 4).float().reshape(1, 16)
    expected = onehot @ m.world_model.decoder.linear.weight.T + m.world_model.decoder.linear.bias
    torch.testing.assert_close(m.reward_features(onehot), expected)


def test_imagine_gradients_reach_actions_not_world_model() -> None:
    m = make_model()
    images, actions, is_first = batch()
    with torch.no_grad():
        post, _ = m.observe(images, actions, is_first)
    start = post.index((slice(None), -1))
    policy = torch.nn.Linear(48, 3)
    states, acts = m.imagine(lambda s: torch.tanh(policy(s.feat())), start, horizon=5)
    assert states.deter.shape == (6, 2, 32) and acts.shape == (5, 2, 3)
    torch.testing.assert_close(states.deter[0], start.deter)
    m.reward_features(states.stoch[1:]).sum().backward()
    assert policy.weight.grad is not None and policy.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in m.world_model.rssm.parameters())  # dynamics frozen during imagination
    assert all(p.requires_grad for p in m.world_model.parameters())  # flags restored


def test_connector_rollout_api() -> None:
    m = make_model()
    e = torch.nn.functional.normalize(torch.randn(2, 10, 16), dim=-1)
    s = m.connector_rollout(e, generator=torch.Generator().manual_seed(0))
    assert s.stoch.shape == (2, 10, 16) and s.deter.shape == (2, 10, 32)
    s2 = m.connector_rollout(e, generator=torch.Generator().manual_seed(0))
    assert torch.equal(s.stoch, s2.stoch)
    sa = m.connector_rollout(e, align=True, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(sa.deter, s.deter)
    with pytest.raises(ValueError, match=r"\[B, T, 16\]"):
        m.connector_rollout(e[0])
    assert math.isclose(float(m.align(e).detach().norm(dim=-1).mean()), 1.0, rel_tol=1e-5)
    assert isinstance(np.asarray(m.decode(s.stoch).detach()), np.ndarray)
