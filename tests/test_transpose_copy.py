"""The compiled transposed copy (gnnkit.ops._transpose_cpu) and where it serves: a row-major
weight multiplied by sparse features (sparse_linear, GCNConv's fused path).

References: torch's ``t().contiguous()`` (the copy, bit for bit), a dense product of the
densified features with the same weight, and autograd's gradients through it.
"""

from __future__ import annotations

import pytest
import torch

from gnnkit.nn import GCNConv, column_major_, sparse_linear
from gnnkit.ops import _transpose_cpu as transpose
from gnnkit.ops import matmul as matmul_module
from gnnkit.ops._jit import jit_available

pytestmark = pytest.mark.skipif(not jit_available(), reason="numba is not available")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "shape", [(64, 1433), (1433, 16), (8, 128), (9, 130), (57, 23), (7, 1000), (1000, 3)]
)
def test_transposed_copy_is_torchs_copy(shape, dtype, per_thread_count, monkeypatch):
    monkeypatch.setattr(transpose, "MIN_PARALLEL_ELEMENTS", 0)  # chunks on two threads too
    src = torch.randn(shape, dtype=dtype)
    src[0, 0], src[-1, -1] = float("nan"), -0.0  # copied as bits
    expected = src.t().contiguous()
    for got in per_thread_count(lambda: transpose.transposed(src)):
        assert got.is_contiguous() and got.shape == expected.shape
        assert torch.equal(got.isnan(), expected.isnan())
        assert torch.equal(got.nan_to_num().view(-1).view(torch.uint8),
                           expected.nan_to_num().view(-1).view(torch.uint8))  # fmt: skip


def test_serves_only_what_it_can_copy(monkeypatch):
    assert transpose.serves(torch.randn(64, 100))
    assert not transpose.serves(torch.randn(100, 64).t())  # not contiguous
    assert not transpose.serves(torch.randn(4, 8))  # below MIN_ELEMENTS: torch's copy
    assert not transpose.serves(torch.randn(64, 100).half())
    assert not transpose.serves(torch.randn(2, 64, 100))
    monkeypatch.setenv("GNNKIT_NARROW_SPMM", "0")
    assert not transpose.serves(torch.randn(64, 100))


def test_a_miscompiled_copy_fails_its_self_check(monkeypatch):
    real = transpose._source

    def first_blocks_lost(columns_outer):  # the first whole block of each row is not copied
        whole = "if i0 + BLOCK <= R:"
        return real(columns_outer).replace(whole, "if i0 + BLOCK <= R and j0 > ZERO_U:")

    monkeypatch.setattr(transpose, "_source", first_blocks_lost)
    monkeypatch.setattr(transpose, "_COMPILED", {})
    transpose._dispatcher.cache_clear()
    try:
        for shape in ((64, 100), (100, 64)):  # both loop orders
            with pytest.raises(RuntimeError, match="self-check"):
                transpose.transposed(torch.randn(shape))
    finally:
        transpose._dispatcher.cache_clear()  # the real kernel again for later tests


