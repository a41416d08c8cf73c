"""The main job (genrl_gym.demo.run_demo) end to end with tiny budgets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genrl_gym import model_store
from genrl_gym.demo import DemoConfig, run_demo


@pytest.mark.slow
@pytest.mark.parametrize("domain,task,shipped", [("walker", "stand", True), ("stickman", "stand", False)])
def test_demo_writes_a_complete_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, domain: str, task: str,
                                       shipped: bool) -> None:
    if not shipped:  # a package version that ships no model of the domain: the demo must build a tiny one
        monkeypatch.setattr(model_store, "PRETRAINED_DIR", tmp_path / "no_pretrained")
        monkeypatch.setenv("GENRL_HOME", str(tmp_path / "empty-home"))
        model_store.clear_model_cache()
    out = tmp_path / "demo"
    cfg = DemoConfig(domain=domain, task=task, out=str(out), agent_seconds=3, sb3_seconds=3, seeds=(0, 1),
                     episode_frames=40, tiny_episodes=2, tiny_episode_frames=80, tiny_steps=5)  # the default agent
    # preset, as `make demo` runs it: its imagined trajectories need another target length than the envs' reward
    lines: list[str] = []
    results = run_demo(cfg, log=lines.append)
    # Said which prompt and why; without a shipped model, said loudly that a tiny one was built.
    prompt_line = next(line for line in lines if line.startswith("prompt:"))
    assert "video-only" in prompt_line
    if shipped:
        # the shipped model has a text grounding of the task: the demo prompts with the task name as text
        assert results["model_source"] == "resolved" and prompt_line.startswith(f"prompt: {task} (text:")
        assert "text grounding" in prompt_line and results["prompt"] == task
        assert not any("TINY" in line for line in lines)
    else:
        assert results["model_source"] == "built" and any("TINY" in line for line in lines)
    for name in ("REPORT.md", "results.json", "config.json", "learning_curves.png", "imagined_prompt.gif",
                 "rollout_genrl_agent.gif", "rollout_sac.gif", "genrl_agent.zip", "sac_genrl_reward.zip"):
        assert (out / name).exists(), name
    saved = json.loads((out / "results.json").read_text())
    assert saved["evaluation"].keys() == results["evaluation"].keys() == {
        "GenRLAgent (data-free)", "SAC on GenRL reward", "random"}
    for ev in saved["evaluation"].values():
        assert ev["seeds"] == [0, 1] and len(ev["returns"]) == 2
    assert saved["agent_updates"] > 0 and saved["sac_env_steps"] > 0
    report = (out / "REPORT.md").read_text()
    assert "| random |" in report and ("TINY model" in report) != shipped
