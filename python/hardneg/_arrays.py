"""Input conversion shared by the public API: embeddings matrices and per-query id lists."""

from __future__ import annotations

import operator
import sys
from typing import Any, Sequence

import numpy as np

from .errors import DeviceError, DTypeError, ParameterError, ShapeError


#: The similarity names used across hardneg (mining's ``metric``, the losses' ``similarity``), as
#: sentence-transformers' ``similarity_fn_name`` spells them; ``"ip"`` (FAISS's name for the inner
#: product) is accepted for ``"dot"``.
SIMILARITY_ALIASES = {"cosine": "cosine", "dot": "dot", "ip": "dot"}


def similarity_name(value: Any, param: str) -> str:
    """``"cosine"`` or ``"dot"`` for any accepted spelling, else :class:`ParameterError`."""
    name = SIMILARITY_ALIASES.get(value) if isinstance(value, str) else None
    if name is None:
        raise ParameterError(f"{param} must be 'cosine' or 'dot' (the inner product; 'ip' is accepted too), got {value!r}")
    return name


def from_torch(x: Any, what: str) -> Any:
    """A torch tensor as a numpy array (a view for CPU tensors numpy can hold; bfloat16 becomes
    float32); anything else is returned unchanged. Tensors not in host memory (CUDA, MPS, meta)
    raise :class:`DeviceError`: hardneg's search and mining read host memory."""
    torch = sys.modules.get("torch")  # a tensor cannot exist unless torch is imported
    if torch is None or not isinstance(x, torch.Tensor):
        return x
    if x.device.type != "cpu":
        kind = "a meta tensor (it holds no data)" if x.device.type == "meta" else f"on {x.device}"
        raise DeviceError(f"{what} is a torch tensor {kind}; hardneg reads it from host memory: "
                          f"pass {what}.cpu() (the hardneg.losses work on any device directly)")
    x = x.detach().resolve_conj().resolve_neg()
    if x.dtype == torch.bfloat16:  # numpy has no bfloat16
        x = x.float()
    return x.numpy()


def check_real_dtype(arr: Any, what: str) -> None:
    """Raises :class:`DTypeError` unless ``arr`` (an array) holds real numbers; text gets a
    pointer to the embedding step."""
    dtype = np.dtype(arr.dtype)
    if dtype.kind in "fiub":
        return
    texty = dtype.kind in "US" or (dtype.kind == "O" and arr.size > 0 and isinstance(arr.flat[0], (str, bytes)))
    if texty:
        raise DTypeError(
            f"{what} holds text (dtype {dtype}) where embeddings are expected: embed the texts first, e.g. "
            "model.encode(texts, normalize_embeddings=True) with a sentence-transformers model, or mine from the "
            "texts directly with hardneg.integrations.sentence_transformers.mine_hard_negatives "
            "(`hardneg mine-texts` on the command line)"
        )
    raise DTypeError(f"{what} has dtype {dtype}; pass real numbers (float32 preferred)")


