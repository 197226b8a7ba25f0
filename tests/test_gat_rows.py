"""The fused GAT's passes written out per (heads, channels) (gnnkit.ops._gat_rows).

References: the general kernels of gnnkit.ops._gat_cpu (``GNNKIT_NARROW_SPMM=0``) and the
torch form of the layer (``reference_gat``, autograd); tests/test_fused_gat.py checks the
kernels against a dense softmax on small graphs, which take these passes too.
"""

from __future__ import annotations

import pytest
import torch

from gnnkit.ops import CSRGraph
from gnnkit.ops._jit import PREFETCH_MIN_BYTES, jit_available
from gnnkit.ops.attention import reference_gat

pytestmark = pytest.mark.skipif(not jit_available(), reason="numba is not available")
SLOPE, P = 0.2, 0.6


def modules():
    from gnnkit.ops import _gat_cpu, _gat_rows

    return _gat_cpu, _gat_rows


def case(heads, channels, dtype=torch.float32, nodes=300, edges=2400, seed=0):
    gen = torch.Generator().manual_seed(seed)
    edge_index = torch.randint(0, nodes, (2, edges), generator=gen)
    edge_index[:, :nodes] = torch.arange(nodes)  # self-loops: no empty rows but some
    edge_index[1, edge_index[1] == 7] = 8  # receiver 7 without edges
    graph = CSRGraph.from_edge_index(edge_index, nodes)
    inputs = [
        torch.randn(nodes, heads, generator=gen, dtype=dtype),  # a_src
        torch.randn(nodes, heads, generator=gen, dtype=dtype),  # a_dst
        None,  # edge scores
        torch.randn(nodes, heads, channels, generator=gen, dtype=dtype),  # xw
    ]
    keep = torch.rand(graph.num_edges, heads, generator=gen) >= P
    return graph, inputs, keep


def forward_only(graph, inputs, keep):
    cpu, _ = modules()
    scale = 1 / (1 - P) if keep is not None else 1.0
    return cpu.forward(graph.rowptr, graph.col, *inputs, SLOPE, keep, scale)


def forward_backward(graph, inputs, keep, grad_seed=1):
    cpu, _ = modules()
    scale = 1 / (1 - P) if keep is not None else 1.0
    out, alpha = forward_only(graph, inputs, keep)
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(grad_seed))
    colptr, row_t, _, perm_t = graph.transpose()
    grads = cpu.backward(
        graph.rowptr, graph.col, colptr, row_t, perm_t, *inputs, alpha, SLOPE, keep, scale,
        grad_out.to(out.dtype),
    )  # fmt: skip
    return [out, alpha, *(g for g in grads if g is not None)]


def with_and_without_written_out_passes(graph, inputs, keep, monkeypatch):
    """``forward_backward`` with the kernels as chosen, then with every written-out pass
    switched off (``GNNKIT_NARROW_SPMM=0``, left set for the rest of the test)."""
    chosen = forward_backward(graph, inputs, keep)
    monkeypatch.setenv("GNNKIT_NARROW_SPMM", "0")
    return chosen, forward_backward(graph, inputs, keep)


