"""The fused GAT op (gnnkit.ops.fused_gat): numba kernels against a dense masked softmax and
against the torch form, gradients, determinism, and GATConv with the fused path on and off."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gnnkit.errors import InputError
from gnnkit.nn import GATConv
from gnnkit.ops import CSRGraph, fused_gat
from gnnkit.ops._jit import jit_available
from gnnkit.ops.attention import _FusedGAT, fused_gat_backend, reference_gat

needs_jit = pytest.mark.skipif(not jit_available(), reason="numba is not available")
SLOPE, P = 0.2, 0.4


def kernels():
    from gnnkit.ops import _gat_cpu

    return _gat_cpu


def graph_inputs(dtype=torch.float32, num_src=9, num_dst=7, heads=3, channels=4, seed=0):
    """A bipartite graph without duplicate edges, receiver 2 without edges, and inputs."""
    gen = torch.Generator().manual_seed(seed)
    dense = torch.rand(num_dst, num_src, generator=gen) < 0.45
    dense[2] = False
    dst, src = dense.nonzero().t()
    perm = torch.randperm(src.numel(), generator=gen)  # any input order
    graph = CSRGraph.from_edge_index(torch.stack([src[perm], dst[perm]]), num_dst, num_src)

    def rand(*shape):
        return torch.randn(*shape, generator=gen, dtype=dtype)

    inputs = {
        "a_src": rand(num_src, heads),
        "a_dst": rand(num_dst, heads),
        "edge_score": rand(graph.num_edges, heads),
        "xw": rand(num_src, heads, channels),
    }
    keep = torch.rand(graph.num_edges, heads, generator=gen) >= P
    return graph, inputs, keep


def dense_gat(graph, a_src, a_dst, edge_score, xw, keep, scale):
    """Masked dense softmax over (|V_dst|, |V_src|, H) score matrices."""
    num_dst, num_src, heads = graph.num_rows, graph.num_cols, xw.size(1)
    scores = a_src.unsqueeze(0).expand(num_dst, num_src, heads).clone()
    if a_dst is not None:
        scores = scores + a_dst.unsqueeze(1)
    edge = torch.zeros(num_dst, num_src, heads, dtype=xw.dtype)
    if edge_score is not None:
        edge[graph.row, graph.col] = edge_score
    mask = torch.zeros(num_dst, num_src, dtype=torch.bool)
    mask[graph.row, graph.col] = True
    scores = F.leaky_relu(scores + edge, SLOPE).masked_fill(~mask.unsqueeze(-1), float("-inf"))
    alpha = torch.softmax(scores, dim=1).nan_to_num(0.0)  # rows without edges: 0
    weights = alpha.clone()
    if keep is not None:
        dense_keep = torch.zeros(num_dst, num_src, heads, dtype=xw.dtype)
        dense_keep[graph.row, graph.col] = keep.to(xw.dtype)
        weights = weights * dense_keep * scale
    return torch.einsum("ijh,jhc->ihc", weights, xw), alpha[graph.row, graph.col]


@needs_jit
@pytest.mark.parametrize("heads", [1, 3])  # one head: gnnkit.ops._gat_cpu_one_head's passes
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("with_dropout", [False, True])
@pytest.mark.parametrize("optional", ["all", "no_dst", "no_edge_score"])
def test_kernel_forward_matches_dense_softmax(dtype, with_dropout, optional, heads):
    graph, inputs, keep = graph_inputs(dtype, heads=heads)
    if optional == "no_dst":
        inputs["a_dst"] = None
    if optional == "no_edge_score":
        inputs["edge_score"] = None
    keep, scale = (keep, 1 / (1 - P)) if with_dropout else (None, 1.0)
    args = (inputs["a_src"], inputs["a_dst"], inputs["edge_score"], inputs["xw"], SLOPE)
    out, alpha = kernels().forward(graph.rowptr, graph.col, *args, keep, scale)
    want_out, want_alpha = dense_gat(graph, *args[:4], keep, scale)
    tol = {"atol": 1e-6, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 1e-12, "rtol": 0}
    torch.testing.assert_close(out, want_out, **tol)
    torch.testing.assert_close(alpha, want_alpha, **tol)
    assert out[2].abs().sum() == 0  # the receiver without edges
    ref_out, ref_alpha = reference_gat(graph, *args, keep, scale)
    torch.testing.assert_close(out, ref_out, **tol)
    torch.testing.assert_close(alpha, ref_alpha, **tol)


@needs_jit
@pytest.mark.parametrize("heads", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("optional", ["all", "no_dst", "no_edge_score"])
def test_kernel_backward_matches_autograd_of_torch_form(dtype, optional, heads):
    graph, inputs, keep = graph_inputs(dtype, seed=1, heads=heads)
    if optional == "no_dst":
        inputs["a_dst"] = None
    if optional == "no_edge_score":
        inputs["edge_score"] = None
    names = [n for n in ("a_src", "a_dst", "edge_score", "xw") if inputs[n] is not None]
    for name in names:
        inputs[name].requires_grad_(True)
    args = (inputs["a_src"], inputs["a_dst"], inputs["edge_score"], inputs["xw"], SLOPE)
    scale = 1 / (1 - P)
    ref_out, _ = reference_gat(graph, *args, keep, scale)
    grad_out = torch.randn_like(ref_out)
    want = dict(
        zip(names, torch.autograd.grad(ref_out, [inputs[n] for n in names], grad_out), strict=True)
    )
    _, alpha = kernels().forward(graph.rowptr, graph.col, *args, keep, scale)
    colptr, row_t, _, perm_t = graph.transpose()
    grads = kernels().backward(
        graph.rowptr, graph.col, colptr, row_t, perm_t, *args[:4], alpha, SLOPE, keep, scale,
        grad_out,
    )  # fmt: skip
    got = dict(zip(("xw", "a_src", "a_dst", "edge_score"), grads, strict=True))
    tol = {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 1e-12, "rtol": 0}
    for name in ("a_dst", "edge_score"):
        assert (got[name] is None) == (inputs[name] is None)
    for name in names:
        torch.testing.assert_close(got[name], want[name], **tol)


@needs_jit
def test_numba_backward_matches_numeric_gradient():
    """gradcheck of the autograd Function on the kernels, with a fixed dropout mask."""
    graph, inputs, keep = graph_inputs(torch.float64, num_src=6, num_dst=5, heads=2, channels=3)
    tensors = [inputs[n].requires_grad_(True) for n in ("a_src", "a_dst", "edge_score", "xw")]

    def function(a_src, a_dst, edge_score, xw):
        out, _ = _FusedGAT.apply(
            kernels(), graph, a_src, a_dst, edge_score, xw, SLOPE, keep, 1 / (1 - P)
        )
        return out

    assert torch.autograd.gradcheck(function, tensors)


@pytest.mark.parametrize("backend", ["torch", "kernel"])
def test_fused_gat_gradcheck(backend, monkeypatch):
    if backend == "torch":
        monkeypatch.setenv("GNNKIT_FUSED_GAT", "0")
    elif not jit_available():
        pytest.skip("numba is not available")
    assert (fused_gat_backend("cpu", torch.float64) == "torch") == (backend == "torch")
    graph, inputs, _ = graph_inputs(torch.float64, num_src=6, num_dst=5, heads=2, channels=3)
    tensors = [inputs[n].requires_grad_(True) for n in ("a_src", "a_dst", "edge_score", "xw")]

    def function(a_src, a_dst, edge_score, xw):
        return fused_gat(graph, a_src, a_dst, edge_score, xw, SLOPE)[0]

    assert torch.autograd.gradcheck(function, tensors)


@needs_jit
@pytest.mark.parametrize("threads", [1, 2])
def test_fused_gat_is_bit_reproducible(threads):
    """Two seeded training calls agree bit for bit; one and two threads agree too."""
    previous = torch.get_num_threads()
    graph, inputs, _ = graph_inputs(torch.float32, num_src=40, num_dst=30, heads=4, channels=8)

    def run(num_threads):
        torch.set_num_threads(num_threads)
        torch.manual_seed(5)
        leaves = {n: t.clone().requires_grad_(True) for n, t in inputs.items()}
        out, alpha = fused_gat(graph, *leaves.values(), SLOPE, 0.5, True, return_attention=True)
        out.backward(torch.ones_like(out))
        return [out, alpha, *(leaf.grad for leaf in leaves.values())]

    try:
        first, second, serial = run(threads), run(threads), run(1)
    finally:
        torch.set_num_threads(previous)
    for a, b, c in zip(first, second, serial, strict=True):
        assert torch.equal(a, b)
        assert torch.equal(a, c)


def test_fused_gat_draws_dropout_in_csr_order_with_torchs_generator(monkeypatch):
    """The kernel and the torch form drop the same entries for a seed (same mask draw)."""
    graph, inputs, _ = graph_inputs(torch.float64)
    results = []
    for flag in ("1", "0"):
        monkeypatch.setenv("GNNKIT_FUSED_GAT", flag)
        torch.manual_seed(3)
        results.append(fused_gat(graph, *inputs.values(), SLOPE, P, True, return_attention=True))
    (out, alpha), (ref_out, ref_alpha) = results
    torch.testing.assert_close(out, ref_out, atol=1e-12, rtol=0)
    torch.testing.assert_close(alpha, ref_alpha, atol=1e-12, rtol=0)
    dropped = (alpha == 0).float().mean().item()
    assert 0.2 < dropped < 0.6  # about P of the coefficients, not all or none
    _, eval_alpha = fused_gat(graph, *inputs.values(), SLOPE, P, False, return_attention=True)
    assert eval_alpha is not None and (eval_alpha > 0).all()


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"graph": "not a graph"}, "graph must be a CSRGraph"),
        ({"xw": torch.randn(9, 3)}, "xw must be"),
        ({"a_src": torch.randn(8, 3)}, "a_src must have shape"),
        ({"a_dst": torch.randn(7, 2)}, "a_dst must have shape"),
        ({"edge_score": torch.randn(1, 3)}, "edge_score must have shape"),
        ({"a_src": torch.randn(9, 3, dtype=torch.float64)}, "a_src is torch.float64"),
        ({"negative_slope": "0.2"}, "negative_slope must be a number"),
        ({"dropout_p": 1.0}, r"dropout_p must be a number in \[0, 1\)"),
        ({"deterministic": "yes"}, "deterministic must be None or a bool"),
    ],
)
def test_fused_gat_rejects_bad_inputs(change, match):
    graph, inputs, _ = graph_inputs()
    kwargs = {"graph": graph, **inputs, "negative_slope": SLOPE, "dropout_p": 0.0, **change}
    with pytest.raises(InputError, match=match):
        fused_gat(**kwargs)


def test_fused_gat_rejects_interleaved_graphs_and_integer_features():
    graph, inputs, _ = graph_inputs()
    with pytest.raises(InputError, match="one copy per edge"):
        fused_gat(graph.interleave_heads(3), *inputs.values())
    inputs = {n: t.long() for n, t in inputs.items()}
    with pytest.raises(InputError, match="floating-point"):
        fused_gat(graph, *inputs.values())


@needs_jit
@pytest.mark.parametrize(
    "case",
    [
        "plain", "edge_dim", "bipartite", "mean", "one_head_mean", "residual", "user_in_place",
        "float64", "adj_t", "attention",
    ],
)  # fmt: skip
def test_gatconv_fused_equals_unfused(case, monkeypatch):
    """GATConv's outputs, coefficients and gradients with the fused kernel on and off (the
    fused path adds the bias in place on the kernel's output, unless a residual or the mean
    over heads comes first; a user's own in-place edit of the output must still work)."""
    torch.manual_seed(0)
    dtype = torch.float64 if case == "float64" else torch.float32
    n, fin = 12, 5
    edge_index = torch.randint(0, n, (2, 40))
    kwargs: dict = {"heads": 3, "concat": case not in ("mean", "one_head_mean")}
    if case == "one_head_mean":
        kwargs["heads"] = 1
    if case == "residual":
        kwargs["residual"] = True
    x: object = torch.randn(n, fin, dtype=dtype)
    call: dict = {}
    if case == "edge_dim":
        kwargs["edge_dim"] = 2
        call["edge_attr"] = torch.randn(40, 2)
    if case == "bipartite":
        x = (torch.randn(n, fin), torch.randn(8, 4))
        edge_index = torch.stack([torch.randint(0, n, (40,)), torch.randint(0, 8, (40,))])
        fin = (fin, 4)
    if case == "adj_t":
        from torch_geometric.utils import to_torch_csr_tensor

        edge_index = to_torch_csr_tensor(edge_index.flip(0), size=(n, n))
    layer = GATConv(fin, 4, **kwargs).to(dtype)
    results = []
    for flag in ("1", "0"):
        monkeypatch.setenv("GNNKIT_FUSED_GAT", flag)
        layer.zero_grad()
        if case == "attention":
            results.append(layer.attention(x, edge_index)[1])
            continue
        out = layer(x, edge_index, **call)
        if case == "user_in_place":
            out = out.relu_()
        out.backward(torch.linspace(-1, 1, out.numel(), dtype=dtype).view_as(out))
        results.append([out.detach(), *(p.grad.clone() for p in layer.parameters())])
        layer.eval()
        with torch.no_grad():
            _, (_, alpha) = layer(x, edge_index, **call, return_attention_weights=True)
        layer.train()
        results[-1].append(alpha if isinstance(alpha, torch.Tensor) else alpha.values())
    tol = {"atol": 1e-5, "rtol": 1e-4} if dtype == torch.float32 else {}
    torch.testing.assert_close(results[0], results[1], **tol)


