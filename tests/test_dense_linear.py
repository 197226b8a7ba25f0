"""gnnkit.ops.linear against F.linear: the compiled map for few outputs on CPU, and the product
into huge-page memory for large outputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import gnnkit.ops.linear as linear_module
from gnnkit.ops._jit import jit_available
from gnnkit.ops._memory import MIN_ADVISED_BYTES
from gnnkit.ops.linear import NARROW_OUTPUTS, linear

needs_jit = pytest.mark.skipif(not jit_available(), reason="numba is not available")


def node_of(out):
    return type(out.grad_fn).__name__


@needs_jit
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(700, 16, 7), (300, 64, 1), (129, 37, NARROW_OUTPUTS)])
def test_equals_f_linear_with_its_gradients(dtype, shape):
    rows, inputs, outputs = shape
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(rows, inputs, dtype=dtype, generator=gen).requires_grad_()
    weight = torch.randn(outputs, inputs, dtype=dtype, generator=gen).requires_grad_()
    ours = linear(x, weight)
    assert node_of(ours) == "_NarrowLinearBackward"
    theirs = F.linear(x, weight)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert torch.allclose(ours, theirs, rtol=tol, atol=tol)
    grad = torch.randn_like(ours)
    assert all(
        torch.allclose(a, b, rtol=tol, atol=tol)
        for a, b in zip(
            torch.autograd.grad(ours, (x, weight), grad),
            torch.autograd.grad(theirs, (x, weight), grad),
            strict=True,
        )
    )


@needs_jit
def test_gradcheck_and_non_contiguous_input():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(40, 130, dtype=torch.float64, generator=gen)[:, ::2].requires_grad_()
    weight = torch.randn(3, 65, dtype=torch.float64, generator=gen).requires_grad_()
    assert torch.autograd.gradcheck(linear, (x, weight))


@needs_jit
def test_the_same_for_any_thread_count():
    x, weight = torch.randn(5000, 24), torch.randn(5, 24)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = linear(x, weight)
        torch.set_num_threads(2)
        two = linear(x, weight)
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(one, two)


@needs_jit
@pytest.mark.parametrize(
    "x, weight",
    [
        (torch.randn(500, 16), torch.randn(NARROW_OUTPUTS + 1, 16)),  # too many outputs
        (torch.randn(4, 500, 16), torch.randn(7, 16)),  # a batch of matrices
        (torch.randn(10, 16), torch.randn(7, 16)),  # too small to gain
        (torch.randn(500, 16).half(), torch.randn(7, 16).half()),
    ],
)
def test_other_inputs_are_f_linear_exactly(x, weight):
    assert torch.equal(linear(x, weight), F.linear(x, weight))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("biased", [False, True])
def test_a_large_output_is_f_linear_bit_for_bit(dtype, biased):
    outputs = 64
    rows = MIN_ADVISED_BYTES // (outputs * torch.finfo(dtype).bits // 8) + 3
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(rows, 32, dtype=dtype, generator=gen).requires_grad_()
    weight = torch.randn(outputs, 32, dtype=dtype, generator=gen).requires_grad_()
    bias = torch.randn(outputs, dtype=dtype, generator=gen).requires_grad_() if biased else None
    ours, theirs = linear(x, weight, bias), F.linear(x, weight, bias)
    assert node_of(ours) == "_LargeLinearBackward"
    assert torch.equal(ours, theirs)
    grad = torch.randn_like(ours)
    inputs = (x, weight) if bias is None else (x, weight, bias)
    got = torch.autograd.grad(ours, inputs, grad)
    want = torch.autograd.grad(theirs, inputs, grad)
    for a, b in zip(got[:2], want[:2], strict=True):
        assert torch.equal(a, b)
    if biased:  # the compiled column sums: within rounding of torch's sum
        tol = {"rtol": 1e-5, "atol": 1e-3} if dtype == torch.float32 else {}
        torch.testing.assert_close(got[2], want[2], **tol)
    assert node_of(linear(x[:-4], weight, bias)) != "_LargeLinearBackward"  # under the threshold
    if biased:  # a bias that broadcasts, which linear leaves to F.linear
        assert node_of(linear(x, weight, bias[:1])) != "_LargeLinearBackward"
        assert torch.equal(linear(x, weight, bias[:1]), F.linear(x, weight, bias[:1]))


def test_the_large_output_path_is_twice_differentiable(monkeypatch):
    monkeypatch.setattr(linear_module, "MIN_ADVISED_BYTES", 0)
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(9, 4, dtype=torch.float64, generator=gen).requires_grad_()
    weight = torch.randn(NARROW_OUTPUTS + 3, 4, dtype=torch.float64, generator=gen)
    weight.requires_grad_()
    assert node_of(linear(x, weight)) == "_LargeLinearBackward"
    bias = torch.randn(NARROW_OUTPUTS + 3, dtype=torch.float64, generator=gen)
    bias.requires_grad_()
    assert node_of(linear(x, weight, bias)) == "_LargeLinearBackward"
    assert torch.autograd.gradcheck(linear, (x, weight))
    assert torch.autograd.gradgradcheck(linear, (x, weight))
    assert torch.autograd.gradcheck(linear, (x, weight, bias))
    assert torch.autograd.gradgradcheck(linear, (x, weight, bias))
    assert node_of(linear(x.half(), weight.half())) != "_LargeLinearBackward"
    assert node_of(linear(x.unsqueeze(0), weight)) != "_LargeLinearBackward"


@pytest.mark.parametrize("outputs", [7, 64])
def test_autocast_keeps_f_linears_compute_dtype(outputs):
    rows = MIN_ADVISED_BYTES // (4 * outputs) + 3  # large enough for the huge-page path at 64
    x, weight = torch.randn(rows, 16), torch.randn(outputs, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours, theirs = linear(x, weight), F.linear(x, weight)
    assert ours.dtype == theirs.dtype == torch.bfloat16
    assert torch.equal(ours, theirs)


@pytest.mark.skipif(not jit_available(), reason="numba is not available")
def test_without_gradients_the_kernel_runs_without_an_autograd_function(monkeypatch):
    x = torch.randn(600, 16)
    weight = torch.randn(7, 16, requires_grad=True)
    expected = linear(x, weight).detach()

    def refused(*args):
        raise AssertionError("an autograd Function ran for a product without gradients")

    monkeypatch.setattr(linear_module._NarrowLinear, "apply", refused)
    with torch.no_grad():
        out = linear(x.t().contiguous().t(), weight)  # a strided input is made contiguous
    assert out.grad_fn is None and torch.equal(out, expected)
    with pytest.raises(AssertionError, match="autograd Function"):
        linear(x, weight)


def float64_sums(grad, shape):
    return grad.double().reshape(-1, *shape).sum(0)


@needs_jit
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("rows", [1025, 2048])  # blocks of rows: one partial, all whole
def test_bias_gradient_sums_over_the_leading_dimensions(dtype, rows, monkeypatch):
    calls = []
    kernels = linear_module._kernels()
    real = kernels.column_sums
    monkeypatch.setattr(kernels, "column_sums", lambda v: calls.append(v.shape) or real(v))
    grad = torch.randn(rows, 4, 64, dtype=dtype)  # at least 1 MiB: the compiled sums
    with torch.no_grad():
        got = linear_module.bias_gradient(grad, (4, 64))
    assert calls == [(rows, 256)]
    tol = {"rtol": 1e-5, "atol": 1e-4} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-11}
    assert got.shape == (4, 64) and got.dtype == dtype
    torch.testing.assert_close(got.double(), float64_sums(grad, (4, 64)), **tol)


def test_bias_gradient_reads_other_gradients_in_place_and_refuses_a_wrong_shape():
    column_major = torch.randn(256, 4096).t()  # 4 MiB, not contiguous: torch's sum, no copy
    with torch.no_grad():
        got = linear_module.bias_gradient(column_major, (256,))
    assert torch.equal(got, column_major.sum(0))
    with pytest.raises(ValueError, match="does not end in the bias's shape"):
        linear_module.bias_gradient(torch.randn(10, 4), (5,))


@needs_jit
def test_bias_gradient_takes_the_compiled_sums_only_where_they_pay(monkeypatch):
    calls = []
    kernels = linear_module._kernels()
    real = kernels.column_sums
    monkeypatch.setattr(kernels, "column_sums", lambda v: calls.append(v.shape) or real(v))
    large, small = torch.randn(2048, 256), torch.randn(100, 16)
    with torch.no_grad():
        linear_module.bias_gradient(large, (256,))
        assert torch.equal(linear_module.bias_gradient(small, (16,)), small.sum(0))
    assert calls == [(2048, 256)]
    # while gradients are recorded (create_graph), torch's sum: differentiable again
    leaf = large.clone().requires_grad_()
    assert linear_module.bias_gradient(leaf, (256,)).grad_fn is not None
    assert len(calls) == 1


@needs_jit
def test_bias_gradient_is_the_same_for_any_thread_count():
    grad = torch.randn(30000, 48)
    previous = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            with torch.no_grad():
                results.append(linear_module.bias_gradient(grad, (48,)))
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(*results)


@needs_jit
def test_add_bias_in_place_with_autograds_gradients():
    from gnnkit.ops.linear import add_bias_

    base = torch.randn(3000, 8, 32, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(8, 32, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(3000, 8, 32, dtype=torch.float64)
    out = base * 2.0
    storage = out.data_ptr()
    result = add_bias_(out, bias)
    assert result.data_ptr() == storage and node_of(result) == "_AddBiasBackward"
    result.backward(grad)
    want = torch.autograd.grad(base * 2.0 + bias, [base, bias], grad)
    torch.testing.assert_close(base.grad, want[0], rtol=0, atol=0)
    torch.testing.assert_close(bias.grad, want[1], rtol=1e-12, atol=1e-11)
    # a small output: autograd's own add_ (one operator call fewer)
    small = torch.randn(10, 4, requires_grad=True) * 1.0
    assert node_of(add_bias_(small, torch.randn(4, requires_grad=True))) == "AddBackward0"
    with pytest.raises(ValueError, match="trailing dimensions"):
        add_bias_(torch.randn(10, 4), torch.randn(5))


@needs_jit
def test_add_bias_is_twice_differentiable(monkeypatch):
    from gnnkit.ops.linear import add_bias_

    monkeypatch.setattr(linear_module, "_MIN_SUM_BYTES", 0)  # every output takes the Function
    gen = torch.Generator().manual_seed(6)
    base = torch.randn(7, 3, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    bias = torch.randn(3, 4, dtype=torch.float64, generator=gen, requires_grad=True)

    def added(base, bias):
        return add_bias_(base * base, bias)  # a fresh output, free to overwrite

    assert node_of(added(base, bias)) == "_AddBiasBackward"
    assert torch.autograd.gradcheck(added, (base, bias))
    assert torch.autograd.gradgradcheck(added, (base, bias))
