"""Counter-based dropout on CPU (gnnkit.ops.dropout): the draws, the values, the gradients.

References: SplitMix64 written out here in Python integers (the published constants, wrapped
modulo 2**64 by hand), ``x * mask / (1 - p)``, ``relu`` and ``elu`` in torch (float64 for
ELU's accuracy), autograd through those, and the torch path of
:func:`gnnkit.nn.dropout` with numba switched off (a subprocess with ``GNNKIT_JIT=0``).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from gnnkit.errors import InputError, SecondDerivativeError
from gnnkit.nn import dropout
from gnnkit.nn.functional import elu_dropout, relu_dropout
from gnnkit.ops._jit import jit_available
from gnnkit.ops.dropout import (
    counter_dropout,
    counter_dropout_available,
    counter_elu_dropout,
    counter_keep_mask,
    relu_dropout_grad,
)
from gnnkit.ops.random import keep_mask

pytestmark = pytest.mark.skipif(not jit_available(), reason="numba is not available")

MASK64 = 2**64 - 1


def splitmix_keep(seed: int, count: int, p: float) -> torch.Tensor:
    """The keep mask of entries 0..count-1 for ``seed``: SplitMix64's outputs, top 24 bits."""
    threshold = round(p * 2**24)
    keep = []
    for i in range(count):
        z = (seed + (i + 1) * 0x9E3779B97F4A7C15) & MASK64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        z ^= z >> 31
        keep.append((z >> 40) >= threshold)
    return torch.tensor(keep)


