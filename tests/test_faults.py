"""kill -9 inside writes: the GENRL_FAULT_INJECT hook, and commands that resume after it with nothing lost.

The full figures (many random kills of collect, embed, train-mfwm and train-agent) come from
``python -m benchmarks.bench_faults``; these tests run a few kill/resume cycles so that CI exercises the mechanism.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from genrl_gym.data import EpisodeStore, collect
from genrl_gym.utils import FAULT_ENV, remove_stale_temp_files

ROOT = Path(__file__).resolve().parent.parent
# loads genrl_gym/utils.py on its own (numpy only): a sub-second interpreter instead of importing torch
WRITER = f"""
import importlib.util, sys
spec = importlib.util.spec_from_file_location("genrl_utils", {str(ROOT / "genrl_gym" / "utils.py")!r})
utils = importlib.util.module_from_spec(spec)
spec.loader.exec_module(utils)
atomic_write = utils.atomic_write
for name in sys.argv[1:]:
    with atomic_write(name, "wb") as f:
        f.write(b"x" * 1000)
"""


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MUJOCO_GL": "egl", **extra}
    if FAULT_ENV not in extra:
        env.pop(FAULT_ENV, None)
    return env


def _run(args: list[str], tmp_path: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=tmp_path, env=_env(**extra), capture_output=True, text=True,
                          timeout=600)


def test_fault_hook_kills_inside_the_nth_matching_write(tmp_path: Path) -> None:
    names = ["a.bin", "x-1.bin", "x-2.bin", "x-3.bin"]
    r = _run(["-c", WRITER, *names], tmp_path, **{FAULT_ENV: "x-*.bin:2"})
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert (tmp_path / "a.bin").read_bytes() == b"x" * 1000  # does not match the glob
    assert (tmp_path / "x-1.bin").read_bytes() == b"x" * 1000  # 1st match: written
    assert not (tmp_path / "x-2.bin").exists() and not (tmp_path / "x-3.bin").exists()
    tmp = list(tmp_path.glob(".x-2.bin.*.tmp"))
    assert len(tmp) == 1 and tmp[0].stat().st_size == 500  # killed with a half-written temp file
    assert remove_stale_temp_files(tmp_path / "x-2.bin") == tmp and not tmp[0].exists()
    r = _run(["-c", WRITER, *names], tmp_path)  # unset: no effect
    assert r.returncode == 0 and all((tmp_path / n).stat().st_size == 1000 for n in names)


def _collect_in_child(root: Path, fault: str, episodes: int) -> int:
    """Fork; the child collects with the fault hook armed. Returns the child's exit code (-9: killed)."""
    from test_collect import TinyPixelEnv

    pid = os.fork()
    if pid == 0:  # pragma: no cover - child process
        try:
            os.environ[FAULT_ENV] = fault
            collect(lambda: TinyPixelEnv(max_steps=4), store=root, num_episodes=episodes, task="t", progress=False)
        finally:
            os._exit(1)  # not reached if the hook fired
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.parametrize("fault", [
    "store.json:4",  # right after episode 0 was renamed into place, while store.json's counts are written
    "ep-*.npz:2",  # inside episode 1's file
])
def test_collect_killed_inside_a_write_resumes_without_loss_or_duplicates(tmp_path: Path, fault: str) -> None:
    from test_collect import TinyPixelEnv

    root = tmp_path / "d"
    assert _collect_in_child(root, fault, 3) == -signal.SIGKILL
    store = EpisodeStore(root, create=False)
    before = {p: p.read_bytes() for p in store.paths()}
    assert len(before) == 1 and store.check() == []
    # the episode written before the kill counts for the resume (its info was recorded before its file appeared)
    stats = collect(lambda: TinyPixelEnv(max_steps=4), store=store, num_episodes=3, task="t", progress=False)
    assert stats.episodes_existing == 1 and stats.episodes_collected == 2
    assert len(store) == 3 and store.metadata["num_episodes"] == 3
    assert sorted(i["episode_index"] for i in store.episode_info().values()) == [0, 1, 2]
    assert all(p.read_bytes() == data for p, data in before.items())  # nothing written before the kill changed
    assert not list(root.glob("*.tmp")) and not list(root.glob(".*.tmp"))  # the resumed writer removed the temp file


