"""GCNConv's training call as one autograd node (gnnkit.nn._gcn_layer.layer_node).

References: the same call with the node switched off (the transform's and the SpMM's own
autograd Functions), bit for bit; ``torch.autograd.gradcheck``; and the cases that must keep
the separate operations (a gradient the node does not compute, hooks, other layouts).
"""

from __future__ import annotations

import pytest
import torch
from conv_checks import directed_graph

import gnnkit.nn.gcn as gcn_module
from gnnkit.nn import GCNConv
from gnnkit.ops._jit import jit_available

needs_jit = pytest.mark.skipif(not jit_available(), reason="numba is not available")
NODE = "_GCNLayerBackward"
NODES = 600  # dense features of 600 x 8 = 4800 entries: the narrow kernel serves them


def node_of(out: torch.Tensor) -> str:
    return type(out.grad_fn).__name__


def features(case: str, dtype: torch.dtype) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(NODES, 8, generator=gen, dtype=dtype)
    if case == "sparse":
        x = (x * (torch.rand(NODES, 8, generator=gen) < 0.3)).to_sparse_csr()
    return x.requires_grad_() if case == "x needs a gradient" else x


CASES = {
    "dense": {},
    "x needs a gradient": {},
    "sparse": {},
    "no bias": {"bias": False},
    "cached": {"cached": True},
    "deterministic": {"deterministic": True},
    "self-loop weight 2": {"improved": True},
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "case",  # dense features take the narrow kernel, which needs numba; sparse ones do not
    [pytest.param(case, marks=() if case == "sparse" else needs_jit) for case in CASES],
)
def test_one_node_equals_the_separate_operations_bit_for_bit(case, dtype, monkeypatch):
    x, edge_index = features(case, dtype), directed_graph(NODES, 3000, seed=2)
    torch.manual_seed(0)
    layer = GCNConv(8, 5, **CASES[case]).to(dtype)
    grad = torch.linspace(-1, 1, NODES * 5, dtype=dtype).view(NODES, 5)
    results = []
    for one_node in (True, False):
        if not one_node:
            monkeypatch.setattr(gcn_module, "layer_node", lambda *args: None)
        layer.zero_grad()
        x.grad = None
        out = layer(x, edge_index)
        assert (node_of(out) == NODE) is one_node
        out.backward(grad)
        results.append([out.detach(), *(p.grad for p in layer.parameters())])
        if x.requires_grad:
            results[-1].append(x.grad)
    assert all(torch.equal(a, b) for a, b in zip(*results, strict=True))


@needs_jit
def test_gradcheck_dense_features_and_parameters():
    edge_index = directed_graph(NODES, 2000, seed=3)
    torch.manual_seed(0)
    layer = GCNConv(8, 3).double()
    x = torch.randn(NODES, 8, dtype=torch.float64, requires_grad=True)
    params = dict(layer.named_parameters())
    assert node_of(layer(x, edge_index)) == NODE

    def run(x, weight, bias):
        state = {"lin.weight": weight, "bias": bias}
        return torch.func.functional_call(layer, state, (x, edge_index))

    assert torch.autograd.gradcheck(run, (x, params["lin.weight"], params["bias"]))


def test_gradcheck_sparse_features():
    edge_index = directed_graph(40, 150, seed=4)
    torch.manual_seed(0)
    layer = GCNConv(12, 4).double()
    gen = torch.Generator().manual_seed(5)
    dense = torch.randn(40, 12, generator=gen, dtype=torch.float64)
    x = (dense * (torch.rand(40, 12, generator=gen) < 0.3)).to_sparse_csr()
    params = dict(layer.named_parameters())
    assert node_of(layer(x, edge_index)) == NODE

    def run(weight, bias):
        state = {"lin.weight": weight, "bias": bias}
        return torch.func.functional_call(layer, state, (x, edge_index))

    assert torch.autograd.gradcheck(run, (params["lin.weight"], params["bias"]))


def _hooked(layer):
    layer.register_propagate_forward_hook(lambda module, inputs, out: out)
    return layer


SEPARATE = {
    "sparse COO features": (lambda: GCNConv(8, 5), lambda x: x.to_sparse_coo(), None),
    "more outputs than the narrow kernel's": (lambda: GCNConv(8, 9), None, None),
    "a learned self-loop weight": (lambda: GCNConv(8, 5, learn_self_loop_weight=True), None, None),
    "edge weights with a gradient": (lambda: GCNConv(8, 5), None, "grad"),
    "a hook on propagate": (lambda: _hooked(GCNConv(8, 5)), None, None),
    "sparse features with a gradient": (
        lambda: GCNConv(8, 5),
        lambda x: x.to_sparse_csr().requires_grad_(),
        None,
    ),
}


@needs_jit
@pytest.mark.parametrize("case", list(SEPARATE))
def test_cases_the_node_does_not_serve_keep_the_separate_operations(case):
    build, convert, weights = SEPARATE[case]
    edge_index = directed_graph(NODES, 3000, seed=6)
    x = torch.randn(NODES, 8)
    x = convert(x) if convert else x
    edge_weight = torch.rand(edge_index.size(1), requires_grad=True) if weights else None
    layer = build()
    out = layer(x, edge_index, edge_weight)
    assert node_of(out) != NODE
    out.sum().backward()
    assert layer.lin.weight.grad is not None
    with torch.no_grad():  # an evaluation records nothing
        assert layer(x, edge_index, edge_weight).grad_fn is None


