"""benchmarks.diag_disagreement: the ensemble is uncertain away from its data, and the diagnostic's pieces run on a
tiny world model and agent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

import genrl_gym  # noqa: F401  (render/torch guard, before any env renders)
from benchmarks.diag_disagreement import (LatentEnsemble, data_transitions, episode_disagreement, fit_ensemble,
                                         imagination_disagreement)
from benchmarks.diag_exploitation import record_episode, window_imaginations
from genrl_gym.agents import GenRLAgent
from genrl_gym.data import EpisodeStore
from genrl_gym.envs import make_pixel_env
from genrl_gym.models import MFWM, preset
from genrl_gym.vlm import load_vlm


def test_ensemble_learns_its_data_and_disagrees_away_from_it() -> None:
    g = torch.Generator().manual_seed(0)
    stoch, classes, dim = 3, 4, 6
    centres = torch.randn(16, dim, generator=g)  # the data: 16 clusters, each with its own random next-state classes
    labels = torch.randint(0, classes, (16, stoch), generator=g)
    which = torch.randint(0, 16, (4000,), generator=g)
    x = centres[which] + 0.05 * torch.randn(4000, dim, generator=g)
    y = torch.nn.functional.one_hot(labels[which], classes).float().flatten(1)
    ens, fit = fit_ensemble(x, y, stoch, classes, members=5, units=64, steps=600, batch=128)
    assert isinstance(ens, LatentEnsemble)
    assert fit["val_cross_entropy"] < 0.2 * float(np.log(classes) * stoch)  # learned the map: far below a uniform guess
    away = 4.0 * torch.randn(1000, dim, generator=g)  # inputs between and beyond the clusters
    assert ens.disagreement(away).mean() > 5 * fit["u_mean"]
    assert ens.disagreement(x[:500]).mean() < 2 * fit["u_mean"]


def test_transitions_and_imagination_disagreement_on_a_tiny_model(tmp_path: Path) -> None:
    vlm = load_vlm("video-only")
    torch.manual_seed(0)
    model = MFWM(preset("tiny", action_dim=6, embed_dim=vlm.embed_dim), domain="walker", vlm_identity=vlm.identity)
    store = EpisodeStore(tmp_path / "store")
    rng = np.random.default_rng(0)
    n = 20
    for _ in range(2):
        store.save({"image": rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8),
                    "action": rng.uniform(-1, 1, (n, 6)).astype(np.float32),
                    "reward": np.zeros(n, np.float32), "task_reward": np.zeros(n, np.float32),
                    "is_first": np.arange(n) == 0, "is_last": np.arange(n) == n - 1, "is_terminal": np.zeros(n, bool)})
    x, y = data_transitions(model, store, batches=2, batch_size=2, seq_len=8)
    c = model.config.world_model
    feat = c.stoch * c.classes + c.deter
    assert x.shape == (2 * 2 * 7, feat + 6) and y.shape == (x.shape[0], c.stoch * c.classes)
    assert torch.allclose(y.unflatten(-1, (c.stoch, c.classes)).sum(-1), torch.ones(x.shape[0], c.stoch))
    ens, fit = fit_ensemble(x, y, c.stoch, c.classes, members=3, units=16, steps=20, batch=8)
    prompt = rng.integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)
    agent = GenRLAgent(model, prompt, vlm=vlm, preset="tiny", seed=0)
    out = imagination_disagreement(agent, ens, fit["u_mean"])
    assert set(out) == {"actor", "random"}
    assert len(out["actor"]) == len(out["random"]) == agent.config.horizon
    assert all(np.isfinite(v) and v > 0 for v in out["actor"] + out["random"])

    # the real-episode windows shared with diag_exploitation: open loop replays the recorded actions
    env = make_pixel_env("walker", "stand")
    try:
        post, act, img, true = record_episode(agent, env, steps=12, seed=0)
        assert post.deter.shape[:2] == (1, 13) and act.shape == (1, 13, 6) and img.shape[:2] == (1, 13)
        assert len(true) == 12 and not act[0, 0].any()
        windows = list(window_imaginations(agent, post, act, steps=12, every=4, horizon=3))
    finally:
        env.close()
    assert [k for k, _, _ in windows] == [4, 8]
    for k, (open_states, open_actions), (closed_states, closed_actions) in windows:
        assert torch.equal(open_actions[:, 0], act[0, k + 1:k + 4])
        assert open_states.deter.shape[:2] == closed_states.deter.shape[:2] == (4, 1)
        assert closed_actions.abs().max() <= 1
    ep = episode_disagreement(agent, ens, fit["u_mean"], "stand", steps=12, every=4, horizon=3)
    assert set(ep) == {"real", "open_loop", "closed_loop"} and all(np.isfinite(v) and v > 0 for v in ep.values())
