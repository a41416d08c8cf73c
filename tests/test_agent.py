"""GenRLAgent: learning in imagination (data-free and offline starts), SB3 callbacks/logging, recurrent predict,
and the true-task evaluation helper. Tiny world model and tiny actor-critic: seconds on 2 CPU cores."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import genrl_gym  # noqa: F401  (render/torch guard, before any env renders)
from genrl_gym.agents import GenRLAgent, evaluate_task_return
from genrl_gym.data import EpisodeStore
from genrl_gym.models import MFWM, preset
from genrl_gym.prompts import target_from_prompt
from genrl_gym.vlm import load_vlm
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback

ACTION_DIM = 6  # walker


@pytest.fixture(scope="module")
def vlm():
    return load_vlm("video-only")


@pytest.fixture(scope="module")
def model(vlm) -> MFWM:
    torch.manual_seed(0)
    return MFWM(preset("tiny", action_dim=ACTION_DIM, embed_dim=vlm.embed_dim), domain="walker", vlm_identity=vlm.identity,
                render_settings={"image_size": 64, "camera_id": 0, "render_quality": "fast"})


@pytest.fixture(scope="module")
def prompt() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)


def _agent(model: MFWM, prompt: np.ndarray, vlm, **kw) -> GenRLAgent:
    return GenRLAgent(model, prompt, vlm=vlm, preset="tiny", seed=0, **kw)


def _frames(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)


class _Record(BaseCallback):
    """Collects the logged means after each update (record_mean accumulates until dump)."""

    def __init__(self, stop_after: int | None = None) -> None:
        super().__init__()
        self.steps, self.stop_after, self.values = 0, stop_after, []

    def _on_step(self) -> bool:
        self.steps += 1
        self.values.append(dict(self.model.logger.name_to_value))
        return self.stop_after is None or self.steps < self.stop_after


def _params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def _changed(before: list[torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters()))


# ------------------------------------------------------------------------------------------------ learning
def test_learn_data_free_updates_actor_and_critic_only(model, prompt, vlm) -> None:
    agent = _agent(model, prompt, vlm)
    assert isinstance(agent, BaseAlgorithm)
    actor, critic, slow, wm = (_params(agent.policy.actor), _params(agent.policy.critic), _params(agent.policy.slow_critic),
                               _params(model))
    rec = _Record()
    agent.learn(3, callback=rec, log_interval=0)
    assert rec.steps == 3 and agent.num_timesteps == 3 and agent._n_updates == 3
    for key in ("train/actor_loss", "train/critic_loss", "train/reward_mean", "train/return_scale", "train/entropy"):
        assert math.isfinite(rec.values[-1][key]), key
    assert _changed(actor, agent.policy.actor) and _changed(critic, agent.policy.critic)
    assert _changed(slow, agent.policy.slow_critic)  # hard copy after update 0
    assert not _changed(wm, model) and not any(p.requires_grad for p in model.parameters())  # frozen world model
    assert torch.all(agent.policy.return_ema != 0)
    # slow critic = the critic as it was after update 0: differs from the critic after 3 updates
    assert not all(torch.equal(a, b) for a, b in zip(agent.policy.slow_critic.parameters(), agent.policy.critic.parameters()))


def test_learn_offline_starts(model, prompt, vlm, tmp_path: Path) -> None:
    store = EpisodeStore(tmp_path / "store")
    rng = np.random.default_rng(0)
    for _ in range(2):
        n = 12
        store.save({"image": rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8),
                    "action": rng.uniform(-1, 1, (n, ACTION_DIM)).astype(np.float32),
                    "reward": np.zeros(n, np.float32), "task_reward": np.zeros(n, np.float32),
                    "is_first": np.arange(n) == 0, "is_last": np.arange(n) == n - 1, "is_terminal": np.zeros(n, bool)})
    agent = _agent(model, prompt, vlm, start="offline", store=store, batch_size=8, overrides={"seq_len": 4})
    start = agent.start_states()
    assert start.deter.shape == (8, model.config.world_model.deter) and start.deter.abs().sum() > 0
    actor = _params(agent.policy.actor)
    rec = _Record()
    agent.learn(2, callback=rec, log_interval=0)
    assert math.isfinite(rec.values[-1]["train/actor_loss"]) and math.isfinite(rec.values[-1]["train/critic_loss"])
    assert _changed(actor, agent.policy.actor)


def test_data_free_start_structure(model, prompt, vlm) -> None:
    """Without warm-up the two halves are the same mixed states: deter 0, stoch one-hot per categorical."""
    agent = _agent(model, prompt, vlm, batch_size=64, overrides={"warmup_steps": 0})
    s = agent.start_states()
    wmc = model.config.world_model
    assert s.deter.shape == (64, wmc.deter) and torch.all(s.deter == 0)
    onehot = s.stoch.reshape(64, wmc.stoch, wmc.classes)
    torch.testing.assert_close(onehot, torch.nn.functional.one_hot(onehot.argmax(-1), wmc.classes).float())
    torch.testing.assert_close(s.stoch[:32], s.stoch[32:])
    # with warm-up: deter comes from the GRU, halves differ (random vs actor actions)
    agent = _agent(model, prompt, vlm, batch_size=64)
    s = agent.start_states()
    assert s.deter.abs().sum() > 0 and not torch.equal(s.deter[:32], s.deter[32:])


def test_rewards_are_trajectory_match(model, prompt, vlm) -> None:
    from genrl_gym.reward import trajectory_match

    agent = _agent(model, prompt, vlm)
    target = target_from_prompt(model, prompt, vlm=vlm, horizon=16)
    torch.testing.assert_close(agent.target_features, target.features)
    torch.testing.assert_close(_agent(model, prompt, "video-only").target_features, target.features)  # a load_vlm spec
    with torch.no_grad():
        states, actions, entropy = agent.imagine(agent.start_states())
        assert states.deter.shape[:2] == (17, 16) and actions.shape == (16, 16, ACTION_DIM) and entropy.shape == (16, 16)
        expected = trajectory_match(model.reward_features(states.stoch), target.features)
        torch.testing.assert_close(agent.rewards(states), expected)


def test_callbacks_stop_and_tensorboard(model, prompt, vlm, tmp_path: Path) -> None:
    agent = _agent(model, prompt, vlm, tensorboard_log=str(tmp_path / "tb"))
    rec = _Record(stop_after=2)
    agent.learn(10, callback=rec, log_interval=1, tb_log_name="run")
    assert rec.steps == 2 and agent.num_timesteps == 2
    events = list((tmp_path / "tb").rglob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    agent.learn(1, reset_num_timesteps=False, log_interval=0)  # continues the counters
    assert agent.num_timesteps == 3 and agent._n_updates == 3


def test_constructor_errors(model, prompt, vlm) -> None:
    with pytest.raises(ValueError, match="store"):
        _agent(model, prompt, vlm, start="offline")
    with pytest.raises(ValueError, match="start"):
        _agent(model, prompt, vlm, start="replay")
    with pytest.raises(ValueError, match="score_kind"):
        _agent(model, prompt, vlm, score_kind="dot")
    with pytest.raises(ValueError, match="even"):
        _agent(model, prompt, vlm, batch_size=7)
    with pytest.raises(ValueError, match="unknown agent preset"):
        GenRLAgent(model, prompt, vlm=vlm, preset="huge")
    with pytest.raises(ValueError, match="horizon"):
        GenRLAgent(model, target_from_prompt(model, prompt, vlm=vlm, horizon=8), preset="tiny")  # target too short


def test_kl_score_kind_runs(model, prompt, vlm) -> None:
    agent = _agent(model, prompt, vlm, score_kind="neg_kl")
    rec = _Record()
    agent.learn(1, callback=rec, log_interval=0)
    assert math.isfinite(rec.values[-1]["train/actor_loss"])


# ------------------------------------------------------------------------------------------------ predict
def test_predict_batches_and_episode_starts(model, prompt, vlm) -> None:
    agent = _agent(model, prompt, vlm)
    agent.learn(1, log_interval=0)
    frames = _frames(3)
    a, state = agent.predict({"image": frames}, deterministic=True)
    assert a.shape == (3, ACTION_DIM) and a.dtype == np.float32 and np.all(np.abs(a) <= 1)
    assert [x.shape for x in state] == [(3, 32), (3, 16), (3, 4, 4), (3, ACTION_DIM)]
    # unbatched observation -> action [A]; matches row 0 of the batch (rows are independent)
    a0, _ = agent.predict({"image": frames[0]}, deterministic=True)
    np.testing.assert_allclose(a0, a[0], rtol=1e-5, atol=1e-6)
    # channel-first frames (VecTransposeImage) are accepted
    a_chw, _ = agent.predict({"image": frames.transpose(0, 3, 1, 2)}, deterministic=True)
    np.testing.assert_allclose(a_chw, a, rtol=1e-5, atol=1e-6)
    # a second step uses the state; episode_start resets only the flagged rows
    nxt = _frames(3, seed=2)
    a_cont, _ = agent.predict({"image": nxt}, state=state, episode_start=np.zeros(3, bool), deterministic=True)
    a_fresh, _ = agent.predict({"image": nxt}, deterministic=True)
    a_mixed, _ = agent.predict({"image": nxt}, state=state, episode_start=np.array([True, False, True]),
                               deterministic=True)
    assert not np.allclose(a_cont, a_fresh)
    np.testing.assert_allclose(a_mixed[[0, 2]], a_fresh[[0, 2]], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a_mixed[1], a_cont[1], rtol=1e-5, atol=1e-6)
    # stochastic actions differ between calls; deterministic ones don't
    s1, _ = agent.predict({"image": frames})
    s2, _ = agent.predict({"image": frames})
    assert not np.allclose(s1, s2)
    with pytest.raises(ValueError, match="64x64x3"):
        agent.predict({"image": np.zeros((32, 32, 3), np.uint8)})
    with pytest.raises(ValueError, match="state"):
        agent.predict({"image": frames[:2]}, state=state)


# ------------------------------------------------------------------------------------------------ evaluation
def test_evaluate_task_return_short_episode(model, prompt, vlm, tmp_path: Path) -> None:
    agent = _agent(model, prompt, vlm)
    out = evaluate_task_return(agent, "walker", "stand", seeds=[0, 1], episode_frames=10, video_path=tmp_path / "ep.gif")
    assert out["seeds"] == [0, 1] and len(out["returns"]) == 2 and out["lengths"] == [5, 5]
    assert all(0.0 <= r <= 10.0 for r in out["returns"])  # per-frame reward in [0, 1], 10 frames
    assert out["mean"] == pytest.approx(np.mean(out["returns"])) and out["normalized"] is None  # not a 1000-frame return
    assert out["random_score"] == 150 and out["expert_score"] == 970
    assert Path(out["video_path"]).stat().st_size > 0
    # deterministic agent + seeded env: the same returns again
    again = evaluate_task_return(agent, "walker", "stand", seeds=[0, 1], episode_frames=10)
    assert again["returns"] == out["returns"]
    # plain callables work too
    rnd = evaluate_task_return(lambda obs: np.zeros(ACTION_DIM, np.float32), "walker", "stand", n_episodes=1,
                               episode_frames=6)
    assert rnd["seeds"] == [0] and rnd["lengths"] == [3]


def test_sb3_evaluate_policy_on_pixel_env(model, prompt, vlm) -> None:
    from genrl_gym.envs import make_pixel_env
    from stable_baselines3.common.evaluation import evaluate_policy

    agent = _agent(model, prompt, vlm)
    env = make_pixel_env("walker", "stand", episode_frames=8, seed=0)
    mean, std = evaluate_policy(agent, env, n_eval_episodes=2, deterministic=True, warn=False)
    assert math.isfinite(mean) and 0.0 <= mean <= 8.0


@pytest.mark.filterwarnings("ignore::tqdm.TqdmExperimentalWarning")
def test_env_callbacks_progress_bar_and_load_with_env(model, prompt, vlm, tmp_path: Path) -> None:
    import gymnasium as gym
    from genrl_gym.envs import make_pixel_env
    from stable_baselines3.common.callbacks import EvalCallback
    from stable_baselines3.common.vec_env import VecEnv

    env = make_pixel_env("walker", "stand", episode_frames=4, seed=0)
    agent = _agent(model, prompt, vlm, env=env)
    assert isinstance(agent.get_env(), VecEnv) and agent.observation_space["image"].shape == (64, 64, 3)  # not transposed
    eval_cb = EvalCallback(make_pixel_env("walker", "stand", episode_frames=4, seed=1), eval_freq=2, n_eval_episodes=1,
                           warn=False, verbose=0)
    agent.learn(2, callback=eval_cb, progress_bar=True, log_interval=0)
    assert eval_cb.n_calls == 2 and math.isfinite(eval_cb.last_mean_reward)  # evaluated once, at update 2
    path = agent.save(tmp_path / "agent.zip")
    loaded = GenRLAgent.load(path, env=env)
    assert loaded.get_env() is not None and loaded.get_env().num_envs == 1
    with pytest.raises(ValueError, match="image"):
        _agent(model, prompt, vlm, env=gym.make("Pendulum-v1"))


def test_sb3_evaluate_policy_on_registered_genrl_env(model, prompt, vlm, tmp_path: Path) -> None:
    """The agent acts on ``gym.make("GenRL/Walker-v0", prompt=..., model=...)`` through SB3's evaluate_policy."""
    import gymnasium as gym
    from genrl_gym.registration import register_envs
    from stable_baselines3.common.evaluation import evaluate_policy

    register_envs()
    ckpt = model.save(tmp_path / "walker.pt")
    agent = GenRLAgent(str(ckpt), prompt, vlm=vlm, preset="tiny", seed=0)
    env = gym.make("GenRL/Walker-v0", prompt=prompt, model=str(ckpt), episode_frames=8)
    try:
        rewards, lengths = evaluate_policy(agent, env, n_eval_episodes=2, deterministic=True, warn=False,
                                           return_episode_rewards=True)
    finally:
        env.close()
    assert lengths == [4, 4] and all(math.isfinite(r) for r in rewards)


