"""The numba SpMM kernels written per channel count (gnnkit.ops._spmm_narrow).

References: a dense ``A @ X`` in float64, torch's CSR ``addmm`` (MKL, which adds each row's
entries in CSR order without fused multiply-adds, as these kernels do: the bits must agree),
and the product on the transposed structure with gathered values.
"""

from __future__ import annotations

import pytest
import torch
from test_spmm_kernels import dense_reference, differentiable_case, random_case

from gnnkit import ops
from gnnkit.errors import InputError
from gnnkit.ops import backend
from gnnkit.ops import matmul as matmul_module
from gnnkit.ops._jit import jit_available

pytestmark = [
    pytest.mark.skipif(not jit_available(), reason="numba is not available"),
    pytest.mark.usefixtures("one_thread"),
]
CPU = torch.device("cpu")


def narrow():
    from gnnkit.ops import _spmm_narrow

    return _spmm_narrow


def run(graph, values, x, index_dtype=torch.int32, bias=None):
    out = torch.full((x.size(0), graph.num_rows, x.size(2)), float("nan"), dtype=x.dtype)
    ptr, idx = graph.rowptr.to(index_dtype), graph.col.to(index_dtype)
    narrow().spmm(ptr, idx, values, x, out, bias)
    return out


def transposed(graph, values, x, index_dtype=torch.int32):
    out = torch.full((x.size(0), graph.num_cols, x.size(2)), float("nan"), dtype=x.dtype)
    ptr, idx = graph.rowptr.to(index_dtype), graph.col.to(index_dtype)
    narrow().spmm_transposed(ptr, idx, values, x, out)
    return out


SHAPES = {  # nodes, edges, heads, channels, receivers without edges
    "one entry": (1, 1, 1, 8, 0),
    "three heads": (40, 300, 3, 13, 5),
    "64 channels": (64, 900, 1, 64, 3),
}


@pytest.mark.parametrize("case", list(SHAPES))
@pytest.mark.parametrize(
    ("dtype", "index_dtype"),
    [(d, i) for d in (torch.float32, torch.float64) for i in (torch.int32, torch.int64)],
)
def test_narrow_spmm_matches_dense_and_is_mkls_bits(case, dtype, index_dtype):
    nodes, edges, heads, channels, empty = SHAPES[case]
    edge_index, graph, values, x = random_case(nodes, edges, heads, channels, dtype, 3, empty)
    out = run(graph, values, x, index_dtype)
    digits = 5 if dtype == torch.float32 else 12
    torch.testing.assert_close(
        out.double(),
        dense_reference(edge_index, graph, values, x, nodes),
        rtol=10**-digits,
        atol=10**-digits,
    )
    assert not out[:, nodes - empty :].any()  # rows without entries are zero
    csr = torch.empty_like(out)
    matmul_module._csr_matmul(*graph.kernel_indices(heads=heads), values, x, csr)
    assert torch.equal(out, csr)  # CSR order, no FMA: MKL's own bits


@pytest.mark.parametrize(
    ("channels", "dtype"), [(24, torch.float32), (13, torch.float64), (128, torch.float32)]
)
def test_narrow_spmm_past_the_cache_prefetches_with_the_same_bits(channels, dtype):
    # Features past gnnkit's prefetch threshold take the kernels that ask for the sender rows
    # ahead: MKL's bits, with and without a bias, and a kernel of the prefetching kind ran.
    from gnnkit.ops._spmm_narrow import PREFETCH_MIN_BYTES

    senders = PREFETCH_MIN_BYTES // (channels * torch.finfo(dtype).bits // 8) + 1
    _, graph, values, x = random_case(300, 4000, 1, channels, dtype, 7, 20, senders)
    assert x.nbytes > PREFETCH_MIN_BYTES
    bias = torch.randn(channels, dtype=dtype)
    csr = torch.empty(1, graph.num_rows, channels, dtype=dtype)
    matmul_module._csr_matmul(*graph.kernel_indices(), values, x, csr)
    assert torch.equal(run(graph, values, x), csr)  # MKL's own bits
    assert torch.equal(run(graph, values, x, torch.int64, bias), csr + bias)
    kinds = {key[1] for key in narrow()._COMPILED if key[0] == channels}
    assert {"rows, prefetching", "biased rows, prefetching"} <= kinds
    # one row fewer than the threshold: the plain kind
    narrow()._COMPILED.clear()
    small = random_case(300, 4000, 1, channels, dtype, 7, 20, senders - 2)
    run(*small[1:])
    assert {key[1] for key in narrow()._COMPILED} == {"rows"}