@needs_jit
def test_gatconv_runs_the_kernel_and_caches_its_graph(monkeypatch):
    calls = []
    original = _FusedGAT.apply

    def counting(*args):
        calls.append(args[1])  # the CSR graph
        return original(*args)

    monkeypatch.setattr(_FusedGAT, "apply", counting)
    layer = GATConv(5, 4, heads=2, dropout=0.5)
    x, edge_index = torch.randn(10, 5), torch.randint(0, 10, (2, 30))
    for _ in range(2):
        layer(x, edge_index).sum().backward()
    assert len(calls) == 2 and calls[0] is calls[1]  # one structure, built once
    monkeypatch.setenv("GNNKIT_FUSED_GAT", "0")
    layer(x, edge_index)
    assert len(calls) == 2


@pytest.mark.parametrize("flag", ["1", "0"])
@pytest.mark.parametrize("num_nodes", [0, 5])
def test_fused_gat_on_a_graph_without_edges(flag, num_nodes, monkeypatch):
    monkeypatch.setenv("GNNKIT_FUSED_GAT", flag)
    graph = CSRGraph.from_edge_index(torch.zeros(2, 0, dtype=torch.long), num_nodes)
    xw = torch.randn(num_nodes, 2, 3, requires_grad=True)
    a_src = torch.randn(num_nodes, 2, requires_grad=True)
    out, alpha = fused_gat(graph, a_src, None, None, xw, SLOPE, P, True, return_attention=True)
    assert out.shape == (num_nodes, 2, 3) and not out.any()
    assert alpha is not None and alpha.shape == (0, 2)
    if flag == "1" and jit_available():  # the kernel's output is part of the autograd graph
        out.sum().backward()
        assert xw.grad is not None and not xw.grad.any()