@pytest.mark.parametrize("dropout", [False, True])
@pytest.mark.parametrize(("heads", "channels"), [(8, 8), (1, 7), (2, 3), (1, 64)])
def test_written_out_passes_equal_the_general_kernels(heads, channels, dropout, monkeypatch):
    graph, inputs, keep = case(heads, channels)
    keep = keep if dropout else None
    _, rows = modules()
    assert rows.whole_row_passes(inputs[3], graph.rowptr)
    ours, general = with_and_without_written_out_passes(graph, inputs, keep, monkeypatch)
    assert not rows.whole_row_passes(inputs[3], graph.rowptr)
    for a, b in zip(ours, general, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert ours[0][7].abs().sum() == 0  # the receiver without edges


@pytest.mark.parametrize(("heads", "channels"), [(8, 8), (1, 7)])
def test_written_out_passes_match_the_torch_form_in_float64(heads, channels):
    graph, inputs, keep = case(heads, channels, torch.float64, nodes=60, edges=300, seed=3)
    leaves = [t.requires_grad_() if t is not None else None for t in inputs]
    ref_out, ref_alpha = reference_gat(graph, *leaves, SLOPE, keep, 1 / (1 - P))
    grad_out = torch.randn(ref_out.shape, generator=torch.Generator().manual_seed(1)).double()
    want = torch.autograd.grad(ref_out, [leaves[3], leaves[0], leaves[1]], grad_out)
    got = forward_backward(graph, [t.detach() if t is not None else None for t in leaves], keep)
    for a, b in zip(got, [ref_out, ref_alpha, *want], strict=True):
        torch.testing.assert_close(a, b.detach(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("large", [False, True])  # large: the passes by head
@pytest.mark.parametrize(("heads", "channels"), [(1, 7), (8, 8)])
def test_same_bits_for_every_thread_count(heads, channels, large, monkeypatch, per_thread_count):
    graph, inputs, keep = case(heads, channels, nodes=2000, edges=16000, seed=4)
    if large:
        monkeypatch.setattr(modules()[1], "PREFETCH_MIN_BYTES", 0)
    one, two = per_thread_count(lambda: forward_backward(graph, inputs, keep))
    for a, b in zip(one, two, strict=True):
        assert torch.equal(a, b)


def test_which_shapes_take_the_written_out_passes():
    _, rows = modules()
    rowptr = torch.zeros(3, dtype=torch.int64)
    assert rows.whole_row_passes(torch.empty(10, 8, 8), rowptr)
    assert not rows.whole_row_passes(torch.empty(10, 8, 9), rowptr)  # 72 entries per node
    assert not rows.whole_row_passes(torch.empty(10, 8, 8), rowptr.int())  # int32 indices
    assert not rows.whole_row_passes(torch.empty(10, 8, 8, dtype=torch.float16), rowptr)
    big = PREFETCH_MIN_BYTES // (4 * 64) + 1  # features past the cache: the prefetching kernel
    assert not rows.whole_row_passes(torch.empty(big, 8, 8), rowptr)
    assert rows.whole_row_passes(torch.empty(10, 1, 7), rowptr)
    assert rows.written_feature_passes(torch.empty(big, 8, 8), rowptr)  # by head, prefetching
    wide = PREFETCH_MIN_BYTES // (4 * 256) + 1
    assert rows.written_feature_passes(torch.empty(wide, 8, 32), rowptr)  # ogbn-arxiv's layer
    assert not rows.written_feature_passes(torch.empty(10, 8, 32), rowptr)  # cached: general
    large = PREFETCH_MIN_BYTES // 4 + 1  # rows: each row has at least one float32 entry
    assert rows.written_feature_passes(torch.empty(large // 64 + 1, 1, 64), rowptr)
    assert not rows.written_feature_passes(torch.empty(large // 65 + 1, 1, 65), rowptr)  # 65 sums
    assert rows.written_feature_passes(torch.empty(large // 16 + 1, 16, 1), rowptr)
    assert not rows.written_feature_passes(torch.empty(large // 17 + 1, 17, 1), rowptr)  # heads
    assert rows.written_feature_passes(torch.empty(wide // 2 + 1, 16, 32), rowptr)  # 512 entries
    assert not rows.written_feature_passes(torch.empty(wide, 16, 64), rowptr)  # 1024 entries
    assert not rows.written_feature_passes(torch.empty(wide, 8, 32), rowptr.int())
    assert rows.scalar_passes(torch.empty(big, 64), rowptr)  # any size: no feature rows
    assert not rows.scalar_passes(torch.empty(10, 65), rowptr)
    assert not rows.scalar_passes(torch.empty(10, 8), rowptr.int())
    assert not rows.scalar_passes(torch.empty(10, 8, dtype=torch.float16), rowptr)


def test_raw_reads_are_refused_what_they_cannot_take():
    _, rows = modules()
    graph, inputs, keep = case(2, 3, nodes=20, edges=60)
    alpha = torch.rand(graph.num_edges, 2)
    with pytest.raises(ValueError, match="int64 indices"):
        rows.aggregation(graph.rowptr.int(), graph.col.int(), inputs[3], alpha, keep, 2.5)
    with pytest.raises(ValueError, match="contiguous"):
        rows.aggregation(graph.rowptr, graph.col, inputs[3].transpose(1, 2), alpha, keep, 2.5)


@pytest.mark.parametrize(
    ("kind", "heads", "channels", "old", "new"),
    [
        ("aggregate", 1, 5, "sum_0 += ", "sum_0 = 0 * "),  # the first channel's sum never grows
        ("aggregate by head", 2, 5, "sum_0 += ", "sum_0 = 0 * "),
        ("sender grad", 1, 5, "sum_0 += ", "sum_0 = 0 * "),
        ("sender grad", 2, 5, "sum_0 += ", "sum_0 = 0 * "),
        ("heads last", 2, 5, "dst[row + E1] = ", "dst[row + E1] = 0 * "),  # one entry lost
        ("heads last", 8, 8, "transpose8(", "pass  # "),  # the 8 x 8 block not copied
    ],
)
def test_a_miscompiled_kernel_fails_its_self_check(kind, heads, channels, old, new, monkeypatch):
    _, rows = modules()
    real = rows._SOURCES[kind]

    def broken(heads, channels, dropout):
        source = real(heads, channels, dropout)
        assert old in source
        return source.replace(old, new)

    monkeypatch.setitem(rows._SOURCES, kind, broken)
    monkeypatch.setattr(rows, "_COMPILED", {})
    if kind == "aggregate by head":
        monkeypatch.setattr(rows, "PREFETCH_MIN_BYTES", 0)  # every graph counts as large
    rows._dispatcher.cache_clear()
    try:
        graph, inputs, keep = case(heads, channels, nodes=20, edges=60)
        with pytest.raises(RuntimeError, match=r"self-check.*GNNKIT_NARROW_SPMM=0"):
            forward_backward(graph, inputs, keep)
    finally:
        rows._dispatcher.cache_clear()  # the real kernels again for later tests


def test_without_gradients_the_kernels_run_without_autograd_functions(monkeypatch):
    from gnnkit.ops import attention, fused_gat

    graph, inputs, _ = case(8, 8, nodes=50, edges=300)
    att = [torch.randn(1, 8, 8, requires_grad=True) for _ in "sd"]
    xw = inputs[3].requires_grad_()
    expected_scores = [s.detach() for s in attention.node_scores(xw, *att)]
    expected_out = fused_gat(graph, inputs[0], inputs[1], None, xw, SLOPE, P, False)[0].detach()

    def refused(*args):
        raise AssertionError("an autograd Function ran without gradients")

    monkeypatch.setattr(attention._NodeScores, "apply", refused)
    monkeypatch.setattr(attention._FusedGAT, "apply", refused)
    with torch.no_grad():
        scores = attention.node_scores(xw, *att)
        out = fused_gat(graph, inputs[0], inputs[1], None, xw, SLOPE, P, False)[0]
    assert all(torch.equal(a, b) for a, b in zip(scores, expected_scores, strict=True))
    assert out.grad_fn is None and torch.equal(out, expected_out)
    with pytest.raises(AssertionError, match="autograd Function"):
        attention.node_scores(xw, *att)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("heads", "has_dst", "has_score"), [(8, True, False), (1, True, True),
                                                           (3, False, True), (16, False, False)])  # fmt: skip
def test_scalar_passes_give_the_general_kernels_bits(heads, has_dst, has_score, dtype):
    import numpy as np

    cpu, rows = modules()
    from gnnkit.ops import _gat_cpu_one_head as one_head
    from gnnkit.ops._jit import as_numpy

    graph, inputs, _ = case(heads, 2, dtype, nodes=400, edges=3000, seed=5)
    a_src, a_dst, _, _ = inputs
    gen = torch.Generator().manual_seed(6)
    a_dst = a_dst if has_dst else None
    score = torch.randn(graph.num_edges, heads, generator=gen, dtype=dtype) if has_score else None
    assert rows.scalar_passes(a_src, graph.rowptr)
    params = cpu._params(dtype, SLOPE, 1.0)
    empty = np.empty((0, 0), dtype=np.dtype(str(dtype).split(".")[1]))
    optional = (
        *((as_numpy(a_dst), True) if has_dst else (empty, False)),
        *((as_numpy(score), True) if has_score else (empty, False)),
    )
    rowptr, col = as_numpy(graph.rowptr), as_numpy(graph.col)
    general = (rowptr, col, as_numpy(a_src), *optional)
    score_rows = one_head.score_rows if heads == 1 else cpu._score_rows
    score_grad_rows = one_head.score_grad_rows if heads == 1 else cpu._score_grad_rows
    source_grad_rows = one_head.source_grad_rows if heads == 1 else cpu._source_grad_rows

    want = torch.empty(graph.num_edges, heads, dtype=dtype)
    score_rows(0, graph.num_rows, *general, params, as_numpy(want))
    got = torch.full_like(want, float("nan"))
    rows.scores((graph.rowptr, graph.col), (a_src, a_dst, score), got, SLOPE, rowptr)
    assert torch.equal(got, want)

    alpha = torch.rand(graph.num_edges, heads, generator=gen, dtype=dtype)
    g_alpha = torch.randn(graph.num_edges, heads, generator=gen, dtype=dtype)
    want_score, want_dst = g_alpha.clone(), torch.empty(graph.num_rows, heads, dtype=dtype)
    outputs = (as_numpy(want_score), as_numpy(want_dst))
    score_grad_rows(0, graph.num_rows, *general, as_numpy(alpha), params, *outputs)
    got_score, got_dst = g_alpha.clone(), torch.full_like(want_dst, float("nan"))
    graph_scores = ((graph.rowptr, graph.col), (a_src, a_dst, score))
    rows.score_gradients(*graph_scores, alpha, SLOPE, (got_score, got_dst), rowptr)
    assert torch.equal(got_score, want_score) and torch.equal(got_dst, want_dst)

    colptr, _, _, perm_t = graph.transpose()
    want_src = torch.empty(graph.num_cols, heads, dtype=dtype)
    transposed = (as_numpy(colptr), as_numpy(perm_t))
    source_grad_rows(0, graph.num_cols, *transposed, outputs[0], as_numpy(want_src), params[2], 16)
    got_src = torch.full_like(want_src, float("nan"))
    rows.source_gradients((colptr, perm_t), got_score, got_src, transposed[0])
    assert torch.equal(got_src, want_src)


@pytest.mark.parametrize(("heads", "channels"), [(8, 8), (1, 7)])
def test_large_graphs_take_the_passes_by_head_and_the_scalar_passes(heads, channels, monkeypatch):
    """Features past the cache aggregate and run the sender pass one head at a time, the
    scalar passes written out beside them: every output agrees with the general kernels to
    float32 rounding (the passes by head add some terms in another order), and the
    attention, computed by the scalar passes, is the same bits."""
    graph, inputs, keep = case(heads, channels, seed=7)
    _, rows = modules()
    monkeypatch.setattr(rows, "PREFETCH_MIN_BYTES", 0)  # every graph counts as large
    assert not rows.whole_row_passes(inputs[3], graph.rowptr)
    assert rows.written_feature_passes(inputs[3], graph.rowptr)
    assert rows.scalar_passes(inputs[0], graph.rowptr)
    mixed, general = with_and_without_written_out_passes(graph, inputs, keep, monkeypatch)
    assert not rows.scalar_passes(inputs[0], graph.rowptr)
    assert torch.equal(mixed[1], general[1])
    for a, b in zip(mixed, general, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("dropout", [False, True])
@pytest.mark.parametrize(("heads", "channels"), [(8, 8), (1, 7), (3, 5)])
def test_aggregation_by_head_gives_the_written_out_aggregations_bits(
    heads, channels, dropout, dtype, monkeypatch
):
    """Past the cache the aggregation runs one head at a time, prefetching: the same terms
    in the same order as the aggregation written out for cached features."""
    graph, inputs, keep = case(heads, channels, dtype, seed=5)
    keep = keep if dropout else None
    _, rows = modules()
    whole_rows = forward_only(graph, inputs, keep)
    monkeypatch.setattr(rows, "PREFETCH_MIN_BYTES", 0)  # every graph counts as large
    assert rows._by_head(inputs[3]) and rows.written_feature_passes(inputs[3], graph.rowptr)
    by_head = forward_only(graph, inputs, keep)
    for a, b in zip(by_head, whole_rows, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("dropout", [False, True])
@pytest.mark.parametrize(("heads", "channels"), [(3, 5), (16, 1)])
def test_passes_by_head_in_float64_match_the_general_kernels(heads, channels, dropout, monkeypatch):
    """Odd shapes by head in float64 (8 entries per cache line; heads whose channels straddle
    lines; many one-channel heads): forward and backward agree with the general kernels to
    float64 rounding."""
    graph, inputs, keep = case(heads, channels, torch.float64, seed=8)
    keep = keep if dropout else None
    _, rows = modules()
    monkeypatch.setattr(rows, "PREFETCH_MIN_BYTES", 0)  # every graph counts as large
    assert rows._by_head(inputs[3]) and rows.written_feature_passes(inputs[3], graph.rowptr)
    by_head, general = with_and_without_written_out_passes(graph, inputs, keep, monkeypatch)
    for a, b in zip(by_head, general, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dropout", [False, True])
def test_passes_by_head_of_wide_rows_match_the_general_kernels_and_torch(dropout, monkeypatch):
    """8 heads x 32 channels (ogbn-arxiv's layer) is wider than the whole-row kernels go: by
    head, the forward and the backward agree with the general kernels (float32) and with
    the torch form's autograd (float64)."""
    graph, inputs, keep = case(8, 32, seed=6)
    keep = keep if dropout else None
    _, rows = modules()
    monkeypatch.setattr(rows, "PREFETCH_MIN_BYTES", 0)  # every graph counts as large
    by_head = forward_backward(graph, inputs, keep)
    monkeypatch.setenv("GNNKIT_NARROW_SPMM", "0")
    assert not rows.written_feature_passes(inputs[3], graph.rowptr)
    general = forward_backward(graph, inputs, keep)
    assert torch.equal(by_head[1], general[1])
    for a, b in zip(by_head, general, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    monkeypatch.delenv("GNNKIT_NARROW_SPMM")
    leaves = [t.double().requires_grad_() if t is not None else None for t in inputs]
    scale = 1 / (1 - P) if dropout else 1.0
    ref_out, ref_alpha = reference_gat(graph, *leaves, SLOPE, keep, scale)
    grad_out = torch.randn(ref_out.shape, generator=torch.Generator().manual_seed(1)).double()
    want = torch.autograd.grad(ref_out, [leaves[3], leaves[0], leaves[1]], grad_out)
    got = forward_backward(graph, [t.detach() if t is not None else None for t in leaves], keep)
    for a, b in zip(got, [ref_out, ref_alpha, *want], strict=True):
        torch.testing.assert_close(a, b.detach(), rtol=0, atol=1e-12)


def test_halving_sum_pairs_each_term_with_the_one_half_the_terms_on():
    """The sender pass by head sums each edge's products in this tree (its self-check and
    numpy reference share the function): term c with term c + ceil(n / 2), halving."""
    from gnnkit.ops._gat_feature_sources import halving_sum

    def join(a, b):
        return f"({a} + {b})"

    assert halving_sum(list("abcd"), join) == "((a + c) + (b + d))"
    assert halving_sum(list("abcde"), join) == "(((a + d) + c) + (b + e))"
    assert halving_sum(["a"], join) == "a"
    values = [0.1 * k for k in range(1, 33)]
    assert halving_sum(values, lambda a, b: a + b) == pytest.approx(sum(values), rel=1e-12)


@pytest.mark.parametrize("passes", ["written out", "by head", "general"])
@pytest.mark.parametrize(("heads", "channels"), [(8, 8), (1, 7), (2, 3)])
def test_a_dropped_entry_is_its_value_times_zero_as_in_torch(heads, channels, passes, monkeypatch):
    """Attention dropout multiplies by the mask, as torch's ``alpha * keep * scale``: a
    receiver whose scores are NaN for a head gives NaN even where dropout dropped every one
    of its entries, forward and backward (choosing 0 for a dropped entry would hide it)."""
    if passes == "by head":
        monkeypatch.setattr(modules()[1], "PREFETCH_MIN_BYTES", 0)
    if passes == "general":
        monkeypatch.setenv("GNNKIT_NARROW_SPMM", "0")
    graph, inputs, keep = case(heads, channels, nodes=60, edges=300, seed=3)
    assert modules()[1]._by_head(inputs[3]) == (passes == "by head")
    receiver = 5
    entries = slice(int(graph.rowptr[receiver]), int(graph.rowptr[receiver + 1]))
    inputs[1][receiver, 0] = float("nan")  # a_dst: the receiver's scores for head 0
    keep[entries, 0] = False
    leaves = [t.clone().requires_grad_() if t is not None else None for t in inputs]
    ref_out, ref_alpha = reference_gat(graph, *leaves, SLOPE, keep, 1 / (1 - P))
    grad_out = torch.randn(ref_out.shape, generator=torch.Generator().manual_seed(1))
    want = torch.autograd.grad(ref_out, [leaves[3], leaves[0], leaves[1]], grad_out)
    got = forward_backward(graph, inputs, keep)
    assert got[0][receiver, 0].isnan().all()
    for a, b in zip(got, [ref_out, ref_alpha, *want], strict=True):
        torch.testing.assert_close(a, b.detach(), rtol=1e-5, atol=1e-5, equal_nan=True)
