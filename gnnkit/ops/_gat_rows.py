r"""Passes of the fused GAT kernels written out per (heads, channels) (see
:mod:`gnnkit.ops._gat_cpu`).

- The forward's aggregation (pass 3): each row's exponentials normalised (stored in
  ``alpha``, before dropout), then :math:`\text{out}_{ih} = \sum_{e = (j \to i)}
  \tilde\alpha_{eh} \, x_{jh}` with :math:`\tilde\alpha` the coefficient after attention
  dropout. Written out for one (H, C) with at most :data:`MAX_ENTRIES` entries per node: the
  row's H x C sums are locals that LLVM's SLP vectoriser packs into vectors
  (:mod:`gnnkit.ops._spmm_narrow` explains why a loop over a channel count known only at run
  time is not vectorised). Features past the cache are aggregated one head at a time
  (:func:`gnnkit.ops._gat_feature_sources.aggregate_by_head`, up to
  :data:`MAX_CHANNELS_BY_HEAD` channels and :data:`MAX_ENTRIES_BY_HEAD` entries per node):
  one head's C sums fill a few registers where all H x C would spill, and each head's pass
  asks for its own lines of the sender rows ahead of use.
- The backward's sender pass (pass 1): for each edge :math:`e = (j \to i)` on the transposed
  structure, :math:`g_{\alpha_{eh}} = \langle \partial L/\partial \text{out}_{ih},
  x_{jh}\rangle` (times the dropout mask) and :math:`\partial L / \partial x_{jh}
  \mathrel{+}= \tilde\alpha_{eh} \, \partial L/\partial \text{out}_{ih}`, the sender's row
  and its gradient held in locals. With several heads, ``grad_out`` is first copied
  heads-last, (N, C, H): the per-edge dot products then sum one vector of H heads per
  channel, where in (N, H, C) they were H horizontal sums per edge (which ran slower than the
  general kernel: 500 against 383 us on Cora's 8 x 8). Past the cache the sender pass too
  runs one head at a time (:func:`gnnkit.ops._gat_feature_sources.sender_grad_by_head`,
  the same limits), on ``grad_out`` as it is: the sender's C inputs and sums in registers,
  each edge's dot product a fixed tree of C products, each head's pass asking for its own
  lines of the receiver rows ahead.
- The passes over per-edge scalars, written out per head count only
  (:mod:`gnnkit.ops._gat_scalar_sources`): the forward's scores less each row's maximum, the
  backward's softmax and leaky-ReLU pass and its sender-score sums. They gather no feature
  rows, so they serve graphs of every size.

Measured on Cora with self-loops (13,264 entries, 1 thread, the kernel calls alone): the
aggregation of 8 heads x 8 channels with attention dropout 55 against 234 us, of 1 x 7
18 against 97 us; the one-head sender pass 18 against 139 us; 8 x 8: the sender pass 230
against 620-700 us (plus 50 us for the heads-last copy), the score-gradient pass 31-39
against 200-340 us, the sender-score sums 11 against 49 us. The whole fused layer (8 x 8),
forward 180 against 270 us and backward 410 against 950 us. At ogbn-arxiv's size (8 x 32,
1.34 M entries with self-loops, 1 thread, the two interleaved in one process), the
aggregation pass by head takes 130 against the general kernel's 217 ms, the fused forward
142 against 229 ms, the sender pass by head 214 against the general kernel's 333 ms, the
fused backward 229 against 345 ms, and with both passes by head a whole layer step (forward
and backward, the GEMMs included) 0.69 against 0.90 s
(``benchmarks/results/gat_aggregation.md``). A sender pass by head whose first head's pass
asked for every line of the receiver rows ran no faster than the general kernel (in a
prototype 329 against 229 ms with the requests spread over the heads' passes), most likely
because the burst of requests fills the core's queue of outstanding misses and the later
heads' passes then compute with no loads in flight. The whole-row kernels run where the
gathered rows fit in cache (below :data:`gnnkit.ops._jit.PREFETCH_MIN_BYTES`: they do not
prefetch); larger graphs run both feature-row passes by head, up to
:data:`MAX_HEADS_BY_HEAD` heads (each head's pass is written out, so compile time grows with
them: 8 x 32 about 3 s for the aggregation and 5 s for the sender pass, 16 x 32 about twice
as long).

Sums run in CSR order (over the transposed structure for the sender pass), one entry at a
time, without fused multiply-adds, each row by one thread: the same bits for every thread
count. The scalar passes compute exactly what the general kernels do (the same bits); the
general aggregation adds four entries per pass and reassociates the backward's dot
products, and the sender pass by head sums its dot products in a halving tree, so the
feature-row passes differ from the general kernels in the last bits. Like
:mod:`gnnkit.ops._node_scores`, each kernel is compiled for its shape and dtype on first use
(its machine code kept on disk by :mod:`gnnkit.ops._kernel_cache`), checked bit for bit
against numpy on a small case in every process (:mod:`gnnkit.ops._gat_rows_check`),
switched off with the narrow SpMM (``GNNKIT_NARROW_SPMM=0``), and takes its tensors as
addresses.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gnnkit.ops import _gat_feature_sources as feature_sources
from gnnkit.ops import _gat_scalar_sources as scalar_sources
from gnnkit.ops._gat_rows_check import self_check
from gnnkit.ops._jit import (
    NUMPY_DTYPES,
    PREFETCH_MIN_BYTES,
    _numba,
    _transpose8,
    address_pointer,
    compile_vectorised,
    generated_kernel,
    kernel_globals,
    node_row_globals,
    prefetch_distance,
    prefetch_l2,
    run_rows,
)
from gnnkit.ops._memory import empty_advised
from gnnkit.utils.env import switched_off

__all__ = [
    "aggregation",
    "kernel_names",
    "scalar_passes",
    "score_gradients",
    "scores",
    "sender_gradient",
    "source_gradients",
    "whole_row_passes",
    "written_feature_passes",
]

MAX_ENTRIES = 64  # H x C per node, at most (also gnnkit.ops._node_scores's limit)
MAX_CHANNELS_BY_HEAD = 64  # one head's sums: four AVX-512 or eight AVX2 registers of float32
MAX_HEADS_BY_HEAD = 16  # one pass per head is written out: compile time grows with heads
MAX_ENTRIES_BY_HEAD = 512  # H x C: 8 x 32 compiles in 3-5 s a pass (a busy 2-core machine)


_SOURCES = {
    "aggregate": feature_sources.aggregate,
    "aggregate by head": feature_sources.aggregate_by_head,
    "sender grad": feature_sources.sender_grad,
    "sender grad by head": feature_sources.sender_grad_by_head,
    "heads last": feature_sources.heads_last,
    "score": scalar_sources.score,
    "score grad": scalar_sources.score_grad,
    "source grad": scalar_sources.source_grad,
}
_ARGUMENTS = {
    "aggregate": 11,
    "aggregate by head": 12,
    "sender grad": 14,
    "sender grad by head": 15,
    "heads last": 4,
    "score": 13,
    "score grad": 15,
    "source grad": 7,
}
_WITHOUT_FLOAT = ("heads last", "source grad")  # the others' third-last argument is a float


def kernel_names(heads: int, channels: int, dropout: bool, dtype: str) -> dict[str, Any]:
    """The globals of the kernels' sources for one shape and dtype."""
    return kernel_globals(
        dtype,
        INDEX=address_pointer("int64"),
        BYTE=address_pointer("uint8"),
        ZERO_U=np.uint64(0),
        ONE_U=np.uint64(1),
        LINE=np.uint64(64 // np.dtype(dtype).itemsize),  # entries per cache line
        prefetch_l2=prefetch_l2,
        transpose8=_transpose8(),
        NEG_INF=np.dtype(dtype).type(-np.inf),
        DROPOUT=dropout,
        **node_row_globals(heads, channels),
    )


@functools.cache
def _dispatcher(kind: str, heads: int, channels: int, dropout: bool, dtype: str) -> Any:
    """The numba dispatcher of one kernel of ``kind`` (shape and dtypes baked in)."""
    source = _SOURCES[kind](heads, channels, dropout)
    label = f"<gnnkit GAT {kind}: {heads} x {channels}{', dropout' if dropout else ''}>"
    return generated_kernel(source, label, kernel_names(heads, channels, dropout, dtype))


_COMPILED: dict[tuple[str, int, int, bool, str], Any] = {}


def _signature(kind: str) -> tuple[Any, ...]:
    """The numba signature a kernel of ``kind`` is compiled for: integers (addresses, sizes),
    and one float where the kind takes one."""
    types = _numba().types
    signature = [types.int64] * _ARGUMENTS[kind]
    if kind not in _WITHOUT_FLOAT:
        signature[-3] = types.float64  # the dropout scale or the leaky ReLU's slope
    return tuple(signature)


def _compiled(kind: str, heads: int, channels: int, dropout: bool, dtype: str) -> Any:
    """The kernel, compiled on first use with the SLP vectoriser on, then checked."""
    key = (kind, heads, channels, dropout, dtype)
    kernel = _COMPILED.get(key)
    if kernel is None:
        kernel = _dispatcher(*key)
        compile_vectorised(kernel, _signature(kind))
        self_check(kernel, *key)
        _COMPILED[key] = kernel
    return kernel


def _compiled_for(scores_or_features: Tensor, rowptr: Tensor) -> bool:
    """What every kernel here needs: a compiled float dtype, int64 indices, and not off."""
    return (
        scores_or_features.dtype in (torch.float32, torch.float64)
        and rowptr.dtype == torch.int64
        and not switched_off("GNNKIT_NARROW_SPMM")
    )


def whole_row_passes(xw: Tensor, rowptr: Tensor) -> bool:
    """Whether :func:`aggregation` and :func:`sender_gradient` serve ``xw`` (N, H, C) on a
    graph of ``rowptr``: written out for its (H, C), with features that stay in cache."""
    return (
        xw.size(1) * xw.size(2) <= MAX_ENTRIES
        and xw.nbytes < PREFETCH_MIN_BYTES
        and _compiled_for(xw, rowptr)
    )


def _by_head(xw: Tensor) -> bool:
    """Whether the aggregation and the sender pass of ``xw`` (N, H, C) run one head at a
    time, prefetching: features past the cache, with rows of a size the kernels are written
    out for."""
    return (
        xw.nbytes >= PREFETCH_MIN_BYTES
        and xw.size(1) <= MAX_HEADS_BY_HEAD
        and xw.size(2) <= MAX_CHANNELS_BY_HEAD
        and xw.size(1) * xw.size(2) <= MAX_ENTRIES_BY_HEAD
    )


def _by_head_distance(xw: Tensor) -> int:
    """How many entries ahead the passes by head ask for the gathered rows of ``xw``'s size."""
    return prefetch_distance(xw.size(1) * xw.size(2) * xw.element_size())


def written_feature_passes(xw: Tensor, rowptr: Tensor) -> bool:
    """Whether :func:`aggregation` and :func:`sender_gradient` serve ``xw`` (N, H, C) on a
    graph of ``rowptr``: as :func:`whole_row_passes` does, or one head at a time for
    features past the cache."""
    return whole_row_passes(xw, rowptr) or (_by_head(xw) and _compiled_for(xw, rowptr))


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
    (_, heads, channels), by_head = xw.shape, _by_head(xw)
    kind = "aggregate by head" if by_head else "aggregate"
    kernel = _compiled(kind, heads, channels, keep is not None, NUMPY_DTYPES[xw.dtype])
    out = empty_advised(xw, rowptr.size(0) - 1, heads, channels)
    keep_at = 0 if keep is None else keep.data_ptr()
    tensors = (rowptr.data_ptr(), col.data_ptr(), xw.data_ptr(), alpha.data_ptr())
    arguments: tuple[int, ...] = (*tensors, keep_at, out.data_ptr())
    if by_head:
        arguments += (_by_head_distance(xw),)
    return kernel, (*arguments, scale, col.size(0), xw.size(0)), out


def sender_gradient(
    transposed: tuple[Tensor, Tensor, Tensor],
    xw: Tensor,
    alpha: Tensor,
    keep: Tensor | None,
    scale: float,
    grad_out: Tensor,
    grad_xw: Tensor,
    grad_alpha: Tensor,
    colptr: np.ndarray,
) -> None:
    """Run the backward's sender pass over the senders of ``transposed`` (``colptr, row_t,
    perm_t``; ``colptr`` as numpy too, to cut the senders into chunks): one head at a time
    for features past the cache, else on whole rows heads-last (several heads: ``grad_out``
    copied heads-last first, the senders' gradients copied back to (H, C) after)."""
    _check(transposed, xw, alpha, keep, grad_out, grad_xw, grad_alpha)
    (senders, heads, channels), dtype = xw.shape, NUMPY_DTYPES[xw.dtype]
    by_head = _by_head(xw)
    ahead: tuple[int, ...] = ()  # by head: how far ahead it asks for receiver rows
    into = grad_xw
    if by_head:
        ahead = (_by_head_distance(xw),)
    elif heads > 1:
        rows = grad_out.size(0)
        last = grad_out.new_empty(rows, channels, heads)
        copy = _compiled("heads last", heads, channels, False, dtype)
        run_rows(copy, rows, grad_out.data_ptr(), last.data_ptr())
        grad_out, into = last, grad_xw.new_empty(senders, channels, heads)
    kind = "sender grad by head" if by_head else "sender grad"
    kernel = _compiled(kind, heads, channels, keep is not None, dtype)
    keep_at = 0 if keep is None else keep.data_ptr()
    addresses = [t.data_ptr() for t in (*transposed, xw, alpha)]
    addresses += [keep_at, grad_out.data_ptr(), into.data_ptr(), grad_alpha.data_ptr()]
    run_rows(kernel, colptr, *addresses, *ahead, scale, alpha.size(0), grad_out.size(0))
    if into is not grad_xw:  # (N, C, H) back to (N, H, C): the same copy, the roles swapped
        back = _compiled("heads last", channels, heads, False, dtype)
        run_rows(back, senders, into.data_ptr(), grad_xw.data_ptr())


def scalar_passes(a_src: Tensor, rowptr: Tensor) -> bool:
    """Whether the passes over per-edge scalars (:func:`scores`, :func:`score_gradients`,
    :func:`source_gradients`) serve scores ``a_src`` (N, H) on a graph of ``rowptr``: they
    gather no feature rows, so they serve graphs of any size."""
    return a_src.size(1) <= MAX_ENTRIES and _compiled_for(a_src, rowptr)


Scores = tuple[Tensor, "Tensor | None", "Tensor | None"]  # a_src, a_dst, edge_score: (·, H)


def _score_pass(
    kind: str, graph: tuple[Tensor, Tensor], scores: Scores, tensors: tuple, slope: float,
    rowptr: np.ndarray,
) -> None:  # fmt: skip
    """Run ``kind``'s kernel over the rows of ``graph`` on the scores and ``tensors`` (the
    per-edge ones first)."""
    a_src, a_dst, edge_score = scores
    _check(graph, *scores, *tensors)
    kernel = _compiled(kind, a_src.size(1), 1, False, NUMPY_DTYPES[a_src.dtype])
    optional = [(0, 0) if t is None else (t.data_ptr(), 1) for t in (a_dst, edge_score)]
    arguments = (*(t.data_ptr() for t in (*graph, a_src)), *optional[0], *optional[1])
    sizes = (tensors[0].size(0), a_src.size(0))
    run_rows(kernel, rowptr, *arguments, *(t.data_ptr() for t in tensors), slope, *sizes)


def scores(
    graph: tuple[Tensor, Tensor], scores: Scores, alpha: Tensor, slope: float, rowptr: np.ndarray
) -> None:
    """The forward's first pass over the rows of ``graph`` (``rowptr, col``; ``rowptr`` as
    numpy too): ``alpha`` (E, H) = each entry's leaky-ReLU score less its row's maximum."""
    _score_pass("score", graph, scores, (alpha,), slope, rowptr)


def score_gradients(
    graph: tuple[Tensor, Tensor],
    scores: Scores,
    alpha: Tensor,
    slope: float,
    gradients: tuple[Tensor, Tensor],
    rowptr: np.ndarray,
) -> None:
    """The backward's pass over the rows of ``graph``: ``gradients`` = ``(grad_score (E, H),
    grad_dst (N_d, H))``, ``grad_score`` from the attention gradient to the score gradient,
    in place."""
    _score_pass("score grad", graph, scores, (alpha, *gradients), slope, rowptr)


def source_gradients(
    transposed: tuple[Tensor, Tensor], grad_score: Tensor, grad_src: Tensor, colptr: np.ndarray
) -> None:
    """The backward's last pass over the senders of ``transposed`` (``colptr, perm_t``):
    ``grad_src`` (N_s, H), each sender's score gradients summed."""
    _check(transposed, grad_score, grad_src)
    kernel = _compiled("source grad", grad_src.size(1), 1, False, NUMPY_DTYPES[grad_src.dtype])
    addresses = (*(t.data_ptr() for t in transposed), grad_score.data_ptr(), grad_src.data_ptr())
    run_rows(kernel, colptr, *addresses, grad_score.size(0))
