r"""Two passes of the fused GAT kernels written out per (heads, channels) (see
:mod:`gnnkit.ops._gat_cpu`).

- The forward's aggregation (pass 3): each row's exponentials normalised (stored in
  ``alpha``, before dropout), then :math:`\text{out}_{ih} = \sum_{e = (j \to i)}
  \tilde\alpha_{eh} \, x_{jh}` with :math:`\tilde\alpha` the coefficient after attention
  dropout. Written out for one (H, C) with at most :data:`MAX_ENTRIES` entries per node: the
  row's H x C sums are locals that LLVM's SLP vectoriser packs into vectors
  (:mod:`gnnkit.ops._spmm_narrow` explains why a loop over a channel count known only at run
  time is not vectorised).
- The backward's sender pass (pass 1) for one head: for each edge :math:`e = (j \to i)` on the
  transposed structure, :math:`g_{\alpha_e} = \langle \partial L/\partial \text{out}_i,
  x_j\rangle` (times the dropout mask) and :math:`\partial L / \partial x_j \mathrel{+}=
  \tilde\alpha_e \, \partial L/\partial \text{out}_i`, the sender's row and its gradient held
  in locals. With several heads the per-edge dot products are eight horizontal sums, which
  the written-out code ran slower than the general kernel (500 against 383 us on Cora's 8 x 8),
  so only one head (GAT's output layer) takes it.

Measured on Cora with self-loops (13,264 entries, 1 thread, the kernel calls alone): the
aggregation of 8 heads x 8 channels with attention dropout 55 against 234 us, of 1 x 7
18 against 97 us; the one-head sender pass 18 against 139 us. The written-out kernels run
where the gathered feature rows fit in cache (below
:data:`gnnkit.ops._jit.PREFETCH_MIN_BYTES`: they do not prefetch); larger graphs keep the
general kernels, which do.

Sums run in CSR order (over the transposed structure for the sender pass), one entry at a
time, without fused multiply-adds, each row by one thread: the same bits for every thread
count. The general kernels add four entries per pass, so the two differ in the last bits.
Like :mod:`gnnkit.ops._node_scores`, each kernel is compiled once per process for its shape
and dtype, checked bit for bit against numpy on a small case (:func:`_self_check`), switched
off with the narrow SpMM (``GNNKIT_NARROW_SPMM=0``), and takes its tensors as addresses.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gnnkit.ops._jit import (
    NUMPY_DTYPES,
    PREFETCH_MIN_BYTES,
    _numba,
    address_pointer,
    compile_vectorised,
    generated_kernel,
    kernel_globals,
    node_row_globals,
)
from gnnkit.utils.env import switched_off

__all__ = ["aggregates", "aggregation", "sender_gradient", "sender_grads"]

MAX_ENTRIES = 64  # H x C per node, at most (also gnnkit.ops._node_scores's limit)


def _coefficients(heads: int, dropout: bool, indent: str) -> list[str]:
    """Lines that turn entry ``e``'s exponentials into ``a_{h}``: normalised (and stored in
    ``alpha``), then with the dropout mask applied where ``dropout``."""
    lines = []
    for h in range(heads):
        lines += [
            f"{indent}a_{h} = alpha[eh + E{h}] * inverse_{h}",
            f"{indent}alpha[eh + E{h}] = a_{h}",
        ]
        if dropout:
            lines.append(f"{indent}a_{h} = a_{h} * SCALE if keep[eh + E{h}] else ZERO")
    return lines


def _aggregate_source(heads: int, channels: int, dropout: bool) -> str:
    """``kernel(lo, hi, rowptr, col, xw, alpha, keep, out, scale, num_edges, num_x)``."""
    entries = heads * channels
    lines = [
        "def kernel(lo, hi, rowptr, col, xw, alpha, keep, out, scale, num_edges, num_x):",
        "    rowptr = carray(INDEX(rowptr), hi + 1)",
        "    col = carray(INDEX(col), num_edges)",
        "    xw = carray(FLOAT(xw), num_x * ENTRIES_N)",
        "    alpha = carray(FLOAT(alpha), num_edges * HEADS_N)",
        "    keep = carray(BOOL(keep), num_edges * HEADS_N if DROPOUT else 0)",
        "    out = carray(FLOAT(out), hi * ENTRIES_N)",
        "    SCALE = FLOAT_TYPE(scale)",
        "    for i in range(np.uint64(lo), np.uint64(hi)):",
        "        start, end = np.uint64(rowptr[i]), np.uint64(rowptr[i + ONE_U])",
    ]
    lines += [f"        inverse_{h} = ZERO" for h in range(heads)]
    lines.append("        for e in range(start, end):")
    lines += [f"            inverse_{h} += alpha[e * HEADS + E{h}]" for h in range(heads)]
    lines += [
        f"        inverse_{h} = ONE / inverse_{h} if end > start else ZERO" for h in range(heads)
    ]
    lines += [f"        sum_{k} = ZERO" for k in range(entries)]
    lines += [
        "        for e in range(start, end):",
        "            row, eh = np.uint64(col[e]) * ENTRIES, e * HEADS",
    ]
    lines += _coefficients(heads, dropout, "            ")
    lines += [f"            sum_{k} += a_{k // channels} * xw[row + E{k}]" for k in range(entries)]
    lines.append("        row = i * ENTRIES")
    lines += [f"        out[row + E{k}] = sum_{k}" for k in range(entries)]
    return "\n".join(lines) + "\n"


def _sender_grad_source(heads: int, channels: int, dropout: bool) -> str:
    """``kernel(lo, hi, colptr, row_t, perm_t, xw, alpha, keep, grad_out, grad_xw,
    grad_alpha, scale, num_edges, num_rows)`` for one head (``heads`` is 1)."""
    lines = [
        "def kernel(lo, hi, colptr, row_t, perm_t, xw, alpha, keep, grad_out, grad_xw,",
        "           grad_alpha, scale, num_edges, num_rows):",
        "    colptr = carray(INDEX(colptr), hi + 1)",
        "    row_t = carray(INDEX(row_t), num_edges)",
        "    perm_t = carray(INDEX(perm_t), num_edges)",
        "    xw = carray(FLOAT(xw), hi * ENTRIES_N)",
        "    alpha = carray(FLOAT(alpha), num_edges)",
        "    keep = carray(BOOL(keep), num_edges if DROPOUT else 0)",
        "    grad_out = carray(FLOAT(grad_out), num_rows * ENTRIES_N)",
        "    grad_xw = carray(FLOAT(grad_xw), hi * ENTRIES_N)",
        "    grad_alpha = carray(FLOAT(grad_alpha), num_edges)",
        "    SCALE = FLOAT_TYPE(scale)",
        "    for j in range(np.uint64(lo), np.uint64(hi)):",
        "        row = j * ENTRIES",
    ]
    lines += [f"        x_{c} = xw[row + E{c}]" for c in range(channels)]
    lines += [f"        sum_{c} = ZERO" for c in range(channels)]
    lines += [
        "        for k in range(np.uint64(colptr[j]), np.uint64(colptr[j + ONE_U])):",
        "            e, i = np.uint64(perm_t[k]), np.uint64(row_t[k]) * ENTRIES",
        "            g = ZERO",
    ]
    lines += [f"            g += grad_out[i + E{c}] * x_{c}" for c in range(channels)]
    lines.append("            a = alpha[e]")
    if dropout:
        lines += [
            "            g = g * SCALE if keep[e] else ZERO",
            "            a = a * SCALE if keep[e] else ZERO",
        ]
    lines.append("            grad_alpha[e] = g")
    lines += [f"            sum_{c} += a * grad_out[i + E{c}]" for c in range(channels)]
    lines += [f"        grad_xw[row + E{c}] = sum_{c}" for c in range(channels)]
    return "\n".join(lines) + "\n"


_SOURCES = {"aggregate": _aggregate_source, "sender grad": _sender_grad_source}
_ARGUMENTS = {"aggregate": 11, "sender grad": 14}


@functools.cache
def _dispatcher(kind: str, heads: int, channels: int, dropout: bool, dtype: str) -> Any:
    """The numba dispatcher of one kernel of ``kind`` (shape and dtypes baked in)."""
    names = kernel_globals(
        dtype,
        INDEX=address_pointer("int64"),
        BOOL=address_pointer("bool"),
        ONE_U=np.uint64(1),
        DROPOUT=dropout,
        **node_row_globals(heads, channels),
    )
    source = _SOURCES[kind](heads, channels, dropout)
    label = f"<gnnkit GAT {kind}: {heads} x {channels}{', dropout' if dropout else ''}>"
    return generated_kernel(source, label, names)


_COMPILED: dict[tuple[str, int, int, bool, str], Any] = {}


def _compiled(kind: str, heads: int, channels: int, dropout: bool, dtype: str) -> Any:
    """The kernel, compiled on first use with the SLP vectoriser on, then checked."""
    key = (kind, heads, channels, dropout, dtype)
    kernel = _COMPILED.get(key)
    if kernel is None:
        kernel = _dispatcher(*key)
        types = _numba().types
        signature = [types.int64] * _ARGUMENTS[kind]
        signature[-3] = types.float64  # the dropout scale
        compile_vectorised(kernel, tuple(signature))
        _self_check(kernel, *key)
        _COMPILED[key] = kernel
    return kernel


def _small_case(heads: int, channels: int, dtype: np.dtype) -> dict[str, np.ndarray]:
    """A 5-node graph with an empty row and a repeated sender, random values."""
    rng = np.random.default_rng(heads * 100 + channels)
    rowptr = np.array([0, 3, 3, 5, 8, 9], dtype=np.int64)
    col = np.array([2, 0, 2, 4, 1, 0, 3, 4, 4], dtype=np.int64)
    return {
        "rowptr": rowptr,
        "col": col,
        "xw": rng.standard_normal((5, heads, channels)).astype(dtype),
        "alpha": rng.uniform(0.1, 1.0, (col.size, heads)).astype(dtype),
        "keep": rng.uniform(size=(col.size, heads)) > 0.4,
        "grad_out": rng.standard_normal((5, heads, channels)).astype(dtype),
    }


def _reference(kind: str, case: dict[str, np.ndarray], scale: Any, dropout: bool) -> list:
    """``kind``'s results in numpy, one scalar operation at a time in the kernels' order."""
    rowptr, col, xw, keep = case["rowptr"], case["col"], case["xw"], case["keep"]
    alpha = case["alpha"].copy()
    zero = xw.dtype.type(0)

    def masked(value: Any, e: int, h: int) -> Any:
        return value if not dropout else (value * scale if keep[e, h] else zero)

    if kind == "aggregate":
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
    grad_xw, grad_alpha = np.zeros_like(xw), np.zeros_like(alpha)
    order = np.argsort(col, kind="stable")  # the transposed structure: senders ascending
    rows = np.repeat(np.arange(rowptr.size - 1), np.diff(rowptr))
    for e in order:
        j, i = col[e], rows[e]
        g = zero
        for c in range(xw.shape[2]):
            g = g + case["grad_out"][i, 0, c] * xw[j, 0, c]
        grad_alpha[e, 0] = masked(g, e, 0)
        for c in range(xw.shape[2]):
            grad_xw[j, 0, c] = (
                grad_xw[j, 0, c] + masked(alpha[e, 0], e, 0) * case["grad_out"][i, 0, c]
            )
    return [grad_xw, grad_alpha]


def _self_check(
    kernel: Any, kind: str, heads: int, channels: int, dropout: bool, dtype: str
) -> None:
    """Run a freshly compiled kernel on a small case and compare it with numpy bit for bit:
    a miscompilation by the SLP vectoriser fails here, loudly, before any result."""
    case = _small_case(heads, channels, np.dtype(dtype))
    scale = np.dtype(dtype).type(1 / 0.6)
    expected = _reference(kind, case, scale, dropout)
    rowptr, col, xw, keep = case["rowptr"], case["col"], case["xw"], case["keep"]
    alpha = case["alpha"].copy()
    arrays: tuple[np.ndarray, ...]
    if kind == "aggregate":
        out = np.full_like(xw, np.nan)
        arrays = (rowptr, col, xw, alpha, keep, out)
        kernel(0, rowptr.size - 1, *(a.ctypes.data for a in arrays), 1 / 0.6, col.size, 5)
        got = [out, alpha]
    else:
        order = np.argsort(col, kind="stable")
        colptr = np.concatenate([[0], np.cumsum(np.bincount(col, minlength=5))]).astype(np.int64)
        rows = np.repeat(np.arange(rowptr.size - 1), np.diff(rowptr))[order].astype(np.int64)
        grad_xw, grad_alpha = np.full_like(xw, np.nan), np.full_like(alpha, np.nan)
        arrays = (
            colptr,
            rows,
            order.astype(np.int64),
            xw,
            alpha,
            keep,
            case["grad_out"],
            grad_xw,
            grad_alpha,
        )
        kernel(0, 5, *(a.ctypes.data for a in arrays), 1 / 0.6, col.size, 5)
        got = [grad_xw, grad_alpha]
    if not all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True)):
        raise RuntimeError(
            f"gnnkit's compiled GAT kernel ({kind}, {heads} heads x {channels} channels, "
            f"{dtype}) failed its self-check against numpy (a miscompilation); set "
            "GNNKIT_NARROW_SPMM=0 to use the general kernels instead, and report it with your "
            "numba and CPU versions"
        )


def _fits(xw: Tensor) -> bool:
    """Written out for this shape and dtype, features that stay in cache, and not off."""
    return (
        xw.size(1) * xw.size(2) <= MAX_ENTRIES
        and xw.dtype in (torch.float32, torch.float64)
        and xw.nbytes < PREFETCH_MIN_BYTES
        and not switched_off("GNNKIT_NARROW_SPMM")
    )


def aggregates(xw: Tensor, rowptr: Tensor) -> bool:
    """Whether :func:`aggregation` serves ``xw`` (N, H, C) on a graph of ``rowptr``."""
    return _fits(xw) and rowptr.dtype == torch.int64


def sender_grads(xw: Tensor, rowptr: Tensor) -> bool:
    """Whether :func:`sender_gradient` serves ``xw`` (one head only)."""
    return xw.size(1) == 1 and aggregates(xw, rowptr)


def _check(indices: tuple[Tensor, ...], *tensors: Tensor | None) -> None:
    """What the kernels' raw reads rely on: contiguous tensors, int64 ``indices``."""
    if any(t.dtype != torch.int64 for t in indices) or any(
        t is not None and not t.is_contiguous() for t in (*indices, *tensors)
    ):
        raise ValueError("GAT row kernels: contiguous tensors and int64 indices expected")


