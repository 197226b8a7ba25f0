"""gnnkit's GCNConv as a drop-in for PyG 2.8's: signature, inputs and MessagePassing semantics,
each checked against PyG's own layer with copied weights (the reference), on both of gnnkit's
paths (fused SpMM, and PyG's plain message/aggregate path with ``fuse = False``)."""

from __future__ import annotations

import inspect

import pytest
import torch
import torch_geometric.nn as pyg
from conv_checks import assert_compiles_like_pyg, directed_graph, paired_layers
from torch_geometric import EdgeIndex
from torch_geometric.utils import to_torch_coo_tensor

from gnnkit.errors import InputError
from gnnkit.nn import GCNConv
from gnnkit.ops._jit import jit_available

pytestmark = pytest.mark.usefixtures("one_thread")

PATHS = ["fused", "plain"]


def pair(*args, path="fused", **kwargs):
    """gnnkit's and PyG's layer with the same weights (float64)."""
    return paired_layers(GCNConv, pyg.GCNConv, *args, fused=path == "fused", **kwargs)


def graph_with_loops(num_nodes=10, seed=0):
    """A weighted directed graph where some nodes already have a self-loop."""
    ei = directed_graph(num_nodes, 40, seed=seed)
    loops = torch.tensor([[1, 4, 4], [1, 4, 4]])  # node 4 twice: the last one counts
    ei = torch.cat([ei, loops], dim=1)
    weight = torch.rand(ei.size(1), dtype=torch.float64) + 0.1
    return ei, weight


@pytest.mark.skipif(not jit_available(), reason="numba is not available")
def test_a_large_aggregate_first_layer_matches_pyg_with_its_bias(monkeypatch):
    """Fewer input than output channels: aggregated, then ``W x + b`` as ``F.linear``'s addmm
    into huge pages (8.7 MB of float64 output), the bias's gradient by the compiled sums."""
    from gnnkit.ops import linear

    calls = []
    kernels = linear._kernels()
    real = kernels.column_sums
    monkeypatch.setattr(kernels, "column_sums", lambda v: calls.append(v.shape) or real(v))
    ei = directed_graph(17000, 60000, seed=3)
    x = torch.randn(17000, 16, dtype=torch.float64)
    ours, theirs = pair(16, 64)
    out, expected = ours(x, ei), theirs(x, ei)
    assert type(out.grad_fn).__name__ == "_LargeLinearBackward"
    torch.testing.assert_close(out, expected)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, list(ours.parameters()), grad)
    want = torch.autograd.grad(expected, list(theirs.parameters()), grad)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)
    assert calls == [(17000, 64)]


def test_signature_is_pygs_with_gnnkit_extras_keyword_only():
    theirs = inspect.signature(pyg.GCNConv.__init__).parameters
    ours = inspect.signature(GCNConv.__init__).parameters
    positional = [p for p in ours.values() if p.kind == p.POSITIONAL_OR_KEYWORD]
    expected = [p for p in theirs.values() if p.kind == p.POSITIONAL_OR_KEYWORD]
    assert [(p.name, p.default) for p in positional] == [(p.name, p.default) for p in expected]
    extras = {p.name for p in ours.values() if p.kind == p.KEYWORD_ONLY}
    assert extras == {
        "self_loop_weight",
        "learn_self_loop_weight",
        "deterministic",
        "validate",
        "graph_cache",
    }


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"improved": True},
        {"add_self_loops": False},
        {"normalize": False},
        {"bias": False},
    ],
)
def test_options_match_pyg_on_a_graph_with_self_loops(options, path):
    ei, w = graph_with_loops()
    x = torch.randn(10, 6, dtype=torch.float64)
    ours, theirs = pair(6, 4, path=path, **options)
    if "improved" not in options:  # see test_improved_adds_weight_two_loops_without_weights_too
        torch.testing.assert_close(ours(x, ei), theirs(x, ei))
    torch.testing.assert_close(ours(x, ei, w), theirs(x, ei, w))


def test_improved_adds_weight_two_loops_without_weights_too():
    """A deliberate difference: PyG 2.8 drops improved=True's fill value when edge_weight is
    None (its add_remaining_self_loops has no weights to fill); gnnkit keeps A + 2I."""
    ei, _ = graph_with_loops()
    x = torch.randn(10, 6, dtype=torch.float64)
    ours, theirs = pair(6, 4, improved=True)
    ones = torch.ones(ei.size(1), dtype=torch.float64)
    torch.testing.assert_close(ours(x, ei), theirs(x, ei, ones))
    plain, _ = pair(6, 4)
    plain.load_state_dict(theirs.state_dict())
    torch.testing.assert_close(theirs(x, ei), plain(x, ei))  # PyG: improved had no effect


