"""MFWM trainer on a real (tiny) walker store: outputs, logging, exact resume, stages, errors."""

from __future__ import annotations

import genrl_gym  # noqa: F401  (render guard first)

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from genrl_gym.data import EpisodeStore, SequenceSampler, collect
from genrl_gym.vlm.embed import embed_store
from genrl_gym.models import MFWM, preset
from genrl_gym.training import Trainer, train_mfwm
from genrl_gym.prompts import read_video, write_video
from genrl_gym.utils import CheckpointError, PromptError



@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> EpisodeStore:
    """Three short random walker episodes (41 rows), embedded by the offline default VLM (512-d)."""
    s = EpisodeStore(Path(tmp_path_factory.mktemp("walker")))
    collect(domain="walker", task="walk", env_kwargs={"episode_frames": 80}, policy="random", store=s, num_episodes=3,
            seed=1, progress=False)
    embed_store(s, "video-only", progress=False)
    return s


@pytest.fixture(scope="module")
def batches(store: EpisodeStore) -> list[dict[str, np.ndarray]]:
    sampler = SequenceSampler(store, 4, 16, seed=0, with_embeddings=True)
    return [next(sampler) for _ in range(4)]


def model_for(store: EpisodeStore, seed: int = 0) -> MFWM:
    torch.manual_seed(seed)
    meta = store.metadata
    return MFWM(preset("tiny", embed_dim=meta["vlm"]["embed_dim"], action_dim=meta["action_dim"]), domain=meta["domain"],
                vlm_identity=meta["vlm"], render_settings=meta["render_settings"])


def scalar_tags(tb_dir: Path) -> dict[str, list[int]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(tb_dir))
    ea.Reload()
    return {tag: [e.step for e in ea.Scalars(tag)] for tag in ea.Tags()["scalars"]}


def test_train_mfwm_writes_everything(store: EpisodeStore, tmp_path: Path) -> None:
    out = tmp_path / "run"
    clip = write_video(store.load(store.paths()[0])["image"][:16], tmp_path / "clip.gif")
    model = train_mfwm(store, "tiny", out_dir=out, steps=4, seed=0, log_every=2, video_every=4, checkpoint_every=2,
                       progress=False, prompt_for_video=clip)
    assert isinstance(model, MFWM)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["config"]["action_dim"] == 6 and cfg["config"]["embed_dim"] == 512 and cfg["stages"] == "joint"
    assert cfg["domain"] == "walker" and cfg["vlm"] == store.metadata["vlm"] and cfg["steps"] == 4
    assert cfg["amp_bf16"] is False  # CPU: no autocast
    loaded = MFWM.load(out / "mfwm.pt", expect_domain="walker", expect_vlm=store.metadata["vlm"])
    assert loaded.render_settings == store.metadata["render_settings"]
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ck["step"] == 4 and ck["wm_opt"] is not None and ck["conn_opt"] is not None
    tags = scalar_tags(out / "tb")
    for tag in ["train/wm_loss", "train/image_loss", "train/kl", "train/connector_kl", "train/aligner_cosine_distance",
                "train/wm_grad_norm", "train/connector_grad_norm", "perf/updates_per_s", "perf/frames_per_s"]:
        assert tags[tag] == [2, 4], tag
    videos = sorted(p.name for p in (out / "videos").iterdir())
    assert videos == ["connector_embedding-0000004.gif", "connector_prompt-0000004.gif", "reconstruction-0000004.gif"]
    assert read_video(out / "videos" / "reconstruction-0000004.gif").shape == (16, 128, 64, 3)  # truth over recon
    # a second call with resume=True and the same steps has nothing left to do
    again = train_mfwm(store, "tiny", out_dir=out, steps=4, seed=0, progress=False)
    for a, b in zip(again.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)


def test_resume_continues_exactly(store: EpisodeStore, batches: list[dict[str, np.ndarray]], tmp_path: Path) -> None:
    straight = Trainer(model_for(store), tmp_path / "a", seed=3, progress=False, video_every=0)
    straight.fit(batches, 4)
    first = Trainer(model_for(store), tmp_path / "b", seed=3, progress=False, video_every=0)
    first.fit(batches[:2], 2)
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["step"] == 2
    resumed = Trainer(model_for(store, seed=99), tmp_path / "b", seed=3, progress=False, video_every=0)
    assert resumed.load_checkpoint() and resumed.step == 2
    calls = []
    original = resumed.train_step
    resumed.train_step = lambda b: calls.append(1) or original(b)  # type: ignore[method-assign]
    resumed.fit(batches[2:], 4)
    assert len(calls) == 2 and resumed.step == 4
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert int(resumed.wm_opt.state_dict()["state"][0]["step"]) == 4


def test_stages_train_only_their_parts(store: EpisodeStore, batches: list[dict[str, np.ndarray]], tmp_path: Path) -> None:
    def snapshot(m: torch.nn.Module) -> list[torch.Tensor]:
        return [p.detach().clone() for p in m.parameters()]

    m = model_for(store)
    wm0, conn0 = snapshot(m.world_model), snapshot(m.connector) + snapshot(m.aligner)
    Trainer(m, tmp_path / "wm", stages="wm", progress=False, video_every=0).fit(
        [{k: v for k, v in b.items() if k != "embedding"} for b in batches[:2]], 2)  # no embeddings needed
    assert all(torch.equal(a, b) for a, b in zip(conn0, snapshot(m.connector) + snapshot(m.aligner)))
    assert not all(torch.equal(a, b) for a, b in zip(wm0, snapshot(m.world_model)))
    wm1 = snapshot(m.world_model)
    Trainer(m, tmp_path / "conn", stages="connector", progress=False, video_every=0).fit(batches[:2], 2)
    assert all(torch.equal(a, b) for a, b in zip(wm1, snapshot(m.world_model)))
    assert not all(torch.equal(a, b) for a, b in zip(conn0, snapshot(m.connector) + snapshot(m.aligner)))


