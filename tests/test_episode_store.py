"""EpisodeStore: round trip, validation, corruption/truncation, crash safety, metadata, embeddings."""

from __future__ import annotations

import json
import mmap
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

import genrl_gym  # noqa: F401  (render/torch guard, project rule)
from genrl_gym.data import EpisodeStore, validate_episode
from genrl_gym.utils import DatasetError


def make_episode(length: int = 12, *, seed: int = 0, size: int = 8, action_dim: int = 2, proprio_dim: int | None = 3,
                 terminal: bool = False) -> dict[str, np.ndarray]:
    """A valid random episode with ``length`` rows."""
    rng = np.random.default_rng(seed)
    rows = np.arange(length)
    ep = {
        "image": rng.integers(0, 256, (length, size, size, 3), dtype=np.uint8),
        "action": rng.uniform(-1, 1, (length, action_dim)).astype(np.float32),
        "reward": rng.random(length).astype(np.float32),
        "task_reward": rng.random(length).astype(np.float32),
        "is_first": rows == 0,
        "is_last": rows == length - 1,
        "is_terminal": (rows == length - 1) & terminal,
    }
    ep["action"][0] = 0
    if proprio_dim is not None:
        ep["proprio"] = rng.standard_normal((length, proprio_dim)).astype(np.float32)
    return ep


def assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        assert a[k].shape == b[k].shape, k
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_round_trip_load_and_open(tmp_path: Path) -> None:
    store = EpisodeStore(tmp_path / "s")
    eps = [make_episode(12, seed=0), make_episode(7, seed=1, terminal=True)]
    paths = [store.save(e, info={"source": "random", "task": "stand", "seed": i}) for i, e in enumerate(eps)]
    assert [p.name for p in paths] == ["ep-000000-L12.npz", "ep-000001-L7.npz"]
    assert store.paths() == paths and len(store) == 2 and store.num_frames == 19
    for p, e in zip(paths, eps):
        assert_same(store.load(p), e)
        assert_same(store.load(p.stem), e)  # by stem, relative to the root
        mapped = store.open(p)
        assert_same(mapped, e)
        # streamed, not copied: the image is a read-only view of the file's memory map
        assert isinstance(mapped["image"].base, mmap.mmap) and not mapped["image"].flags.writeable
    meta = EpisodeStore(tmp_path / "s", create=False).metadata  # persisted, readable by a fresh instance
    assert meta["num_episodes"] == 2 and meta["num_frames"] == 19
    assert meta["action_dim"] == 2 and meta["image_size"] == [8, 8] and meta["proprio_dim"] == 3
    assert meta["episodes"]["ep-000001-L7"]["seed"] == 1 and meta["tasks"] == ["stand"]
    assert store.count(source="random") == 2 and store.count(source="random", task="run") == 0
    assert store.load(paths[0], keys=["reward"]).keys() == {"reward"}


def test_compressed_episode_files_are_read(tmp_path: Path) -> None:
    store = EpisodeStore(tmp_path)
    ep = make_episode(9)
    np.savez_compressed(tmp_path / "ep-000000-L9.npz", **ep)  # e.g. written by another tool
    assert_same(store.load("ep-000000-L9"), ep)
    assert_same(store.open("ep-000000-L9"), ep)
    assert store.save(make_episode(4)).name == "ep-000001-L4.npz"


def test_custom_name_gets_length_suffix(tmp_path: Path) -> None:
    store = EpisodeStore(tmp_path)
    assert store.save(make_episode(5), name="demo-run").name == "demo-run-L5.npz"
    with pytest.raises(DatasetError, match="already exists"):
        store.save(make_episode(5), name="demo-run")
    with pytest.raises(DatasetError, match="L=6"):
        store.save(make_episode(5), name="x-L6")


