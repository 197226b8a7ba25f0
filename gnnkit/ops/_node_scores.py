r"""numba kernels for GAT's per-node attention products, written out per head and channel count.

.. math::
    s_{jh} = \sum_c x_{jhc} \, a^{src}_{hc}, \qquad d_{jh} = \sum_c x_{jhc} \, a^{dst}_{hc}

and their backward pass, given :math:`g^s = \partial L / \partial s` and
:math:`g^d = \partial L / \partial d`:

.. math::
    \frac{\partial L}{\partial x_{jhc}} = g^s_{jh} a^{src}_{hc} + g^d_{jh} a^{dst}_{hc},
    \qquad
    \frac{\partial L}{\partial a^{src}_{hc}} = \sum_j g^s_{jh} x_{jhc}, \qquad
    \frac{\partial L}{\partial a^{dst}_{hc}} = \sum_j g^d_{jh} x_{jhc}

(Veličković et al., "Graph Attention Networks", ICLR 2018: the attention logit of an edge
:math:`j \to i` is :math:`s_{jh} + d_{ih}` before the leaky ReLU.)

Why written out: a node's H x C features are a few dozen numbers (Cora: 8 heads x 8 channels,
then 1 head x 7 classes), and a loop over a channel count known only at run time leaves LLVM
nothing to vectorise (:mod:`gnnkit.ops._spmm_narrow` explains the same for the SpMM). Written
out for one (H, C), the attention vectors become loop-invariant locals, the products of a row
straight-line code that LLVM's SLP vectoriser packs into vectors (switched on while these
compile, :func:`gnnkit.ops._jit.compile_vectorised`), and the attention vectors' gradients
per-channel running sums held in registers. Measured on Cora (1 thread, the kernel calls
alone): 8 x 8 forward 19 against 37 us, 1 x 7 1.5 against 18 us; backward (the features'
gradient and both attention gradients) 8 x 8 11 against 118 us (the general kernel and two
``einsum``), 1 x 7 4 against 28 us. The forward pass is written out for at most 8 channels
(wider ones ran slower than the general kernel: 36 against 28 us at 4 x 16), both for at most
:data:`MAX_ENTRIES` entries per node; other shapes take the general kernels
below (:func:`_node_score_rows`, :func:`_node_score_grad_rows`) and ``einsum``.

Sums run in a fixed order without fused multiply-adds (``fastmath`` off): each dot product
over the channels in order; the attention gradients over fixed blocks of
:data:`BLOCK_ROWS` nodes in order, then the blocks in order, so the result is the same for
every thread count (:func:`gnnkit.ops._jit.run_rows` spreads the blocks). Each kernel is
compiled for its (H, C, dtype) on first use, its machine code kept on disk
(:mod:`gnnkit.ops._kernel_cache`), and checked bit for bit against numpy on a small case
in every process (:func:`_self_check`); like the narrow SpMM, ``GNNKIT_NARROW_SPMM=0`` switches
these kernels off. They take their tensors as addresses and sizes
(:func:`gnnkit.ops._jit.address_pointer`).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gnnkit.ops._gat_rows import MAX_ENTRIES  # H x C per node, at most
from gnnkit.ops._jit import (
    NUMPY_DTYPES,
    _numba,
    as_numpy,
    compile_vectorised,
    generated_kernel,
    jit_kernel,
    kernel_globals,
    node_row_globals,
    require_same_bits,
    run_rows,
)
from gnnkit.ops._linear_cpu import add_blocks
from gnnkit.utils.env import switched_off

__all__ = ["node_scores", "node_scores_grad"]

MAX_FORWARD_CHANNELS = 8  # C, at most, for the written-out forward pass
BLOCK_ROWS = 512  # nodes per block of the attention gradients' sums


def _attention_locals(entries: int) -> list[str]:
    """Lines that read both attention vectors (``entries`` each) into locals ``s_k``, ``d_k``."""
    lines = [
        f"    a_src = carray(FLOAT(a_src), {entries})",
        f"    a_dst = carray(FLOAT(a_dst), {entries})",
    ]
    lines += [f"    s_{k} = a_src[{k}]" for k in range(entries)]
    return lines + [f"    d_{k} = a_dst[{k}]" for k in range(entries)]


def _node_rows(indent: str) -> list[str]:
    """The loop over nodes ``lo:hi`` with each node's offsets (``base`` of its H x C entries,
    ``node`` of its H scores), at ``indent``."""
    return [
        f"{indent}for j in range(np.uint64(lo), np.uint64(hi)):",
        f"{indent}    base, node = j * ENTRIES, j * HEADS",
    ]


def _score_gradients(heads: int, indent: str) -> list[str]:
    """Lines that read node ``j``'s two score gradients into locals ``gs_h``, ``gd_h``."""
    lines = [f"{indent}gs_{h} = g_src[node + E{h}]" for h in range(heads)]
    return lines + [f"{indent}gd_{h} = g_dst[node + E{h}]" for h in range(heads)]


