"""Shipping a pipeline run (export) and its quality report, on a tiny pipeline-like run built in a temp folder."""

from __future__ import annotations

import genrl_gym  # noqa: F401  (render guard first)

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from genrl_gym import model_store, prompts
from genrl_gym.cli import main as cli_main
from genrl_gym.data import EpisodeStore, collect
from genrl_gym.vlm.embed import embed_store
from genrl_gym.models import MFWM
from genrl_gym.training.export import export_model, file_sha256
from genrl_gym.training.pipeline import PipelineConfig, write_prompt_clips
from genrl_gym.reward import LatentRewardScorer, env_rewards, posterior_modes, target_horizon
from genrl_gym.training.report import MAX_PNG_BYTES, model_report
from genrl_gym.training.trainer import train_mfwm
from genrl_gym.utils import CheckpointError

TASKS = ("stand", "walk")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pipeline-like run folder: 2 random episodes (51 rows) per task in heldout/, a tiny MFWM trained 4 updates on
    them (mfwm/mfwm.pt + tb/), 16-frame prompt clips, recipe.json and pipeline.json."""
    root = tmp_path_factory.mktemp("run") / "walker-pipeline"
    store = EpisodeStore(root / "heldout")
    for i, task in enumerate(TASKS):
        collect(domain="walker", task=task, env_kwargs={"episode_frames": 100}, policy="random", store=store,
                num_episodes=2, seed=10 + i, progress=False)
    embed_store(store, "video-only", progress=False)
    train_mfwm(store, "tiny", out_dir=root / "mfwm", steps=4, seed=0, log_every=1, video_every=0, progress=False)
    write_prompt_clips(store, TASKS, root / "clips", frames=16)
    (root / "recipe.json").write_text(json.dumps({"domain": "walker", "sources": [{"source": "random", "episodes": 4}],
                                                  "episodes": 4, "frames": store.num_frames}))
    (root / "pipeline.json").write_text(json.dumps(asdict(PipelineConfig(tasks=TASKS, preset="tiny")), default=str))
    return root


def test_export_ships_fp16_model_prompts_and_summary(run: Path, tmp_path: Path) -> None:
    dest = tmp_path / "walker"
    path = export_model(run, "walker", dest)
    assert path == dest / "model.pt"
    model = MFWM.load(path, expect_domain="walker")
    original = MFWM.load(run / "mfwm" / "mfwm.pt")
    for k, v in original.state_dict().items():  # fp16 round trip of the weights
        assert torch.allclose(model.state_dict()[k], v, rtol=1e-3, atol=1e-3), k
    payload = torch.load(path, weights_only=True)
    assert payload["dtype"] == "float16"
    assert all(v.dtype != torch.float32 for v in payload["state_dict"].values())
    fp32 = export_model(run, "walker", tmp_path / "fp32", half=False)
    assert path.stat().st_size < 0.6 * fp32.stat().st_size
    # metadata: recipe, VLM identity, render settings, clip sources
    assert model.metadata["recipe"]["episodes"] == 4
    assert model.metadata["prompts"]["stand"]["file"] == "prompts/stand.gif"
    assert model.vlm_identity is not None and model.render_settings["image_size"] == 64
    for task in TASKS:
        assert (dest / "prompts" / f"{task}.gif").read_bytes() == (run / "clips" / f"{task}.gif").read_bytes()
    clips = json.loads((dest / "prompts" / "clips.json").read_text())
    assert set(clips) == set(TASKS) and {"episode", "start", "mean_task_reward_per_step"} <= set(clips["walk"])
    summary = json.loads((dest / "model.json").read_text())
    assert summary["sha256"] == file_sha256(path) and summary["size_bytes"] == path.stat().st_size
    assert summary["domain"] == "walker" and summary["preset"] == "tiny" and summary["updates"] == 4
    assert summary["frames"] == 4 * 51 and summary["weights_dtype"] == "float16"
    assert summary["vlm"]["has_language"] is False and "genrl pipeline" in summary["vlm"]["note"]
    assert summary["render_settings"] == model.render_settings and summary["recipe"]["sources"]
    # idempotent: a second export writes the same bytes
    before = {p.name: p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    export_model(run, "walker", dest)
    after = {p.name: p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    assert before == after


def test_exported_folder_is_what_names_resolve_to(run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pretrained = tmp_path / "pretrained"
    export_model(run, "walker", pretrained / "walker")
    monkeypatch.setattr(model_store, "PRETRAINED_DIR", pretrained)
    monkeypatch.setenv("GENRL_HOME", str(tmp_path / "empty-home"))
    model_store.clear_model_cache()
    path, source = model_store.resolve_model_path("walker")
    assert (path, source) == ((pretrained / "walker" / "model.pt").resolve(), "pretrained")
    assert model_store.resolve_model("walker", domain="walker").domain == "walker"
    assert prompts.example("walker", "stand") == pretrained / "walker" / "prompts" / "stand.gif"
    model_store.clear_model_cache()


def test_a_models_recorded_reward_alignment_is_the_default_of_envs_agents_and_reports(run: Path, tmp_path: Path) -> None:
    from genrl_gym.agents import GenRLAgent
    from genrl_gym.envs import make_pixel_env
    from genrl_gym.wrappers import GenRLReward

    plain = MFWM.load(export_model(run, "walker", tmp_path / "plain"))
    assert plain.reward_align == "sequence"  # nothing recorded: the reference's alignment
    dest = tmp_path / "phase"
    model = MFWM.load(export_model(run, "walker", dest, align="phase"))
    assert model.reward_align == "phase" and json.loads((dest / "model.json").read_text())["align"] == "phase"
    clip = dest / "prompts" / "walk.gif"
    env = GenRLReward(make_pixel_env("walker", "walk"), model, clip)
    assert env.scorer.align == "phase" and env.target.features.shape[0] == target_horizon("phase") + 1
    env.close()
    explicit = GenRLReward(make_pixel_env("walker", "walk"), model, clip, align="sequence")
    assert explicit.scorer.align == "sequence" and explicit.target.features.shape[0] == 17
    explicit.close()
    agent = GenRLAgent(model, clip, preset="tiny", seed=0)
    assert agent.align == "phase" and agent.policy.target_features.shape[0] == target_horizon("phase") + 1
    disc = model_report(dest, run / "heldout", tmp_path / "report", run_dir=run, random_episodes=0)["discrimination"]
    assert disc["align"] == "phase" and disc["target_steps"] == 49
    text = (tmp_path / "report" / "REPORT.md").read_text()
    assert "genrl export --run <pipeline run> --domain walker --align phase`" in text  # how to reproduce it
    with pytest.raises(ValueError, match="align='dtw'"):
        export_model(run, "walker", tmp_path / "bad", align="dtw")


def test_the_old_reward_align_name_is_still_read(run: Path, tmp_path: Path) -> None:
    """Models and calls from before ``align`` was the one name of the setting still work."""
    import shutil

    with pytest.warns(DeprecationWarning, match="use align"):
        path = export_model(run, "walker", tmp_path / "new", reward_align="phase")
    model = MFWM.load(path)
    assert model.reward_align == model.metadata["align"] == "phase" and "reward_align" not in model.metadata
    with pytest.raises(ValueError, match="pass align only"):
        export_model(run, "walker", tmp_path / "both", align="phase", reward_align="phase")
    # a run whose model.pt was written before the rename records metadata["reward_align"]
    old_run = tmp_path / "old-run"
    shutil.copytree(run, old_run)
    old = MFWM.load(old_run / "mfwm" / "mfwm.pt")
    old.metadata = {k: v for k, v in old.metadata.items() if k != "align"} | {"reward_align": "phase"}
    old.save(old_run / "mfwm" / "mfwm.pt")
    assert MFWM.load(old_run / "mfwm" / "mfwm.pt").reward_align == "phase"
    renamed = MFWM.load(export_model(old_run, "walker", tmp_path / "renamed"))  # keeps the run's, under the new name
    assert renamed.metadata["align"] == "phase" and "reward_align" not in renamed.metadata
    assert json.loads((tmp_path / "renamed" / "model.json").read_text())["align"] == "phase"


def test_export_refuses_oversized_model_without_touching_dest(run: Path, tmp_path: Path) -> None:
    dest = tmp_path / "walker"
    with pytest.raises(CheckpointError, match="over the 0.001 MB budget"):
        export_model(run, "walker", dest, max_mb=0.001)
    assert not (dest / "model.pt").exists() and not list(dest.glob(".model.pt*"))


@pytest.mark.parametrize("align", ["sequence", "phase"])
def test_env_rewards_equal_the_envs_scorer(run: Path, align: str) -> None:
    """The report's vectorised per-episode reward is the step-by-step LatentRewardScorer reward (what the envs return)."""
    model = MFWM.load(run / "mfwm" / "mfwm.pt").eval()
    store = EpisodeStore(run / "heldout", create=False)
    ep = store.load(store.paths()[0])
    target = prompts.target_from_prompt(model, run / "clips" / "walk.gif", horizon=target_horizon(align))
    scorer = LatentRewardScorer(model, target.features, 1, align=align)
    theirs, seen = [], []
    for t in range(len(ep["image"])):
        theirs.append(scorer.observe(ep["action"][t:t + 1], ep["image"][t:t + 1], [t == 0])[0])
        seen.append(scorer.window[-1, 0].clone())  # the feature the scorer filtered for frame t
    ours = env_rewards(torch.stack(seen), target.features, align=align)
    assert len(ours) == 51 and ours[0] == 0.0
    np.testing.assert_allclose(ours, np.asarray(theirs, dtype=np.float64), atol=1e-6)
    assert np.std(ours[1:]) > 0  # not a constant: the test can fail
    # batched posterior modes = the scorer's one-frame modes; a 4-update model has near-uniform logits, so a mode may
    # flip on a 1e-7 difference between batch sizes: require (almost) all frames to agree
    _, feats = posterior_modes(model, ep["image"])
    same = (feats - torch.stack(seen)).abs().amax(-1) < 1e-5
    assert same.float().mean() >= 0.9, f"{int((~same).sum())} of {len(same)} frames differ"


