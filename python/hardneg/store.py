"""Versioned pools of mined negatives shared between processes: :class:`NegativeStore`.

A store holds, per query, a pool of negative corpus ids (``-1`` = padding) and the query's
positives. Refreshing negatives during training publishes a new *version*: its array is written
completely to a new file first (the back buffer) and becomes visible by one atomic replace of
the store's index file (the flip), so a reader sees either the old or the new pool of every
query, never a mix. Readers pin a version and keep it until they ask for the next one; pinned
arrays are memory-mapped, so a version whose file is later removed stays readable by those
who hold it. The files make the store work across DataLoader workers whatever the start
method (fork, spawn) and across restarts (give ``directory`` to resume).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import weakref
from typing import Any, Mapping, NamedTuple, Union

import numpy as np

from .errors import DTypeError, IdOutOfRangeError, InputFileError, ParameterError, ShapeError
from .mining_job import _write_atomic

__all__ = ["NegativeStore", "StoreVersion"]

PathLike = Union[str, "os.PathLike[str]"]

_INDEX = "_store.json"
_FORMAT = "hardneg-negative-store"


class StoreVersion(NamedTuple):
    """One published version of a :class:`NegativeStore`."""

    version: int
    """Version number (0 for the pool the store was created with)."""
    negatives: np.ndarray
    """int64 ``[queries, pool]`` negative ids, ``-1`` = padding (read-only)."""
    step: int | None
    """Training step the version was mined at (as given to :meth:`NegativeStore.publish`)."""
    epoch: int | None
    """Training epoch the version was mined at."""


def _left_align(ids: np.ndarray) -> np.ndarray:
    """Moves the valid ids (>= 0) of every row to the front, keeping their order; -1 after them."""
    valid = ids >= 0
    if valid.all() or not valid.any() or (np.diff(valid.astype(np.int8), axis=1) <= 0).all():
        return ids
    order = np.argsort(~valid, axis=1, kind="stable")
    return np.take_along_axis(ids, order, axis=1)


def as_id_table(x: Any, what: str, rows: int | None = None) -> np.ndarray:
    """An int64 ``[rows, width]`` id table (1-D input = one id per row), valid ids first."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "iu":
        raise DTypeError(f"{what} must hold integer ids (-1 = padding), got dtype {arr.dtype}")
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ShapeError(f"{what} must be 2-D [queries, ids per query] padded with -1, got shape {arr.shape}")
    if rows is not None and arr.shape[0] != rows:
        raise ShapeError(f"{what} has {arr.shape[0]} rows but the store has {rows} queries; give one row per query, "
                         "in the same order")
    arr = np.ascontiguousarray(arr, dtype=np.int64)
    if arr.size and int(arr.min()) < -1:
        raise IdOutOfRangeError(f"{what} holds id {int(arr.min())}; ids are >= 0, and -1 marks padding")
    return _left_align(arr)


def check_ids_below(ids: np.ndarray, n: int, what: str) -> None:
    """Raises :class:`IdOutOfRangeError` naming the first id >= ``n``."""
    if ids.size and int(ids.max()) >= n:
        bad = np.argwhere(ids >= n)[0]
        raise IdOutOfRangeError(f"{what} of query {int(bad[0])} holds document id {int(ids[tuple(bad)])}, but there "
                                f"are only {n} documents (ids 0..{n - 1}); mine against the same documents, in the same order")


def _unpack(negatives: Any, positives: Any) -> tuple[np.ndarray, Any]:
    """(negative ids, positives or None) from a Mined, a mining output directory or an id array."""
    from .mining import Mined

    if isinstance(negatives, (str, os.PathLike)):
        from .mining_job import load_mined

        negatives = load_mined(negatives)
    if isinstance(negatives, Mined):
        return negatives.negatives, negatives.positives if positives is None else positives
    return negatives, positives


