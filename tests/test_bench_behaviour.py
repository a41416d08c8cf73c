"""benchmarks.bench_behaviour end to end on a tiny model: true return, imagined vs real GenRL reward, summary rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import save_random_clip, save_tiny_model

from benchmarks import bench_behaviour
from genrl_gym.agents import GenRLAgent

pytestmark = pytest.mark.slow


def test_behaviour_benchmark_writes_summary_rows(tmp_path: Path) -> None:
    model = save_tiny_model(tmp_path / "walker.pt")
    save_random_clip(tmp_path / "clips" / "stand.gif", 16)
    save_random_clip(tmp_path / "clips" / "walk.gif", 16, seed=1)
    res = tmp_path / "res"
    res.mkdir()
    (res / "summary.json").write_text(json.dumps([{"domain": "cheetah", "task": "run", "returns": [1.0]},
                                                  {"domain": "walker", "task": "stand", "returns": [-1.0]}]))
    argv = ["--domain", "walker", "--tasks", "stand", "walk", "--seeds", "0", "--eval-seeds", "1", "--seconds", "2",
            "--clock", "cpu", "--model", str(model), "--prompt-dir", str(tmp_path / "clips"), "--preset", "tiny",
            "--results-dir", str(res), "--summary", "summary", "--name", "beh", "--workers", "1",
            "--run-dir", str(tmp_path / "run")]
    results = bench_behaviour.main(argv)
    run = results["tasks"]["stand"]["runs"][0]
    assert run["updates"] > 0 and run["train_cpu_seconds"] >= 2.0
    assert -1.0 <= run["imagined_reward_per_step"] <= 1.0 and -1.0 <= run["real_genrl_reward_per_step"] <= 1.0
    rows = json.loads((res / "summary.json").read_text())
    assert [(r["domain"], r["task"]) for r in rows] == [("cheetah", "run"), ("walker", "stand"), ("walker", "walk")]
    stand = rows[1]
    assert stand["returns"] == [run["mean"]] and stand["seeds"] == [0] and stand["seconds_per_seed"] == 2
    assert len(stand["model_sha256"]) == 64 and stand["prompt"].endswith("stand.gif")
    assert stand["prompt"] == str(tmp_path / "clips" / "stand.gif")  # outside the repository: kept absolute
    assert stand["normalised_mean"] == pytest.approx((run["mean"] - 150) / (970 - 150))
    assert rows[0] == {"domain": "cheetah", "task": "run", "returns": [1.0]}  # other domains' rows are kept
    assert "real GenRL reward/step" in (res / "beh.md").read_text()
    # every finished job is on disk: a rerun (e.g. after a crash) trains nothing and reports the same runs
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["stand_seed0.json", "walk_seed0.json"]
    again = bench_behaviour.main(argv)
    assert again["tasks"]["stand"]["runs"] == results["tasks"]["stand"]["runs"]
    assert run["identity"]["model_sha256"] == stand["model_sha256"] and run["identity"]["seconds"] == 2.0
    # ... but only the same job: another model, prompt or budget in that run folder is refused, not mixed in
    other = save_tiny_model(tmp_path / "other.pt", seed=1)
    for i, value in ((argv.index("--model") + 1, str(other)), (argv.index("--seconds") + 1, "3")):
        changed = list(argv)
        changed[i] = value
        with pytest.raises(SystemExit, match="stand_seed0.json is another job .*delete that file"):
            bench_behaviour.main(changed)
    save_random_clip(tmp_path / "clips" / "stand.gif", 16, seed=5)  # the same file name, another clip
    with pytest.raises(SystemExit, match="prompt_sha256"):
        bench_behaviour.main(argv)


def test_update_summary_takes_the_name_with_or_without_json(tmp_path: Path) -> None:
    row = {"domain": "walker", "task": "stand", "normalised_mean": 0.1}
    bench_behaviour.update_summary("summary", tmp_path, [row])
    bench_behaviour.update_summary("summary.json", tmp_path, [{**row, "task": "walk"}])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]  # not summary.json.json
    rows = json.loads((tmp_path / "summary.json").read_text())
    rows = rows["rows"] if isinstance(rows, dict) else rows
    assert {r["task"] for r in rows} == {"stand", "walk"}


def test_eval_at_gives_the_learning_curve_from_the_same_jobs(tmp_path: Path) -> None:
    model = save_tiny_model(tmp_path / "walker.pt")
    save_random_clip(tmp_path / "clips" / "stand.gif", 16)
    res = tmp_path / "res"
    argv = ["--domain", "walker", "--tasks", "stand", "--seeds", "0", "--eval-seeds", "1", "--seconds", "3",
            "--eval-at", "1", "2", "--clock", "cpu", "--model", str(model), "--prompt-dir", str(tmp_path / "clips"),
            "--preset", "tiny", "--results-dir", str(res), "--summary", "", "--name", "beh", "--workers", "1",
            "--run-dir", str(tmp_path / "run"), "--save-agents"]
    results = bench_behaviour.main(argv)
    run = results["tasks"]["stand"]["runs"][0]
    assert GenRLAgent.load(tmp_path / "run" / "stand_seed0.zip").num_timesteps == run["updates"]  # --save-agents
    assert [c["seconds"] for c in run["checkpoints"]] == [1.0, 2.0]
    updates = [c["updates"] for c in run["checkpoints"]] + [run["updates"]]
    assert 0 < updates[0] < updates[1] < updates[2]  # the same agent, evaluated on its way to the full budget
    # the checkpoints' evaluation time is kept off the training budget: 3 s of training, not 3 s + 2 evaluations
    assert 3.0 <= run["train_cpu_seconds"] < 4.5
    assert set(results["tasks"]["stand"]["by_budget"]) == {"1", "2", "3"}
    assert results["tasks"]["stand"]["by_budget"]["3"]["mean"] == run["mean"]
    assert "| stand | 2 |" in (res / "beh.md").read_text()
    assert "--eval-at 1 2 --workers 1 --name beh --save-agents --summary ''" in (res / "beh.md").read_text()


def test_select_keeps_the_policy_of_the_best_real_genrl_reward(tmp_path: Path) -> None:
    model = save_tiny_model(tmp_path / "walker.pt")
    save_random_clip(tmp_path / "clips" / "stand.gif", 16)
    res = tmp_path / "res"
    argv = ["--domain", "walker", "--tasks", "stand", "--seeds", "0", "--eval-seeds", "1", "--seconds", "2",
            "--select", "20", "1", "--clock", "cpu", "--model", str(model), "--prompt-dir", str(tmp_path / "clips"),
            "--preset", "tiny", "--results-dir", str(res), "--summary", "summary", "--name", "beh", "--workers", "1",
            "--run-dir", str(tmp_path / "run")]
    results = bench_behaviour.main(argv)
    run = results["tasks"]["stand"]["runs"][0]
    checks = run["selected"]["checks"]
    assert [c["updates"] for c in checks][:-1] == [20 * (i + 1) for i in range(len(checks) - 1)]
    assert checks[-1]["updates"] == run["updates"]  # and one check at the end
    assert run["selected"]["best"]["real_reward_per_step"] == max(c["real_reward_per_step"] for c in checks)
    assert run["identity"]["select"] == [20, 1]
    # the policy training ended with is evaluated on the same episodes too (before the best is restored), so that
    # selection and no selection compare side by side; its time is kept off the budget
    last = run["selected"]["last_policy"]
    assert last["updates"] == run["updates"] and len(last["returns"]) == len(run["returns"]) == 1
    if run["selected"]["best"]["updates"] == run["updates"]:
        assert last["returns"] == run["returns"]
    assert results["tasks"]["stand"]["last_policy_normalized_mean"] == last["normalized_mean"]
    assert json.loads((res / "summary.json").read_text())[0]["select"] == {"every_updates": 20, "episodes": 1}
    text = (res / "beh.md").read_text()
    assert "| stand | " in text.split("without selection")[1] and "--select 20 1" in text