@needs_jit
@pytest.mark.parametrize("threads", [1, 2])
def test_node_scores_kernel_equals_the_products_and_their_gradients(threads):
    from gnnkit.ops.attention import node_scores, node_scores_available

    gen = torch.Generator().manual_seed(4)
    xw = torch.randn(300, 4, 5, dtype=torch.float64, generator=gen).requires_grad_()
    att = [torch.randn(1, 4, 5, dtype=torch.float64, generator=gen).requires_grad_() for _ in "sd"]
    assert node_scores_available(xw) and not node_scores_available(xw.half())
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a_src, a_dst = node_scores(xw, *att)
        grads = torch.autograd.grad((a_src * 1.5 + a_dst.sin()).sum(), [xw, *att])
    finally:
        torch.set_num_threads(previous)
    expected = [(xw * a).sum(-1) for a in att]  # the per-head dot products, in torch
    assert a_src.is_contiguous() and a_dst.is_contiguous()
    assert torch.allclose(a_src, expected[0]) and torch.allclose(a_dst, expected[1])
    reference = torch.autograd.grad((expected[0] * 1.5 + expected[1].sin()).sum(), [xw, *att])
    for ours, theirs in zip(grads, reference, strict=True):
        assert ours.shape == theirs.shape and torch.allclose(ours, theirs)
    probe = [t.detach()[:6].clone().requires_grad_() if t is xw else t for t in (xw, *att)]
    assert torch.autograd.gradcheck(node_scores, tuple(probe))
    with pytest.raises(InputError, match="node_scores expects xw"):
        node_scores(xw, att[0][..., :4], att[1])


