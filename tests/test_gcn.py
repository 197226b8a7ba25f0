"""GCNConv and gcn_norm against a dense reference, PyG, and their own properties."""

from __future__ import annotations

import functools

import pytest
import torch
from conv_checks import assert_inference_cache_serves_training, directed_graph
from torch_geometric.nn import GCNConv as PygGCNConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm as pyg_gcn_norm

from gnnkit import adjacency, ops
from gnnkit.errors import InputError
from gnnkit.nn import GCNConv, _gcn_graph, gcn_norm, sparse_dropout, sparse_linear, sparse_structure
from gnnkit.nn._cache import GraphCache
from gnnkit.nn.functional import dropout as dense_dropout
from gnnkit.ops.csr import CSRGraph

LAMBDAS = [0.5, 1.0, 2.0, 3.7]


pytestmark = pytest.mark.usefixtures("one_thread")


def dense_gcn(x, edge_index, weight, bias, lam, edge_weight=None):
    """D^-1/2 (A + lam I) D^-1/2 X W^T + b with A[target, source] = edge weight (no loops)."""
    n = x.size(0)
    values = (
        edge_weight if edge_weight is not None else torch.ones(edge_index.size(1), dtype=x.dtype)
    )
    a = torch.zeros(n, n, dtype=x.dtype)
    a[edge_index[1], edge_index[0]] = values
    a_tilde = a + lam * torch.eye(n, dtype=x.dtype)
    degree = a_tilde.sum(1)  # in-degree on the target, self-loop included
    d = torch.diag(degree.pow(-0.5))
    return d @ a_tilde @ d @ x @ weight.t() + bias


def make_layer(in_channels, out_channels, seed=0, dtype=torch.float64, **kwargs):
    torch.manual_seed(seed)
    layer = GCNConv(in_channels, out_channels, **kwargs).to(dtype)
    with torch.no_grad():
        layer.bias.normal_()  # non-zero bias, so the test sees it
    return layer


# --- the dense reference -------------------------------------------------------------------------


