"""GATConv against a dense masked-softmax reference, PyG, its plain path, and its properties."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conv_checks import assert_inference_cache_serves_training, directed_graph
from torch_geometric.nn import GATConv as PygGATConv

from gnnkit import ops
from gnnkit.errors import InputError
from gnnkit.nn import GATConv

pytestmark = pytest.mark.usefixtures("one_thread")


def make_layer(fin, fout, seed=0, dtype=torch.float64, **kwargs):
    torch.manual_seed(seed)
    layer = GATConv(fin, fout, **kwargs).to(dtype)
    if layer.bias is not None:
        with torch.no_grad():
            layer.bias.normal_()
    return layer


def dense_gat(x, edge_index, layer, add_self_loops=True):
    """The paper's attention, written densely: a masked row softmax per head."""
    n, heads, c = x.size(0), layer.heads, layer.out_channels
    mask = torch.zeros(n, n, dtype=torch.bool)
    mask[edge_index[1], edge_index[0]] = True  # row i attends over senders j (edge j -> i)
    if add_self_loops:
        mask |= torch.eye(n, dtype=torch.bool)
    outputs = []
    for h in range(heads):
        w_h = layer.lin.weight[h * c : (h + 1) * c]  # (C, F_in)
        hx = x @ w_h.t()  # (N, C)
        a_src, a_dst = layer.att_src[0, h], layer.att_dst[0, h]
        # e[i, j] = LeakyReLU(a_dst . W x_i + a_src . W x_j)
        e = F.leaky_relu((hx @ a_dst)[:, None] + (hx @ a_src)[None, :], layer.negative_slope)
        e = e.masked_fill(~mask, float("-inf"))
        alpha = torch.softmax(e, dim=1).nan_to_num(0.0)  # rows without any edge -> 0
        outputs.append(alpha @ hx)
    out = torch.cat(outputs, dim=1) if layer.concat else torch.stack(outputs).mean(0)
    return out + (layer.bias if layer.bias is not None else 0.0)


# --- references ----------------------------------------------------------------------------------


@pytest.mark.parametrize("heads", [1, 3])
@pytest.mark.parametrize("concat", [True, False])
@pytest.mark.parametrize("add_self_loops", [True, False])
def test_gat_equals_dense_masked_softmax_reference(heads, concat, add_self_loops):
    edge_index = directed_graph(seed=heads)
    x = torch.randn(12, 5, dtype=torch.float64)
    layer = make_layer(5, 4, heads=heads, concat=concat, add_self_loops=add_self_loops)
    expected = dense_gat(x, edge_index, layer, add_self_loops)
    torch.testing.assert_close(layer(x, edge_index), expected)
    layer.fuse = False
    torch.testing.assert_close(layer(x, edge_index), expected)


@pytest.mark.parametrize("heads", [1, 4])
@pytest.mark.parametrize("concat", [True, False])
def test_gat_equals_pyg_with_copied_weights(heads, concat):
    edge_index = directed_graph(seed=5, loops=True)  # existing loops are replaced, as in PyG
    x = torch.randn(12, 6)
    pyg = PygGATConv(6, 5, heads=heads, concat=concat)
    torch.nn.init.normal_(pyg.bias)
    ours = GATConv(6, 5, heads=heads, concat=concat)
    ours.load_state_dict(pyg.state_dict())
    torch.testing.assert_close(ours(x, edge_index), pyg(x, edge_index), atol=1e-5, rtol=1e-5)
    _, (pyg_edges, pyg_alpha) = pyg(x, edge_index, return_attention_weights=True)
    edges, alpha = ours.attention(x, edge_index)
    assert torch.equal(edges, pyg_edges)
    torch.testing.assert_close(alpha, pyg_alpha, atol=1e-5, rtol=1e-5)


