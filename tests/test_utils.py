"""genrl_gym.utils.atomic_write: permissions as a plain open() gives them."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from genrl_gym.utils import atomic_write


@pytest.fixture
def umask() -> Iterator[None]:
    before = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(before)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664), (0o027, 0o640)])
def test_new_files_get_the_umask_permissions_of_a_plain_open(tmp_path: Path, umask: None, mask: int,
                                                             expected: int) -> None:
    os.umask(mask)
    with atomic_write(tmp_path / "report.json", "w") as f:
        f.write("{}")
    with open(tmp_path / "plain.json", "w") as f:
        f.write("{}")
    assert mode(tmp_path / "report.json") == expected == mode(tmp_path / "plain.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.json", "report.json"]  # no temp file left


def test_overwriting_keeps_the_existing_files_permissions(tmp_path: Path, umask: None) -> None:
    path = tmp_path / "shared.txt"
    with atomic_write(path, "w") as f:
        f.write("one")
    os.chmod(path, 0o640)
    os.umask(0o077)  # a plain open(path, "w") keeps 0o640 too: it truncates the existing file
    with atomic_write(path, "w") as f:
        f.write("two")
    assert path.read_text() == "two" and mode(path) == 0o640


def test_an_exception_mid_write_keeps_the_old_file_and_removes_the_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    with atomic_write(path) as f:
        f.write(b"old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_write(path) as f:
            f.write(b"new, half")
            raise RuntimeError("boom")
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_stale_temp_files_of_dead_writers_are_removed_live_ones_kept(tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    from genrl_gym.utils import STALE_TEMP_SECONDS, remove_stale_temp_files

    path = tmp_path / "ckpt.pt"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)  # exited and reaped: no such process now
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        names = {"dead": f".ckpt.pt.{dead_pid}-0a1b2c3d.tmp", "live": f".ckpt.pt.{live.pid}-0a1b2c3d.tmp",
                 "old": ".ckpt.pt.k2j4h5g6.tmp", "young": ".ckpt.pt.x9y8z7w6.tmp",
                 "other": f".other.pt.{dead_pid}-0a1b2c3d.tmp"}
        for name in names.values():
            (tmp_path / name).write_bytes(b"half a checkpoint")
        old = time.time() - STALE_TEMP_SECONDS - 10
        os.utime(tmp_path / names["old"], (old, old))  # a pid-less name of an earlier version, long abandoned
        with atomic_write(path) as f:
            f.write(b"complete")
        left = sorted(p.name for p in tmp_path.iterdir())
        assert left == sorted(["ckpt.pt", names["live"], names["young"], names["other"]])
        assert remove_stale_temp_files(path) == []  # nothing more to remove
    finally:
        live.kill()
        live.wait()
    assert [p.name for p in remove_stale_temp_files(path)] == [names["live"]]  # its writer is gone now
