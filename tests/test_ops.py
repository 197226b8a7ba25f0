"""gnnkit.ops: CSR structure, SpMM/SDDMM, reductions, edge softmax, backends, determinism.

Every kernel is checked against a dense reference written here (a dense adjacency built with
``index_put_``, Python loops over segments), in float64 where gradients are checked.
"""

from __future__ import annotations

import pytest
import torch

from gnnkit import ops
from gnnkit.errors import InputError
from gnnkit.ops import _sddmm as sddmm_module
from gnnkit.ops import backend
from gnnkit.ops import matmul as matmul_module

needs_torch_scatter = pytest.mark.skipif(
    not ops.torch_scatter_available(), reason="torch_scatter is not installed"
)


def random_graph(num_nodes=12, num_edges=50, seed=0, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, num_nodes, (2, num_edges), generator=gen).to(device)


def dense_adjacency(edge_index, values, num_nodes):
    """A[target, source] summed over duplicate edges; values (|E|,) in edge_index order."""
    dense = torch.zeros(num_nodes, num_nodes, dtype=values.dtype)
    return dense.index_put_((edge_index[1], edge_index[0]), values, accumulate=True)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _restore_backend():
    yield
    ops.set_backend("auto")
    ops.set_deterministic(False)


# --- CSRGraph ----------------------------------------------------------------------------------


def test_csr_graph_sorts_by_receiver_and_keeps_input_order_within_rows():
    edge_index = torch.tensor([[0, 3, 1, 2, 0, 1], [2, 0, 2, 0, 1, 2]])
    graph = ops.CSRGraph.from_edge_index(edge_index, 4)
    assert graph.rowptr.tolist() == [0, 2, 3, 6, 6]
    # Row 2 holds edges 0, 2, 5 in input order (stable sort): senders 0, 1, 1.
    assert graph.perm.tolist() == [1, 3, 4, 0, 2, 5]
    assert graph.col.tolist() == [3, 2, 0, 0, 1, 1]
    assert graph.row.tolist() == [0, 0, 1, 2, 2, 2]
    assert torch.equal(edge_index[:, graph.perm], torch.stack([graph.col, graph.row]))
    assert graph.num_edges == 6 and "num_edges=6" in repr(graph)


def test_csr_graph_transpose_lists_entries_by_sender():
    edge_index = random_graph(9, 40, seed=1)
    graph = ops.CSRGraph.from_edge_index(edge_index, 9)
    colptr, row_t, col_t, perm_t = graph.transpose()
    assert torch.equal(col_t, graph.col[perm_t])
    assert torch.equal(row_t, graph.row[perm_t])
    assert torch.equal(
        colptr, torch.cat([torch.zeros(1), torch.bincount(col_t, minlength=9).cumsum(0)]).long()
    )
    assert graph.transpose()[0] is colptr  # built once


def test_csr_graph_kernel_indices_are_int32_and_moves_keep_contents():
    graph = ops.CSRGraph.from_edge_index(random_graph(), 12)
    ptr, idx = graph.kernel_indices()
    assert ptr.dtype == idx.dtype == torch.int32
    assert torch.equal(ptr.long(), graph.rowptr) and torch.equal(idx.long(), graph.col)
    graph.transpose()
    moved = graph.to("cpu")
    assert torch.equal(moved.perm, graph.perm) and torch.equal(
        moved.transpose()[3], graph.transpose()[3]
    )


@pytest.mark.parametrize("heads", [1, 3])
def test_interleaved_heads_graph_is_one_copy_per_head(heads):
    edge_index = random_graph(7, 30, seed=9)  # duplicates and self-loops included
    graph = ops.CSRGraph.from_edge_index(edge_index, 7)
    multi = graph.interleave_heads(heads)
    assert (multi.num_rows, multi.num_cols, multi.num_edges) == (7 * heads, 7 * heads, 30 * heads)
    if heads == 1:
        assert multi is graph
    # Entry k is edge perm[k] // H of the input, head perm[k] % H: j H + h -> i H + h.
    edge, head = multi.perm // heads, multi.perm % heads
    assert torch.equal(multi.col, edge_index[0, edge] * heads + head)
    assert torch.equal(multi.row, edge_index[1, edge] * heads + head)
    assert torch.equal(multi.rowptr, torch.searchsorted(multi.row, torch.arange(7 * heads + 1)))
    assert torch.equal(multi.perm.sort().values, torch.arange(30 * heads))
    # The same SpMM as head-by-head products, on the (N, H, C) layout without a transpose.
    values = torch.rand(30, heads, dtype=torch.float64)  # (E, H) in input order
    x = torch.randn(7, heads, 4, dtype=torch.float64)
    out = ops.spmm(multi, values.view(-1)[multi.perm], x.view(7 * heads, 4)).view(7, heads, 4)
    for h in range(heads):
        torch.testing.assert_close(
            out[:, h], dense_adjacency(edge_index, values[:, h], 7) @ x[:, h]
        )


