r"""numba SpMM kernels written out per channel count: rows of 8 to 64 channels, and of up
to 128 past the cache.

.. math::
    Y_{h,i,:} = \sum_{e = (j \to i)} v_{h,e} \, X_{h,j,:} \; (+\, b)
    \qquad (\text{or } \textstyle\sum_e X_{h,j,:} \text{ without values})

the product of :mod:`gnnkit.ops._spmm_cpu` (optionally with a bias added as each row is
stored), for the narrow rows of small graphs and of sparse features times a layer's weight,
and for rows of up to 128 channels gathered from past the cache, where the sums held in
registers beat that module's row kernel, which loads and stores the output row for every entry
(``gnnkit.ops.backend.spmm_kernel`` holds the rule and its measurements), and the
transpose's product straight from the matrix's own CSR order (:func:`spmm_transposed`).

Why one kernel per channel count: LLVM vectorises a loop over a channel count known only at
run time with 16-float vectors interleaved four ways (64 channels per iteration on AVX-512),
so a row of 16 channels runs entirely in the loop's scalar remainder. The kernel here is
written out for one channel count ``C``: it keeps the row's ``C`` sums in ``C`` local
variables (registers) while it walks the row's CSR entries, and stores them once at the end.
That straight-line code is what LLVM's SLP vectoriser packs into full vectors (one 16-float
register per 16 channels on AVX-512). numba switches the SLP vectoriser off by default after
miscompilations with older LLVM releases (numba PR #8852); :func:`_compiled` switches it on
for these kernels alone while they compile, and the tests check them against a dense product
and MKL's kernel. Indices are unsigned, so numba emits no negative-index wrap-around, which
would hide from LLVM that a row's loads are consecutive.

Measured on Cora (``benchmarks/results/narrow_spmm.md``, 1 thread): the bag-of-words features
(49,216 entries) times a 16-channel weight 29 us against MKL's 58 us, at 64 channels 66
against 206 us; the 13,264-entry graph times 16 channels 15 against 30 us; the features'
transpose times 16 channels 34 us, against 80 for gathering the values into the transpose's
order and MKL's product. The sums run in CSR order, one entry
at a time, without fused multiply-adds (``fastmath`` off), exactly as MKL's CSR kernel adds
them: the two give the same bits (tested). Each output row is written by one thread from its
own entries, so the result is the same for every thread count
(:func:`gnnkit.ops._jit.run_rows`).

Past the cache (features of :data:`PREFETCH_MIN_BYTES` or more) the row kernels ask for
each sender row's cache lines some entries ahead, into L2
(:func:`gnnkit.ops._jit.prefetch_distance`; :mod:`gnnkit.ops._spmm_cpu` explains why): a
random graph of ogbn-arxiv's size, 1 thread, at 16 / 32 / 48 channels 3.7 / 6.7 / 10.4 ms
against 6.0 / 11.1 / 18.2 ms without (``benchmarks/results/prefetch_locality.md``; the same
bits). Features that stay in cache keep kernels without the requests: testing each entry
against the last one to ask for took 8 % of a Cora product.

A kernel is compiled on its first call for a channel count, kind and dtype (0.2-0.8 s
measured up to 64 channels, 1.2-2 s at 80-128); its machine code is kept on disk
(:mod:`gnnkit.ops._kernel_cache`), so later processes load it in about 0.1 s. Each process
checks it on a small case against numpy, bit for bit (:func:`_self_check`), and raises if
they differ. ``GNNKIT_NARROW_SPMM=0`` sends these products to MKL's kernel instead.

A kernel takes its tensors as addresses and sizes (integers), not as numpy views: on Cora a
product's kernel runs for 7-30 us, and building six numpy views took 6 us of every call
(:func:`gnnkit.ops._jit.address_pointer`); the dtypes are baked into the kernel, and
:func:`spmm` checks what the raw reads rely on (contiguous tensors of the compiled dtypes).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gnnkit.ops._jit import (
    NUMPY_DTYPES,
    _numba,
    address_pointer,
    as_numpy,
    compile_vectorised,
    generated_kernel,
    kernel_globals,
    prefetch_distance,
    prefetch_l2,
    require_same_bits,
    run_rows,
)

__all__ = ["spmm", "spmm_transposed"]

#: Features of this many bytes or more take the prefetching kinds. Measured on random graphs
#: of 7 entries a row, 1 thread, the prefetching kernel's speed-up over the plain one: 16
#: channels 0.78x / 0.83x / 0.94x / 1.42x / 1.49x at 0.5 / 2 / 4 / 8 / 11 MiB of features, 32
#: channels 0.74x / 0.95x / 0.99x / 1.18x / 1.28x: the requests pay between 4 and 8 MiB, below the
#: 12 MiB (:data:`gnnkit.ops._jit.PREFETCH_MIN_BYTES`) of the kernels with more work a row.
PREFETCH_MIN_BYTES = 6 * 2**20


def _line_starts(channels: int, line: int) -> list[int]:
    """The offsets within a row of ``channels`` entries, ``line`` to a 64-byte cache line, at
    which a prefetch reaches every line the row touches wherever it starts: every ``line``-th
    entry and the last (a row of 24 float32 channels, 96 bytes, spans two or three lines)."""
    return sorted({*range(0, channels, line), channels - 1})


def _source(channels: int, kind: str, line: int = 16) -> str:
    """The source of ``kernel(lo, hi, rowptr, col, values, weighted, x, out, bias, heads,
    num_ptr, num_edges, num_x, num_out)`` for rows of ``channels`` channels: the arrays come as
    addresses (:func:`gnnkit.ops._jit.address_pointer`) with their sizes: ``rowptr``
    (num_ptr,), ``col`` (num_edges,), ``values`` (heads, num_edges) where ``weighted``, ``x``
    (heads, num_x, C), ``out`` (heads, num_out, C), ``bias`` (C,) for ``"biased rows"``.
    ``kind``: ``"rows"``, the sums of rows ``lo:hi``; ``"biased rows"``, those sums plus
    ``bias``; ``"transposed"``, every row's products added to the rows of its columns. (One
    kernel per kind: a branch on the bias inside the row loop kept LLVM from vectorising the
    sums.) ``"rows, prefetching"`` and ``"biased rows, prefetching"``: the same sums, asking
    for the sender row ``AHEAD`` entries ahead into L2 (for features past the cache; the test
    of each entry against the last one to ask for took 8 % of a Cora product, so rows that
    stay in cache keep the kernels without it)."""
    kind, prefetching = kind.removesuffix(", prefetching"), kind.endswith(", prefetching")
    lines = [
        "def kernel(lo, hi, rowptr, col, values, weighted, x, out, bias, heads, num_ptr,",
        "           num_edges, num_x, num_out):",
        "    rowptr = carray(INDEX(rowptr), num_ptr)",
        "    col = carray(INDEX(col), num_edges)",
        "    values = carray(FLOAT(values), (heads if weighted else 1, num_edges * weighted))",
        "    x = carray(FLOAT(x), (heads, num_x * WIDTH))",
        "    out = carray(FLOAT(out), (heads, num_out * WIDTH))",
        "    one = ONE",
        "    for h in range(heads):",
        "        x_h, out_h = x[h], out[h]",
        "        v_h = values[h if weighted else 0]",
    ]
    if kind == "transposed":
        lines.append("        out_h[:] = 0")
    if kind == "biased rows":  # added to each row's sums as they are stored
        lines.insert(7, "    bias = carray(FLOAT(bias), WIDTH)")
        lines += [f"        b{c} = bias[C{c}]" for c in range(channels)]
    lines.append("        for i in range(np.uint64(lo), np.uint64(hi)):")
    if kind == "transposed":  # the row's own features, added to each of its columns' rows
        lines.append("            base = i * WIDTH")
        lines += [f"            s{c} = x_h[base + C{c}]" for c in range(channels)]
    else:  # the row's sums, stored once after its entries
        lines += [f"            s{c} = ZERO" for c in range(channels)]
    lines += [
        "            for e in range(np.uint64(rowptr[i]), np.uint64(rowptr[i + NEXT])):",
        "                v = v_h[e] if weighted else one",
        "                base = np.uint64(col[e]) * WIDTH",
    ]
    if prefetching:  # every cache line of the row AHEAD entries on, and its last entry's
        at = lines.index("    one = ONE") + 1
        lines.insert(
            at,
            "    LAST = np.uint64(num_edges) - AHEAD if np.uint64(num_edges) > AHEAD else ZERO_U",
        )
        lines += [
            "                if e < LAST:",
            "                    ahead = np.uint64(col[e + AHEAD]) * WIDTH",
        ]
        starts = _line_starts(channels, line)
        lines += [f"                    prefetch_l2(x_h, ahead + C{c})" for c in starts]
    if kind == "transposed":
        lines += [f"                out_h[base + C{c}] += v * s{c}" for c in range(channels)]
    else:
        lines += [f"                s{c} += v * x_h[base + C{c}]" for c in range(channels)]
        lines.append("            base = i * WIDTH")
        shift = [f" + b{c}" if kind == "biased rows" else "" for c in range(channels)]
        lines += [f"            out_h[base + C{c}] = s{c}{shift[c]}" for c in range(channels)]
    return "\n".join(lines) + "\n"


@functools.cache
def _dispatcher(channels: int, kind: str, dtype: str, index: str) -> Any:
    """The numba dispatcher of one kernel (:func:`_source`) for numpy ``dtype`` values and
    ``index`` indices (both baked in: the kernel takes only integers), not yet compiled."""
    width = channels * np.dtype(dtype).itemsize
    names = kernel_globals(
        dtype,
        INDEX=address_pointer(index),
        WIDTH=np.uint64(channels),
        NEXT=np.uint64(1),
        ZERO_U=np.uint64(0),
        AHEAD=np.uint64(prefetch_distance(width)),  # used by the prefetching kinds
        prefetch_l2=prefetch_l2,
    )
    names.update({f"C{c}": np.uint64(c) for c in range(channels)})  # unsigned offsets
    source = _source(channels, kind, 64 // np.dtype(dtype).itemsize)
    return generated_kernel(source, f"<gnnkit spmm: {kind}, {channels}>", names)


_COMPILED: dict[tuple[int, str, str, str], Any] = {}
# The kernel's arguments after lo and hi: addresses, a flag and sizes, all integers.
_SIGNATURE = ("int64",) * 3 + ("boolean",) + ("int64",) * 8


def _compiled(kind: str, channels: int, dtype: str, index: str) -> Callable[..., None]:
    """The kernel of ``kind`` for ``channels`` channels of numpy ``dtype`` with ``index``
    indices, compiled on first use with LLVM's SLP vectoriser switched on while it compiles
    (module docstring), then checked (:func:`_self_check`)."""
    key = (channels, kind, dtype, index)
    kernel = _COMPILED.get(key)
    if kernel is not None:
        return kernel
    kernel = _dispatcher(*key)
    types = _numba().types
    compile_vectorised(kernel, tuple(getattr(types, t) for t in ("int64", "int64", *_SIGNATURE)))
    _self_check(kernel, channels, kind, np.dtype(dtype), np.dtype(index))
    _COMPILED[key] = kernel
    return kernel


def _self_check(
    kernel: Callable[..., None], channels: int, kind: str, dtype: Any, index: Any
) -> None:
    """Run a freshly compiled kernel on a small case with empty rows and a repeated column
    and compare it with the same sums in numpy, bit for bit (both add in CSR order without
    FMA): a miscompilation by the SLP vectoriser fails here, loudly, before any result."""
    kind = kind.removesuffix(", prefetching")  # its arithmetic is the plain kind's
    rng = np.random.default_rng(channels)
    rowptr = np.array([0, 3, 3, 5, 8, 8], dtype=index)  # rows 1 and 4 empty
    col = np.array([2, 0, 2, 5, 1, 0, 3, 4], dtype=index)  # a repeated column in row 0
    num_cols = 6
    values = rng.standard_normal((1, col.size)).astype(dtype)
    bias = rng.standard_normal(channels).astype(dtype)
    rows_in = num_cols if kind != "transposed" else rowptr.size - 1
    rows_out = rowptr.size - 1 if kind != "transposed" else num_cols
    x = rng.standard_normal((1, rows_in, channels)).astype(dtype)
    out = np.full((1, rows_out, channels), np.nan, dtype=dtype)
    expected = np.zeros((rows_out, channels), dtype=dtype)
    for i in range(rowptr.size - 1):
        for e in range(rowptr[i], rowptr[i + 1]):
            if kind == "transposed":
                expected[col[e]] = expected[col[e]] + values[0, e] * x[0, i]
            else:
                expected[i] = expected[i] + values[0, e] * x[0, col[e]]
    if kind == "biased rows":
        expected = expected + bias
    arrays = (rowptr, col, values, x, out, bias)
    rowptr_at, col_at, values_at, x_at, out_at, bias_at = (a.ctypes.data for a in arrays)
    kernel(0, rowptr.size - 1, rowptr_at, col_at, values_at, True, x_at, out_at, bias_at,
           1, rowptr.size, col.size, rows_in, rows_out)  # fmt: skip
    what = f"SpMM kernel ({kind}, {channels} channels, {np.dtype(dtype)})"
    require_same_bits([out[0]], [expected], what)


def _arguments(
    rowptr: Tensor,
    col: Tensor,
    values: Tensor | None,
    x: Tensor,
    out: Tensor,
    bias: Tensor | None,
) -> tuple[int | bool, ...]:
    """The kernel's arguments after ``lo, hi`` (see :func:`_source`): addresses and sizes of
    contiguous tensors (an absent array as address 0, never read)."""
    return (
        rowptr.data_ptr(),
        col.data_ptr(),
        0 if values is None else values.data_ptr(),
        values is not None,
        x.data_ptr(),
        out.data_ptr(),
        0 if bias is None else bias.data_ptr(),
        x.size(0),
        rowptr.size(0),
        col.size(0),
        x.size(1),
        out.size(1),
    )


def _check(rowptr: Tensor, col: Tensor, values: Tensor | None, x: Tensor, out: Tensor,
           bias: Tensor | None = None) -> None:  # fmt: skip
    """What the kernels' addresses rely on (they read and write raw memory): contiguous CPU
    tensors, the values of one float dtype, the indices of one integer dtype."""
    dtype = x.dtype
    for tensor in (values, out, bias):
        if tensor is not None and (tensor.dtype != dtype or not tensor.is_contiguous()):
            raise ValueError("narrow spmm: values, out and bias must be contiguous, of x's dtype")
    if not (x.is_contiguous() and rowptr.is_contiguous() and col.is_contiguous()):
        raise ValueError("narrow spmm: x, rowptr and col must be contiguous")
    if col.dtype != rowptr.dtype or not (x.is_cpu and out.is_cpu):
        raise ValueError("narrow spmm: CPU tensors and indices of one dtype expected")


def spmm(
    rowptr: Tensor,
    col: Tensor,
    values: Tensor | None,
    x: Tensor,
    out: Tensor,
    bias: Tensor | None = None,
) -> None:
    """``out[h, i] = sum over row i's entries e of values[h, e] * x[h, col[e]]``, in place,
    plus ``bias`` (C,) where given (added to each sum as it is stored: the bits of adding it
    to the output afterwards).

    ``x`` (H, |V_in|, C) and ``out`` (H, |V_out|, C) contiguous, of one float dtype, ``values``
    (H, |E|) contiguous or ``None`` for all ones, ``bias`` contiguous, ``rowptr`` and ``col``
    of one integer dtype (checked: the kernel reads their memory directly); every element of
    ``out`` is written. Rows are spread over ``torch.get_num_threads()`` threads.
    """
    _check(rowptr, col, values, x, out, bias)
    kind = "rows" if bias is None else "biased rows"
    if x.nbytes >= PREFETCH_MIN_BYTES:
        kind += ", prefetching"  # features past the cache
    kernel = _compiled(kind, x.size(2), NUMPY_DTYPES[x.dtype], NUMPY_DTYPES[rowptr.dtype])
    rows = as_numpy(rowptr) if torch.get_num_threads() > 1 else rowptr.size(0) - 1
    run_rows(kernel, rows, *_arguments(rowptr, col, values, x, out, bias))


def spmm_transposed(
    rowptr: Tensor, col: Tensor, values: Tensor | None, x: Tensor, out: Tensor
) -> None:
    """The transpose's product from the matrix's own CSR order, on the calling thread:
    ``out[h, j] = sum over the entries e = (i, j) of values[h, e] * x[h, i]``, in place.

    ``x`` is (H, |V_out|, C) and ``out`` (H, |V_in|, C) (the other arguments as
    :func:`spmm`'s). Row by row, each entry's product is added to the row of its column,
    so every output row sums its entries in the order of the transpose's CSR form (rows
    ascending): the bits of :func:`spmm` on the transposed structure and values, without
    gathering the values into that order. The additions into shared rows keep it on one
    thread.
    """
    _check(rowptr, col, values, x, out)
    kernel = _compiled("transposed", x.size(2), NUMPY_DTYPES[x.dtype], NUMPY_DTYPES[rowptr.dtype])
    kernel(0, rowptr.size(0) - 1, *_arguments(rowptr, col, values, x, out, None))
