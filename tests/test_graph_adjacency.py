"""adjacency() against dense formulas written out here, and edge-list parsing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gnnkit.errors import InputError
from gnnkit.graph import adjacency, from_edge_list, parse_edge_string


def dense_adjacency(edge_index, num_nodes, weight=None):
    """A[target, source] summed over duplicate edges, written with plain loops."""
    matrix = torch.zeros(num_nodes, num_nodes, dtype=torch.float64)
    weights = weight.tolist() if weight is not None else [1.0] * edge_index.size(1)
    for (source, target), w in zip(edge_index.t().tolist(), weights, strict=True):
        matrix[target, source] += w
    return matrix


def reference(edge_index, num_nodes, lam, normalize, weight=None):
    a = dense_adjacency(edge_index, num_nodes, weight) + lam * torch.eye(
        num_nodes, dtype=torch.float64
    )
    degree = a.sum(dim=1)
    if normalize is None:
        return a
    inv = torch.where(
        degree > 0, degree.pow(-0.5 if normalize == "sym" else -1.0), torch.zeros_like(degree)
    )
    if normalize == "sym":
        return torch.diag(inv) @ a @ torch.diag(inv)
    return torch.diag(inv) @ a


GRAPH = torch.tensor([[0, 1, 1, 2, 3, 0, 2], [1, 0, 2, 1, 0, 3, 2]])  # includes a self-loop at 2


@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0, 2.0, 3.7])
@pytest.mark.parametrize("normalize", [None, "sym", "rw"])
@pytest.mark.parametrize("weighted", [False, True])
def test_adjacency_equals_dense_formula(lam, normalize, weighted):
    num_nodes = 6  # nodes 4 and 5 are isolated
    weight = torch.linspace(0.5, 2.0, GRAPH.size(1), dtype=torch.float64) if weighted else None
    got = adjacency(GRAPH, num_nodes, edge_weight=weight, self_loop_weight=lam, normalize=normalize)
    expected = reference(GRAPH, num_nodes, lam, normalize, weight)
    assert torch.allclose(got.double(), expected, atol=1e-6)
    assert torch.isfinite(got).all()


def test_isolated_nodes_give_zero_rows_not_nan():
    got = adjacency(torch.tensor([[0], [1]]), 3, normalize="sym")
    assert got[2].abs().sum() == 0 and torch.isfinite(got).all()
    got = adjacency(torch.tensor([[0], [1]]), 3, normalize="rw")
    assert got[0].abs().sum() == 0 and got[1, 0] == 1.0


def test_sparse_layout_equals_dense():
    dense = adjacency(GRAPH, 5, self_loop_weight=1.0, normalize="sym")
    sparse = adjacency(GRAPH, 5, self_loop_weight=1.0, normalize="sym", layout="sparse")
    assert sparse.is_sparse
    assert torch.allclose(sparse.to_dense(), dense)


def test_rows_are_receivers():
    a = adjacency(torch.tensor([[0], [1]]), 2)  # edge 0 -> 1
    assert a.tolist() == [[0.0, 0.0], [1.0, 0.0]]
    features = torch.tensor([[5.0], [7.0]])
    assert (a @ features).tolist() == [[0.0], [5.0]]  # node 1 receives node 0's message


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"normalize": "left"}, "normalize must be"),
        ({"layout": "csr"}, "layout must be"),
        ({"self_loop_weight": "one"}, "self_loop_weight must be a finite number, got 'one'"),
        ({"self_loop_weight": float("inf")}, "self_loop_weight must be a finite number, got inf"),
        (
            {"self_loop_weight": float("inf"), "normalize": "sym"},
            r"self_loop_weight must be a finite number >= 0 with normalize='sym', got inf",
        ),
        (
            {"self_loop_weight": -1.0, "normalize": "sym"},
            r"finite number >= 0 with normalize='sym', got -1\.0",
        ),
        ({"self_loop_weight": -0.5, "normalize": "rw"}, r"with normalize='rw', got -0\.5"),
        ({"self_loop_weight": float("nan")}, "finite number"),
        ({"edge_weight": torch.ones(3)}, r"shape \(7,\)"),
        ({"edge_weight": torch.ones(7, dtype=torch.long)}, "floating-point"),
        ({"edge_weight": torch.tensor([1.0] * 6 + [float("nan")])}, "NaN"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(InputError, match=match):
        adjacency(GRAPH, 5, **kwargs)


def test_numpy_and_zero_dim_tensor_numbers_are_accepted():
    expected = reference(GRAPH, 5, 1.0, "sym")
    for lam in (np.float64(1.0), np.int64(1), torch.tensor(1.0)):
        got = adjacency(GRAPH, np.int64(5), self_loop_weight=lam, normalize="sym")
        torch.testing.assert_close(got.double(), expected)
    assert adjacency(GRAPH, torch.tensor(5)).shape == (5, 5)


def test_negative_loop_weight_without_normalisation_is_literal():
    got = adjacency(GRAPH, 5, self_loop_weight=-1.0)
    torch.testing.assert_close(got.double(), reference(GRAPH, 5, -1.0, None))


def test_negative_weights_normalise_while_every_degree_is_non_negative():
    edges = torch.tensor([[0, 1, 2, 2], [1, 0, 1, 0]])
    weight = torch.tensor([2.0, 1.0, -0.5, 3.0], dtype=torch.float64)  # node 1: 2 - 0.5
    for normalize in ("sym", "rw"):
        got = adjacency(edges, 3, edge_weight=weight, self_loop_weight=1.0, normalize=normalize)
        torch.testing.assert_close(got, reference(edges, 3, 1.0, normalize, weight))
    heavy = torch.tensor([2.0, 1.0, -3.5, 3.0], dtype=torch.float64)  # node 1: 2 - 3.5 + 1
    with pytest.raises(
        InputError, match=r"normalize='sym' needs every weighted degree >= 0, but node 1 has -0.5"
    ):
        adjacency(edges, 3, edge_weight=heavy, self_loop_weight=1.0, normalize="sym")
    got = adjacency(edges, 3, edge_weight=heavy, self_loop_weight=1.0, normalize="rw")
    a = dense_adjacency(edges, 3, heavy) + torch.eye(3, dtype=torch.float64)
    torch.testing.assert_close(got, a / a.sum(dim=1, keepdim=True))  # D^-1 of a negative degree


def test_a_huge_dense_matrix_is_refused_before_allocating():
    with pytest.raises(
        InputError, match=r"dense adjacency of 1,000,000,000 nodes .* layout='sparse'"
    ):
        adjacency(GRAPH, 10**9)


def test_parse_edge_string_refuses_non_strings():
    with pytest.raises(InputError, match=r"edges must be a string such as 'A-B,B-C', got NoneType"):
        parse_edge_string(None)


def test_from_edge_list_undirected_and_directed():
    edge_index, labels = from_edge_list(["A-B", "B-C", "A-B"])
    assert labels == ["A", "B", "C"]
    assert edge_index.tolist() == [[0, 1, 1, 2], [1, 0, 2, 1]]
    edge_index, _ = from_edge_list(["A-B", "B-C"], directed=True)
    assert edge_index.tolist() == [[0, 1], [1, 2]]
    edge_index, labels = from_edge_list(["node1-node2"])
    assert labels == ["node1", "node2"]


@pytest.mark.parametrize("token", ["A-", "A--B", "", "-B", "A-B-C", "AB"])
def test_malformed_tokens_are_named(token):
    with pytest.raises(InputError, match=f"malformed edge token '{token}'"):
        from_edge_list(["X-Y", token])


def test_parse_edge_string():
    assert parse_edge_string("A-B,B-C") == ["A-B", "B-C"]
    assert parse_edge_string(" A-B , B-C ") == ["A-B", "B-C"]
    assert parse_edge_string("A-B B-C") == ["A-B", "B-C"]
    assert parse_edge_string("A-B,,B-C") == ["A-B", "", "B-C"]
    assert parse_edge_string("") == [""]
    with pytest.raises(InputError, match="edges is empty"):
        from_edge_list([])
    with pytest.raises(InputError, match="parse_edge_string"):
        from_edge_list("A-B")