def test_positional_arguments_in_pygs_order():
    # GCNConv(in, out, improved, cached, add_self_loops, normalize, bias)
    layer = GCNConv(6, 4, True, True, False, True, False)
    assert layer.improved and layer.cached and not layer.add_self_loops
    assert layer.normalize and layer.bias is None


def test_improved_is_lambda_two_and_conflicts_are_errors():
    ei, w = graph_with_loops()
    x = torch.randn(10, 6, dtype=torch.float64)
    a = GCNConv(6, 4, improved=True).double()
    b = GCNConv(6, 4, self_loop_weight=2.0).double()
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(a(x, ei, w), b(x, ei, w))
    with pytest.raises(InputError, match="improved=True means self_loop_weight=2"):
        GCNConv(6, 4, improved=True, self_loop_weight=3.0)
    with pytest.raises(ValueError, match="does not support adding self-loops"):
        GCNConv(6, 4, normalize=False, add_self_loops=True)
    with pytest.raises(InputError, match="adds no self-loops"):
        GCNConv(6, 4, add_self_loops=False, self_loop_weight=3.0)


def test_unknown_keyword_names_the_layer_and_what_it_accepts():
    with pytest.raises(TypeError, match=r"GCNConv got unexpected keyword argument\(s\) 'heads'"):
        GCNConv(6, 4, heads=2)
    with pytest.raises(TypeError, match="it accepts in_channels, out_channels, improved"):
        GCNConv(6, 4, residual=True)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("layout", [torch.sparse_coo, torch.sparse_csr, torch.sparse_csc])
def test_torch_sparse_adjacency_matches_pyg(layout, path):
    ei, w = graph_with_loops(seed=3)
    x = torch.randn(10, 5, dtype=torch.float64)
    adj = to_torch_coo_tensor(ei, w, size=10)  # adj[src, dst]
    adj_t = adj.t().coalesce()
    if layout != torch.sparse_coo:
        adj_t = adj_t.to_sparse_csr() if layout == torch.sparse_csr else adj_t.to_sparse_csc()
    ours, theirs = pair(5, 3, path=path)
    # PyG's gcn_norm refuses CSC; its CSR form is the same matrix.
    reference_adj = adj.t().coalesce().to_sparse_csr() if layout != torch.sparse_coo else adj_t
    torch.testing.assert_close(ours(x, adj_t), theirs(x, reference_adj))
    with pytest.raises(InputError, match="adjacency's values are the edge weights"):
        ours(x, adj_t, w)


@pytest.mark.parametrize("path", PATHS)
def test_edge_index_subclass_input(path):
    ei, w = graph_with_loops(seed=4)
    x = torch.randn(10, 5, dtype=torch.float64)
    ours, theirs = pair(5, 3, path=path)
    index = EdgeIndex(ei, sparse_size=(10, 10))
    torch.testing.assert_close(ours(x, index, w), theirs(x, ei, w))


@pytest.mark.parametrize("path", PATHS)
def test_flow_target_to_source_matches_pyg(path):
    ei, w = graph_with_loops(seed=5)
    x = torch.randn(10, 5, dtype=torch.float64)
    ours, theirs = pair(5, 3, path=path, flow="target_to_source")
    out = ours(x, ei, w)
    torch.testing.assert_close(out, theirs(x, ei, w))
    # and it is the source_to_target layer on the flipped graph
    forward, _ = pair(5, 3, path=path)
    forward.load_state_dict(ours.state_dict())
    torch.testing.assert_close(out, forward(x, ei.flip(0), w))
    with pytest.raises(InputError, match=r"target_to_source.* is invalid with an adjacency"):
        ours(x, to_torch_coo_tensor(ei, w, size=10).t())


@pytest.mark.parametrize("path", PATHS)
def test_static_graph_features_match_pyg(path):
    ei, w = graph_with_loops(seed=6)
    x = torch.randn(3, 10, 5, dtype=torch.float64)
    for fin, fout in [(5, 3), (5, 8)]:  # transform first, aggregate first
        ours, theirs = pair(fin, fout, path=path)
        xx = torch.randn(3, 10, fin, dtype=torch.float64)
        out = ours(xx, ei, w)
        assert out.shape == (3, 10, fout)
        torch.testing.assert_close(out, theirs(xx, ei, w))
    ours, _ = pair(5, 3, path=path)
    with pytest.raises(InputError, match="static graphs"):
        ours(x.to_sparse(), ei)


