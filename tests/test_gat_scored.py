"""GAT's attention products and fused sparse part as one autograd Function
(gnnkit.ops._gat_scored.fused_gat_scored), against the two functions it replaces
(gnnkit.ops.attention.node_scores, then gnnkit.ops.fused_gat) and against finite differences."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from gnnkit.errors import InputError
from gnnkit.ops import CSRGraph, fused_gat
from gnnkit.ops._gat_scored import fused_gat_scored
from gnnkit.ops._jit import jit_available
from gnnkit.ops.attention import node_scores

pytestmark = pytest.mark.skipif(not jit_available(), reason="numba is not available")
SLOPE, P = 0.2, 0.4


def inputs(heads, channels, edge_dim=False, dtype=torch.float32, nodes=40, seed=0):
    """A graph over one node set (self-loops, a node without in-edges) and leaf inputs."""
    gen = torch.Generator().manual_seed(seed)
    dense = torch.rand(nodes, nodes, generator=gen) < 0.15
    dense.fill_diagonal_(True)
    dense[3] = False  # receiver 3 has no edges
    dst, src = dense.nonzero().t()
    graph = CSRGraph.from_edge_index(torch.stack([src, dst]), nodes)

    def leaf(*shape):
        return torch.randn(*shape, generator=gen, dtype=dtype).requires_grad_()

    xw, att_src, att_dst = (
        leaf(nodes, heads, channels),
        leaf(1, heads, channels),
        leaf(1, heads, channels),
    )
    edge_score = leaf(graph.num_edges, heads) if edge_dim else None
    return graph, xw, att_src, att_dst, edge_score


def two_functions(graph, xw, att_src, att_dst, edge_score, training, **options):
    a_src, a_dst = node_scores(xw, att_src, att_dst)
    return fused_gat(graph, a_src, a_dst, edge_score, xw, SLOPE, P, training, **options)


def results(function, case, training, seed=7):
    """The output, the returned attention and every leaf's gradient, for a fixed seed."""
    graph, *leaves = case
    torch.manual_seed(seed)
    out, alpha = function(graph, *leaves, training=training, return_attention=True)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype)
    trained = [t for t in leaves if t is not None and t.requires_grad]
    grads = torch.autograd.grad((out * weights).sum(), trained)
    return [out.detach(), alpha, *grads]


def scored(graph, xw, att_src, att_dst, edge_score, training, **options):
    return fused_gat_scored(graph, xw, att_src, att_dst, edge_score, SLOPE, P, training, **options)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("edge_dim", [False, True])
@pytest.mark.parametrize(("heads", "channels"), [(8, 8), (1, 7), (2, 3), (4, 16), (4, 17)])
def test_one_function_gives_the_two_functions_bits(heads, channels, edge_dim, training):
    # The same dropout draws, the same output and attention, the same gradients of the
    # features (the products' gradient added into the kernels' in place: a + b, as autograd
    # adds them), of both attention vectors and of the edge scores. (4, 16) takes the general
    # forward of the products; (4, 17), past 64 entries a node, their general kernels both
    # ways, and the general fused kernels.
    case = inputs(heads, channels, edge_dim)
    ours, theirs = results(scored, case, training), results(two_functions, case, training)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("trained", ["xw", "att_src", "edge_score", "xw+att_dst"])
def test_only_some_inputs_trained(trained):
    # A frozen projection (xw a constant), a frozen attention vector, only the edge scores:
    # the gradients asked for are the two functions' bits, the others are not made.
    case = list(inputs(8, 8, edge_dim=True))
    names = ["xw", "att_src", "att_dst", "edge_score"]
    for k, name in enumerate(names, start=1):
        case[k] = case[k].detach().requires_grad_(name in trained.split("+"))
    ours, theirs = results(scored, case, True), results(two_functions, case, True)
    assert len(ours) == 2 + len(trained.split("+"))
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)