@pytest.mark.parametrize("num_nodes, num_edges", [(7, 30), (5, 0)])
def test_interleaved_heads_transpose_equals_a_sorted_transpose(num_nodes, num_edges):
    heads = 3
    edge_index = random_graph(num_nodes, num_edges, seed=10)
    multi = ops.CSRGraph.from_edge_index(edge_index, num_nodes).interleave_heads(heads)
    assert multi.col.dtype == multi.row.dtype == torch.int32  # small graph: 32-bit indices
    # Reference: the same entries as a plain graph, whose transpose is a stable sort.
    plain = ops.CSRGraph(
        multi.rowptr, multi.col.long(), multi.row.long(), multi.perm, *(num_nodes * heads,) * 2
    )
    for got, expected in zip(multi.transpose(), plain.transpose(), strict=True):
        assert torch.equal(got.long(), expected)


def test_interleaved_heads_gradients_match_per_head_dense_products():
    heads, n = 2, 6
    edge_index = random_graph(n, 20, seed=11)
    multi = ops.CSRGraph.from_edge_index(edge_index, n).interleave_heads(heads)
    values = torch.rand(20, heads, dtype=torch.float64, requires_grad=True)  # input order
    x = torch.randn(n, heads, 3, dtype=torch.float64, requires_grad=True)
    a = torch.randn(n, heads, dtype=torch.float64, requires_grad=True)
    edge = values.reshape(-1)[multi.perm] * ops.gather_src(multi, a.reshape(-1))
    out = ops.spmm(multi, edge, x.reshape(n * heads, 3)).view(n, heads, 3)
    weight = torch.randn(n, heads, 3, dtype=torch.float64)
    grads = torch.autograd.grad((out * weight).sum(), (values, x, a))
    # Reference: head by head, dense, with the sender's value a_j on edge j -> i.
    src = edge_index[0]
    ref = torch.stack(
        [dense_adjacency(edge_index, values[:, h] * a[src, h], n) @ x[:, h] for h in range(heads)],
        dim=1,
    )
    expected = torch.autograd.grad((ref * weight).sum(), (values, x, a))
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want)


def test_interleaved_heads_graph_survives_moves_and_pickling():
    import pickle

    graph = ops.CSRGraph.from_edge_index(random_graph(6, 15, seed=12), 6)
    multi = graph.interleave_heads(2)
    copies = (multi.to("cpu"), pickle.loads(pickle.dumps(multi)))  # perm, transpose not built
    reference = graph.interleave_heads(2)
    perm, transpose = reference.perm, reference.transpose()
    for copy in copies:
        assert copy._perm is None
        assert torch.equal(copy.perm, perm)
        for got, expected in zip(copy.transpose(), transpose, strict=True):
            assert torch.equal(got, expected)


def test_interleaved_heads_rejects_bad_counts():
    graph = ops.CSRGraph.from_edge_index(random_graph(), 12)
    for heads in (0, -1, 2.0, True):
        with pytest.raises(InputError, match="heads must be a positive int"):
            graph.interleave_heads(heads)


def test_csr_graph_of_empty_graph():
    graph = ops.CSRGraph.from_edge_index(torch.zeros(2, 0, dtype=torch.long), 3)
    assert graph.rowptr.tolist() == [0, 0, 0, 0]
    out = ops.spmm(graph, torch.zeros(0), torch.randn(3, 4))
    assert torch.equal(out, torch.zeros(3, 4))


