"""gnnkit's GATConv as a drop-in for PyG 2.8's: signature, bipartite input, edge features,
residual, attention weights, adjacency input, flow and to_hetero, each checked against PyG's
own layer with copied weights on both of gnnkit's paths (lean CSR kernels, and PyG's plain
message/aggregate path with ``fuse = False``)."""

from __future__ import annotations

import inspect

import pytest
import torch
import torch_geometric.nn as pyg
from conv_checks import assert_compiles_like_pyg, directed_graph, paired_layers
from torch_geometric.data import HeteroData
from torch_geometric.utils import to_torch_coo_tensor

from gnnkit.errors import InputError
from gnnkit.nn import GATConv
from gnnkit.ops._jit import jit_available

pytestmark = pytest.mark.usefixtures("one_thread")

PATHS = ["lean", "plain"]


def pair(*args, path="lean", **kwargs):
    """gnnkit's and PyG's layer with the same weights (float64), in eval mode."""
    ours, theirs = paired_layers(GATConv, pyg.GATConv, *args, fused=path == "lean", **kwargs)
    return ours.eval(), theirs.eval()


def assert_same_grads(ours, theirs, out, expected):
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, list(ours.parameters()), grad)
    want = torch.autograd.grad(expected, list(theirs.parameters()), grad)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)


def bipartite_graph(num_src=7, num_dst=5, num_edges=20, seed=0):
    gen = torch.Generator().manual_seed(seed)
    src = torch.randint(0, num_src, (num_edges,), generator=gen)
    dst = torch.randint(0, num_dst, (num_edges,), generator=gen)
    return torch.stack([src, dst])


def test_signature_is_pygs_with_gnnkit_extras_keyword_only():
    theirs = inspect.signature(pyg.GATConv.__init__).parameters
    ours = inspect.signature(GATConv.__init__).parameters
    positional = [p for p in ours.values() if p.kind == p.POSITIONAL_OR_KEYWORD]
    expected = [p for p in theirs.values() if p.kind == p.POSITIONAL_OR_KEYWORD]
    assert [(p.name, p.default) for p in positional] == [(p.name, p.default) for p in expected]
    extras = {p.name for p in ours.values() if p.kind == p.KEYWORD_ONLY}
    assert extras == {"cached", "deterministic", "validate", "graph_cache"}
    # PyG's examples/gat.py: GATConv(in, hidden, heads, dropout=0.6)
    layer = GATConv(8, 4, 3, False, 0.1, 0.6, False)
    assert (layer.heads, layer.concat, layer.negative_slope) == (3, False, 0.1)
    assert (layer.dropout, layer.add_self_loops) == (0.6, False)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("loops", [True, False])
def test_plain_graph_with_self_loops_matches_pyg(path, loops):
    ei = torch.cat([directed_graph(10, 40, seed=1), torch.tensor([[3, 3], [3, 3]])], dim=1)
    x = torch.randn(10, 6, dtype=torch.float64)
    ours, theirs = pair(6, 4, heads=3, add_self_loops=loops, path=path)
    out, expected = ours(x, ei), theirs(x, ei)
    torch.testing.assert_close(out, expected)
    assert_same_grads(ours, theirs, out, expected)


@pytest.mark.skipif(not jit_available(), reason="numba is not available")
def test_a_large_graph_takes_the_large_graph_passes_and_matches_pyg(monkeypatch):
    """Dense input narrower than the heads' features, large enough (5000 x 4 x 32 float64,
    5 MB) for the attention products from xw differentiated through x
    (``projected_node_scores``) and the bias's compiled gradient (``add_bias_``)."""
    from gnnkit.nn import _gat_attend
    from gnnkit.ops import linear

    calls = []
    for module, name in [(_gat_attend, "projected_node_scores"), (linear, "column_sums")]:
        target = linear._kernels() if module is linear else module
        real = getattr(target, name)
        monkeypatch.setattr(
            target, name, lambda *a, real=real, name=name: calls.append(name) or real(*a)
        )
    ei = directed_graph(5000, 30000, seed=2)
    x = torch.randn(5000, 16, dtype=torch.float64)
    ours, theirs = pair(16, 32, heads=4, path="lean")
    ours.train(), theirs.train()  # attention dropout is 0: the same output in training
    out, expected = ours(x, ei), theirs(x, ei)
    torch.testing.assert_close(out, expected)
    assert_same_grads(ours, theirs, out, expected)
    assert sorted(set(calls)) == ["column_sums", "projected_node_scores"]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("channels", [6, (6, 4)])