@needs_jit
@pytest.mark.parametrize("frozen", [0, 1])
def test_node_scores_gradient_of_one_attention_vector(frozen):
    # With one attention vector frozen, only the other one gets a gradient, from its own sum.
    from gnnkit.ops.attention import node_scores

    gen = torch.Generator().manual_seed(5)
    xw = torch.randn(50, 3, 4, dtype=torch.float64, generator=gen)
    att = [torch.randn(1, 3, 4, dtype=torch.float64, generator=gen) for _ in "sd"]
    att[1 - frozen].requires_grad_()
    a_src, a_dst = node_scores(xw, *att)
    (grad,) = torch.autograd.grad((a_src * 2 + a_dst.cos()).sum(), [att[1 - frozen]])
    expected = [(xw * a).sum(-1) for a in att]
    (want,) = torch.autograd.grad((expected[0] * 2 + expected[1].cos()).sum(), [att[1 - frozen]])
    torch.testing.assert_close(grad, want)


@needs_jit
def test_attention_weights_with_gradients_leave_the_kernel_output_unchanged(monkeypatch):
    """PyG's test_gat_conv compares the output with and without return_attention_weights by
    allclose's default tolerance: with gradients recorded the output stays the kernel's (the
    same bits) and the coefficients come beside it, with gradients equal to the unfused path's.
    """
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(30, 6, generator=gen)
    edge_index = torch.randint(0, 30, (2, 120), generator=gen)
    weights = torch.randn(150, 2, generator=gen)  # at most |E| + |V| coefficients per head
    layer = GATConv(6, 5, heads=2)  # dropout 0: nothing dropped in training
    grads = []
    for flag in ("1", "0"):
        monkeypatch.setenv("GNNKIT_FUSED_GAT", flag)
        layer.zero_grad()
        plain = layer(x, edge_index)
        out, (edges, alpha) = layer(x, edge_index, return_attention_weights=True)
        if flag == "1":
            assert torch.equal(out, plain)
            with torch.no_grad():  # the kernel's own coefficients
                _, (kernel_edges, kernel_alpha) = layer(
                    x, edge_index, return_attention_weights=True
                )
            assert torch.equal(edges, kernel_edges)
            torch.testing.assert_close(alpha.detach(), kernel_alpha)
        assert alpha.requires_grad
        (out.sum() + (alpha * weights[: alpha.size(0)]).sum()).backward()
        grads.append([p.grad.clone() for p in layer.parameters()])
    torch.testing.assert_close(grads[0], grads[1], atol=1e-5, rtol=1e-4)