def test_narrow_prefetching_source_asks_for_every_line_of_the_row():
    # 24 float32 channels span two or three 64-byte lines wherever the row starts: offsets 0,
    # 16 and the last; the plain kind asks for nothing.
    source = narrow()._source(24, "rows, prefetching", 16)
    assert [line.strip() for line in source.splitlines() if "prefetch_l2" in line] == [
        f"prefetch_l2(x_h, ahead + C{c})" for c in (0, 16, 23)
    ]
    assert "prefetch_l2" not in narrow()._source(24, "rows", 16)
    assert narrow()._line_starts(20, 8) == [0, 8, 16, 19]  # float64: 8 entries a line


def test_narrow_spmm_without_values_sums_sender_rows():
    edge_index, graph, values, x = random_case(30, 200, 2, 24, torch.float64, 5, empty_rows=4)
    out = run(graph, None, x)
    reference = dense_reference(edge_index, graph, torch.ones_like(values), x, 30)
    torch.testing.assert_close(out, reference, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bias_is_added_as_add_would(dtype):
    _, graph, values, x = random_case(50, 400, 2, 16, dtype, 4, empty_rows=3)
    bias = torch.randn(16, dtype=dtype)
    expected = run(graph, values, x).add_(bias)
    assert torch.equal(run(graph, values, x, bias=bias), expected)
    # through matmul's dispatcher, on every kernel (empty rows come out as the bias)
    for kernel in ("narrow", "csr", "segment"):
        out = matmul_module._spmm_raw(graph, False, values, x, kernel, bias)
        torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)
    empty = ops.CSRGraph.from_edge_index(torch.empty(2, 0, dtype=torch.long), 5)
    out = matmul_module._spmm_raw(empty, False, values[:, :0], x[:, :5], "narrow", bias)
    assert torch.equal(out, bias.expand(2, 5, 16))


@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize(("heads", "channels"), [(1, 16), (2, 9)])
def test_transposed_product_without_gathering_values(index_dtype, heads, channels):
    # bipartite, duplicate edges and empty rows included: 9 receivers, 25 senders
    edge_index, graph, values, _ = random_case(9, 60, heads, channels, torch.float32, 6, 2, 25)
    grad_out = torch.randn(heads, 9, channels)
    out = transposed(graph, values, grad_out, index_dtype)  # (H, 25, C): A^T @ grad_out
    gathered = matmul_module._take_edges(values, graph.transpose()[3])
    reference = torch.empty_like(out)
    narrow().spmm(*graph.kernel_indices(True), gathered, grad_out, reference)
    assert torch.equal(out, reference)  # the transpose's CSR order: the same bits
    for h in range(heads):
        dense = torch.zeros(9, 25, dtype=torch.float64)
        input_order = torch.empty_like(values[h]).scatter_(0, graph.perm, values[h])
        dense.index_put_((edge_index[1], edge_index[0]), input_order.double(), accumulate=True)
        reference_h = dense.t() @ grad_out[h].double()
        torch.testing.assert_close(out[h].double(), reference_h, rtol=1e-5, atol=1e-5)


def test_same_bits_for_every_thread_count():
    _, graph, values, x = random_case(500, 6000, 1, 48, torch.float32, 7)
    first = run(graph, values, x)
    grad = torch.randn(1, 500, 48)
    first_t = matmul_module._spmm_transposed(graph, values, grad, "narrow")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert torch.equal(first, run(graph, values, x))
        # two threads gather the values and multiply the transpose (no shared rows)
        assert torch.equal(first_t, matmul_module._spmm_transposed(graph, values, grad, "narrow"))
    finally:
        torch.set_num_threads(threads)


def test_slp_vectoriser_is_switched_on_only_while_compiling():
    from numba.core import config

    before = config.SLP_VECTORIZE
    _, graph, values, x = random_case(20, 100, 1, 11, torch.float32, 8)
    run(graph, values, x)  # compiles the 11-channel kernel
    after = config.SLP_VECTORIZE
    assert after == before
    kernel = narrow()._dispatcher(11, "rows", "float32", "int32")  # small graph: int32 indices
    assert len(kernel.overloads) == 1  # one compiled signature, reused
    run(graph, values, x)
    assert len(kernel.overloads) == 1


