"""Inputs of the layers and ``gcn_norm`` that are easy to get wrong: layers sharing one
``GraphCache``, ``self_loop_weight`` as a tensor or out of the weights' range, edge weights of
another dtype than ``x``, a sparse adjacency where a list of edges goes, a NaN ``fill_value``.
Each result is checked against a layer that shares nothing, or against PyG's layer."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.nn import GCNConv as PygGCNConv

from gnnkit.errors import InputError
from gnnkit.nn import GATConv, GCNConv, GraphCache, gcn_norm

EDGES = torch.tensor([[0, 1, 2, 3, 4, 2], [1, 2, 3, 4, 0, 2]])  # one self-loop (node 2)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"improved": True}, {}),
        ({}, {"self_loop_weight": 3.0}),
        ({}, {"add_self_loops": False}),
        ({}, {"normalize": False, "add_self_loops": False}),
        ({"learn_self_loop_weight": True}, {"self_loop_weight": 2.5}),
    ],
)
@pytest.mark.parametrize("cached", [False, True])
def test_gcn_layers_sharing_a_graph_cache_each_get_their_own_graph(first, second, cached):
    torch.manual_seed(0)
    x = torch.randn(5, 4)
    cache = GraphCache()
    a = GCNConv(4, 4, cached=cached, graph_cache=cache, **first)
    b = GCNConv(4, 4, cached=cached, graph_cache=cache, **second)
    alone = GCNConv(4, 4, cached=cached, **second)  # shares nothing
    alone.load_state_dict(b.state_dict())
    for _ in range(2):  # the first call fills the cache, the second reads it
        a(x, EDGES)
        torch.testing.assert_close(b(x, EDGES), alone(x, EDGES), rtol=0, atol=0)


def test_gat_layers_of_other_head_counts_sharing_a_graph_cache():
    torch.manual_seed(0)
    x = torch.randn(5, 4)
    cache = GraphCache()
    one, two = (GATConv(4, 4, heads=h, graph_cache=cache) for h in (1, 2))
    alone = GATConv(4, 4, heads=2)
    alone.load_state_dict(two.state_dict())
    for layer in (one, two, alone):
        layer.fuse = False  # the path whose CSR form interleaves the heads
    one(x, EDGES)
    torch.testing.assert_close(two(x, EDGES), alone(x, EDGES), rtol=0, atol=0)


def test_a_self_loop_weight_tensor_is_checked_like_a_number():
    nan = torch.tensor(float("nan"))
    with pytest.raises(InputError, match=r"positive finite number .*, got nan"):
        gcn_norm(EDGES, self_loop_weight=nan)
    with pytest.raises(InputError, match=r"positive finite number .*, got nan"):
        GCNConv(4, 2, self_loop_weight=nan)
    with pytest.raises(InputError, match=r"improved=True means self_loop_weight=2"):
        gcn_norm(EDGES, improved=True, self_loop_weight=torch.tensor(5.0))
    for vector in (torch.ones(5), torch.tensor([1.0, 2.0])):  # one lambda, not one per node
        with pytest.raises(InputError, match=r"0-dimensional floating-point tensor, got .*\(\d,\)"):
            gcn_norm(EDGES, self_loop_weight=vector)
    with pytest.raises(
        InputError, match=r"0-dimensional floating-point tensor, got a torch\.int64"
    ):
        GCNConv(4, 2, self_loop_weight=torch.tensor(3))
    # a constant tensor is its number; a tensor with a gradient stays in the graph
    torch.testing.assert_close(
        gcn_norm(EDGES, self_loop_weight=torch.tensor(3.0))[1],
        gcn_norm(EDGES, self_loop_weight=3.0)[1],
    )
    learned = torch.tensor(3.0, requires_grad=True)
    gcn_norm(EDGES, self_loop_weight=learned)[1].sum().backward()
    assert learned.grad is not None


def test_a_self_loop_weight_the_weights_dtype_cannot_hold_is_refused():
    message = r"self_loop_weight=1e\+40 does not fit the weights' torch\.float32"
    with pytest.raises(InputError, match=message):
        gcn_norm(EDGES, self_loop_weight=1e40)
    with pytest.raises(InputError, match=message):
        GCNConv(4, 2, self_loop_weight=1e40)(torch.randn(5, 4), EDGES)
    _, weight = gcn_norm(EDGES, self_loop_weight=1e40, dtype=torch.float64)  # float64 holds it
    assert weight.dtype == torch.float64 and bool(torch.isfinite(weight).all())
    with pytest.raises(InputError, match=r"dtype must be a floating-point dtype, got torch\.int64"):
        gcn_norm(EDGES, dtype=torch.long)


@pytest.mark.parametrize("cached", [False, True])
def test_edge_weights_of_another_float_dtype_follow_x_like_pyg(cached):
    torch.manual_seed(0)
    x, weight = torch.randn(5, 3, dtype=torch.float64), torch.rand(EDGES.size(1))
    ours = GCNConv(3, 2, cached=cached).double()
    theirs = PygGCNConv(3, 2, cached=cached).double()
    theirs.lin.weight.data.copy_(ours.lin.weight.data)
    theirs.bias.data.copy_(ours.bias.data)
    for _ in range(2):
        out = ours(x, EDGES, weight)  # float32 weights, float64 layer: PyG promotes them
        assert out.dtype == torch.float64
        torch.testing.assert_close(out, theirs(x, EDGES, weight), rtol=1e-6, atol=1e-6)
    layer = GCNConv(3, 2, cached=cached)
    torch.testing.assert_close(
        layer(x.float(), EDGES, weight.double()), layer(x.float(), EDGES, weight)
    )


def test_integer_edge_weights_name_both_places_they_come_from():
    adjacency = torch.sparse_coo_tensor(EDGES, torch.ones(6, dtype=torch.long), (5, 5))
    message = r"edge weights \(edge_weight, or a sparse adjacency's values\) must be floating"
    with pytest.raises(InputError, match=message):
        GCNConv(4, 2)(torch.randn(5, 4), adjacency.t())
    with pytest.raises(InputError, match=message):
        GCNConv(4, 2)(torch.randn(5, 4), EDGES, torch.ones(6, dtype=torch.long))


@pytest.mark.parametrize("layout", ["coo", "csr"])
def test_a_sparse_adjacency_where_edges_go_says_how_to_get_them(layout):
    from gnnkit.graph import adjacency

    adj = torch.sparse_coo_tensor(EDGES, torch.ones(6), (5, 5)).coalesce()
    adj = adj.to_sparse_csr() if layout == "csr" else adj
    message = rf"a sparse torch\.sparse_{layout} adjacency matrix; pass its edges"
    with pytest.raises(InputError, match=message):
        gcn_norm(adj)
    with pytest.raises(InputError, match=message):
        adjacency(adj)
    # what the message says to pass is the graph's edges: gcn_norm's matrix on EDGES
    edges = adj.to_sparse_coo().coalesce()

    def dense(pair):
        return torch.sparse_coo_tensor(*pair, (5, 5)).to_dense()

    torch.testing.assert_close(
        dense(gcn_norm(edges.indices(), edges.values())), dense(gcn_norm(EDGES))
    )


@pytest.mark.parametrize("fill", [float("nan"), float("inf"), torch.tensor([0.0, float("nan")])])
def test_a_non_finite_gat_fill_value_is_refused(fill):
    with pytest.raises(InputError, match=r"fill_value must be finite"):
        GATConv(4, 2, edge_dim=2, fill_value=fill)


def test_sparse_linear_names_a_cache_that_is_no_graph_cache():
    from gnnkit.nn import sparse_linear

    x = torch.eye(3).to_sparse_csr()
    with pytest.raises(InputError, match=r"cache must be a gnnkit\.nn\.GraphCache, got dict"):
        sparse_linear(x, torch.randn(2, 3), cache={})
    torch.testing.assert_close(
        sparse_linear(x, torch.ones(2, 3), cache=GraphCache()), torch.ones(3, 2)
    )


def test_the_fused_gat_backend_of_a_device_torch_does_not_know_is_one_line():
    from gnnkit.ops.attention import fused_gat_backend

    with pytest.raises(InputError, match=r"device must be cpu, cuda or cuda:N, got 'tpu'"):
        fused_gat_backend("tpu", torch.float32)
    assert fused_gat_backend("cpu", torch.float16) == "torch"  # no kernel for float16


@pytest.mark.parametrize("layer_type", [GCNConv, GATConv])
@pytest.mark.parametrize("how", ["deepcopy", "torch.save"])
def test_a_copied_layer_never_serves_the_original_graph(layer_type, how):
    # A cache entry is keyed by its tensors' addresses and kept valid by holding the tensors.
    # A copy does not hold the original's graph, so it starts empty: a new graph that the
    # allocator places where the original was (likely once it is freed) is not mistaken for
    # it. Compared with a fresh layer of the same weights, on many freed-and-reallocated graphs.
    import copy
    import io

    torch.manual_seed(0)
    x = torch.randn(50, 5)
    layer = layer_type(5, 4)
    shared = GraphCache()
    model = torch.nn.ModuleList([layer_type(5, 4, graph_cache=shared) for _ in range(2)])
    for _ in range(10):
        edge_index = torch.randint(0, 50, (2, 200))
        layer(x, edge_index)
        model[0](x, edge_index)
        if how == "deepcopy":
            clone, clones = copy.deepcopy(layer), copy.deepcopy(model)
        else:
            buffer = io.BytesIO()
            torch.save((layer, model), buffer)
            buffer.seek(0)
            clone, clones = torch.load(buffer, weights_only=False)
        assert clone._cache.value is None and clones[0]._cache is clones[1]._cache
        del edge_index
        graphs = [torch.randint(0, 50, (2, 200)) for _ in range(4)]
        fresh = layer_type(5, 4)
        fresh.load_state_dict(layer.state_dict())
        for graph in graphs:
            torch.testing.assert_close(clone(x, graph), fresh(x, graph))


@pytest.mark.parametrize("layer_type", ["GCNConv", "GATConv"])
@pytest.mark.parametrize("out_channels", [4, 16])
def test_under_cpu_autocast_the_layers_run_like_pygs(layer_type, out_channels):
    # Under torch.autocast the layers run PyG's plain path, where autocast casts each
    # operator's inputs as it does in PyG's layer: the same dtype out (float32: bfloat16
    # products promoted by float32 weights and bias), the same values, and a backward pass.
    import torch_geometric.nn as pyg_nn

    import gnnkit.nn as gnnkit_nn

    torch.manual_seed(0)
    x = torch.randn(30, 8)
    edge_index = torch.randint(0, 30, (2, 90))
    ours = getattr(gnnkit_nn, layer_type)(8, out_channels)
    theirs = getattr(pyg_nn, layer_type)(8, out_channels)
    theirs.load_state_dict(ours.state_dict())
    results = []
    for layer in (ours, theirs):
        features = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = layer(features, edge_index)
        out.float().square().sum().backward()
        results.append((out, features.grad))
    assert results[0][0].dtype == results[1][0].dtype == torch.float32
    torch.testing.assert_close(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1])
