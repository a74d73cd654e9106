"""Training data from mined negatives: :class:`HardNegativeDataset`.

A map-style dataset over queries: item ``i`` is query ``i`` with one of its positives and
``negatives_per_item`` negatives drawn from its mined pool. The draw is a pure function of
``(seed, epoch, query, store version)`` computed with a counter-based hash (no global random
state), so DataLoader workers, any ``num_workers`` and resumed runs produce the same items.
Within a version each query's pool is shuffled once and consecutive epochs take consecutive
windows of it (rotation without repeats until the pool is used up, as Tevatron does).

The epoch and the pinned store version live in a small shared file, so ``set_epoch`` and
``use_version`` in the main process reach persistent DataLoader workers too.
"""

from __future__ import annotations

import mmap
import operator
import os
import tempfile
import weakref
from typing import Any, Mapping, Sequence, Union

import numpy as np

from ._arrays import as_count
from .errors import IdOutOfRangeError, ParameterError, ShapeError
from .store import NegativeStore, StoreVersion, check_ids_below

__all__ = ["HardNegativeDataset"]

PathLike = Union[str, "os.PathLike[str]"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser over a uint64 array (wrapping arithmetic)."""
    x = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _hash(*parts: Any) -> np.ndarray:
    """A 64-bit hash of broadcastable integer arrays (each part mixed in turn)."""
    h = np.zeros((), np.uint64)
    for p in parts:
        with np.errstate(over="ignore"):
            h = mix64(h ^ (np.asarray(p).astype(np.uint64) + _GOLDEN))
    return h


class _SharedPin:
    """``[epoch, version]`` in a 16-byte file mapped shared: workers read what the main process wrote."""

    def __init__(self, epoch: int, version: int) -> None:
        fd, path = tempfile.mkstemp(prefix="hardneg-pin-")
        os.write(fd, np.array([epoch, version], np.int64).tobytes())
        os.close(fd)
        self.path = path
        self._finalizer = weakref.finalize(self, _unlink, path, os.getpid())
        self._map()

    def _map(self) -> None:
        with open(self.path, "r+b") as f:
            self._mm = mmap.mmap(f.fileno(), 16)
        self._view = np.frombuffer(self._mm, dtype=np.int64)

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: Mapping[str, Any]) -> None:
        self.path = state["path"]
        self._finalizer = None
        self._map()

    def get(self) -> tuple[int, int]:
        return int(self._view[0]), int(self._view[1])

    def set(self, epoch: int, version: int) -> None:
        self._view[1] = version
        self._view[0] = epoch


def _unlink(path: str, owner: int) -> None:
    if os.getpid() == owner:
        try:
            os.unlink(path)
        except OSError:
            pass


def _dense_keys(keys: Any, n: int) -> np.ndarray:
    """One int64 key id per document (equal keys, equal ids)."""
    from .sampler import _dense_group_keys

    try:
        return _dense_group_keys(keys, n).astype(np.int64)
    except ShapeError as e:
        raise ShapeError(str(e).replace("group_keys", "doc_keys").replace("rows", "documents")) from None


class HardNegativeDataset:
    """Map-style dataset of (query, positive, mined negatives) for a PyTorch DataLoader.

    Parameters
    ----------
    queries : sequence of str, or None
        Query texts, one per row of the mined result (same order). ``None``: items carry ids only.
    documents : sequence of str, or None
        Document texts indexed by corpus id (the corpus the negatives were mined from).
        ``None``: items carry ids only.
    negatives : Mined, path of a mining output directory, or NegativeStore
        Each query's pool of negatives and its positives. A :class:`Mined` result or a directory
        (read with :func:`hardneg.load_mined`) becomes a new :class:`NegativeStore`; pass a store
        to refresh negatives during training (:class:`hardneg.Refresher`).
    negatives_per_item : int, default 1
        Negatives per item (``0``: positives only, for in-batch negatives). A query whose pool
        has fewer valid negatives gets all of them, padded with ``-1`` ids.
    seed : int, default 0
        Seed of the per-query draws.
    doc_keys : sequence, optional
        One hashable key per document; documents with equal keys are duplicates (for example a
        hash of the text after the model's truncation). :meth:`collate` returns these keys next to
        the ids so the losses mask a candidate that duplicates a row's positive. Default: the
        document id (only the same document counts as a duplicate).

    Notes
    -----
    * ``dataset[i]`` is a dict with ``query_id``, ``positive_id``, ``negative_ids`` (list,
      ``-1`` = missing) and, with texts, ``query``, ``positive`` and ``negatives`` (``""`` for a
      missing one).
    * The positive of a query with several positives rotates with the epoch.
    * :meth:`set_epoch` selects the epoch's draws; :meth:`use_version` switches to a newer store
      version (a reader keeps its version until then). Both reach running DataLoader workers,
      including persistent ones.
    * ``state_dict()`` / ``load_state_dict()`` hold ``seed``, ``epoch`` and ``version``
      (torchdata's ``StatefulDataLoader`` calls them).

    Examples
    --------
    >>> import numpy as np, hardneg
    >>> from hardneg.data import HardNegativeDataset
    >>> rng = np.random.default_rng(0)
    >>> emb = rng.standard_normal((6, 8)).astype(np.float32)
    >>> mined = hardneg.mine(emb, emb, positives=np.arange(6), num_negatives=3)
    >>> docs = [f"document {i}" for i in range(6)]
    >>> ds = HardNegativeDataset([f"query {i}" for i in range(6)], docs, mined, negatives_per_item=2, seed=1)
    >>> item = ds[0]
    >>> item["positive"], len(item["negatives"]), item["negative_ids"][0] in mined.negatives[0]
    ('document 0', 2, True)
    >>> ds.set_epoch(1)
    >>> ds[0]["negative_ids"] != item["negative_ids"]     # the next window of the pool
    True
    >>> batch = ds.collate([ds[i] for i in range(4)])
    >>> tuple(batch["negative_keys"].shape), len(batch["negatives"])
    ((4, 2), 8)
    """

    def __init__(self, queries: Sequence[str] | None, documents: Sequence[str] | None, negatives: Any, *,
                 negatives_per_item: int = 1, seed: int = 0, doc_keys: Sequence[Any] | None = None) -> None:
        self.negatives_per_item = as_count(negatives_per_item, "negatives_per_item", minimum=0)
        self.seed = as_count(seed, "seed", minimum=0) % 2**64
        self.store = negatives if isinstance(negatives, NegativeStore) else NegativeStore(negatives)
        rows = self.store.num_queries
        if queries is not None and len(queries) != rows:
            raise ShapeError(f"queries has {len(queries)} texts but the mined negatives have {rows} rows; pass the "
                             "queries that were mined, in the same order")
        self.queries = queries
        self.documents = documents
        n = len(documents) if documents is not None else (len(doc_keys) if doc_keys is not None else None)
        if documents is not None and doc_keys is not None and len(doc_keys) != len(documents):
            raise ShapeError(f"doc_keys has {len(doc_keys)} entries but there are {len(documents)} documents; "
                             "give one key per document")
        if n is not None:
            self.store.set_num_documents(n)  # checks every id of the store against the documents
        self.num_documents = self.store.num_documents
        positives = np.asarray(self.store.positives)
        self._pos_counts = (positives >= 0).sum(axis=1)
        if (self._pos_counts == 0).any():
            q = int(np.argmax(self._pos_counts == 0))
            raise ParameterError(f"query {q} has no positive; every training item needs one (drop such queries before mining)")
        self._positives = positives
        self._keys = None if doc_keys is None else _dense_keys(doc_keys, len(doc_keys))
        latest = self.store.read()
        self._pin = _SharedPin(0, latest.version)
        self._held: StoreVersion = latest

    # -- epoch and version ------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        """The epoch whose draws items hold."""
        return self._pin.get()[0]

    @property
    def version(self) -> int:
        """The store version items are drawn from."""
        return self._pin.get()[1]

    def set_epoch(self, epoch: int) -> None:
        """Draws the negatives (and rotates the positives) of ``epoch`` from now on."""
        self._pin.set(as_count(epoch, "epoch", minimum=0), self.version)

    def use_version(self, version: int | None = None) -> int:
        """Reads the store's latest version (or ``version``) from now on; returns it."""
        v = self.store.read(version)
        if self.num_documents is not None:
            check_ids_below(np.asarray(v.negatives), self.num_documents, "negatives")
        self._held = v
        self._pin.set(self.epoch, v.version)
        return v.version

    def _current(self) -> tuple[int, StoreVersion]:
        epoch, version = self._pin.get()
        if self._held.version != version:  # a worker catching up with the main process
            self._held = self.store.read(version)
        return epoch, self._held

    def state_dict(self) -> dict[str, int]:
        """``{"seed", "epoch", "version"}``."""
        epoch, version = self._pin.get()
        return {"seed": int(self.seed), "epoch": epoch, "version": version}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores the epoch and version of :meth:`state_dict` (the seed must match)."""
        try:
            seed, epoch, version = (operator.index(state[k]) for k in ("seed", "epoch", "version"))
        except (KeyError, TypeError) as e:
            raise ParameterError(f"not a HardNegativeDataset state dict ({e}); pass what state_dict() returned") from None
        if seed != self.seed:
            raise ParameterError(f"the state dict was saved with seed={seed}, this dataset has seed={self.seed}; "
                                 "create the dataset with the same seed to resume")
        self.use_version(version)
        self.set_epoch(epoch)

    # -- drawing ----------------------------------------------------------------------------
    def draw(self, query_ids: Any, epoch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(positive ids [b], negative ids [b, negatives_per_item])`` of queries in ``epoch``
        (default: the current one), from the pinned version; ``-1`` = no negative."""
        q = np.asarray(query_ids, dtype=np.int64).reshape(-1)
        cur_epoch, held = self._current()
        e = cur_epoch if epoch is None else epoch
        rows = self.store.num_queries
        if q.size and (int(q.min()) < 0 or int(q.max()) >= rows):
            bad = int(q[(q < 0) | (q >= rows)][0])
            raise IdOutOfRangeError(f"query id {bad} is outside 0..{rows - 1}; the dataset has one item per mined query")
        s = np.uint64(self.seed)
        # positive: a per-query offset plus the epoch, so several positives rotate
        npos = self._pos_counts[q]
        pslot = (_hash(s, 1, q) % npos.astype(np.uint64)).astype(np.int64)
        pslot = (pslot + e) % npos
        pos = self._positives[q, pslot]
        k = self.negatives_per_item
        if k == 0:
            return pos, np.zeros((q.size, 0), np.int64)
        pool = np.asarray(held.negatives[q])  # [b, P], valid ids first
        valid = pool >= 0
        nvalid = valid.sum(axis=1)
        width = pool.shape[1]
        # a fixed shuffle of each query's pool per (seed, version), invalid slots sorted last
        keys = _hash(s, 2, held.version, q[:, None], np.arange(width)[None, :])
        keys = np.where(valid, keys >> np.uint64(1), np.uint64(2**63) + np.arange(width, dtype=np.uint64)[None, :])
        shuffled = np.take_along_axis(pool, np.argsort(keys, axis=1, kind="stable"), axis=1)
        safe = np.maximum(nvalid, 1)
        start = (e * k) % safe
        slots = (start[:, None] + np.arange(k)[None, :]) % safe[:, None]
        neg = np.take_along_axis(shuffled, np.minimum(slots, width - 1), axis=1) if width else np.full((q.size, k), -1)
        neg = np.where(np.arange(k)[None, :] < nvalid[:, None], neg, -1)
        return pos, neg.astype(np.int64)

    def __len__(self) -> int:
        return self.store.num_queries

    def __getitem__(self, index: int) -> dict[str, Any]:
        i = operator.index(index)
        if i < 0:
            i += len(self)
        pos, neg = self.draw([i])
        item: dict[str, Any] = {"query_id": i, "positive_id": int(pos[0]), "negative_ids": neg[0].tolist()}
        if self.queries is not None:
            item["query"] = self.queries[i]
        if self.documents is not None:
            item["positive"] = self.documents[int(pos[0])]
            item["negatives"] = [self.documents[j] if j >= 0 else "" for j in item["negative_ids"]]
        return item

    def keys_of(self, doc_ids: Any) -> np.ndarray:
        """Duplicate keys of document ids (the ids themselves without ``doc_keys``); ``-1`` stays ``-1``."""
        ids = np.asarray(doc_ids, dtype=np.int64)
        if self._keys is None:
            return ids
        return np.where(ids >= 0, self._keys[np.maximum(ids, 0)], -1)

    # -- batches ----------------------------------------------------------------------------
    def collate(self, items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Stacks items into what :mod:`hardneg.losses` take (``collate_fn`` of a DataLoader).

        Returns a dict of torch tensors (``query_ids [B]``, ``positive_ids [B]``,
        ``negative_ids [B, n]``, ``positive_keys [B]``, ``negative_keys [B, n]``,
        ``negative_mask [B, n]`` True where a negative exists) and, with texts, the lists
        ``query`` [B], ``positive`` [B] and ``negatives`` [B * n] (row-major, ``""`` where
        missing). Pass ``positive_keys`` / ``negative_keys`` as the losses' ``positive_ids`` /
        ``negative_ids``: a candidate that duplicates a row's positive is masked, and so is a
        missing (``-1``) negative.
        """
        import torch

        if not items:
            raise ShapeError("collate got an empty batch")
        qids = np.fromiter((it["query_id"] for it in items), np.int64, len(items))
        pids = np.fromiter((it["positive_id"] for it in items), np.int64, len(items))
        n = self.negatives_per_item
        nids = np.array([it["negative_ids"] for it in items], dtype=np.int64).reshape(len(items), n)
        out: dict[str, Any] = {
            "query_ids": torch.from_numpy(qids),
            "positive_ids": torch.from_numpy(pids),
            "negative_ids": torch.from_numpy(nids),
            "positive_keys": torch.from_numpy(self.keys_of(pids)),
            "negative_keys": torch.from_numpy(self.keys_of(nids)),
            "negative_mask": torch.from_numpy(nids >= 0),
        }
        if "query" in items[0]:
            out["query"] = [it["query"] for it in items]
        if "positive" in items[0]:
            out["positive"] = [it["positive"] for it in items]
            out["negatives"] = [t for it in items for t in it["negatives"]]
        return out

    # -- sentence-transformers ------------------------------------------------------------------
    def to_hf_dataset(self) -> Any:
        """A ``datasets.Dataset`` whose rows have sentence-transformers' column layout, drawn on access.

        Rows (``hf[i]``, ``hf[a:b]``, what the trainer's DataLoader reads) have the columns
        ``anchor``, ``positive``, ``negative_1`` .. ``negative_n`` (texts), computed by a transform
        (``set_transform``) from this dataset's current epoch and store version, so
        :class:`hardneg.integrations.transformers.RefreshCallback` can swap negatives between
        epochs. The stored columns are ``anchor`` (the query texts) and ``query_id``; reading one
        column (``hf["anchor"]``, as a ``batch_sampler`` factory does) returns it as stored. The
        layout has no padding: a query with fewer than ``n`` valid negatives repeats its
        negatives, and a query with none gets documents drawn from the corpus by the same keyed
        hash (never its positive).

        Examples
        --------
        >>> import numpy as np, hardneg
        >>> from hardneg.data import HardNegativeDataset
        >>> emb = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
        >>> mined = hardneg.mine(emb, emb, positives=np.arange(5), num_negatives=2)
        >>> ds = HardNegativeDataset([f"q{i}" for i in range(5)], [f"d{i}" for i in range(5)], mined, negatives_per_item=2)
        >>> hf = ds.to_hf_dataset()
        >>> list(hf[0]), hf[0]["positive"], hf["anchor"][:2]
        (['anchor', 'positive', 'negative_1', 'negative_2'], 'd0', ['q0', 'q1'])
        """
        import datasets

        if self.queries is None or self.documents is None:
            raise ParameterError("to_hf_dataset needs query and document texts; create the dataset with both")
        hf = datasets.Dataset.from_dict({"anchor": list(self.queries), "query_id": np.arange(len(self), dtype=np.int64)})
        hf.set_transform(_HFTransform(self))
        return hf

    def _filled_negatives(self, query_ids: Any, pos: np.ndarray, neg: np.ndarray, epoch: int) -> np.ndarray:
        """``neg`` with every ``-1`` replaced: by the query's other negatives, else by keyed random documents."""
        if neg.size == 0:
            return neg
        valid = neg >= 0
        nvalid = valid.sum(axis=1)
        k = neg.shape[1]
        out = neg.copy()
        some = (nvalid > 0) & (nvalid < k)
        if some.any():  # valid draws come first: repeat them cyclically
            slots = np.arange(k)[None, :] % np.maximum(nvalid, 1)[:, None]
            out[some] = np.take_along_axis(neg[some], slots[some], axis=1)
        none = nvalid == 0
        if none.any():
            n = self.num_documents if self.num_documents is not None else len(self.documents)  # type: ignore[arg-type]
            q = np.asarray(query_ids, dtype=np.int64)[none]
            r = _hash(np.uint64(self.seed), 3, epoch, q[:, None], np.arange(k)[None, :])
            if n > 1:
                d = (r % np.uint64(n - 1)).astype(np.int64)
                d = d + (d >= pos[none][:, None])  # skip the positive
            else:
                d = np.zeros_like(r, dtype=np.int64)
            out[none] = d
        return out


class _HFTransform:
    """``set_transform`` function of :meth:`HardNegativeDataset.to_hf_dataset` (picklable for workers)."""

    def __init__(self, ds: HardNegativeDataset) -> None:
        self.ds = ds

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        if "anchor" not in batch or "query_id" not in batch:  # one stored column was asked for
            return dict(batch)
        ds = self.ds
        q = np.asarray(batch["query_id"], dtype=np.int64)
        pos, neg = ds.draw(q)
        neg = ds._filled_negatives(q, pos, neg, ds.epoch)
        docs, queries = ds.documents, ds.queries
        assert docs is not None and queries is not None
        out: dict[str, list[str]] = {"anchor": [queries[i] for i in q.tolist()], "positive": [docs[i] for i in pos.tolist()]}
        for j in range(neg.shape[1]):
            out[f"negative_{j + 1}"] = [docs[i] for i in neg[:, j].tolist()]
        return out