@pytest.mark.parametrize("mutate, match", [
    (lambda e: e.pop("task_reward"), "missing key"),
    (lambda e: e.__setitem__("reward", e["reward"].astype(np.float64)), "dtype float64, expected float32"),
    (lambda e: e.__setitem__("image", e["image"].astype(np.float32)), "'image' has dtype float32"),
    (lambda e: e.__setitem__("action", e["action"][:-1]), "length mismatch"),
    (lambda e: e.__setitem__("image", e["image"][..., :1]), r"\[L, H, W, 3\]"),
    (lambda e: e.__setitem__("is_first", np.ones_like(e["is_first"])), "is_first"),
    (lambda e: e.__setitem__("is_last", np.zeros_like(e["is_last"])), "is_last"),
    (lambda e: e["reward"].__setitem__(3, np.nan), "NaN"),
    (lambda e: e.__setitem__("embedding", np.zeros((len(e["reward"]), 4), np.float32)), "reserved"),
    (lambda e: e.__setitem__("note", np.array(["a"] * len(e["reward"]))), "extra key"),
])
def test_validation_errors_and_nothing_written(tmp_path: Path, mutate, match) -> None:
    store = EpisodeStore(tmp_path)
    ep = make_episode(6)
    mutate(ep)
    with pytest.raises(DatasetError, match=match):
        store.save(ep)
    assert store.paths() == [] and store.metadata["num_episodes"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "store.json"]


def test_extra_numeric_keys_allowed_and_key_set_enforced(tmp_path: Path) -> None:
    store = EpisodeStore(tmp_path)
    ep = make_episode(6)
    ep["discount"] = np.ones(6, np.float32)
    store.save(ep)
    assert_same(store.load(store.paths()[0]), ep)
    with pytest.raises(DatasetError, match="keys"):
        store.save(make_episode(6))  # lacks 'discount': the store's key set is fixed by its first episode


def test_shape_mismatch_with_store(tmp_path: Path) -> None:
    store = EpisodeStore(tmp_path)
    store.save(make_episode(6))
    with pytest.raises(DatasetError, match="action_dim"):
        store.save(make_episode(6, action_dim=3))
    with pytest.raises(DatasetError, match="image_size"):
        store.save(make_episode(6, size=16))
    assert len(store) == 1


def test_corrupt_file_raises_naming_file(tmp_path: Path) -> None:
    store = EpisodeStore(tmp_path)
    good = store.save(make_episode(10, seed=0))
    bad = store.save(make_episode(10, seed=1))
    raw = bytearray(bad.read_bytes())
    raw[zipfile.ZipFile(bad).getinfo("image.npy").header_offset + 300] ^= 0xFF  # bit rot inside the image payload
    bad.write_bytes(bytes(raw))
    for read in (store.load, store.open):
        with pytest.raises(DatasetError, match=r"ep-000001-L10\.npz.*corrupt.*genrl store verify.*--quarantine"):
            read(bad)
    store.load(good)  # neighbours are unaffected
    garbage = tmp_path / "ep-000002-L10.npz"
    garbage.write_bytes(b"not a zip file at all")
    with pytest.raises(DatasetError, match="ep-000002-L10.npz"):
        store.load(garbage)
    with pytest.raises(DatasetError, match="ep-000001-L10.npz"):
        store.verify()  # verify stops at the first bad file (never skips)
    bad.unlink()  # the documented fix
    with pytest.raises(DatasetError, match="ep-000002-L10.npz"):
        store.verify()


@pytest.mark.parametrize("keep", [0.0, 0.3, 0.97])
def test_truncated_file_raises_naming_file(tmp_path: Path, keep: float) -> None:
    store = EpisodeStore(tmp_path)
    path = store.save(make_episode(10))
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)])
    for read in (store.load, store.open):
        with pytest.raises(DatasetError, match=r"ep-000000-L10\.npz: truncated or corrupt.*re-collect"):
            read(path)


def test_name_length_mismatch_is_reported(tmp_path: Path) -> None:
    store = EpisodeStore(tmp_path)
    path = store.save(make_episode(10))
    path.rename(tmp_path / "ep-000000-L11.npz")
    with pytest.raises(DatasetError, match="L=11.*10 rows"):
        store.load("ep-000000-L11")