def test_same_bits_for_every_thread_count(per_thread_count):
    # Enough nodes for several chunks of every pass (the sender pass, its copy back, the
    # products' gradient added in place).
    case = inputs(8, 8, nodes=3000, seed=5)
    one, two = per_thread_count(lambda: results(scored, case, True))
    for a, b in zip(one, two, strict=True):
        assert torch.equal(a, b)


def test_gradients_match_finite_differences():
    graph, *leaves = inputs(2, 3, True, torch.float64, nodes=8)

    def layer(*leaves):
        return fused_gat_scored(graph, *leaves, SLOPE, 0.0, False)[0]

    assert torch.autograd.gradcheck(layer, tuple(leaves))


class _Adds(TorchDispatchMode):
    """The shapes of the tensors every ``add`` of a pass returns."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        out = func(*args, **(kwargs or {}))
        if func.overloadpacket.__name__ in ("add", "add_"):
            self.shapes.append(tuple(out.shape))
        return out


def test_one_autograd_node_and_no_sum_of_two_feature_gradients():
    graph, xw, att_src, att_dst, _ = inputs(8, 8)
    out, _ = scored(graph, xw, att_src, att_dst, None, True)
    assert type(out.grad_fn).__name__ == "_ScoredGATBackward"
    with _Adds() as adds:
        torch.autograd.grad(out.sum(), [xw, att_src, att_dst])
    assert tuple(xw.shape) not in adds.shapes  # added in the kernel, not by autograd
    a_src, a_dst = node_scores(xw, att_src, att_dst)  # the two functions: autograd adds
    out, _ = fused_gat(graph, a_src, a_dst, None, xw, SLOPE, P, True)
    with _Adds() as adds:
        torch.autograd.grad(out.sum(), [xw, att_src, att_dst])
    assert tuple(xw.shape) in adds.shapes


def test_without_gradients_it_calls_the_two_functions():
    graph, xw, att_src, att_dst, _ = inputs(8, 8)
    with torch.no_grad():
        ours = scored(graph, xw, att_src, att_dst, None, False, return_attention=True)
        theirs = two_functions(graph, xw, att_src, att_dst, None, False, return_attention=True)
    assert ours[0].grad_fn is None
    assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])


def test_twice_differentiable_through_its_torch_form():
    graph, xw, att_src, att_dst, edge_score = inputs(2, 3, True, torch.float64, nodes=8)

    def layer(*leaves):
        return fused_gat_scored(graph, *leaves, SLOPE, 0.0, False)[0]

    assert torch.autograd.gradgradcheck(layer, (xw, att_src, att_dst, edge_score))


@pytest.mark.parametrize("recorded", [True, False])
def test_inputs_it_cannot_take_are_refused_in_one_line(recorded):
    # The same messages whether gradients are recorded (one Function) or not (two functions).
    graph, xw, att_src, att_dst, _ = inputs(2, 3)
    with torch.set_grad_enabled(recorded):
        with pytest.raises(InputError, match=r"fused_gat_scored expects xw \(N, H, C\)"):
            scored(graph, xw, att_src[..., :2], att_dst, None, True)
        with pytest.raises(InputError, match="expects tensors xw, att_src and att_dst"):
            scored(graph, xw, att_src, [0.5], None, True)
        with pytest.raises(InputError, match=r"xw must be \(\|V_src\|=40, H, C\)"):
            scored(graph, "xw", att_src, att_dst, None, True)
        with pytest.raises(InputError, match="dropout_p must be a number in"):
            fused_gat_scored(graph, xw, att_src, att_dst, None, SLOPE, 1.0, True)
        src, dst = torch.tensor([[0, 1, 2], [0, 0, 1]])
        bipartite = CSRGraph.from_edge_index(torch.stack([src, dst]), 2, 3)
        small = torch.randn(3, 2, 3, requires_grad=True)
        with pytest.raises(InputError, match=r"one node set .* 3 senders and 2 receivers"):
            scored(bipartite, small, att_src, att_dst, None, True)
