"""Actor-critic math of genrl_gym.agents.actor_critic against hand computations on small fixed trajectories."""

from __future__ import annotations

import math
import typing

import pytest
import torch

import genrl_gym  # noqa: F401  (render/torch guard)
from genrl_gym.agents.actor_critic import (AGENT_PRESETS, Actor, ActorCriticConfig, AgentPresetName, Critic, actor_loss,
                                           agent_preset, critic_loss, hard_update, lambda_returns, return_offset_scale,
                                           step_weights, symexp, symlog, twohot, twohot_bins, twohot_log_prob,
                                           twohot_mean, update_return_ema)


def _t(x: list) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float32)


# ------------------------------------------------------------------------------------------------ lambda-returns
def test_lambda_returns_hand_computed() -> None:
    # H = 2, one trajectory: r = (1, 2, 3), v = (0.5, 1, 2), discount 0.9, lambda 0.5
    # R_2 = v_2 = 2; R_1 = 2 + 0.9 (0.5 * 2 + 0.5 * 2) = 3.8; R_0 = 1 + 0.9 (0.5 * 1 + 0.5 * 3.8) = 3.16
    r, v = _t([[1.0], [2.0], [3.0]]), _t([[0.5], [1.0], [2.0]])
    R = lambda_returns(r, v, discount=0.9, lambda_=0.5)
    assert R.shape == (2, 1)
    torch.testing.assert_close(R, _t([[3.16], [3.8]]))
    # lambda = 1: discounted rewards + bootstrap; the last reward r_H is never used
    torch.testing.assert_close(lambda_returns(r, v, 0.9, 1.0), _t([[1 + 0.9 * 2 + 0.81 * 2.0], [2 + 0.9 * 2.0]]))
    # lambda = 0: one-step TD targets r_t + g v_{t+1}
    torch.testing.assert_close(lambda_returns(r, v, 0.9, 0.0), _t([[1 + 0.9 * 1.0], [2 + 0.9 * 2.0]]))


def test_lambda_returns_defaults_batch() -> None:
    # H = 3, two trajectories, GenRL's discount 0.99 and lambda 0.95, computed step by step by hand
    r = _t([[0.1, 1.0], [0.2, 0.0], [0.3, -1.0], [9.0, 9.0]])
    v = _t([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [4.0, 10.0]])
    g, lam = 0.99, 0.95
    expected = torch.zeros(3, 2)
    for b in range(2):
        ret = v[3, b]
        for t in (2, 1, 0):
            ret = r[t, b] + g * ((1 - lam) * v[t + 1, b] + lam * ret)
            expected[t, b] = ret
    torch.testing.assert_close(lambda_returns(r, v), expected)
    # explicit numbers for the second trajectory (v = 0 except v_3 = 10):
    # R_2 = -1 + 0.99 * 10 = 8.9; R_1 = 0.99 * 0.95 * R_2; R_0 = 1 + 0.99 * 0.95 * R_1
    r2 = -1 + 0.99 * 10.0
    r1 = 0.99 * (0.05 * 0.0 + 0.95 * r2)
    r0 = 1.0 + 0.99 * (0.05 * 0.0 + 0.95 * r1)
    torch.testing.assert_close(lambda_returns(r, v)[:, 1], _t([r0, r1, r2]))