@pytest.mark.parametrize("lam", LAMBDAS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize(("fin", "fout"), [(6, 3), (3, 7)])  # transform-first, aggregate-first
def test_gcn_equals_dense_reference_on_directed_graph(lam, weighted, fin, fout):
    edge_index = directed_graph(seed=int(lam * 10))
    x = torch.randn(12, fin, dtype=torch.float64)
    edge_weight = torch.rand(edge_index.size(1), dtype=torch.float64) + 0.1 if weighted else None
    layer = make_layer(fin, fout, self_loop_weight=lam)
    expected = dense_gcn(x, edge_index, layer.lin.weight, layer.bias, lam, edge_weight)
    torch.testing.assert_close(layer(x, edge_index, edge_weight), expected)
    layer.fuse = False  # PyG's plain message path
    torch.testing.assert_close(layer(x, edge_index, edge_weight), expected)


@pytest.mark.parametrize("lam", LAMBDAS)
def test_gcn_norm_matches_gnnkit_adjacency(lam):
    edge_index = directed_graph(seed=3)
    edge_weight = torch.rand(edge_index.size(1), dtype=torch.float64)
    ei, w = gcn_norm(edge_index, edge_weight, 12, self_loop_weight=lam)
    dense = torch.zeros(12, 12, dtype=torch.float64).index_put_((ei[1], ei[0]), w, accumulate=True)
    reference = adjacency(
        edge_index, 12, edge_weight=edge_weight, self_loop_weight=lam, normalize="sym"
    )
    torch.testing.assert_close(dense, reference)


def test_existing_self_loops_keep_their_weight():
    # Node 1 has a self-loop of weight 5: it is kept (not replaced, not added to) whatever lambda.
    edge_index = torch.tensor([[0, 1, 1, 2], [1, 1, 2, 0]])
    edge_weight = torch.tensor([1.0, 5.0, 2.0, 3.0], dtype=torch.float64)
    ei, w = gcn_norm(edge_index, edge_weight, 3, self_loop_weight=2.0)
    dense = torch.zeros(3, 3, dtype=torch.float64).index_put_((ei[1], ei[0]), w, accumulate=True)
    a_tilde = torch.tensor([[2.0, 0, 3], [1, 5, 0], [0, 2, 2]], dtype=torch.float64)
    inv = a_tilde.sum(1).pow(-0.5)
    torch.testing.assert_close(dense, inv[:, None] * a_tilde * inv[None, :])
    # Unweighted graphs: an existing loop has weight 1, as in PyG.
    _, w_unweighted = gcn_norm(edge_index, None, 3, self_loop_weight=2.0, dtype=torch.float64)
    _, w_ones = gcn_norm(edge_index, torch.ones(4, dtype=torch.float64), 3, self_loop_weight=2.0)
    torch.testing.assert_close(w_unweighted, w_ones)


# --- PyG interoperability ------------------------------------------------------------------------


@pytest.mark.parametrize("improved", [False, True])
def test_gcn_norm_equals_pyg(improved):
    edge_index = directed_graph(seed=4, loops=True)
    edge_weight = torch.rand(edge_index.size(1))
    ours = gcn_norm(edge_index, edge_weight, 12, self_loop_weight=2.0 if improved else 1.0)
    theirs = pyg_gcn_norm(edge_index, edge_weight, 12, improved=improved)
    assert torch.equal(ours[0], theirs[0])
    torch.testing.assert_close(ours[1], theirs[1])


def assert_equals_pyg(ours, pyg, x, edge_index, pyg_unweighted=None):
    """``ours``, given ``pyg``'s weights, computes what ``pyg`` does: without edge weights (PyG
    then gets ``pyg_unweighted``) and with random ones."""
    ours.load_state_dict(pyg.state_dict())
    close = functools.partial(torch.testing.assert_close, atol=1e-5, rtol=1e-5)
    close(ours(x, edge_index), pyg(x, edge_index, pyg_unweighted))
    weights = torch.rand(edge_index.size(1))
    close(ours(x, edge_index, weights), pyg(x, edge_index, weights))


@pytest.mark.parametrize(("fin", "fout"), [(8, 4), (4, 8)])
def test_gcn_equals_pyg_with_copied_weights(fin, fout):
    edge_index = directed_graph(seed=5, loops=True)
    pyg = PygGCNConv(fin, fout)
    torch.nn.init.normal_(pyg.bias)
    assert_equals_pyg(GCNConv(fin, fout), pyg, torch.randn(12, fin), edge_index)


def test_self_loop_weight_two_equals_pyg_improved():
    # PyG 2.8 applies improved=True only when edge weights are given (without them it fills
    # every weight, loops included, with 1), so compare with explicit unit weights.
    edge_index = directed_graph(seed=6)
    ours, pyg = GCNConv(5, 3, self_loop_weight=2.0), PygGCNConv(5, 3, improved=True)
    ones = torch.ones(edge_index.size(1))
    assert_equals_pyg(ours, pyg, torch.randn(12, 5), edge_index, pyg_unweighted=ones)


def test_normalize_false_equals_pyg():
    edge_index = directed_graph(seed=7)
    ours, pyg = GCNConv(5, 3, normalize=False), PygGCNConv(5, 3, normalize=False)
    assert_equals_pyg(ours, pyg, torch.randn(12, 5), edge_index)


def test_state_dict_names_match_pyg():
    assert set(GCNConv(3, 4).state_dict()) == set(PygGCNConv(3, 4).state_dict())
    assert "raw_self_loop_weight" in GCNConv(3, 4, learn_self_loop_weight=True).state_dict()


# --- gradients -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("fin", "fout"), [(5, 3), (3, 5)])
def test_gradcheck_inputs_and_parameters(fin, fout):
    edge_index = directed_graph(8, 24, seed=8)
    layer = make_layer(fin, fout)
    x = torch.randn(8, fin, dtype=torch.float64, requires_grad=True)
    w = (torch.rand(edge_index.size(1), dtype=torch.float64) + 0.1).requires_grad_()
    params = dict(layer.named_parameters())

    def run(x, w, weight, bias):
        state = {"lin.weight": weight, "bias": bias}
        return torch.func.functional_call(layer, state, (x, edge_index, w))

    assert torch.autograd.gradcheck(run, (x, w, params["lin.weight"], params["bias"]))


def test_gradcheck_learned_self_loop_weight():
    edge_index = directed_graph(8, 24, seed=9)
    layer = make_layer(4, 3, self_loop_weight=1.5, learn_self_loop_weight=True)
    x = torch.randn(8, 4, dtype=torch.float64)
    raw = layer.raw_self_loop_weight.detach().clone().requires_grad_()

    def run(raw):
        return torch.func.functional_call(layer, {"raw_self_loop_weight": raw}, (x, edge_index))

    assert torch.autograd.gradcheck(run, (raw,))


def test_learned_self_loop_weight_starts_at_its_value_stays_positive_and_learns():
    edge_index = directed_graph(seed=10)
    layer = make_layer(4, 3, self_loop_weight=3.7, learn_self_loop_weight=True, cached=True)
    assert float(layer.self_loop_weight.detach()) == pytest.approx(3.7)
    x = torch.randn(12, 4, dtype=torch.float64)
    expected = dense_gcn(x, edge_index, layer.lin.weight, layer.bias, 3.7)
    torch.testing.assert_close(layer(x, edge_index), expected)
    optimizer = torch.optim.SGD([layer.raw_self_loop_weight], lr=50.0)
    for _ in range(3):  # cached structure, fresh weights every step (backward works each time)
        optimizer.zero_grad()
        layer(x, edge_index).square().sum().backward()
        assert layer.raw_self_loop_weight.grad is not None and layer.raw_self_loop_weight.grad != 0
        optimizer.step()
    assert float(layer.self_loop_weight.detach()) > 0 and float(
        layer.self_loop_weight.detach()
    ) != pytest.approx(3.7)
    layer.reset_parameters()
    assert float(layer.self_loop_weight.detach()) == pytest.approx(3.7)


# --- sparse features and sparse dropout ----------------------------------------------------------


@pytest.mark.parametrize("layout", ["coo", "csr"])
def test_sparse_features_equal_dense_features(layout):
    edge_index = directed_graph(seed=11)
    dense = torch.randn(12, 9, dtype=torch.float64) * (torch.rand(12, 9) < 0.3)
    sparse = dense.to_sparse() if layout == "coo" else dense.to_sparse_csr()
    for fin, fout in [(9, 4), (9, 16)]:
        layer = make_layer(fin, fout)
        out_dense = layer(dense, edge_index)
        grad_dense = torch.autograd.grad(out_dense.sum(), layer.lin.weight)[0]
        out_sparse = layer(sparse, edge_index)
        grad_sparse = torch.autograd.grad(out_sparse.sum(), layer.lin.weight)[0]
        torch.testing.assert_close(out_sparse, out_dense)
        torch.testing.assert_close(grad_sparse, grad_dense)


def sparse_matrix(rows=30, cols=20, density=0.2, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    keep = torch.rand(rows, cols, generator=gen) < density
    return torch.randn(rows, cols, generator=gen, dtype=dtype) * keep


def to_layout(dense, layout):
    return dense.to_sparse() if layout == "coo" else dense.to_sparse_csr()


@pytest.mark.parametrize("layout", ["coo", "csr"])
def test_sparse_linear_equals_dense_autograd(layout):
    dense = sparse_matrix(seed=21)
    weight = torch.randn(6, 20, dtype=torch.float64, requires_grad=True)
    reference = dense.clone().requires_grad_()
    expected = reference @ weight.t()
    expected_grads = torch.autograd.grad(expected.sin().sum(), (weight, reference))
    x = to_layout(dense, layout).requires_grad_()  # gradients w.r.t. the stored values too
    out = sparse_linear(x, weight)
    out.sin().sum().backward()
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(weight.grad, expected_grads[0])
    assert x.grad.layout == x.layout
    # The gradient of a sparse input lives on its stored entries, as with torch.sparse.mm.
    torch.testing.assert_close(x.grad.to_dense(), expected_grads[1] * (dense != 0))
    # Without a gradient for the values only the weight's is computed.
    (grad,) = torch.autograd.grad(sparse_linear(to_layout(dense, layout), weight).sum(), weight)
    torch.testing.assert_close(grad, torch.ones(30, 6, dtype=torch.float64).t() @ dense)


@pytest.mark.parametrize("layout", ["coo", "csr"])
def test_sparse_linear_gradcheck_weight_and_values(layout):
    x = to_layout(sparse_matrix(9, 7, 0.3, seed=22), layout)
    indices = (x.crow_indices(), x.col_indices()) if layout == "csr" else (x.indices(),)
    values = x.values().clone().requires_grad_()
    weight = torch.randn(4, 7, dtype=torch.float64, requires_grad=True)

    def run(values, weight):
        if layout == "csr":
            matrix = torch.sparse_csr_tensor(*indices, values, (9, 7), check_invariants=True)
        else:
            matrix = torch.sparse_coo_tensor(
                *indices, values, (9, 7), is_coalesced=True, check_invariants=True
            )
        return sparse_linear(matrix, weight)

    assert torch.autograd.gradcheck(run, (values, weight))


def test_sparse_linear_uncoalesced_coo_and_hybrid_fallback():
    indices = torch.tensor([[0, 2, 0, 1], [1, 0, 1, 2]])  # (0, 1) stored twice
    values = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    x = torch.sparse_coo_tensor(indices, values, (3, 3), check_invariants=True)
    weight = torch.randn(2, 3, dtype=torch.float64)
    torch.testing.assert_close(sparse_linear(x, weight), x.to_dense() @ weight.t())
    hybrid = torch.randn(4, 3, dtype=torch.float64).to_sparse(1)  # rows stored, dense columns
    torch.testing.assert_close(sparse_linear(hybrid, weight), hybrid.to_dense() @ weight.t())


def test_sparse_linear_structure_cache_hits_and_is_invalidated():
    dense = sparse_matrix(seed=23)
    weight = torch.randn(5, 20, dtype=torch.float64, requires_grad=True)
    x = dense.to_sparse_csr()
    cache = GraphCache()
    structure = sparse_structure(x, cache)
    torch.manual_seed(23)
    dropped = sparse_dropout(x, 0.5)  # same index tensors: the cached structure serves it
    assert sparse_structure(dropped, cache) is structure
    assert sparse_structure(dense.to_sparse_csr(), cache) is structure  # equal contents
    out = sparse_linear(dropped, weight, cache=cache)
    (grad,) = torch.autograd.grad(out.square().sum(), weight)
    reference = dropped.to_dense()
    expected = torch.autograd.grad((reference @ weight.t()).square().sum(), weight)[0]
    torch.testing.assert_close(grad, expected)

    # Same shape and number of entries, other columns: a new structure, correct gradients.
    moved = torch.roll(dense, 1, dims=1).to_sparse_csr()
    assert moved.col_indices().shape == x.col_indices().shape
    (grad,) = torch.autograd.grad(sparse_linear(moved, weight, cache=cache).sum(), weight)
    assert sparse_structure(moved, cache) is not structure
    torch.testing.assert_close(grad, torch.ones(5, 30, dtype=torch.float64) @ moved.to_dense())

    # An in-place edit of the indices is seen (version counter), not served stale.
    coo = dense.to_sparse()
    first = sparse_structure(coo, cache)
    with torch.no_grad():
        coo.indices()[1].copy_(torch.roll(coo.indices()[1], 1))
    second = sparse_structure(coo, cache)
    assert second is not first and torch.equal(second.col, coo.indices()[1])

    explicit = sparse_linear(x, weight, structure=CSRGraph.from_sparse(x))
    torch.testing.assert_close(explicit, dense @ weight.t())


@pytest.mark.parametrize("layer", ["gcn", "gat"])
def test_column_major_weight_gives_the_same_bits_and_no_copies(layer):
    # column_major_ changes the memory, not the values: a layer on sparse features gives the
    # same output and gradients bit for bit, and the gradient arrives in the weight's layout
    # (autograd copies a gradient whose strides differ from the parameter's).
    from gnnkit.nn import GATConv, column_major_

    torch.manual_seed(0)
    x = (torch.rand(40, 30) < 0.2).float().to_sparse_csr()
    edge_index = torch.randint(0, 40, (2, 160))
    build = (lambda: GCNConv(30, 8)) if layer == "gcn" else (lambda: GATConv(30, 4, heads=2))
    results = []
    for transposed in (False, True):
        torch.manual_seed(1)
        conv = build()
        weight = conv.lin.weight
        if transposed:
            assert column_major_(weight) is weight
            assert weight.t().is_contiguous() and not weight.is_contiguous()
        out = conv(sparse_dropout(x, 0.5, True), edge_index)
        out.square().sum().backward()
        assert weight.grad.stride() == weight.stride()
        results.append((out.detach(), weight.detach().clone(), weight.grad))
    for plain, stored in zip(*results, strict=True):
        assert torch.equal(plain, stored)
    for bad in (torch.zeros(3), "weight", torch.eye(3).to_sparse()):
        with pytest.raises(InputError, match="column_major_ expects a 2-D dense weight"):
            column_major_(bad)
    with pytest.raises(InputError, match="expects a leaf tensor"):
        column_major_(torch.zeros(4, 3, requires_grad=True) * 2)


def test_sparse_linear_errors():
    x = sparse_matrix(4, 3, 0.5, seed=24).to_sparse_csr()
    weight = torch.randn(2, 3, dtype=torch.float64)
    with pytest.raises(InputError, match=r"expects a sparse CSR or COO x, got torch\.strided"):
        sparse_linear(x.to_dense(), weight)
    with pytest.raises(InputError, match=r"weight must have shape \(out_features, 3\)"):
        sparse_linear(x, torch.randn(2, 4, dtype=torch.float64))
    with pytest.raises(
        InputError, match=r"x is torch\.float64 on cpu but weight is torch\.float32"
    ):
        sparse_linear(x, weight.float())
    with pytest.raises(InputError, match=r"expects a matrix x \(2 dimensions\)"):
        sparse_linear(torch.ones(2, 4, 3).to_sparse_csr(), weight)
    other = CSRGraph.from_sparse(sparse_matrix(5, 3, 0.5, seed=25).to_sparse_csr())
    with pytest.raises(InputError, match="build it from x with sparse_structure"):
        sparse_linear(x, weight, structure=other)


@pytest.mark.parametrize("layout", ["coo", "csr"])
def test_sparse_dropout_statistics_and_structure(layout):
    torch.manual_seed(12)
    dense = torch.rand(300, 200) * (torch.rand(300, 200) < 0.05) + 0.0
    x = to_layout(dense, layout)
    indices = (x.crow_indices(), x.col_indices()) if layout == "csr" else (x.indices(),)
    out = sparse_dropout(x, 0.4)
    assert out.layout == x.layout and out._nnz() == x._nnz()
    out_indices = (out.crow_indices(), out.col_indices()) if layout == "csr" else (out.indices(),)
    for old, new in zip(indices, out_indices, strict=True):  # the structure itself is kept
        assert new.data_ptr() == old.data_ptr() and torch.equal(new, old)
    if layout == "coo":
        assert out.is_coalesced()
    values, new_values = x.values(), out.values()
    kept = new_values != 0
    torch.testing.assert_close(new_values[kept], values[kept] / 0.6)  # scaled by 1 / (1 - p)
    fraction = kept.float().mean().item()
    assert 0.57 < fraction < 0.63  # 0.6 expected; ~3000 entries, seeded (3 sigma ~ 0.027)
    torch.testing.assert_close(out.to_dense()[dense == 0], torch.zeros(int((dense == 0).sum())))
    assert sparse_dropout(x, 0.4, training=False) is x
    assert sparse_dropout(x, 0.0) is x
    dropped = sparse_dropout(x, 1.0)
    assert dropped._nnz() == x._nnz() and not dropped.values().any()
    # Unbiased: averaged over draws, the dropped-out matrix is the input.
    total = sum(sparse_dropout(x, 0.4).to_dense() for _ in range(200)) / 200
    assert (total - dense).abs().max() < 0.25 and abs((total - dense).sum()) < 0.01 * dense.sum()


def test_sparse_dropout_gradient_flows_through_kept_values():
    x = sparse_matrix(20, 10, 0.4, seed=26).to_sparse_csr().requires_grad_()
    torch.manual_seed(26)
    out = sparse_dropout(x, 0.5)
    out.values().sum().backward()
    kept = out.values().detach() != 0
    torch.testing.assert_close(x.grad.values(), kept.double() * 2.0)


def test_sparse_dropout_uncoalesced_coo_drops_summed_entries():
    indices = torch.tensor([[0, 0, 1], [1, 1, 2]])  # (0, 1) stored twice
    x = torch.sparse_coo_tensor(
        indices, torch.tensor([1.0, 2.0, 4.0]), (2, 3), check_invariants=True
    )
    torch.manual_seed(27)
    out = sparse_dropout(x, 0.5)
    assert out.is_coalesced() and out._nnz() == 2
    assert set(out.values().tolist()) <= {0.0, 6.0, 8.0}  # 1 + 2 kept or dropped together


def test_sparse_dropout_csr_drops_the_same_entries_as_coo_for_the_same_seed():
    dense = torch.rand(50, 40) * (torch.rand(50, 40) < 0.2)
    torch.manual_seed(13)
    coo = sparse_dropout(dense.to_sparse(), 0.5)
    torch.manual_seed(13)
    csr = sparse_dropout(dense.to_sparse_csr(), 0.5)
    assert csr.layout == torch.sparse_csr
    torch.testing.assert_close(csr.to_dense(), coo.to_dense())


def test_dense_dropout_has_the_distribution_and_gradient_of_f_dropout():
    x = torch.rand(400, 300, dtype=torch.float64, requires_grad=True)
    torch.manual_seed(28)
    out = dense_dropout(x, 0.3)
    kept = out != 0
    assert abs(kept.double().mean().item() - 0.7) < 0.005  # 120,000 draws: 3 sigma ~ 0.004
    torch.testing.assert_close(out[kept], x[kept] / 0.7)
    (grad,) = torch.autograd.grad(out.sum(), x)
    torch.testing.assert_close(grad, kept.double() / 0.7)  # F.dropout's gradient: mask / (1-p)
    assert dense_dropout(x, 0.3, training=False) is x and dense_dropout(x, 0.0) is x
    assert not dense_dropout(x, 1.0).any()
    torch.manual_seed(28)
    assert torch.equal(sparse_dropout(x.detach(), 0.3), out.detach())  # dense input -> same


def test_sparse_dropout_errors():
    x = torch.eye(3).to_sparse()
    with pytest.raises(InputError, match=r"number in \[0, 1\]"):
        sparse_dropout(x, 1.5)
    with pytest.raises(InputError, match=r"number in \[0, 1\]"):
        sparse_dropout(x, True)
    with pytest.raises(InputError, match=r"expects a torch\.Tensor"):
        sparse_dropout([[1.0]], 0.5)
    with pytest.raises(InputError, match="supports sparse COO and CSR"):
        sparse_dropout(torch.eye(3).to_sparse_csc(), 0.5)
    with pytest.raises(InputError, match="expects a matrix"):
        sparse_dropout(torch.ones(2, 2, 2).to_sparse(), 0.5)


# --- properties ----------------------------------------------------------------------------------


def test_permutation_equivariance():
    edge_index = directed_graph(seed=14)
    x, w = (
        torch.randn(12, 5, dtype=torch.float64),
        torch.rand(edge_index.size(1), dtype=torch.float64),
    )
    layer = make_layer(5, 4, self_loop_weight=1.7)
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(14))
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(12)
    out = layer(x, edge_index, w)
    out_perm = layer(x[perm], inverse[edge_index], w)  # node perm[i] becomes node i
    torch.testing.assert_close(out_perm, out[perm])


def test_deterministic_runs_are_bit_identical_and_match_default_mode():
    edge_index = directed_graph(60, 600, seed=15)
    x = torch.randn(60, 16)
    layer = GCNConv(16, 8, deterministic=True)
    runs = []
    for _ in range(2):
        out = layer(x, edge_index)
        runs.append((out, torch.autograd.grad(out.square().sum(), layer.lin.weight)[0]))
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    layer.deterministic = False
    torch.testing.assert_close(layer(x, edge_index), runs[0][0])
    layer.fuse = False  # plain path: sorted-segment scatter vs index_add
    layer.deterministic = True
    plain_det = layer(x, edge_index)
    assert torch.equal(plain_det, layer(x, edge_index))
    torch.testing.assert_close(plain_det, runs[0][0])


def test_empty_graph_and_zero_nodes():
    layer = make_layer(4, 3, self_loop_weight=2.5)
    x = torch.randn(5, 4, dtype=torch.float64)
    out = layer(x, torch.zeros(2, 0, dtype=torch.long))
    # Only self-loops: the normalised loop weight is lambda / lambda = 1.
    torch.testing.assert_close(out, x @ layer.lin.weight.t() + layer.bias)
    empty = layer(torch.zeros(0, 4, dtype=torch.float64), torch.zeros(2, 0, dtype=torch.long))
    assert empty.shape == (0, 3)


def test_isolated_nodes_give_finite_output():
    edge_index = torch.tensor([[0, 1], [1, 0]])  # nodes 2, 3 isolated
    x = torch.randn(4, 3, dtype=torch.float64)
    for normalize in (True, False):
        layer = make_layer(3, 2, normalize=normalize)
        out = layer(x, edge_index)
        assert torch.isfinite(out).all()
        isolated = x[2:] @ layer.lin.weight.t() if normalize else 0.0
        torch.testing.assert_close(out[2:], isolated + layer.bias.expand(2, 2))


def test_zero_degree_from_zero_weights_is_finite():
    edge_index = torch.tensor([[0, 1], [1, 1]])  # node 1 has a loop of weight 0
    out = make_layer(2, 2)(
        torch.randn(2, 2, dtype=torch.float64),
        edge_index,
        torch.tensor([0.0, 0.0], dtype=torch.float64),
    )
    assert torch.isfinite(out).all()


# --- caching -------------------------------------------------------------------------------------


def test_cache_is_reused_and_detects_a_changed_graph():
    edge_index = directed_graph(seed=16)
    x = torch.randn(12, 4, dtype=torch.float64)
    cached = make_layer(4, 3, cached=True)
    fresh = make_layer(4, 3)
    out = cached(x, edge_index)
    entry = cached._cache.value
    cached(x, edge_index)
    assert cached._cache.value is entry  # same tensors: reused
    cached(x, edge_index.clone())
    assert cached._cache.value is entry  # equal contents: reused
    torch.testing.assert_close(out, fresh(x, edge_index))

    changed = edge_index.clone()
    changed[1] = torch.roll(changed[1], 1)  # same shape, different graph
    torch.testing.assert_close(cached(x, changed), fresh(x, changed))
    assert cached._cache.value is not entry

    in_place = changed.clone()
    cached(x, in_place)
    in_place[0, :3] = torch.tensor([5, 6, 7])  # in-place edit bumps the version counter
    torch.testing.assert_close(cached(x, in_place), fresh(x, in_place))

    weights = torch.rand(in_place.size(1), dtype=torch.float64)
    torch.testing.assert_close(cached(x, in_place, weights), fresh(x, in_place, weights))
    weights.mul_(2.0)
    torch.testing.assert_close(cached(x, in_place, weights), fresh(x, in_place, weights))
    smaller = make_layer(4, 3, cached=True)
    smaller(x, edge_index)
    torch.testing.assert_close(
        smaller(x[:10], edge_index[:, (edge_index < 10).all(0)]),
        fresh(x[:10], edge_index[:, (edge_index < 10).all(0)]),
    )


def test_cached_edge_weights_with_gradient_are_recomputed_each_call():
    edge_index = directed_graph(seed=17)
    x = torch.randn(12, 4, dtype=torch.float64)
    weights = torch.rand(edge_index.size(1), dtype=torch.float64, requires_grad=True)
    layer = make_layer(4, 3, cached=True)
    for _ in range(2):
        (grad,) = torch.autograd.grad(layer(x, edge_index, weights).sum(), weights)
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize("features", ["dense", "csr", "coo"])
@pytest.mark.parametrize("learned", [False, True])
def test_cache_filled_under_inference_mode_serves_a_later_training_step(features, learned):
    edge_index = directed_graph(seed=29)
    dense = torch.randn(12, 6, dtype=torch.float64) * (torch.rand(12, 6) < 0.5)
    x = dense if features == "dense" else to_layout(dense, features)
    cached = make_layer(6, 3, cached=True, learn_self_loop_weight=learned)
    fresh = make_layer(6, 3, learn_self_loop_weight=learned)
    assert_inference_cache_serves_training(cached, fresh, x, dense, edge_index)


def test_sparse_features_reuse_the_layers_structure_cache():
    edge_index = directed_graph(seed=30)
    dense = torch.rand(12, 9, dtype=torch.float64) * (torch.rand(12, 9) < 0.4)
    x = dense.to_sparse_csr()
    layer = make_layer(9, 4)
    torch.manual_seed(30)
    layer(sparse_dropout(x, 0.5), edge_index).sum().backward()
    structure = layer._feature_cache.value
    assert isinstance(structure, CSRGraph) and structure.num_edges == x._nnz()
    layer(sparse_dropout(x, 0.5), edge_index).sum().backward()
    assert layer._feature_cache.value is structure  # built once for every dropped-out copy
    layer.reset_parameters()
    assert layer._feature_cache.value is None


# --- backends and bad inputs ---------------------------------------------------------------------


@pytest.mark.skipif(not ops.torch_scatter_available(), reason="torch_scatter is not installed")
def test_backends_agree():
    edge_index = directed_graph(seed=18)
    x, w = torch.randn(12, 6), torch.rand(edge_index.size(1))
    layer = GCNConv(6, 4)
    outputs = []
    for name in ("torch", "torch_scatter"):
        with ops.use_backend(name):
            for fuse in (True, False):
                layer.fuse = fuse
                outputs.append(layer(x, edge_index, w))
    for out in outputs[1:]:
        torch.testing.assert_close(out, outputs[0])


def test_bad_inputs_raise_clear_errors():
    layer = GCNConv(3, 2)
    x = torch.randn(4, 3)
    edge_index = torch.tensor([[0, 1, 2], [1, 2, 3]])
    cases = [
        ((x.long(), edge_index), "must be floating point"),
        ((x[0], edge_index), r"must have shape \(num_nodes, num_features\)"),
        (
            (torch.randn(4, 5), edge_index),
            "5 features per node but GCNConv was built with in_channels=3",
        ),
        ((x.double(), edge_index), "convert x"),
        ((x, edge_index.float()), "must hold integer node indices"),
        ((x, edge_index.t()), "it looks transposed"),
        ((x, torch.tensor([[0, -1], [1, 2]])), "negative node index"),
        (
            (x, torch.tensor([[0, 1], [1, 4]])),
            r"refers to node 4, but the features have only 4 rows",
        ),
        ((x, [[0, 1], [1, 2]]), r"edge_index must be a \(2, \|E\|\) integer tensor"),
        ((torch.tensor([[float("nan")] * 3] * 4), edge_index), "NaN or infinite"),
        ((torch.tensor([[float("inf")] * 3] * 4).to_sparse(), edge_index), "NaN or infinite"),
        ((torch.tensor([[float("nan")] * 3] * 4).to_sparse_csr(), edge_index), "NaN or infinite"),
        ((torch.eye(4, 3).to_sparse_csc(), edge_index), "sparse COO or sparse CSR"),
        ((x, edge_index, torch.tensor([1.0, float("nan"), 1.0])), "edge_weight holds 1 NaN"),
        ((x, edge_index, torch.ones(2)), r"edge_weight must have shape \(3,\)"),
        ((x, edge_index, [1.0, 1.0, 1.0]), "edge_weight must be a floating-point tensor"),
        (
            (x, edge_index, torch.ones(3, dtype=torch.long)),
            "must be floating point, got torch.int64",
        ),
        (((x, x), edge_index), "does not support bipartite message passing"),
        (([x, x], edge_index), "does not support bipartite message passing"),
        ((x.tolist(), edge_index), r"x must be a \(\|V\|, F\) float tensor, got a list"),
        ((x, edge_index, torch.tensor([1.0, -5.0, 1.0])), "in-degree .* is negative"),
    ]
    for args, message in cases:
        with pytest.raises(InputError, match=message):
            layer(*args)


def test_bad_constructor_arguments():
    cases = [
        ({"in_channels": 0, "out_channels": 2}, "in_channels must be a positive int"),
        ({"in_channels": 3, "out_channels": 2.5}, "out_channels must be a positive int"),
        ({"in_channels": 3, "out_channels": 2, "self_loop_weight": 0.0}, "positive finite number"),
        ({"in_channels": 3, "out_channels": 2, "self_loop_weight": -1.0}, "positive finite number"),
        (
            {"in_channels": 3, "out_channels": 2, "self_loop_weight": float("inf")},
            "positive finite",
        ),
        ({"in_channels": 3, "out_channels": 2, "self_loop_weight": True}, "positive finite number"),
        (
            {"in_channels": 3, "out_channels": 2, "normalize": False, "self_loop_weight": 2.0},
            "no effect",
        ),
        (
            {
                "in_channels": 3,
                "out_channels": 2,
                "normalize": False,
                "learn_self_loop_weight": True,
            },
            "no effect",
        ),
        ({"in_channels": 3, "out_channels": 2, "cached": "yes"}, "cached must be True or False"),
        # add_self_loops defaults to normalize: the message names the argument given
        ({"in_channels": 3, "out_channels": 2, "normalize": "no"}, "normalize must be True or"),
        ({"in_channels": 3, "out_channels": 2, "deterministic": 1}, "deterministic must be"),
        ({"in_channels": 3, "out_channels": 2, "aggr": "mean"}, "aggr must be 'add'"),
    ]
    for kwargs, message in cases:
        with pytest.raises(InputError, match=message):
            GCNConv(**kwargs)
    with pytest.raises(InputError, match="positive finite number"):
        gcn_norm(torch.tensor([[0], [1]]), self_loop_weight=0)


def test_validate_false_skips_full_scans_but_keeps_shape_checks():
    layer = GCNConv(3, 2, validate=False)
    x = torch.randn(4, 3)
    x[0, 0] = float("nan")
    assert torch.isnan(layer(x, torch.tensor([[0], [1]]))).any()  # not scanned
    with pytest.raises(InputError, match="in_channels=3"):
        layer(torch.randn(4, 2), torch.tensor([[0], [1]]))


@pytest.mark.parametrize("layout", ["dense", "coo", "csr"])
def test_nan_written_in_place_after_a_checked_call_is_caught(layout):
    # The layer skips the NaN scan for features it has already found finite; an in-place
    # change (a new version of the values) must be scanned again.
    layer = GCNConv(3, 2)
    edge_index = torch.tensor([[0, 1], [1, 2]])
    dense = torch.rand(4, 3) + 0.5
    x = {"dense": dense, "coo": dense.to_sparse(), "csr": dense.to_sparse_csr()}[layout]
    layer(x, edge_index)
    layer(x, edge_index)  # known finite: no scan, same answer
    stored = x if layout == "dense" else x._values() if layout == "coo" else x.values()
    stored.view(-1)[0] = float("nan")
    with pytest.raises(InputError, match="NaN or infinite"):
        layer(x, edge_index)


def test_nan_check_remembers_two_inputs_per_layer():
    # Training alternates a fresh (dropped-out) input with the evaluation's fixed one.
    layer = GCNConv(3, 2)
    edge_index = torch.tensor([[0, 1], [1, 2]])
    fixed = torch.rand(4, 3)
    for _ in range(3):
        layer(torch.rand(4, 3), edge_index)
        layer(fixed, edge_index)
    fixed[1, 1] = float("inf")
    with pytest.raises(InputError, match="NaN or infinite"):
        layer(fixed, edge_index)


def _record_output_shape(seen, module, inputs, output):
    seen.append(output.shape)


def test_propagate_hooks_run_and_give_the_direct_kernels_answer():
    # Without hooks the fused path calls the SpMM directly; a hook on propagate or on
    # message_and_aggregate sends it through PyG's propagate, with the same values and grads.
    edge_index = directed_graph(seed=3)
    x = torch.randn(12, 6, dtype=torch.float64)
    direct = make_layer(6, 3)
    out = direct(x, edge_index)
    out.square().sum().backward()
    for register in (
        "register_propagate_forward_hook",
        "register_message_and_aggregate_forward_hook",
    ):
        hooked = make_layer(6, 3)
        seen: list[torch.Size] = []
        getattr(hooked, register)(functools.partial(_record_output_shape, seen))
        got = hooked(x, edge_index)
        got.square().sum().backward()
        assert seen == [(12, 3)]
        torch.testing.assert_close(got, out, rtol=0, atol=0)
        torch.testing.assert_close(hooked.lin.weight.grad, direct.lin.weight.grad, rtol=0, atol=0)
        torch.testing.assert_close(hooked.bias.grad, direct.bias.grad, rtol=0, atol=0)


def test_bias_is_added_inside_the_spmm_or_out_of_place():
    # gnnkit's SpMM adds the bias itself (one autograd node, bias gradient = the output
    # gradient summed over rows); where PyG's propagate runs (hooks), the bias is added out of
    # place: in place on the SpMM's output view, autograd would copy it through as_strided.
    x, edge_index = torch.randn(12, 6, dtype=torch.float64), directed_graph(seed=4)
    layer = make_layer(6, 3)
    out = layer(x, edge_index)
    assert type(out.grad_fn).__name__ == "_SpMMBackward"  # one node
    grad = torch.randn_like(out)
    out.backward(grad)
    torch.testing.assert_close(layer.bias.grad, grad.sum(0), rtol=0, atol=1e-12)
    hooked = make_layer(6, 3)
    hooked.load_state_dict(layer.state_dict())
    hooked.register_propagate_forward_hook(lambda *args: None)
    out_hooked = hooked(x, edge_index)
    assert type(out_hooked.grad_fn).__name__ == "AddBackward0"
    torch.testing.assert_close(out_hooked, out, rtol=0, atol=1e-12)
    with torch.no_grad():  # in place where nothing records it
        assert hooked(x, edge_index).grad_fn is None
        assert layer(x, edge_index).grad_fn is None


def test_repr_is_pygs_plus_gnnkit_extras_away_from_their_defaults():
    assert repr(GCNConv(3, 2, cached=True)) == "GCNConv(3, 2)"
    assert repr(GCNConv(3, 2, improved=True)) == "GCNConv(3, 2)"
    assert repr(GCNConv(3, 2, self_loop_weight=2.0)) == "GCNConv(3, 2, self_loop_weight=2)"
    assert repr(GCNConv(-1, 2, deterministic=True)) == "GCNConv(-1, 2, deterministic=True)"
    assert repr(GCNConv(3, 2, self_loop_weight=1.5, learn_self_loop_weight=True)) == (
        "GCNConv(3, 2, learn_self_loop_weight=True, init 1.5)"
    )


# --- CUDA ----------------------------------------------------------------------------------------


@pytest.mark.cuda
def test_cuda_equals_cpu_and_deterministic_mode_is_bit_identical():
    edge_index = directed_graph(300, 4000, seed=19)
    x, w = torch.randn(300, 16), torch.rand(edge_index.size(1))
    layer = GCNConv(16, 32, learn_self_loop_weight=True)
    expected = layer(x, edge_index, w)
    layer_c = layer.cuda()
    runs = []
    for _ in range(2):
        out = layer_c(x.cuda(), edge_index.cuda(), w.cuda())
        grads = torch.autograd.grad(out.square().sum(), list(layer_c.parameters()))
        runs.append((out, *grads))
    torch.testing.assert_close(runs[0][0].cpu(), expected, rtol=1e-4, atol=1e-4)
    layer_c.deterministic = True
    det = []
    for _ in range(2):
        out = layer_c(x.cuda(), edge_index.cuda(), w.cuda())
        det.append((out, *torch.autograd.grad(out.square().sum(), list(layer_c.parameters()))))
    for first, second in zip(det[0], det[1], strict=True):
        assert torch.equal(first, second)
    torch.testing.assert_close(det[0][0], runs[0][0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("fused", [True, False])
def test_uncached_layer_reuses_weights_only_while_edge_weight_is_unchanged(fused, monkeypatch):
    """cached=False keeps the normalised weights for the same, unmodified edge_weight (or
    none), and recomputes them for an in-place change or another tensor: always the dense
    reference's output."""
    edge_index, n = directed_graph(), 12
    x = torch.randn(n, 3, dtype=torch.float64)
    layer = make_layer(3, 2)
    layer.fuse = fused
    calls = []
    compute = _gcn_graph.normalised_weights
    monkeypatch.setattr(_gcn_graph, "normalised_weights", lambda *a: calls.append(1) or compute(*a))

    def check(edge_weight):
        expected = dense_gcn(x, edge_index, layer.lin.weight, layer.bias, 1.0, edge_weight)
        torch.testing.assert_close(layer(x, edge_index, edge_weight), expected)

    check(None)
    check(None)
    assert len(calls) == 1  # no edge_weight: computed once
    weight = torch.rand(edge_index.size(1), dtype=torch.float64) + 0.5
    check(weight)
    check(weight)
    assert len(calls) == 2  # the same tensor, unmodified
    weight.mul_(2.0)
    check(weight)
    assert len(calls) == 3  # modified in place: recomputed
    check(weight.clone())
    assert len(calls) == 4  # another tensor: recomputed
    check(weight.clone().requires_grad_())
    check(weight.clone().requires_grad_())
    assert len(calls) == 6  # weights with a gradient: every call


@pytest.mark.parametrize("layer", ["gcn", "gat"])
def test_tensors_made_under_inference_mode_are_checked_and_never_served_stale(layer):
    # such tensors have no version counter: the caches must neither crash nor trust them
    from gnnkit.nn import GATConv

    conv = GCNConv(5, 3, cached=True) if layer == "gcn" else GATConv(5, 3, cached=True)
    with torch.inference_mode():
        x = torch.randn(6, 5)
        edge_index = torch.tensor([[0, 1, 2, 3, 4], [1, 2, 3, 4, 5]])
        first = conv(x.to_sparse_csr(), edge_index)
        edge_index[1, 0] = 5  # modified in place: no counter says so
        second = conv(x.to_sparse_csr(), edge_index)
        fresh = (GCNConv(5, 3) if layer == "gcn" else GATConv(5, 3)).requires_grad_(False)
        fresh.load_state_dict(conv.state_dict())
        assert torch.allclose(second, fresh(x, edge_index), atol=1e-6)
        assert not torch.allclose(first, second)
        x[0, 0] = float("nan")
        with pytest.raises(InputError, match="NaN"):
            conv(x.to_sparse_csr(), edge_index)


@pytest.mark.parametrize("layer", ["gcn", "gat"])
def test_a_graph_on_another_device_than_the_layer_is_refused(layer):
    from gnnkit.nn import GATConv

    conv = GCNConv(4, 3) if layer == "gcn" else GATConv(4, 3)
    edge_index = torch.tensor([[0, 1, 2], [1, 2, 3]], device="meta")  # no data: a device only
    with pytest.raises(InputError, match=r"edge_index is on meta and .*parameters on cpu"):
        conv(torch.randn(5, 4), edge_index)