def test_gat_without_self_loops_equals_pyg():
    edge_index = directed_graph(seed=6)
    x = torch.randn(12, 6)
    pyg = PygGATConv(6, 3, heads=2, add_self_loops=False)
    ours = GATConv(6, 3, heads=2, add_self_loops=False)
    ours.load_state_dict(pyg.state_dict())
    torch.testing.assert_close(ours(x, edge_index), pyg(x, edge_index), atol=1e-5, rtol=1e-5)


def test_state_dict_names_match_pyg():
    assert set(GATConv(3, 4, heads=2).state_dict()) == set(PygGATConv(3, 4, heads=2).state_dict())


# --- lean path == plain path ---------------------------------------------------------------------


@pytest.mark.parametrize(("heads", "concat"), [(1, True), (3, True), (3, False)])
def test_lean_path_equals_plain_path_in_values_and_gradients(heads, concat):
    edge_index = directed_graph(20, 90, seed=7, loops=True)
    layer = make_layer(6, 4, heads=heads, concat=concat)
    x = torch.randn(20, 6, dtype=torch.float64, requires_grad=True)
    results = []
    for fuse in (True, False):
        layer.fuse = fuse
        out = layer(x, edge_index)
        grads = torch.autograd.grad(out.sin().sum(), [x, *layer.parameters()])
        results.append((out, *grads))
    for lean, plain in zip(*results, strict=True):
        torch.testing.assert_close(lean, plain)


def test_gradcheck_lean_and_plain_paths():
    edge_index = directed_graph(7, 20, seed=8, loops=True)
    layer = make_layer(3, 2, heads=2)
    x = torch.randn(7, 3, dtype=torch.float64, requires_grad=True)
    params = dict(layer.named_parameters())
    names = list(params)

    def run(x, *values):
        return torch.func.functional_call(
            layer, dict(zip(names, values, strict=True)), (x, edge_index)
        )

    for fuse in (True, False):
        layer.fuse = fuse
        assert torch.autograd.gradcheck(run, (x, *params.values()))


# --- attention API ---------------------------------------------------------------------------------


def test_attention_sums_to_one_per_node_and_ignores_dropout():
    edge_index = directed_graph(seed=9)
    x = torch.randn(12, 5, dtype=torch.float64)
    layer = make_layer(5, 3, heads=2, dropout=0.5)
    layer.train()
    edges, alpha = layer.attention(x, edge_index)
    assert alpha.shape == (edges.size(1), 2) and not alpha.requires_grad
    sums = torch.zeros(12, 2, dtype=torch.float64).index_add_(0, edges[1], alpha)
    torch.testing.assert_close(sums, torch.ones(12, 2, dtype=torch.float64))
    layer.eval()
    torch.testing.assert_close(layer.attention(x, edge_index)[1], alpha)
    layer.fuse = False
    torch.testing.assert_close(layer.attention(x, edge_index)[1], alpha)


def test_attention_dropout_only_in_training_and_reproducible():
    edge_index = directed_graph(seed=10)
    x = torch.randn(12, 5, dtype=torch.float64)
    layer = make_layer(5, 3, heads=2, dropout=0.5)
    layer.eval()
    clean = layer(x, edge_index)
    layer.train()
    torch.manual_seed(1)
    noisy = layer(x, edge_index)
    torch.manual_seed(1)
    assert torch.equal(layer(x, edge_index), noisy)
    assert not torch.allclose(noisy, clean)
    layer.dropout = 0.0
    torch.testing.assert_close(layer(x, edge_index), clean)


# --- properties ----------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["coo", "csr"])
def test_sparse_features_equal_dense_features(layout):
    edge_index = directed_graph(seed=11)
    dense = torch.randn(12, 9, dtype=torch.float64) * (torch.rand(12, 9) < 0.3)
    sparse = dense.to_sparse() if layout == "coo" else dense.to_sparse_csr()
    layer = make_layer(9, 4, heads=2)
    out_dense = layer(dense, edge_index)
    grads_dense = torch.autograd.grad(out_dense.sum(), list(layer.parameters()))
    out_sparse = layer(sparse, edge_index)
    grads_sparse = torch.autograd.grad(out_sparse.sum(), list(layer.parameters()))
    torch.testing.assert_close(out_sparse, out_dense)
    for got, want in zip(grads_sparse, grads_dense, strict=True):
        torch.testing.assert_close(got, want)