def _forward_source(heads: int, channels: int) -> str:
    """``kernel(lo, hi, xw, a_src, a_dst, out_src, out_dst)``: the products of rows
    ``lo:hi``, each a sum over the channels in order, the heads side by side."""
    lines = ["def kernel(lo, hi, xw, a_src, a_dst, out_src, out_dst):"]
    lines += ["    xw = carray(FLOAT(xw), hi * ENTRIES_N)"]
    lines += [
        f"    {name} = carray(FLOAT({name}), hi * HEADS_N)" for name in ("out_src", "out_dst")
    ]
    lines += _attention_locals(heads * channels) + _node_rows("    ")
    lines += [f"        src_{h} = ZERO" for h in range(heads)]
    lines += [f"        dst_{h} = ZERO" for h in range(heads)]
    for c in range(channels):  # channel outer: the heads' sums advance together
        for h in range(heads):
            k = h * channels + c
            lines.append(f"        x = xw[base + E{k}]")
            lines += [f"        src_{h} += x * s_{k}", f"        dst_{h} += x * d_{k}"]
    lines += [f"        out_src[node + E{h}] = src_{h}" for h in range(heads)]
    lines += [f"        out_dst[node + E{h}] = dst_{h}" for h in range(heads)]
    return "\n".join(lines) + "\n"


def _features_grad_source(heads: int, channels: int, add: bool = False) -> str:
    """``kernel(lo, hi, g_src, g_dst, a_src, a_dst, grad_xw)``: the features' gradient of
    rows ``lo:hi`` into ``grad_xw``, or with ``add`` added to what it holds (the sum autograd
    would form of the two gradients, in one pass)."""
    lines = ["def kernel(lo, hi, g_src, g_dst, a_src, a_dst, grad_xw):"]
    lines += [f"    {name} = carray(FLOAT({name}), hi * HEADS_N)" for name in ("g_src", "g_dst")]
    lines += ["    grad_xw = carray(FLOAT(grad_xw), hi * ENTRIES_N)"]
    lines += _attention_locals(heads * channels) + _node_rows("    ")
    lines += _score_gradients(heads, "        ")
    for k in range(heads * channels):
        h = k // channels
        term = f"gs_{h} * s_{k} + gd_{h} * d_{k}"
        lines.append(f"        grad_xw[base + E{k}] = " + (
            f"grad_xw[base + E{k}] + ({term})" if add else term
        ))  # fmt: skip
    return "\n".join(lines) + "\n"


def _features_grad_add_source(heads: int, channels: int) -> str:
    """:func:`_features_grad_source` adding into ``grad_xw``."""
    return _features_grad_source(heads, channels, add=True)


