"""Counter-based dropout on CPU (gnnkit.ops.dropout): the draws, the values, the gradients.

References: SplitMix64 written out here in Python integers (the published constants, wrapped
modulo 2**64 by hand), ``x * mask / (1 - p)`` and ``relu`` in torch, and the torch path of
:func:`gnnkit.nn.dropout` with numba switched off (a subprocess with ``GNNKIT_JIT=0``).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from gnnkit.nn import dropout
from gnnkit.nn.functional import relu_dropout
from gnnkit.ops._jit import jit_available
from gnnkit.ops.dropout import counter_dropout, counter_dropout_available, counter_keep_mask
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
