"""Compiled CPU kernels through numba's JIT, with today's torch kernels as the fallback.

gnnkit stays a pure-Python install: numba ships binary wheels (no compiler needed), compiles a
kernel on its first call and caches the machine code on disk (``NUMBA_CACHE_DIR``, else next
to the module or in the user's cache folder), so only the first call of a fresh installation
pays the compile. Where numba is missing, fails to import, or ``GNNKIT_JIT=0`` is set, every
caller takes its torch path instead, with the same results to floating-point rounding.

This module holds what the kernel modules share: the decorator (:func:`jit_kernel`), a
software prefetch for use inside kernels (``prefetch_l2``, built on first use, and
:func:`prefetch_distance`), the runner that spreads a serial kernel over threads
(:func:`run_rows`) and a zero-operator numpy view of a tensor (:func:`as_numpy`).

NOTE: kernels are serial functions over a range of rows, ``kernel(lo, hi, *args)``, compiled
with ``nogil`` and run on chunks of rows by a Python thread pool sized to
``torch.get_num_threads()``; numba's own ``parallel=True`` (``prange``) is not used. Its
threading layer (OpenMP or TBB) keeps idle workers spinning after each parallel region on the
cores torch needs (measured: a Cora GAT step 10-30x slower after one parallel call), starting
it changes the process-wide OpenMP thread count that torch reports and uses, a process forked
after it ran aborts or hangs in its next parallel region (GNU OpenMP is not fork-safe, and
gnnkit's ranks and data loaders fork), and its parfor compilation took about 4x as long as the
serial kernels'. A thread pool of serial kernels has none of these: idle threads sleep, torch's
setting is only read, and a forked child starts a fresh pool.
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

from gnnkit.ops._kernel_cache import cached_module, register
from gnnkit.utils.env import switched_off

__all__ = [
    "as_numpy",
    "jit_available",
    "jit_kernel",
    "prefetch_distance",
    "require_same_bits",
    "run_rows",
]

F = TypeVar("F", bound=Callable[..., Any])

CHUNKS_PER_THREAD = 4  # row chunks per thread, so one slow chunk does not idle the others
_PREFETCH_BYTES = 8192  # bytes of rows requested ahead of the row in use (prefetch_distance)
PREFETCH_MIN_BYTES = 12 * 2**20  # gathered features below this stay in cache: no prefetch
NO_PREFETCH = 2**62  # a prefetch distance no CSR entry index reaches


@functools.cache
def _numba() -> Any:
    """The numba module, or ``None`` when it is absent, broken or switched off."""
    if switched_off("GNNKIT_JIT"):
        return None
    try:
        import numba
    except Exception:  # any import failure (missing, incompatible numpy...) means no JIT
        return None
    return numba


def jit_available() -> bool:
    """Whether compiled CPU kernels can run here (numba importable, ``GNNKIT_JIT`` not 0)."""
    return _numba() is not None


def jit_kernel(parallel: bool = False, **options: Any) -> Callable[[F], F]:
    """Decorate a numba kernel: compiled lazily on first call, cached on disk, GIL released,
    fastmath off unless ``options`` say otherwise.

    ``parallel`` stays ``False`` for gnnkit's kernels (see the module docstring); run a serial
    range kernel on several threads with :func:`run_rows`. The decorated function must only
    be called when :func:`jit_available` is true; the Python function is returned unchanged
    otherwise (so a module defining kernels always imports).
    """

    def wrap(function: F) -> F:
        numba = _numba()
        if numba is None:
            return function
        return numba.njit(parallel=parallel, cache=True, nogil=True, **options)(function)

    return wrap


def __getattr__(name: str) -> Any:
    """``prefetch_l2``, built on first use: defining it imports numba, which ``import gnnkit``
    must not (kernel modules, imported only when a kernel first runs, import it)."""
    if name == "prefetch_l2":
        return _prefetch()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: LLVM's temporal-locality hint of the kernels' requests: 2 keeps the line in the second
#: cache level and up (x86 ``prefetcht1``); 3 would bring it into L1 (``prefetcht0``).
#: numba's on-disk cache keys each kernel on its own file, not on this value: a change here
#: reaches kernels compiled with ``cache=True`` only once their cached machine code is cleared.
_LOCALITY = 2


def _prefetch(locality: int = _LOCALITY) -> Any:
    """The prefetch intrinsic for ``locality`` (:func:`_prefetch_at`): one object per
    locality however it is asked for, which a generated kernel's cached module relies on."""
    return _prefetch_at(locality)