def call_seed(torch_seed: int) -> int:
    """The seed one call draws after ``torch.manual_seed(torch_seed)``."""
    torch.manual_seed(torch_seed)
    return int(torch.randint(0, 2**63 - 1, (), dtype=torch.int64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("p", [0.5, 0.6, 0.1])
def test_the_mask_is_splitmix64_from_one_torch_draw(dtype, p):
    x = torch.randn(37, 11, dtype=dtype)
    seed = call_seed(7)
    keep = splitmix_keep(seed, x.numel(), p).view(x.shape)
    torch.manual_seed(7)
    out = counter_dropout(x, p)
    scale = torch.tensor(1.0 / (1.0 - p), dtype=dtype)
    assert torch.equal(out, x * keep.to(dtype) * scale)
    torch.manual_seed(7)
    assert torch.equal(counter_keep_mask(tuple(x.shape), p), keep)


def test_dropout_on_cpu_takes_the_counter_path_and_draws_one_seed_per_call():
    x = torch.randn(64, 8)
    assert counter_dropout_available(x) and not counter_dropout_available(x.half())
    torch.manual_seed(3)
    first, second = dropout(x, 0.5), dropout(x, 0.5)
    torch.manual_seed(3)
    assert torch.equal(first, counter_dropout(x, 0.5))
    assert torch.equal(second, counter_dropout(x, 0.5))
    assert not torch.equal(first, second)


def test_relu_variant_equals_relu_then_dropout_and_keeps_nan():
    x = torch.randn(50, 9)
    x[0, 0], x[1, 1] = float("nan"), -float("nan")
    torch.manual_seed(1)
    fused = relu_dropout(x, 0.5, training=True)
    torch.manual_seed(1)
    plain = dropout(torch.relu(x), 0.5)
    assert torch.equal(fused.isnan(), plain.isnan())
    assert torch.equal(fused.nan_to_num(), plain.nan_to_num())
    torch.manual_seed(1)
    keep = counter_keep_mask(tuple(x.shape), 0.5)
    assert fused.isnan().sum() == 2  # relu passes NaN on, and 0 * NaN is NaN, as in torch
    assert torch.equal(fused[keep & ~x.isnan()], 2 * torch.relu(x[keep & ~x.isnan()]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kept_mask_and_the_mask_drawn_again_give_the_same_gradient_bits(dtype, monkeypatch):
    # Small tensors keep their mask for the backward pass; large ones draw it again. Both must
    # give the gradient grad * m of the drawn mask to the bit (NaN, infinities, signed zeros),
    # with and without create_graph.
    import gnnkit.ops.dropout as counter

    x = torch.randn(97, 13, dtype=dtype)
    grad = torch.randn(97, 13, dtype=dtype)
    grad[0, :5] = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -0.0])
    grad[1] = -0.0

    kernels = counter._kernels()
    reads = []
    real_read = kernels.kept_entries

    def read_kept(*args):
        reads.append(True)
        return real_read(*args)

    monkeypatch.setattr(kernels, "kept_entries", read_kept)

    def gradient(limit: int, create_graph: bool) -> torch.Tensor:
        monkeypatch.setattr(counter, "MAX_KEPT_MASK", limit)
        leaf = x.clone().requires_grad_()
        torch.manual_seed(21)
        out = counter_dropout(leaf, 0.3)  # a scale that float32 and float64 round apart
        (result,) = torch.autograd.grad(out, leaf, grad, create_graph=create_graph)
        return result.detach()

    torch.manual_seed(21)
    keep = counter_keep_mask(tuple(x.shape), 0.3)
    expected = grad * torch.where(keep, torch.tensor(1 / 0.7, dtype=dtype), 0.0)
    bits = torch.int32 if dtype == torch.float32 else torch.int64
    numbers = ~expected.isnan()
    for limit in (x.numel(), x.numel() - 1):  # the mask kept, then drawn again
        for create_graph in (False, True):
            reads.clear()
            got = gradient(limit, create_graph)
            assert torch.equal(got.isnan(), expected.isnan())
            assert torch.equal(got[numbers].view(bits), expected[numbers].view(bits))
            # the compiled read of the kept mask ran where it should (not under create_graph)
            assert bool(reads) == (limit == x.numel() and not create_graph)


@pytest.mark.parametrize("relu", [False, True])
def test_gradient_is_the_same_mask_scaled(relu):
    x = torch.randn(300, 7, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(300, 7, dtype=torch.float64)
    torch.manual_seed(11)
    out = counter_dropout(x, 0.4, relu=relu)
    out.backward(grad)
    torch.manual_seed(11)
    keep = counter_keep_mask(tuple(x.shape), 0.4)
    passes = keep & (x.detach() > 0) if relu else keep
    assert torch.equal(x.grad, torch.where(passes, grad / 0.6, 0.0))
    # gradcheck with the seed fixed: the function of x is linear (piecewise with relu)
    probe = torch.randn(20, 3, dtype=torch.float64).abs().add_(0.1).requires_grad_()

    def fixed(t: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(5)
        return counter_dropout(t, 0.5, relu=relu)

    assert torch.autograd.gradcheck(fixed, (probe,))


def test_the_mask_does_not_depend_on_the_thread_count():
    x = torch.randn(4096, 33)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        torch.manual_seed(2)
        one = counter_dropout(x, 0.3)
        torch.set_num_threads(2)
        torch.manual_seed(2)
        two = counter_dropout(x, 0.3)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)


def test_draws_are_uniform_and_independent():
    torch.manual_seed(0)
    masks = torch.stack([counter_keep_mask((20000,), 0.6) for _ in range(100)]).float()
    assert abs(masks.mean().item() - 0.4) < 0.002  # 2e6 draws: std 3.5e-4
    per_entry = masks.mean(0)  # each entry over 100 calls: binomial std 0.049
    assert abs(per_entry.std().item() - 0.049) < 0.003
    pairs = torch.corrcoef(torch.stack([masks[:, :-1].flatten(), masks[:, 1:].flatten()]))
    assert abs(pairs[0, 1].item()) < 0.005  # neighbours are uncorrelated


def test_p_one_drops_everything_and_non_contiguous_input_works():
    x = torch.randn(30, 20)
    assert torch.equal(counter_dropout(x, 1.0), torch.zeros_like(x))
    t = x.t()  # not contiguous
    torch.manual_seed(4)
    out = counter_dropout(t, 0.5)
    torch.manual_seed(4)
    assert torch.equal(out, counter_dropout(t.contiguous(), 0.5))


def test_keep_mask_on_cpu_is_the_counter_stream():
    torch.manual_seed(9)
    ours = keep_mask((100, 8), 0.6)
    torch.manual_seed(9)
    assert torch.equal(ours, counter_keep_mask((100, 8), 0.6))


def test_without_numba_dropout_takes_torchs_draws():
    code = (
        "import torch\n"
        "from gnnkit.nn import dropout\n"
        "from gnnkit.ops.dropout import counter_dropout_available\n"
        "x = torch.randn(40, 6)\n"
        "assert not counter_dropout_available(x)\n"
        "torch.manual_seed(0)\n"
        "out = dropout(x, 0.5)\n"
        "torch.manual_seed(0)\n"
        "keep = torch.rand_like(x) >= 0.5\n"
        "assert torch.equal(out, x * keep.float() * 2.0)\n"
    )
    env = {"GNNKIT_JIT": "0", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def elu_inputs(dtype=torch.float32):
    x = torch.randn(64, 33, dtype=dtype) * 4
    edge = [0.0, -0.0, 1e-8, -1e-8, -1e-3, 0.3, -0.3465, -0.3466, -20.0, -87.5, -1e4, 88.0]
    x[0, : len(edge)] = torch.tensor(edge, dtype=dtype)
    x[1, 0], x[1, 1], x[1, 2] = float("nan"), float("inf"), -float("inf")
    return x


def test_elu_variant_is_elu_within_an_ulp_float32_and_exact_float64():
    x = elu_inputs()
    ours = counter_elu_dropout(x, 0.6, training=False)
    exact = torch.nn.functional.elu(x.double())  # the float64 reference, then its rounding
    assert torch.equal(ours.isnan(), exact.isnan())
    assert torch.equal(ours[exact.isinf()].double(), exact[exact.isinf()])
    finite = exact.isfinite()
    spacing = torch.finfo(torch.float32).eps * exact[finite].abs()
    error = (ours[finite].double() - exact[finite]).abs()
    assert bool((error <= spacing).all()), error.max()
    x64 = elu_inputs(torch.float64)
    assert torch.allclose(counter_elu_dropout(x64, 0.6, False), torch.nn.functional.elu(x64),
                          rtol=1e-15, atol=0, equal_nan=True)  # fmt: skip


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_elu_variant_draws_dropouts_mask(dtype):
    x = elu_inputs(dtype)
    torch.manual_seed(3)
    fused = elu_dropout(x, 0.6, training=True)
    torch.manual_seed(3)
    keep = counter_keep_mask(tuple(x.shape), 0.6)
    elu = counter_elu_dropout(x, 0.6, training=False)
    expected = elu * keep.to(dtype) * torch.tensor(1 / 0.4, dtype=dtype)
    assert torch.equal(fused.isnan(), expected.isnan())
    assert torch.equal(fused.nan_to_num(), expected.nan_to_num())


def test_elu_variant_gradient_is_the_chain_of_elu_and_dropout():
    # ELU's derivative from its output (e^x = ELU(x) + 1), as F.elu(inplace=True) computes it
    x = torch.randn(200, 9, dtype=torch.float64) * 3
    grad = torch.randn_like(x)
    ours, theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    torch.manual_seed(8)
    counter_elu_dropout(ours, 0.5, training=True).backward(grad)
    torch.manual_seed(8)
    counter_dropout(torch.nn.functional.elu(theirs * 1, inplace=True), 0.5).backward(grad)
    assert torch.allclose(ours.grad, theirs.grad, rtol=1e-12, atol=1e-15)
    probe = torch.randn(12, 4, dtype=torch.float64).requires_grad_()

    def fixed(t: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(5)
        return counter_elu_dropout(t, 0.5, training=True)

    assert torch.autograd.gradcheck(fixed, (probe,))
    assert torch.autograd.gradcheck(lambda t: counter_elu_dropout(t, 0.5, False), (probe,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_elu_variant_gradient_reads_the_mask_it_drew_bit_for_bit(dtype):
    # The backward pass reads the mask from the kept ELU output (dropped entries marked)
    # instead of drawing it again: the gradient must be the chain (grad * m) * ELU'(x) of the
    # mask the forward pass drew, to the bit, with NaN, infinities and signed zeros in both
    # the input and the incoming gradient, and ELU outputs of exactly -1.
    x = elu_inputs(dtype).requires_grad_()
    grad = torch.randn(x.shape, dtype=dtype)
    special = [float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 1e30, -1e30]
    grad[0, : len(special)] = torch.tensor(special, dtype=dtype)
    grad[1, : len(special)] = torch.tensor(special[::-1], dtype=dtype)
    grad[2:10] = grad[2:10].sign() * 0.0  # signed zeros against every kind of input
    torch.manual_seed(11)
    counter_elu_dropout(x, 0.6, training=True).backward(grad)
    torch.manual_seed(11)
    keep = counter_keep_mask(tuple(x.shape), 0.6)
    elu = counter_elu_dropout(x.detach(), 0.6, training=False)
    scale = torch.tensor(1 / 0.4, dtype=dtype)
    chained = (grad * torch.where(keep, scale, 0.0)) * torch.where(elu > 0, 1.0, elu + 1)
    assert bool(keep.any()) and not bool(keep.all())
    assert torch.equal(x.grad.isnan(), chained.isnan())
    bits = torch.int32 if dtype == torch.float32 else torch.int64
    numbers = ~chained.isnan()
    assert torch.equal(x.grad[numbers].view(bits), chained[numbers].view(bits))


def test_elu_dropout_elsewhere_is_elu_then_dropout():
    x = torch.randn(30, 8)
    torch.manual_seed(2)
    ours = elu_dropout(x, 0.5, training=True, draw="bytes")
    torch.manual_seed(2)
    assert torch.equal(ours, dropout(torch.nn.functional.elu(x), 0.5, draw="bytes"))
    copy = x.clone()
    elu_dropout(copy, 0.5, training=False, draw="bytes", inplace=True)
    assert torch.equal(copy, torch.nn.functional.elu(x))  # the input was overwritten
    for p in (1.0, -0.1, 2):
        with pytest.raises(InputError, match="dropout probability"):
            elu_dropout(x, p, training=True)


def test_relu_dropout_grad_kernel_equals_torch():
    out = torch.relu(torch.randn(50, 12))
    out[0, :3] = 0.0
    grad = torch.randn(50, 12)
    grad[1, 1] = float("nan")
    kernel = relu_dropout_grad(out, grad, 0.5)
    reference = relu_dropout_grad(out.t().contiguous().t(), grad, 0.5)  # strided: torch's path
    assert torch.equal(kernel.nan_to_num(nan=7.0), reference.nan_to_num(nan=7.0))
    assert torch.equal(reference.nan_to_num(nan=7.0),
                       torch.where(out > 0, grad * 2, 0.0).nan_to_num(nan=7.0))  # fmt: skip


@pytest.mark.parametrize("relu", [False, True])
def test_second_derivatives_through_dropout_are_taken_not_dropped(relu):
    # With create_graph the gradient must stay differentiable (a gradient penalty through
    # dropout): gradgradcheck against finite differences, the mask fixed by the seed.
    probe = (torch.randn(15, 4, dtype=torch.float64) + 0.1).requires_grad_()

    def fixed(t: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(6)
        return relu_dropout(t, 0.5, True) if relu else dropout(t, 0.5, True)

    assert torch.autograd.gradgradcheck(fixed, (probe,))
    # with grad mode on, relu_dropout_grad takes torch's differentiable ops: the same bits
    out, grad = fixed(probe).detach(), torch.randn(15, 4, dtype=torch.float64)
    with torch.no_grad():
        compiled = relu_dropout_grad(out, grad, 0.5)
    assert torch.equal(relu_dropout_grad(out, grad, 0.5), compiled)


def test_the_elu_variants_refuse_a_second_derivative():
    x = torch.randn(10, 3, dtype=torch.float64, requires_grad=True)
    for training in (True, False):
        with pytest.raises(SecondDerivativeError, match="elu_dropout"):
            torch.autograd.grad(elu_dropout(x, 0.5, training).sum(), x, create_graph=True)