def _tiny_embedded_store(root: Path) -> EpisodeStore:
    from test_episode_store import make_episode

    from genrl_gym.vlm.embed import embed_store

    store = EpisodeStore(root)
    for i in range(2):
        store.save(make_episode(24, seed=i, size=64, action_dim=6), info={"source": "random", "task": "stand"})
    embed_store(store, "video-only", progress=False)
    return store


@pytest.mark.slow
def test_train_mfwm_killed_in_checkpoint_and_model_writes_resumes(tmp_path: Path) -> None:
    """Kill inside the 2nd checkpoint write, then inside the final mfwm.pt write; the rerun finishes the model."""
    from genrl_gym.models import MFWM
    from genrl_gym.models.mfwm import read_torch_file

    store = _tiny_embedded_store(tmp_path / "data")
    data = {p: p.read_bytes() for p in [*store.paths(), *store.root.glob("embeddings/*.npy")]}
    run = tmp_path / "run"
    cmd = ["-m", "genrl_gym.cli", "train-mfwm", "--data", str(store.root), "--out", str(run), "--preset", "tiny",
           "--steps", "6", "--checkpoint-every", "2"]
    r = _run(cmd, tmp_path, **{FAULT_ENV: "checkpoint.pt:2"})
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    assert int(read_torch_file(run / "checkpoint.pt", "training")["step"]) == 2  # the 1st checkpoint is intact
    assert list(run.glob(".checkpoint.pt.*.tmp"))
    r = _run(cmd, tmp_path, **{FAULT_ENV: "mfwm.pt:1"})  # resumes at step 2, killed writing the final model
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    assert int(read_torch_file(run / "checkpoint.pt", "training")["step"]) == 6 and not (run / "mfwm.pt").exists()
    r = _run(cmd, tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert MFWM.load(run / "mfwm.pt").config.preset == "tiny"
    assert not list(run.glob(".*.tmp"))
    assert all(p.read_bytes() == b for p, b in data.items())  # training never touches its data


@pytest.mark.slow
def test_train_agent_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    from helpers import save_random_clip, save_tiny_model

    from genrl_gym.agents import GenRLAgent

    model = save_tiny_model(tmp_path / "m.pt")
    clip = save_random_clip(tmp_path / "clip.gif", 20)
    run = tmp_path / "agent"
    cmd = ["-m", "genrl_gym.cli", "train-agent", "--model", str(model), "--prompt", str(clip), "--out", str(run),
           "--preset", "tiny", "--steps", "4", "--checkpoint-every", "1", "--device", "cpu"]
    r = _run(cmd, tmp_path, **{FAULT_ENV: "checkpoint.zip:2"})  # killed inside the checkpoint write at update 2
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    assert GenRLAgent.load(run / "checkpoint.zip").num_timesteps == 1 and not (run / "agent.zip").exists()
    r = _run(cmd, tmp_path, **{FAULT_ENV: "agent.zip:1"})  # resumes; killed inside the final agent.zip write
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    assert "resuming from" in r.stdout and "at update 1 of 4" in r.stdout
    r = _run(cmd, tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "at update 4 of 4" in r.stdout
    agent = GenRLAgent.load(run / "agent.zip")
    assert agent.num_timesteps == 4
    assert not list(run.glob(".*.tmp"))
    obs = {"image": np.zeros((64, 64, 3), np.uint8)}
    assert agent.predict(obs, deterministic=True)[0].shape == (6,)
    # another prompt in the same folder is not silently resumed
    other = save_random_clip(tmp_path / "other.gif", 20, seed=1)
    r = _run([*cmd[:6], str(other), *cmd[7:]], tmp_path)
    assert r.returncode == 2 and "checkpoint.zip" in r.stderr and "--no-resume" in r.stderr