def _attention_grad_source(heads: int, channels: int) -> str:
    """``kernel(lo, hi, xw, g_src, g_dst, partial, rows)``: for each block ``lo:hi`` of
    :data:`BLOCK_ROWS` nodes, both attention vectors' gradients summed over the block's nodes
    in order, into ``partial[block]`` (2 x H x C)."""
    entries = heads * channels
    lines = ["def kernel(lo, hi, xw, g_src, g_dst, partial, rows):"]
    lines += [
        "    xw = carray(FLOAT(xw), rows * ENTRIES_N)",
        "    g_src = carray(FLOAT(g_src), rows * HEADS_N)",
    ]
    lines += [
        "    g_dst = carray(FLOAT(g_dst), rows * HEADS_N)",
        "    partial = carray(FLOAT(partial), hi * 2 * ENTRIES_N)",
    ]
    lines += [
        "    for block in range(np.uint64(lo), np.uint64(hi)):",
        "        first = block * BLOCK",
        "        last = min(first + BLOCK, np.uint64(rows))",
    ]
    lines += [f"        s_{k} = ZERO" for k in range(entries)]
    lines += [f"        d_{k} = ZERO" for k in range(entries)]
    lines += [
        "        for j in range(first, last):",
        "            base, node = j * ENTRIES, j * HEADS",
    ]
    lines += _score_gradients(heads, "            ")
    for k in range(entries):
        h = k // channels
        lines += [
            f"            x = xw[base + E{k}]",
            f"            s_{k} += gs_{h} * x",
            f"            d_{k} += gd_{h} * x",
        ]
    lines.append("        out = block * np.uint64(2) * ENTRIES")
    lines += [f"        partial[out + E{k}] = s_{k}" for k in range(entries)]
    lines += [f"        partial[out + ENTRIES + E{k}] = d_{k}" for k in range(entries)]
    return "\n".join(lines) + "\n"


_SOURCES = {
    "forward": _forward_source,
    "features grad": _features_grad_source,
    "features grad add": _features_grad_add_source,
    "attention grad": _attention_grad_source,
}


@functools.cache
def _dispatcher(kind: str, heads: int, channels: int, dtype: str) -> Any:
    """The numba dispatcher of one kernel of ``kind`` (its dtype baked in), not compiled."""
    names = kernel_globals(dtype, BLOCK=np.uint64(BLOCK_ROWS), **node_row_globals(heads, channels))
    source = _SOURCES[kind](heads, channels)
    return generated_kernel(source, f"<gnnkit node scores: {kind}, {heads} x {channels}>", names)


_COMPILED: dict[tuple[str, int, int, str], Any] = {}


def _compiled(kind: str, heads: int, channels: int, dtype: str) -> Any:
    """The kernel of ``kind`` for (``heads``, ``channels``) of numpy ``dtype``: compiled on
    first use with the SLP vectoriser on, then checked against numpy (:func:`_self_check`)."""
    key = (kind, heads, channels, dtype)
    kernel = _COMPILED.get(key)
    if kernel is None:
        kernel = _dispatcher(*key)
        compile_vectorised(kernel, (_numba().types.int64,) * 7)  # integers only
        _self_check(kernel, kind, heads, channels, np.dtype(dtype))
        _COMPILED[key] = kernel
    return kernel


def _reference(kind: str, xw: np.ndarray, g: tuple, att: tuple) -> list[np.ndarray]:
    """``kind``'s results in numpy, one scalar operation at a time in the kernels' order."""
    rows, heads, channels = xw.shape
    zero = xw.dtype.type(0)
    if kind == "forward":
        out = [np.empty((rows, heads), xw.dtype) for _ in att]
        for a, o in zip(att, out, strict=True):
            for j in range(rows):
                for h in range(heads):
                    total = zero
                    for c in range(channels):
                        total = total + xw[j, h, c] * a[h, c]
                    o[j, h] = total
        return out
    if kind.startswith("features grad"):
        grad = g[0][:, :, None] * att[0][None] + g[1][:, :, None] * att[1][None]
        return [_added_to(xw) + grad if kind == "features grad add" else grad]
    sums = []
    for grad in g:
        blocks = []
        for first in range(0, rows, BLOCK_ROWS):
            total = np.zeros((heads, channels), xw.dtype)
            for j in range(first, min(first + BLOCK_ROWS, rows)):
                total = total + grad[j][:, None] * xw[j]
            blocks.append(total)
        sums.append(np.stack(blocks))
    return sums