def test_permutation_equivariance():
    edge_index = directed_graph(seed=12)
    x = torch.randn(12, 5, dtype=torch.float64)
    layer = make_layer(5, 3, heads=2)
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(12))
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(12)
    torch.testing.assert_close(layer(x[perm], inverse[edge_index]), layer(x, edge_index)[perm])


def test_deterministic_runs_are_bit_identical_and_match_default_mode():
    edge_index = directed_graph(80, 900, seed=13)
    x = torch.randn(80, 16)
    layer = GATConv(16, 8, heads=4, deterministic=True)
    runs = []
    for _ in range(2):
        out = layer(x, edge_index)
        runs.append((out, *torch.autograd.grad(out.square().sum(), list(layer.parameters()))))
    for first, second in zip(*runs, strict=True):
        assert torch.equal(first, second)
    layer.deterministic = False
    torch.testing.assert_close(layer(x, edge_index), runs[0][0])


def test_huge_scores_stay_finite():
    edge_index = directed_graph(seed=14)
    layer = make_layer(5, 3, heads=2)
    with torch.no_grad():
        layer.att_src.mul_(1e4)
        layer.att_dst.mul_(1e4)
    x = torch.randn(12, 5, dtype=torch.float64) * 100
    out = layer(x, edge_index)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, dense_gat(x, edge_index, layer))


def test_empty_graph_and_zero_nodes():
    layer = make_layer(4, 3, heads=2)
    x = torch.randn(5, 4, dtype=torch.float64)
    out = layer(x, torch.zeros(2, 0, dtype=torch.long))
    # Only self-loops: every node attends to itself with weight 1.
    torch.testing.assert_close(out, x @ layer.lin.weight.t() + layer.bias)
    assert layer(
        torch.zeros(0, 4, dtype=torch.float64), torch.zeros(2, 0, dtype=torch.long)
    ).shape == (0, 6)


def test_isolated_nodes_give_finite_output():
    edge_index = torch.tensor([[0, 1], [1, 0]])  # nodes 2, 3 isolated
    x = torch.randn(4, 3, dtype=torch.float64)
    with_loops = make_layer(3, 2, heads=2)
    out = with_loops(x, edge_index)
    torch.testing.assert_close(out[2:], x[2:] @ with_loops.lin.weight.t() + with_loops.bias)
    without = make_layer(3, 2, heads=2, add_self_loops=False)
    for fuse in (True, False):
        without.fuse = fuse
        out = without(x, edge_index)
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out[2:], without.bias.expand(2, 4))


def test_cache_is_reused_and_detects_a_changed_graph():
    edge_index = directed_graph(seed=15)
    x = torch.randn(12, 4, dtype=torch.float64)
    cached = make_layer(4, 3, heads=2, cached=True)
    fresh = make_layer(4, 3, heads=2)
    torch.testing.assert_close(cached(x, edge_index), fresh(x, edge_index))
    entry = cached._cache.value
    cached(x, edge_index.clone())
    assert cached._cache.value is entry
    edge_index[1] = torch.roll(edge_index[1], 3)  # in place
    torch.testing.assert_close(cached(x, edge_index), fresh(x, edge_index))
    assert cached._cache.value is not entry


@pytest.mark.parametrize("features", ["dense", "csr", "coo"])
@pytest.mark.parametrize("fuse", [True, False])
def test_cache_filled_under_inference_mode_serves_a_later_training_step(features, fuse):
    edge_index = directed_graph(seed=18)
    dense = torch.randn(12, 5, dtype=torch.float64) * (torch.rand(12, 5) < 0.6)
    x = {"dense": dense, "csr": dense.to_sparse_csr(), "coo": dense.to_sparse()}[features]
    cached = make_layer(5, 3, heads=2, cached=True)
    fresh = make_layer(5, 3, heads=2)
    cached.fuse = fresh.fuse = fuse
    assert_inference_cache_serves_training(cached, fresh, x, dense, edge_index)


