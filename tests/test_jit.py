"""The shared numba machinery (gnnkit.ops._jit): the chunked row runner, the prefetch intrinsic,
and the promises the kernels make through it: torch's thread count untouched, the same bits
for one and two threads, no numba threading layer started, and kernels that still run in a
process forked after they ran."""

from __future__ import annotations

import itertools
import multiprocessing
import re
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

from gnnkit import ops
from gnnkit.ops import _jit
from gnnkit.ops._jit import jit_available, jit_kernel, run_rows

needs_jit = pytest.mark.skipif(not jit_available(), reason="numba is not available")


@pytest.fixture
def two_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def recorded_chunks(rows):
    """Run a recording Python kernel through run_rows: sorted [(lo, hi, thread name)]."""
    calls = []
    lock = threading.Lock()

    def kernel(lo, hi, tag):
        with lock:
            calls.append((lo, hi, threading.current_thread().name, tag))

    run_rows(kernel, rows, "x")
    assert all(tag == "x" for *_, tag in calls)
    return sorted(call[:3] for call in calls)


def assert_partition(chunks, num_rows):
    bounds = [(lo, hi) for lo, hi, _ in chunks]
    assert bounds[0][0] == 0 and bounds[-1][1] == num_rows
    assert all(lo < hi for lo, hi in bounds)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))  # no gap or overlap


def test_run_rows_splits_by_edge_counts_on_the_pool(two_threads):
    # 100 rows: the first 10 hold 900 of the 1000 edges.
    counts = np.array([90] * 10 + [1] * 90)
    rowptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    chunks = recorded_chunks(rowptr)
    assert_partition(chunks, 100)
    assert len(chunks) >= 6  # about 4 chunks per thread
    edges = [int(rowptr[hi] - rowptr[lo]) for lo, hi, _ in chunks]
    assert max(edges) <= 1000 / 8 + 90  # about equal edge counts, within one row
    assert all(name.startswith("gnnkit-jit") for *_, name in chunks)


def test_run_rows_with_a_row_count_uses_equal_row_chunks(two_threads):
    chunks = recorded_chunks(50)
    assert_partition(chunks, 50)
    assert {hi - lo for lo, hi, _ in chunks} <= {6, 7}


def test_run_rows_runs_inline_with_one_thread_or_few_rows(two_threads):
    caller = threading.current_thread().name
    assert recorded_chunks(np.array([0, 3, 5, 9])) == [(0, 3, caller)]  # 3 rows < 2 * 8
    assert recorded_chunks(0) == [(0, 0, caller)]
    torch.set_num_threads(1)
    assert recorded_chunks(1000) == [(0, 1000, caller)]


def test_prefetch_distance_covers_about_8_kib():
    from gnnkit.ops._jit import prefetch_distance

    assert prefetch_distance(64) == 64  # 16 float32 channels: capped
    assert prefetch_distance(256) == 32
    assert prefetch_distance(512) == 16
    assert prefetch_distance(4096) == 16  # wide rows: floor
    # Features that fit in cache are not prefetched: the distance passes every entry index.
    assert prefetch_distance(64, _jit.PREFETCH_MIN_BYTES - 1) == _jit.NO_PREFETCH
    assert prefetch_distance(64, _jit.PREFETCH_MIN_BYTES) == 64
    assert _jit.NO_PREFETCH > 2**40  # beyond any edge count, and e + distance fits in int64


@needs_jit
def test_prefetch_compiles_for_any_rank_and_index_type():
    from gnnkit.ops._jit import prefetch_l2

    @jit_kernel()
    def touch(a, b, c):  # pragma: no cover - compiled
        total = 0.0
        for i in range(a.shape[0]):
            prefetch_l2(a, i)
            prefetch_l2(b, np.int32(i), 0)
            prefetch_l2(c, i, 0, np.int64(1))
            total += a[i]
        return total

    a = np.arange(5.0)
    assert touch(a, np.ones((5, 2), np.float32), np.ones((5, 2, 3))) == 10.0
    ir = "".join(touch.inspect_llvm().values())
    # every request reads (0) into L2 (temporal locality 2) from the data cache (1)
    requests = re.findall(
        r"call void @llvm\.prefetch[.\w]*\([^,]+, i32 (\d), i32 (\d), i32 (\d)\)", ir
    )
    assert requests and set(requests) == {("0", "2", "1")}