def _added_to(xw: np.ndarray) -> np.ndarray:
    """What the self-check's "features grad add" adds to: numbers of the features' scale."""
    return np.cos(xw).astype(xw.dtype)


def _self_check(kernel: Any, kind: str, heads: int, channels: int, dtype: np.dtype) -> None:
    """Run a freshly compiled kernel on a small case and compare it with numpy bit for bit:
    a miscompilation by the SLP vectoriser fails here, loudly, before any result."""
    rng = np.random.default_rng(heads * 100 + channels)
    rows = BLOCK_ROWS + 3 if kind == "attention grad" else 7  # two blocks, one partial
    xw = rng.standard_normal((rows, heads, channels)).astype(dtype)
    att = tuple(rng.standard_normal((heads, channels)).astype(dtype) for _ in range(2))
    g = tuple(rng.standard_normal((rows, heads)).astype(dtype) for _ in range(2))
    expected = _reference(kind, xw, g, att)
    if kind == "forward":
        got = [np.empty((rows, heads), dtype) for _ in range(2)]
        kernel(0, rows, *(a.ctypes.data for a in (xw, *att, *got)))
    elif kind.startswith("features grad"):
        got = [_added_to(xw).copy() if kind == "features grad add" else np.empty_like(xw)]
        kernel(0, rows, *(a.ctypes.data for a in (*g, *att, *got)))
    else:
        partial = np.empty((2, 2, heads, channels), dtype)
        kernel(0, 2, *(a.ctypes.data for a in (xw, *g, partial)), rows)
        got = [partial[:, 0], partial[:, 1]]
    what = f"attention kernel ({kind}, {heads} heads x {channels} channels, {dtype})"
    require_same_bits(got, expected, what)


def _written_out(xw: Tensor, forward: bool) -> bool:
    heads, channels = xw.shape[1:]
    fits = heads * channels <= MAX_ENTRIES and (not forward or channels <= MAX_FORWARD_CHANNELS)
    return (
        fits
        and xw.dtype in (torch.float32, torch.float64)
        and not switched_off("GNNKIT_NARROW_SPMM")
    )


# The general kernels, for any (H, C).


@jit_kernel(fastmath={"reassoc"})
def _node_score_rows(lo, hi, xw, att_src, att_dst, out_src, out_dst):  # pragma: no cover
    """``out_src[j, h] = <xw[j, h], att_src[h]>``, and ``out_dst`` with ``att_dst``. The sums
    are reassociated (as in :func:`gnnkit.ops._gat_cpu._dot`: vector lanes, a fixed order):
    2.3x faster on Cora's 8 heads x 8 and 4x at 8 x 32 than one running sum, whose additions
    wait on each other."""
    heads, channels = xw.shape[1], xw.shape[2]
    zero = xw.dtype.type(0)
    for j in range(lo, hi):
        for h in range(heads):
            s, d = zero, zero
            for c in range(channels):
                s += xw[j, h, c] * att_src[h, c]
                d += xw[j, h, c] * att_dst[h, c]
            out_src[j, h] = s
            out_dst[j, h] = d


@jit_kernel()
def _node_score_grad_rows(lo, hi, g_src, g_dst, att_src, att_dst, grad_xw):  # pragma: no cover
    """``grad_xw[j, h, c] = g_src[j, h] att_src[h, c] + g_dst[j, h] att_dst[h, c]``."""
    heads, channels = grad_xw.shape[1], grad_xw.shape[2]
    for j in range(lo, hi):
        for h in range(heads):
            a, b = g_src[j, h], g_dst[j, h]
            for c in range(channels):
                grad_xw[j, h, c] = a * att_src[h, c] + b * att_dst[h, c]


