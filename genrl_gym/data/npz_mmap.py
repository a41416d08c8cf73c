"""Memory-map the arrays of an uncompressed ``.npz`` file in place (no decoding, no copy).

``np.savez`` stores each array as a ``<key>.npy`` member of a zip archive without compression (``ZIP_STORED``), so
the member's ``.npy`` payload sits contiguously at a fixed offset inside the file. ``np.load(..., mmap_mode="r")``
ignores ``mmap_mode`` for ``.npz`` files and decodes every member into memory; this module instead locates each
member through its zip local file header, parses the ``.npy`` header with numpy's public parser
(:func:`numpy.lib.format.read_magic`, :func:`~numpy.lib.format.read_array_header_1_0`,
:func:`~numpy.lib.format.read_array_header_2_0`) and returns a read-only :class:`numpy.ndarray` view of the mapped
file.

* :func:`mmap_npz_array` maps one array; a compressed member is an :class:`NpzFormatError` (it has no contiguous
  payload to map).
* :func:`open_npz` maps every array; compressed members (e.g. written by ``np.savez_compressed``) are decoded into
  memory instead, so any ``.npz`` without object arrays opens.

Both check the zip structure, each member's ``.npy`` header and size, and (with ``verify=True``) each member's
CRC-32 (one sequential read of the member), so bit rot is reported rather than silently returned. Object
(pickled) arrays are always refused.
"""

from __future__ import annotations

import io
import mmap
import os
import struct
import zipfile
import zlib
from typing import Any

import numpy as np

__all__ = ["NpzFormatError", "NpyHeader", "mmap_npz_array", "open_npz", "read_npy_header"]

#: size of a zip local file header before its file name and extra field (PKWARE APPNOTE 4.3.7)
_LOCAL_HEADER_SIZE = 30
_LOCAL_HEADER_MAGIC = b"PK\x03\x04"
_NPY_MAGIC = b"\x93NUMPY"


class NpzFormatError(ValueError):
    """A ``.npz`` member that is not a well-formed, mappable ``.npy`` array; the message names the member and why."""


class NpyHeader:
    """The parsed header of one ``.npy`` array.

    :param shape: array shape.
    :param fortran_order: True if the data is stored column-major.
    :param dtype: element type.
    :param data_offset: byte offset of the first data byte in the buffer the header was read from.
    """

    __slots__ = ("shape", "fortran_order", "dtype", "data_offset")

    def __init__(self, shape: tuple[int, ...], fortran_order: bool, dtype: np.dtype, data_offset: int) -> None:
        self.shape = shape
        self.fortran_order = fortran_order
        self.dtype = dtype
        self.data_offset = data_offset

    def __repr__(self) -> str:
        return (f"NpyHeader(shape={self.shape}, fortran_order={self.fortran_order}, dtype={self.dtype}, "
                f"data_offset={self.data_offset})")

    @property
    def nbytes(self) -> int:
        """Size of the array data in bytes."""
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def read_npy_header(buf: Any, start: int = 0, *, name: str = "array") -> NpyHeader:
    """Parse the ``.npy`` header that begins at ``buf[start]``, without reading the array data.

    Uses numpy's public header parsers, which validate the header dict and dtype without evaluating arbitrary code.
    Format versions 1.0 and 2.0 are parsed directly; a 3.0 header (2.0 with a UTF-8 instead of latin-1 header, which
    numpy writes only for structured dtypes with non-latin-1 field names) is parsed as 2.0 when it is plain ASCII.

    :param buf: a bytes-like object (``bytes``, ``mmap.mmap``, ``memoryview``) holding the ``.npy`` data.
    :param start: byte offset of the ``.npy`` magic string in ``buf``.
    :param name: what to call the array in error messages (e.g. the ``.npz`` member's key).
    :return: the parsed header; ``data_offset`` is relative to the start of ``buf``.
    :raises NpzFormatError: not a ``.npy`` header, an unsupported version, or an unreadable header.
    """
    prefix = bytes(buf[start:start + 12])
    if len(prefix) < 10 or prefix[:6] != _NPY_MAGIC:
        raise NpzFormatError(f"member {name!r} is not a .npy array")
    major = prefix[6]
    if major == 1:
        header_end = start + 10 + struct.unpack("<H", prefix[8:10])[0]
    elif major in (2, 3) and len(prefix) == 12:
        header_end = start + 12 + struct.unpack("<I", prefix[8:12])[0]
    else:
        raise NpzFormatError(f"member {name!r} has unsupported .npy version {major}")
    raw = bytes(buf[start:header_end])
    try:
        if major == 3:
            if not raw[12:].isascii():
                raise ValueError(".npy format 3.0 header with non-ASCII (UTF-8) text: only structured dtypes with "
                                 "non-latin-1 field names need it, and those cannot be memory-mapped here")
            raw = raw[:6] + b"\x02\x00" + raw[8:]  # identical to 2.0 for an ASCII header
        fp = io.BytesIO(raw)
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
    except Exception as e:  # noqa: BLE001 - any parse failure means a corrupt header
        raise NpzFormatError(f"member {name!r} has an unreadable .npy header: {e}") from e
    return NpyHeader(tuple(int(n) for n in shape), bool(fortran), np.dtype(dtype), header_end)


