"""Streaming replay sampler: fixed-length segments ``[B, T, ...]`` drawn from an :class:`EpisodeStore`.

How it scales: episode lengths come from file names (``-L<L>``), so indexing a store opens no file. A batch opens only
the episodes it samples, through :meth:`EpisodeStore.open`, which memory-maps the uncompressed ``.npz`` members in
place; only the pages of the sampled rows are read (the OS page cache does the caching). A small LRU of open
episodes (``max_open``) bounds the number of live mappings. Nothing loads the whole store into memory, so a store
much larger than RAM trains at disk/page-cache speed. Each episode's CRC is checked the first time the sampler opens it
(one sequential read; ``verify=False`` skips it), so a corrupt file raises :class:`DatasetError` instead of being
trained on.

Sampling rule: every valid (episode, start) pair is equally likely, i.e. an episode is chosen with probability
proportional to its number of valid starts ``L - T + 1`` and the start is uniform in ``[0, L - T]`` (not aligned to
the VLM's 8-frame windows). Episodes shorter than ``T`` rows have no valid start and are never sampled; a store with
no episode of at least ``T`` rows is an error. ``is_first[:, 0]`` stays as stored (the world model starts each
segment from a zero state anyway). GenRL's reference replay picks episodes uniformly instead; weighting by starts
makes every stored frame equally likely to be trained on when episode lengths differ.

Growing stores: every ``refresh_every`` batches the sampler re-lists the store directory and adds new episodes
(with ``with_embeddings=True``, new episodes join once their embedding file exists). Deleted episodes are dropped.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from genrl_gym.data.episodes import EpisodeStore
from genrl_gym.utils import DatasetError

__all__ = ["SequenceSampler"]


class SequenceSampler(Iterator[dict[str, np.ndarray]]):
    """Infinite iterator of batches ``dict[str, np.ndarray]`` with arrays ``[B, T, ...]``.

    :param store: the episode store (or its path).
    :param batch_size: ``B``, segments per batch.
    :param seq_len: ``T``, rows per segment.
    :param seed: seed of the sampler's generator; same seed + same store contents -> same batches.
    :param keys: episode keys to return (default: every key the store's episodes hold, e.g. image uint8 [B,T,H,W,3],
        action float32 [B,T,A], reward/task_reward float32 [B,T], is_first/is_last/is_terminal bool [B,T],
        proprio float32 [B,T,P]).
    :param with_embeddings: add ``embedding`` float32 [B, T, D] from ``embeddings/``; every episode present at
        construction must have its embedding file (else :class:`DatasetError`: run ``genrl embed``).
    :param refresh_every: re-list the store every this many batches (0: never) to pick up new episodes.
    :param max_open: episodes kept open (memory-mapped) in the LRU cache.
    :param verify: CRC-check each episode the first time it is opened.

    :raises DatasetError: empty store, no episode with at least ``seq_len`` rows, unknown keys, missing embeddings,
        or a corrupt episode file when it is sampled.
    """

    def __init__(self, store: EpisodeStore | str | Path, batch_size: int, seq_len: int, *, seed: int,
                 keys: Sequence[str] | None = None, with_embeddings: bool = False, refresh_every: int = 100,
                 max_open: int = 64, verify: bool = True) -> None:
        if batch_size < 1 or seq_len < 1:
            raise ValueError(f"SequenceSampler: batch_size and seq_len must be >= 1, got {batch_size}, {seq_len}.")
        if max_open < 1:
            raise ValueError(f"SequenceSampler: max_open must be >= 1, got {max_open}.")
        self.store = store if isinstance(store, EpisodeStore) else EpisodeStore(store, create=False)
        self.batch_size = int(batch_size)
        self.seq_len = int(seq_len)
        self.with_embeddings = bool(with_embeddings)
        self.refresh_every = int(refresh_every)
        self.max_open = int(max_open)
        self.verify = bool(verify)
        self._rng = np.random.default_rng(seed)
        self._open: OrderedDict[Path, dict[str, np.ndarray]] = OrderedDict()
        self._verified: set[Path] = set()
        self._batches = 0
        self._paths: list[Path] = []
        self._lengths = np.zeros(0, dtype=np.int64)
        self._cum_starts = np.zeros(0, dtype=np.int64)
        self.num_short = 0

        all_paths = self.store.paths()
        if not all_paths:
            raise DatasetError(f"{self.store.root}: the episode store is empty; collect episodes first "
                               f"(`genrl collect ...` / genrl_gym.data.collect).")
        if self.with_embeddings:
            missing = [p for p in all_paths if not self.store.has_embedding(p)]
            if missing:
                raise DatasetError(f"{self.store.root}: {len(missing)} of {len(all_paths)} episodes have no embeddings "
                                   f"(first: {missing[0].name}); run `genrl embed` on this store "
                                   f"(genrl_gym.vlm.embed.embed_store) first.")
        self._refresh(all_paths)
        if not self._paths:
            longest = max(self.store.episode_length(p) for p in all_paths)
            raise DatasetError(f"{self.store.root}: no episode has at least seq_len={self.seq_len} rows (longest: "
                               f"{longest}); lower seq_len or collect longer episodes.")
        first = self._episode(0)
        available = sorted(first)
        if keys is None:
            self.keys = tuple(k for k in available if k != "embedding")
        else:
            unknown = [k for k in keys if k not in available or k == "embedding"]
            if unknown:
                raise DatasetError(f"{self.store.root}: unknown key(s) {unknown}; episodes hold "
                                   f"{[k for k in available if k != 'embedding']} (use with_embeddings=True for "
                                   f"'embedding').")
            self.keys = tuple(keys)
        if self.with_embeddings:
            self.keys = self.keys + ("embedding",)
        # per-key trailing shape and dtype, fixed by the first episode (the store enforces consistency on save)
        self._spec = {k: (first[k].shape[1:], first[k].dtype) for k in self.keys}

    # ------------------------------------------------------------------ index
    def _refresh(self, paths: list[Path] | None = None) -> None:
        """Re-list the store; keep episodes with at least ``seq_len`` rows (and embeddings if needed)."""
        paths = self.store.paths() if paths is None else paths
        keep, lengths, short = [], [], 0
        for p in paths:
            length = self.store.episode_length(p)
            if length < self.seq_len:
                short += 1
                continue
            if self.with_embeddings and not self.store.has_embedding(p):
                continue  # appended after the embedding pass reaches it
            keep.append(p)
            lengths.append(length)
        self._paths = keep
        self._lengths = np.asarray(lengths, dtype=np.int64)
        self._cum_starts = np.cumsum(self._lengths - self.seq_len + 1)
        self.num_short = short
        present = set(keep)
        for p in [p for p in self._open if p not in present]:
            del self._open[p]

    def refresh(self) -> None:
        """Re-list the store now (also done automatically every ``refresh_every`` batches)."""
        self._refresh()
        if not self._paths:
            raise DatasetError(f"{self.store.root}: no episode with at least seq_len={self.seq_len} rows is left in "
                               f"the store (were episodes deleted?).")

    @property
    def num_episodes(self) -> int:
        """Episodes that can be sampled (at least ``seq_len`` rows)."""
        return len(self._paths)

    @property
    def num_starts(self) -> int:
        """Valid (episode, start) pairs: ``sum(L - T + 1)`` over sampleable episodes."""
        return int(self._cum_starts[-1]) if len(self._cum_starts) else 0

    def _episode(self, index: int) -> dict[str, np.ndarray]:
        path = self._paths[index]
        ep = self._open.get(path)
        if ep is not None:
            self._open.move_to_end(path)
            return ep
        verify = self.verify and path not in self._verified
        ep = self.store.open(path, with_embeddings=self.with_embeddings, verify=verify)
        self._verified.add(path)
        if ep["is_first"].shape[0] != self._lengths[index]:  # defensive: open() already checks name vs contents
            raise DatasetError(f"{path}: length changed while sampling; the file was replaced. Restart training.")
        self._open[path] = ep
        if len(self._open) > self.max_open:
            self._open.popitem(last=False)  # dropping the arrays unmaps the file
        return ep

    # ------------------------------------------------------------------ sampling
    def sample(self) -> dict[str, np.ndarray]:
        """One batch: dict of freshly allocated arrays ``[B, T, ...]`` (never views into the files)."""
        if self.refresh_every and self._batches and self._batches % self.refresh_every == 0:
            self.refresh()
        self._batches += 1
        B, T = self.batch_size, self.seq_len
        flat = self._rng.integers(0, self.num_starts, size=B)
        episodes = np.searchsorted(self._cum_starts, flat, side="right")
        starts = flat - np.concatenate([[0], self._cum_starts])[episodes]
        batch = {k: np.empty((B, T) + shape, dtype=dtype) for k, (shape, dtype) in self._spec.items()}
        for b, (e, s) in enumerate(zip(episodes, starts)):
            ep = self._episode(int(e))
            for k in self.keys:
                src = ep[k]
                if src.shape[1:] != self._spec[k][0]:
                    raise DatasetError(f"{self._paths[int(e)]}: {k!r} has shape {src.shape[1:]} per row, other episodes "
                                       f"{self._spec[k][0]}; the store mixes incompatible episodes.")
                batch[k][b] = src[s:s + T]
        return batch

    def __iter__(self) -> SequenceSampler:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        return self.sample()

    def __repr__(self) -> str:
        return (f"SequenceSampler({str(self.store.root)!r}, B={self.batch_size}, T={self.seq_len}, "
                f"episodes={self.num_episodes}, starts={self.num_starts}, short={self.num_short})")
