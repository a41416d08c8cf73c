"""Damaged files: clear errors naming the file and the fix; ``genrl store verify`` lists and quarantines them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from genrl_gym.cli import main
from genrl_gym.data import EpisodeStore, SequenceSampler
from genrl_gym.vlm.embed import embed_store
from genrl_gym.utils import CheckpointError, DatasetError
from test_episode_store import make_episode


def _flip(path: Path, where: float = 0.5) -> None:
    """Invert one byte in the middle of ``path`` (bit rot)."""
    data = bytearray(path.read_bytes())
    i = int(len(data) * where)
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.fixture
def store(tmp_path: Path) -> EpisodeStore:
    """Five 64x64 episodes of 20 rows, embedded with the offline video-only VLM."""
    s = EpisodeStore(tmp_path / "data")
    for i in range(5):
        s.save(make_episode(20, seed=i, size=64, action_dim=6), info={"source": "random", "task": "stand",
                                                                       "episode_index": i})
    embed_store(s, "video-only", progress=False)
    return s


def test_damaged_episode_and_embedding_errors_name_the_file(store: EpisodeStore) -> None:
    p = store.paths()
    _truncate(p[1])
    _flip(p[2], 0.3)  # inside the image member: CRC-32 mismatch
    emb = store.embedding_path(p[3])
    _truncate(emb)
    for path in (p[1], p[2]):
        with pytest.raises(DatasetError, match="truncated or corrupt episode file") as e:
            store.load(path)
        assert str(path) in str(e.value) and "re-collect" in str(e.value)
        with pytest.raises(DatasetError, match=str(path)):
            store.open(path)
    with pytest.raises(DatasetError, match="truncated or corrupt embedding file") as e:
        store.load(p[3], with_embeddings=True)
    assert str(emb) in str(e.value) and "genrl embed" in str(e.value)
    sampler = SequenceSampler(store, 4, 8, seed=0, with_embeddings=True, max_open=1)
    with pytest.raises(DatasetError, match="ep-0000"):
        for _ in range(50):  # the sampler hits a damaged file soon: it names it instead of training on it
            next(sampler)


def test_verify_lists_exactly_the_damaged_files_and_quarantine_lets_training_run(
        store: EpisodeStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = store.paths()
    _truncate(p[1])
    _flip(p[2], 0.3)
    _truncate(store.embedding_path(p[3]))
    emb4 = store.embedding_path(p[4])
    bad = np.load(emb4)
    bad[3] = np.nan
    np.save(emb4, bad)
    found = store.check()
    assert [(d.kind, d.path) for d in found] == [("episode", p[1]), ("episode", p[2]),
                                                 ("embedding", store.embedding_path(p[3])), ("embedding", emb4)]
    assert main(["store", "verify", str(store.root)]) == 1
    out = capsys.readouterr().out
    for d in found:
        assert str(d.path) in out
    assert str(p[0]) not in out and "5 episodes checked, 2 damaged episode files, 2 damaged embedding" in out
    assert len(store.paths()) == 5  # listing moves nothing

    assert main(["store", "verify", str(store.root), "--quarantine"]) == 0
    q = store.root / "quarantine"
    assert sorted(f.name for f in q.glob("*.npz")) == [p[1].name, p[2].name]
    assert sorted(f.name for f in (q / "embeddings").glob("*.npy")) == sorted(
        [p[1].stem + ".npy", p[2].stem + ".npy", p[3].stem + ".npy", p[4].stem + ".npy"])
    assert store.paths() == [p[0], p[3], p[4]]
    meta = store.metadata
    assert sorted(meta["episodes"]) == [p[0].stem, p[3].stem, p[4].stem]
    assert sorted(meta["quarantined"]) == [p[1].stem, p[2].stem]
    assert "CRC-32" in meta["quarantined"][p[2].stem]["problem"]
    assert meta["num_episodes"] == 3 and meta["num_frames"] == 60
    assert store.check() == []
    assert main(["store", "verify", str(store.root)]) == 0
    # the episodes go on; the embeddings that went aside are re-created by the embedding pass
    batch = next(SequenceSampler(store, 2, 8, seed=0))
    assert batch["image"].shape == (2, 8, 64, 64, 3)
    assert embed_store(store, "video-only", progress=False) == 2
    from genrl_gym.training.trainer import train_mfwm

    model = train_mfwm(store, "tiny", out_dir=tmp_path / "run", steps=2, progress=False, video_every=0)
    assert model.domain == "unknown" and (tmp_path / "run" / "mfwm.pt").is_file()


def test_quarantined_episodes_are_collected_again(tmp_path: Path) -> None:
    """The quarantined episode's index is free again: collect with the same arguments refills it."""
    from test_collect import TinyPixelEnv

    from genrl_gym.data import collect

    store = EpisodeStore(tmp_path / "d")
    collect(lambda: TinyPixelEnv(max_steps=4), store=store, num_episodes=3, task="t", progress=False)
    victim = store.paths()[1]
    _truncate(victim)
    store.quarantine(store.check())
    assert len(store) == 2
    stats = collect(lambda: TinyPixelEnv(max_steps=4), store=store, num_episodes=3, task="t", progress=False)
    assert stats.episodes_collected == 1
    assert sorted(i["episode_index"] for i in store.episode_info().values()) == [0, 1, 2]
    assert store.check() == []


def test_damaged_checkpoints_and_agent_zips_name_the_file(tmp_path: Path) -> None:
    from helpers import save_random_clip, save_tiny_model

    from genrl_gym.agents import GenRLAgent
    from genrl_gym.models import MFWM
    from genrl_gym.training.trainer import Trainer

    model_path = save_tiny_model(tmp_path / "m.pt")
    model = MFWM.load(model_path)
    trainer = Trainer(model, tmp_path / "run", progress=False)
    ck = trainer.save_checkpoint()
    for damage in (_truncate, lambda f: f.write_bytes(b"")):
        damage(ck)
        with pytest.raises(CheckpointError, match="truncated") as e:
            Trainer(MFWM.load(model_path), tmp_path / "run", progress=False).load_checkpoint()
        assert str(ck) in str(e.value) and "--no-resume" in str(e.value)
    _flip(model_path, 0.6)  # inside the weights: the stored digest no longer matches
    with pytest.raises(CheckpointError, match=str(model_path)):
        MFWM.load(model_path)

    agent = GenRLAgent(save_tiny_model(tmp_path / "m2.pt"), str(save_random_clip(tmp_path / "c.gif", 20)),
                       preset="tiny", seed=0)
    zip_path = agent.save(tmp_path / "agent.zip")
    good = zip_path.read_bytes()
    for damage in (_truncate, lambda f: _flip(f, 0.5), lambda f: _flip(f, 0.05)):
        zip_path.write_bytes(good)
        damage(zip_path)
        with pytest.raises(CheckpointError, match="truncated or corrupt") as e:
            GenRLAgent.load(zip_path)
        assert str(zip_path) in str(e.value)
    # the CLI reports a damaged file as an error naming it (exit status 2), not a traceback
    zip_path.write_bytes(good[: len(good) // 2])
    assert main(["evaluate", "--agent", str(zip_path), "--out", str(tmp_path / "e"), "--episodes", "1"]) == 2


def test_verify_errors_on_a_missing_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["store", "verify", str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err
    s = EpisodeStore(tmp_path / "s")
    (s.root / "store.json").write_text("{broken")
    assert main(["store", "verify", str(s.root)]) == 2
    err = capsys.readouterr().err
    assert "store.json" in err and "corrupt" in err
