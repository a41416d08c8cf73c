"""genrl_gym.vlm.embed: windowing convention, embedding pass over an EpisodeStore (resumable, atomic, identity)."""

from __future__ import annotations

from pathlib import Path

import genrl_gym  # noqa: F401
import numpy as np
import pytest
import torch

from genrl_gym.data import EpisodeStore
from genrl_gym.vlm.embed import embed_frames, embed_store, embedding_rule, windows
from genrl_gym.utils import VLMError
from genrl_gym.vlm import VLMIdentity, load_vlm
from genrl_gym.vlm.video_only import VideoOnlyVLM


def make_episode(length: int, seed: int, size: int = 64) -> dict[str, np.ndarray]:
    """A valid store episode of ``length`` rows whose frames show a square drifting across a textured background."""
    rng = np.random.RandomState(seed)
    bg = rng.randint(0, 80, (size, size, 3))
    images = np.empty((length, size, size, 3), np.uint8)
    for t in range(length):
        img = bg.copy()
        x = (3 * t + 7 * seed) % (size - 10)
        img[20:30, x:x + 10] = (230, 150, 60)
        images[t] = img
    flags = np.zeros(length, bool)
    return {
        "image": images,
        "action": rng.uniform(-1, 1, (length, 2)).astype(np.float32),
        "reward": np.zeros(length, np.float32),
        "task_reward": np.zeros(length, np.float32),
        "is_first": np.r_[True, flags[1:]],
        "is_last": np.r_[flags[:-1], True],
        "is_terminal": flags.copy(),
    }