@functools.cache
def _prefetch_at(locality: int) -> Any:
    """``prefetch_l2(array, i, j, ...)`` inside a kernel: ask for the cache line of
    ``array[i, j, ...]`` to be brought into L2 (LLVM ``llvm.prefetch`` for reading with
    temporal ``locality``, by default ``_LOCALITY``), one integer index per dimension. A hint
    only: nothing is loaded and no bounds are checked. A Python no-op where numba is
    unavailable (the kernels are never called then). ``benchmarks/prefetch_locality.py``
    builds the same request into L1 (``locality=3``) to time the kernels both ways.

    Into L2 rather than L1: a request into L1 holds one of L1's few miss buffers (about two
    dozen on the AMD Zen cores measured) until its line arrives, which caps the lines in
    flight, while L2 tracks more misses at once, and a load that then finds its line in L2
    waits only about 14 cycles. Measured at ogbn-arxiv's size (1 thread, the same bits either
    way), the kernels that gather rows far past the cache at random ran as fast or faster
    with their requests into L2: the SpMM at 64 / 128 / 256 channels 20-23 / 55-61 / 96 ms
    against 38-39 / 64-66 / 142-148 ms into L1; the fused GAT's aggregation by head (8 x 32)
    151-156 against 197 ms; its backward's sender pass 261-277 against 298-325 ms with the
    receiver rows into L2, and 228-241 against 238-247 ms (later runs) with each edge's
    attention values into L2 as well; the general aggregation 250 against 332 ms (2 x 128)
    and 158 against 249 ms (1 x 256); the sums of each sender's score gradients 15 against
    22 ms for 8 heads, 4.0 against 3.9 ms for one (``benchmarks/results/performance_log.md``).
    Graphs whose rows fit in the last-level cache measured the same either way. Not measured
    on Intel cores, where ``prefetcht1`` also fills L2."""
    numba = _numba()
    if numba is None:

        def prefetch_python(array: Any, *index: Any) -> None:
            return None

        return prefetch_python

    from llvmlite import binding, ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    # The intrinsic's name carries its pointer type: opaque ``p0`` since LLVM 16's pointers,
    # ``p0i8`` (i8*) before (numba 0.60-0.61).
    name = "llvm.prefetch.p0" if binding.llvm_version_info[0] >= 16 else "llvm.prefetch.p0i8"

    def codegen(context, builder, signature, args):  # pragma: no cover - compiled
        array_type, index_types = signature.args
        data = context.make_array(array_type)(context, builder, args[0])
        values = cgutils.unpack_tuple(builder, args[1], len(index_types))
        index = [
            context.cast(builder, value, kind, types.intp)
            for value, kind in zip(values, index_types, strict=True)
        ]
        pointer = cgutils.get_item_pointer(
            context, builder, array_type, data, index, wraparound=False
        )
        byte_pointer = ir.IntType(8).as_pointer()
        int32 = ir.IntType(32)
        function = cgutils.get_or_insert_function(
            builder.module,
            ir.FunctionType(ir.VoidType(), [byte_pointer, int32, int32, int32]),
            name,
        )
        # read, the temporal locality asked for, data cache
        builder.call(
            function,
            [builder.bitcast(pointer, byte_pointer), int32(0), int32(locality), int32(1)],
        )
        return context.get_dummy_value()

    @intrinsic
    def prefetch_intrinsic(typingctx, array, *index):  # pragma: no cover - compiled
        if not isinstance(array, types.Array) or len(index) != array.ndim:
            return None
        if not all(isinstance(kind, types.Integer) for kind in index):
            return None
        return types.void(array, types.StarArgTuple.from_types(index)), codegen

    return register(prefetch_intrinsic, f"_prefetch({locality})")


def generated_kernel(source: str, filename: str, names: dict[str, Any]) -> Any:
    """The numba dispatcher (``nogil``, not yet compiled) of the function ``kernel`` defined
    by generated ``source``, run with ``names`` as its globals; ``filename`` names it in
    tracebacks. Its machine code is cached on disk through a module file written for it
    (:mod:`gnnkit.ops._kernel_cache`) where that cache is on and can serve it; otherwise
    it is compiled in each process."""
    module = cached_module(source, filename, names)
    if module is not None:
        return _numba().njit(nogil=True, cache=True)(module.kernel)
    scope = dict(names)
    exec(compile(source, filename, "exec"), scope)
    return _numba().njit(nogil=True)(scope["kernel"])


