"""Hop distances, layers_to_reach and receptive_field against networkx and hand-worked graphs."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import torch

from gnnkit.errors import InputError
from gnnkit.graph import from_edge_list, hop_distances, layers_to_reach, receptive_field
from gnnkit.graph.hops import ALL_PAIRS_LIMIT


def random_edge_index(num_nodes: int, num_edges: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, num_nodes, (2, num_edges), generator=generator)


def networkx_hops(edge_index: torch.Tensor, num_nodes: int, directed: bool) -> list[list[int]]:
    graph = nx.DiGraph() if directed else nx.Graph()
    graph.add_nodes_from(range(num_nodes))
    graph.add_edges_from(edge_index.t().tolist())
    table = [[-1] * num_nodes for _ in range(num_nodes)]
    for source, lengths in nx.all_pairs_shortest_path_length(graph):
        for target, length in lengths.items():
            table[source][target] = length
    return table


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("directed", [True, False])
def test_hop_distances_equal_networkx(seed, directed):
    num_nodes = 30
    # Sparse enough that some pairs are unreachable.
    edge_index = random_edge_index(num_nodes, 28, seed)
    if not directed:
        edge_index = torch.cat([edge_index, edge_index.flip(0)], dim=1)
    expected = networkx_hops(edge_index, num_nodes, directed)
    assert hop_distances(edge_index, num_nodes).tolist() == expected
    assert any(-1 in row for row in expected), "the graph should leave some pairs unreachable"


def test_hop_distances_from_sources_match_all_pairs():
    edge_index = random_edge_index(50, 120, seed=7)
    full = hop_distances(edge_index, 50)
    sources = [3, 0, 49, 3]
    assert torch.equal(hop_distances(edge_index, 50, sources=sources), full[sources])
    assert torch.equal(hop_distances(edge_index, 50, sources=torch.tensor(sources)), full[sources])


def test_direction_follows_message_flow():
    edge_index = torch.tensor([[0, 1], [1, 2]])  # 0 -> 1 -> 2
    hops = hop_distances(edge_index)
    assert hops[0, 2] == 2
    assert hops[2, 0] == -1
    assert layers_to_reach(edge_index, 0, 2) == 2
    assert layers_to_reach(edge_index, 2, 0) == -1
    assert layers_to_reach(edge_index, 1, 1) == 0


def test_chain_needs_four_layers_from_a_to_e():
    edge_index, labels = from_edge_list(["A-B", "B-C", "C-D", "D-E"])
    assert layers_to_reach(edge_index, labels.index("A"), labels.index("E")) == 4
    assert layers_to_reach(edge_index, labels.index("C"), labels.index("E")) == 2


def test_isolated_nodes_and_empty_graph():
    edge_index = torch.tensor([[0], [1]])
    hops = hop_distances(edge_index, num_nodes=4)
    assert hops.tolist() == [[0, 1, -1, -1], [-1, 0, -1, -1], [-1, -1, 0, -1], [-1, -1, -1, 0]]
    empty = torch.empty((2, 0), dtype=torch.long)
    assert hop_distances(empty, num_nodes=0).shape == (0, 0)
    assert hop_distances(empty, num_nodes=2).tolist() == [[0, -1], [-1, 0]]


def test_receptive_field_equals_nodes_within_k_hops_upstream():
    edge_index = random_edge_index(40, 80, seed=3)
    hops = hop_distances(edge_index, 40)
    for node in (0, 5, 17):
        for k in range(4):
            upstream = ((hops[:, node] >= 0) & (hops[:, node] <= k)).nonzero().view(-1)
            assert torch.equal(receptive_field(edge_index, node, k, num_nodes=40), upstream)


def test_receptive_field_of_very_many_layers_is_the_whole_upstream_component():
    # PyG's search runs one pass per layer asked for: 10**9 layers used to run for hours
    edge_index = random_edge_index(40, 80, seed=3)
    hops = hop_distances(edge_index, 40)
    for node in (0, 17):
        upstream = (hops[:, node] >= 0).nonzero().view(-1)
        for k in (39, 10**9):
            assert torch.equal(receptive_field(edge_index, node, k, num_nodes=40), upstream)
    chain = torch.tensor([[0, 1, 2], [1, 2, 3]], dtype=torch.uint8)  # any integer dtype
    assert receptive_field(chain, 3, 10**9).tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: hop_distances(torch.tensor([[0.0, 1.0], [1.0, 0.0]])), "integer node indices"),
        (lambda: hop_distances(torch.tensor([0, 1, 2])), r"shape \(2, num_edges\)"),
        (lambda: hop_distances(torch.tensor([[0, 1], [1, 2], [2, 0]])), "transposed"),
        (lambda: hop_distances(torch.tensor([[0, -3], [1, 0]])), r"negative node indices \[-3\]"),
        (lambda: hop_distances(torch.tensor([[0, 1], [1, 7]]), num_nodes=3), r"\[7\] out of range"),
        (
            lambda: hop_distances(torch.tensor([[0], [1]]), sources=[5]),
            "sources holds node indices",
        ),
        (lambda: layers_to_reach(torch.tensor([[0], [1]]), 0, 9), "dst holds node indices"),
        (
            lambda: layers_to_reach(torch.tensor([[0], [1]]), 7, 0),
            r"^src holds node indices \[7\] out of range 0 \.\. 1$",
        ),
        (
            lambda: layers_to_reach(torch.tensor([[0], [1]]), torch.tensor([0, 1]), 0),
            r"src must be an integer, got a tensor of shape \(2,\)",
        ),
        (lambda: layers_to_reach(torch.tensor([[0], [1]]), 0.5, 0), "src must be an integer"),
        (
            lambda: hop_distances(torch.tensor([[0], [1]]), sources=[]),
            r"sources is empty; give at least one node index \(or sources=None for all pairs\)",
        ),
        (
            lambda: hop_distances(torch.tensor([[0], [1]]), sources=[[0, 1]]),
            r"sources must be one node index or a 1-D sequence of them, got shape \(1, 2\)",
        ),
        (
            lambda: hop_distances(torch.tensor([[0, 1], [1, 2]]), num_nodes=2),
            r"pass a larger num_nodes \(to a layer: an x with one row per node\)",
        ),
        (lambda: receptive_field(torch.tensor([[0], [1]]), 0, -1), "num_layers"),
        (lambda: hop_distances("0-1"), "must be a torch.Tensor"),
    ],
)
def test_bad_inputs_are_named(call, match):
    with pytest.raises(InputError, match=match):
        call()


def test_numpy_and_zero_dim_tensor_indices_are_accepted():
    chain = torch.tensor([[0, 1, 2], [1, 2, 3]])
    for src, dst in ((np.int64(0), np.int32(3)), (torch.tensor(0), torch.tensor(3))):
        assert layers_to_reach(chain, src, dst, num_nodes=np.int64(4)) == 3
    assert receptive_field(chain, torch.tensor(3), 1).tolist() == [2, 3]


def test_all_pairs_refused_on_large_graphs():
    big = ALL_PAIRS_LIMIT + 1
    edge_index = torch.tensor([[0], [big - 1]])
    with pytest.raises(InputError, match="pass sources"):
        hop_distances(edge_index, big)
    assert hop_distances(edge_index, big, sources=[0])[0, big - 1] == 1