# --- SpMM / SDDMM --------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", ["csr", "segment"])
def test_spmm_equals_dense_matmul_with_duplicate_edges(kernel, monkeypatch):
    monkeypatch.setattr(backend, "spmm_kernel", lambda *a: kernel)
    edge_index = random_graph(10, 60, seed=2)  # duplicates and self-loops included
    values = torch.rand(60, dtype=torch.float64)
    x = torch.randn(10, 5, dtype=torch.float64)
    graph = ops.CSRGraph.from_edge_index(edge_index, 10)
    out = ops.spmm(graph, values[graph.perm], x)
    torch.testing.assert_close(out, dense_adjacency(edge_index, values, 10) @ x)


@pytest.mark.parametrize("kernel", ["csr", "segment"])
def test_spmm_multi_head_equals_per_head_dense(kernel, monkeypatch):
    monkeypatch.setattr(backend, "spmm_kernel", lambda *a: kernel)
    edge_index = random_graph(8, 30, seed=3)
    graph = ops.CSRGraph.from_edge_index(edge_index, 8)
    values = torch.rand(3, 30, dtype=torch.float64)  # (H, E) in input order
    x = torch.randn(3, 8, 4, dtype=torch.float64)
    out = ops.spmm(graph, values[:, graph.perm], x)
    for h in range(3):
        torch.testing.assert_close(out[h], dense_adjacency(edge_index, values[h], 8) @ x[h])


@pytest.mark.parametrize(("spmm_kernel", "sddmm_kernel"), [("csr", "csr"), ("segment", "gather")])
@pytest.mark.parametrize("heads", [None, 2])
def test_spmm_gradcheck(spmm_kernel, sddmm_kernel, heads, monkeypatch):
    monkeypatch.setattr(backend, "spmm_kernel", lambda *a: spmm_kernel)
    monkeypatch.setattr(backend, "sddmm_kernel", lambda *a: sddmm_kernel)
    graph = ops.CSRGraph.from_edge_index(random_graph(7, 25, seed=4), 7)
    shape_v = (25,) if heads is None else (heads, 25)
    shape_x = (7, 3) if heads is None else (heads, 7, 3)
    values = torch.rand(shape_v, dtype=torch.float64, requires_grad=True)
    x = torch.randn(shape_x, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v, f: ops.spmm(graph, v, f), (values, x))