def kernel_globals(dtype: str, **constants: Any) -> dict[str, Any]:
    """The globals a generated kernel for values of numpy ``dtype`` reads, plus
    ``constants``: ``np``, ``carray`` (``numba.carray``), ``FLOAT`` (:func:`address_pointer`
    for ``dtype``), ``FLOAT_TYPE`` and its ``ZERO`` and ``ONE``."""
    float_type = np.dtype(dtype).type
    names = {"np": np, "carray": _numba().carray, "FLOAT": address_pointer(dtype)}
    names.update(FLOAT_TYPE=float_type, ZERO=float_type(0), ONE=float_type(1), **constants)
    return names


def node_row_globals(heads: int, channels: int) -> dict[str, Any]:
    """The shape globals of a kernel written out for rows of ``heads`` x ``channels``
    entries: ``HEADS`` and ``ENTRIES`` unsigned (for offsets: unsigned indices spare numba's
    negative-index wrap-around), ``HEADS_N`` and ``ENTRIES_N`` signed (for array sizes: numba
    makes ``int64 * uint64`` a float), and the offsets ``E0`` ... ``E{H C - 1}``."""
    entries = heads * channels
    names: dict[str, Any] = {"HEADS": np.uint64(heads), "ENTRIES": np.uint64(entries)}
    names.update(HEADS_N=heads, ENTRIES_N=entries)
    names.update({f"E{k}": np.uint64(k) for k in range(entries)})
    return names


def compile_vectorised(kernel: Any, signature: tuple[Any, ...]) -> None:
    """Compile ``kernel`` for ``signature`` with LLVM's SLP vectoriser switched on.

    numba keeps the SLP vectoriser off by default after miscompilations with older LLVM
    releases (numba PR #8852); kernels whose straight-line code needs it to fill vectors (a
    row's sums held in locals) switch it on for their own compilation only, under numba's
    compiler lock so that no other compilation sees the setting, and check their results
    after compiling.
    """
    from numba.core import config
    from numba.core.compiler_lock import global_compiler_lock

    settings: Any = config  # numba sets its options at import: no attributes to type-check
    with global_compiler_lock:
        switched = settings.SLP_VECTORIZE
        settings.SLP_VECTORIZE = 1
        try:
            kernel.compile(signature)
        finally:
            settings.SLP_VECTORIZE = switched


def require_same_bits(got: list[np.ndarray], expected: list[np.ndarray], what: str) -> None:
    """The end of a compiled kernel's self-check: raise ``RuntimeError`` unless every array of
    ``got`` equals numpy's ``expected`` bit for bit. ``what`` names the kernel ("SpMM kernel
    (rows, 16 channels, float32)"); the message names ``GNNKIT_NARROW_SPMM=0``, which sends
    the work to the kernels these replace."""
    if not all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True)):
        raise RuntimeError(
            f"gnnkit's compiled {what} failed its self-check against numpy (a "
            "miscompilation); set GNNKIT_NARROW_SPMM=0 to use the general kernels instead, "
            "and report it with your numba and CPU versions"
        )


def address_pointer(dtype: Any) -> Any:
    """``pointer(address)`` inside a kernel: a typed pointer to elements of numpy ``dtype``
    at an integer ``address`` (a tensor's ``data_ptr()``), for ``numba.carray(pointer,
    shape)``. A kernel that takes its arrays as addresses and sizes this way is called with
    integers only: numba unboxes those in nanoseconds, where a numpy view of each tensor
    (:func:`as_numpy`) costs about a microsecond. The caller keeps the tensors alive and
    contiguous for the call, and gives sizes that fit them: nothing is checked."""
    return _address_pointer(np.dtype(dtype).name)  # one object per dtype, however named


@functools.cache
def _address_pointer(dtype: str) -> Any:
    """:func:`address_pointer` for the numpy dtype named ``dtype``."""
    numba = _numba()
    from numba.core import types
    from numba.extending import intrinsic

    pointer_type = types.CPointer(numba.from_dtype(np.dtype(dtype)))

    def codegen(context, builder, signature, args):  # pragma: no cover - compiled
        return builder.inttoptr(args[0], context.get_value_type(pointer_type))

    @intrinsic
    def pointer(typingctx, address):  # pragma: no cover - compiled
        if not isinstance(address, types.Integer):
            return None
        return pointer_type(address), codegen

    return register(pointer, f"address_pointer({dtype!r})")


