"""Task experts for the MFWM data (genrl_gym.training.experts) and the pipeline's expert curriculum."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from genrl_gym.training.experts import ExpertConfig, ExpertPolicy, train_expert
from genrl_gym.training.pipeline import PipelineConfig, run_pipeline


TINY_SAC = {"learning_starts": 32, "train_freq": 2, "gradient_steps": 1, "batch_size": 16, "buffer_size": 1000,
            "policy_kwargs": {"net_arch": [16]}}


def tiny_config(learning_rate: float = 3e-4) -> ExpertConfig:
    return ExpertConfig(total_steps=128, stages=(0.5, 1.0), n_envs=2, seed=0, ppo_kwargs={
        "n_steps": 32, "batch_size": 32, "n_epochs": 1, "learning_rate": learning_rate,
        "policy_kwargs": {"net_arch": [16]}}, sac_kwargs=TINY_SAC)


def tiny_sac_config() -> ExpertConfig:
    return ExpertConfig(total_steps=128, stages=(0.5, 1.0), n_envs=2, seed=0, algo="sac", sac_kwargs=TINY_SAC)


def policy_params(stage: Path) -> list[torch.Tensor]:
    from stable_baselines3 import PPO

    return [p.detach().clone() for p in PPO.load(str(stage), device="cpu").policy.parameters()]


def test_stages_are_written_and_a_finished_expert_is_not_retrained(tmp_path: Path) -> None:
    stages = train_expert("walker", "stand", tmp_path / "stand", tiny_config(), progress=False)
    assert [p.name for p in stages] == ["stage-00000064.zip", "stage-00000128.zip"]
    assert all(p.exists() and p.with_suffix(".vecnorm.json").exists() for p in stages)
    before = [p.stat().st_mtime_ns for p in stages]
    assert train_expert("walker", "stand", tmp_path / "stand", tiny_config(), progress=False) == stages
    assert [p.stat().st_mtime_ns for p in stages] == before
    # a stage acts on raw proprioception (24 walker observations -> 6 actions in [-1, 1])
    action, _ = ExpertPolicy(stages[-1]).predict(np.zeros((3, 24), np.float32), deterministic=True)
    assert action.shape == (3, 6) and np.abs(action).max() <= 1.0


def test_an_interrupted_expert_resumes_from_its_last_stage(tmp_path: Path) -> None:
    full = train_expert("walker", "stand", tmp_path / "full", tiny_config(), progress=False)
    # simulate a crash after the first stage: only stage 1 is on disk, the run is started again
    first = train_expert("walker", "stand", tmp_path / "cut", tiny_config(), progress=False)[0]
    for suffix in (".zip", ".vecnorm.json"):
        (tmp_path / "cut" / full[-1].name).with_suffix(suffix).unlink()
    before = first.stat().st_mtime_ns
    resumed = train_expert("walker", "stand", tmp_path / "cut", tiny_config(), progress=False)
    assert [p.name for p in resumed] == [p.name for p in full] and resumed[-1].exists()
    assert first.stat().st_mtime_ns == before  # the finished stage is kept, not retrained
    from stable_baselines3 import PPO

    assert PPO.load(str(resumed[-1]), device="cpu").num_timesteps == 128  # it continued from 64, not from 0
    stats = json.loads(resumed[-1].with_suffix(".vecnorm.json").read_text())
    assert stats["ret_rms"]["count"] > 1  # reward statistics are saved for the next resume


def test_a_sac_expert_trains_resumes_with_its_replay_buffer_and_acts(tmp_path: Path) -> None:
    from stable_baselines3 import SAC

    stages = train_expert("walker", "run", tmp_path / "run", tiny_sac_config(), progress=False)
    assert [p.name for p in stages] == ["stage-00000064.zip", "stage-00000128.zip"]
    # only the latest replay buffer is kept (a resume needs it; earlier ones are large)
    assert sorted(p.name for p in (tmp_path / "run").glob("*.replay.*")) == ["stage-00000128.replay.npz"]
    from stable_baselines3.sac.policies import SACPolicy

    policy = ExpertPolicy(stages[-1])
    assert policy.algo == "sac" and isinstance(policy.model, SACPolicy)
    # the rebuilt policy acts exactly as SAC's own loader (a trusted file here) would
    obs = np.random.default_rng(0).normal(size=(3, 24)).astype(np.float32)
    trusted = SAC.load(str(stages[-1]), device="cpu")
    np.testing.assert_allclose(policy.model.predict(obs, deterministic=True)[0],
                               trusted.predict(obs, deterministic=True)[0], atol=1e-6)
    action, _ = policy.predict(np.zeros((3, 24), np.float32), deterministic=True)
    assert action.shape == (3, 6) and np.abs(action).max() <= 1.0
    # a crash after stage 1 (a run that only got to its first stage): the resumed run continues from 64 steps with
    # the buffer it had, so the buffer holds all 128 steps (64 per env); a fresh buffer would hold only the last 64
    import dataclasses

    first = train_expert("walker", "run", tmp_path / "cut", dataclasses.replace(tiny_sac_config(), stages=(0.5,)),
                         progress=False)
    assert [p.name for p in first] == ["stage-00000064.zip"]
    resumed = train_expert("walker", "run", tmp_path / "cut", tiny_sac_config(), progress=False)
    assert SAC.load(str(resumed[-1]), device="cpu").num_timesteps == 128
    with np.load(resumed[-1].with_suffix(".replay.npz"), allow_pickle=False) as z:  # plain arrays, no pickle
        assert int(z["pos"]) == 64 and not bool(z["full"])
    assert not (tmp_path / "cut" / "stage-00000064.replay.npz").exists()


def test_an_unknown_algorithm_or_a_warm_start_across_algorithms_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="expert algo must be one of"):
        ExpertConfig(algo="dqn")
    source = train_expert("walker", "stand", tmp_path / "stand", tiny_config(), progress=False)[-1]
    with pytest.raises(ValueError, match="same algorithm"):
        train_expert("walker", "run", tmp_path / "run", tiny_sac_config(), progress=False, init_from=source)
    cfg = PipelineConfig(domain="walker", tasks=("stand", "run"), expert=tiny_config(), warm_start={"run": "stand"},
                         expert_algo={"run": "sac"})
    with pytest.raises(ValueError, match="needs the same algorithm"):
        run_pipeline(tmp_path / "p", cfg, until="experts", progress=False)
    with pytest.raises(ValueError, match="not one of the expert tasks"):
        run_pipeline(tmp_path / "p", PipelineConfig(domain="walker", tasks=("stand",), expert=tiny_config(),
                                                    expert_algo={"run": "sac"}), until="experts", progress=False)
    with pytest.raises(ValueError, match="expert steps for 'stand' must be positive"):
        run_pipeline(tmp_path / "p", PipelineConfig(domain="walker", tasks=("stand",), expert=tiny_config(),
                                                    expert_task_steps={"stand": 0}), until="experts", progress=False)
    with pytest.raises(ValueError, match="handover_episodes must be >= 0"):
        run_pipeline(tmp_path / "p", PipelineConfig(domain="walker", tasks=("stand",), expert=tiny_config(),
                                                    handover_episodes=-1), until="experts", progress=False)


def test_pipeline_experts_use_their_tasks_algorithm_and_budget(tmp_path: Path) -> None:
    cfg = PipelineConfig(domain="walker", tasks=("stand", "run"), expert=tiny_config(), expert_algo={"run": "sac"},
                         expert_task_steps={"run": 64})
    run_pipeline(tmp_path / "p", cfg, until="experts", progress=False)
    stand = json.loads((tmp_path / "p" / "experts" / "stand" / "config.json").read_text())
    run = json.loads((tmp_path / "p" / "experts" / "run" / "config.json").read_text())
    assert (stand["algo"], stand["total_steps"]) == ("ppo", 128) and (run["algo"], run["total_steps"]) == ("sac", 64)
    assert ExpertPolicy(tmp_path / "p" / "experts" / "run" / "stage-00000064.zip").algo == "sac"


def test_warm_start_begins_from_the_source_policy(tmp_path: Path) -> None:
    source = train_expert("walker", "stand", tmp_path / "stand", tiny_config(), progress=False)[-1]
    # learning rate 0: a warm-started expert keeps the source's weights exactly; a scratch one does not have them
    warm = train_expert("walker", "walk", tmp_path / "walk", tiny_config(0.0), progress=False, init_from=source)
    scratch = train_expert("walker", "walk", tmp_path / "walk-scratch", tiny_config(0.0), progress=False)
    src = policy_params(source)
    assert all(torch.equal(a, b) for a, b in zip(src, policy_params(warm[-1])))
    assert not all(torch.equal(a, b) for a, b in zip(src, policy_params(scratch[-1])))
    # stages count the task's own steps, and the warm start is recorded
    assert [p.name for p in warm] == ["stage-00000064.zip", "stage-00000128.zip"]
    assert json.loads((tmp_path / "walk" / "config.json").read_text())["init_from"] == str(source)


def test_warm_start_from_a_missing_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="train that task's expert first"):
        train_expert("walker", "walk", tmp_path / "walk", tiny_config(), progress=False,
                     init_from=tmp_path / "nope.zip")


@pytest.mark.parametrize("warm_start", [{"stand": "walk"}, {"walk": "jump"}, {"walk": "walk"}])
def test_pipeline_refuses_a_curriculum_out_of_order_before_any_work(tmp_path: Path, warm_start: dict) -> None:
    cfg = PipelineConfig(domain="walker", tasks=("stand", "walk"), expert=tiny_config(), warm_start=warm_start)
    with pytest.raises(ValueError, match="warm start"):
        run_pipeline(tmp_path / "run", cfg, until="experts", progress=False)
    assert not (tmp_path / "run" / "experts").exists()


@pytest.mark.slow
def test_pipeline_collects_expert_and_random_data_and_records_the_recipe(tmp_path: Path) -> None:
    cfg = PipelineConfig(domain="walker", tasks=("stand", "walk"), expert=tiny_config(), warm_start={"walk": "stand"},
                         episodes_per_stage=1, random_episodes=1, heldout_episodes=1, episode_frames=40, num_envs=1,
                         vectorization="sync")
    out = run_pipeline(tmp_path / "run", cfg, until="collect", progress=False)
    recipe = json.loads((out / "recipe.json").read_text())
    sources = {s["source"]: s for s in recipe["sources"]}
    assert set(sources) == {"expert:stand:stage-00000064", "expert:stand:stage-00000128",
                            "expert:walk:stage-00000064", "expert:walk:stage-00000128", "random"}
    assert sources["expert:walk:stage-00000128"]["expert_warm_start"] == "stand"
    assert sources["expert:stand:stage-00000064"]["expert_warm_start"] is None
    assert recipe["episodes"] == 5 and recipe["heldout_episodes"] == 2
    walk_cfg = json.loads((out / "experts" / "walk" / "config.json").read_text())
    assert walk_cfg["init_from"].endswith("stand/stage-00000128.zip")


@pytest.mark.slow
def test_pipeline_collects_with_a_sac_experts_mean_action(tmp_path: Path) -> None:
    cfg = PipelineConfig(domain="walker", tasks=("run",), expert=tiny_config(), expert_algo={"run": "sac"},
                         episodes_per_stage=1, random_episodes=1, heldout_episodes=1, episode_frames=40, num_envs=1,
                         vectorization="sync", action_noise=0.0, handover_episodes=1, handover_steps=5,
                         cycle_episodes=1, cycle_random_steps=3, cycle_expert_steps=4, explore_noise=(0.5,),
                         explore_episodes=1)
    out = run_pipeline(tmp_path / "run", cfg, until="collect", progress=False)
    recipe = json.loads((out / "recipe.json").read_text())
    assert all(s["expert_algo"] == "sac" and s["mean_action"] for s in recipe["sources"] if s["source"] != "random")
    from genrl_gym.data import EpisodeStore

    # the handover episode: 5 random steps, then the final expert's mean action
    data = EpisodeStore(out / "data", create=False)
    [name] = [k for k, v in data.episode_info().items() if v["source"] == "handover:run"]
    ep = data.load(data.root / f"{name}.npz")
    final = ExpertPolicy(out / "experts" / "run" / "stage-00000128.zip")
    mean, _ = final.predict(ep["proprio"][:-1], deterministic=True)
    np.testing.assert_allclose(ep["action"][6:], mean[5:], atol=1e-5)
    assert not np.allclose(ep["action"][1:6], mean[:5], atol=1e-2)
    assert {"source": "handover:run", "episodes": 1, "random_steps_first": 5}.items() <= \
        next(s for s in recipe["sources"] if s["source"] == "handover:run").items()

    # the cycle episode: 3 random steps, 4 of the final expert's mean action, again and again
    [name] = [k for k, v in data.episode_info().items() if v["source"] == "cycle:run"]
    ep = data.load(data.root / f"{name}.npz")
    mean, _ = final.predict(ep["proprio"][:-1], deterministic=True)
    is_expert = np.all(np.isclose(ep["action"][1:], mean, atol=1e-5), axis=1)
    np.testing.assert_array_equal(is_expert, np.arange(len(mean)) % 7 >= 3)
    # one exploration episode per expert stage at noise 0.5: actions off the mean action by about that much
    explore = [k for k, v in data.episode_info().items() if v["source"].startswith("explore:run:")]
    assert len(explore) == 2
    for name in explore:
        ep = data.load(data.root / f"{name}.npz")
        stage = data.episode_info()[name]["source"].split(":")[2]
        mean, _ = ExpertPolicy(out / "experts" / "run" / f"{stage}.zip").predict(ep["proprio"][:-1], deterministic=True)
        assert 0.2 < float(np.std(ep["action"][1:] - mean)) < 0.6  # clipped to [-1, 1], so a little below 0.5
    assert {"explore:run:stage-00000064:noise0.5", "explore:run:stage-00000128:noise0.5"} <= \
        {s["source"] for s in recipe["sources"] if s.get("action_noise") == 0.5}

    heldout = EpisodeStore(out / "heldout", create=False)
    ep = heldout.load(heldout.paths()[0])
    expert = ExpertPolicy(out / "experts" / "run" / "stage-00000128.zip")
    mean, _ = expert.predict(ep["proprio"][:-1], deterministic=True)
    np.testing.assert_allclose(ep["action"][1:], mean, atol=1e-5)  # row t+1's action answers row t's observation
    # `genrl collect --deterministic` collects the same way
    from genrl_gym.cli import main

    stage = out / "experts" / "run" / "stage-00000128.zip"
    assert main(["collect", "--domain", "walker", "--task", "run", "--out", str(tmp_path / "cli"), "--episodes", "1",
                 "--episode-frames", "40", "--policy", str(stage), "--deterministic"]) == 0
    cli = EpisodeStore(tmp_path / "cli", create=False)
    ep = cli.load(cli.paths()[0])
    np.testing.assert_allclose(ep["action"][1:], expert.predict(ep["proprio"][:-1], deterministic=True)[0], atol=1e-5)


def test_cli_evaluates_an_expert_stage_on_proprioception(tmp_path: Path) -> None:
    from genrl_gym.cli import main

    stage = train_expert("walker", "stand", tmp_path / "stand", tiny_config(), progress=False)[-1]
    out = tmp_path / "eval"
    assert main(["evaluate", "--agent", str(stage), "--domain", "walker", "--task", "stand", "--episodes", "2",
                 "--episode-frames", "20", "--out", str(out)]) == 0
    ev = json.loads((out / "evaluation.json").read_text())
    assert ev["seeds"] == [0, 1] and ev["lengths"] == [10, 10] and all(np.isfinite(ev["returns"]))
    assert main(["evaluate", "--agent", str(stage), "--domain", "walker", "--task", "stand", "--prompt", "x.gif",
                 "--out", str(out)]) == 2


class _Payload:
    """A pickle that runs code when unpickled (writes a marker file): what an untrusted run folder could hold."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (Path.write_text, (self.marker, "pwned"))