@needs_jit
def test_a_bias_replaced_by_a_plain_tensor_is_added():
    edge_index = directed_graph(NODES, 3000, seed=7)
    x = torch.randn(NODES, 8)
    layer = GCNConv(8, 5)
    del layer.bias
    layer.bias = torch.full((5,), 3.0)  # an attribute, not a registered parameter
    out = layer(x, edge_index)
    assert node_of(out) == NODE
    with torch.no_grad():  # the evaluation path, without the node
        expected = layer(x, edge_index)
    assert torch.equal(out.detach(), expected)


@pytest.mark.parametrize(
    "case",
    [
        "dense",
        pytest.param("dense, narrow transform", marks=needs_jit),
        "sparse features",
    ],
)
def test_gcnconv_is_differentiable_twice_on_its_fused_paths(case):
    # With create_graph the fused path's products run in torch's differentiable operators
    # (the SpMM and the one-node training call): gradgradcheck against finite differences,
    # in the weight and the bias, and in dense features where they are few enough.
    from torch.func import functional_call

    torch.manual_seed(0)
    nodes = 12 if case == "dense" else 520  # 520 x 8 entries reach the narrow transform
    edge_index = torch.randint(0, nodes, (2, 4 * nodes))
    if case == "sparse features":
        x = (torch.rand(nodes, 8) < 0.2).double().to_sparse_csr()
    else:
        x = torch.randn(nodes, 8 if case != "dense" else 5, dtype=torch.float64)
    layer = GCNConv(x.size(1), 3).double()
    weight = layer.lin.weight.detach().clone().requires_grad_()
    bias = layer.bias.detach().clone().requires_grad_()

    def call(w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return functional_call(layer, {"lin.weight": w, "bias": b}, (x, edge_index))

    node = type(call(weight, bias).grad_fn).__name__
    assert node == ("_SpMMBackward" if case == "dense" else "_GCNLayerBackward")
    assert torch.autograd.gradgradcheck(call, (weight, bias))
    if case == "dense":
        features = x.clone().requires_grad_()
        assert torch.autograd.gradgradcheck(lambda t: layer(t, edge_index), (features,))


@needs_jit
@pytest.mark.parametrize("column_major", [False, True])
def test_a_mixed_second_derivative_equals_pygs(column_major):
    # d/dW of |d out.sum() / dx|^2 through the one-node call on the narrow transform, against
    # PyG's GCNConv with the same weights. The weight reaches the features' gradient only
    # through the saved weight: a copy made for the kernel (a column-major weight is copied
    # to row-major) must not cut it off.
    from torch_geometric.nn import GCNConv as PygGCNConv

    from gnnkit.nn import column_major_

    torch.manual_seed(0)
    x = torch.randn(520, 8, dtype=torch.float64, requires_grad=True)  # the narrow transform
    edge_index = torch.randint(0, 520, (2, 2080))
    ours, theirs = GCNConv(8, 3).double(), PygGCNConv(8, 3).double()
    theirs.load_state_dict(ours.state_dict())
    if column_major:
        column_major_(ours.lin.weight)
    results = []
    for layer in (ours, theirs):
        out = layer(x, edge_index)
        (grad_x,) = torch.autograd.grad(out.sum(), x, create_graph=True)
        results.append(torch.autograd.grad(grad_x.square().sum(), layer.lin.weight)[0])
    assert type(ours(x, edge_index).grad_fn).__name__ == "_GCNLayerBackward"
    torch.testing.assert_close(results[0], results[1])


@pytest.mark.parametrize("through", ["edge_weight", "learned self-loop weight"])
def test_second_derivatives_through_the_normalisation_equal_pygs(through):
    # The fused path's degree sum (gnnkit.ops.segment_sum) is differentiable twice, so a
    # gradient penalty on edge weights (or on the learned self-loop weight) runs: gradgradcheck
    # against finite differences, and the penalty's gradient against PyG's GCNConv, whose
    # self-loop weight 2.5 is a fixed fill value there.
    from torch_geometric.nn import GCNConv as PygGCNConv
    from torch_geometric.utils import add_remaining_self_loops

    torch.manual_seed(0)
    x = torch.randn(7, 3, dtype=torch.float64)
    edge_index = torch.randint(0, 7, (2, 16))
    learned = through != "edge_weight"
    ours = GCNConv(3, 2, learn_self_loop_weight=learned, self_loop_weight=2.5).double()
    if learned:
        raw = ours.raw_self_loop_weight.detach().clone().requires_grad_()
        assert torch.autograd.gradgradcheck(
            lambda r: torch.func.functional_call(
                ours, {"raw_self_loop_weight": r}, (x, edge_index)
            ),
            (raw,),
        )
        return
    weight = (torch.rand(16, dtype=torch.float64) + 0.1).requires_grad_()
    assert torch.autograd.gradgradcheck(lambda w: ours(x, edge_index, w), (weight,))
    theirs = PygGCNConv(3, 2).double()
    theirs.load_state_dict(ours.state_dict(), strict=False)
    penalties = []
    for layer in (ours, theirs):
        w = weight.detach().clone().requires_grad_()
        if layer is theirs:  # ours fills the missing self-loops with 2.5
            out = layer(x, *add_remaining_self_loops(edge_index, w, 2.5, 7))
        else:
            out = layer(x, edge_index, w)
        (grad_w,) = torch.autograd.grad(out.square().sum(), w, create_graph=True)
        penalties.append(torch.autograd.grad(grad_w.square().sum(), w)[0])
    torch.testing.assert_close(penalties[0], penalties[1])
