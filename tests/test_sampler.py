"""SequenceSampler: shapes/dtypes, determinism, bounds, no cross-episode segments, weighting, growth, embeddings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import genrl_gym  # noqa: F401  (render/torch guard, project rule)
from genrl_gym.data import EpisodeStore, SequenceSampler
from genrl_gym.utils import DatasetError


def tagged_episode(ep_id: int, length: int, *, size: int = 8) -> dict[str, np.ndarray]:
    """Episode whose proprio row t is [ep_id, t, length] and whose image pixels hold (ep_id, t % 256)."""
    rows = np.arange(length)
    image = np.zeros((length, size, size, 3), np.uint8)
    image[..., 0] = ep_id
    image[..., 1] = (rows % 256)[:, None, None]
    return {
        "image": image,
        "action": np.stack([rows, np.full(length, ep_id)], 1).astype(np.float32),
        "reward": rows.astype(np.float32),
        "task_reward": (rows * 0.5).astype(np.float32),
        "is_first": rows == 0,
        "is_last": rows == length - 1,
        "is_terminal": np.zeros(length, bool),
        "proprio": np.stack([np.full(length, ep_id), rows, np.full(length, length)], 1).astype(np.float32),
    }


def make_store(root: Path, lengths: list[int]) -> EpisodeStore:
    store = EpisodeStore(root)
    for i, n in enumerate(lengths):
        store.save(tagged_episode(i, n))
    return store


def test_shapes_dtypes_and_segments_within_one_episode(tmp_path: Path) -> None:
    store = make_store(tmp_path, [30, 17, 50])
    sampler = SequenceSampler(store, batch_size=6, seq_len=9, seed=0)
    batch = next(iter(sampler))
    assert batch["image"].shape == (6, 9, 8, 8, 3) and batch["image"].dtype == np.uint8
    assert batch["action"].shape == (6, 9, 2) and batch["action"].dtype == np.float32
    assert batch["proprio"].shape == (6, 9, 3) and batch["proprio"].dtype == np.float32
    for k in ("reward", "task_reward"):
        assert batch[k].shape == (6, 9) and batch[k].dtype == np.float32
    for k in ("is_first", "is_last", "is_terminal"):
        assert batch[k].shape == (6, 9) and batch[k].dtype == np.bool_
    for _ in range(50):
        batch = sampler.sample()
        ep, row, length = batch["proprio"][..., 0], batch["proprio"][..., 1], batch["proprio"][..., 2]
        assert (ep == ep[:, :1]).all(), "segment crosses an episode boundary"
        assert (np.diff(row, axis=1) == 1).all(), "rows not consecutive"
        assert (row[:, 0] >= 0).all() and (row[:, -1] <= length[:, 0] - 1).all(), "start out of [0, L - T]"
        # every key comes from the same rows of the same episode
        np.testing.assert_array_equal(batch["image"][..., 0, 0, 0], ep)
        np.testing.assert_array_equal(batch["image"][..., 0, 0, 1], row)
        np.testing.assert_array_equal(batch["reward"], row)
        np.testing.assert_array_equal(batch["action"][..., 1], ep)
        np.testing.assert_array_equal(batch["is_first"], row == 0)  # stored flags, as they are
        np.testing.assert_array_equal(batch["is_last"], row == length - 1)
        assert batch["image"].base is None and batch["image"].flags.writeable  # a fresh copy, not a view of the file


def test_determinism_by_seed(tmp_path: Path) -> None:
    store = make_store(tmp_path, [20, 25, 40])
    a = SequenceSampler(store, 4, 5, seed=3)
    b = SequenceSampler(store, 4, 5, seed=3)
    c = SequenceSampler(store, 4, 5, seed=4)
    batches_a = [a.sample() for _ in range(5)]
    batches_b = [b.sample() for _ in range(5)]
    batches_c = [c.sample() for _ in range(5)]
    for x, y in zip(batches_a, batches_b):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])
    assert any(not np.array_equal(x["proprio"], y["proprio"]) for x, y in zip(batches_a, batches_c))


def test_uniform_over_valid_starts(tmp_path: Path) -> None:
    # valid starts: L - T + 1 = 10 and 100 -> the longer episode is sampled ~10x as often, starts cover [0, L - T]
    store = make_store(tmp_path, [20, 110])
    sampler = SequenceSampler(store, batch_size=500, seq_len=11, seed=0)
    starts = np.concatenate([sampler.sample()["proprio"][:, 0, :2] for _ in range(8)])
    frac_short = np.mean(starts[:, 0] == 0)
    assert 0.06 < frac_short < 0.12, frac_short  # expected 10/110 = 0.091 (4000 draws: sd 0.0045)
    short_starts = starts[starts[:, 0] == 0, 1]
    long_starts = starts[starts[:, 0] == 1, 1]
    assert set(short_starts.astype(int)) == set(range(10))
    assert long_starts.min() == 0 and long_starts.max() == 99
    assert sampler.num_starts == 110 and sampler.num_episodes == 2


def test_short_episodes_skipped_and_errors(tmp_path: Path) -> None:
    store = make_store(tmp_path / "a", [5, 30, 8])
    sampler = SequenceSampler(store, 8, 10, seed=0)
    assert sampler.num_episodes == 1 and sampler.num_short == 2
    assert (sampler.sample()["proprio"][..., 0] == 1).all()
    assert SequenceSampler(store, 2, 30, seed=0).num_starts == 1  # T == L: exactly one start
    with pytest.raises(DatasetError, match="no episode has at least seq_len=31 rows.*longest: 30"):
        SequenceSampler(store, 2, 31, seed=0)
    with pytest.raises(DatasetError, match="empty"):
        SequenceSampler(EpisodeStore(tmp_path / "empty"), 2, 3, seed=0)
    with pytest.raises(DatasetError, match="collect episodes first"):
        SequenceSampler(tmp_path / "missing", 2, 3, seed=0)
    with pytest.raises(ValueError, match="seq_len"):
        SequenceSampler(store, 2, 0, seed=0)


def test_keys_subset_and_unknown_key(tmp_path: Path) -> None:
    store = make_store(tmp_path, [12])
    batch = SequenceSampler(store, 2, 4, seed=0, keys=["image", "is_first"]).sample()
    assert sorted(batch) == ["image", "is_first"]
    with pytest.raises(DatasetError, match="unknown key"):
        SequenceSampler(store, 2, 4, seed=0, keys=["image", "rewards"])


def test_store_growth_is_picked_up(tmp_path: Path) -> None:
    store = make_store(tmp_path, [15])
    sampler = SequenceSampler(store, 16, 5, seed=0, refresh_every=2)
    seen = {int(e) for _ in range(2) for e in sampler.sample()["proprio"][:, 0, 0]}
    assert seen == {0}
    writer = EpisodeStore(tmp_path)  # e.g. a collector process appending to the same store
    writer.save(tagged_episode(1, 200))
    writer.save(tagged_episode(2, 3))  # too short for T=5: never sampled
    seen = {int(e) for _ in range(4) for e in sampler.sample()["proprio"][:, 0, 0]}
    assert seen == {0, 1}
    assert sampler.num_episodes == 2 and sampler.num_short == 1


def test_lru_bounds_open_episodes(tmp_path: Path) -> None:
    store = make_store(tmp_path, [12] * 6)
    sampler = SequenceSampler(store, 32, 4, seed=0, max_open=2)
    for _ in range(3):
        sampler.sample()
        assert len(sampler._open) <= 2


def test_corrupt_episode_raises_when_sampled(tmp_path: Path) -> None:
    store = make_store(tmp_path, [12, 12])
    bad = store.paths()[1]
    raw = bytearray(bad.read_bytes())
    raw[400] ^= 0xFF  # inside the image payload
    bad.write_bytes(bytes(raw))
    sampler = SequenceSampler(store, 32, 4, seed=0)  # 32 draws: both episodes get sampled
    with pytest.raises(DatasetError, match=r"ep-000001-L12\.npz.*CRC"):
        for _ in range(3):
            sampler.sample()


def test_with_embeddings(tmp_path: Path) -> None:
    store = make_store(tmp_path, [12, 16])
    with pytest.raises(DatasetError, match="2 of 2 episodes have no embeddings.*genrl embed"):
        SequenceSampler(store, 4, 5, seed=0, with_embeddings=True)
    embs = {}
    for i, p in enumerate(store.paths()):
        length = store.episode_length(p)
        embs[i] = np.stack([np.full(length, i), np.arange(length), np.zeros(length)], 1).astype(np.float32)
        store.save_embedding(p, embs[i])
    sampler = SequenceSampler(store, 8, 5, seed=0, with_embeddings=True, keys=["proprio"], refresh_every=1)
    batch = sampler.sample()
    assert sorted(batch) == ["embedding", "proprio"] and batch["embedding"].shape == (8, 5, 3)
    np.testing.assert_array_equal(batch["embedding"][..., :2], batch["proprio"][..., :2])
    store.save(tagged_episode(2, 40))  # not embedded yet: not sampled until its embedding exists
    assert {int(e) for _ in range(5) for e in sampler.sample()["proprio"][:, 0, 0]} <= {0, 1}
    store.save_embedding(store.paths()[2], np.zeros((40, 3), np.float32))
    sampler.refresh()
    assert sampler.num_episodes == 3