@needs_jit
def test_prefetch_rejects_a_wrong_number_of_indices():
    import numba

    from gnnkit.ops._jit import prefetch_l2

    @numba.njit
    def bad(a):  # pragma: no cover - compiled
        prefetch_l2(a, 0)

    with pytest.raises(numba.core.errors.TypingError):
        bad(np.ones((2, 2)))


def transposed_blocks(transpose, dtype, **options):
    """A (20, 24) matrix's 8 x 8 block at (3, 5), copied transposed by ``transpose`` into a
    (30, 16) array at (2, 7): the rest of the destination must stay NaN."""
    src = np.random.default_rng(0).standard_normal((20, 24)).astype(dtype)
    dst = np.full((30, 16), np.nan, dtype=dtype)
    transpose(src.reshape(-1), 3 * 24 + 5, 24, dst.reshape(-1), 2 * 16 + 7, 16, **options)
    expected = np.full_like(dst, np.nan)
    expected[2:10, 7:15] = src[3:11, 5:13].T
    return dst, expected


@needs_jit
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_transpose8_copies_an_8x8_block_transposed_with_any_strides(dtype):
    from gnnkit.ops._jit import _transpose8

    transpose8 = _transpose8()

    @jit_kernel()
    def copy(src, src_at, src_stride, dst, dst_at, dst_stride):  # pragma: no cover - compiled
        transpose8(src, src_at, src_stride, dst, dst_at, np.uint64(dst_stride))

    dst, expected = transposed_blocks(copy, dtype)
    np.testing.assert_array_equal(dst, expected)  # every bit: a copy


def test_transpose8_without_numba_is_a_python_loop(monkeypatch):
    monkeypatch.setattr(_jit, "_numba", lambda: None)
    _jit._transpose8.cache_clear()
    try:
        dst, expected = transposed_blocks(_jit._transpose8(), np.float32)
    finally:
        _jit._transpose8.cache_clear()
    np.testing.assert_array_equal(dst, expected)


def spmm_case(seed=0):
    gen = torch.Generator().manual_seed(seed)
    graph = ops.CSRGraph.from_edge_index(torch.randint(0, 400, (2, 5000), generator=gen), 400)
    values = torch.randn(2, 5000, generator=gen)
    x = torch.randn(2, 400, 48, generator=gen)
    return graph, values, x


def run_spmm(graph, values, x):
    from gnnkit.ops import _spmm_cpu

    out = torch.full_like(x, float("nan"))
    _spmm_cpu.spmm(graph.rowptr, graph.col, values, x, out)
    return out


@needs_jit
def test_kernels_keep_torchs_thread_count_and_bits_across_thread_counts(two_threads):
    from gnnkit.distributed._mask_jit import keep_mask_cpu

    graph, values, x = spmm_case()
    rows, columns = torch.arange(3000) * 7919 % 2**32, torch.arange(40) * 104729
    results = {}
    for threads in (2, 1, 2):
        torch.set_num_threads(threads)
        spmm = run_spmm(graph, values, x)
        mask = keep_mask_cpu(rows, columns, 2**31)
        assert torch.get_num_threads() == threads
        if threads in results:
            assert torch.equal(spmm, results[threads][0])
        results[threads] = (spmm, mask)
    for a, b in zip(results[1], results[2], strict=True):
        assert torch.equal(a, b)


