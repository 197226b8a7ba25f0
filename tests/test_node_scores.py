"""GAT's per-node attention products written out per (heads, channels) (gnnkit.ops._node_scores).

References: the products and their gradients in float64 torch (``(xw * a).sum(-1)`` and
autograd), and the general kernels of gnnkit.ops._gat_cpu for the shapes that take them.
"""

from __future__ import annotations

import pytest
import torch

from gnnkit.ops import attention
from gnnkit.ops._jit import jit_available

pytestmark = pytest.mark.skipif(not jit_available(), reason="numba is not available")


def scores():
    from gnnkit.ops import _node_scores

    return _node_scores


def case(rows, heads, channels, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    xw = torch.randn(rows, heads, channels, dtype=dtype, generator=gen)
    att = [torch.randn(heads, channels, dtype=dtype, generator=gen) for _ in "sd"]
    grads = [torch.randn(rows, heads, dtype=dtype, generator=gen) for _ in "sd"]
    return xw, att, grads


def reference(xw, att, grads):
    """The products and all three gradients through float64 torch autograd."""
    xw64 = xw.double().requires_grad_()
    att64 = [a.double().requires_grad_() for a in att]
    products = [(xw64 * a).sum(-1) for a in att64]
    backward = torch.autograd.grad(products, [xw64, *att64], [g.double() for g in grads])
    return [p.detach() for p in products], list(backward)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    ("heads", "channels"),
    [(8, 8), (1, 7), (2, 3), (1, 64), (4, 16), (8, 16)],  # the last three: general forward
)
def test_products_and_gradients_match_float64(heads, channels, dtype):
    xw, att, grads = case(1100, heads, channels, dtype)  # three blocks of the sums, one partial
    out = scores().node_scores(xw, *att)
    back = scores().node_scores_grad(xw, *grads, *att, (True, True, True))
    want_out, want_back = reference(xw, att, grads)
    tol = {"rtol": 1e-5, "atol": 1e-4} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-11}
    for ours, theirs in zip([*out, *back], [*want_out, *want_back], strict=True):
        assert ours.dtype == dtype and ours.is_contiguous()
        torch.testing.assert_close(ours.double(), theirs, **tol)


def test_only_the_gradients_asked_for():
    xw, att, grads = case(40, 8, 8, torch.float64)
    for needs in [(True, False, False), (False, True, False), (False, False, True)]:
        back = scores().node_scores_grad(xw, *grads, *att, needs)
        assert [b is not None for b in back] == list(needs)


@pytest.mark.parametrize(("heads", "channels"), [(8, 8), (1, 7)])
def test_same_bits_for_every_thread_count(heads, channels):
    xw, att, grads = case(2000, heads, channels, torch.float32, seed=1)
    previous = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append(
                [
                    *scores().node_scores(xw, *att),
                    *scores().node_scores_grad(xw, *grads, *att, (True, True, True)),
                ]
            )
    finally:
        torch.set_num_threads(previous)
    for one, two in zip(*results, strict=True):
        assert torch.equal(one, two)


def test_written_out_kernels_equal_the_general_ones_to_rounding(monkeypatch):
    xw, att, grads = case(600, 8, 8, torch.float32, seed=2)
    ours = [
        *scores().node_scores(xw, *att),
        *scores().node_scores_grad(xw, *grads, *att, (True, True, True)),
    ]
    monkeypatch.setenv("GNNKIT_NARROW_SPMM", "0")  # the general kernels and einsum
    general = [
        *scores().node_scores(xw, *att),
        *scores().node_scores_grad(xw, *grads, *att, (True, True, True)),
    ]
    for a, b in zip(ours, general, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)


def test_kernels_refuse_what_their_raw_reads_cannot_take():
    xw, att, grads = case(20, 2, 3, torch.float32)
    with pytest.raises(ValueError, match="one dtype"):
        scores().node_scores(xw, att[0].double(), att[1])
    with pytest.raises(ValueError, match="contiguous"):
        scores().node_scores_grad(xw, grads[0], grads[1], att[0].t().contiguous().t(), att[1],
                                  (True, True, True))  # fmt: skip


