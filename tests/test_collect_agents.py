"""benchmarks.collect_agents: a saved GenRLAgent's real episodes land in a store under their own source, and a rerun
resumes instead of collecting again."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

import genrl_gym  # noqa: F401  (render/torch guard, before any env renders)
from benchmarks.collect_agents import agent_source, agent_task, collect_with_agents, main
from genrl_gym.agents import GenRLAgent
from genrl_gym.data import EpisodeStore
from genrl_gym.models import MFWM, preset
from genrl_gym.vlm import load_vlm


def test_agent_episodes_are_collected_tagged_and_resumed(tmp_path: Path) -> None:
    vlm = load_vlm("video-only")
    torch.manual_seed(0)
    model = MFWM(preset("tiny", action_dim=6, embed_dim=vlm.embed_dim), domain="walker", vlm_identity=vlm.identity)
    prompt = np.random.default_rng(0).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)
    agent = GenRLAgent(model, prompt, vlm=vlm, preset="tiny", seed=0)
    path = tmp_path / "bb" / "walk_seed0.zip"
    agent.save(path)
    (tmp_path / "bb" / "walk_seed0.json").write_text(json.dumps({"task": "walk"}))
    assert agent_task(path) == "walk"
    store = EpisodeStore(tmp_path / "data")
    kw = dict(domain="walker", noise=[0.0, 0.5], episodes=1, num_envs=1, episode_frames=20, progress=False)
    rows = collect_with_agents(store, [path], **kw)
    assert [r["episodes_collected"] for r in rows] == [1, 1]
    sources = sorted(i["source"] for i in store.episode_info().values())
    assert sources == sorted([agent_source(path, 0.0), agent_source(path, 0.5)]) == \
        ["agent:bb/walk_seed0:noise0", "agent:bb/walk_seed0:noise0.5"]
    assert {i["task"] for i in store.episode_info().values()} == {"walk"}
    ep = store.load(store.paths()[0])
    assert ep["image"].shape[1:] == (64, 64, 3) and ep["action"].shape[1:] == (6,)
    assert np.all(np.abs(ep["action"]) <= 1.0)
    again = collect_with_agents(store, [path], **kw)  # resume: nothing left to collect
    assert [r["episodes_collected"] for r in again] == [0, 0] and len(store) == 2

    # the command line: one more noise level resumes the store and writes the results with the machine and command
    assert main([str(tmp_path / "data"), str(path), "--noise", "0", "0.25", "--episodes", "1", "--num-envs", "1",
                 "--name", "collect_test", "--results-dir", str(tmp_path / "results")]) == 0
    assert len(store) == 3
    saved = json.loads((tmp_path / "results" / "collect_test.json").read_text())
    assert [r["episodes_collected"] for r in saved["results"]["rows"]] == [0, 1] and saved["machine"]["cores"] >= 1
    assert "agent:bb/walk_seed0:noise0.25" in (tmp_path / "results" / "collect_test.md").read_text()


def test_the_pipeline_recipe_accounts_for_episodes_added_by_other_commands(tmp_path: Path) -> None:
    from genrl_gym.data import collect
    from genrl_gym.training.pipeline import other_sources

    store = EpisodeStore(tmp_path / "data")
    kw = dict(domain="walker", env_kwargs={"episode_frames": 20}, policy="random", store=store, num_envs=1,
              vectorization="sync", progress=False)
    collect(task="stand", num_episodes=1, source="random", seed=0, **kw)
    collect(task="walk", num_episodes=2, source="agent:bb/walk_seed0:noise0", seed=1, **kw)
    assert other_sources(store, {"random"}) == [{"source": "agent:bb/walk_seed0:noise0", "task": "walk", "episodes": 2,
                                                 "added_outside_the_pipeline": True}]
    assert other_sources(store, {"random", "agent:bb/walk_seed0:noise0"}) == []
