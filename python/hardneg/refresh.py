"""Re-mining negatives with the model being trained: :class:`Refresher` (ANCE-style refresh).

A refresh re-embeds the queries and documents with the current weights, mines again with
:func:`hardneg.mine` and publishes the result as a new version of a :class:`NegativeStore`;
optionally it re-clusters a :class:`ClusterBatchSampler` with the new query embeddings. It runs
synchronously in the training loop: on a CPU a background thread would compete with training for
the same cores (torch releases the GIL), and the loop then sees any failure where it happens.
Everything is checked before anything changes, so a refresh that fails (an encoder that
raises, returns the wrong shape or NaN, a mining error) leaves the store and the sampler as they
were and re-raises in the training loop.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping

import numpy as np

from ._arrays import as_count
from .errors import NonFiniteError, ParameterError, ShapeError
from .store import NegativeStore

__all__ = ["Refresher"]

Encoder = Callable[[], Any]


def _as_embeddings(x: Any, what: str, rows: int | None) -> np.ndarray:
    """The encoder's output as a finite float32 ``[rows, d]`` matrix, or a typed error naming the encoder."""
    from ._arrays import as_matrix

    try:
        m = as_matrix(x, f"{what}()'s result")
    except ShapeError as e:
        raise ShapeError(f"{e}; {what} must return one embedding per row, shape [rows, dim]") from None
    if rows is not None and m.shape[0] != rows:
        raise ShapeError(f"{what} returned {m.shape[0]} embeddings but the store has {rows} rows; embed every row, "
                         "in the order the negatives were mined")
    ok = np.isfinite(m).all(axis=1)
    if not ok.all():
        r = int(np.argmin(ok))
        raise NonFiniteError(f"{what} returned NaN or Inf in row {r} ({int((~ok).sum())} rows in all); the model's "
                             "weights or inputs have diverged, or the encoder is wrong")
    return m