#: The masks of the 8 x 8 transposition of :func:`_transpose8`: pairs of rows interleaved
#: (``vunpcklps``/``vunpckhps``), then pairs of pairs (``vshufps``), then the 128-bit halves
#: of rows four apart (``vperm2f128``). Entry k of a mask picks entry k of the first vector
#: for k < 8, of the second for k >= 8.
_INTERLEAVE = ([0, 8, 1, 9, 4, 12, 5, 13], [2, 10, 3, 11, 6, 14, 7, 15])
_PAIRS = ([0, 1, 8, 9, 4, 5, 12, 13], [2, 3, 10, 11, 6, 7, 14, 15])
_HALVES = ([0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7, 12, 13, 14, 15])


@functools.cache
def _transpose8() -> Any:
    """``transpose8(src, src_at, src_stride, dst, dst_at, dst_stride)`` inside a kernel: the
    8 x 8 block of 1-D float array ``src`` whose row ``r`` starts at ``src_at + r *
    src_stride``, written transposed into ``dst`` (row ``c`` at ``dst_at + c * dst_stride``):
    eight 8-lane loads, 24 shuffles in three rounds (:data:`_INTERLEAVE`, :data:`_PAIRS`,
    :data:`_HALVES`) and eight stores. Written as LLVM IR because LLVM's SLP vectoriser
    leaves a transposition written as 64 scalar moves scalar (one thread, in cache: the GAT's
    heads-last copy of Cora's 2708 x 8 x 8 rows 40 against 107 us, a 64 x 1433 weight 36
    against 69 us; ``benchmarks/results/performance_log.md``). A copy, so the same bits as
    any other; no bounds are checked.
    A plain Python loop where numba is unavailable (the kernels are never called then)."""
    numba = _numba()
    if numba is None:

        def transpose_python(
            src: Any, src_at: int, src_stride: int, dst: Any, dst_at: int, dst_stride: int
        ) -> None:
            for r, c in itertools.product(range(8), range(8)):
                dst[dst_at + c * dst_stride + r] = src[src_at + r * src_stride + c]

        return transpose_python

    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic

    def shuffle(builder: Any, a: Any, b: Any, mask: list[int]) -> Any:
        return builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(ir.IntType(32), 8), mask))

    def rows(context, builder, array_type, array, at, stride):  # pragma: no cover - compiled
        """Pointers to the eight rows of a block, as pointers to 8-lane vectors."""
        data = context.make_array(array_type)(context, builder, array).data
        vector = ir.VectorType(data.type.pointee, 8).as_pointer()
        starts = [builder.add(at, builder.mul(stride, stride.type(r))) for r in range(8)]
        return [builder.bitcast(builder.gep(data, [start]), vector) for start in starts]

    def codegen(context, builder, signature, args):  # pragma: no cover - compiled
        src, dst = (args[0], signature.args[0]), (args[3], signature.args[3])
        at, stride = (
            [context.cast(builder, args[k], signature.args[k], types.intp) for k in ks]
            for ks in ((1, 4), (2, 5))  # the sources', then the destinations'
        )
        loads = [
            builder.load(p, align=1)
            for p in rows(context, builder, src[1], src[0], at[0], stride[0])
        ]
        # (v0, v1) interleaved low and high, (v2, v3) likewise, ... (v6, v7)
        first = [
            shuffle(builder, loads[k - k % 2], loads[k - k % 2 + 1], _INTERLEAVE[k % 2])
            for k in range(8)
        ]
        second = []  # columns k and k + 4 of rows 0-3 (k < 4), then of rows 4-7
        for base in (0, 4):
            for k in range(4):
                a, b = first[base + k // 2], first[base + k // 2 + 2]
                second.append(shuffle(builder, a, b, _PAIRS[k % 2]))
        out = [
            shuffle(builder, second[c % 4], second[c % 4 + 4], _HALVES[c // 4]) for c in range(8)
        ]
        targets = rows(context, builder, dst[1], dst[0], at[1], stride[1])
        for value, p in zip(out, targets, strict=True):
            builder.store(value, p, align=1)
        return context.get_dummy_value()

    @intrinsic
    def transpose8(typingctx, src, src_at, src_stride, dst, dst_at, dst_stride):  # pragma: no cover
        arrays = (src, dst)
        if not all(isinstance(a, types.Array) and a.ndim == 1 for a in arrays):
            return None
        if src.dtype != dst.dtype or src.dtype not in (types.float32, types.float64):
            return None
        if not all(isinstance(i, types.Integer) for i in (src_at, src_stride, dst_at, dst_stride)):
            return None
        return types.void(src, src_at, src_stride, dst, dst_at, dst_stride), codegen

    return register(transpose8, "_transpose8()")


def prefetch_distance(row_bytes: int, total_bytes: int | None = None) -> int:
    """How many CSR entries ahead a kernel prefetches rows of ``row_bytes`` bytes: about 8 KiB
    of rows, at least 16 and at most 64 entries; :data:`NO_PREFETCH` (a distance past any
    entry) when the rows gathered, ``total_bytes`` in all, fit in :data:`PREFETCH_MIN_BYTES`.

    Sender rows are read in random order, so a kernel whose features outgrow the last-level
    cache waits on the latency of each load rather than on bandwidth; asking for the rows
    this far ahead keeps many loads in flight. A kernel with enough work per gathered row to
    hide the latency of rows that stay in cache may pass ``total_bytes``: the fused GAT
    forward (8 heads) on Cora (0.66 MiB of features) took 1.18x as long with the requests, at
    3.9 MiB 1.10x, at 7.8 MiB 1.08x, and at 15.6 MiB 0.89x (1 thread). The SpMM, a pure
    gather, gains from them at every size measured (Cora's 1.4 MiB included) and omits it.
    """
    if total_bytes is not None and total_bytes < PREFETCH_MIN_BYTES:
        return NO_PREFETCH
    return min(64, max(16, _PREFETCH_BYTES // max(1, row_bytes)))


def run_rows(kernel: Callable[..., None], rows: np.ndarray | int, *args: Any) -> None:
    """Run ``kernel(lo, hi, *args)`` over every row, on ``torch.get_num_threads()`` threads.

    ``rows`` is either a CSR row pointer (|V| + 1,), whose rows are cut into chunks of about
    equal edge counts, or a row count whose rows cost the same (chunks of equal row counts).
    With one thread, or too few rows for four chunks per thread, the kernel runs once over all
    rows in the calling thread; otherwise each chunk runs on a cached thread pool (the kernel
    must release the GIL: :func:`jit_kernel` compiles with ``nogil``). The kernel must write
    each row from that row's inputs alone; then the result does not depend on the thread count.
    """
    num_rows = rows if isinstance(rows, int) else len(rows) - 1
    threads = torch.get_num_threads()
    chunks = CHUNKS_PER_THREAD * threads
    if threads == 1 or num_rows < 2 * chunks:
        kernel(0, num_rows, *args)
        return
    if isinstance(rows, int):
        bounds = np.linspace(0, num_rows, chunks + 1).astype(np.int64)
    else:
        targets = np.linspace(0, int(rows[-1]), chunks + 1).astype(np.int64)
        bounds = np.minimum(np.searchsorted(rows, targets), num_rows)
        bounds[0], bounds[-1] = 0, num_rows
    pool = _pool(threads)
    jobs = [
        pool.submit(kernel, int(lo), int(hi), *args)
        for lo, hi in itertools.pairwise(bounds)
        if hi > lo
    ]
    for job in jobs:
        job.result()


@functools.cache
def _pool(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(threads, thread_name_prefix="gnnkit-jit")


# A forked child inherits the cached pools without their threads: let it start its own.
os.register_at_fork(after_in_child=_pool.cache_clear)


#: The numpy names of the dtypes that kernels generated per shape are compiled for.
NUMPY_DTYPES = {
    torch.float32: "float32",
    torch.float64: "float64",
    torch.int32: "int32",
    torch.int64: "int64",
}

_TYPESTR = {
    torch.float32: "<f4",
    torch.float64: "<f8",
    torch.int64: "<i8",
    torch.int32: "<i4",
    torch.uint8: "|u1",
    torch.bool: "|b1",
}


class _Interface:
    """An object numpy reads as an array (``__array_interface__``) over a tensor's memory."""

    __slots__ = ("__array_interface__", "tensor")
    __array_interface__: dict[str, Any]
    tensor: Tensor


def as_numpy(t: Tensor) -> np.ndarray:
    """A numpy view of a contiguous CPU tensor, taken without a torch operator.

    ``Tensor.numpy()`` dispatches ``resolve_conj``/``resolve_neg`` and needs a tensor without
    gradient (one ``detach`` more): with a dozen arrays per call that is most of the operators
    of a fused GAT layer on a small graph. The array holds the tensor (its ``base`` is the
    interface object), so the memory outlives any temporary copy made here. A non-contiguous
    tensor is copied first: pass only contiguous tensors as outputs.
    """
    if not t.is_contiguous():
        t = t.contiguous()
    view = _Interface()
    view.tensor = t
    view.__array_interface__ = {
        "data": (t.data_ptr(), False),
        "shape": tuple(t.shape),
        "typestr": _TYPESTR[t.dtype],
        "version": 3,
    }
    return np.asarray(view)