@pytest.mark.parametrize("heads", [None, 2])
def test_spmm_is_differentiable_twice(heads):
    # With create_graph the gradients are formed in torch's operators (the kernels record no
    # graph): gradgradcheck in the values, the features and the bias, against finite
    # differences; the first-order gradients are the kernels' to float rounding.
    graph = ops.CSRGraph.from_edge_index(random_graph(7, 25, seed=6), 7)
    shape_v = (25,) if heads is None else (heads, 25)
    shape_x = (7, 3) if heads is None else (heads, 7, 3)
    values = torch.rand(shape_v, dtype=torch.float64, requires_grad=True)
    x = torch.randn(shape_x, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(3, dtype=torch.float64, requires_grad=True)
    if heads is None:
        assert torch.autograd.gradgradcheck(lambda v, f, b: ops.spmm(graph, v, f, bias=b),
                                            (values, x, bias))  # fmt: skip
    else:
        assert torch.autograd.gradgradcheck(lambda v, f: ops.spmm(graph, v, f), (values, x))
    out = ops.spmm(graph, values, x)
    weights = torch.randn_like(out)
    plain = torch.autograd.grad(out, (values, x), weights, retain_graph=True)
    built = torch.autograd.grad(out, (values, x), weights, create_graph=True)
    for got, want in zip(built, plain, strict=True):
        torch.testing.assert_close(got, want)


def test_spmm_chunked_fallback_matches_csr(monkeypatch):
    monkeypatch.setattr(matmul_module, "_CHUNK_ELEMENTS", 16)  # force many row blocks / chunks
    monkeypatch.setattr(sddmm_module, "_CHUNK_ELEMENTS", 16)  # (the SDDMM of the backward)
    graph = ops.CSRGraph.from_edge_index(random_graph(20, 120, seed=5), 20)
    values = torch.rand(2, 120, dtype=torch.float64, requires_grad=True)
    x = torch.randn(2, 20, 6, dtype=torch.float64, requires_grad=True)
    expected = ops.spmm(graph, values, x)
    grads = torch.autograd.grad(expected.square().sum(), (values, x))
    monkeypatch.setattr(backend, "spmm_kernel", lambda *a: "segment")
    monkeypatch.setattr(backend, "sddmm_kernel", lambda *a: "gather")
    out = ops.spmm(graph, values, x)
    torch.testing.assert_close(out, expected)
    for got, want in zip(torch.autograd.grad(out.square().sum(), (values, x)), grads, strict=True):
        torch.testing.assert_close(got, want)


def test_spmm_rows_without_edges_are_zero_and_any_strides_work():
    edge_index = torch.tensor([[0, 1, 2], [1, 1, 3]])  # nodes 0, 2, 4 receive nothing
    graph = ops.CSRGraph.from_edge_index(edge_index, 5)
    x = torch.randn(3, 5).t()  # (5, 3), not contiguous
    for _ in range(3):
        out = ops.spmm(graph, torch.ones(3), x)
        assert torch.equal(out[[0, 2, 4]], torch.zeros(3, 3))
        torch.testing.assert_close(out[1], x[0] + x[1])


def test_spmm_half_precision_falls_back_on_cpu():
    edge_index = random_graph(10, 40, seed=6)
    graph = ops.CSRGraph.from_edge_index(edge_index, 10)
    values, x = torch.rand(40), torch.randn(10, 4)
    assert backend.spmm_kernel(torch.device("cpu"), torch.float16, False) == "segment"
    out = ops.spmm(graph, values.half(), x.half())
    assert out.dtype == torch.float16
    torch.testing.assert_close(out.float(), ops.spmm(graph, values, x), atol=2e-2, rtol=2e-2)


def test_sddmm_equals_per_edge_dot_products():
    edge_index = random_graph(9, 35, seed=7)
    graph = ops.CSRGraph.from_edge_index(edge_index, 9)
    a, b = torch.randn(9, 4, dtype=torch.float64), torch.randn(9, 4, dtype=torch.float64)
    expected = torch.stack([a[i] @ b[j] for j, i in edge_index[:, graph.perm].t().tolist()])
    torch.testing.assert_close(ops.sddmm(graph, a, b), expected)
    a3, b3 = torch.stack([a, 2 * a]), torch.stack([b, b])
    torch.testing.assert_close(ops.sddmm(graph, a3, b3), torch.stack([expected, 2 * expected]))


@pytest.mark.parametrize("channels", [5, 8])
def test_sddmm_gather_kernel_matches_csr_kernel(channels, monkeypatch):
    graph = ops.CSRGraph.from_edge_index(random_graph(9, 35, seed=8), 9)
    a, b = torch.randn(2, 9, channels), torch.randn(2, 9, channels)
    monkeypatch.setattr(backend, "sddmm_kernel", lambda *a: "csr")
    expected = ops.sddmm(graph, a, b)
    monkeypatch.setattr(backend, "sddmm_kernel", lambda *a: "gather")
    torch.testing.assert_close(ops.sddmm(graph, a, b), expected)


def test_sddmm_kernel_avoids_sampled_addmm_for_short_rows_on_cpu():
    cpu = torch.device("cpu")
    assert backend.sddmm_kernel(cpu, torch.float32, 7) == "gather"
    assert backend.sddmm_kernel(cpu, torch.float32, 8) == "csr"
    assert backend.sddmm_kernel(cpu, torch.float64) == "csr"  # length unknown
    assert backend.sddmm_kernel(cpu, torch.float16, 64) == "gather"
    assert backend.sddmm_kernel(torch.device("cuda"), torch.float32, 7) == "csr"


# --- reductions ----------------------------------------------------------------------------------


def test_segment_reductions_against_loops():
    ptr = torch.tensor([0, 2, 2, 5, 6])
    src = torch.randn(6, 3, dtype=torch.float64)
    sums = torch.stack([src[ptr[i] : ptr[i + 1]].sum(0) for i in range(4)])
    torch.testing.assert_close(ops.segment_sum(src, ptr), sums)
    maxes = ops.segment_max(src, ptr)
    torch.testing.assert_close(
        maxes[[0, 2, 3]], torch.stack([src[0:2].amax(0), src[2:5].amax(0), src[5]])
    )
    assert torch.isneginf(maxes[1]).all()  # empty segment


def test_scatter_reductions_against_dense_reference():
    index = torch.tensor([3, 0, 3, 1, 3, 0])
    src = torch.randn(6, 2, dtype=torch.float64)
    onehot = torch.nn.functional.one_hot(index, 5).to(src.dtype)  # (6, 5)
    torch.testing.assert_close(ops.scatter_sum(src, index, 5), onehot.t() @ src)
    maxes = ops.scatter_max(src, index, 5)
    for node in range(5):
        rows = src[index == node]
        if rows.numel():
            torch.testing.assert_close(maxes[node], rows.amax(0))
        else:
            assert torch.isneginf(maxes[node]).all()


def test_deterministic_scatter_equals_atomic_scatter_and_is_differentiable():
    index = torch.randint(0, 7, (50,), generator=torch.Generator().manual_seed(9))
    src = torch.randn(50, 3, dtype=torch.float64, requires_grad=True)
    plain = ops.scatter_sum(src, index, 7, deterministic=False)
    det = ops.scatter_sum(src, index, 7, deterministic=True)
    torch.testing.assert_close(det, plain)
    torch.testing.assert_close(
        ops.scatter_max(src, index, 7, deterministic=True), ops.scatter_max(src, index, 7)
    )
    assert torch.autograd.gradcheck(
        lambda s: ops.scatter_sum(s, index, 7, deterministic=True), (src,)
    )


@needs_torch_scatter
def test_torch_scatter_backend_agrees_with_torch_native():
    gen = torch.Generator().manual_seed(10)
    index = torch.randint(0, 9, (80,), generator=gen)
    src = torch.randn(80, 4, generator=gen)
    graph = ops.CSRGraph.from_edge_index(random_graph(9, 80, seed=10), 9)
    scores = torch.randn(2, 80, generator=gen)
    results = {}
    for name in ("torch", "torch_scatter"):
        ops.set_backend(name)
        results[name] = (
            ops.scatter_sum(src, index, 9),
            ops.scatter_max(src, index, 9),
            ops.segment_sum(src, graph.rowptr),
            ops.segment_max(src, graph.rowptr),
            ops.edge_softmax(graph, scores),
            ops.scatter_sum(src, index, 9, deterministic=True),
        )
    for native, scatter in zip(results["torch"], results["torch_scatter"], strict=True):
        torch.testing.assert_close(scatter, native)
    assert ops.backend_info()["kernels"]["segment_sum"] == "torch_scatter.segment_csr"


# --- gathers and edge softmax --------------------------------------------------------------------


def test_gathers_equal_indexing_and_have_segment_gradients():
    graph = ops.CSRGraph.from_edge_index(random_graph(8, 30, seed=11), 8)
    x = torch.randn(2, 8, dtype=torch.float64, requires_grad=True)
    assert torch.equal(ops.gather_src(graph, x), x[:, graph.col])
    assert torch.equal(ops.gather_dst(graph, x), x[:, graph.row])
    assert torch.autograd.gradcheck(lambda t: ops.gather_src(graph, t), (x,))
    assert torch.autograd.gradcheck(lambda t: ops.gather_dst(graph, t), (x,))


def dense_masked_softmax(edge_index, scores, num_nodes):
    """Softmax over each row of a dense score matrix masked to the edges (no duplicates)."""
    dense = torch.full((num_nodes, num_nodes), float("-inf"), dtype=scores.dtype)
    dense[edge_index[1], edge_index[0]] = scores
    probs = torch.softmax(dense, dim=1).nan_to_num(0.0)  # rows without edges -> 0
    return probs[edge_index[1], edge_index[0]]


def test_edge_softmax_equals_dense_masked_softmax_and_gradchecks():
    edge_index = torch.unique(random_graph(10, 45, seed=12), dim=1)  # no duplicate edges
    graph = ops.CSRGraph.from_edge_index(edge_index, 10)
    scores = torch.randn(2, edge_index.size(1), dtype=torch.float64, requires_grad=True)
    out = ops.edge_softmax(graph, scores[:, graph.perm])
    for h in range(2):
        expected = dense_masked_softmax(edge_index, scores[h].detach(), 10)
        torch.testing.assert_close(out[h].detach(), expected[graph.perm])
    sums = ops.segment_sum(out.detach().t(), graph.rowptr)
    has_edges = graph.rowptr[1:] > graph.rowptr[:-1]
    torch.testing.assert_close(sums[has_edges], torch.ones_like(sums[has_edges]))
    assert torch.autograd.gradcheck(
        lambda s: ops.edge_softmax(graph, s), (scores.detach().requires_grad_(),)
    )
    one_head = scores[0].detach().requires_grad_()
    assert torch.autograd.gradcheck(lambda s: ops.edge_softmax(graph, s), (one_head,))


def test_edge_softmax_and_gathers_are_differentiable_twice():
    # Under create_graph their backward passes sum with index_add (torch's segment reduction
    # has no second derivative): gradgradcheck against finite differences, one head and two,
    # and the first-order gradient is the segment-sum one.
    edge_index = random_graph(10, 45, seed=13)
    graph = ops.CSRGraph.from_edge_index(edge_index, 10)
    torch.manual_seed(0)
    for shape in ((graph.num_edges,), (2, graph.num_edges)):
        scores = torch.randn(shape, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradgradcheck(lambda s: ops.edge_softmax(graph, s), (scores,))
    for gather in (ops.gather_src, ops.gather_dst):
        x = torch.randn(2, 10, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradgradcheck(lambda t, g=gather: g(graph, t).square(), (x,))
        out = gather(graph, x).square()
        weights = torch.randn(out.shape, dtype=torch.float64)
        plain = torch.autograd.grad(out, x, weights, retain_graph=True)[0]
        with_graph = torch.autograd.grad(out, x, weights, create_graph=True)[0]
        torch.testing.assert_close(with_graph, plain)


def test_edge_softmax_is_finite_for_huge_scores_and_matches_scatter_softmax():
    edge_index = random_graph(6, 20, seed=13)
    graph = ops.CSRGraph.from_edge_index(edge_index, 6)
    scores = torch.randn(20) * 1e4
    lean = ops.edge_softmax(graph, scores[graph.perm])
    assert torch.isfinite(lean).all()
    plain = ops.scatter_softmax(scores, edge_index[1], 6)
    torch.testing.assert_close(lean, plain[graph.perm])


# --- switches, info, errors ----------------------------------------------------------------------


def test_deterministic_switches_nest_and_follow_torch():
    assert not ops.is_deterministic()
    ops.set_deterministic(True)
    assert ops.is_deterministic()
    with ops.deterministic(False):
        assert not ops.is_deterministic()
        assert ops.is_deterministic(True)
    assert ops.is_deterministic()
    ops.set_deterministic(False)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        assert ops.is_deterministic()
    finally:
        torch.use_deterministic_algorithms(False)
    with ops.deterministic():
        info = ops.backend_info("cuda")
        assert info["deterministic"] and info["kernels"]["spmm"].startswith("gather")
        assert info["kernels"]["scatter_sum"].startswith("stable sort")


def test_backend_info_reports_the_measured_defaults():
    info = ops.backend_info()
    assert info["backend"] == "auto" and info["device"] == "cpu"
    assert info["kernels"]["spmm"].startswith("torch.sparse CSR addmm")
    # the size rule that sends wide, large products to the numba kernel is spelled out
    from gnnkit.ops._jit import jit_available

    numba_rule = "numba row kernel (gnnkit.ops._spmm_cpu) for other rows of >= 32 channels"
    assert (numba_rule in info["kernels"]["spmm"]) == jit_available()
    narrow_rule = "(gnnkit.ops._spmm_narrow) for rows of 8 to 64 channels, and of up to 128"
    assert (narrow_rule in info["kernels"]["spmm"]) == jit_available()
    assert "2**20 multiply-adds" in info["kernels"]["spmm"] or not jit_available()
    assert info["kernels"]["scatter_max"] == "Tensor.scatter_reduce_"
    assert ops.backend_info(dtype=torch.float16)["kernels"]["spmm"].startswith("gather")
    with ops.use_backend("torch"):
        assert ops.get_backend() == "torch"
    assert ops.get_backend() == "auto"


def test_ops_errors():
    graph = ops.CSRGraph.from_edge_index(random_graph(5, 10), 5)
    with pytest.raises(InputError, match="backend must be one of"):
        ops.set_backend("cusparse")
    with pytest.raises(InputError, match="True or False"):
        ops.set_deterministic(1)
    with pytest.raises(InputError, match="True or False"), ops.deterministic("yes"):
        pass
    with pytest.raises(InputError, match="values \\(\\|E\\|,\\) with x"):
        ops.spmm(graph, torch.rand(10), torch.randn(2, 5, 3))
    with pytest.raises(InputError, match="10 edges and 5 senders"):
        ops.spmm(graph, torch.rand(9), torch.randn(5, 3))
    with pytest.raises(InputError, match=r"values are torch\.float64 and x is torch\.float32"):
        ops.spmm(graph, torch.rand(10, dtype=torch.float64), torch.randn(5, 3))
    with pytest.raises(InputError, match=r"index must be an integer tensor of shape \(4,\)"):
        ops.scatter_sum(torch.randn(4), torch.zeros(3, dtype=torch.long), 2)
    with pytest.raises(InputError, match="edge_softmax expects scores"):
        ops.edge_softmax(graph, torch.randn(7))
    with pytest.raises(InputError, match="sddmm expects a and b"):
        ops.sddmm(graph, torch.randn(5, 2), torch.randn(1, 5, 2))


def test_torch_scatter_backend_requires_the_package(monkeypatch):
    monkeypatch.setattr(backend, "_torch_scatter", None)
    with pytest.raises(InputError, match="needs the torch-scatter package"):
        ops.set_backend("torch_scatter")


# --- CUDA ------------------------------------------------------------------------------------


@pytest.mark.cuda
def test_cuda_kernels_match_cpu_and_deterministic_mode_is_bit_identical():
    edge_index = random_graph(200, 3000, seed=14)
    graph = ops.CSRGraph.from_edge_index(edge_index, 200)
    values = torch.rand(4, 3000, requires_grad=True)
    x = torch.randn(4, 200, 16, requires_grad=True)
    out = ops.spmm(graph, values, x)
    grads = torch.autograd.grad(out.square().sum(), (values, x))
    graph_c = graph.to("cuda")
    values_c = values.detach().cuda().requires_grad_()
    x_c = x.detach().cuda().requires_grad_()
    runs = []
    for _ in range(2):
        with ops.deterministic():
            out_c = ops.spmm(graph_c, values_c, x_c)
            runs.append((out_c, *torch.autograd.grad(out_c.square().sum(), (values_c, x_c))))
    for first, second in zip(runs[0], runs[1], strict=True):
        assert torch.equal(first, second)
    torch.testing.assert_close(runs[0][0].cpu(), out, rtol=1e-4, atol=1e-4)
    for got, want in zip(runs[0][1:], grads, strict=True):
        torch.testing.assert_close(got.cpu(), want, rtol=1e-4, atol=1e-4)
    out_fast = ops.spmm(graph_c, values_c, x_c)  # cuSPARSE path
    torch.testing.assert_close(out_fast.cpu(), out, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("ptr", [[0, 2, 2, 5, 6], [1, 3, 3, 4]])
def test_segment_sum_is_differentiable_twice(ptr):
    # Its backward gathers each segment's gradient (entries outside every segment take 0),
    # with operators that are differentiable again: gradcheck and gradgradcheck, through
    # values (E,) and (E, C), the second case leaving entries 0 and 4-5 out of every segment.
    ptr = torch.tensor(ptr)
    for shape in [(6,), (6, 3)]:
        src = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda s: ops.segment_sum(s, ptr), (src,))
        assert torch.autograd.gradgradcheck(lambda s: ops.segment_sum(s, ptr).square(), (src,))
    src = torch.randn(6, 2, requires_grad=True)
    ops.segment_sum(src, ptr).sum().backward()
    inside = torch.zeros(6, 1)
    inside[int(ptr[0]) : int(ptr[-1])] = 1
    assert torch.equal(src.grad, inside.expand(6, 2))
