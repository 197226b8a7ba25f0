"""The numba SpMM kernel (gnnkit.ops._spmm_cpu) and the rule that chooses it.

References: a dense ``A @ X`` built here in float64, and torch's CSR ``addmm`` (today's
kernel, :func:`gnnkit.ops.matmul._csr_matmul`) on the same structure.
"""

from __future__ import annotations

import pytest
import torch

from gnnkit import ops
from gnnkit.ops import backend
from gnnkit.ops import matmul as matmul_module
from gnnkit.ops._jit import jit_available

needs_jit = pytest.mark.skipif(not jit_available(), reason="numba is not available")
pytestmark = pytest.mark.usefixtures("one_thread")
CPU = torch.device("cpu")


def random_case(nodes, edges, heads, channels, dtype, seed, empty_rows=0, senders=None):
    """A random graph whose last ``empty_rows`` receivers have no edges, its values and x."""
    gen = torch.Generator().manual_seed(seed)
    senders = nodes if senders is None else senders
    src = torch.randint(0, senders, (edges,), generator=gen)
    dst = torch.randint(0, max(1, nodes - empty_rows), (edges,), generator=gen)
    edge_index = torch.stack([src, dst])
    graph = ops.CSRGraph.from_edge_index(edge_index, nodes, senders)
    values = torch.randn(heads, edges, generator=gen, dtype=dtype)
    x = torch.randn(heads, senders, channels, generator=gen, dtype=dtype)
    return edge_index, graph, values, x


def dense_reference(edge_index, graph, values, x, nodes):
    """sum_e v_e x_src(e) into dst(e), per head, from a dense adjacency in float64."""
    out = []
    for h in range(values.size(0)):
        dense = torch.zeros(nodes, x.size(1), dtype=torch.float64)
        input_order = torch.empty_like(values[h]).scatter_(0, graph.perm, values[h])
        dense.index_put_((edge_index[1], edge_index[0]), input_order.double(), accumulate=True)
        out.append(dense @ x[h].double())
    return torch.stack(out)


def differentiable_case(heads, channels):
    """A small float64 case whose values and features require gradients (one head: 1-D / 2-D)."""
    _, graph, values, x = random_case(12, 50, heads, channels, torch.float64, 8, empty_rows=2)
    values.requires_grad_(True)
    x.requires_grad_(True)
    return (graph, values[0], x[0]) if heads == 1 else (graph, values, x)


def numba_spmm(graph, values, x, index_dtype=torch.int32, transpose=False):
    from gnnkit.ops import _spmm_cpu

    ptr, idx = graph.transpose()[:2] if transpose else (graph.rowptr, graph.col)
    num_out = graph.num_cols if transpose else graph.num_rows
    out = torch.full((x.size(0), num_out, x.size(2)), float("nan"), dtype=x.dtype)  # all written
    _spmm_cpu.spmm(ptr.to(index_dtype), idx.to(index_dtype), values, x, out)
    return out


@needs_jit
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize(
    ("nodes", "edges", "heads", "channels", "empty_rows"),
    [(1, 1, 1, 1, 0), (7, 30, 1, 5, 2), (40, 300, 3, 17, 5), (64, 900, 2, 100, 0)],
)
def test_numba_spmm_matches_dense_and_torch_csr(
    dtype, index_dtype, nodes, edges, heads, channels, empty_rows
):
    edge_index, graph, values, x = random_case(nodes, edges, heads, channels, dtype, 3, empty_rows)
    out = numba_spmm(graph, values, x, index_dtype)
    reference = dense_reference(edge_index, graph, values, x, nodes)
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-12}
    torch.testing.assert_close(out.double(), reference, **tol)
    if empty_rows:
        assert torch.equal(out[:, nodes - empty_rows :], torch.zeros_like(out[:, :empty_rows]))
    csr = torch.empty_like(out)
    matmul_module._csr_matmul(*graph.kernel_indices(heads=heads), values, x, csr)
    # cache-resident rows are added four at a time: not MKL's order, so not its bits
    close = {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 0, "atol": 1e-14}
    torch.testing.assert_close(out, csr, **close)


@needs_jit
def test_numba_spmm_without_values_sums_sender_rows():
    edge_index, graph, values, x = random_case(30, 200, 2, 70, torch.float64, 5, empty_rows=4)
    out = numba_spmm(graph, None, x)
    reference = dense_reference(edge_index, graph, torch.ones_like(values), x, 30)
    torch.testing.assert_close(out, reference, rtol=1e-12, atol=1e-12)