@needs_jit
def test_attention_weights_under_attention_dropout_take_the_unfused_path(monkeypatch):
    calls = []
    original = _FusedGAT.apply
    monkeypatch.setattr(_FusedGAT, "apply", lambda *args: calls.append(1) or original(*args))
    layer = GATConv(5, 4, heads=2, dropout=0.5)
    x, edge_index = torch.randn(10, 5), torch.randint(0, 10, (2, 30))
    _, (_, alpha) = layer(x, edge_index, return_attention_weights=True)
    assert not calls and alpha.requires_grad  # the coefficients it aggregated with
    layer(x, edge_index)
    assert len(calls) == 1


def _graph_nodes(out):
    """The names of the autograd nodes behind ``out``."""
    names, visited, stack = set(), set(), [out.grad_fn]
    while stack:
        node = stack.pop()
        if node is not None and node not in visited:
            visited.add(node)
            names.add(type(node).__name__)
            stack += [next_node for next_node, _ in node.next_functions]
    return names


@pytest.mark.parametrize("edge_dim", [None, 3])
def test_second_derivatives_through_the_fused_layer(edge_dim):
    # With create_graph the fused attention and the attention products differentiate their
    # torch form (recomputed from the saved inputs): gradgradcheck against finite differences,
    # through the features and through every parameter, with a constant incoming gradient
    # (out.sum()) and with one that has a graph; the first-order gradient is the kernels'.
    torch.manual_seed(0)
    layer = GATConv(9, 4, heads=2, edge_dim=edge_dim).double().eval()  # 9 >= 2 x 4: node_scores
    x = torch.randn(10, 9, dtype=torch.float64, requires_grad=True)
    edge_index = torch.randint(0, 10, (2, 30))
    edge_attr = None if edge_dim is None else torch.randn(30, edge_dim, dtype=torch.float64)
    nodes = _graph_nodes(layer(x, edge_index, edge_attr))
    assert "_ScoredGATBackward" in nodes  # the products and the kernels as one Function
    assert not {"_FusedGATBackward", "_NodeScoresBackward"} & nodes
    assert torch.autograd.gradgradcheck(lambda t: layer(t, edge_index, edge_attr), (x,))
    params = [p for p in layer.parameters()]
    assert torch.autograd.gradgradcheck(
        lambda t, *ps: torch.func.functional_call(
            layer, dict(zip([n for n, _ in layer.named_parameters()], ps, strict=True)),
            (t, edge_index, edge_attr),
        ),
        (x, *[p.detach().requires_grad_() for p in params]),
    )  # fmt: skip
    first = torch.autograd.grad(layer(x, edge_index, edge_attr).sum(), x)[0]
    with_graph = torch.autograd.grad(layer(x, edge_index, edge_attr).sum(), x, create_graph=True)
    torch.testing.assert_close(with_graph[0], first)
    assert with_graph[0].requires_grad


