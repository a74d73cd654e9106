"""Cluster-balanced mini-batches for PyTorch: :class:`ClusterBatchSampler`.

The sampler follows torch's batch-sampler protocol (an iterable of ``list[int]`` with an exact
``__len__``), so it can be passed as ``batch_sampler=`` to ``torch.utils.data.DataLoader``. It
does not subclass ``torch.utils.data.Sampler`` (which needs no methods of its own), so this module
does not import torch; ``torch.distributed`` is consulted only if torch is already imported.
"""

from __future__ import annotations

import hashlib
import operator
import sys
from typing import Any, Callable, Hashable, Iterator, Mapping

import numpy as np

from . import _hardneg
from ._arrays import as_count, as_matrix, as_threads, from_torch
from .cluster import n_clusters_for
from ._warnings import warn
from .errors import DTypeError, ParameterError, ShapeError

__all__ = ["ClusterBatchSampler"]

Schedule = Mapping[int, int] | Callable[[int], int]

#: Share of an epoch's rows whose group key cannot be placed above which the sampler warns (once).
DROP_WARNING_SHARE = 0.01


def _dense_group_keys(group_keys: Any, n: int) -> np.ndarray:
    """Dense uint32 key ids (in order of first appearance) of one hashable key per row.

    Memory is proportional to the number of keys, whatever their length: the keys are never
    copied into a fixed-width array. Integer arrays are interned in Rust; other keys (texts,
    tuples, ...) by dictionary passes that run in C (``dict.fromkeys``, ``dict.update``, ``map``)
    with Python's exact equality, so distinct keys never collide.
    """
    keys = from_torch(group_keys, "group_keys")
    if isinstance(keys, (str, bytes)) or not hasattr(keys, "__iter__"):
        raise DTypeError(f"group_keys must be a sequence of one hashable key per row, got {type(keys).__name__}")
    if isinstance(keys, np.ndarray):
        if keys.ndim != 1:
            raise ShapeError(f"group_keys must be 1-D (one key per row), got shape {keys.shape}")
        if keys.dtype.kind in "iub":
            if keys.shape[0] != n:
                raise ShapeError(f"group_keys has {keys.shape[0]} entries but there are {n} rows; give one key per row")
            ids, _ = _hardneg.dense_keys(np.ascontiguousarray(keys.astype(np.int64, copy=False)).view(np.uint64))
            return ids
        keys = keys.tolist()
    elif not isinstance(keys, (list, tuple)):
        keys = list(keys)  # any iterable (a datasets Column, a pandas Series, a generator)
    if len(keys) != n:
        raise ShapeError(f"group_keys has {len(keys)} entries but there are {n} rows; give one key per row")
    try:
        first = dict.fromkeys(keys)
    except TypeError:
        bad = next(i for i, k in enumerate(keys) if not isinstance(k, Hashable))
        raise DTypeError(f"group_keys[{bad}] is a {type(keys[bad]).__name__}, which is not hashable; give one "
                         "hashable key per row (a str, an int, a tuple)") from None
    first.update(zip(first, range(len(first))))  # values only change: the dict is not resized or reordered
    return np.fromiter(map(first.__getitem__, keys), dtype=np.uint32, count=n)


def _distributed() -> tuple[int, int] | None:
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return None


