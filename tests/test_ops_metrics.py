"""gnnkit.ops.metrics.split_metrics: summed cross-entropy and correct predictions per split.

References: ``F.cross_entropy(..., reduction="sum")`` in float64 and ``argmax`` on each
split's rows, and the torch path (numba switched off) against the compiled one.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gnnkit.ops import metrics
from gnnkit.ops._jit import jit_available
from gnnkit.ops.metrics import split_metrics

needs_jit = pytest.mark.skipif(not jit_available(), reason="numba is not installed")
# the compiled path where numba is installed; the torch path (numba switched off) everywhere
PATHS = [pytest.param(True, marks=needs_jit, id="compiled"), pytest.param(False, id="torch")]


def _case(seed: int, dtype: torch.dtype, nodes: int = 80, classes: int = 6, rows: int = 50):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(nodes, classes, generator=g) * 4).to(dtype)
    index = torch.randperm(nodes, generator=g)[:rows]
    target = torch.randint(0, classes, (rows,), generator=g)
    split = torch.randint(0, 3, (rows,), generator=g)
    return logits, index, target, split


def _expected(logits, index, target, split, splits):
    out = torch.zeros(splits, 2, dtype=torch.float64)
    for s in range(splits):
        rows = split == s
        z = logits[index[rows]].double()
        out[s, 0] = F.cross_entropy(z, target[rows], reduction="sum")
        out[s, 1] = (z.argmax(1) == target[rows]).sum()
    return out


def _torch_path(monkeypatch):
    monkeypatch.setattr(metrics, "jit_available", lambda: False)


@pytest.mark.parametrize("compiled", PATHS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sums_equal_cross_entropy_and_argmax(compiled, dtype, monkeypatch):
    if not compiled:
        _torch_path(monkeypatch)
    for seed in range(3):
        case = _case(seed, dtype)
        got = split_metrics(*case, 4)  # split 3 has no rows: zeros
        want = _expected(*case, 4)
        assert got.dtype == torch.float64 and got.shape == (4, 2)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
        assert got[3].tolist() == [0.0, 0.0]


@needs_jit
def test_compiled_and_torch_paths_agree(monkeypatch):
    case = _case(7, torch.float32, nodes=500, classes=7, rows=400)
    compiled = split_metrics(*case, 3)
    _torch_path(monkeypatch)
    torch.testing.assert_close(compiled, split_metrics(*case, 3), rtol=1e-13, atol=0.0)


@pytest.mark.parametrize("compiled", PATHS)
def test_a_nan_logit_makes_its_split_loss_nan(compiled, monkeypatch):
    if not compiled:
        _torch_path(monkeypatch)
    logits = torch.zeros(4, 3)
    logits[1, 2] = float("nan")
    index, target = torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 2, 0])
    split = torch.tensor([0, 1, 1, 2])
    sums = split_metrics(logits, index, target, split, 3)
    assert torch.isnan(sums[1, 0]) and not torch.isnan(sums[[0, 2], 0]).any()


def test_large_logits_do_not_overflow():
    logits = torch.tensor([[1000.0, 0.0], [0.0, -1000.0]])
    sums = split_metrics(
        logits, torch.tensor([0, 1]), torch.tensor([1, 0]), torch.tensor([0, 1]), 2
    )
    torch.testing.assert_close(sums, torch.tensor([[1000.0, 0.0], [0.0, 1.0]], dtype=torch.float64))