def test_lazy_in_channels_match_pyg():
    ei, w = graph_with_loops(seed=7)
    x = torch.randn(10, 5, dtype=torch.float64)
    ours = GCNConv(-1, 3).double()
    out = ours(x, ei, w)
    theirs = pyg.GCNConv(5, 3).double()
    theirs.load_state_dict(ours.state_dict())
    torch.testing.assert_close(out, theirs(x, ei, w))
    assert repr(ours) == "GCNConv(-1, 3)"


def test_message_hooks_see_pygs_messages_and_decomposition_is_honoured():
    ei, _ = graph_with_loops(seed=8)
    x = torch.randn(10, 16, dtype=torch.float64)
    ours, theirs = pair(16, 32)
    seen = []
    ours.register_message_forward_pre_hook(lambda module, inputs: seen.append(inputs[0]["x_j"]))
    ours.register_aggregate_forward_hook(lambda module, inputs, out: seen.append(out))
    out = ours(x, ei)
    num_edges = ei.size(1) - 3 + 10  # loops replaced by one per node
    assert seen[0].shape == (num_edges, 32) and seen[1].shape == (10, 32)
    torch.testing.assert_close(out, theirs(x, ei))
    ours.decomposed_layers = 2
    seen.clear()
    torch.testing.assert_close(ours(x, ei), theirs(x, ei))
    assert [t.shape for t in seen[::2]] == [(num_edges, 16), (num_edges, 16)]


def test_torchscript_matches_eager():
    ei, w = graph_with_loops(seed=9)
    x = torch.randn(10, 5)
    for layer in [
        GCNConv(5, 3),
        GCNConv(5, 3, improved=True),
        GCNConv(5, 3, learn_self_loop_weight=True, self_loop_weight=1.5),
        GCNConv(5, 3, normalize=False),
        GCNConv(5, 3, flow="target_to_source"),
    ]:
        scripted = torch.jit.script(layer)
        torch.testing.assert_close(scripted(x, ei), layer(x, ei))
        torch.testing.assert_close(scripted(x, ei, w.float()), layer(x, ei, w.float()))


def test_pygs_cache_attributes_report_and_clear_the_cache():
    ei, w = graph_with_loops(seed=10)
    x = torch.randn(10, 5, dtype=torch.float64)
    ours, theirs = pair(5, 3, cached=True)
    assert ours._cached_edge_index is None
    ours(x, ei, w)
    cached_index, cached_weight = ours._cached_edge_index
    theirs(x, ei, w)
    ref_index, ref_weight = theirs._cached_edge_index
    assert torch.equal(cached_index, ref_index)
    torch.testing.assert_close(cached_weight, ref_weight)
    assert ours._cached_adj_t is None
    ours._cached_edge_index = None
    assert ours._cached_edge_index is None
    with pytest.raises(InputError, match="can only be cleared"):
        ours._cached_edge_index = (ei, w)


def test_tuple_input_is_refused_as_pyg_does():
    ours, _ = pair(5, 3)
    x = torch.randn(10, 5, dtype=torch.float64)
    with pytest.raises(ValueError, match="does not support bipartite message passing"):
        ours((x, x), directed_graph(10))


def test_torch_compile_forward_and_backward_equal_eager_without_more_breaks_than_pyg():
    ei, w = graph_with_loops(seed=11)
    x, w = torch.randn(10, 5), w.float()
    ours = GCNConv(5, 3)
    theirs = pyg.GCNConv(5, 3)
    theirs.load_state_dict(ours.state_dict())
    assert_compiles_like_pyg(ours, theirs, x, ei, w)


@pytest.mark.parametrize("layer_cls", ["gcn", "gat"])
def test_structure_is_reused_while_the_graph_is_unchanged_and_rebuilt_when_it_changes(layer_cls):
    from gnnkit.nn import GATConv

    ei, _ = graph_with_loops(seed=12)
    x = torch.randn(10, 5, dtype=torch.float64)
    make = (lambda: GCNConv(5, 3)) if layer_cls == "gcn" else (lambda: GATConv(5, 3, heads=2))
    layer = make().double()  # cached=False: PyG recomputes everything per call
    layer(x, ei)
    entry = layer._cache.value
    assert entry is not None
    layer(x, ei.clone())  # equal contents: the structure is reused
    assert layer._cache.value is entry
    ei[0, 0] = (ei[0, 0] + 1) % 10  # an in-place change: rebuilt, never stale
    out = layer(x, ei)
    assert layer._cache.value is not entry
    fresh = make().double()
    fresh.load_state_dict(layer.state_dict())
    torch.testing.assert_close(out, fresh(x, ei))