@needs_jit
def test_kernels_never_start_numbas_threading_layer():
    """In a fresh interpreter, with two torch threads: SpMM, the fused GAT and the dropout mask
    run, torch keeps its thread count, and numba's parallel pool is never launched."""
    script = """
import numba, torch
from gnnkit import ops
from gnnkit.distributed._mask_jit import keep_mask_cpu
from gnnkit.ops import _spmm_cpu
torch.set_num_threads(2)
g = ops.CSRGraph.from_edge_index(torch.randint(0, 300, (2, 3000)), 300)
x = torch.randn(1, 300, 32)
_spmm_cpu.spmm(g.rowptr, g.col, None, x, torch.empty_like(x))
xw = torch.randn(300, 2, 8, requires_grad=True)
a_src, a_dst = torch.randn(300, 2), torch.randn(300, 2)
ops.fused_gat(g, a_src, a_dst, None, xw, 0.2)[0].sum().backward()
keep_mask_cpu(torch.arange(100), torch.arange(8), 2**31)
try:
    layer = numba.threading_layer()
except ValueError:
    layer = None
print(torch.get_num_threads(), layer)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600, check=True
    )
    assert result.stdout.split()[-2:] == ["2", "None"]


def _child(graph, values, x, expected):  # runs in the forked child, on two threads
    # No torch operator that computes: torch's own OpenMP pool (GNU libgomp) hangs in a child
    # forked after the parent used it, which is why torch's data loader workers take one thread.
    from gnnkit.ops import _spmm_cpu

    out = torch.empty_like(x)
    _spmm_cpu.spmm(graph.rowptr, graph.col, values, x, out)
    sys.exit(0 if np.array_equal(out.numpy(), expected.numpy()) else 3)


@needs_jit
def test_kernels_run_in_a_process_forked_after_they_ran(two_threads):
    graph, values, x = spmm_case(1)
    expected = run_spmm(graph, values, x)  # the parent's pool now holds live threads
    assert _jit._pool.cache_info().currsize >= 1
    context = multiprocessing.get_context("fork")
    child = context.Process(target=_child, args=(graph, values, x, expected))
    child.start()
    child.join(timeout=30)
    if child.is_alive():
        child.kill()
        child.join()
        pytest.fail("the kernel hung in a forked child")
    assert child.exitcode == 0  # 3: different bits


@needs_jit
def test_prefetch_locality_benchmark_times_both_forms_with_the_same_bits():
    import prefetch_locality  # benchmarks/prefetch_locality.py

    # Big enough for the GAT passes by head (features past gnnkit's prefetch threshold).
    graph = prefetch_locality.random_graph(13000, 30000, self_loops=True)
    rows = prefetch_locality.gat_rows(graph, reps=1)
    small = prefetch_locality.random_graph(300, 2000, False)
    rows += prefetch_locality.spmm_rows(small, 1) + prefetch_locality.narrow_rows(small, 1)
    assert [row["kernel"] for row in rows] == [
        "GAT aggregation by head, 8 x 32",
        "GAT sender pass by head, 8 x 32",
        "SpMM, 64 channels",
        "SpMM, 128 channels",
        "SpMM, 256 channels",
        "narrow SpMM, 16 channels",
        "narrow SpMM, 32 channels",
        "narrow SpMM, 48 channels",
    ]
    for row in rows:  # the claim its report prints, and both forms timed
        assert row["same_bits"] and set(row["ms"]) == set(prefetch_locality.FORMS)
    assert "| GAT sender pass by head, 8 x 32 |" in "\n".join(prefetch_locality.markdown_body(rows))


@needs_jit
def test_prefetch_into_l1_is_built_on_request():
    # the benchmark's L1 form: the same intrinsic with locality 3 in its IR
    l1 = _jit._prefetch(3)

    @jit_kernel()
    def touch(a):  # pragma: no cover - compiled
        for i in range(a.shape[0]):
            l1(a, i)
        return a[0]

    touch(np.ones(3))
    ir = "".join(touch.inspect_llvm().values())
    localities = re.findall(r"call void @llvm\.prefetch[.\w]*\([^,]+, i32 0, i32 (\d), i32 1\)", ir)
    assert localities and set(localities) == {"3"}