def _save_npy(path: str, arr: np.ndarray) -> None:
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    with open(tmp, "wb") as f:
        np.save(f, arr, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _remove_tree(path: str, owner: int) -> None:
    if os.getpid() == owner:  # forked DataLoader workers inherit this finalizer; only the creator cleans up
        shutil.rmtree(path, ignore_errors=True)


class NegativeStore:
    """Versioned, double-buffered pools of negative ids that training reads and a refresh replaces.

    Parameters
    ----------
    negatives : Mined, path of a mining output directory, or int array (Q, pool)
        The first version (version 0): each query's candidate negatives, ``-1`` = padding. A
        directory is read with :func:`hardneg.load_mined`.
    positives : int array (Q,) or (Q, P), optional
        Each query's positive document ids (``-1`` padding). Taken from the :class:`Mined`
        result when not given; required for a plain array.
    num_documents : int, optional
        Corpus size: every published id must be below it. A :class:`HardNegativeDataset` sets it
        from its documents when it is not known.
    directory : path, optional
        Where the versions live. Default: a new temporary directory removed when the store is
        garbage collected. Give a directory to keep the versions (and to :meth:`open` them again
        when resuming a run); it must be empty or absent.
    keep : int, optional
        Keep only the ``keep`` newest versions on disk (at least 2: the one being read and the
        next). Default: keep all (a version is ``Q x pool x 8`` bytes). Readers that already
        hold a removed version keep reading it.

    Notes
    -----
    :meth:`publish` writes the new version's file, then atomically replaces the index file:
    :meth:`read` (in any process) sees the old or the new version, never a mix, and a
    :class:`StoreVersion` it returned never changes. Publishing is serialised by a lock
    inside a process; publish from one process (the training loop's main process).

    Examples
    --------
    >>> import numpy as np, hardneg
    >>> store = hardneg.NegativeStore(np.array([[3, 2], [0, -1]]), positives=np.array([0, 1]), num_documents=4)
    >>> v0 = store.read()
    >>> store.publish(np.array([[1, -1], [2, 3]]), step=100)
    1
    >>> v0.version, v0.negatives.tolist(), store.read().negatives.tolist(), store.read().step
    (0, [[3, 2], [0, -1]], [[1, -1], [2, 3]], 100)
    >>> try:
    ...     store.publish(np.array([[9, -1], [2, 3]]))
    ... except hardneg.IdOutOfRangeError as e:
    ...     print(str(e)[:44])
    negatives of query 0 holds document id 9, bu
    >>> store.version          # the failed publish changed nothing
    1
    """

    def __init__(self, negatives: Any, *, positives: Any = None, num_documents: int | None = None,
                 directory: PathLike | None = None, keep: int | None = None) -> None:
        neg, pos = _unpack(negatives, positives)
        if pos is None:
            raise ParameterError("positives are needed with a plain negatives array (each query's positive document ids); "
                                 "pass positives=..., or pass the Mined result itself")
        neg = as_id_table(neg, "negatives")
        rows = neg.shape[0]
        if rows == 0:
            raise ShapeError("negatives has no rows; a store needs at least one query")
        pos = as_id_table(pos, "positives", rows)
        if num_documents is not None:
            from ._arrays import as_count

            num_documents = as_count(num_documents, "num_documents")
            check_ids_below(pos, num_documents, "positives")
            check_ids_below(neg, num_documents, "negatives")
        if keep is not None:
            from ._arrays import as_count

            keep = as_count(keep, "keep", minimum=2)
        if directory is None:
            path = tempfile.mkdtemp(prefix="hardneg-store-")
            self._finalizer: Any = weakref.finalize(self, _remove_tree, path, os.getpid())
        else:
            path = os.fspath(directory)
            if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
                from .errors import OutputDirError

                raise OutputDirError(f"{path!r} is not an empty directory; choose a new one, or reopen an existing "
                                     "store with NegativeStore.open(path)")
            os.makedirs(path, exist_ok=True)
            self._finalizer = None
        self.directory = path
        self._lock = threading.Lock()
        self._cache: dict[int, np.ndarray] = {}
        _save_npy(os.path.join(path, "positives.npy"), pos)
        index = {"format": _FORMAT, "num_queries": rows, "num_documents": num_documents, "keep": keep, "versions": []}
        self._index = index
        self._add_version(index, neg, step=None, epoch=None)

    # -- opening and pickling ------------------------------------------------------------------
    @classmethod
    def open(cls, directory: PathLike) -> "NegativeStore":
        """Reopens a store whose ``directory`` was given at creation (e.g. to resume training).

        Examples
        --------
        >>> import numpy as np, hardneg, tempfile, os
        >>> d = os.path.join(tempfile.mkdtemp(), "store")
        >>> s = hardneg.NegativeStore(np.array([[1], [0]]), positives=np.array([0, 1]), directory=d)
        >>> _ = s.publish(np.array([[1], [1]]))
        >>> hardneg.NegativeStore.open(d).version
        1
        """
        path = os.fspath(directory)
        self = cls.__new__(cls)
        self.directory = path
        self._finalizer = None
        self._lock = threading.Lock()
        self._cache = {}
        self._index = self._read_index()
        return self

    def __getstate__(self) -> dict[str, Any]:
        return {"directory": self.directory}

    def __setstate__(self, state: Mapping[str, Any]) -> None:
        self.directory = state["directory"]
        self._finalizer = None  # the creating process owns the temporary directory
        self._lock = threading.Lock()
        self._cache = {}
        self._index = self._read_index()

    def _read_index(self) -> dict[str, Any]:
        path = os.path.join(self.directory, _INDEX)
        try:
            with open(path, encoding="utf-8") as f:
                index = json.load(f)
        except (OSError, ValueError) as e:
            raise InputFileError(f"{self.directory!r} holds no readable negative store ({e}); "
                                 "pass the directory a NegativeStore was created with") from e
        if index.get("format") != _FORMAT:
            raise InputFileError(f"{self.directory!r} holds no hardneg negative store")
        return index

    # -- properties ----------------------------------------------------------------------------
    @property
    def num_queries(self) -> int:
        """Queries (rows) of every version."""
        return int(self._index["num_queries"])

    @property
    def num_documents(self) -> int | None:
        """Corpus size every id is checked against (None: not known yet)."""
        n = self._index.get("num_documents")
        return None if n is None else int(n)

    @property
    def version(self) -> int:
        """The latest published version (re-read from disk, so other processes' publishes count)."""
        self._index = self._read_index()
        return int(self._index["versions"][-1]["version"])

    @property
    def positives(self) -> np.ndarray:
        """int64 ``[queries, P]`` positive ids (valid ids first, ``-1`` padding); the same in every version."""
        arr = self._cache.get(-1)
        if arr is None:
            arr = np.load(os.path.join(self.directory, "positives.npy"), mmap_mode="r")
            self._cache[-1] = arr
        return arr

    def set_num_documents(self, n: int) -> None:
        """Records the corpus size (checks every kept version and the positives against it)."""
        from ._arrays import as_count

        n = as_count(n, "num_documents")
        with self._lock:
            index = self._read_index()
            known = index.get("num_documents")
            if known is not None:
                if int(known) != n:
                    raise ShapeError(f"the store's negatives index {known} documents, but {n} documents were given; "
                                     "pass the documents the negatives were mined against")
                return
            check_ids_below(np.asarray(self.positives), n, "positives")
            for v in index["versions"]:
                check_ids_below(np.asarray(self._load(v)), n, "negatives")
            index["num_documents"] = n
            _write_atomic(os.path.join(self.directory, _INDEX), json.dumps(index, indent=1).encode())
            self._index = index

    # -- versions ------------------------------------------------------------------------------
    def _load(self, entry: Mapping[str, Any]) -> np.ndarray:
        v = int(entry["version"])
        arr = self._cache.get(v)
        if arr is None:
            arr = np.load(os.path.join(self.directory, entry["file"]), mmap_mode="r")
            self._cache[v] = arr
        return arr

    def read(self, version: int | None = None) -> StoreVersion:
        """The latest version (or ``version``); the arrays of a returned version never change.

        Raises :class:`ParameterError` for a version that was never published or was removed
        (``keep``).
        """
        index = self._read_index()
        self._index = index
        entries = index["versions"]
        if version is None:
            entry = entries[-1]
        else:
            entry = next((e for e in entries if int(e["version"]) == version), None)
            if entry is None:
                have = [int(e["version"]) for e in entries]
                raise ParameterError(f"version {version} is not in the store (it holds versions {have}); "
                                     "pass one of those, or None for the latest")
        try:
            arr = self._load(entry)
        except FileNotFoundError:
            raise ParameterError(f"version {entry['version']} was removed (keep={index.get('keep')}); "
                                 "read the latest version instead") from None
        return StoreVersion(int(entry["version"]), arr, entry.get("step"), entry.get("epoch"))

    def publish(self, negatives: Any, *, step: int | None = None, epoch: int | None = None) -> int:
        """Adds a new version and returns its number; readers switch when they ask for it.

        ``negatives`` is a :class:`Mined` result or an int ``[queries, pool]`` array (the pool
        width may differ from earlier versions). It is checked completely before anything is
        written: wrong row count (:class:`ShapeError`), ids outside the documents
        (:class:`IdOutOfRangeError`) or of the wrong type leave the store unchanged.
        """
        neg, _ = _unpack(negatives, None)
        neg = as_id_table(neg, "negatives", self.num_queries)
        with self._lock:
            index = self._read_index()
            n = index.get("num_documents")
            if n is not None:
                check_ids_below(neg, int(n), "negatives")
            return self._add_version(index, neg, step=step, epoch=epoch)

    def _add_version(self, index: dict[str, Any], neg: np.ndarray, *, step: int | None, epoch: int | None) -> int:
        version = int(index["versions"][-1]["version"]) + 1 if index["versions"] else 0
        name = f"negatives-{version:06d}.npy"
        _save_npy(os.path.join(self.directory, name), neg)  # the back buffer, invisible until the flip
        index["versions"].append({"version": version, "file": name,
                                  "step": None if step is None else int(step),
                                  "epoch": None if epoch is None else int(epoch)})
        removed = []
        keep = index.get("keep")
        if keep is not None and len(index["versions"]) > keep:
            removed = index["versions"][:-keep]
            index["versions"] = index["versions"][-keep:]
        _write_atomic(os.path.join(self.directory, _INDEX), json.dumps(index, indent=1).encode())  # the flip
        self._index = index
        for e in removed:  # readers holding these keep their memory maps
            try:
                os.remove(os.path.join(self.directory, e["file"]))
            except OSError:
                pass
        return version

    def versions(self) -> list[int]:
        """The version numbers still available, oldest first."""
        self._index = self._read_index()
        return [int(e["version"]) for e in self._index["versions"]]

    def __repr__(self) -> str:
        return (f"NegativeStore(queries={self.num_queries}, documents={self.num_documents}, "
                f"versions={self.versions()}, directory={self.directory!r})")
