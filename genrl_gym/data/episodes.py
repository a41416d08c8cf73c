"""On-disk episode store: one uncompressed ``.npz`` file per episode, plus ``store.json`` and ``embeddings/``.

Layout of a store directory::

    root/
      store.json                    metadata (domain, render settings, shapes, counts, per-episode info), atomic
      ep-000000-L501.npz            one episode per file (index, length = rows), written atomically
      ep-000001-L501.npz
      embeddings/ep-000000-L501.npy float32 [L, D] VLM embeddings (written by ``genrl_gym.vlm.embed``)
      quarantine/                   damaged episodes (and embeddings/) moved aside by ``genrl store verify --quarantine``
      .lock                         short advisory lock around store.json updates
      .episodes.lock                writer lock of the process adding episodes (holds its pid and command line)
      .embeddings.lock              writer lock of the process writing embeddings

Why one uncompressed ``.npz`` per episode: a single file makes the write atomic (temp file + fsync + rename), and
``np.savez`` stores members uncompressed (ZIP_STORED), so each member's ``.npy`` payload sits contiguously at a fixed
offset inside the file. :meth:`EpisodeStore.open` memory-maps those payloads directly (no decoding, no copy; see
:mod:`genrl_gym.data.npz_mmap`), which is what lets :class:`genrl_gym.data.SequenceSampler` stream segments from a
store far larger than RAM. Compressed files
(e.g. written with ``np.savez_compressed`` by other tools) still load; their members are decoded into memory instead.

Episode format (length ``L`` = agent steps + 1; row 0 is the reset observation, its action/reward rows are zeros):

==============  =========  ==============  ==========================================================
key             dtype      shape           meaning
==============  =========  ==============  ==========================================================
image           uint8      [L, H, W, 3]    rendered frame after the step (row 0: after reset)
action          float32    [L, A]          action that led to this row's frame (row 0: zeros)
reward          float32    [L]             the env's reward (row 0: 0)
task_reward     float32    [L]             the domain's true reward (row 0: 0)
is_first        bool       [L]             True on row 0 only
is_last         bool       [L]             True on the last row only
is_terminal     bool       [L]             True only on the last row, and only if the episode terminated
proprio         float32    [L, P]          optional proprioceptive state
==============  =========  ==============  ==========================================================

Further keys are allowed if they are numeric/bool arrays with leading dimension ``L`` (they are recorded in
``store.json["keys"]`` and every later episode must carry the same key set). ``embedding`` is reserved: embeddings
live in ``embeddings/<stem>.npy``.

Concurrency: any number of readers. One process at a time may add episodes (``save``, :func:`genrl_gym.data.collect`)
and one may write embeddings (``save_embedding``, ``genrl embed``): each holds a ``fcntl.flock`` writer lock
(``.episodes.lock`` / ``.embeddings.lock``) for as long as it writes, and a second process is refused with
:class:`StoreLockedError` naming the lock file and the holder's pid (two collectors would pick the same episode indices
and seeds). The kernel releases the lock when the holder exits, even on ``kill -9``, so no stale lock is ever left.
Collecting and embedding may run at the same time. ``store.json`` updates serialise through ``.lock``.

Crashes: every file is written to a temporary file and renamed into place, so a killed writer leaves no partial
episode, embedding or ``store.json``. An episode's info is recorded in ``store.json`` *before* its file is renamed into
place, and info only counts for files that exist, so a kill never leaves an episode that resumed collection does not
recognise. Temporary files of killed writers are removed by the next writer.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import struct
import sys
import threading
import time
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from genrl_gym.data.npz_mmap import NpzFormatError, open_npz
from genrl_gym.utils import DatasetError, atomic_write

try:  # POSIX advisory locks; on platforms without fcntl writers are not serialised across processes
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "EpisodeStore",
    "REQUIRED_KEYS",
    "OPTIONAL_KEYS",
    "validate_episode",
    "EPISODE_NAME_RE",
    "Damage",
    "StoreLockedError",
    "WRITER_LOCKS",
]

FORMAT = "genrl_gym.episodes/1"
STORE_JSON = "store.json"
EMBEDDINGS_DIR = "embeddings"
EPISODE_NAME_RE = re.compile(r"^ep-(\d+)-L(\d+)$")
_LENGTH_SUFFIX_RE = re.compile(r"-L(\d+)$")

# key -> (dtype, ndim). Trailing-dimension rules are checked in validate_episode.
REQUIRED_KEYS: dict[str, tuple[np.dtype, int]] = {
    "image": (np.dtype(np.uint8), 4),
    "action": (np.dtype(np.float32), 2),
    "reward": (np.dtype(np.float32), 1),
    "task_reward": (np.dtype(np.float32), 1),
    "is_first": (np.dtype(np.bool_), 1),
    "is_last": (np.dtype(np.bool_), 1),
    "is_terminal": (np.dtype(np.bool_), 1),
}
OPTIONAL_KEYS: dict[str, tuple[np.dtype, int]] = {
    "proprio": (np.dtype(np.float32), 2),
}
_RESERVED_KEYS = ("embedding",)
QUARANTINE_DIR = "quarantine"
#: Writer roles and their lock files inside the store.
WRITER_LOCKS = {"episodes": ".episodes.lock", "embeddings": ".embeddings.lock"}
# (store root, role) -> (pid, fd, depth) of the writer locks this process holds (re-entrant within a process)
_held_locks: dict[tuple[str, str], tuple[int, int, int]] = {}
_held_guard = threading.Lock()


class StoreLockedError(DatasetError):
    """Another process is writing to the episode store (it holds the store's writer lock)."""


@dataclass(frozen=True)
class Damage:
    """A damaged file found by :meth:`EpisodeStore.check`.

    :param kind: ``"episode"`` (the episode file; its embedding goes aside with it) or ``"embedding"`` (only the
        embedding file is damaged; ``genrl embed`` re-creates it).
    :param path: the damaged file.
    :param episode: the episode file it belongs to.
    :param problem: what is wrong (the loader's error message).
    """

    kind: str
    path: Path
    episode: Path
    problem: str

_FIX_CORRUPT = ("move it aside with `genrl store verify <store> --quarantine` (which lists every damaged file; training "
                "then uses the rest) or delete it and its embedding under embeddings/, then re-collect the missing "
                "episode (`genrl collect ...` with the same arguments / genrl_gym.data.collect fills the gap)")


def _corrupt(path: Path, what: str) -> DatasetError:
    return DatasetError(f"{path}: truncated or corrupt episode file ({what}); {_FIX_CORRUPT}.")


def validate_episode(episode: Mapping[str, Any], *, where: str = "episode") -> int:
    """Check keys, dtypes, shapes and flags of an episode; return its length ``L`` (rows).

    :param episode: mapping of key -> numpy array, every array with leading dimension ``L`` (see module docstring).
    :param where: name used in error messages (a file path or "episode").

    :return: ``L``, the number of rows (agent steps + 1).

    :raises DatasetError: naming the first problem found and how to fix it.
    """
    missing = [k for k in REQUIRED_KEYS if k not in episode]
    if missing:
        raise DatasetError(f"{where}: missing key(s) {missing}; an episode needs {sorted(REQUIRED_KEYS)} "
                           f"(optional: {sorted(OPTIONAL_KEYS)}).")
    for key in _RESERVED_KEYS:
        if key in episode:
            raise DatasetError(f"{where}: key {key!r} is reserved; embeddings are stored in embeddings/<episode>.npy "
                               f"(EpisodeStore.save_embedding / `genrl embed`), not inside the episode.")
    length: int | None = None
    for key, value in episode.items():
        if not isinstance(value, np.ndarray):
            raise DatasetError(f"{where}: {key!r} is a {type(value).__name__}, expected a numpy array.")
        spec = REQUIRED_KEYS.get(key) or OPTIONAL_KEYS.get(key)
        if spec is not None:
            dtype, ndim = spec
            if value.dtype != dtype:
                raise DatasetError(f"{where}: {key!r} has dtype {value.dtype}, expected {dtype} "
                                   f"(convert with .astype(np.{dtype.name})).")
            if value.ndim != ndim:
                raise DatasetError(f"{where}: {key!r} has shape {value.shape}, expected {ndim} dimensions.")
        elif value.dtype.kind not in "biuf" or value.ndim < 1:
            raise DatasetError(f"{where}: extra key {key!r} must be a numeric or bool array with a leading time "
                               f"dimension, got dtype {value.dtype} shape {value.shape}.")
        if length is None:
            length = int(value.shape[0])
        elif value.shape[0] != length:
            raise DatasetError(f"{where}: length mismatch: {key!r} has {value.shape[0]} rows, other keys have {length}; "
                               f"every key must have one row per step (L = agent steps + 1).")
    assert length is not None
    if length < 1:
        raise DatasetError(f"{where}: empty episode (0 rows).")
    image = episode["image"]
    if image.shape[-1] != 3:
        raise DatasetError(f"{where}: 'image' has shape {image.shape}, expected [L, H, W, 3] (channel-last RGB uint8).")
    for key in ("action", "reward", "task_reward") + (("proprio",) if "proprio" in episode else ()):
        if not np.all(np.isfinite(episode[key])):
            raise DatasetError(f"{where}: {key!r} contains NaN or inf values.")
    is_first, is_last, is_terminal = episode["is_first"], episode["is_last"], episode["is_terminal"]
    if not is_first[0] or is_first[1:].any():
        raise DatasetError(f"{where}: 'is_first' must be True on row 0 only (one episode per file).")
    if not is_last[-1] or is_last[:-1].any():
        raise DatasetError(f"{where}: 'is_last' must be True on the last row only (one episode per file).")
    if is_terminal[:-1].any():
        raise DatasetError(f"{where}: 'is_terminal' may only be True on the last row.")
    return length


def _json_default(obj: Any) -> Any:
    """JSON encoder fallback for numpy scalars/arrays and paths in metadata."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"metadata value of type {type(obj).__name__} is not JSON serialisable")


class EpisodeStore:
    """A directory of episodes (one ``.npz`` per episode) with ``store.json`` metadata and ``embeddings/``.

    :param root: store directory.
    :param create: create ``root`` and/or an initial ``store.json`` if missing; if False, a missing directory or
        ``store.json`` is a :class:`DatasetError`.

    Example::

        store = EpisodeStore("data/walker")
        path = store.save(episode, info={"source": "random", "task": "stand"})
        ep = store.load(path)                  # dict of arrays, validated
        len(store), store.num_frames           # episodes, rows
    """

    def __init__(self, root: str | os.PathLike[str], *, create: bool = True) -> None:
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            if self.root.exists():
                raise DatasetError(f"{self.root}: not a directory; an episode store is a directory of .npz files.")
            if not create:
                raise DatasetError(f"{self.root}: no episode store here; collect episodes first "
                                   f"(`genrl collect ...` / genrl_gym.data.collect) or pass create=True.")
            self.root.mkdir(parents=True, exist_ok=True)
        self._meta_cache: tuple[tuple[int, int], dict[str, Any]] | None = None
        self._length_cache: dict[str, int] = {}
        if not (self.root / STORE_JSON).exists():
            if not create:
                raise DatasetError(f"{self.root}: no {STORE_JSON}, so this is not an episode store; collect episodes "
                                   f"into it first (`genrl collect ...` / genrl_gym.data.collect) or pass create=True.")
            with self._locked():
                if not (self.root / STORE_JSON).exists():
                    self._write_metadata({"format": FORMAT, "created": time.time(), "num_episodes": 0, "num_frames": 0,
                                          "episodes": {}})
        self._check_format()

    def __repr__(self) -> str:
        return f"EpisodeStore({str(self.root)!r}, episodes={len(self)}, frames={self.num_frames})"

    # ------------------------------------------------------------------ locking and metadata
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Exclusive advisory lock on ``root/.lock`` (serialises writers across processes)."""
        if fcntl is None:  # pragma: no cover
            yield
            return
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    @contextlib.contextmanager
    def writing(self, *roles: str) -> Iterator[None]:
        """Hold the store's writer lock(s) for a block: ``"episodes"`` (adding episodes) and/or ``"embeddings"``.

        Non-blocking: if another process holds a lock, :class:`StoreLockedError` names the lock file and that process's
        pid and command line. Re-entrant within one process (``collect`` holds ``"episodes"`` around its ``save``
        calls). On taking a lock, temporary files left by a killed writer of that role are removed.

        :param roles: keys of :data:`WRITER_LOCKS`.
        :raises StoreLockedError: another process is writing.
        """
        taken: list[str] = []
        try:
            for role in roles:
                self._acquire(role)
                taken.append(role)
            yield
        finally:
            for role in reversed(taken):
                self._release(role)

    def _lock_key(self, role: str) -> tuple[str, str]:
        if role not in WRITER_LOCKS:
            raise ValueError(f"writer role {role!r}; choose from {sorted(WRITER_LOCKS)}")
        return (os.path.realpath(self.root), role)

    def _acquire(self, role: str) -> None:
        key = self._lock_key(role)
        pid = os.getpid()
        with _held_guard:
            held = _held_locks.get(key)
            if held is not None and held[0] == pid:
                _held_locks[key] = (pid, held[1], held[2] + 1)
                return
            if fcntl is None:  # pragma: no cover
                _held_locks[key] = (pid, -1, 1)
                return
            lock_path = self.root / WRITER_LOCKS[role]
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 1024, 0).decode(errors="replace").strip() or "pid unknown (it is starting)"
                os.close(fd)
                hpid, _, cmd = holder.partition(" ")
                raise StoreLockedError(
                    f"{self.root}: another process is already writing {role} to this episode store (pid {hpid}"
                    + (f": {cmd}" if cmd else "") + f"; lock file {lock_path}). Two writers would interleave episode "
                    "indices and seeds. Wait for it to finish or stop it, then run this command again; the lock is "
                    "released when that process exits, even if it is killed.") from None
            except BaseException:
                os.close(fd)
                raise
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{pid} {' '.join(sys.argv)[:900]}\n".encode(), 0)
            _held_locks[key] = (pid, fd, 1)
        self._remove_stale_temps(role)

    def _release(self, role: str) -> None:
        key = self._lock_key(role)
        with _held_guard:
            pid, fd, depth = _held_locks[key]
            if depth > 1:
                _held_locks[key] = (pid, fd, depth - 1)
                return
            del _held_locks[key]
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

    def _remove_stale_temps(self, role: str) -> None:
        """Delete temporary files (``.<name>.*.tmp``) of killed writers; only called with the role's lock held."""
        folder, suffix = (self.root, ".npz") if role == "episodes" else (self.root / EMBEDDINGS_DIR, ".npy")
        with contextlib.suppress(FileNotFoundError), os.scandir(folder) as it:
            for entry in it:
                name = entry.name
                if name.startswith(".") and name.endswith(".tmp") and f"{suffix}." in name:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)

    def _fsync_dir(self, directory: Path | None = None) -> None:
        """fsync the directory so that a completed rename survives a power loss."""
        with contextlib.suppress(OSError):
            fd = os.open(directory or self.root, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _read_metadata(self) -> dict[str, Any]:
        path = self.root / STORE_JSON
        try:
            st = path.stat()
        except FileNotFoundError as e:
            raise DatasetError(f"{path}: missing; this directory is not an episode store (re-create it with "
                               f"EpisodeStore(root, create=True) and re-collect).") from e
        key = (st.st_mtime_ns, st.st_size)
        if self._meta_cache is not None and self._meta_cache[0] == key:
            return self._meta_cache[1]
        try:
            meta = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DatasetError(f"{path}: corrupt store metadata ({e}); restore it from a backup or delete it "
                               f"(episode files stay valid; shapes are re-learned from the next save).") from e
        if not isinstance(meta, dict):
            raise DatasetError(f"{path}: corrupt store metadata (not a JSON object); delete it to rebuild.")
        self._meta_cache = (key, meta)
        return meta

    def _write_metadata(self, meta: dict[str, Any]) -> None:
        """Write ``store.json`` atomically; the caller holds ``.lock``, so older temporary copies are stale."""
        for tmp in self.root.glob(f".{STORE_JSON}.*.tmp"):
            tmp.unlink(missing_ok=True)
        with atomic_write(self.root / STORE_JSON, "w") as f:
            json.dump(meta, f, indent=1, sort_keys=True, default=_json_default)
        self._fsync_dir()
        self._meta_cache = None

    def _check_format(self) -> None:
        fmt = self._read_metadata().get("format")
        if fmt != FORMAT:
            raise DatasetError(f"{self.root / STORE_JSON}: unknown store format {fmt!r} (expected {FORMAT!r}); "
                               f"this store was written by another tool or version.")

    @property
    def metadata(self) -> dict[str, Any]:
        """Contents of ``store.json`` (a copy): domain, tasks, render_settings, action_dim, image_size, proprio_dim,
        keys, num_episodes, num_frames, vlm (written by the embedding pass), episodes (per-episode info) and any
        key passed to :meth:`update_metadata`."""
        return json.loads(json.dumps(self._read_metadata()))

    def update_metadata(self, **kw: Any) -> dict[str, Any]:
        """Merge ``kw`` into ``store.json`` (atomic read-modify-write under the store lock); return the new metadata.

        ``format`` and ``episodes`` are managed by the store and cannot be set here.
        """
        bad = {"format", "episodes", "quarantined"} & kw.keys()
        if bad:
            raise ValueError(f"update_metadata: {sorted(bad)} are managed by the store; use save(..., info=...) for "
                             f"per-episode metadata.")
        json.dumps(kw, default=_json_default)  # fail before touching the file if a value is not JSON-able
        with self._locked():
            self._meta_cache = None
            meta = self._read_metadata()
            meta = {**meta, **kw}
            self._write_metadata(meta)
        return self.metadata

    # ------------------------------------------------------------------ listing
    def paths(self) -> list[Path]:
        """Episode files, sorted by name (``ep-000000-L501.npz`` ...). Temporary/hidden files are never listed."""
        out = []
        with os.scandir(self.root) as it:
            for entry in it:
                if entry.name.endswith(".npz") and not entry.name.startswith(".") and entry.is_file():
                    out.append(Path(entry.path))
        return sorted(out)

    def __len__(self) -> int:
        return len(self.paths())

    def __iter__(self) -> Iterator[Path]:
        return iter(self.paths())

    def episode_length(self, path: str | os.PathLike[str]) -> int:
        """Rows ``L`` of an episode, read from its name (``-L<L>``) when present, else from the file's header."""
        path = self._resolve(path)
        m = _LENGTH_SUFFIX_RE.search(path.stem)
        if m:
            return int(m.group(1))
        cached = self._length_cache.get(path.name)
        if cached is None:
            cached = int(self.open(path, verify=False)["is_first"].shape[0])
            self._length_cache[path.name] = cached
        return cached

    @property
    def num_frames(self) -> int:
        """Total rows (frames) over all episodes."""
        return sum(self.episode_length(p) for p in self.paths())

    def _resolve(self, path: str | os.PathLike[str]) -> Path:
        """Accept an absolute path, a path relative to the root, a file name or a stem."""
        p = Path(path)
        if p.is_absolute() or p.exists():
            return p
        q = self.root / p
        if q.suffix != ".npz" and not q.exists():
            q = q.with_name(q.name + ".npz")
        return q

    def _next_index(self) -> int:
        idx = -1
        for p in self.paths():
            m = EPISODE_NAME_RE.match(p.stem)
            if m:
                idx = max(idx, int(m.group(1)))
        return idx + 1

    # ------------------------------------------------------------------ writing
    def save(self, episode: Mapping[str, np.ndarray], *, name: str | None = None,
             info: Mapping[str, Any] | None = None) -> Path:
        """Validate and atomically write one episode; record its info in ``store.json``.

        :param episode: dict of arrays (see the module docstring for keys, dtypes and shapes ``[L, ...]``).
        :param name: file stem; default ``ep-<next index:06d>``. ``-L<L>`` is appended (unless the name already ends so)
            so that lengths are known without opening files.
        :param info: JSON-able per-episode metadata (e.g. ``source``, ``task``, ``seed``, ``return``) stored in
            ``store.json["episodes"][<stem>]``.

        :return: The path of the new ``.npz`` file.

        :raises DatasetError: invalid episode, shapes inconsistent with the store's earlier episodes, or name taken.
        """
        length = validate_episode(episode)
        arrays = {k: np.ascontiguousarray(v) for k, v in episode.items()}
        info = dict(info or {})
        json.dumps(info, default=_json_default)  # fail early on non-JSON-able info
        with self.writing("episodes"), self._locked():
            meta = dict(self._read_metadata())
            shape_meta = self._check_consistent(arrays, meta)
            if name is None:
                stem = f"ep-{self._next_index():06d}-L{length}"
            else:
                if "/" in name or name.startswith(".") or name.endswith(".npz"):
                    raise ValueError(f"save: name must be a plain file stem without '/', leading '.' or '.npz', got "
                                     f"{name!r}")
                m = _LENGTH_SUFFIX_RE.search(name)
                if m and int(m.group(1)) != length:
                    raise DatasetError(f"save: name {name!r} says L={m.group(1)} but the episode has {length} rows.")
                stem = name if m else f"{name}-L{length}"
            path = self.root / f"{stem}.npz"
            if path.exists():
                raise DatasetError(f"{path}: an episode with this name already exists; pick another name.")
            # store.json first, then the episode: info only counts for files that exist (episode_info), so a kill in
            # between leaves info of a missing file (overwritten by the next save of this name), never an episode
            # file without info (which `source`-based resume would not count, and would collect again).
            before = meta
            meta = dict(meta)
            meta.update(shape_meta)
            episodes = dict(meta.get("episodes") or {})
            episodes[stem] = {"length": length, **info, "saved": time.time()}
            meta["episodes"] = episodes
            if "task" in info and info["task"] is not None:
                tasks = list(meta.get("tasks") or [])
                if info["task"] not in tasks:
                    tasks.append(info["task"])
                meta["tasks"] = tasks
            self._write_metadata(meta)
            try:
                with atomic_write(path, "wb") as f:
                    np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy stubs: **kwds clash with allow_pickle; uncompressed: lets readers memory-map members (see module docstring)
            except BaseException:
                self._write_metadata(before)  # an error (not a kill): leave store.json as it was
                raise
            self._fsync_dir()
            # counts last, recounted from the files (so counts left stale by a kill are corrected here)
            present = self.paths()
            meta.update(num_episodes=len(present), num_frames=sum(self.episode_length(p) for p in present))
            self._write_metadata(meta)
        return path

    def _check_consistent(self, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> dict[str, Any]:
        """Compare an episode's shapes with the store's (recorded by the first save); return the shape metadata."""
        image = arrays["image"]
        new = {
            "keys": sorted(arrays),
            "image_size": [int(image.shape[1]), int(image.shape[2])],
            "action_dim": int(arrays["action"].shape[1]),
            "proprio_dim": int(arrays["proprio"].shape[1]) if "proprio" in arrays else None,
        }
        for key, value in new.items():
            old = meta.get(key)
            if old is not None and old != value:
                raise DatasetError(f"{self.root}: episode does not match the store: {key} is {value} but the store holds "
                                   f"{old}; use a separate store for different shapes/keys.")
        return new

    def embedding_path(self, path: str | os.PathLike[str]) -> Path:
        """``root/embeddings/<episode stem>.npy`` for an episode path/name."""
        return self.root / EMBEDDINGS_DIR / (self._resolve(path).stem + ".npy")

    def has_embedding(self, path: str | os.PathLike[str]) -> bool:
        """Whether the embedding file of an episode exists."""
        return self.embedding_path(path).is_file()

    def save_embedding(self, path: str | os.PathLike[str], embedding: np.ndarray) -> Path:
        """Atomically write the VLM embeddings ``float32 [L, D]`` of an episode; return the ``.npy`` path.

        The VLM identity is recorded separately (``update_metadata(vlm=...)``, done by ``genrl_gym.vlm.embed``).
        """
        episode_path = self._resolve(path)
        if not episode_path.is_file():
            raise DatasetError(f"{episode_path}: no such episode; cannot attach embeddings to it.")
        length = self.episode_length(episode_path)
        self._check_embedding(embedding, length, where=str(episode_path))
        out = self.embedding_path(episode_path)
        with self.writing("embeddings"), atomic_write(out, "wb") as f:
            np.save(f, np.ascontiguousarray(embedding))
        self._fsync_dir(out.parent)
        return out

    @staticmethod
    def _check_embedding(embedding: np.ndarray, length: int, *, where: str) -> None:
        if not isinstance(embedding, np.ndarray) or embedding.dtype != np.float32 or embedding.ndim != 2:
            raise DatasetError(f"{where}: embedding must be a float32 array [L, D], got "
                               f"{getattr(embedding, 'dtype', type(embedding).__name__)} "
                               f"{getattr(embedding, 'shape', '')}; re-run `genrl embed`.")
        if embedding.shape[0] != length:
            raise DatasetError(f"{where}: embedding has {embedding.shape[0]} rows but the episode has {length}; "
                               f"delete the embedding file and re-run `genrl embed`.")

    # ------------------------------------------------------------------ reading
    def load(self, path: str | os.PathLike[str], *, with_embeddings: bool = False,
             keys: list[str] | tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
        """Read one episode fully into memory (CRC-checked) and validate it.

        :param path: episode path, or its name/stem inside the store.
        :param with_embeddings: also load ``embeddings/<stem>.npy`` as key ``embedding`` ``float32 [L, D]``.
        :param keys: restrict the returned keys (all keys are still read and validated).

        :return: dict of arrays ``[L, ...]`` (see the module docstring).

        :raises DatasetError: file missing, truncated or corrupt (naming the file and the fix), invalid contents, or
            missing embeddings (run ``genrl embed``).
        """
        path = self._resolve(path)
        if not path.is_file():
            raise DatasetError(f"{path}: no such episode file in {self.root}.")
        try:
            with np.load(path, allow_pickle=False) as z:
                episode = {k: z[k] for k in z.files}
        except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError, KeyError) as e:
            raise _corrupt(path, f"{type(e).__name__}: {e}") from e
        length = validate_episode(episode, where=str(path))
        self._check_name_length(path, length)
        if with_embeddings:
            episode["embedding"] = self._load_embedding(path, length, mmap=False)
        if keys is not None:
            unknown = [k for k in keys if k not in episode]
            if unknown:
                raise DatasetError(f"{path}: requested key(s) {unknown} not in episode (has {sorted(episode)}).")
            episode = {k: episode[k] for k in keys}
        return episode

    def _check_name_length(self, path: Path, length: int) -> None:
        m = _LENGTH_SUFFIX_RE.search(path.stem)
        if m and int(m.group(1)) != length:
            raise _corrupt(path, f"its name says L={m.group(1)} but it holds {length} rows")

    def _load_embedding(self, path: Path, length: int, *, mmap: bool) -> np.ndarray:
        epath = self.embedding_path(path)
        if not epath.is_file():
            raise DatasetError(f"{path}: no embeddings ({epath} missing); run `genrl embed` on this store "
                               f"(genrl_gym.vlm.embed.embed_store) before training with embeddings.")
        try:
            emb = np.load(epath, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise DatasetError(f"{epath}: truncated or corrupt embedding file ({e}); delete it and re-run "
                               f"`genrl embed`.") from e
        self._check_embedding(emb if isinstance(emb, np.ndarray) else np.asarray(emb), length, where=str(epath))
        return emb

    def open(self, path: str | os.PathLike[str], *, with_embeddings: bool = False,
             verify: bool = True) -> dict[str, np.ndarray]:
        """Memory-map one episode: read-only arrays ``[L, ...]`` backed by the file (no copy) where possible.

        Uncompressed members are mapped in place; compressed members are decoded into memory. The zip structure,
        ``.npy`` headers, member sizes, and flag/shape rules are always checked; with ``verify=True`` the CRC-32 of
        every member is also checked (one sequential read of the file), so bit rot is reported, not trained on.

        :raises DatasetError: as :meth:`load`.
        """
        path = self._resolve(path)
        if not path.is_file():
            raise DatasetError(f"{path}: no such episode file in {self.root} (deleted while in use?).")
        try:
            episode = open_npz(path, verify=verify)
        except NpzFormatError as e:
            raise _corrupt(path, str(e)) from e
        except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError, KeyError, struct.error) as e:
            raise _corrupt(path, f"{type(e).__name__}: {e}") from e
        length = validate_episode(episode, where=str(path))
        self._check_name_length(path, length)
        if with_embeddings:
            episode["embedding"] = self._load_embedding(path, length, mmap=True)
        return episode

    def verify(self, *, with_embeddings: bool = False, progress: bool = False) -> int:
        """Fully load and validate every episode (and embeddings); return the number checked.

        :raises DatasetError: at the first bad file, naming it and the fix.
        """
        paths = self.paths()
        iterator: Any = paths
        if progress:
            iterator = tqdm(paths, desc="verify", unit="ep")
        for p in iterator:
            self.load(p, with_embeddings=with_embeddings)
        return len(paths)

    def check(self, *, with_embeddings: bool = True, progress: bool = False) -> list[Damage]:
        """Read every episode (and embedding file) in full and list the damaged ones, without stopping at the first.

        An episode is damaged if it cannot be read, fails its CRC-32 check or breaks the format rules; an embedding
        file if it cannot be read, has the wrong dtype or shape, or holds NaN/inf. Missing embeddings are not damage
        (``genrl embed`` adds them).

        :param with_embeddings: also check ``embeddings/<stem>.npy`` of every episode that has one.
        :param progress: show a tqdm bar.
        :return: the damaged files, in episode order.
        """
        paths = self.paths()
        iterator: Any = paths
        if progress:
            iterator = tqdm(paths, desc="check", unit="ep")
        found: list[Damage] = []
        for p in iterator:
            try:
                episode = self.open(p, verify=True)
                length = int(episode["is_first"].shape[0])
                del episode
            except DatasetError as e:
                found.append(Damage("episode", p, p, str(e)))
                continue
            if with_embeddings and self.has_embedding(p):
                epath = self.embedding_path(p)
                try:
                    emb = self._load_embedding(p, length, mmap=True)
                    if not np.all(np.isfinite(emb)):
                        raise DatasetError(f"{epath}: embedding holds NaN or inf values; delete it and re-run "
                                           "`genrl embed`.")
                    del emb
                except DatasetError as e:
                    found.append(Damage("embedding", epath, p, str(e)))
        return found

    def quarantine(self, damaged: list[Damage]) -> list[Path]:
        """Move damaged files to ``root/quarantine/`` (embeddings to ``quarantine/embeddings/``) so that readers and
        training use the rest; record them in ``store.json["quarantined"]``.

        A damaged episode goes aside with its embedding; a damaged embedding goes aside alone (``genrl embed`` then
        re-embeds its episode). Files move first and ``store.json`` is rewritten atomically after, so a kill at any
        point leaves a consistent store (episode info only counts for files present). Collecting again with the same
        command re-collects quarantined episodes (their indices are free again). Takes both writer locks.

        :param damaged: what :meth:`check` returned.
        :return: the new paths of the moved files.
        :raises StoreLockedError: another process is writing to the store.
        """
        moved: list[Path] = []
        qdir = self.root / QUARANTINE_DIR
        with self.writing("episodes", "embeddings"), self._locked():
            reasons: dict[str, str] = {}
            for d in damaged:
                files = [d.path]
                if d.kind == "episode":
                    reasons[d.episode.stem] = d.problem
                    emb = self.embedding_path(d.episode)
                    files = ([emb] if emb.exists() else []) + [d.path]  # embedding first: no orphan in the store
                for f in files:
                    if not f.exists():
                        continue
                    dest_dir = qdir / EMBEDDINGS_DIR if f.suffix == ".npy" else qdir
                    dest_dir.mkdir(parents=True, exist_ok=True)
                    dest, n = dest_dir / f.name, 1
                    while dest.exists():  # an earlier quarantine of a re-collected episode of the same name
                        dest, n = dest_dir / f"{f.name}.{n}", n + 1
                    os.replace(f, dest)
                    self._fsync_dir(dest_dir)
                    self._fsync_dir(f.parent)
                    moved.append(dest)
            meta = dict(self._read_metadata())
            episodes = dict(meta.get("episodes") or {})
            quarantined = dict(meta.get("quarantined") or {})
            for stem, problem in reasons.items():
                quarantined[stem] = {**(episodes.pop(stem, None) or {}), "problem": problem, "quarantined": time.time()}
            present = self.paths()
            meta.update(episodes=episodes, quarantined=quarantined, num_episodes=len(present),
                        num_frames=sum(self.episode_length(p) for p in present))
            self._write_metadata(meta)
        return moved

    # ------------------------------------------------------------------ per-episode info
    def episode_info(self) -> dict[str, dict[str, Any]]:
        """Per-episode info from ``store.json`` for episodes whose file exists, keyed by file stem."""
        recorded = self._read_metadata().get("episodes") or {}
        present = {p.stem for p in self.paths()}
        return {stem: dict(v) for stem, v in recorded.items() if stem in present}

    def count(self, **match: Any) -> int:
        """Number of existing episodes whose recorded info matches every ``key=value`` (e.g. ``source="random"``)."""
        return sum(all(info.get(k) == v for k, v in match.items()) for info in self.episode_info().values())