class Refresher:
    """Re-embeds, re-mines and publishes a new version of a :class:`NegativeStore`.

    Parameters
    ----------
    encode_queries, encode_documents : callable
        Called without arguments, they return the embeddings (numpy or torch) of every query
        (the store's rows, in order) and every document (corpus ids), with the current
        weights. For a sentence-transformers model: ``lambda: model.encode(query_texts)``.
    store : NegativeStore
        Where new versions are published; its positives are the mining positives.
    every_n_steps, every_n_epochs : int, optional
        When :meth:`due` says yes (give at most one). Without either, only explicit
        :meth:`refresh` calls refresh.
    mine_kwargs : dict, optional
        Arguments of :func:`hardneg.mine` (``num_negatives`` defaults to the pool width of the
        store's latest version, ``progress`` to False), e.g.
        ``{"relative_margin": 0.05, "exclude": dup_ids}``.
    sampler : ClusterBatchSampler, optional
        Re-clustered with the new query embeddings (its rows are the store's queries); the new
        clusters apply from the sampler's next ``iter()``.

    Attributes
    ----------
    history : list of dict
        One entry per successful refresh: ``version``, ``step``, ``epoch``, ``seconds``,
        ``missing_negatives``, ``empty_queries``.

    Examples
    --------
    >>> import numpy as np, hardneg
    >>> rng = np.random.default_rng(0)
    >>> q, d = rng.standard_normal((20, 8)), rng.standard_normal((50, 8))
    >>> store = hardneg.NegativeStore(hardneg.mine(q, d, np.arange(20), num_negatives=4))
    >>> weights = {"shift": 0.0}                       # stands in for a model being trained
    >>> r = hardneg.Refresher(lambda: q + weights["shift"], lambda: d, store=store, every_n_steps=100)
    >>> r.due(step=100), r.due(step=150)
    (True, False)
    >>> weights["shift"] = 0.5
    >>> r.refresh(step=100), store.version
    (1, 1)
    >>> bad = hardneg.Refresher(lambda: q[:5], lambda: d, store=store)
    >>> try:
    ...     bad.refresh(step=200)
    ... except hardneg.ShapeError as e:
    ...     print(str(e)[:59])
    encode_queries returned 5 embeddings but the store has 20 r
    >>> store.version                                  # the failed refresh kept version 1
    1
    """

    def __init__(self, encode_queries: Encoder, encode_documents: Encoder, *, store: NegativeStore,
                 every_n_steps: int | None = None, every_n_epochs: int | None = None,
                 mine_kwargs: Mapping[str, Any] | None = None, sampler: Any = None) -> None:
        if not callable(encode_queries) or not callable(encode_documents):
            raise ParameterError("encode_queries and encode_documents must be callables returning embeddings, "
                                 "e.g. lambda: model.encode(texts)")
        if not isinstance(store, NegativeStore):
            raise ParameterError(f"store must be a hardneg.NegativeStore, got {type(store).__name__}")
        if every_n_steps is not None and every_n_epochs is not None:
            raise ParameterError("give every_n_steps or every_n_epochs, not both")
        self.encode_queries = encode_queries
        self.encode_documents = encode_documents
        self.store = store
        self.every_n_steps = None if every_n_steps is None else as_count(every_n_steps, "every_n_steps")
        self.every_n_epochs = None if every_n_epochs is None else as_count(every_n_epochs, "every_n_epochs")
        kwargs = dict(mine_kwargs or {})
        for bad in ("queries", "corpus", "positives"):
            if bad in kwargs:
                raise ParameterError(f"mine_kwargs must not hold {bad!r}: the refresher embeds the data itself and "
                                     "takes the positives from the store")
        self.mine_kwargs = kwargs
        self.sampler = sampler
        self.history: list[dict[str, Any]] = []
        self._last: tuple[int | None, int | None] = (None, None)

    def due(self, *, step: int | None = None, epoch: int | None = None) -> bool:
        """Whether a refresh is due at ``step`` (with ``every_n_steps``) or at the start of ``epoch``
        (with ``every_n_epochs``); never at 0 and never twice for the same step or epoch."""
        if self.every_n_steps is not None and step is not None:
            return step > 0 and step % self.every_n_steps == 0 and self._last[0] != step
        if self.every_n_epochs is not None and epoch is not None:
            return epoch > 0 and epoch % self.every_n_epochs == 0 and self._last[1] != epoch
        return False

    def maybe_refresh(self, *, step: int | None = None, epoch: int | None = None) -> int | None:
        """:meth:`refresh` if :meth:`due`; returns the new version or None."""
        return self.refresh(step=step, epoch=epoch) if self.due(step=step, epoch=epoch) else None

    def refresh(self, *, step: int | None = None, epoch: int | None = None) -> int:
        """Embeds, mines and publishes now; returns the new store version.

        Raises whatever the encoders raise (with a note naming the step and the version still in
        use), :class:`ShapeError` for embeddings of the wrong shape, :class:`NonFiniteError` for
        NaN/Inf, or the errors of :func:`hardneg.mine`. The store and the sampler are then unchanged.
        """
        from .mining import mine

        started = time.perf_counter()
        kept = self.store.version
        try:
            q = _as_embeddings(self._call(self.encode_queries, "encode_queries"), "encode_queries", self.store.num_queries)
            d = _as_embeddings(self._call(self.encode_documents, "encode_documents"), "encode_documents",
                               self.store.num_documents)
            if q.shape[1] != d.shape[1]:
                raise ShapeError(f"encode_queries returned dimension {q.shape[1]} but encode_documents {d.shape[1]}; "
                                 "embed both with the same model")
            kwargs = {"progress": False, **self.mine_kwargs}
            kwargs.setdefault("num_negatives", max(1, int(self.store.read().negatives.shape[1])))
            mined = mine(q, d, np.asarray(self.store.positives), **kwargs)
            if self.sampler is not None:
                self.sampler.refresh(q)  # restores its old clusters itself if this fails
            version = self.store.publish(mined, step=step, epoch=epoch)
        except Exception as e:
            e.add_note(f"hardneg.Refresher: the refresh at step={step}, epoch={epoch} failed; the store still serves "
                       f"version {kept} and nothing was changed")
            raise
        self._last = (step, epoch)
        self.history.append({
            "version": version, "step": step, "epoch": epoch, "seconds": time.perf_counter() - started,
            "missing_negatives": int(mined.stats.get("missing_negatives", 0)),
            "empty_queries": int(mined.stats.get("empty_queries", 0)),
        })
        return version

    @staticmethod
    def _call(fn: Encoder, name: str) -> Any:
        out = fn()
        if out is None:
            raise ShapeError(f"{name} returned None; it must return the embeddings, shape [rows, dim]")
        return out

    def state_dict(self) -> dict[str, Any]:
        """``{"last_step", "last_epoch", "history"}`` (the store's versions live in its directory)."""
        return {"last_step": self._last[0], "last_epoch": self._last[1], "history": list(self.history)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores :meth:`state_dict`, so a resumed run does not refresh the same step twice."""
        try:
            self._last = (state["last_step"], state["last_epoch"])
            self.history = list(state.get("history", []))
        except (KeyError, TypeError) as e:
            raise ParameterError(f"not a Refresher state dict ({e}); pass what state_dict() returned") from None

    def __repr__(self) -> str:
        when = (f"every_n_steps={self.every_n_steps}" if self.every_n_steps else
                f"every_n_epochs={self.every_n_epochs}" if self.every_n_epochs else "on demand")
        return f"Refresher({when}, refreshes={len(self.history)}, store={self.store!r})"