@pytest.mark.parametrize("heads", [1, 2])
def test_spmm_gradients_through_the_narrow_kernel(heads, monkeypatch):
    calls = []
    real, real_t = narrow().spmm, narrow().spmm_transposed
    monkeypatch.setattr(narrow(), "spmm", lambda *args: calls.append("rows") or real(*args))
    monkeypatch.setattr(
        narrow(), "spmm_transposed", lambda *args: calls.append("transposed") or real_t(*args)
    )
    graph, values, x = differentiable_case(heads, 10)
    assert backend.spmm_kernel(CPU, torch.float64, False, 10, heads * 50, heads * 12) == "narrow"
    assert torch.autograd.gradcheck(lambda v, features: ops.spmm(graph, v, features), (values, x))
    assert {"rows", "transposed"} <= set(calls)  # forward and backward ran the kernels
    out = ops.spmm(graph, values, x)
    grad = torch.randn_like(out)
    ours = torch.autograd.grad(out, (values, x), grad)
    monkeypatch.setattr(backend, "_CPU_SPMM_NARROW_CHANNELS", (0, 0))  # MKL's kernel
    out_csr = ops.spmm(graph, values, x)
    theirs = torch.autograd.grad(out_csr, (values, x), grad)
    assert torch.equal(out, out_csr)
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("past_the_cache", [False, True])
def test_backward_gathers_the_transposed_values_past_the_cache(past_the_cache, monkeypatch):
    # A^T G from A's own order adds into output rows at random: only while they fit in cache.
    # Past it the values are gathered into the transpose's order for the row kernel, which
    # asks for its rows ahead. Either way MKL's bits.
    calls = []
    real = narrow().spmm_transposed
    monkeypatch.setattr(narrow(), "spmm_transposed", lambda *a: calls.append(1) or real(*a))
    channels = 16
    senders = narrow().PREFETCH_MIN_BYTES // (4 * channels) + (1 if past_the_cache else -1)
    _, graph, values, x = random_case(300, 4000, 1, channels, torch.float32, 8, 0, senders)
    x.requires_grad_(True)
    grad_out = torch.randn(1, 300, channels, generator=torch.Generator().manual_seed(1))
    (ours,) = torch.autograd.grad(ops.spmm(graph, values[0], x[0]), x, grad_out[0])
    assert bool(calls) != past_the_cache
    reference = torch.empty_like(x)
    gathered = matmul_module._take_edges(values, graph.transpose()[3])
    matmul_module._csr_matmul(*graph.kernel_indices(True), gathered, grad_out, reference)
    assert torch.equal(ours, reference)


def test_narrow_spmm_rejects_a_non_contiguous_output():
    _, graph, values, x = random_case(10, 40, 1, 8, torch.float32, 9)
    out = torch.empty(1, 8, 10).transpose(1, 2)
    with pytest.raises(ValueError, match="contiguous"):
        narrow().spmm(graph.rowptr, graph.col, values, x, out)


@pytest.mark.parametrize("kernel", ["narrow", "csr", "segment"])
def test_spmm_bias_gradient_on_every_kernel(kernel, monkeypatch):
    monkeypatch.setattr(backend, "spmm_kernel", lambda *args, **kwargs: kernel)
    graph, values, x = differentiable_case(1, 6)
    bias = torch.randn(6, dtype=torch.float64, requires_grad=True)

    def fn(v, features, b):
        return ops.spmm(graph, v, features, bias=b)

    assert torch.autograd.gradcheck(fn, (values, x, bias))
    out = fn(values, x, bias)
    torch.testing.assert_close(out, ops.spmm(graph, values, x) + bias, rtol=0, atol=1e-12)
    assert type(out.grad_fn).__name__ == "_SpMMBackward"  # one node, bias included


def test_spmm_refuses_a_bias_that_does_not_fit():
    graph, values, x = differentiable_case(1, 6)
    for bias, fix in (
        (torch.zeros(5, dtype=torch.float64), r"\(5,\) torch.float64"),
        (torch.zeros(6), "torch.float32"),
        ([0.0] * 6, "list"),
    ):
        with pytest.raises(InputError, match=fix):
            ops.spmm(graph, values, x, bias=bias)


def test_benchmark_rows_on_a_small_graph():
    import narrow_spmm  # benchmarks/narrow_spmm.py

    _, graph, _, _ = random_case(30, 200, 1, 16, torch.float32, 10, senders=25)
    product = narrow_spmm.product_row(graph, 16, reps=2)
    assert product["same_bits"]["narrow"]  # the claim its report prints
    assert set(product["seconds"]) == {"mkl", "rows", "narrow"}
    transposed_row = narrow_spmm.transposed_row(graph, 16, reps=2)
    assert transposed_row["same_bits"] == {"gather": True, "pass": True}
    body = narrow_spmm.markdown_body(
        [
            {"graph": "g", "kind": "product", "channels": 16} | product,
            {"graph": "g", "kind": "transposed", "channels": 16} | transposed_row,
        ]
    )
    assert any(line.startswith("| g | 16 |") for line in body)