def as_matrix(x: Any, what: str) -> np.ndarray:
    """Returns ``x`` as a C-contiguous float32 ``[rows, dim]`` array, without a copy when it already is one."""
    if isinstance(x, np.ndarray):
        arr = x
    else:
        x = from_torch(x, what)
        try:
            arr = np.asarray(x)
        except Exception as e:  # noqa: BLE001 - any conversion failure is a dtype problem here
            raise DTypeError(f"{what} could not be converted to a numeric array: {e}") from e
    check_real_dtype(arr, what)
    if arr.ndim != 2:
        hint = "; for a single vector use x[None, :]" if arr.ndim == 1 else ""
        raise ShapeError(f"{what} must be 2-D [rows, dim], got shape {arr.shape}{hint}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ShapeError(f"{what} is empty (shape {arr.shape}); pass at least one row and one column")
    if arr.dtype == np.float32 and arr.flags.c_contiguous:
        return arr.view(np.ndarray) if type(arr) is not np.ndarray else arr
    with np.errstate(over="ignore"):
        return np.ascontiguousarray(arr, dtype=np.float32)


def as_queries(x: Any, dim: int) -> np.ndarray:
    """Queries as float32 ``[Q, dim]`` for an index of dimension ``dim``."""
    q = as_matrix(x, "queries")
    if q.shape[1] != dim:
        raise ShapeError(
            f"queries have dimension {q.shape[1]} but the corpus has dimension {dim}; embed both with the same model"
        )
    return q


def as_id_matrix(x: Any) -> np.ndarray:
    """Given ids as a C-contiguous int64 ``[Q, m]`` array (-1 = none)."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "iu":
        raise DTypeError(f"ids must be integers, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ShapeError(f"ids must be 2-D [queries, m], got shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def as_count(x: Any, name: str, minimum: int = 1) -> int:
    """Returns ``x`` as an int >= ``minimum``; bools and floats are rejected."""
    if isinstance(x, bool):
        raise ParameterError(f"{name} must be an integer, got a bool")
    try:
        v = operator.index(x)
    except TypeError:
        raise ParameterError(f"{name} must be an integer, got {type(x).__name__} {x!r}") from None
    if v < minimum:
        raise ParameterError(f"{name} must be at least {minimum}, got {v}")
    return v


def as_threads(threads: Any) -> int:
    """``None`` (every core) becomes 0 for the core; otherwise a positive int."""
    if threads is None:
        return 0
    return as_count(threads, "threads")


def id_lists_to_csr(lists: Any, rows: int, what: str, *, allow_1d: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Converts per-row id lists to CSR ``(offsets, ids)`` int64 arrays.

    ``lists`` is a 2-D integer array padded with -1, a 1-D array of one id per row (when
    ``allow_1d``), or a sequence of ``rows`` int sequences. Padding (-1) is kept in ``ids``; the
    core skips it.
    """
    return rows_to_csr(lists, rows, what, dtype=np.int64, allow_1d=allow_1d)


def rows_to_csr(lists: Any, rows: int, what: str, *, dtype: Any, allow_1d: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Per-row lists as CSR ``(offsets int64, values)``: integer ids (``dtype=np.int64``, padded
    with -1) or real numbers (``dtype=np.float32``, padded with NaN), given as a padded 2-D
    array, a 1-D array of one value per row (when ``allow_1d``), or ``rows`` sequences."""
    ints = np.dtype(dtype).kind == "i"
    lists = from_torch(lists, what)
    kinds, items, pad, seqs = ("iu", "integer ids", "-1", "int") if ints else ("fiu", "real numbers", "NaN", "float")
    if isinstance(lists, np.ndarray) or (hasattr(lists, "shape") and hasattr(lists, "dtype") and not isinstance(lists, (list, tuple))):
        arr = np.asarray(lists)
        if arr.dtype.kind not in kinds:
            raise DTypeError(f"{what} must hold {items}, got dtype {arr.dtype}")
        if arr.ndim == 1 and allow_1d:
            arr = arr[:, None]
        if arr.ndim != 2:
            hint = "1-D [queries] (one per query) or " if allow_1d else ""
            raise ShapeError(f"{what} as an array must be {hint}2-D [queries, max_per_query] padded with {pad}, got shape {arr.shape}")
        if arr.shape[0] != rows:
            raise ShapeError(f"{what} has {arr.shape[0]} rows but there are {rows} queries; give one row per query")
        width = arr.shape[1]
        offsets = np.arange(rows + 1, dtype=np.int64) * width
        return offsets, np.ascontiguousarray(arr, dtype=dtype).reshape(-1)
    if isinstance(lists, (str, bytes)) or not isinstance(lists, Sequence):
        raise DTypeError(f"{what} must be a 2-D {seqs} array or a list of {seqs} sequences, got {type(lists).__name__}")
    if len(lists) != rows:
        raise ShapeError(f"{what} has {len(lists)} rows but there are {rows} queries; give one row per query")
    parts = []
    for i, row in enumerate(lists):
        a = np.asarray(row if row is not None else [], dtype=object if (row is None and ints) else None)
        if a.ndim == 0:
            a = a.reshape(1)
        if a.size and a.dtype.kind not in kinds:
            raise DTypeError(f"{what} row {i} must hold {items}, got {a.dtype}")
        parts.append(a.astype(dtype, copy=False).reshape(-1))
    counts = np.fromiter((p.size for p in parts), dtype=np.int64, count=rows)
    offsets = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    values = np.concatenate(parts) if parts else np.zeros(0, dtype)
    return offsets, values.astype(dtype, copy=False)


def as_ids(x: Any, what: str, *, ndim: int = 1) -> np.ndarray:
    """Returns integer ids ``x`` (list, numpy array or CPU tensor) as a C-contiguous int64 array
    with ``ndim`` dimensions; floats, bools and ids beyond int64 are rejected."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x)
    except Exception as e:  # noqa: BLE001 - any conversion failure is a dtype problem here
        raise DTypeError(f"{what} could not be converted to an integer array: {e}") from e
    if arr.size == 0 and arr.dtype.kind == "f":  # an empty list converts to float64
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise DTypeError(f"{what} must hold integer ids, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ShapeError(f"{what} must be {ndim}-D, got shape {arr.shape}")
    if arr.dtype == np.uint64 and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
        raise ParameterError(f"{what} holds ids beyond the int64 range (max {int(arr.max())})")
    return np.ascontiguousarray(arr, dtype=np.int64)


def as_seed(seed: Any) -> int:
    """A non-negative int seed reduced to the 64 bits the core uses."""
    return as_count(seed, "seed", minimum=0) % 2**64
