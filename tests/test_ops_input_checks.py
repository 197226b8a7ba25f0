"""gnnkit.ops refuses, with one-line errors, the graphs and offsets its compiled kernels would
index memory out of bounds with (found crashing: a sender index past the node count
segfaulted spmm, sddmm and fused_gat; a receiver past it corrupted the heap while the graph
was built; an offset past ``src`` segfaulted segment_sum)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gnnkit import InputError, ops
from gnnkit.nn import GATConv, GCNConv
from gnnkit.ops import (
    CSRGraph,
    edge_softmax,
    fused_gat,
    gather_dst,
    gather_src,
    scatter_max,
    scatter_softmax,
    scatter_sum,
    sddmm,
    segment_max,
    segment_sum,
    spmm,
)

EDGES = torch.tensor([[0, 1, 2, 3, 1], [1, 2, 3, 0, 0]])


def dense(graph: CSRGraph, values: torch.Tensor) -> torch.Tensor:
    """The (num_rows, num_cols) matrix of a graph with CSR-ordered values."""
    out = torch.zeros(graph.num_rows, graph.num_cols)
    out.index_put_((graph.row, graph.col), values, accumulate=True)
    return out


@pytest.mark.parametrize(
    ("edge_index", "num_nodes", "num_cols", "match"),
    [
        (
            torch.tensor([[0, 10**9], [1, 2]]),
            5,
            None,
            r"edge_index\[0\] \(senders\) holds index 1000000000, out of range for 5",
        ),
        (torch.tensor([[0, 1], [1, 9]]), 5, None, r"edge_index\[1\] \(receivers\) holds index 9"),
        (torch.tensor([[0, -1], [1, 2]]), 5, None, r"edge_index\[0\] \(senders\) holds index -1"),
        (torch.tensor([[0, 1], [-3, 2]]), 5, None, r"edge_index\[1\] \(receivers\) holds index -3"),
        (torch.tensor([[0, 4], [1, 2]]), 5, 4, r"senders\) holds index 4, out of range for 4"),
        (EDGES, -1, None, "num_nodes must be a non-negative int, got -1"),
        (EDGES, 4, -2, "num_cols must be a non-negative int"),
        (EDGES, 4.0, None, "num_nodes must be an integer"),
        (EDGES.t(), 4, None, r"must be a \(2, \|E\|\) integer tensor, got torch.int64 \(5, 2\)"),
        (EDGES.float(), 4, None, r"integer tensor, got torch.float32"),
        (EDGES.tolist(), 4, None, r"integer tensor, got list"),
    ],
)
def test_from_edge_index_refuses_what_the_kernels_cannot_index(
    edge_index, num_nodes, num_cols, match
):
    with pytest.raises(InputError, match=match):
        CSRGraph.from_edge_index(edge_index, num_nodes, num_cols)


def test_from_edge_index_takes_every_valid_form():
    # int32 indices, numpy and 0-dim tensor counts, a bipartite graph, no edges at all
    reference = CSRGraph.from_edge_index(EDGES, 4)
    for edge_index, num_nodes in [(EDGES.int(), 4), (EDGES, np.int64(4)), (EDGES, torch.tensor(4))]:
        graph = CSRGraph.from_edge_index(edge_index, num_nodes)
        assert graph.num_rows == 4 and torch.equal(graph.col, reference.col)
    bipartite = CSRGraph.from_edge_index(torch.tensor([[0, 6], [1, 2]]), 3, 7)
    assert (bipartite.num_rows, bipartite.num_cols) == (3, 7)
    empty = CSRGraph.from_edge_index(torch.zeros(2, 0, dtype=torch.long), 0)
    assert empty.num_edges == 0 and empty.rowptr.tolist() == [0]


def test_the_constructor_checks_the_arrays_it_is_given():
    g = CSRGraph.from_edge_index(EDGES, 4)
    rebuilt = CSRGraph(g.rowptr, g.col, g.row, g.perm, 4, 4)  # valid: accepted
    values, x = torch.rand(g.num_edges), torch.randn(4, 16)
    torch.testing.assert_close(spmm(rebuilt, values, x), dense(g, values) @ x)
    bad = {
        "col": (g.rowptr, g.col + 10**6, g.row, g.perm, 4, 4),
        "rowptr past": (g.rowptr + 1, g.col, g.row, g.perm, 4, 4),
        "rowptr falls": (torch.tensor([0, 3, 1, 4, 5]), g.col, g.row, g.perm, 4, 4),
        "rowptr length": (g.rowptr[:-1], g.col, g.row, g.perm, 4, 4),
        "row": (g.rowptr, g.col, g.row.flip(0), g.perm, 4, 4),
        "perm": (g.rowptr, g.col, g.row, g.perm + 99, 4, 4),
        "float col": (g.rowptr, g.col.float(), g.row, g.perm, 4, 4),
    }
    messages = {
        "col": r"CSRGraph: col holds index 100000\d, out of range for 4",
        "rowptr past": r"rowptr must rise from 0 to the number of edges \(5\)",
        "rowptr falls": r"rowptr must rise from 0 .* never fall",
        "rowptr length": r"rowptr must have 5 entries for 4 rows and 5 edges, got 4",
        "row": r"row must list each entry's row",
        "perm": r"CSRGraph: perm holds index 10\d",
        "float col": r"col must be a 1-D integer tensor, got torch.float32",
    }
    for name, arrays in bad.items():
        with pytest.raises(InputError, match=messages[name]):
            CSRGraph(*arrays)


def test_from_sparse_checks_tensors_built_without_torchs_invariant_checks():
    matrix = torch.sparse_csr_tensor(
        torch.tensor([0, 1, 2]), torch.tensor([0, 7]), torch.ones(2), (2, 3),
        check_invariants=False,
    )  # fmt: skip
    with pytest.raises(InputError, match=r"column indices holds index 7, out of range for 3"):
        CSRGraph.from_sparse(matrix)
    falling = torch.sparse_csr_tensor(
        torch.tensor([0, 2, 1]), torch.tensor([0, 1]), torch.ones(2), (2, 3),
        check_invariants=False,
    )  # fmt: skip
    with pytest.raises(InputError, match="CSR row pointer must rise from 0"):
        CSRGraph.from_sparse(falling)
    uncoalesced = torch.sparse_coo_tensor(torch.tensor([[0, 0], [1, 1]]), torch.ones(2), (2, 2))
    with pytest.raises(InputError, match=r"coalesced COO matrix; call matrix.coalesce\(\)"):
        CSRGraph.from_sparse(uncoalesced)
    with pytest.raises(InputError, match=r"expects a sparse CSR or COO tensor, got torch\.strided"):
        CSRGraph.from_sparse(torch.eye(2))
    good = torch.tensor([[0.0, 2.0, 0.0], [1.0, 0.0, 3.0]])
    graph = CSRGraph.from_sparse(good.to_sparse_csr())
    x = torch.randn(3, 8)
    torch.testing.assert_close(spmm(graph, good.to_sparse_csr().values(), x), good @ x)


@pytest.mark.parametrize("fn", [segment_sum, segment_max])
def test_segment_offsets_must_stay_within_src(fn):
    src = torch.randn(4, 3)
    for ptr in ([0, 2, 10**9], [0, 2, 6], [-2, 2, 4], [0, 3, 1]):
        with pytest.raises(InputError, match="ptr must never fall and stay within src's 4 rows"):
            fn(src, torch.tensor(ptr))
    for ptr, match in [(torch.tensor([0.0, 4.0]), "1-D integer tensor"), ([0, 4], "got list")]:
        with pytest.raises(InputError, match=match):
            fn(src, ptr)
    # a valid ptr that covers part of src: the segments it names, against torch
    out = fn(src, torch.tensor([1, 1, 3]))
    reduce = torch.sum if fn is segment_sum else torch.amax
    assert out.shape == (2, 3)
    assert torch.equal(out[1], reduce(src[1:3], 0))


def test_spmm_and_sddmm_name_a_wrong_graph_or_operand():
    g = CSRGraph.from_edge_index(EDGES, 4)
    with pytest.raises(InputError, match="spmm: graph must be a CSRGraph, got Tensor"):
        spmm(EDGES, torch.ones(5), torch.randn(4, 3))
    with pytest.raises(
        InputError, match=r"a must be \(4, C\) and b \(4, C\).*\(4, 3\) and \(4, 5\)"
    ):
        sddmm(g, torch.randn(4, 3), torch.randn(4, 5))
    with pytest.raises(InputError, match=r"a must be \(4, C\).*\(3, 3\)"):
        sddmm(g, torch.randn(3, 3), torch.randn(4, 3))
    with pytest.raises(
        InputError, match=r"one dtype on one device, got torch\.float32 on cpu and torch\.float64"
    ):
        sddmm(g, torch.randn(4, 3), torch.randn(4, 3, dtype=torch.float64))
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    torch.testing.assert_close(sddmm(g, a, b), (a[g.row] * b[g.col]).sum(-1))


def test_layers_that_skip_their_checks_still_never_index_out_of_bounds():
    # validate=False skips the per-call scans; the graph each layer builds is still checked
    x, edge_index = torch.randn(5, 16), torch.tensor([[0, 10**7], [1, 2]])
    with pytest.raises(InputError, match=r"senders\) holds index 10000000, out of range for 5"):
        GATConv(16, 8, heads=2, validate=False)(x, edge_index)
    assert GCNConv(16, 4, validate=False)(x, torch.tensor([[0, 4], [1, 2]])).shape == (5, 4)


@pytest.mark.parametrize("deterministic", [True, False])
@pytest.mark.parametrize("fn", [scatter_sum, scatter_max])
def test_scatter_targets_must_lie_within_dim_size(fn, deterministic):
    # the sorted deterministic path used to drop a target past the end silently
    src = torch.randn(3, 2)
    with pytest.raises(InputError, match="index holds 9, out of range for dim_size=4"):
        fn(src, torch.tensor([0, 1, 9]), 4, deterministic=deterministic)
    with pytest.raises(InputError, match="index holds -1, out of range"):
        fn(src, torch.tensor([0, -1, 2]), 4, deterministic=deterministic)
    with pytest.raises(InputError, match=r"integer tensor of shape \(3,\)"):
        fn(src, torch.tensor([0.0, 1.0, 2.0]), 4, deterministic=deterministic)
    with pytest.raises(InputError, match="dim_size must be a non-negative int"):
        fn(src, torch.tensor([0, 1, 2]), -1, deterministic=deterministic)
    out = fn(src, torch.tensor([0, 3, 3]), np.int64(4), deterministic=deterministic)
    reduce = torch.sum if fn is scatter_sum else torch.amax
    torch.testing.assert_close(out[3], reduce(src[1:], 0))


@pytest.mark.parametrize(("fn", "size"), [(gather_dst, 3), (gather_src, 5)])
def test_gathers_take_one_value_per_node_of_their_side(fn, size):
    # gather_dst used to take a longer x silently, gather_src to fail with an IndexError
    graph = CSRGraph.from_edge_index(torch.tensor([[0, 4, 2], [1, 2, 0]]), 3, 5)
    for x in (torch.randn(size + 1), torch.randn(size - 1), torch.randn(2, 2, size)):
        with pytest.raises(InputError, match=rf"x must be \({size},\) or \(H, {size}\)"):
            fn(graph, x)
    x = torch.randn(2, size)
    index = graph.row if fn is gather_dst else graph.col
    assert torch.equal(fn(graph, x), x[:, index])


def test_fused_gat_needs_a_head_and_a_channel():
    # (0 heads reached a generated kernel's source as an IndentationError)
    graph = CSRGraph.from_edge_index(EDGES, 4)
    for heads, channels in ((0, 8), (2, 0)):
        with pytest.raises(InputError, match="at least one head and one channel"):
            fused_gat(
                graph, torch.randn(4, heads), torch.randn(4, heads), None,
                torch.randn(4, heads, channels),
            )  # fmt: skip


BACKENDS = [
    "torch",
    pytest.param(
        "torch_scatter",
        marks=pytest.mark.skipif(not ops.torch_scatter_available(), reason="torch_scatter"),
    ),
]


@pytest.mark.parametrize("deterministic", [True, False])
@pytest.mark.parametrize("name", BACKENDS)
def test_integer_reductions_are_exact_in_their_dtype(name, deterministic):
    # Integers are reduced exactly in their own dtype, as torch_scatter reduces them (torch's
    # segment kernel takes floating point only); an empty slot of a maximum holds the dtype's
    # smallest value, the integer -inf.
    src = torch.tensor([[5, -3], [7, 2], [9, 1], [-4, 8], [6, 0]])
    ptr, index = torch.tensor([1, 3, 3, 5]), torch.tensor([2, 0, 2, 2, 0])
    lowest = torch.iinfo(torch.int64).min
    with ops.use_backend(name):
        sums, peaks = segment_sum(src, ptr), segment_max(src, ptr)
        scattered = [
            fn(src, index, 4, deterministic=deterministic) for fn in (scatter_sum, scatter_max)
        ]
    # references written out: each output row from the source rows that reach it
    segments = [src[lo:hi] for lo, hi in ((1, 3), (3, 3), (3, 5))]
    groups = [src[index == i] for i in range(4)]
    for got, rows_of, fill in [
        (sums, segments, 0),
        (peaks, segments, lowest),
        (scattered[0], groups, 0),
        (scattered[1], groups, lowest),
    ]:
        assert got.dtype == torch.int64
        reduce = sum if fill == 0 else max
        want = [
            [reduce(row[c] for row in rows.tolist()) if len(rows) else fill for c in range(2)]
            for rows in rows_of
        ]
        assert got.tolist() == want
    assert scattered[0].tolist() == [[13, 2], [0, 0], [10, 6], [0, 0]]
    small = torch.tensor([3, 200], dtype=torch.uint8)
    assert segment_max(small, torch.tensor([0, 0, 2])).tolist() == [0, 200]


def test_reductions_refuse_booleans_and_softmax_refuses_integers():
    graph = CSRGraph.from_edge_index(EDGES, 4)
    flags = torch.tensor([True, False, True])
    with pytest.raises(InputError, match=r"src must be a floating-point or integer.*torch\.bool"):
        segment_sum(flags, torch.tensor([0, 3]))
    with pytest.raises(InputError, match=r"src must be a floating-point or integer.*torch\.bool"):
        scatter_max(flags, torch.tensor([0, 0, 1]), 2)
    with pytest.raises(
        InputError, match=r"edge_softmax: scores must be a floating-point tensor, got torch\.int64"
    ):
        edge_softmax(graph, torch.ones(5, dtype=torch.long))
    with pytest.raises(InputError, match=r"scatter_softmax: scores must be a floating-point"):
        scatter_softmax(torch.ones(3, dtype=torch.long), torch.tensor([0, 0, 1]), 2)


def test_spmm_without_values_weighs_every_edge_1_and_refuses_sparse_features():
    graph = CSRGraph.from_edge_index(EDGES, 4)
    adjacency = dense(graph, torch.ones(graph.num_edges))  # A[i, j] = edges j -> i
    x = torch.randn(4, 3, requires_grad=True)
    out = spmm(graph, None, x)
    torch.testing.assert_close(out, adjacency @ x)
    (grad,) = torch.autograd.grad(out.sum(), x)
    torch.testing.assert_close(grad, adjacency.t() @ torch.ones(4, 3))
    heads = torch.randn(2, 4, 3, dtype=torch.float64)
    torch.testing.assert_close(spmm(graph, None, heads), adjacency.double() @ heads)
    with pytest.raises(InputError, match=r"x must be a dense \(strided\) tensor, got torch\.spar"):
        spmm(graph, torch.ones(5), torch.randn(4, 3).to_sparse())
    with pytest.raises(InputError, match=r"pass x\.to_dense\(\).*sparse_linear"):
        spmm(graph, torch.ones(5), torch.randn(4, 3).to_sparse_csr())
    with pytest.raises(InputError, match=r"x must be a dense \(strided\) tensor"):
        spmm(graph, None, torch.randn(4, 3).to_sparse())
    with pytest.raises(InputError, match=r"got values \(5,\) and x list"):
        spmm(graph, torch.ones(5), [[1.0]])
    with pytest.raises(InputError, match=r"x is torch\.int64; both must be one floating-point"):
        spmm(graph, torch.ones(5, dtype=torch.long), torch.ones(4, 3, dtype=torch.long))


def test_backend_info_names_a_device_that_does_not_exist():
    # torch's error listed every device type it knows
    with pytest.raises(InputError, match="device must be cpu, cuda or cuda:N, got 'tpu'"):
        ops.backend_info("tpu")
    with pytest.raises(InputError, match="got None"):
        ops.backend_info(None)
    # a device this machine lacks is still reported (what would run there)
    assert ops.backend_info("cuda")["device"] == "cuda"
