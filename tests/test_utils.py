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