def test_report_writes_files_and_matrix(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = model_report(run, None, out, random_episodes=1)
    for name in ("REPORT.md", "report.json", "curves.png", "reconstructions.png", "prompts.png", "discrimination.png"):
        assert (out / name).is_file(), name
    for png in out.glob("*.png"):
        assert png.stat().st_size < MAX_PNG_BYTES, png
    d = result["discrimination"]
    m = np.array(d["matrix"])
    assert m.shape == (2, 2) and np.isfinite(m).all() and np.isfinite(np.array(d["matrix_all_rows"])).all()
    assert d["tasks"] == list(TASKS) and set(d["row_check"]) == set(TASKS)
    assert all(d["excluded_rows"][t] > 0 for t in TASKS)  # each clip's own window left out of its diagonal entry
    assert len(d["episode_means"]["stand"]["walk"]) == 2
    assert json.loads((out / "report.json").read_text())["discrimination"]["matrix"] == d["matrix"]
    text = (out / "REPORT.md").read_text()
    assert "Prompt discrimination" in text and "![training curves](curves.png)" in text and "no language" in text
    assert result["model"]["updates"] == 4 and set(result["reconstruction"]) == set(TASKS)
    # the random-action column: every target scored on one random episode; checked against each diagonal entry
    assert d["random_episodes"] == 1 and set(d["random_column"]) == set(TASKS)
    assert all(np.isfinite(v) for v in d["random_column"].values())
    assert d["beats_random"] == {t: m[i, i] > d["random_column"][t] for i, t in enumerate(TASKS)}
    assert "random episodes" in text and "diagonal > random?" in text


def test_one_task_report_says_the_random_column_is_the_check(run: Path, tmp_path: Path) -> None:
    result = model_report(run, None, tmp_path / "one", tasks=["stand"], random_episodes=1)
    assert result["discrimination"]["tasks"] == ["stand"]
    text = (tmp_path / "one" / "REPORT.md").read_text()
    assert "no pair of tasks" in text and "n/a (one task)" in text


def test_cli_export_and_report(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "walker"
    assert cli_main(["export", "--run", str(run), "--domain", "walker", "--dest", str(dest)]) == 0
    assert cli_main(["report", "--run", str(run), "--out", str(dest), "--model", str(dest), "--tasks", "stand", "walk",
                     "--random-episodes", "0"]) == 0
    printed = capsys.readouterr().out
    assert "exported" in printed and "discrimination rows passing" in printed
    report = json.loads((dest / "report.json").read_text())
    assert report["model"]["model_sha256"] == file_sha256(dest / "model.pt")  # the shipped file was evaluated
    assert (dest / "REPORT.md").is_file() and (dest / "model.pt").is_file()


def test_clear_errors_for_missing_or_corrupt_runs(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export_model(tmp_path / "nope", "walker", tmp_path / "d")
    assert cli_main(["export", "--run", str(tmp_path / "nope"), "--domain", "walker", "--dest", str(tmp_path / "d")]) == 2
    assert "does not exist" in capsys.readouterr().err
    half = tmp_path / "half"
    (half / "mfwm").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="'train' stage has not finished"):
        export_model(half, "walker", tmp_path / "d")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        model_report(tmp_path / "nope", None, tmp_path / "r")
    # a run whose clips stage did not run
    (half / "mfwm" / "mfwm.pt").write_bytes((run / "mfwm" / "mfwm.pt").read_bytes())
    (half / "recipe.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="--until clips"):
        export_model(half, "walker", tmp_path / "d")
    # corrupt clips.json, then a truncated checkpoint, then the wrong domain
    (half / "clips").mkdir()
    (half / "clips" / "clips.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt JSON"):
        export_model(half, "walker", tmp_path / "d")
    (half / "clips" / "clips.json").write_text((run / "clips" / "clips.json").read_text())
    for t in TASKS:
        (half / "clips" / f"{t}.gif").write_bytes((run / "clips" / f"{t}.gif").read_bytes())
    data = (run / "mfwm" / "mfwm.pt").read_bytes()
    (half / "mfwm" / "mfwm.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        export_model(half, "walker", tmp_path / "d")
    (half / "mfwm" / "mfwm.pt").write_bytes(data)
    with pytest.raises(CheckpointError, match="domain 'walker'.*'cheetah'"):
        export_model(half, "cheetah", tmp_path / "d")
    assert not (tmp_path / "d" / "model.pt").exists()


def test_reproduce_command_parses_back_to_the_pipeline_config() -> None:
    import shlex
    from dataclasses import asdict

    from genrl_gym._argparse_dataclass import dataclass_from_args
    from genrl_gym.cli import build_parser
    from genrl_gym.training.export import _reproduce_command
    from genrl_gym.training.experts import ExpertConfig
    from genrl_gym.training.pipeline import PipelineConfig

    cfg = PipelineConfig(domain="walker", preset="cpu", mfwm_steps=12000, expert=ExpertConfig(total_steps=400000),
                         warm_start={"walk": "stand"}, expert_algo={"run": "sac"}, random_episodes=24,
                         expert_task_steps={"run": 1_000_000},
                         heldout_episodes=10, clip_reward_tolerance=0.05, handover_episodes=4, handover_steps=30,
                         explore_noise=(0.6, 1.0), explore_episodes=2, cycle_episodes=5, cycle_random_steps=30,
                         cycle_expert_steps=70, mfwm_init="genrl_gym/pretrained/walker/model.pt")
    command = _reproduce_command(json.loads(json.dumps(asdict(cfg))), "walker")
    args = build_parser().parse_args(shlex.split(command)[1:])
    assert (args.domain, args.preset, args.mfwm_steps, vars(args)["expert.total_steps"]) == ("walker", "cpu", 12000, 400000)
    assert dict(args.warm_start) == {"walk": "stand"} and args.random_episodes == 24
    assert dict(args.expert_algo) == {"run": "sac"} and dict(args.expert_task_steps) == {"run": 1_000_000}
    assert args.heldout_episodes == 10 and args.clip_reward_tolerance == 0.05
    assert (args.handover_episodes, args.handover_steps) == (4, 30)
    assert tuple(args.explore_noise) == (0.6, 1.0) and args.explore_episodes == 2
    assert (args.cycle_episodes, args.cycle_random_steps, args.cycle_expert_steps) == (5, 30, 70)
    assert args.mfwm_init == "genrl_gym/pretrained/walker/model.pt"
    assert dataclass_from_args(PipelineConfig, args) == cfg  # every field, as the pipeline command builds it


def test_a_continued_model_records_its_init_and_counts_both_runs_updates(run: Path, tmp_path: Path) -> None:
    import shutil

    from genrl_gym.training.pipeline import record_mfwm_init

    first = export_model(run, "walker", tmp_path / "first")  # 4 updates
    run2 = tmp_path / "walker-continued"
    for name in ("heldout", "clips"):
        shutil.copytree(run / name, run2 / name)
    for name in ("recipe.json", "pipeline.json"):
        shutil.copy(run / name, run2 / name)
    with pytest.raises(FileNotFoundError, match="mfwm_init"):
        record_mfwm_init(run2, tmp_path / "missing.pt")
    assert record_mfwm_init(run2, first) == first
    recorded = json.loads((run2 / "mfwm_init.json").read_text())
    assert recorded["sha256"] == file_sha256(first) and recorded["updates"] == 4
    init = MFWM.load(first)
    continued = train_mfwm(EpisodeStore(run2 / "heldout", create=False), "tiny", out_dir=run2 / "mfwm", steps=3, seed=1,
                           video_every=0, progress=False, init=first)
    fresh = MFWM(continued.config)
    key = next(k for k, v in init.state_dict().items() if v.dtype.is_floating_point and v.numel() > 100)
    # 3 small updates from the init's weights stay near them; a fresh model is far away
    assert (continued.state_dict()[key] - init.state_dict()[key]).abs().mean() < \
        0.5 * (fresh.state_dict()[key] - init.state_dict()[key]).abs().mean()
    summary = json.loads((export_model(run2, "walker", tmp_path / "second").parent / "model.json").read_text())
    assert summary["updates"] == 7
    assert summary["init"] == {"sha256": file_sha256(first), "updates": 4, "exported_from": "walker-pipeline",
                               "this_run_updates": 3}
    # a resumed run must continue the same init
    other = export_model(run2, "walker", tmp_path / "other")
    with pytest.raises(CheckpointError, match="continues"):
        record_mfwm_init(run2, other)


def test_the_reports_vlm_line_says_whether_text_is_grounded(run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    """A video-only model's report says text is refused until ``genrl ground`` fits a grounding; grounding it rewrites
    the note of model.json, report.json and REPORT.md's VLM line, and a later report keeps it."""
    from genrl_gym.training.grounding import ground_model
    from genrl_gym.vlm import text_encoder
    from tests.helpers import BagOfWords

    monkeypatch.setattr(text_encoder, "_ENCODER", BagOfWords())
    dest = tmp_path / "model"
    export_model(run, "walker", dest)
    model_report(dest, run / "heldout", dest, random_episodes=0)

    def notes() -> list[str]:
        line = next(li for li in (dest / "REPORT.md").read_text().splitlines() if li.startswith("- VLM: "))
        return [json.loads((dest / "model.json").read_text())["vlm"]["note"],
                json.loads((dest / "report.json").read_text())["model"]["vlm"]["note"], line]

    before = notes()
    assert all("text prompts are refused" in n and "genrl ground" in n for n in before)
    ground_model(dest, seeds=2, horizon=7)
    after = notes()
    assert all("go through its text grounding" in n and "(stand, walk)" in n for n in after)
    assert after[2].startswith(before[2][:before[2].index("). ") + 3]) and after[2].endswith(after[1] + ".")
    model_store.clear_model_cache()
    model_report(dest, run / "heldout", dest, random_episodes=0)  # a later report finds the grounding beside the model
    assert notes() == after
    # a broken report.json does not stop the grounding or model.json: a warning says how to rewrite it
    (dest / "report.json").write_text("{not json")
    (dest / "model.json").write_text(json.dumps({**json.loads((dest / "model.json").read_text()), "text_grounding": None}))
    with caplog.at_level("WARNING", logger="genrl_gym.training.grounding"):
        ground_model(dest, seeds=2, horizon=7)
    assert json.loads((dest / "model.json").read_text())["text_grounding"] is not None
    assert "report.json is not valid JSON" in caplog.text and "genrl report" in caplog.text
    assert (dest / "report.json").read_text() == "{not json"