@pytest.mark.parametrize("loops", [True, False])
def test_bipartite_input_matches_pyg(path, channels, loops):
    ei = bipartite_graph()
    x_src = torch.randn(7, 6, dtype=torch.float64)
    x_dst = torch.randn(5, channels if isinstance(channels, int) else channels[1])
    x_dst = x_dst.double()
    ours, theirs = pair(channels, 3, heads=2, add_self_loops=loops, path=path)
    out, expected = ours((x_src, x_dst), ei), theirs((x_src, x_dst), ei)
    assert out.shape == (5, 6)
    torch.testing.assert_close(out, expected)
    assert_same_grads(ours, theirs, out, expected)
    torch.testing.assert_close(ours((x_src, x_dst), ei, size=(7, 5)), expected)
    without_dst = theirs((x_src, None), ei, size=(7, 5))
    torch.testing.assert_close(ours((x_src, None), ei, size=(7, 5)), without_dst)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    ("edge_dim", "fill_value"),
    [(4, "mean"), (4, 0.5), (4, "add"), (4, "max"), (1, "mean"), (4, torch.arange(4.0))],
)
def test_edge_features_and_fill_value_match_pyg(path, edge_dim, fill_value):
    ei = torch.cat([directed_graph(10, 40, seed=2), torch.tensor([[5], [5]])], dim=1)
    x = torch.randn(10, 6, dtype=torch.float64)
    shape = (ei.size(1), edge_dim) if edge_dim > 1 else (ei.size(1),)
    edge_attr = torch.randn(*shape, dtype=torch.float64)
    if isinstance(fill_value, torch.Tensor):
        fill_value = fill_value.double()
    ours, theirs = pair(6, 4, heads=2, edge_dim=edge_dim, fill_value=fill_value, path=path)
    out, expected = ours(x, ei, edge_attr), theirs(x, ei, edge_attr)
    torch.testing.assert_close(out, expected)
    assert_same_grads(ours, theirs, out, expected)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("concat", [True, False])
def test_residual_matches_pyg(path, concat):
    ei = directed_graph(10, 40, seed=3)
    x = torch.randn(10, 6, dtype=torch.float64)
    ours, theirs = pair(6, 4, heads=2, concat=concat, residual=True, path=path)
    out, expected = ours(x, ei), theirs(x, ei)
    torch.testing.assert_close(out, expected)
    assert_same_grads(ours, theirs, out, expected)
    ours, theirs = pair((6, 3), 4, heads=2, concat=concat, residual=True, path=path)
    x_dst = torch.randn(5, 3, dtype=torch.float64)
    ei = bipartite_graph(10, 5, seed=4)
    torch.testing.assert_close(ours((x, x_dst), ei), theirs((x, x_dst), ei))


@pytest.mark.parametrize("path", PATHS)
def test_return_attention_weights_in_pygs_forms(path):
    ei = directed_graph(10, 40, seed=5)
    x = torch.randn(10, 6, dtype=torch.float64)
    ours, theirs = pair(6, 4, heads=2, path=path)
    out, (edges, alpha) = ours(x, ei, return_attention_weights=True)
    ref_out, (ref_edges, ref_alpha) = theirs(x, ei, return_attention_weights=True)
    torch.testing.assert_close(out, ref_out)
    assert torch.equal(edges, ref_edges)
    torch.testing.assert_close(alpha, ref_alpha)
    adj_t = to_torch_coo_tensor(ei, size=10).t().coalesce().to_sparse_csr()
    out, (adj, values) = ours(x, adj_t, return_attention_weights=True)
    _, (ref_adj, _) = theirs(x, adj_t, return_attention_weights=True)
    assert adj.layout == torch.sparse_csr and adj.shape == (10, 10, 2)
    torch.testing.assert_close(adj.to_dense(), ref_adj.to_dense())
    torch.testing.assert_close(values, adj.values())


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("layout", [torch.sparse_coo, torch.sparse_csr, torch.sparse_csc])
def test_adjacency_input_matches_edge_index(path, layout):
    ei = torch.unique(bipartite_graph(7, 5, seed=6), dim=1)  # an adjacency merges duplicates
    x_src, x_dst = torch.randn(7, 6, dtype=torch.float64), torch.randn(5, 6, dtype=torch.float64)
    adj_t = to_torch_coo_tensor(ei, size=(7, 5)).t().coalesce()
    if layout != torch.sparse_coo:
        adj_t = adj_t.to_sparse_csr() if layout == torch.sparse_csr else adj_t.to_sparse_csc()
    ours, theirs = pair(6, 3, heads=2, path=path)
    # Edge order differs (the adjacency's is row-major), so the results agree to rounding.
    torch.testing.assert_close(ours((x_src, x_dst), adj_t), theirs((x_src, x_dst), ei))
    with pytest.raises(InputError, match=r"size=\(7, 4\) disagrees"):
        ours((x_src, None), adj_t, size=(7, 4))


