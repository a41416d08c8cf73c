"""genrl_gym.data.npz_mmap: memory-mapping the arrays of an uncompressed .npz in place."""

from __future__ import annotations

import io
import mmap
import zipfile
from pathlib import Path

import numpy as np
import pytest

import genrl_gym  # noqa: F401  (render/torch guard, project rule)
from genrl_gym.data.npz_mmap import NpzFormatError, mmap_npz_array, open_npz, read_npy_header


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "image": rng.integers(0, 256, (5, 4, 4, 3), dtype=np.uint8),
        "action": rng.standard_normal((5, 2)).astype(np.float32),
        "flags": np.arange(5) % 2 == 0,
        "big_endian": np.arange(6, dtype=">i4").reshape(2, 3),
        "fortran": np.asfortranarray(rng.standard_normal((3, 4))),
        "scalar": np.array(3.5),
        "empty": np.zeros((0, 7), np.int16),
    }


def _write_npz(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> None:
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for key, data in members.items():
            zf.writestr(f"{key}.npy", data)


def _npy_bytes(array: np.ndarray, version: tuple[int, int] | None) -> bytes:
    fp = io.BytesIO()
    np.lib.format.write_array(fp, array, version=version)
    return fp.getvalue()


def test_round_trip_maps_every_array_in_place(tmp_path: Path) -> None:
    arrays = _arrays()
    path = tmp_path / "a.npz"
    np.savez(path, **arrays)
    opened = open_npz(path)
    assert sorted(opened) == sorted(arrays)
    for key, expected in arrays.items():
        one = mmap_npz_array(path, key)
        for got in (opened[key], one):
            assert got.dtype == expected.dtype and got.shape == expected.shape
            np.testing.assert_array_equal(got, expected)
            if expected.size:
                assert isinstance(got.base, mmap.mmap), key  # a view of the file, not a decoded copy
                assert not got.flags.writeable
    assert opened["fortran"].flags.f_contiguous and not opened["fortran"].flags.c_contiguous


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_every_npy_header_version_parses(tmp_path: Path, version: tuple[int, int]) -> None:
    array = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
    data = _npy_bytes(array, version)
    header = read_npy_header(b"xx" + data, 2)
    assert (header.shape, header.fortran_order, header.dtype) == ((2, 3, 4), False, np.dtype(np.float64))
    assert header.data_offset == 2 + len(data) - array.nbytes
    path = tmp_path / "v.npz"
    _write_npz(path, {"x": data})
    np.testing.assert_array_equal(mmap_npz_array(path, "x"), array)


def test_compressed_member_cannot_be_mapped_but_open_decodes_it(tmp_path: Path) -> None:
    arrays = _arrays()
    path = tmp_path / "c.npz"
    np.savez_compressed(path, **arrays)
    with pytest.raises(NpzFormatError, match=r"'image'.*compressed.*np\.savez"):
        mmap_npz_array(path, "image")
    opened = open_npz(path)  # the fallback EpisodeStore.open relies on
    for key, expected in arrays.items():
        np.testing.assert_array_equal(opened[key], expected)


def test_missing_key_lists_the_arrays_present(tmp_path: Path) -> None:
    path = tmp_path / "a.npz"
    np.savez(path, a=np.zeros(2), b=np.ones(2))
    with pytest.raises(KeyError, match=r"no array 'c' \(has \['a', 'b'\]\)"):
        mmap_npz_array(path, "c")


def test_crc_mismatch_is_reported_only_when_verifying(tmp_path: Path) -> None:
    array = np.arange(1000, dtype=np.int32)
    path = tmp_path / "a.npz"
    np.savez(path, x=array)
    raw = bytearray(path.read_bytes())
    pos = raw.index(array[500:504].tobytes())
    raw[pos] ^= 0xFF
    path.write_bytes(bytes(raw))
    for call in (lambda: mmap_npz_array(path, "x"), lambda: open_npz(path)):
        with pytest.raises(NpzFormatError, match=r"CRC-32 mismatch in member 'x'"):
            call()
    assert mmap_npz_array(path, "x", verify=False)[500] != 500


@pytest.mark.parametrize("member, match", [
    (b"not an array at all", r"member 'x' is not a \.npy array"),
    (b"\x93NUMPY\x09\x00" + b"\x00" * 8, r"unsupported \.npy version 9"),
    (b"\x93NUMPY\x01\x00\x10\x00{'descr': 1}\n\n\n", r"unreadable \.npy header"),
])
def test_malformed_members_are_named(tmp_path: Path, member: bytes, match: str) -> None:
    path = tmp_path / "bad.npz"
    _write_npz(path, {"x": member})
    with pytest.raises(NpzFormatError, match=match):
        open_npz(path)


def test_size_disagreeing_with_header_and_object_arrays_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "short.npz"
    _write_npz(path, {"x": _npy_bytes(np.arange(10, dtype=np.int64), (1, 0))[:-8]})
    with pytest.raises(NpzFormatError, match=r"header says 80 bytes of data, member holds 72"):
        mmap_npz_array(path, "x")
    path = tmp_path / "obj.npz"
    np.savez(path, x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(NpzFormatError, match=r"holds Python objects"):
        mmap_npz_array(path, "x")


def test_non_npy_member_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "odd.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", b"hello")
    with pytest.raises(NpzFormatError, match=r"unexpected member 'readme\.txt'"):
        open_npz(path)