class NoSlidingVLM:
    """The video-only VLM seen through the plain protocol only (no ``embed_sliding`` fast path)."""

    def __init__(self, inner: VideoOnlyVLM) -> None:
        self.inner, self.identity, self.window, self.has_language = inner, inner.identity, inner.window, False
        self.calls = 0

    @property
    def embed_dim(self) -> int:
        return self.inner.embed_dim

    def embed_text(self, texts: list[str]) -> torch.Tensor:
        return self.inner.embed_text(texts)

    def embed_video(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.inner.embed_video(frames)


class FailingVLM(NoSlidingVLM):
    """Raises on the ``fail_at``-th episode (simulates a crash in the middle of a pass)."""

    def __init__(self, inner: VideoOnlyVLM, fail_at: int) -> None:
        super().__init__(inner)
        self.fail_at, self.episodes = fail_at, 0

    def embed_video(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        out = super().embed_video(frames)
        if self.calls == self.fail_at:
            raise KeyboardInterrupt("simulated crash")
        return out


# ------------------------------------------------------------------------------------------------------- windowing
def test_windows_indices_and_start_rule() -> None:
    frames = np.arange(10, dtype=np.int64)[:, None, None, None] * np.ones((1, 2, 2, 3), np.int64)  # frame t holds t
    w = windows(frames, 8)
    assert w.shape == (10, 8, 2, 2, 3)
    for t in range(10):
        expected = [max(t - 7 + k, 0) for k in range(8)]  # frames t-7..t, before row 0: frame 0 repeated
        assert w[t, :, 0, 0, 0].tolist() == expected
    assert w[7, :, 0, 0, 0].tolist() == list(range(8))
    full = windows(frames, 8, pad="none")
    assert full.shape == (3, 8, 2, 2, 3) and full[0, :, 0, 0, 0].tolist() == list(range(8))
    assert np.shares_memory(full, frames) and not full.flags.writeable  # a view, not a copy
    assert w.strides[0] == frames.strides[0]  # stride trick over the (once) padded clip
    tw = windows(torch.from_numpy(frames), 8)
    assert torch.equal(tw, torch.from_numpy(np.ascontiguousarray(w)))
    short = windows(frames[:3], 8)
    assert short.shape == (3, 8, 2, 2, 3) and short[2, :, 0, 0, 0].tolist() == [0] * 6 + [1, 2]
    with pytest.raises(ValueError):
        windows(frames[:3], 8, pad="none")
    with pytest.raises(ValueError):
        windows(frames, 8, pad="zeros")


def test_embed_frames_row_t_is_window_ending_at_t() -> None:
    vlm = VideoOnlyVLM()
    frames = make_episode(13, seed=1)["image"]
    emb = embed_frames(frames, vlm)  # sliding fast path
    assert emb.shape == (13, 512) and emb.dtype == np.float32
    for t in (0, 3, 7, 12):
        idx = [max(t - 7 + k, 0) for k in range(8)]
        ref = vlm.embed_video(frames[idx][None])[0].numpy()
        np.testing.assert_allclose(emb[t], ref, atol=1e-6)
    plain = NoSlidingVLM(vlm)
    np.testing.assert_allclose(embed_frames(frames, plain, batch_size=5), emb, atol=1e-6)  # generic path agrees
    assert plain.calls == 3  # ceil(13 / 5) batches of windows
    # rows t < 7 are real embeddings (not zeros) and differ from each other as the clip starts moving
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    assert not np.allclose(emb[1], emb[6])


# ------------------------------------------------------------------------------------------------------ embed_store
@pytest.fixture
def store(tmp_path: Path) -> EpisodeStore:
    s = EpisodeStore(tmp_path / "store")
    for i, length in enumerate((12, 9)):
        s.save(make_episode(length, seed=i))
    return s


def _no_temp_files(root: Path) -> bool:
    locks = (".lock", ".episodes.lock", ".embeddings.lock")
    return not [p for p in root.rglob("*") if (p.name.startswith(".") and p.name not in locks) or p.name.endswith(".tmp")]


def test_embed_store_writes_embeddings_and_identity(store: EpisodeStore) -> None:
    vlm = load_vlm("video-only")
    assert embed_store(store, vlm, progress=False) == 2
    assert store.metadata["vlm"] == vlm.identity.to_dict()
    assert VLMIdentity.from_dict(store.metadata["vlm"]) == vlm.identity
    assert store.metadata["embedding_rule"] == embedding_rule(8)
    for path in store.paths():
        ep = store.load(path, with_embeddings=True)
        assert ep["embedding"].shape == (ep["image"].shape[0], 512) and ep["embedding"].dtype == np.float32
        np.testing.assert_allclose(ep["embedding"], embed_frames(ep["image"], vlm), atol=1e-6)
    assert _no_temp_files(store.root)


def test_embed_store_resumes(store: EpisodeStore) -> None:
    vlm = VideoOnlyVLM()
    assert embed_store(store, vlm, progress=False) == 2
    first = store.embedding_path(store.paths()[0])
    mtime = first.stat().st_mtime_ns
    assert embed_store(store, vlm, progress=False) == 0  # nothing to do
    assert first.stat().st_mtime_ns == mtime
    store.embedding_path(store.paths()[1]).unlink()  # lost file -> only it is redone
    assert embed_store(store, vlm, progress=False) == 1
    store.embedding_path(store.paths()[1]).write_bytes(b"\x93NUMPY garbage")  # unreadable file -> redone
    assert embed_store(store, vlm, progress=False) == 1
    store.save(make_episode(10, seed=5))  # a new episode -> only it
    assert embed_store(store, "video-only", progress=False) == 1
    assert embed_store(store, vlm, progress=False, overwrite=True) == 3  # overwrite: everything again


def test_embed_store_crash_then_resume(store: EpisodeStore) -> None:
    inner = VideoOnlyVLM()
    with pytest.raises(KeyboardInterrupt):
        embed_store(store, FailingVLM(inner, fail_at=2), progress=False, batch_size=64)  # dies on the 2nd episode
    paths = store.paths()
    assert store.has_embedding(paths[0]) and not store.has_embedding(paths[1])
    assert _no_temp_files(store.root)
    assert embed_store(store, inner, progress=False) == 1


def test_embed_store_refuses_another_vlm(store: EpisodeStore) -> None:
    embed_store(store, VideoOnlyVLM(seed=0), progress=False)
    before = np.load(store.embedding_path(store.paths()[0]))
    other = VideoOnlyVLM(seed=1)
    with pytest.raises(VLMError, match="overwrite=True") as e:
        embed_store(store, other, progress=False)
    assert "seed0" in str(e.value) and "seed1" in str(e.value)
    assert store.metadata["vlm"] == VideoOnlyVLM(seed=0).identity.to_dict()  # untouched
    assert embed_store(store, other, progress=False, overwrite=True) == 2
    assert store.metadata["vlm"] == other.identity.to_dict()
    assert not np.allclose(np.load(store.embedding_path(store.paths()[0])), before)
    # a recorded identity that is not readable is refused too
    store.update_metadata(vlm={"backend": "video-only"})
    with pytest.raises(VLMError, match="unreadable 'vlm' entry"):
        embed_store(store, other, progress=False)
    assert embed_store(store, other, progress=False, overwrite=True) == 2
    assert store.metadata["vlm"] == other.identity.to_dict()


def test_embed_store_refuses_unrecorded_embeddings(store: EpisodeStore) -> None:
    store.save_embedding(store.paths()[0], np.zeros((12, 512), np.float32))  # written by someone else
    with pytest.raises(VLMError, match="unrecorded VLM"):
        embed_store(store, VideoOnlyVLM(), progress=False)
    assert embed_store(store, VideoOnlyVLM(), progress=False, overwrite=True) == 2