def test_imagined_episode_starts_continue_and_restart(model, prompt, vlm):
    """episode_fraction: that part of the batch continues from the last imagined state of the previous update; a restart
    (certain when episode_steps <= horizon) puts it back at the world model's episode-start state."""
    agent = _agent(model, prompt, vlm, overrides={"episode_fraction": 0.5, "episode_steps": 10**9})
    n = agent.config.batch_size // 2
    first = agent.start_states()
    reset = agent._reset_states(n)
    # the first update starts every imagined episode at the reset state (deterministic deter from the zero state)
    torch.testing.assert_close(first.deter[:n], reset.deter)
    agent.train_step()
    carried = agent._episodes
    assert carried.deter.shape[0] == n
    nxt = agent.start_states()  # restart probability horizon / 1e9: continues
    torch.testing.assert_close(nxt.deter[:n], carried.deter)
    assert not torch.allclose(nxt.deter[:n], reset.deter)
    agent.config.episode_steps = agent.config.horizon  # restart probability 1
    torch.testing.assert_close(agent.start_states().deter[:n], reset.deter)


def test_episode_fraction_validated(model, prompt, vlm):
    with pytest.raises(ValueError, match="episode_fraction"):
        _agent(model, prompt, vlm, overrides={"episode_fraction": 1.5})
    with pytest.raises(ValueError, match="reference starts"):  # tiny batch 16: 0.25 leaves 12 (ok), 0.3 leaves 11
        _agent(model, prompt, vlm, overrides={"episode_fraction": 0.3125})