def sparse_features(rows: int, cols: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    dense = torch.randn(rows, cols, generator=gen, dtype=torch.float64)
    return (dense * (torch.rand(rows, cols, generator=gen) < 0.05)).to_sparse_csr()


def count_copies(monkeypatch) -> list[tuple[int, int]]:
    """Record the shapes the compiled copy is called with."""
    calls: list[tuple[int, int]] = []
    real = transpose.transposed

    def recording(src):
        calls.append(tuple(src.shape))
        return real(src)

    monkeypatch.setattr(transpose, "transposed", recording)
    return calls


@pytest.mark.parametrize("layout", ["row-major", "column-major"])
def test_sparse_linear_gradient_comes_in_the_weights_layout(layout, monkeypatch):
    x = sparse_features(300, 200, 1)
    weight = torch.randn(24, 200, dtype=torch.float64, requires_grad=True)
    if layout == "column-major":
        column_major_(weight)
    calls = count_copies(monkeypatch)
    grad = torch.randn(300, 24, dtype=torch.float64)
    out = sparse_linear(x, weight)
    out.backward(grad)
    reference = weight.detach().clone().requires_grad_()
    expected = x.to_dense() @ reference.t()
    expected.backward(grad)
    assert torch.allclose(out, expected, rtol=1e-12, atol=1e-12)
    assert torch.allclose(weight.grad, reference.grad, rtol=1e-12, atol=1e-12)
    assert weight.grad.stride() == weight.stride()  # kept by autograd as it came
    # the forward copies the row-major weight's transpose, the backward its gradient back
    assert calls == ([(24, 200), (200, 24)] if layout == "row-major" else [])


def test_sparse_linear_second_derivative_through_a_row_major_weight(monkeypatch):
    x = sparse_features(40, 300, 2)
    weight = torch.randn(16, 300, dtype=torch.float64, requires_grad=True)
    calls = count_copies(monkeypatch)
    (grad,) = torch.autograd.grad(sparse_linear(x, weight).pow(2).sum(), weight, create_graph=True)
    (second,) = torch.autograd.grad(grad.sum(), weight)
    reference = weight.detach().clone().requires_grad_()
    (ref_grad,) = torch.autograd.grad(
        (x.to_dense() @ reference.t()).pow(2).sum(), reference, create_graph=True
    )
    (ref_second,) = torch.autograd.grad(ref_grad.sum(), reference)
    assert torch.allclose(grad, ref_grad) and torch.allclose(second, ref_second)
    assert (16, 300) in calls  # the forward's copy ran; the backward's stayed differentiable


def test_gradient_of_a_computed_weight_is_left_to_autograd(monkeypatch):
    # Only a leaf's .t() gets its gradient back in the leaf's layout; a computed weight (a
    # parametrisation, a slice) gets the product's gradient as it comes.
    x = sparse_features(100, 200, 5)
    leaf = torch.randn(48, 200, dtype=torch.float64, requires_grad=True)
    calls = count_copies(monkeypatch)
    grad = torch.randn(100, 24, dtype=torch.float64)
    sparse_linear(x, leaf[::2] * 1.0).backward(grad)  # row-major, but computed
    assert calls == [(24, 200)]  # the forward's copy only
    reference = leaf.detach().clone().requires_grad_()
    (x.to_dense() @ (reference[::2] * 1.0).t()).backward(grad)
    assert torch.allclose(leaf.grad, reference.grad, rtol=1e-12, atol=1e-12)


def test_gcn_layer_on_sparse_features_gives_a_row_major_gradient(monkeypatch):
    x = sparse_features(120, 300, 3)
    edge_index = torch.randint(0, 120, (2, 600), generator=torch.Generator().manual_seed(4))
    ours = GCNConv(300, 16).double()
    calls = count_copies(monkeypatch)
    grad = torch.randn(120, 16, dtype=torch.float64)
    out = ours(x, edge_index)
    assert type(out.grad_fn).__name__ == "_GCNLayerBackward"  # the fused layer's node
    out.backward(grad)
    assert ours.lin.weight.grad.is_contiguous()
    assert (16, 300) in calls and (300, 16) in calls
    monkeypatch.setenv("GNNKIT_NARROW_SPMM", "0")  # torch's copies: the same gradient
    reference = GCNConv(300, 16).double()
    reference.load_state_dict(ours.state_dict())
    reference(x, edge_index).backward(grad)
    assert torch.allclose(ours.lin.weight.grad, reference.lin.weight.grad, rtol=1e-12)


def test_column_major_reads_strides_only():
    weight = torch.randn(16, 300)
    assert matmul_module._column_major(weight.t())
    assert matmul_module._column_major(weight.t().unsqueeze(0))
    assert not matmul_module._column_major(weight)
    assert not matmul_module._column_major(torch.randn(2, 300, 16).transpose(1, 2))
    assert not matmul_module._column_major(torch.randn(300, 16)[:, :8])  # rows strided


def test_row_major_copies_one_head_and_leaves_other_layouts_to_torch(monkeypatch):
    calls = count_copies(monkeypatch)
    weight = torch.randn(40, 60)
    one_head = weight.t().unsqueeze(0)
    got = matmul_module._row_major(one_head)
    assert got.is_contiguous() and torch.equal(got, one_head)
    assert calls == [(40, 60)]
    heads = torch.randn(2, 40, 50).transpose(1, 2)  # two heads: torch's copy
    got = matmul_module._row_major(heads)
    assert got.is_contiguous() and torch.equal(got, heads)
    assert calls == [(40, 60)]