@pytest.mark.parametrize(("heads", "channels"), [(8, 8), (1, 7), (2, 3), (4, 16)])
def test_the_features_gradient_added_into_a_tensor_is_that_sum_to_the_bit(heads, channels):
    # into=: the products' gradient added in place, as autograd would add it to another
    # consumer's gradient (a + b), written out for small (H, C) and by the general kernel.
    xw, att, grads = case(700, heads, channels, torch.float32, seed=3)
    other = torch.randn(xw.shape, generator=torch.Generator().manual_seed(4))
    alone = scores().node_scores_grad(xw, *grads, *att, (True, True, True))
    into = other.clone()
    added = scores().node_scores_grad(xw, *grads, *att, (True, True, True), into=into)
    assert added[0] is into and torch.equal(into, other + alone[0])
    assert torch.equal(added[1], alone[1]) and torch.equal(added[2], alone[2])
    untouched = other.clone()  # no gradient asked for the features: into is left alone
    skipped = scores().node_scores_grad(xw, *grads, *att, (False, True, True), into=untouched)
    assert skipped[0] is None and torch.equal(untouched, other)


@pytest.mark.parametrize(
    "kind", ["forward", "features grad", "features grad add", "attention grad"]
)
def test_a_miscompiled_kernel_fails_its_self_check(kind, monkeypatch):
    module = scores()
    real = module._SOURCES[kind]

    def broken(heads, channels):  # the first entry's product is dropped
        source = real(heads, channels)
        if kind.startswith("features grad"):
            return source.replace("gs_0 * s_0 + ", "")
        return source.replace("+= x * s_0", "+= 0 * x").replace("+= gs_0 * x", "+= 0 * x")

    monkeypatch.setitem(module._SOURCES, kind, broken)
    monkeypatch.setattr(module, "_COMPILED", {})
    module._dispatcher.cache_clear()
    try:
        xw, att, grads = case(10, 2, 3, torch.float32)
        with pytest.raises(RuntimeError, match=r"self-check.*GNNKIT_NARROW_SPMM=0"):
            if kind == "forward":
                module.node_scores(xw, *att)
            else:
                into = torch.zeros_like(xw) if kind == "features grad add" else None
                module.node_scores_grad(xw, *grads, *att, (True, True, True), into=into)
    finally:
        module._dispatcher.cache_clear()  # the real kernels again for later tests


def test_gat_attention_gradients_run_through_the_written_out_kernels(monkeypatch):
    calls = []
    real = scores().node_scores_grad
    monkeypatch.setattr(scores(), "node_scores_grad", lambda *a: calls.append(a[-1]) or real(*a))
    xw, att, _ = case(30, 8, 8, torch.float64)
    att = [a.unsqueeze(0).requires_grad_() for a in att]  # (1, H, C), as GATConv holds them
    xw.requires_grad_()
    assert torch.autograd.gradcheck(attention.node_scores, (xw[:5].detach().requires_grad_(), *att))
    a_src, a_dst = attention.node_scores(xw, *att)
    (a_src.exp().sum() + a_dst.sum()).backward()
    assert calls and att[0].grad.shape == (1, 8, 8)


def projected_case(dtype, rows=300, inputs=12, heads=4, channels=6):
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(rows, inputs, dtype=dtype, generator=gen)
    weight = torch.randn(heads * channels, inputs, dtype=dtype, generator=gen)
    att = [torch.randn(1, heads, channels, dtype=dtype, generator=gen) for _ in "sd"]
    return x, weight, att


def projection_of(weight, att):
    """W^T A for the block-diagonal A (H C, 2H) of both attention vectors."""
    heads, channels = att[0].shape[1:]
    blocks = torch.zeros(heads * channels, 2 * heads, dtype=weight.dtype)
    for h in range(heads):
        rows = slice(h * channels, (h + 1) * channels)
        blocks[rows, h] = att[0][0, h]
        blocks[rows, heads + h] = att[1][0, h]
    return weight.t() @ blocks