def _general_scores(xw: Tensor, att_src: Tensor, att_dst: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`node_scores` by the general kernel (any (H, C))."""
    out_src, out_dst = xw.new_empty(xw.shape[:2]), xw.new_empty(xw.shape[:2])
    run_rows(_node_score_rows, xw.size(0), as_numpy(xw), as_numpy(att_src), as_numpy(att_dst),
             as_numpy(out_src), as_numpy(out_dst))  # fmt: skip
    return out_src, out_dst


def _general_grad_xw(g_src: Tensor, g_dst: Tensor, att_src: Tensor, att_dst: Tensor) -> Tensor:
    """The gradient of :func:`node_scores` with respect to ``xw`` by the general kernel."""
    grad_xw = g_src.new_empty(*g_src.shape, att_src.size(-1))
    run_rows(_node_score_grad_rows, g_src.size(0), as_numpy(g_src), as_numpy(g_dst),
             as_numpy(att_src), as_numpy(att_dst), as_numpy(grad_xw))  # fmt: skip
    return grad_xw


def _check(*tensors: Tensor) -> None:
    """What the kernels' raw reads rely on: contiguous tensors of one dtype."""
    dtype = tensors[0].dtype
    if any(t.dtype != dtype or not t.is_contiguous() for t in tensors):
        raise ValueError("attention kernels: contiguous tensors of one dtype expected")


def node_scores(xw: Tensor, att_src: Tensor, att_dst: Tensor) -> tuple[Tensor, Tensor]:
    """Both attention products of every node, (N, H) each, for contiguous ``xw`` (N, H, C)
    and ``att_*`` (H, C)."""
    if not _written_out(xw, forward=True):
        return _general_scores(xw, att_src, att_dst)
    out_src, out_dst = xw.new_empty(xw.shape[:2]), xw.new_empty(xw.shape[:2])
    kernel = _compiled("forward", xw.size(1), xw.size(2), NUMPY_DTYPES[xw.dtype])
    tensors = (xw, att_src, att_dst, out_src, out_dst)
    _check(*tensors)
    run_rows(kernel, xw.size(0), *(t.data_ptr() for t in tensors))
    return out_src, out_dst


def node_scores_grad(
    xw: Tensor,
    g_src: Tensor,
    g_dst: Tensor,
    att_src: Tensor,
    att_dst: Tensor,
    needs: tuple,
    into: Tensor | None = None,
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """The gradients of :func:`node_scores` with respect to ``xw`` (N, H, C) and the two
    attention vectors (H, C), each where ``needs`` (three flags) asks for it; every tensor
    contiguous. With ``into`` (shaped as ``xw``), the features' gradient is added to it in
    place, and ``into`` is returned as that gradient."""
    grad_xw = grad_src = grad_dst = None
    if not _written_out(xw, forward=False):
        if needs[0]:
            grad_xw = _general_grad_xw(g_src, g_dst, att_src, att_dst)
            grad_xw = grad_xw if into is None else into.add_(grad_xw)
        if needs[1]:  # sums over the nodes
            grad_src = torch.einsum("jh,jhc->hc", g_src, xw)
        if needs[2]:
            grad_dst = torch.einsum("jh,jhc->hc", g_dst, xw)
        return grad_xw, grad_src, grad_dst
    rows, heads, channels = xw.shape
    dtype = NUMPY_DTYPES[xw.dtype]
    _check(xw, g_src, g_dst, att_src, att_dst, *(() if into is None else (into,)))
    if needs[0]:
        grad_xw = torch.empty_like(xw) if into is None else into
        kind = "features grad" if into is None else "features grad add"
        kernel = _compiled(kind, heads, channels, dtype)
        tensors = (g_src, g_dst, att_src, att_dst, grad_xw)
        run_rows(kernel, rows, *(t.data_ptr() for t in tensors))
    if needs[1] or needs[2]:
        blocks = -(-rows // BLOCK_ROWS)
        partial = xw.new_empty(blocks, 2 * heads * channels)
        total = xw.new_empty(2, heads, channels)
        kernel = _compiled("attention grad", heads, channels, dtype)
        run_rows(kernel, blocks, *(t.data_ptr() for t in (xw, g_src, g_dst, partial)), rows)
        add_blocks(as_numpy(partial), as_numpy(total.view(-1)))
        grad_src = total[0] if needs[1] else None
        grad_dst = total[1] if needs[2] else None
    return grad_xw, grad_src, grad_dst