def test_a_miscompiled_kernel_fails_its_self_check(monkeypatch):
    real = narrow()._source

    def dropped_last_channel(channels, kind, line):  # the last channel never accumulated
        return real(channels, kind, line).replace(f"s{channels - 1} += ", f"s{channels - 1} = 0 * ")

    monkeypatch.setattr(narrow(), "_source", dropped_last_channel)
    monkeypatch.setattr(narrow(), "_COMPILED", {})
    narrow()._dispatcher.cache_clear()
    try:
        _, graph, values, x = random_case(20, 100, 1, 12, torch.float32, 11)
        with pytest.raises(RuntimeError, match=r"self-check.*GNNKIT_NARROW_SPMM=0"):
            run(graph, values, x)
    finally:
        narrow()._dispatcher.cache_clear()  # the real kernels again for later tests


def test_narrow_kernels_can_be_switched_off(monkeypatch):
    assert backend.spmm_kernel(CPU, torch.float32, False, 16, 1, 1, biased=True) == "narrow"
    monkeypatch.setenv("GNNKIT_NARROW_SPMM", "0")
    assert backend.spmm_kernel(CPU, torch.float32, False, 16, 1, 1, biased=True) == "csr"
    graph, values, x = differentiable_case(1, 16)
    out = ops.spmm(graph, values, x)  # MKL's kernel, the same bits
    monkeypatch.delenv("GNNKIT_NARROW_SPMM")
    assert torch.equal(out, ops.spmm(graph, values, x))


@pytest.mark.parametrize("heads", [1, 2])
def test_spmm_output_can_be_modified_in_place_under_autograd(heads):
    # one head returns its own memory (not a view made inside the autograd Function, which
    # autograd would refuse to modify in place)
    graph, values, x = differentiable_case(heads, 9)
    out = ops.spmm(graph, values.detach(), x)
    assert not out._is_view()
    out.mul_(2.0)
    (grad_x,) = torch.autograd.grad(out.sum(), x)
    (expected,) = torch.autograd.grad(ops.spmm(graph, values.detach(), x).sum() * 2.0, x)
    torch.testing.assert_close(grad_x, expected, rtol=0, atol=1e-12)


def test_narrow_spmm_refuses_what_its_raw_reads_cannot_take():
    # the kernel reads addresses: a strided input, a mixed dtype or mixed index dtypes would
    # be read as the wrong memory, so they are refused before the call
    _, graph, values, x = random_case(10, 40, 1, 8, torch.float32, 9)
    out = torch.empty(1, 10, 8)
    ptr, col = graph.rowptr, graph.col
    strided = torch.randn(1, 8, 9)[..., :8]
    for args, match in (
        ((ptr, col, values, strided, out), "contiguous"),
        ((ptr, col, values.double(), x, out), "dtype"),
        ((ptr, col, values, x, out, torch.zeros(16)[::2]), "contiguous"),
        ((ptr, col.int(), values, x, out), "one dtype"),
    ):
        with pytest.raises(ValueError, match=match):
            narrow().spmm(*args)
    with pytest.raises(ValueError, match="contiguous"):
        narrow().spmm_transposed(ptr, col, values, x, torch.empty(1, 8, 10).transpose(1, 2))


@pytest.mark.parametrize("heads", [1, 2])
def test_spmm_without_gradients_skips_the_autograd_function(heads, monkeypatch):
    graph, values, x = differentiable_case(heads, 9)
    bias = torch.randn(9, dtype=torch.float64, requires_grad=True)
    expected = ops.spmm(graph, values, x, bias=bias).detach()

    def refused(*args):
        raise AssertionError("an autograd Function ran for a product without gradients")

    monkeypatch.setattr(matmul_module._SpMM, "apply", refused)
    with torch.no_grad():
        out = ops.spmm(graph, values, x, bias=bias)
    assert out.grad_fn is None and torch.equal(out, expected)
    out = ops.spmm(graph, values.detach(), x.detach(), bias=bias[::1].detach())
    assert torch.equal(out, expected) and not out._is_view()
    with torch.inference_mode():
        assert torch.equal(ops.spmm(graph, values, x, bias=bias), expected)
    with pytest.raises(AssertionError, match="autograd Function"):  # gradients: the Function
        ops.spmm(graph, values, x, bias=bias)