@pytest.mark.parametrize("path", PATHS)
def test_flow_target_to_source_matches_pyg(path):
    ei, x = directed_graph(10, 40, seed=7), torch.randn(10, 6).double()
    ours, theirs = pair(6, 4, heads=2, flow="target_to_source", path=path)
    out, expected = ours(x, ei), theirs(x, ei)
    torch.testing.assert_close(out, expected)
    assert_same_grads(ours, theirs, out, expected)
    bipartite, _ = pair((6, 6), 4, flow="target_to_source", path=path)
    with pytest.raises(InputError, match="flip edge_index and use the default flow"):
        bipartite((x, x), ei)


def test_lazy_channels_match_pyg():
    ei = bipartite_graph(7, 5, seed=8)
    x_src, x_dst = torch.randn(7, 6, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    ours = GATConv((-1, -1), 4, heads=2, add_self_loops=False).double()
    out = ours((x_src, x_dst), ei)
    theirs = pyg.GATConv((6, 3), 4, heads=2, add_self_loops=False).double()
    theirs.load_state_dict(ours.state_dict())
    torch.testing.assert_close(out, theirs((x_src, x_dst), ei))


def test_to_hetero_on_a_graph_with_edges_between_node_types():
    data = HeteroData()
    data["paper"].x = torch.randn(6, 5)
    data["author"].x = torch.randn(4, 3)
    data["author", "writes", "paper"].edge_index = torch.tensor([[0, 1, 2, 3, 3], [0, 1, 2, 3, 5]])
    data["paper", "rev_writes", "author"].edge_index = torch.tensor(
        [[0, 1, 2, 3, 5], [0, 1, 2, 3, 3]]
    )
    data["paper", "cites", "paper"].edge_index = torch.tensor([[0, 1, 2], [1, 2, 4]])

    class Net(torch.nn.Module):
        def __init__(self, conv):
            super().__init__()
            self.conv1 = conv((-1, -1), 8, add_self_loops=False)
            self.conv2 = conv((-1, -1), 4, add_self_loops=False)

        def forward(self, x, edge_index):
            return self.conv2(self.conv1(x, edge_index).relu(), edge_index)

    ours = pyg.to_hetero(Net(GATConv), data.metadata(), aggr="sum")
    out = ours(data.x_dict, data.edge_index_dict)
    theirs = pyg.to_hetero(Net(pyg.GATConv), data.metadata(), aggr="sum")
    theirs(data.x_dict, data.edge_index_dict)  # materialise the lazy weights
    theirs.load_state_dict(ours.state_dict())
    expected = theirs(data.x_dict, data.edge_index_dict)
    assert out.keys() == expected.keys() == {"paper", "author"}
    for key in out:
        torch.testing.assert_close(out[key], expected[key])


def test_pyg_features_gnnkit_refuses_say_so():
    ei = directed_graph(10, 40, seed=9)
    x = torch.randn(10, 6)
    layer = GATConv(6, 4, edge_dim=2)
    adj_t = to_torch_coo_tensor(ei, size=10).t()
    with pytest.raises(NotImplementedError, match="edge features with add_self_loops=True"):
        layer(x, adj_t, torch.randn(ei.size(1), 2))
    with pytest.raises(InputError, match=r"edge_attr must be \(\|E\|, edge_dim\)"):
        layer(x, ei, torch.randn(3, 2))
    with pytest.raises(TypeError, match=r"GATConv got unexpected keyword argument\(s\) 'cache'"):
        GATConv(6, 4, cache=True)


def test_attention_dropout_in_training_returns_the_dropped_coefficients():
    torch.manual_seed(0)
    ei = directed_graph(10, 40, seed=10)
    layer = GATConv(6, 4, heads=2, dropout=0.5).train()
    _, (_, alpha) = layer(torch.randn(10, 6), ei, return_attention_weights=True)
    assert (alpha == 0).any() and alpha.max() > 1.0  # kept ones are scaled by 1 / (1 - p)


def test_torch_compile_forward_and_backward_equal_eager_without_more_breaks_than_pyg():
    ei = directed_graph(10, 40, seed=11)
    x = torch.randn(10, 5, dtype=torch.float64)
    ours = GATConv(5, 3, heads=2).double()
    theirs = pyg.GATConv(5, 3, heads=2).double()
    theirs.load_state_dict(ours.state_dict())
    assert_compiles_like_pyg(ours, theirs, x, ei)