def aggregation(
    rowptr: Tensor, col: Tensor, xw: Tensor, alpha: Tensor, keep: Tensor | None, scale: float
) -> tuple[Any, tuple[int | float, ...], Tensor]:
    """``(kernel, arguments after lo and hi, out)`` of the forward's aggregation, for
    :func:`gnnkit.ops._jit.run_rows` over ``rowptr``'s rows (``alpha`` holds the
    exponentials, normalised in place)."""
    _check((rowptr, col), xw, alpha, keep)
    kernel = _compiled(
        "aggregate", xw.size(1), xw.size(2), keep is not None, NUMPY_DTYPES[xw.dtype]
    )
    out = xw.new_empty(rowptr.size(0) - 1, xw.size(1), xw.size(2))
    keep_at = 0 if keep is None else keep.data_ptr()
    tensors = (rowptr.data_ptr(), col.data_ptr(), xw.data_ptr(), alpha.data_ptr())
    return kernel, (*tensors, keep_at, out.data_ptr(), scale, col.size(0), xw.size(0)), out


def sender_gradient(
    transposed: tuple[Tensor, Tensor, Tensor],
    xw: Tensor,
    alpha: Tensor,
    keep: Tensor | None,
    scale: float,
    grad_out: Tensor,
    grad_xw: Tensor,
    grad_alpha: Tensor,
) -> tuple[Any, tuple[int | float, ...]]:
    """``(kernel, arguments after lo and hi)`` of the backward's sender pass for one head,
    over the senders of ``transposed`` (``colptr, row_t, perm_t``)."""
    _check(transposed, xw, alpha, keep, grad_out, grad_xw, grad_alpha)
    kernel = _compiled("sender grad", 1, xw.size(2), keep is not None, NUMPY_DTYPES[xw.dtype])
    keep_at = 0 if keep is None else keep.data_ptr()
    addresses = [t.data_ptr() for t in (*transposed, xw, alpha)]
    addresses += [keep_at, grad_out.data_ptr(), grad_xw.data_ptr(), grad_alpha.data_ptr()]
    return kernel, (*addresses, scale, alpha.size(0), grad_out.size(0))
