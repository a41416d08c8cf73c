"""benchmarks.reward_quality on a tiny model: replayed true rewards, correlations, resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import save_random_clip, save_tiny_model

from benchmarks import reward_quality


def test_replayed_true_rewards_match_the_recording() -> None:
    """The other tasks' rewards come from replaying the actions: replaying the recorded task itself gives back its
    rewards exactly (same seed, same start state, same physics)."""
    _, act = reward_quality.load_policy("random", "walker")
    ep = reward_quality.record_episode("walker", ["stand", "stand", "walk"], act, 0.3, seed=4, episode_frames=40,
                                       render={})
    assert ep["image"].shape == (21, 64, 64, 3) and ep["action"].shape == (20, 6) and ep["true"].shape == (3, 21)
    np.testing.assert_array_equal(ep["true"][0], ep["true"][1])
    assert ep["true"][0, 0] == 0.0 and ep["true"][0, 1:].sum() > 0
    assert not np.array_equal(ep["true"][0], ep["true"][2])  # walk pays for speed too


def test_correlations() -> None:
    rng = np.random.default_rng(0)
    true = [np.r_[0.0, rng.uniform(0, 2, 50) + k] for k in range(5)]
    c = reward_quality.correlations([2 * t + 1 for t in true], true)
    assert c["episode_spearman"] == pytest.approx(1.0) and c["step_pearson"] == pytest.approx(1.0)
    c = reward_quality.correlations([-t for t in true], true)
    assert c["episode_spearman"] == pytest.approx(-1.0) and c["episodes"] == 5 and c["steps"] == 250


def test_baseline_study_removes_what_the_goal_reward_shares_with_a_baseline() -> None:
    """A walk reward that is the true walk reward plus the stand reward: subtracting 1 x stand recovers it exactly."""
    rng = np.random.default_rng(1)
    true = [np.stack([np.r_[0.0, rng.uniform(0, 1, 30) + 0.2 * k] for _ in range(2)]) for k in range(6)]  # [stand, walk]
    stand = [np.r_[0.0, rng.uniform(0, 3, 30)] for _ in range(6)]
    genrl = {"stand": stand, "walk": [t[1] + s for t, s in zip(true, stand)]}
    results: dict = {}
    rows = reward_quality.baseline_study(genrl, true, ["stand", "walk"], [0.5, 1.0], results)
    plain, exact = results["baselines"]["walk - 0 x stand"], results["baselines"]["walk - 1 x stand"]
    assert exact["step_pearson"] == pytest.approx(1.0) and exact["episode_spearman"] == pytest.approx(1.0)
    assert plain["step_pearson"] < 0.6
    assert results["baselines"]["walk - 1 x mean of the others"] == exact  # one other task: the mean is that task
    assert "| walk | stand | " in "\n".join(rows) and "lambda 0.5" in rows[2]


@pytest.mark.slow
def test_reward_quality_benchmark_end_to_end(tmp_path: Path) -> None:
    model = save_tiny_model(tmp_path / "walker.pt")
    for i, task in enumerate(("stand", "walk")):
        save_random_clip(tmp_path / "clips" / f"{task}.gif", 16, seed=i)
    argv = ["--domain", "walker", "--tasks", "stand", "walk", "--policies", "random", "--noise", "0", "0.5",
            "--seeds", "0", "1", "--episode-frames", "40", "--model", str(model), "--prompt-dir",
            str(tmp_path / "clips"), "--out", str(tmp_path / "eps"), "--results-dir", str(tmp_path / "res"),
            "--name", "rq"]
    res = reward_quality.main([*argv, "--study"])
    assert len(res["episodes"]) == 4 and len(list((tmp_path / "eps").glob("*.npz"))) == 4
    for task in ("stand", "walk"):
        c = res["prompts"][task]
        assert c["episodes"] == 4 and c["steps"] == 80 and -1 <= c["episode_spearman"] <= 1
    stored = json.loads((tmp_path / "res" / "rq.json").read_text())["results"]
    assert stored["prompts"] == res["prompts"]
    default = stored["study"][f"{res['align']}/{res['score_kind']}"]["stand"]  # the envs' reward, scored again
    assert default["episode_spearman"] == pytest.approx(res["prompts"]["stand"]["episode_spearman"])
    assert default["step_pearson"] == pytest.approx(res["prompts"]["stand"]["step_pearson"])
    assert len(stored["study"]) == 3 * 6
    again = reward_quality.main(argv)  # resumes: the recorded episodes are read back, not recorded again
    assert again["prompts"] == res["prompts"]