def test_errors(store: EpisodeStore, batches: list[dict[str, np.ndarray]], tmp_path: Path) -> None:
    trainer = Trainer(model_for(store), tmp_path / "x", progress=False, video_every=0)
    with pytest.raises(KeyError, match="embed"):
        trainer.train_step({k: v for k, v in batches[0].items() if k != "embedding"})
    with pytest.raises(ValueError, match="stages"):
        Trainer(model_for(store), tmp_path / "y", stages="all")
    with pytest.raises(ValueError, match="init="):
        train_mfwm(store, "tiny", out_dir=tmp_path / "z", steps=1, stages="connector", progress=False)
    trainer.fit(batches[:1], 1)  # writes x/checkpoint.pt of the tiny config
    other = MFWM(preset("tiny", embed_dim=512, action_dim=6, world_model__deter=16))
    with pytest.raises(CheckpointError, match="another configuration"):
        Trainer(other, tmp_path / "x", progress=False).load_checkpoint()
    with pytest.raises(PromptError, match="no language weights"):  # refused at start, not at the first video
        train_mfwm(store, "tiny", out_dir=tmp_path / "v", steps=1, progress=False, prompt_for_video="walk fast")
    with pytest.raises(ValueError, match="action_dim=3 but the store's actions have 6"):
        train_mfwm(store, preset("tiny", action_dim=3), out_dir=tmp_path / "w", steps=1, progress=False)


def test_resume_and_init_refuse_a_model_of_another_vlm_of_the_same_width(store: EpisodeStore, tmp_path: Path) -> None:
    """A store re-embedded with another VLM of the same width (512) must not resume (or start from) a connector
    trained on the first VLM's embeddings and relabel it."""
    vlm = store.metadata["vlm"]
    other = dict(vlm, weights="another-seed")  # same backend, model and width: only the identity tells them apart
    assert other["embed_dim"] == vlm["embed_dim"]
    train_mfwm(store, "tiny", out_dir=tmp_path / "run", steps=1, progress=False, video_every=0)
    # the same run resumed against a store that now reports the other VLM
    reembedded = model_for(store)
    reembedded.vlm_identity = other
    with pytest.raises(CheckpointError, match=r"checkpoint to resume was trained with VLM video-only:pixel-motion-rp-512"
                                              r".* but this run's store is embedded with .*another-seed"):
        Trainer(reembedded, tmp_path / "run", progress=False, video_every=0).load_checkpoint()
    cheetah = model_for(store)
    cheetah.domain = "cheetah"
    with pytest.raises(CheckpointError, match="domain 'walker' but this run trains domain 'cheetah'"):
        Trainer(cheetah, tmp_path / "run", progress=False, video_every=0).load_checkpoint()
    # init=: a model (path or object) trained with the other VLM
    foreign = model_for(store)
    foreign.vlm_identity = other
    path = foreign.save(tmp_path / "foreign.pt")
    for init in (path, foreign):
        with pytest.raises(CheckpointError, match=r"init.* was trained with VLM .*another-seed.* but this run's store is "
                                                  r"embedded with video-only:pixel-motion-rp-512"):
            train_mfwm(store, "tiny", out_dir=tmp_path / "init", steps=1, progress=False, video_every=0, init=init,
                       stages="connector")
    assert not (tmp_path / "init" / "mfwm.pt").exists()
    # the same VLM resumes and starts from init as before
    same = train_mfwm(store, "tiny", out_dir=tmp_path / "ok", steps=1, progress=False, video_every=0,
                      init=tmp_path / "run" / "mfwm.pt", stages="connector")
    assert same.vlm_identity.to_dict() == vlm


def test_a_run_killed_mid_checkpoint_resumes_to_the_uninterrupted_result(store: EpisodeStore,
                                                                         batches: list[dict[str, np.ndarray]],
                                                                         tmp_path: Path) -> None:
    from helpers import killed_mid_torch_save

    batches = batches + batches[:2]  # 6 updates
    straight = Trainer(model_for(store), tmp_path / "a", seed=3, progress=False, video_every=0, checkpoint_every=2)
    straight.fit(batches, 6)

    def run() -> None:
        Trainer(model_for(store), tmp_path / "b", seed=3, progress=False, video_every=0, checkpoint_every=2).fit(batches, 6)

    # the step-2 checkpoint is written, the process dies while writing the step-4 one
    assert killed_mid_torch_save(run, at_call=2) == 9
    ck = tmp_path / "b" / "checkpoint.pt"
    assert torch.load(ck, weights_only=True)["step"] == 2  # the previous checkpoint, whole
    assert len([p for p in (tmp_path / "b").iterdir() if p.name.startswith(".checkpoint.pt.")]) == 1  # dead writer's
    resumed = Trainer(model_for(store, seed=99), tmp_path / "b", seed=3, progress=False, video_every=0,
                      checkpoint_every=2)
    assert resumed.load_checkpoint() and resumed.step == 2
    resumed.fit(batches[2:], 6)
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert torch.load(ck, weights_only=True)["step"] == 6
    assert not [p for p in (tmp_path / "b").iterdir() if p.name.startswith(".")]  # the stale temp file was removed
    final = MFWM.load(tmp_path / "b" / "mfwm.pt")
    assert all(torch.equal(a, b) for a, b in zip(final.state_dict().values(), straight.model.state_dict().values()))
