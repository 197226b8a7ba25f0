"""Property tests (hypothesis) on random graphs with empty edge sets, isolated nodes, duplicate
edges and self-loops: adjacency against a dense formula written here, hop distances and
layers_to_reach against networkx, and GCNConv / GATConv (public API only) against PyG's layers
with the same weights, plus permutation equivariance and finiteness.
"""

from __future__ import annotations

import networkx as nx
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gnnkit.graph import adjacency, hop_distances, layers_to_reach
from gnnkit.nn import GATConv, GCNConv

pytestmark = pytest.mark.usefixtures("one_thread")

PROFILE = settings(max_examples=40, deadline=None, derandomize=True)


@st.composite
def graphs(draw, max_nodes: int = 9, max_edges: int = 24):
    """``(edge_index, num_nodes)``: any directed multigraph, self-loops and isolated nodes
    included (num_nodes may exceed the largest index), the empty graph too."""
    num_nodes = draw(st.integers(1, max_nodes))
    pairs = draw(
        st.lists(
            st.tuples(st.integers(0, num_nodes - 1), st.integers(0, num_nodes - 1)),
            max_size=max_edges,
        )
    )
    if draw(st.booleans()) and pairs:
        pairs = pairs + pairs[: draw(st.integers(1, len(pairs)))]  # duplicates
    edge_index = torch.tensor(pairs, dtype=torch.long).reshape(-1, 2).t().contiguous()
    return edge_index, num_nodes


def dense_reference(edge_index, num_nodes, lam, normalize):
    a = torch.zeros(num_nodes, num_nodes, dtype=torch.float64)
    for source, target in edge_index.t().tolist():
        a[target, source] += 1.0
    a += lam * torch.eye(num_nodes, dtype=torch.float64)
    if normalize is None:
        return a
    degree = a.sum(1)
    inv = torch.where(
        degree > 0, degree.pow(-0.5 if normalize == "sym" else -1.0), torch.zeros_like(degree)
    )
    return torch.diag(inv) @ a @ torch.diag(inv) if normalize == "sym" else torch.diag(inv) @ a


@PROFILE
@given(
    graphs(),
    st.floats(0.0, 5.0, allow_nan=False),
    st.sampled_from([None, "sym", "rw"]),
    st.sampled_from(["dense", "sparse"]),
)
def test_adjacency_matches_the_dense_formula_and_is_finite(graph, lam, normalize, layout):
    edge_index, num_nodes = graph
    got = adjacency(edge_index, num_nodes, self_loop_weight=lam, normalize=normalize, layout=layout)
    got = got.to_dense() if layout == "sparse" else got
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.double(), dense_reference(edge_index, num_nodes, lam, normalize))


def networkx_distances(edge_index, num_nodes):
    g = nx.DiGraph()
    g.add_nodes_from(range(num_nodes))
    g.add_edges_from(edge_index.t().tolist())
    out = torch.full((num_nodes, num_nodes), -1, dtype=torch.long)
    for source, lengths in nx.all_pairs_shortest_path_length(g):
        for target, length in lengths.items():
            out[source, target] = length
    return out


@PROFILE
@given(graphs(), st.data())
def test_hop_distances_and_layers_to_reach_match_networkx(graph, data):
    edge_index, num_nodes = graph
    expected = networkx_distances(edge_index, num_nodes)
    assert torch.equal(hop_distances(edge_index, num_nodes), expected)
    sources = data.draw(st.lists(st.integers(0, num_nodes - 1), min_size=1, max_size=4))
    assert torch.equal(hop_distances(edge_index, num_nodes, sources=sources), expected[sources])
    src, dst = data.draw(st.integers(0, num_nodes - 1)), data.draw(st.integers(0, num_nodes - 1))
    assert layers_to_reach(edge_index, src, dst, num_nodes) == int(expected[src, dst])


def permuted(edge_index, x, perm):
    """The same graph with node ``i`` renamed ``inverse[i]`` (``x_new = x[perm]``)."""
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(perm.numel())
    return inverse[edge_index], x[perm]


@PROFILE
@given(graphs(), st.integers(0, 2**16), st.sampled_from(["gcn", "gat"]))
def test_layers_are_finite_permutation_equivariant_and_match_pyg(graph, seed, kind):
    import torch_geometric.nn as pyg

    edge_index, num_nodes = graph
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(num_nodes, 5, generator=generator, dtype=torch.float64)
    torch.manual_seed(seed)
    if kind == "gcn":
        ours, theirs = GCNConv(5, 3).double(), pyg.GCNConv(5, 3).double()
    else:
        ours, theirs = GATConv(5, 3, heads=2).double(), pyg.GATConv(5, 3, heads=2).double()
    theirs.load_state_dict(ours.state_dict())
    out = ours(x, edge_index)
    assert out.shape == (num_nodes, 3 if kind == "gcn" else 6)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, theirs(x, edge_index))
    perm = torch.randperm(num_nodes, generator=generator)
    new_edges, new_x = permuted(edge_index, x, perm)
    torch.testing.assert_close(ours(new_x, new_edges), out[perm])