def test_exception_mid_write_leaves_store_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = EpisodeStore(tmp_path)
    first = store.save(make_episode(10, seed=0))
    real_write = np.lib.format.write_array

    def failing_write(fp, array, *args, **kwargs):  # numpy's writer dies after part of the data (disk full, ...)
        if array.ndim == 4:
            fp.write(array.tobytes()[:100])
            raise OSError("simulated: no space left on device")
        return real_write(fp, array, *args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", failing_write)
    with pytest.raises(OSError, match="simulated"):
        store.save(make_episode(10, seed=1))
    monkeypatch.undo()
    assert store.paths() == [first]
    # no temp file
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([".episodes.lock", ".lock", "store.json", first.name])
    assert store.metadata["num_episodes"] == 1
    assert_same(store.load(first), make_episode(10, seed=0))
    assert store.save(make_episode(10, seed=2)).name == "ep-000001-L10.npz"


def test_process_killed_mid_write_leaves_no_visible_episode(tmp_path: Path) -> None:
    """A process that dies hard (no cleanup) while writing leaves only a hidden temp file, never a visible episode."""
    store = EpisodeStore(tmp_path)
    store.save(make_episode(10, seed=0))
    store.save(make_episode(10, seed=1))
    pid = os.fork()  # the child inherits the imports: no interpreter start-up
    if pid == 0:  # pragma: no cover - child process
        try:
            real = np.lib.format.write_array

            def dying_write(fp, array, *args, **kwargs):
                if array.ndim == 4:
                    fp.write(array.tobytes()[:500])
                    fp.flush()
                    os._exit(9)  # like SIGKILL: no exception handlers, no temp-file cleanup
                return real(fp, array, *args, **kwargs)

            np.lib.format.write_array = dying_write
            EpisodeStore(tmp_path).save(make_episode(10, seed=2))
        finally:
            os._exit(1)  # not reached unless the save did not die mid-write
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 9
    store = EpisodeStore(tmp_path)
    assert [p.name for p in store.paths()] == ["ep-000000-L10.npz", "ep-000001-L10.npz"]
    leftovers = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".")  # hidden temp file, ignored by paths()
    for i, p in enumerate(store.paths()):
        assert_same(store.load(p), make_episode(10, seed=i))
    assert store.metadata["num_episodes"] == 2
    assert store.save(make_episode(10, seed=3)).name == "ep-000002-L10.npz"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # the next writer removed the killed one's
    assert store.metadata["num_episodes"] == 3


def test_metadata_update_is_persistent_and_guarded(tmp_path: Path) -> None:
    store = EpisodeStore(tmp_path)
    store.update_metadata(domain="walker", render_settings={"image_size": 64, "camera_id": 0}, recipe="p2e+run")
    other = EpisodeStore(tmp_path, create=False)
    assert other.metadata["domain"] == "walker" and other.metadata["recipe"] == "p2e+run"
    with pytest.raises(ValueError, match="managed by the store"):
        store.update_metadata(episodes={})
    with pytest.raises(TypeError):
        store.update_metadata(bad=object())
    assert json.loads((tmp_path / "store.json").read_text())["render_settings"]["camera_id"] == 0
    (tmp_path / "store.json").write_text("{not json")
    with pytest.raises(DatasetError, match="store.json: corrupt"):
        EpisodeStore(tmp_path).metadata


def test_missing_store_without_create(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="collect episodes first"):
        EpisodeStore(tmp_path / "nope", create=False)


def test_embeddings(tmp_path: Path) -> None:
    store = EpisodeStore(tmp_path)
    path = store.save(make_episode(10))
    with pytest.raises(DatasetError, match="genrl embed"):
        store.load(path, with_embeddings=True)
    emb = np.random.default_rng(0).standard_normal((10, 4)).astype(np.float32)
    out = store.save_embedding(path, emb)
    assert out == tmp_path / "embeddings" / "ep-000000-L10.npy"
    np.testing.assert_array_equal(store.load(path, with_embeddings=True)["embedding"], emb)
    np.testing.assert_array_equal(store.open(path, with_embeddings=True)["embedding"], emb)
    with pytest.raises(DatasetError, match="11 rows but the episode has 10"):
        store.save_embedding(path, np.zeros((11, 4), np.float32))
    with pytest.raises(DatasetError, match="float32"):
        store.save_embedding(path, np.zeros((10, 4), np.float64))
    out.write_bytes(out.read_bytes()[:40])  # truncated embedding file
    with pytest.raises(DatasetError, match="ep-000000-L10.npy.*genrl embed"):
        store.load(path, with_embeddings=True)


def test_validate_episode_returns_length() -> None:
    assert validate_episode(make_episode(13)) == 13
    assert validate_episode(make_episode(1)) == 1  # a reset-only episode is valid (and never sampled for T > 1)


def test_directory_without_store_json_needs_create(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not an episode store"):
        EpisodeStore(tmp_path, create=False)
    EpisodeStore(tmp_path)
    assert EpisodeStore(tmp_path, create=False).metadata["num_episodes"] == 0