def test_stage_statistics_are_json_read_back_exactly_and_never_unpickled(tmp_path: Path) -> None:
    from genrl_gym.training.experts import _load_stats
    from genrl_gym.utils import CheckpointError

    stage = train_expert("walker", "stand", tmp_path / "stand", tiny_config(), progress=False)[-1]
    stats = json.loads(stage.with_suffix(".vecnorm.json").read_text())
    assert stats["format"] == "genrl_gym.expert_stats" and stats["algo"] == "ppo" and len(stats["obs_rms"]["mean"]) == 24
    loaded = _load_stats(stage)
    assert loaded["obs_rms"].mean.dtype == np.float64 and loaded["obs_rms"].mean.tolist() == stats["obs_rms"]["mean"]
    assert (loaded["clip_obs"], loaded["epsilon"]) == (10.0, 1e-8)  # VecNormalize's defaults
    # an old-format stage (pickled statistics) is refused with what to do, and its pickle is never run
    old = tmp_path / "old"
    old.mkdir()
    (old / stage.name).write_bytes(stage.read_bytes())
    marker = tmp_path / "marker.txt"
    with open((old / stage.name).with_suffix(".vecnorm.pkl"), "wb") as f:
        pickle.dump({"obs_rms": _Payload(marker)}, f)
    for attempt in (lambda: ExpertPolicy(old / stage.name),
                    lambda: train_expert("walker", "stand", old, tiny_config(), progress=False)):
        with pytest.raises(CheckpointError, match=r"old pickle format .*Retrain the expert.*convert_pickled_stats"):
            attempt()
    assert not marker.exists()