def _map_member(buf: Any, info: zipfile.ZipInfo, key: str, verify: bool) -> np.ndarray:
    """Array view of an uncompressed zip member of ``buf``, located through its local file header."""
    off = info.header_offset
    local = bytes(buf[off:off + _LOCAL_HEADER_SIZE])
    if len(local) < _LOCAL_HEADER_SIZE or local[:4] != _LOCAL_HEADER_MAGIC:
        raise NpzFormatError(f"bad local header for member {key!r}")
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    start = off + _LOCAL_HEADER_SIZE + name_len + extra_len
    end = start + info.file_size
    if end > len(buf):
        raise NpzFormatError(f"member {key!r} runs past the end of the file")
    if verify and zlib.crc32(memoryview(buf)[start:end]) != info.CRC:
        raise NpzFormatError(f"CRC-32 mismatch in member {key!r}")
    header = read_npy_header(buf, start, name=key)
    if header.dtype.hasobject:
        raise NpzFormatError(f"member {key!r} holds Python objects")
    if header.data_offset + header.nbytes != end:
        raise NpzFormatError(f"member {key!r}: header says {header.nbytes} bytes of data, member holds "
                             f"{end - header.data_offset}")
    return np.ndarray(header.shape, dtype=header.dtype, buffer=buf, offset=header.data_offset,
                      order="F" if header.fortran_order else "C")


def _key(info: zipfile.ZipInfo) -> str:
    if not info.filename.endswith(".npy"):
        raise NpzFormatError(f"unexpected member {info.filename!r}")
    return info.filename[:-4]


def open_npz(path: str | os.PathLike[str], *, verify: bool = True) -> dict[str, np.ndarray]:
    """Open every array of a ``.npz`` file: uncompressed members memory-mapped, compressed ones decoded.

    The returned arrays of uncompressed members are read-only views of a read-only memory map of the file; the map
    stays open for as long as any of them is referenced. Compressed members are decoded into memory (reading them to
    the end also checks their CRC-32).

    :param path: the ``.npz`` file.
    :param verify: check the CRC-32 of every uncompressed member (one sequential read of the file).
    :return: dict of key (member name without ``.npy``) -> array.
    :raises NpzFormatError: a member that is not a ``.npy`` array, a bad local header, a member running past the end
        of the file, a CRC-32 mismatch, an object array, or a size that disagrees with its header.
    :raises zipfile.BadZipFile: not a zip file, or a truncated one (its central directory is missing).
    :raises OSError: the file cannot be read.
    """
    with open(path, "rb") as fh:
        with zipfile.ZipFile(fh) as zf:  # reads the central directory: a truncated file fails here
            size = os.fstat(fh.fileno()).st_size
            buf = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
            arrays: dict[str, np.ndarray] = {}
            for info in zf.infolist():
                key = _key(info)
                if info.compress_type == zipfile.ZIP_STORED:
                    arrays[key] = _map_member(buf, info, key, verify)
                else:
                    with zf.open(info) as member:  # decoding reads to EOF, so the CRC is checked
                        arrays[key] = np.lib.format.read_array(member, allow_pickle=False)
    return arrays


def mmap_npz_array(path: str | os.PathLike[str], key: str, *, verify: bool = True) -> np.ndarray:
    """Memory-map one array of an uncompressed ``.npz`` file (as written by ``np.savez``).

    Example::

        np.savez("ep.npz", image=frames)
        image = mmap_npz_array("ep.npz", "image")   # read-only view of the file, nothing decoded

    :param path: the ``.npz`` file.
    :param key: the array's name (the keyword given to ``np.savez``; member ``<key>.npy``).
    :param verify: check the member's CRC-32 (one sequential read of the member).
    :return: a read-only array backed by a memory map of the file.
    :raises KeyError: no array named ``key`` in the file (the message lists those it has).
    :raises NpzFormatError: the member is compressed (``np.savez_compressed``), so it has no payload to map; or any
        of the problems listed in :func:`open_npz`.
    :raises zipfile.BadZipFile: not a zip file, or a truncated one.
    :raises OSError: the file cannot be read.
    """
    with open(path, "rb") as fh:
        with zipfile.ZipFile(fh) as zf:
            infos = {_key(info): info for info in zf.infolist()}
            if key not in infos:
                raise KeyError(f"{os.fspath(path)}: no array {key!r} (has {sorted(infos)})")
            info = infos[key]
            if info.compress_type != zipfile.ZIP_STORED:
                raise NpzFormatError(f"member {key!r} of {os.fspath(path)} is compressed (np.savez_compressed), so it "
                                     f"cannot be memory-mapped; read it with np.load, or rewrite the file with np.savez")
            buf = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            return _map_member(buf, info, key, verify)