def test_projected_scores_are_the_products_with_the_gradients_of_x_times_the_projection():
    x, weight, att = projected_case(torch.float64)
    x.requires_grad_()
    projection = projection_of(weight, att).requires_grad_()
    xw = (x @ weight.t()).detach().view(x.size(0), *att[0].shape[1:])
    a_src, a_dst = attention.projected_node_scores(x, projection, xw, *att)
    logits = x @ projection  # the reference: the same products as one matmul
    heads = att[0].size(1)
    torch.testing.assert_close(torch.cat([a_src, a_dst], 1), logits, rtol=1e-12, atol=1e-11)
    g = torch.randn_like(logits)
    ours = torch.autograd.grad([a_src, a_dst], [x, projection], [g[:, :heads], g[:, heads:]])
    want = torch.autograd.grad(logits, [x, projection], g)
    for a, b in zip(ours, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-11)


def test_gat_with_projected_scores_passes_gradcheck_and_matches_its_matmul_path(monkeypatch):
    from gnnkit.nn import GATConv, _gat_attend

    gen = torch.Generator().manual_seed(3)
    x = torch.randn(40, 6, dtype=torch.float64, generator=gen, requires_grad=True)
    edge_index = torch.randint(0, 40, (2, 160), generator=gen)
    layer = GATConv(6, 5, heads=3).double()
    layer.bias.data.normal_(generator=gen)
    calls = []
    real = attention.projected_node_scores
    monkeypatch.setattr(
        _gat_attend, "projected_node_scores", lambda *a: calls.append(1) or real(*a)
    )
    monkeypatch.setattr(_gat_attend, "MIN_PROJECTED_BYTES", 0)  # every xw takes the pass
    names = ["lin.weight", "att_src", "att_dst"]
    leaves = [x] + [layer.get_parameter(n).detach().clone().requires_grad_() for n in names]

    def run(x, *params):
        return torch.func.functional_call(
            layer, dict(zip(names, params, strict=True)), (x, edge_index)
        )

    assert torch.autograd.gradcheck(run, tuple(leaves))
    assert calls
    g = torch.randn(40, 15, dtype=torch.float64, generator=gen)
    ours = torch.autograd.grad(run(*leaves), leaves, g)
    monkeypatch.setattr(_gat_attend, "MIN_PROJECTED_BYTES", 1 << 62)  # x @ (W^T A)
    calls.clear()
    want = torch.autograd.grad(run(*leaves), leaves, g)
    assert not calls
    for a, b in zip(ours, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-11)


def test_projected_scores_are_twice_differentiable_and_check_their_inputs():
    x, weight, att = projected_case(torch.float64, rows=20, inputs=5, heads=2, channels=3)
    xw = (x @ weight.t()).view(20, 2, 3)
    projection = projection_of(weight, att).requires_grad_()
    x.requires_grad_()

    def products(x, projection):  # xw and the vectors fixed: the vjp depends on x, projection
        return attention.projected_node_scores(x, projection, xw, *att)

    assert torch.autograd.gradgradcheck(products, (x, projection))
    with pytest.raises(ValueError, match=r"projection \(F_in, 2H\)"):
        attention.projected_node_scores(x, projection[:, :3], xw, *att)
    with pytest.raises(ValueError, match="attention vectors of H x C entries"):
        attention.projected_node_scores(x, projection, xw, att[0][..., :2], att[1])
    # where the compiled pass does not serve xw (half precision): x @ projection itself
    half = [t.detach().half() for t in (x, projection, xw)]
    a_src, a_dst = attention.projected_node_scores(*half, *(a.half() for a in att))
    assert torch.equal(torch.cat([a_src, a_dst], 1), half[0] @ half[1])