@needs_jit
def test_numba_spmm_on_a_bipartite_transpose():
    edge_index, graph, values, _ = random_case(9, 60, 1, 20, torch.float64, 6, senders=25)
    values_t = values[:, graph.transpose()[3]]
    grad_out = torch.randn(1, 9, 20, dtype=torch.float64)
    out = numba_spmm(graph, values_t, grad_out, transpose=True)  # (1, 25, 20): A^T @ grad_out
    dense = torch.zeros(9, 25, dtype=torch.float64)
    input_order = torch.empty_like(values[0]).scatter_(0, graph.perm, values[0])
    dense.index_put_((edge_index[1], edge_index[0]), input_order, accumulate=True)
    torch.testing.assert_close(out[0], dense.t() @ grad_out[0], rtol=1e-12, atol=1e-12)


@needs_jit
def test_numba_spmm_is_bit_identical_across_runs_and_thread_counts():
    _, graph, values, x = random_case(500, 6000, 1, 96, torch.float32, 7)
    first = numba_spmm(graph, values, x)
    assert torch.equal(first, numba_spmm(graph, values, x))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert torch.equal(first, numba_spmm(graph, values, x))
    finally:
        torch.set_num_threads(threads)
    assert torch.get_num_threads() == threads


@needs_jit
@pytest.mark.parametrize("heads", [1, 2])
def test_spmm_gradients_through_the_numba_kernel(heads, monkeypatch):
    monkeypatch.setattr(backend, "_CPU_SPMM_JIT_MIN_WORK", 0)  # choose it at this small size
    monkeypatch.setattr(backend, "_CPU_SPMM_JIT_MIN_CHANNELS", 0)
    from gnnkit.ops import _spmm_cpu

    calls = []
    real = _spmm_cpu.spmm
    monkeypatch.setattr(_spmm_cpu, "spmm", lambda *args: calls.append(1) or real(*args))
    graph, values, x = differentiable_case(heads, 4)

    def fn(v, features):
        return ops.spmm(graph, v, features)

    assert torch.autograd.gradcheck(fn, (values, x))
    assert len(calls) >= 2  # forward and the transposed backward ran the numba kernel
    # Same gradients as the torch CSR kernel.
    out = fn(values, x)
    grad = torch.randn_like(out)
    ours = torch.autograd.grad(out, (values, x), grad)
    monkeypatch.setattr(backend, "_CPU_SPMM_JIT_MIN_WORK", 2**62)
    out_csr = fn(values, x)
    theirs = torch.autograd.grad(out_csr, (values, x), grad)
    torch.testing.assert_close(out, out_csr, rtol=0, atol=1e-14)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-14, atol=1e-14)


@needs_jit
def test_spmm_with_numba_kernel_is_deterministic_in_deterministic_mode(monkeypatch):
    monkeypatch.setattr(backend, "_CPU_SPMM_JIT_MIN_WORK", 0)
    monkeypatch.setattr(backend, "_CPU_SPMM_NARROW_CHANNELS", (0, 0))  # the row kernel
    _, graph, values, x = random_case(300, 4000, 1, 64, torch.float32, 9)
    x = x[0].requires_grad_(True)
    grad = torch.randn(300, 64)
    results = []
    with ops.deterministic():
        for _ in range(2):
            out = ops.spmm(graph, values[0], x)
            (grad_x,) = torch.autograd.grad(out, x, grad)
            results.append((out, grad_x))
    assert torch.equal(results[0][0], results[1][0])
    assert torch.equal(results[0][1], results[1][1])