@pytest.mark.parametrize("fuse", [True, False])
def test_attention_dropout_is_unbiased_and_scaled_like_f_dropout(fuse):
    # F.dropout's semantics: each coefficient kept with probability 1 - p and scaled by
    # 1 / (1 - p), so the output averaged over draws is the output without dropout (the
    # layer is linear in the coefficients), and no draw is the clean output.
    edge_index = directed_graph(8, 20, seed=19)
    x = torch.randn(8, 4, dtype=torch.float64)
    layer = make_layer(4, 3, heads=2, dropout=0.4)
    layer.fuse = fuse
    layer.eval()
    clean = layer(x, edge_index)
    layer.train()
    torch.manual_seed(19)
    draws = torch.stack([layer(x, edge_index) for _ in range(3000)])
    spread = (draws - clean).abs().amax(0)
    assert (spread > 1e-3).all()  # every output changes under dropout
    mean = draws.mean(0)
    standard_error = draws.std(0) / 3000**0.5
    assert ((mean - clean).abs() < 5 * standard_error + 1e-9).all()
    # With p = 0.4 the coefficients of a draw are 0 or alpha / 0.6: a node whose coefficients
    # are all kept gets exactly (clean - bias) / 0.6 + bias for that head.
    scaled = (clean - layer.bias) / 0.6 + layer.bias
    hits = ((draws - scaled).abs() < 1e-9).sum(0)
    assert (hits > 0).any()


@pytest.mark.skipif(not ops.torch_scatter_available(), reason="torch_scatter is not installed")
def test_backends_agree():
    edge_index = directed_graph(seed=16, loops=True)
    x = torch.randn(12, 6)
    layer = GATConv(6, 4, heads=3)
    outputs = []
    for name in ("torch", "torch_scatter"):
        with ops.use_backend(name):
            for fuse in (True, False):
                layer.fuse = fuse
                outputs.append(layer(x, edge_index))
    for out in outputs[1:]:
        torch.testing.assert_close(out, outputs[0])


# --- bad inputs ------------------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors():
    layer = GATConv(3, 2, heads=2)
    x = torch.randn(4, 3)
    edge_index = torch.tensor([[0, 1, 2], [1, 2, 3]])
    cases = [
        ((x.long(), edge_index), "must be floating point"),
        (
            (torch.randn(4, 5), edge_index),
            "5 features per node but GATConv was built with in_channels=3",
        ),
        ((x, edge_index.float()), "must hold integer node indices"),
        (
            (x, torch.tensor([[0, 1], [1, 9]])),
            "refers to node 9, but the features have only 4 rows",
        ),
        ((x, torch.tensor([[0, 1, 2]])), r"must have shape \(2, \|E\|\)"),
        ((torch.full((4, 3), float("inf")), edge_index), "NaN or infinite"),
        (((x, None), edge_index), r"x_dst is None, so .* pass size="),
        (((x, torch.randn(3, 3)), edge_index), "refers to node 3, but the features have only 3"),
        ((x, edge_index, None, (5, 4)), "the graph has 5 source nodes .* features have 4"),
        ((x, edge_index, None, (4,)), r"size must be \(num_src_nodes, num_dst_nodes\)"),
        ((x.double(), edge_index), "convert x"),
    ]
    for args, message in cases:
        with pytest.raises(InputError, match=message):
            layer(*args)
    with pytest.raises(InputError, match="refers to node 7"):
        layer.attention(x, torch.tensor([[0], [7]]))