class ClusterBatchSampler:
    """Mini-batches of similar rows, so in-batch negatives are hard (NGAME, TAS-Balanced).

    Rows are clustered by cosine similarity of ``embeddings`` (balanced clustering, see
    :func:`hardneg.cluster`) and every epoch's batches are built from the clusters:

    * default (NGAME): each batch holds **whole clusters**; a batch that cannot fit the next
      whole cluster is topped up with rows from the cluster at the back of the epoch's cluster
      order (only these filler clusters are split);
    * ``clusters_per_batch=k`` (TAS-B): clusters are dealt into ``k`` lanes and each batch takes
      an equal share from every lane, i.e. rows of about ``k`` clusters per batch; clusters may
      be larger than a batch and then span consecutive batches (``k=1``: one cluster at a time);
    * ``random_fraction``: that share of every batch is drawn uniformly at random from all rows.

    Every row appears exactly once per epoch, except the rows of the last, partial batch with
    ``drop_last=True`` and rows whose ``group_keys`` cannot be placed (see below). The number of
    batches is ``ceil(N / batch_size)`` (``floor`` with ``drop_last``) whatever the data, so
    ``__len__`` is exact before iterating. Planning is O(N) in Rust (an epoch of 10M rows takes
    a fraction of a second).

    Parameters
    ----------
    embeddings : array_like, shape (N, d)
        One embedding per dataset row (for example the anchors or queries).
    batch_size : int
        Rows per batch (per rank).
    cluster_size : int, optional
        Rows per cluster: ``ceil(N / cluster_size)`` balanced clusters. Default
        ``max(1, c // 4)`` with whole clusters, ``max(1, c // k)`` with ``clusters_per_batch=k``,
        where ``c`` is the clustered part of a batch. ``1`` means random batches. With whole
        clusters it must be at most ``c``.
    clusters_per_batch : int, optional
        Switches to TAS-B packing (see above).
    random_fraction : float, default 0.0
        Share of every batch drawn at random (``round(random_fraction * batch_size)`` rows).
    group_keys : sequence, optional
        One hashable key per row (for example a hash or id of the positive text). No two rows
        of a batch share a key, so a batch never holds a false negative that duplicates a
        positive. A row whose key is already in its batch is deferred (in order, per key) to
        the next batch that can take it; rows still deferred after the last batch are dropped
        (counted in :attr:`dropped`; a ``UserWarning`` with the numbers and the remedies is
        issued once when an epoch drops 1 % of the rows or more), and the last batches may then
        be short. Any iterable of hashable keys (texts, ints, tuples; a list, a numpy array, a
        ``datasets`` column); memory is proportional to the number of keys, not their length.
        Linear time.
    drop_last : bool, default False
        Drop the last, partial batch. With several replicas: drop the global batches beyond a
        multiple of ``num_replicas`` (otherwise the first batches are repeated to fill the last
        round, as ``DistributedSampler`` does with indices).
    seed : int, default 0
        Seed of the clustering and of the epoch plans; epoch ``e`` is drawn from ``seed + e``.
    num_replicas, rank : int, optional
        Distributed training: every rank builds the same global plan (same seed, same
        embeddings) and takes global batches ``rank, rank + num_replicas, ...``. Default: the
        world size and rank of an initialised ``torch.distributed``, else 1 and 0.
    schedule : mapping or callable, optional
        Cluster-size curriculum (NGAME): ``{epoch: cluster_size}`` (the entry with the largest
        epoch ``<=`` the current one applies; ``cluster_size`` before the first entry) or a
        function ``epoch -> cluster_size``. ``1`` means random batches, e.g.
        ``{0: 1, 10: 8, 20: 16}`` warms up with random batches. A new size re-clusters the
        latest embeddings (given to the constructor or to :meth:`refresh`).
    method : {"balanced", "kmeans"}, default "balanced"
        Clustering; ``"kmeans"`` (unbalanced, as TAS-B) only with ``clusters_per_batch``.
    iters : int, default 20
        Clustering iterations per split.
    threads : int, optional
        Clustering threads (default every core). No thread outlives a call, so forked
        DataLoader workers are safe.

    Notes
    -----
    * ``set_epoch(e)`` should be called before each epoch (as with ``DistributedSampler``). If
      the sampler is iterated again without it, it advances its epoch by itself, so batches
      never silently repeat (some launchers do not forward ``set_epoch`` to batch samplers).
    * ``state_dict()`` / ``load_state_dict()`` record the epoch and the batches already
      yielded, so a resumed run (torchdata's ``StatefulDataLoader`` or by hand) continues with
      exactly the remaining batches. A state from a different plan (other data, clusters,
      batch size, seed, replicas or rank) is rejected with :class:`~hardneg.ParameterError`;
      after :meth:`refresh`, call ``refresh`` with the same embeddings before loading.
    * :meth:`refresh` takes effect at the next ``iter()``; call it on every rank with the same
      embeddings.
    * With the Hugging Face / sentence-transformers trainer under several processes, accelerate
      already hands every process each ``W``-th batch of the batch sampler: pass
      ``num_replicas=1, rank=0`` there so the batches are not split twice.
    * Cluster ids of the batches' rows are in :attr:`labels` (e.g. to mask same-cluster pairs in
      a loss, as ClusterNS does).

    Examples
    --------
    >>> import numpy as np, hardneg
    >>> x = np.random.default_rng(0).standard_normal((100, 8)).astype(np.float32)
    >>> s = hardneg.ClusterBatchSampler(x, batch_size=16, cluster_size=4, seed=1)
    >>> len(s), sum(len(b) for b in s), sorted(i for b in s for i in b) == list(range(100))
    (7, 100, True)
    >>> ranks = [hardneg.ClusterBatchSampler(x, 16, cluster_size=4, num_replicas=2, rank=r) for r in (0, 1)]
    >>> [len(r) for r in ranks]
    [4, 4]
    """

    def __init__(
        self,
        embeddings: Any,
        batch_size: int,
        *,
        cluster_size: int | None = None,
        clusters_per_batch: int | None = None,
        random_fraction: float = 0.0,
        group_keys: Any = None,
        drop_last: bool = False,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        schedule: Schedule | None = None,
        method: str = "balanced",
        iters: int = 20,
        threads: int | None = None,
    ) -> None:
        self._emb = as_matrix(embeddings, "embeddings")
        n = self._emb.shape[0]
        self.batch_size = as_count(batch_size, "batch_size")
        try:
            rf = float(random_fraction)
        except (TypeError, ValueError):
            raise ParameterError(f"random_fraction must be a number in [0, 1], got {random_fraction!r}") from None
        if not 0.0 <= rf <= 1.0:
            raise ParameterError(f"random_fraction must be in [0, 1], got {random_fraction}")
        self.random_fraction = rf
        self._cluster_part = self.batch_size - round(rf * self.batch_size)
        if clusters_per_batch is not None:
            clusters_per_batch = as_count(clusters_per_batch, "clusters_per_batch")
            if clusters_per_batch > self.batch_size:
                raise ParameterError(
                    f"clusters_per_batch={clusters_per_batch} is larger than batch_size={self.batch_size}; lower it"
                )
        self.clusters_per_batch = clusters_per_batch
        if method not in ("balanced", "kmeans"):
            raise ParameterError(f"method must be 'balanced' or 'kmeans', got {method!r}")
        if method == "kmeans" and clusters_per_batch is None:
            raise ParameterError("method='kmeans' makes clusters of any size, so it needs clusters_per_batch (TAS-B packing)")
        self.method = method
        self.iters = as_count(iters, "iters")
        self._threads = as_threads(threads)
        if cluster_size is None:
            cluster_size = max(1, self._cluster_part // (clusters_per_batch or 4))
        self.cluster_size = self._check_size(cluster_size, "cluster_size")
        if schedule is not None and not callable(schedule):
            if not isinstance(schedule, Mapping) or not schedule:
                raise ParameterError("schedule must be a non-empty {epoch: cluster_size} mapping or a function epoch -> cluster_size")
            for e, c in schedule.items():
                as_count(e, "schedule epoch", minimum=0)
                self._check_size(c, f"schedule[{e}]")
        self.schedule = schedule
        self.drop_last = bool(drop_last)
        self.seed = as_count(seed, "seed", minimum=0)
        self._seed64 = self.seed % 2**64  # what the Rust clustering and planner take
        dist = _distributed()
        if num_replicas is None:
            num_replicas = dist[0] if dist else 1
        if rank is None:
            rank = dist[1] if dist else 0
        self.num_replicas = as_count(num_replicas, "num_replicas")
        self.rank = as_count(rank, "rank", minimum=0)
        if self.rank >= self.num_replicas:
            raise ParameterError(f"rank={self.rank} must be below num_replicas={self.num_replicas}")
        self._global_batches = -(-n // self.batch_size) if not self.drop_last else n // self.batch_size
        if self._global_batches < self.num_replicas:
            raise ParameterError(
                f"{n} rows make {self._global_batches} batches of {self.batch_size}, fewer than num_replicas={self.num_replicas}; "
                "lower batch_size or the number of replicas"
            )
        self._keys = None if group_keys is None else _dense_group_keys(group_keys, n)
        self._clusterings: dict[int, tuple[np.ndarray, int, float, str]] = {}
        self._plan_cache: tuple[tuple[int, str], np.ndarray, np.ndarray, int] | None = None
        self._drop_warned = False
        self.epoch = 0
        self._advance = False
        self._resume = 0
        self._yielded = 0
        self._clustering(self.cluster_size_at(0))  # cluster now so bad input fails here

    # -- configuration ----------------------------------------------------------------------
    def _check_size(self, size: Any, name: str) -> int:
        size = as_count(size, name)
        if self.clusters_per_batch is None and size > 1 and size > self._cluster_part:
            raise ParameterError(
                f"{name}={size} is larger than the clustered part of a batch ({self._cluster_part} rows of "
                f"batch_size={self.batch_size}); whole clusters must fit in a batch: lower {name}, raise batch_size, "
                "or use clusters_per_batch to split clusters across batches"
            )
        return size

    def cluster_size_at(self, epoch: int) -> int:
        """The cluster size used in ``epoch`` (from ``schedule``, else ``cluster_size``)."""
        if self.schedule is None:
            return self.cluster_size
        if callable(self.schedule):
            return self._check_size(self.schedule(epoch), f"schedule({epoch})")
        size = self.cluster_size
        for e in sorted(self.schedule):
            if e <= epoch:
                size = self.schedule[e]
        return size

    def _clustering(self, size: int) -> tuple[np.ndarray, int, float, str]:
        got = self._clusterings.get(size)
        if got is None:
            n = self._emb.shape[0]
            if size == 1:
                labels, k, obj = np.arange(n, dtype=np.int64), n, 1.0
            else:
                k = n_clusters_for(n, size, None)
                labels, obj = _hardneg.cluster(
                    self._emb, k, method=self.method, iters=self.iters, seed=self._seed64, threads=self._threads
                )
            digest = hashlib.blake2b(labels.tobytes(), digest_size=16).hexdigest()
            got = (labels, k, float(obj), digest)
            self._clusterings[size] = got
        return got

    # -- public state ---------------------------------------------------------------------------
    @property
    def labels(self) -> np.ndarray:
        """Cluster id of every row for the current epoch (for example to mask same-cluster pairs)."""
        return self._clustering(self.cluster_size_at(self.epoch))[0]

    @property
    def objective(self) -> float:
        """Mean cosine of each row to its cluster's mean, for the current epoch's clusters."""
        return self._clustering(self.cluster_size_at(self.epoch))[2]

    @property
    def dropped(self) -> int:
        """Rows the current epoch's plan leaves out because their group key could not be placed."""
        return self._plan(self.epoch)[2]

    def set_epoch(self, epoch: int) -> None:
        """Uses the plan of ``epoch`` (drawn from ``seed + epoch``) for the next ``iter()``."""
        self.epoch = as_count(epoch, "epoch", minimum=0)
        self._advance = False
        self._resume = 0

    def refresh(self, embeddings: Any) -> None:
        """Re-clusters with new embeddings (same rows, e.g. from the current model); applies at the next ``iter()``."""
        emb = as_matrix(embeddings, "embeddings")
        if emb.shape[0] != self._emb.shape[0]:
            raise ShapeError(
                f"refresh got {emb.shape[0]} rows but the sampler has {self._emb.shape[0]}; embed the same rows in the same order"
            )
        old = (self._emb, self._clusterings, self._plan_cache)
        self._emb, self._clusterings, self._plan_cache = emb, {}, None
        try:
            self._clustering(self.cluster_size_at(self.epoch))
        except Exception:
            self._emb, self._clusterings, self._plan_cache = old
            raise

    # -- plans ----------------------------------------------------------------------------------
    def _plan(self, epoch: int) -> tuple[np.ndarray, np.ndarray, int]:
        labels, k, _, digest = self._clustering(self.cluster_size_at(epoch))
        key = (epoch, digest)
        if self._plan_cache is None or self._plan_cache[0] != key:
            rows, offsets, dropped = _hardneg.plan_epoch(
                labels,
                k,
                self.batch_size,
                random_fraction=self.random_fraction,
                clusters_per_batch=self.clusters_per_batch,
                keys=self._keys,
                drop_last=self.drop_last,
                seed=self._seed64,
                epoch=epoch,
            )
            self._plan_cache = (key, rows, offsets, dropped)
            if dropped >= DROP_WARNING_SHARE * len(labels) and not self._drop_warned:
                self._drop_warned = True
                warn(self._drop_message(epoch, dropped))
        return self._plan_cache[1], self._plan_cache[2], self._plan_cache[3]

    def _drop_message(self, epoch: int, dropped: int) -> str:
        assert self._keys is not None  # only keys make rows unplaceable
        n = len(self._keys)
        counts = np.bincount(self._keys)
        distinct, top = len(counts), int(counts.max())
        if distinct < self.batch_size:
            why = (f"there are only {distinct:,} distinct keys, so a batch of {self.batch_size} holds at most "
                   f"{distinct:,} rows")
            fix = f"lower batch_size to at most {distinct:,}, "
        else:
            why = (f"{distinct:,} distinct keys; the most frequent one has {top:,} rows for {self._global_batches:,} "
                   "batches, and rows of a cluster compete for the same batches")
            fix = "lower batch_size or cluster_size, "
        return (
            f"ClusterBatchSampler leaves {dropped:,} of {n:,} rows ({dropped / n:.1%}) out of epoch {epoch}: no batch "
            f"may hold two rows with the same group key, and {why}. To keep them: {fix}use group_keys that repeat "
            "less (for example the positive text rather than a label), or group_keys=None. sampler.dropped gives "
            "the count of the current epoch."
        )

    def _rank_batches(self) -> range | list[int]:
        nb, w = self._global_batches, self.num_replicas
        if w == 1:
            return range(nb)
        if self.drop_last:
            return range(self.rank, nb - nb % w, w)
        total = -(-nb // w) * w
        return [i % nb for i in range(self.rank, total, w)]

    def __len__(self) -> int:
        nb, w = self._global_batches, self.num_replicas
        return nb // w if self.drop_last else -(-nb // w)

    def __iter__(self) -> Iterator[list[int]]:
        if self._advance:
            self.epoch += 1
            self._resume = 0
        self._advance = True
        start, self._resume = self._resume, 0
        epoch = self.epoch
        rows, offsets, _ = self._plan(epoch)
        batches = self._rank_batches()
        self._yielded = start
        return self._generate(rows, offsets, batches, start)

    def _generate(self, rows: np.ndarray, offsets: np.ndarray, batches: Any, start: int) -> Iterator[list[int]]:
        for j in range(start, len(batches)):
            b = batches[j]
            self._yielded = j + 1
            yield rows[offsets[b] : offsets[b + 1]].tolist()

    # -- checkpointing -------------------------------------------------------------------------
    def _fingerprint(self, epoch: int) -> str:
        digest = self._clustering(self.cluster_size_at(epoch))[3]
        keys = "none" if self._keys is None else hashlib.blake2b(self._keys.tobytes(), digest_size=8).hexdigest()
        parts = (
            self._emb.shape[0], self.batch_size, self.random_fraction, self.clusters_per_batch, self.drop_last,
            self.seed, self.num_replicas, self.rank, digest, keys,
        )  # fmt: skip
        return repr(parts)

    def state_dict(self) -> dict[str, Any]:
        """``{"epoch", "yielded", "plan"}``: the epoch and how many of this rank's batches were yielded."""
        return {"epoch": self.epoch, "yielded": self._yielded, "plan": self._fingerprint(self.epoch)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resumes: the next ``iter()`` yields the batches of ``state["epoch"]`` not yet yielded."""
        try:
            epoch = operator.index(state["epoch"])
            yielded = operator.index(state["yielded"])
            plan = state["plan"]
        except (KeyError, TypeError) as e:
            raise ParameterError(f"not a ClusterBatchSampler state dict ({e}); pass what state_dict() returned") from None
        if epoch < 0 or not 0 <= yielded <= len(self):
            raise ParameterError(f"state dict has epoch={epoch}, yielded={yielded}; outside this sampler's {len(self)} batches")
        if plan != self._fingerprint(epoch):
            raise ParameterError(
                "state dict comes from a different plan (other rows, clusters, batch_size, seed, replicas or rank); "
                "create the sampler with the same arguments and embeddings (and refresh() as before) to resume"
            )
        self.epoch = epoch
        self._resume = yielded
        self._yielded = yielded
        self._advance = False

    def __repr__(self) -> str:
        return (
            f"ClusterBatchSampler(n={self._emb.shape[0]}, batch_size={self.batch_size}, "
            f"cluster_size={self.cluster_size_at(self.epoch)}, clusters_per_batch={self.clusters_per_batch}, "
            f"random_fraction={self.random_fraction}, epoch={self.epoch}, rank={self.rank}/{self.num_replicas})"
        )