def test_clip_actions_bounds_imagined_actions_straight_through(model, prompt, vlm):
    """clip_actions: imagined actions stay in [-1, 1] (what the env applies) and the actor still gets a gradient."""
    agent = _agent(model, prompt, vlm, overrides={"clip_actions": True, "min_std": 0.9, "max_std": 3.0})
    states, actions, _ = agent.imagine(agent.start_states())
    assert actions.abs().max() <= 1.0
    actions.sum().backward()
    grads = [p.grad for p in agent.policy.actor.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    free = _agent(model, prompt, vlm, overrides={"min_std": 0.9, "max_std": 3.0})
    assert free.imagine(free.start_states())[1].abs().max() > 1.0  # the reference's unclipped samples leave the box


def test_evaluate_task_return_measures_real_genrl_reward(model, prompt, vlm) -> None:
    """reward_prompt: the mean GenRL reward per step the policy earns in the real env, equal to what the
    GenRL/<Domain>-v0 wrapper pays the same actions on the same seed."""
    from genrl_gym.envs import make_pixel_env
    from genrl_gym.wrappers import GenRLReward

    agent = _agent(model, prompt, vlm)
    out = evaluate_task_return(agent, "walker", "stand", seeds=[3], episode_frames=40, reward_prompt=prompt)
    env = GenRLReward(make_pixel_env("walker", "stand", episode_frames=40), model, prompt, align=agent.align)
    obs, _ = env.reset(seed=3)
    state, start, rewards, done = None, True, [], False
    while not done:
        action, state = agent.predict(obs, state=state, episode_start=np.array([start]), deterministic=True)
        obs, r, term, trunc, _ = env.step(action)
        rewards.append(r)
        start, done = False, term or trunc
    assert out["genrl_reward_per_step"] == [pytest.approx(np.mean(rewards))]
    assert np.std(rewards) > 0  # a real signal, not a constant
    assert evaluate_task_return(agent, "walker", "stand", seeds=[3], episode_frames=8)["genrl_reward_per_step"] is None


def test_reality_check_logs_imagined_beside_real_reward(model, prompt, vlm, tmp_path: Path) -> None:
    """RealityCheck: every `every` updates the imagined reward of those updates, the real GenRL reward of the same
    policy from the same prompt and its true return, logged under reality/ and kept in rows."""
    from genrl_gym.agents import RealityCheck

    agent = _agent(model, prompt, vlm)
    check = RealityCheck("stand", every=2, episode_frames=20, seed=5)
    imagined: list[float] = []

    class Seen(BaseCallback):
        def _on_step(self) -> bool:
            imagined.append(float(self.locals["metrics"]["reward_mean"]))
            return True

    agent.learn(5, callback=[Seen(), check])
    assert [r["updates"] for r in check.rows] == [2, 4, 5]  # every 2 updates, and once at the end
    assert check.rows[0]["imagined_reward_per_step"] == pytest.approx(np.mean(imagined[:2]), rel=1e-5)
    assert check.rows[2]["imagined_reward_per_step"] == pytest.approx(imagined[4], rel=1e-5)
    now = evaluate_task_return(agent, "walker", "stand", seeds=[5], episode_frames=20, reward_prompt=prompt)
    last = check.rows[-1]
    assert last["real_reward_per_step"] == pytest.approx(now["genrl_reward_per_step"][0])
    assert last["true_return"] == pytest.approx(now["mean"] * 1000 / 20)
    assert last["real_to_imagined"] == pytest.approx(last["real_reward_per_step"] / last["imagined_reward_per_step"]) \
        or last["imagined_reward_per_step"] <= 0
    with pytest.raises(ValueError, match="every"):
        RealityCheck("stand", every=0)
    loaded = GenRLAgent.load(agent.save(tmp_path / "agent.zip"), model=model)
    with pytest.raises(ValueError, match="pass RealityCheck"):  # a loaded agent has no prompt, only its target
        loaded.learn(1, callback=RealityCheck("stand"))
    loaded.learn(1, callback=RealityCheck("stand", every=1, episode_frames=8, prompt=prompt))


def test_reality_check_keep_best_restores_the_policy_of_the_best_real_reward(model, prompt, vlm) -> None:
    """keep_best: after learn the agent acts as the policy of the check with the highest real GenRL reward per step
    (the prompt's reward), not as the last one."""
    from genrl_gym.agents import RealityCheck

    agent = _agent(model, prompt, vlm)
    check = RealityCheck("stand", every=1, episode_frames=12, seed=5, keep_best=True)
    snapshots: dict[int, dict[str, torch.Tensor]] = {}

    class Snapshot(BaseCallback):  # runs after RealityCheck in the list: the policy each check saw
        def _on_step(self) -> bool:
            snapshots[self.num_timesteps] = {k: v.clone() for k, v in self.model.policy.state_dict().items()}
            return True

    agent.learn(6, callback=[check, Snapshot()])
    reals = [r["real_reward_per_step"] for r in check.rows]
    assert check.best is not None and check.best["real_reward_per_step"] == max(reals)
    best_at = int(check.best["updates"])
    assert best_at != 6  # this seed's best check is not the last one, so the restore is visible
    for key, value in agent.policy.state_dict().items():
        torch.testing.assert_close(value, snapshots[best_at][key])
    now = evaluate_task_return(agent, "walker", "stand", seeds=[5], episode_frames=12, reward_prompt=prompt)
    assert now["genrl_reward_per_step"][0] == pytest.approx(check.best["real_reward_per_step"])