def test_trusted_pickled_statistics_convert_to_json(tmp_path: Path) -> None:
    from genrl_gym.training.experts import _load_stats, convert_pickled_stats

    stage = train_expert("walker", "stand", tmp_path / "stand", tiny_config(), progress=False)[-1]
    want = _load_stats(stage)
    json_path = stage.with_suffix(".vecnorm.json")
    with open(stage.with_suffix(".vecnorm.pkl"), "wb") as f:  # what stages of earlier versions held
        pickle.dump({k: want[k] for k in ("obs_rms", "ret_rms", "clip_obs", "epsilon", "algo")}, f)
    json_path.unlink()
    assert convert_pickled_stats(stage) == json_path
    got = _load_stats(stage)
    for key in ("obs_rms", "ret_rms"):
        assert np.array_equal(got[key].mean, want[key].mean) and np.array_equal(got[key].var, want[key].var)
        assert got[key].count == want[key].count
    action, _ = ExpertPolicy(stage).predict(np.ones((2, 24), np.float32), deterministic=True)
    assert action.shape == (2, 6)


def test_expert_stages_are_read_without_unpickling(tmp_path: Path) -> None:
    """SB3 zips hold cloudpickle blobs that run code when unpickled: acting from a stage, resuming from it and warm
    starting from it read none of them (a tampered stage still works and its blobs never run)."""
    import base64
    import pickle
    import zipfile

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').close()",))

    cfg = tiny_config()
    stages = train_expert("walker", "stand", tmp_path / "stand", cfg, progress=False)
    for stage in stages:
        with zipfile.ZipFile(stage) as z:
            entries = {n: z.read(n) for n in z.namelist()}
        data = json.loads(entries["data"])
        for value in data.values():
            if isinstance(value, dict) and ":serialized:" in value:
                value[":serialized:"] = base64.b64encode(pickle.dumps(Evil())).decode()
        entries["data"] = json.dumps(data).encode()
        with zipfile.ZipFile(stage, "w") as z:
            for name, content in entries.items():
                z.writestr(name, content)
    policy = ExpertPolicy(stages[-1])
    action, _ = policy.predict(np.zeros((2, 24), np.float32), deterministic=True)
    assert action.shape == (2, 6)
    for suffix in (".zip", ".vecnorm.json"):  # a run cut after its first stage resumes from the tampered one
        stages[-1].with_suffix(suffix).unlink()
    resumed = train_expert("walker", "stand", tmp_path / "stand", cfg, progress=False)
    train_expert("walker", "walk", tmp_path / "walk", cfg, progress=False, init_from=stages[0])
    assert resumed[-1].exists() and not marker.exists()
    from stable_baselines3 import PPO

    assert PPO.load(str(resumed[-1]), device="cpu").num_timesteps == 128  # the resumed run counted on from 64
