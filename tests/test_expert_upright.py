"""benchmarks.expert_upright: an expert stage's return and torso up-axis per episode."""

from __future__ import annotations

from pathlib import Path

from benchmarks.expert_upright import rollout_upright
from genrl_gym.training.experts import ExpertConfig, make_proprio_env, train_expert


def test_rollout_reports_return_and_a_torso_up_axis_in_range(tmp_path: Path) -> None:
    config = ExpertConfig(total_steps=64, stages=(1.0,), n_envs=2, seed=0, ppo_kwargs={
        "n_steps": 32, "batch_size": 32, "n_epochs": 1, "policy_kwargs": {"net_arch": [16]}})
    stage = train_expert("walker", "stand", tmp_path / "stand", config, progress=False)[-1]
    r = rollout_upright(str(stage), "walker", "stand", seed=0)
    assert set(r) == {"return", "upright_start", "upright_mean", "upright_end"}
    assert 0.0 <= r["return"] <= 1000.0
    for key in ("upright_start", "upright_mean", "upright_end"):
        assert -1.0 <= r[key] <= 1.0
    # the start is the seeded reset's torso, read the same way from a fresh env
    env = make_proprio_env("walker", "stand", seed=0)
    env.reset(seed=0)
    assert r["upright_start"] == float(env.unwrapped.physics.named.data.xmat["torso", "zz"])  # type: ignore[attr-defined]