def test_a_mixed_second_derivative_equals_pygs():
    # d/dW of |d out.sum() / dx|^2 (a gradient penalty) through the fused layer, against PyG's
    # GATConv with the same weights, on a graph that takes the written-out kernels.
    from torch_geometric.nn import GATConv as PygGATConv

    torch.manual_seed(0)
    x = torch.randn(300, 40, dtype=torch.float64, requires_grad=True)
    edge_index = torch.randint(0, 300, (2, 1500))
    ours, theirs = GATConv(40, 8, heads=4).double(), PygGATConv(40, 8, heads=4).double()
    theirs.load_state_dict(ours.state_dict())
    results = []
    assert "_ScoredGATBackward" in _graph_nodes(ours(x, edge_index))
    for layer in (ours.eval(), theirs.eval()):
        out = layer(x, edge_index)
        (grad_x,) = torch.autograd.grad(out.sum(), x, create_graph=True)
        penalty = grad_x.square().sum()
        results.append(torch.autograd.grad(penalty, [layer.lin.weight, layer.att_src]))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b)


def test_a_second_derivative_in_training_keeps_the_forward_dropout_mask():
    # The recomputed torch form reuses the attention-dropout mask the forward pass drew: the
    # create_graph gradient of one forward pass equals the kernels' gradient of the same pass.
    torch.manual_seed(0)
    layer = GATConv(40, 8, heads=4, dropout=0.5).double().train()
    x = torch.randn(300, 40, dtype=torch.float64, requires_grad=True)
    edge_index = torch.randint(0, 300, (2, 1500))
    out = layer(x, edge_index)
    kernels = torch.autograd.grad(out.sum(), [x, layer.att_src], retain_graph=True)
    recomputed = torch.autograd.grad(out.sum(), [x, layer.att_src], create_graph=True)
    for a, b in zip(kernels, recomputed, strict=True):
        torch.testing.assert_close(a, b)
        assert b.requires_grad and not a.requires_grad


def test_the_unfused_lean_path_is_differentiable_twice(monkeypatch):
    # GNNKIT_FUSED_GAT=0: per-edge scores, edge softmax and a CSR matmul on the
    # head-interleaved graph, each differentiable twice.
    monkeypatch.setenv("GNNKIT_FUSED_GAT", "0")
    torch.manual_seed(0)
    layer = GATConv(9, 4, heads=2).double().eval()
    x = torch.randn(10, 9, dtype=torch.float64, requires_grad=True)
    edge_index = torch.randint(0, 10, (2, 30))
    nodes = _graph_nodes(layer(x, edge_index))
    assert "_FusedGATBackward" not in nodes and "_EdgeSoftmaxBackward" in nodes
    assert torch.autograd.gradgradcheck(lambda t: layer(t, edge_index), (x,))
