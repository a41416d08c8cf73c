"""Concurrent writers: a second process collecting into, or embedding, the same store is refused by a lock."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from genrl_gym.cli import main
from genrl_gym.data import EpisodeStore, collect
from genrl_gym.vlm.embed import embed_store
from genrl_gym.data.episodes import StoreLockedError
from test_collect import TinyPixelEnv
from test_episode_store import make_episode

ROOT = Path(__file__).resolve().parent.parent


class Holder:
    """A forked process that holds writer lock(s) of a store until released or killed."""

    def __init__(self, root: Path, roles: tuple[str, ...]) -> None:
        ready_r, ready_w = os.pipe()
        self._go_r, self._go_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - child process
            try:
                with EpisodeStore(root).writing(*roles):
                    os.write(ready_w, b"1")
                    os.read(self._go_r, 1)  # hold until the parent says go (or kills us)
                os._exit(0)
            finally:
                os._exit(1)
        assert os.read(ready_r, 1) == b"1"
        os.close(ready_r)
        os.close(ready_w)

    def release(self) -> None:
        os.write(self._go_w, b"1")
        assert os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1]) == 0

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)


@pytest.fixture
def holder(tmp_path: Path):
    """Start a second process holding the given writer lock(s) of ``tmp_path / 'd'``."""
    held: list[Holder] = []

    def start(*roles: str) -> Holder:
        held.append(Holder(tmp_path / "d", roles))
        return held[-1]

    yield start
    for h in held:
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            h.kill()


def test_second_collector_is_refused_and_a_killed_holder_leaves_no_lock(tmp_path: Path, holder) -> None:
    root = tmp_path / "d"
    EpisodeStore(root).save(make_episode(6), info={"source": "other", "task": "t"})
    other = holder("episodes")
    with pytest.raises(StoreLockedError) as e:
        collect(lambda: TinyPixelEnv(), store=root, num_episodes=3, task="t", progress=False)
    msg = str(e.value)
    assert f"pid {other.pid}" in msg and str(root / ".episodes.lock") in msg and "pytest" in msg  # its command
    with pytest.raises(StoreLockedError, match=str(root / ".episodes.lock")):
        EpisodeStore(root).save(make_episode(6))  # any episode write is refused, not interleaved
    assert len(EpisodeStore(root)) == 1
    # embedding is another role: allowed while the other process collects
    assert embed_store(EpisodeStore(root), "video-only", progress=False) == 1
    other.kill()
    stats = collect(lambda: TinyPixelEnv(), store=root, num_episodes=3, task="t", progress=False)  # no stale lock
    assert stats.episodes_collected == 3 and len(EpisodeStore(root)) == 4


def test_second_embedding_pass_is_refused(tmp_path: Path, holder, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "d"
    EpisodeStore(root).save(make_episode(12, size=64, action_dim=6))
    other = holder("embeddings")
    assert main(["embed", "--data", str(root)]) == 2
    err = capsys.readouterr().err
    assert f"pid {other.pid}" in err and ".embeddings.lock" in err and "genrl embed: error" in err
    assert not (root / "embeddings").exists() or not list((root / "embeddings").glob("*.npy"))
    assert main(["store", "verify", str(root)]) == 0  # verifying reads only: allowed
    other.release()  # the holder finishes normally
    assert main(["embed", "--data", str(root)]) == 0
    assert EpisodeStore(root).has_embedding(EpisodeStore(root).paths()[0])


@pytest.mark.slow
def test_two_genrl_collect_processes_on_one_store(tmp_path: Path) -> None:
    """Two real `genrl collect` commands: the second is refused while the first runs; killing the first frees it."""
    root = tmp_path / "d"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MUJOCO_GL": "egl"}
    cmd = [sys.executable, "-m", "genrl_gym.cli", "collect", "--domain", "walker", "--task", "stand", "--episodes", "50",
           "--episode-frames", "400", "--out", str(root)]
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        lock = root / ".episodes.lock"
        deadline = time.monotonic() + 300
        while not (lock.exists() and lock.read_text().startswith(f"{first.pid} ")):
            assert first.poll() is None and time.monotonic() < deadline, "the first collector never took the lock"
            time.sleep(0.05)
        second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert first.poll() is None, "the first collector finished too early for this test"
        assert second.returncode == 2 and f"pid {first.pid}" in second.stderr and str(lock) in second.stderr
    finally:
        first.kill()
        first.wait()
    store = EpisodeStore(root, create=False)
    assert store.check() == []
    indices = [i["episode_index"] for i in store.episode_info().values()]
    assert sorted(indices) == list(range(len(indices)))  # one writer: no index collected twice
    with store.writing("episodes"):  # the killed holder left no stale lock
        pass
