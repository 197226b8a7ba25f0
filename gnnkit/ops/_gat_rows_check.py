"""The self-check of the GAT passes written out per (heads, channels) (:mod:`gnnkit.ops._gat_rows`).

Each kernel runs, right after it is compiled, on a small graph (5 nodes, an empty row, a
repeated sender) and is compared bit for bit with numpy doing the same scalar operations in
the kernel's order. LLVM's SLP vectoriser, which these kernels switch on, miscompiled code
in older releases (numba PR #8852); a miscompiled kernel fails here, loudly, before it
computes any result.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from gnnkit.ops._gat_feature_sources import halving_sum
from gnnkit.ops._jit import require_same_bits

__all__ = ["self_check"]

SLOPE, P = 0.2, 0.6  # the leaky ReLU's slope and the dropout probability of the check


def _small_case(heads: int, channels: int, dtype: np.dtype) -> dict[str, np.ndarray]:
    """A 5-node graph with an empty row and a repeated sender, random values."""
    rng = np.random.default_rng(heads * 100 + channels)
    rowptr = np.array([0, 3, 3, 5, 8, 9], dtype=np.int64)
    col = np.array([2, 0, 2, 4, 1, 0, 3, 4, 4], dtype=np.int64)
    order = np.argsort(col, kind="stable")  # the transposed structure: senders ascending
    rows = np.repeat(np.arange(rowptr.size - 1), np.diff(rowptr))
    return {
        "rowptr": rowptr,
        "col": col,
        "colptr": np.concatenate([[0], np.cumsum(np.bincount(col, minlength=5))]).astype(np.int64),
        "perm_t": order.astype(np.int64),
        "row_t": rows[order].astype(np.int64),
        "rows": rows,
        "xw": rng.standard_normal((5, heads, channels)).astype(dtype),
        "alpha": rng.uniform(0.1, 1.0, (col.size, heads)).astype(dtype),
        "keep": rng.uniform(size=(col.size, heads)) > 0.4,
        "grad_out": rng.standard_normal((5, heads, channels)).astype(dtype),
        "a_src": rng.standard_normal((5, heads)).astype(dtype),
        "a_dst": rng.standard_normal((5, heads)).astype(dtype),
        "edge_score": rng.standard_normal((col.size, heads)).astype(dtype),
        "grad_score": rng.standard_normal((col.size, heads)).astype(dtype),
    }


def _aggregate(case: dict[str, np.ndarray], masked: Any) -> list[np.ndarray]:
    rowptr, col, xw = case["rowptr"], case["col"], case["xw"]
    alpha, zero = case["alpha"].copy(), xw.dtype.type(0)
    out = np.zeros_like(xw)
    for i in range(rowptr.size - 1):
        entries = range(rowptr[i], rowptr[i + 1])
        for h in range(xw.shape[1]):
            total = zero
            for e in entries:
                total = total + alpha[e, h]
            inverse = xw.dtype.type(1) / total if len(entries) else zero
            for e in entries:
                alpha[e, h] = alpha[e, h] * inverse
            for c in range(xw.shape[2]):
                value = zero
                for e in entries:
                    value = value + masked(alpha[e, h], e, h) * xw[col[e], h, c]
                out[i, h, c] = value
    return [out, alpha]


def _sender_grad(case: dict[str, np.ndarray], masked: Any, tree: bool) -> list[np.ndarray]:
    """The sender pass; each edge's dot product summed over channels in order, or as a
    :func:`halving_sum` (``tree``: the pass by head)."""
    xw, alpha, grad_out, zero = (
        case["xw"],
        case["alpha"],
        case["grad_out"],
        case["xw"].dtype.type(0),
    )
    grad_xw, grad_alpha = np.zeros_like(xw), np.zeros_like(alpha)
    for e in case["perm_t"]:
        j, i = case["col"][e], case["rows"][e]
        for h in range(xw.shape[1]):
            products = [grad_out[i, h, c] * xw[j, h, c] for c in range(xw.shape[2])]
            g = (
                halving_sum(products, lambda a, b: a + b)
                if tree
                else functools.reduce(lambda a, b: a + b, products, zero)
            )
            grad_alpha[e, h] = masked(g, e, h)
            for c in range(xw.shape[2]):
                grad_xw[j, h, c] = grad_xw[j, h, c] + masked(alpha[e, h], e, h) * grad_out[i, h, c]
    return [grad_xw, grad_alpha]


def _leaky_input(case: dict[str, np.ndarray], e: int, i: int, h: int) -> Any:
    return case["a_src"][case["col"][e], h] + case["a_dst"][i, h] + case["edge_score"][e, h]


def _scores(case: dict[str, np.ndarray]) -> list[np.ndarray]:
    rowptr, dtype = case["rowptr"], case["alpha"].dtype
    slope, alpha = dtype.type(SLOPE), np.zeros_like(case["alpha"])
    for i in range(rowptr.size - 1):
        entries = range(rowptr[i], rowptr[i + 1])
        for h in range(alpha.shape[1]):
            peak = dtype.type(-np.inf)
            for e in entries:
                s = _leaky_input(case, e, i, h)
                alpha[e, h] = s if s > 0 else s * slope
                peak = alpha[e, h] if alpha[e, h] > peak else peak
            for e in entries:
                alpha[e, h] = alpha[e, h] - peak
    return [alpha]


def _score_grads(case: dict[str, np.ndarray]) -> list[np.ndarray]:
    rowptr, alpha = case["rowptr"], case["alpha"]
    slope, zero = alpha.dtype.type(SLOPE), alpha.dtype.type(0)
    grad_score, grad_dst = case["grad_score"].copy(), np.zeros_like(case["a_dst"])
    for i in range(rowptr.size - 1):
        entries = range(rowptr[i], rowptr[i + 1])
        for h in range(alpha.shape[1]):
            weighted = zero
            for e in entries:
                weighted = weighted + alpha[e, h] * grad_score[e, h]
            total = zero
            for e in entries:
                g = alpha[e, h] * (grad_score[e, h] - weighted)
                g = g if _leaky_input(case, e, i, h) > 0 else g * slope
                grad_score[e, h] = g
                total = total + g
            grad_dst[i, h] = total
    return [grad_score, grad_dst]


def _source_grads(case: dict[str, np.ndarray]) -> list[np.ndarray]:
    grad_score, grad_src = case["grad_score"], np.zeros_like(case["a_src"])
    for e in case["perm_t"]:  # senders ascending, each sender's entries in order
        j = case["col"][e]
        for h in range(grad_src.shape[1]):
            grad_src[j, h] = grad_src[j, h] + grad_score[e, h]
    return [grad_src]


def _reference(kind: str, case: dict[str, np.ndarray], dropout: bool) -> list[np.ndarray]:
    """``kind``'s results in numpy, one scalar operation at a time in the kernel's order."""
    dtype = case["xw"].dtype
    scale = dtype.type(1 / (1 - P))

    def masked(value: Any, e: int, h: int) -> Any:
        return value if not dropout else value * (scale * dtype.type(case["keep"][e, h]))

    if kind in ("aggregate", "aggregate by head"):
        return _aggregate(case, masked)
    if kind in ("sender grad", "sender grad by head"):
        return _sender_grad(case, masked, tree=kind == "sender grad by head")
    if kind == "heads last":
        return [np.ascontiguousarray(case["xw"].transpose(0, 2, 1))]
    return {"score": _scores, "score grad": _score_grads, "source grad": _source_grads}[kind](case)


def _run(kernel: Any, kind: str, case: dict[str, np.ndarray]) -> list[np.ndarray]:
    """``kind``'s results from the compiled ``kernel`` on ``case`` (outputs start as NaN)."""
    c = case
    edges, scale = c["col"].size, 1 / (1 - P)

    def nan(shape: Any) -> np.ndarray:
        return np.full(shape, np.nan, dtype=c["xw"].dtype)

    def run(*arrays: np.ndarray | int, after: tuple = ()) -> None:
        kernel(0, 5, *(a.ctypes.data if isinstance(a, np.ndarray) else a for a in arrays), *after)

    scores = (c["rowptr"], c["col"], c["a_src"], c["a_dst"], 1, c["edge_score"], 1)
    if kind in ("aggregate", "aggregate by head"):
        out, alpha = nan(c["xw"].shape), c["alpha"].copy()
        ahead = (2,) if kind == "aggregate by head" else ()  # prefetch two entries ahead
        run(c["rowptr"], c["col"], c["xw"], alpha, c["keep"], out, *ahead,
            after=(scale, edges, 5))  # fmt: skip
        return [out, alpha]
    if kind in ("sender grad", "sender grad by head"):
        grad_xw, grad_alpha = nan(c["xw"].shape), nan(c["alpha"].shape)
        grad_out, ahead = c["grad_out"], (2,)  # by head: prefetch two entries ahead
        if kind == "sender grad":  # heads-last in and out
            grad_out, ahead = np.ascontiguousarray(grad_out.transpose(0, 2, 1)), ()
            grad_xw = nan(c["xw"].shape[:1] + c["xw"].shape[:0:-1])  # senders x C x H
        transposed = (c["colptr"], c["row_t"], c["perm_t"])
        run(*transposed, c["xw"], c["alpha"], c["keep"], grad_out, grad_xw, grad_alpha,
            *ahead, after=(scale, edges, 5))  # fmt: skip
        if kind == "sender grad":
            grad_xw = np.ascontiguousarray(grad_xw.transpose(0, 2, 1))
        return [grad_xw, grad_alpha]
    if kind == "heads last":
        out = nan(c["xw"].shape[:1] + c["xw"].shape[:0:-1])
        run(c["xw"], out)
        return [out]
    if kind == "score":
        alpha = nan(c["alpha"].shape)
        run(*scores, alpha, after=(SLOPE, edges, 5))
        return [alpha]
    if kind == "score grad":
        grad_score, grad_dst = c["grad_score"].copy(), nan(c["a_dst"].shape)
        run(*scores, c["alpha"], grad_score, grad_dst, after=(SLOPE, edges, 5))
        return [grad_score, grad_dst]
    grad_src = nan(c["a_src"].shape)
    run(c["colptr"], c["perm_t"], c["grad_score"], grad_src, after=(edges,))
    return [grad_src]


def self_check(
    kernel: Any, kind: str, heads: int, channels: int, dropout: bool, dtype: str
) -> None:
    """Run a freshly compiled ``kernel`` of ``kind`` on a small case and compare it with
    numpy bit for bit; raise ``RuntimeError`` (naming the switch that turns these kernels
    off) if they differ."""
    case = _small_case(heads, channels, np.dtype(dtype))
    expected = _reference(kind, case, dropout)
    got = _run(kernel, kind, case)
    require_same_bits(
        got, expected, f"GAT kernel ({kind}, {heads} heads x {channels} channels, {dtype})"
    )