def test_spmm_kernel_rule():
    numba = "numba" if jit_available() else "csr"
    narrow = "narrow" if jit_available() else "csr"
    many = 2**15  # with 32 channels, 2**20 multiply-adds
    past = (12 * 2**20) // (128 * 4)  # 128-channel float32 sender rows of 12 MiB
    assert backend.spmm_kernel(CPU, torch.float32, False, 32, many) == narrow
    assert backend.spmm_kernel(CPU, torch.float32, False, 8, 1) == narrow  # any size
    assert backend.spmm_kernel(CPU, torch.float64, True, 63, 2**30) == narrow  # deterministic
    assert backend.spmm_kernel(CPU, torch.float32, False, 64, 2**30) == narrow  # rows unknown
    assert backend.spmm_kernel(CPU, torch.float64, False, 64, 2**30, 2**20) == narrow  # past
    # 65 to 128 channels: written out only past the cache (12 MiB of sender rows)
    assert backend.spmm_kernel(CPU, torch.float32, False, 128, 2**30, past) == narrow
    assert backend.spmm_kernel(CPU, torch.float32, False, 128, 2**30, past - 1) == numba
    assert backend.spmm_kernel(CPU, torch.float64, False, 65, 2**30, past) == narrow  # 8 B
    assert backend.spmm_kernel(CPU, torch.float32, False, 129, 2**30, 2**20) == numba
    assert backend.spmm_kernel(CPU, torch.float32, False, 65, many) == numba  # rows unknown
    assert backend.spmm_kernel(CPU, torch.float32, False, 65, many // 4) == "csr"  # small product
    assert backend.spmm_kernel(CPU, torch.float32, False, 7, 2**30) == "csr"  # narrow rows
    assert backend.spmm_kernel(CPU, torch.float32, False) == "csr"  # size unknown
    assert backend.spmm_kernel(CPU, torch.bfloat16, False, 32, many) == "segment"
    cuda = torch.device("cuda")
    assert backend.spmm_kernel(cuda, torch.float32, False, 32, many) == "csr"
    assert backend.spmm_kernel(cuda, torch.float32, True, 32, many) == "segment"


def test_spmm_falls_back_to_torch_without_numba(monkeypatch):
    monkeypatch.setattr(backend, "jit_available", lambda: False)
    monkeypatch.setattr(backend, "_CPU_SPMM_JIT_MIN_WORK", 0)
    monkeypatch.setattr(backend, "_CPU_SPMM_JIT_MIN_CHANNELS", 0)
    assert backend.spmm_kernel(CPU, torch.float32, False, 256, 2**30) == "csr"
    monkeypatch.setattr(
        matmul_module, "_cpu_kernels", lambda: pytest.fail("numba kernel used without numba")
    )
    edge_index, graph, values, x = random_case(20, 90, 1, 8, torch.float64, 10)
    out = ops.spmm(graph, values[0], x[0])
    reference = dense_reference(edge_index, graph, values, x, 20)[0]
    torch.testing.assert_close(out, reference, rtol=1e-12, atol=1e-12)


def test_huge_page_advice_keeps_contents():
    from gnnkit.ops._memory import advise_huge_pages

    large = torch.arange(3 * 2**20, dtype=torch.float32)  # 12 MiB: advised on Linux
    expected = large.clone()
    advise_huge_pages(large)
    advise_huge_pages(large[:10])  # small: left alone
    assert torch.equal(large, expected)


@pytest.mark.parametrize(
    "setting, advised", [(None, True), ("1", True), ("0", False), ("off", False)]
)
def test_huge_page_advice_follows_the_environment(setting, advised, monkeypatch):
    from gnnkit.ops import _memory

    calls = []
    monkeypatch.setattr(_memory, "_madvise", lambda: lambda *args: calls.append(args) or 0)
    if setting is None:
        monkeypatch.delenv("GNNKIT_HUGE_PAGES", raising=False)
    else:
        monkeypatch.setenv("GNNKIT_HUGE_PAGES", setting)
    out = _memory.empty_advised(torch.empty(0), 3 * 2**20)  # 12 MiB of float32
    assert out.shape == (3 * 2**20,)
    assert bool(calls) == advised
    if advised:  # the 2 MiB-aligned interior, MADV_HUGEPAGE
        start, length, advice = calls[0]
        assert start % (2 << 20) == 0 and length % (2 << 20) == 0 and advice == 14
        assert out.data_ptr() <= start and start + length <= out.data_ptr() + out.nbytes


@needs_jit
def test_numba_spmm_rejects_a_non_contiguous_output():
    from gnnkit.ops import _spmm_cpu

    _, graph, values, x = random_case(10, 40, 1, 8, torch.float32, 11)
    out = torch.empty(1, 8, 10).transpose(1, 2)  # (1, 10, 8), not contiguous
    with pytest.raises(ValueError, match="`out` must be contiguous"):
        _spmm_cpu.spmm(graph.rowptr, graph.col, values, x, out)


@needs_jit
@pytest.mark.parametrize("prefetched", [False, True])
def test_both_numba_row_kernels_match_the_dense_product(prefetched, monkeypatch):
    # Rows that fit in cache take the four-entries-a-pass kernel, larger ones the prefetching
    # one: rows of 1 to 9 entries (every remainder of the unrolled loop), with and without
    # values, against a dense float64 product.
    from gnnkit.ops import _jit, _spmm_cpu

    if prefetched:
        monkeypatch.setattr(_spmm_cpu, "prefetch_distance", lambda *args: 16)
    else:
        assert _jit.prefetch_distance(4 * 33, 4 * 33 * 40) == _jit.NO_PREFETCH
    gen = torch.Generator().manual_seed(11)
    degrees = torch.arange(40) % 10  # 0 to 9 entries per row
    dst = torch.repeat_interleave(torch.arange(40), degrees)
    src = torch.randint(0, 40, (dst.numel(),), generator=gen)
    edge_index = torch.stack([src, dst])
    graph = ops.CSRGraph.from_edge_index(edge_index, 40, 40)
    values = torch.randn(2, dst.numel(), generator=gen)
    x = torch.randn(2, 40, 33, generator=gen)
    for weights in (values, None):
        out = numba_spmm(graph, weights, x)
        ones = torch.ones_like(values) if weights is None else weights
        reference = dense_reference(edge_index, graph, ones, x, 40)
        torch.testing.assert_close(out.double(), reference, rtol=1e-5, atol=1e-5)
