"""Every bad input gets a typed exception under HardnegError with a message that says what to change."""

from __future__ import annotations

import numpy as np
import pytest

import hardneg
from hardneg import errors


def test_hierarchy():
    for cls, builtin in [
        (hardneg.ShapeError, ValueError),
        (hardneg.DTypeError, TypeError),
        (hardneg.NonFiniteError, ValueError),
        (hardneg.IdOutOfRangeError, IndexError),
        (hardneg.ParameterError, ValueError),
    ]:
        assert issubclass(cls, hardneg.HardnegError) and issubclass(cls, builtin)
    assert set(errors.__all__) <= set(hardneg.__all__)


C = np.eye(5, 4, dtype=np.float32)
Q = np.ones((2, 4), np.float32)


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: hardneg.topk(np.ones((2, 3), np.float32), C, 1), hardneg.ShapeError, "dimension 3 but the corpus has dimension 4"),
        (lambda: hardneg.topk(Q, C, 0), hardneg.ParameterError, "k must be at least 1"),
        (lambda: hardneg.topk(Q, C, -3), hardneg.ParameterError, "k must be at least 1"),
        (lambda: hardneg.topk(Q, C, 2.5), hardneg.ParameterError, "k must be an integer"),
        (lambda: hardneg.topk(Q, C, True), hardneg.ParameterError, "bool"),
        (lambda: hardneg.topk(Q, C, 6), hardneg.ParameterError, r"k=6 is larger than the corpus \(5 rows\)"),
        (lambda: hardneg.topk(Q, C, 4, exclude=[[0, 1], []]), hardneg.ParameterError, "query 0 can get only 3"),
        (lambda: hardneg.topk(Q, np.zeros((0, 4), np.float32), 1), hardneg.ShapeError, "corpus is empty"),
        (lambda: hardneg.topk(np.zeros((0, 4), np.float32), C, 1), hardneg.ShapeError, "queries is empty"),
        (lambda: hardneg.topk(Q, np.zeros((5, 0), np.float32), 1), hardneg.ShapeError, "corpus is empty"),
        (lambda: hardneg.topk(np.ones(4, np.float32), C, 1), hardneg.ShapeError, r"2-D.*x\[None, :\]"),
        (lambda: hardneg.topk(Q, np.ones((2, 5, 4), np.float32), 1), hardneg.ShapeError, "corpus must be 2-D"),
        (lambda: hardneg.topk(Q.astype(str), C, 1), hardneg.DTypeError, r"queries holds text \(dtype <U32\).*model\.encode"),
        (lambda: hardneg.topk(Q, C.astype(complex), 1), hardneg.DTypeError, "corpus has dtype"),
        (lambda: hardneg.topk(Q, [["a"]], 1), hardneg.DTypeError, "corpus"),
        (lambda: hardneg.topk(Q, C, 1, exclude=[[0], [5]]), hardneg.IdOutOfRangeError, "query 1 holds id 5, outside the corpus ids 0..5"),
        (lambda: hardneg.topk(Q, C, 1, exclude=[[-2], []]), hardneg.IdOutOfRangeError, "id -2"),
        (lambda: hardneg.topk(Q, C, 1, exclude=[[0]]), hardneg.ShapeError, "1 rows but there are 2 queries"),
        (lambda: hardneg.topk(Q, C, 1, exclude=np.zeros((3, 1), np.int64)), hardneg.ShapeError, "3 rows but there are 2 queries"),
        (lambda: hardneg.topk(Q, C, 1, exclude=np.zeros((2, 1), np.float32)), hardneg.DTypeError, "integer ids"),
        (lambda: hardneg.topk(Q, C, 1, exclude=[[0.5], []]), hardneg.DTypeError, "integer ids"),
        (lambda: hardneg.topk(Q, C, 1, exclude="0,1"), hardneg.DTypeError, "list of int sequences"),
        (lambda: hardneg.topk(Q, C, 1, metric="l2"), hardneg.ParameterError, "metric must be 'cosine' or 'dot'"),
        (lambda: hardneg.topk(Q, C, 1, threads=0), hardneg.ParameterError, "threads must be at least 1"),
        (lambda: hardneg.FlatIndex(C).score(Q, np.array([[7]] * 2)), hardneg.IdOutOfRangeError, "id 7"),
    ],
)
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize("metric", ["ip", "cosine"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_names_the_row(metric, bad):
    c = np.ones((300, 8), np.float32)
    c[217, 3] = bad
    with pytest.raises(hardneg.NonFiniteError, match="corpus has a non-finite value .* in row 217"):
        hardneg.FlatIndex(c, metric=metric)
    q = np.ones((4, 8), np.float32)
    q[2, 0] = bad
    with pytest.raises(hardneg.NonFiniteError, match="queries has a non-finite value .* in row 2"):
        hardneg.topk(q, np.ones((300, 8), np.float32), 1, metric=metric)


def test_float64_overflow_is_reported_as_non_finite():
    c = np.ones((3, 2))
    c[1, 1] = 1e300  # becomes inf in float32
    with pytest.raises(hardneg.NonFiniteError, match="row 1"):
        hardneg.FlatIndex(c)