def test_bad_constructor_arguments():
    cases = [
        ({"heads": 0}, "heads must be a positive int"),
        ({"dropout": 1.0}, r"dropout must be a number in \[0, 1\)"),
        ({"dropout": -0.1}, r"dropout must be a number in \[0, 1\)"),
        ({"negative_slope": "0.2"}, "negative_slope must be a finite number"),
        ({"negative_slope": float("nan")}, "negative_slope must be a finite number, got nan"),
        ({"negative_slope": float("inf")}, "negative_slope must be a finite number, got inf"),
        ({"concat": 1}, "concat must be True or False"),
        ({"add_self_loops": None}, "add_self_loops must be True or False"),
        ({"deterministic": "no"}, "deterministic must be"),
        ({"aggr": "max"}, "aggr must be 'add'"),
    ]
    for kwargs, message in cases:
        with pytest.raises(InputError, match=message):
            GATConv(3, 2, **kwargs)
    with pytest.raises(InputError, match=r"in_channels must be a positive int or -1"):
        GATConv(-2, 2)
    with pytest.raises(InputError, match="fill_value must be"):
        GATConv(3, 2, fill_value="median")
    with pytest.raises(InputError, match="edge_dim must be a positive int"):
        GATConv(3, 2, edge_dim=0)
    with pytest.raises(
        TypeError,
        match=r"GATConv got unexpected keyword argument\(s\) 'improved'; it accepts in_channels, .*residual",
    ):
        GATConv(3, 2, improved=True)


def test_repr_is_pygs_plus_gnnkit_extras_away_from_their_defaults():
    assert repr(GATConv(3, 2, heads=4, concat=False, dropout=0.6)) == "GATConv(3, 2, heads=4)"
    assert repr(GATConv((3, 5), 2)) == "GATConv((3, 5), 2, heads=1)"
    assert repr(GATConv(3, 2, cached=True, validate=False)) == (
        "GATConv(3, 2, heads=1, cached=True, validate=False)"
    )


# --- CUDA ----------------------------------------------------------------------------------------


@pytest.mark.cuda
def test_cuda_equals_cpu_and_deterministic_mode_is_bit_identical():
    edge_index = directed_graph(300, 4000, seed=17)
    x = torch.randn(300, 16)
    layer = GATConv(16, 8, heads=4)
    expected = layer(x, edge_index)
    layer_c = layer.cuda()
    torch.testing.assert_close(
        layer_c(x.cuda(), edge_index.cuda()).cpu(), expected, rtol=1e-4, atol=1e-4
    )
    layer_c.deterministic = True
    runs = []
    for _ in range(2):
        out = layer_c(x.cuda(), edge_index.cuda())
        runs.append((out, *torch.autograd.grad(out.square().sum(), list(layer_c.parameters()))))
    for first, second in zip(*runs, strict=True):
        assert torch.equal(first, second)


def test_edge_features_of_the_wrong_shape_dtype_or_value_are_named():
    # Each used to reach torch's matmul (a raw shape or dtype error) or pass NaN through.
    x, edge_index = torch.randn(4, 4), torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]])
    conv = GATConv(4, 3, edge_dim=2)
    cases = [
        (torch.randn(4, 3), r"edge_attr must be \(\|E\|, edge_dim\) = \(4, 2\), got \(4, 3\)"),
        (torch.randn(4), r"= \(4, 2\), got \(4,\)"),
        (torch.randn(5, 2), r"= \(4, 2\), got \(5, 2\)"),
        (torch.randn(4, 2).double(), r"edge_attr is torch\.float64 but the layer's weights are"),
        (torch.ones(4, 2, dtype=torch.long), r"floating-point tensor .* got torch\.int64"),
        (torch.full((4, 2), float("nan")), r"edge_attr holds 8 NaN or infinite value\(s\)"),
    ]
    for attr, message in cases:
        with pytest.raises(InputError, match=message):
            conv(x, edge_index, attr)
    attr = torch.randn(4, 2)
    reference = conv(x, edge_index, attr)  # valid: accepted, and (E,) for edge_dim=1
    assert reference.shape == (4, 3) and torch.isfinite(reference).all()
    assert GATConv(4, 3, edge_dim=1)(x, edge_index, torch.randn(4)).shape == (4, 3)