def test_lambda_returns_shape_errors() -> None:
    with pytest.raises(ValueError, match="H\\+1"):
        lambda_returns(torch.zeros(3, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError):
        lambda_returns(torch.zeros(1, 2), torch.zeros(1, 2))


def test_lambda_returns_gradient_reaches_rewards_and_bootstrap() -> None:
    r = torch.zeros(3, 1, requires_grad=True)
    v = torch.zeros(3, 1, requires_grad=True)
    lambda_returns(r, v, 0.9, 0.5)[0].sum().backward()
    # dR_0/dr_0 = 1, dR_0/dr_1 = g lam = 0.45, r_2 unused; dR_0/dv_1 = g (1 - lam) = 0.45, dR_0/dv_2 = g lam g = 0.405
    torch.testing.assert_close(r.grad[:, 0], _t([1.0, 0.45, 0.0]))
    torch.testing.assert_close(v.grad[:, 0], _t([0.0, 0.45, 0.405]))


# ------------------------------------------------------------------------------------------------ weights, normaliser
def test_step_weights() -> None:
    torch.testing.assert_close(step_weights(4, 0.99), _t([1.0, 0.99, 0.9801, 0.970299]))
    assert step_weights(17).shape == (17,)


def test_return_ema_percentiles_and_scale() -> None:
    returns = torch.arange(101, dtype=torch.float32).reshape(101, 1)  # P5 = 5, P95 = 95 exactly
    ema = update_return_ema(torch.zeros(2), returns)
    torch.testing.assert_close(ema, _t([0.05, 0.95]))  # EMA rate 0.01 from 0
    offset, scale = return_offset_scale(ema)
    assert offset.item() == pytest.approx(0.05) and scale.item() == 1.0  # range 0.9 < 1 -> floor at 1
    ema = update_return_ema(ema, returns)
    torch.testing.assert_close(ema, _t([0.99 * 0.05 + 0.05, 0.99 * 0.95 + 0.95]))
    offset, scale = return_offset_scale(ema)
    assert scale.item() == pytest.approx(0.99 * 0.95 + 0.95 - (0.99 * 0.05 + 0.05))
    # large returns: after many updates the EMA converges to the percentiles and the scale to P95 - P5 = 900
    big = returns * 10
    e = torch.zeros(2)
    for _ in range(2000):
        e = update_return_ema(e, big)
    offset, scale = return_offset_scale(e)
    assert offset.item() == pytest.approx(50.0, rel=1e-3) and scale.item() == pytest.approx(900.0, rel=1e-3)


# ------------------------------------------------------------------------------------------------ losses
def test_actor_loss_indexing() -> None:
    # H = 3, B = 2. Objective uses R_norm[1:] (R_1, R_2) with weights w_0, w_1.
    rn = _t([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]).requires_grad_(True)
    w = _t([1.0, 0.5, 0.25, 0.125])
    loss = actor_loss(rn, w)
    assert loss.item() == pytest.approx(-((3 + 4) * 1.0 + (5 + 6) * 0.5) / 4)
    loss.backward()
    torch.testing.assert_close(rn.grad, _t([[0.0, 0.0], [-0.25, -0.25], [-0.125, -0.125]]))  # R_0 gets no gradient
    ent = _t([[1.0, 1.0], [2.0, 2.0]])
    with_ent = actor_loss(rn.detach(), w, ent, entropy_coef=0.1)
    assert with_ent.item() == pytest.approx(-3.125 - (0.1 * 2 * 1.0 + 0.1 * 4 * 0.5) / 4)
    with pytest.raises(ValueError, match="entropy"):
        actor_loss(rn.detach(), w, None, entropy_coef=0.1)


def test_critic_loss_uniform_logits_and_target_detached() -> None:
    bins = twohot_bins()
    logits = torch.zeros(2, 3, 255, requires_grad=True)
    returns = torch.randn(2, 3, requires_grad=True)
    w = step_weights(3, 0.99)
    loss = critic_loss(logits, returns, w, bins)
    # uniform logits: log p = -log 255 for every target -> loss = mean over (t, b) of w_t log 255
    assert loss.item() == pytest.approx((1 + 0.99) / 2 * math.log(255), rel=1e-5)
    loss.backward()
    assert returns.grad is None  # sg(R)
    assert logits.grad is not None and logits.grad.abs().sum() > 0


# ------------------------------------------------------------------------------------------------ symlog two-hot
def test_symlog_symexp() -> None:
    x = _t([-100.0, -1.0, 0.0, 0.5, math.e - 1, 1e4])
    torch.testing.assert_close(symexp(symlog(x)), x, rtol=1e-5, atol=1e-5)
    assert symlog(_t([math.e - 1])).item() == pytest.approx(1.0)
    assert symlog(_t([-(math.e - 1)])).item() == pytest.approx(-1.0)


def test_twohot_encoding() -> None:
    bins = _t([-1.0, 0.0, 1.0, 2.0])
    y = _t([0.25, -5.0, 2.0, 1.0, 7.0, -1.0, 1.5])
    expected = _t([[0, 0.75, 0.25, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0], [0, 0, 0, 1], [1, 0, 0, 0],
                   [0, 0, 0.5, 0.5]])
    torch.testing.assert_close(twohot(y, bins), expected)
    # default bins: 255 over [-20, 20], spacing 40/254
    b = twohot_bins()
    assert b.shape == (255,) and b[0].item() == -20.0 and b[-1].item() == 20.0 and abs(b[127].item()) < 1e-6


def test_twohot_mean_and_log_prob() -> None:
    bins = _t([-1.0, 0.0, 1.0, 2.0])
    # uniform logits: mean symlog value 0.5 -> value symexp(0.5)
    assert twohot_mean(torch.zeros(4), bins).item() == pytest.approx(math.exp(0.5) - 1)
    # peaked on bin 2 (symlog 1) -> value e - 1
    assert twohot_mean(_t([0, 0, 50, 0]), bins).item() == pytest.approx(math.e - 1, rel=1e-4)
    # target e - 1 = symexp(1): all weight on bin 2 -> log p = log_softmax(logits)[2]
    logits = _t([0.3, -0.2, 1.0, 0.5])
    lp = twohot_log_prob(logits, _t(math.e - 1), bins)
    assert lp.item() == pytest.approx(logits.log_softmax(-1)[2].item(), rel=1e-5)
    # target symexp(0.5): half on bins 1 and 2
    lp = twohot_log_prob(logits, _t(math.exp(0.5) - 1), bins)
    ls = logits.log_softmax(-1)
    assert lp.item() == pytest.approx(0.5 * ls[1].item() + 0.5 * ls[2].item(), rel=1e-5)


# ------------------------------------------------------------------------------------------------ networks
def test_actor_distribution() -> None:
    torch.manual_seed(0)
    actor = Actor(feat_dim=5, action_dim=3, layers=2, units=8)
    out = actor.net[-1]
    torch.nn.init.zeros_(out.weight)
    torch.nn.init.zeros_(out.bias)
    dist = actor(torch.randn(4, 5))
    torch.testing.assert_close(dist.mean, torch.zeros(4, 3))  # tanh(0)
    std = 0.9 / (1 + math.exp(-2.0)) + 0.1  # 0.9 sigmoid(0 + 2) + 0.1
    torch.testing.assert_close(dist.base_dist.stddev, torch.full((4, 3), std))
    assert dist.sample().shape == (4, 3) and dist.log_prob(torch.zeros(4, 3)).shape == (4,)
    # std bounded in [0.1, 1]; mean in [-1, 1]; samples NOT squashed (may leave [-1, 1])
    with torch.no_grad():
        out.bias.copy_(torch.tensor([50.0, 50.0, 50.0, 50.0, 50.0, 50.0]))
    dist = actor(torch.zeros(10000, 5))
    assert dist.mean.max() <= 1.0 and dist.base_dist.stddev.max() <= 1.0 + 1e-6
    assert dist.sample().max() > 1.5
    with torch.no_grad():
        out.bias.copy_(torch.tensor([0.0, 0.0, 0.0, -50.0, -50.0, -50.0]))
    assert actor(torch.zeros(1, 5)).base_dist.stddev.min().item() == pytest.approx(0.1)


def test_critic_zero_init_and_hard_update() -> None:
    torch.manual_seed(0)
    critic, slow = Critic(6, 2, 16), Critic(6, 2, 16)
    feat = torch.randn(7, 6)
    assert critic.value(feat).abs().max() < 1e-6 and critic(feat).shape == (7, 255)  # uniform softmax: mean of bins = 0
    loss = critic_loss(critic(feat)[None], torch.full((1, 7), 3.0), step_weights(2), critic.bins)
    loss.backward()
    torch.optim.SGD(critic.parameters(), lr=1.0).step()
    assert critic.value(feat).abs().min() > 1e-3
    assert not all(torch.equal(a, b) for a, b in zip(critic.parameters(), slow.parameters()))
    hard_update(slow, critic)
    assert all(torch.equal(a, b) for a, b in zip(critic.parameters(), slow.parameters()))
    torch.testing.assert_close(slow.value(feat), critic.value(feat))


def test_dynamics_backprop_moves_actions_toward_reward() -> None:
    """Toy differentiable dynamics s' = s + a, reward = -|s - 1|: the actor gradient must push the mean action up."""
    torch.manual_seed(0)
    mean_action = torch.zeros(1, requires_grad=True)
    horizon, batch = 4, 8
    s = torch.zeros(batch, 1)
    states = [s]
    for _ in range(horizon):
        s = s + (mean_action + 0.01 * torch.randn(batch, 1))
        states.append(s)
    st = torch.stack(states)[..., 0]  # [H+1, B]
    rewards = -(st - 1.0).abs()
    values = torch.zeros_like(rewards)
    R = lambda_returns(rewards, values)
    ema = update_return_ema(torch.zeros(2), R)
    offset, scale = return_offset_scale(ema)
    actor_loss((R - offset) / scale, step_weights(horizon + 1)).backward()
    assert mean_action.grad.item() < 0  # descending the loss increases the action


# ------------------------------------------------------------------------------------------------ config
def test_presets_and_config_roundtrip() -> None:
    paper = agent_preset("paper")
    assert (paper.layers, paper.units, paper.learning_rate, paper.eps, paper.clip, paper.weight_decay,
            paper.batch_size, paper.horizon, paper.discount, paper.lambda_, paper.slow_critic_every,
            paper.entropy_coef) == (4, 1024, 3e-5, 1e-5, 100.0, 1e-6, 1024, 16, 0.99, 0.95, 100, 0.0)
    tiny = agent_preset("tiny", horizon=10)
    assert tiny.horizon == 10 and tiny.preset == "tiny"
    assert ActorCriticConfig.from_dict(tiny.to_dict()) == tiny
    with pytest.raises(ValueError, match="unknown agent preset"):
        agent_preset("huge")
    with pytest.raises(ValueError, match="unknown agent config"):
        agent_preset("tiny", hoizon=3)
    with pytest.raises(ValueError, match="horizon"):
        agent_preset("tiny", horizon=1)


def test_preset_name_type_lists_the_presets() -> None:
    # the Literal type checkers see (GenRLAgent(preset=...), the CLI configs) names exactly the table's presets
    assert typing.get_args(AgentPresetName) == tuple(AGENT_PRESETS)
