"""The dropout family: dense, sparse (structure-preserving) and fused ReLU-dropout.

Dropout (Srivastava et al., JMLR 2014) keeps each entry with probability :math:`1 - p` and
scales it by :math:`1 / (1 - p)`. Every function here has ``F.dropout``'s distribution; they
differ in what they avoid:

- :func:`dropout`: a drop-in for ``F.dropout(x, p, training)``. On CPU one compiled pass
  draws, compares and scales (:func:`gnnkit.ops.dropout.counter_dropout`: a counter-based
  generator, the mask kept as one byte an entry for tensors of up to 2**22 entries and drawn
  again for larger ones; 6x faster than ``torch.rand_like(x) >= p`` and
  its four passes, which in turn are 2-3x faster than ``F.dropout``'s ``bernoulli_``), or
  with ``draw="bytes"`` the mask is one random byte per entry (:func:`dropout_mask`). A sparse
  COO or CSR input goes to :func:`sparse_dropout` and stays sparse.
- :func:`sparse_dropout`: the stored entries of a sparse matrix, as in Kipf & Welling's GCN
  code; a bag-of-words matrix is never densified.
- :func:`relu_dropout`: ``dropout(relu(x))`` that keeps only its output for the backward pass.
- :func:`elu_dropout`: ``dropout(elu(x))`` in one compiled pass on CPU (GAT's hidden layer).
- :func:`dropout_mask`: a boolean keep mask from random bytes.

NOTE: same distribution as ``F.dropout``, different random streams: a given seed drops other
entries than ``F.dropout`` would, and ``draw="uniform"`` other entries than ``draw="bytes"``.
With ``draw="uniform"`` on CPU the stream also depends on whether numba runs
(:func:`gnnkit.ops.dropout.counter_dropout_available`; ``GNNKIT_JIT=0`` switches it off and
takes ``torch.rand_like``'s draws).
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from gnnkit.errors import InputError
from gnnkit.ops.dropout import (
    counter_dropout,
    counter_dropout_available,
    counter_elu_dropout,
    relu_dropout_grad,
)
from gnnkit.ops.random import uniform_draws

__all__ = [
    "check_dropout",
    "dropout",
    "dropout_mask",
    "elu_dropout",
    "relu_dropout",
    "sparse_dropout",
]

Draw = Literal["uniform", "bytes"]


def check_dropout(p: Any, name: str = "dropout") -> float:
    """A model's dropout probability as a float; refused unless it lies in [0, 1)."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
        raise InputError(f"{name} must be a number in [0, 1), got {p!r}")
    return float(p)


def _check_dense(name: str, x: Any, p: Any, training: Any, *, p_one: bool) -> float:
    """``p`` as a float, after checking a dense dropout's arguments: ``x`` a dense
    floating-point tensor, ``p`` a number in [0, 1] (``p_one``) or [0, 1), ``training`` a
    bool."""
    if not isinstance(x, Tensor):
        raise InputError(f"{name} expects a torch.Tensor x, got {type(x).__name__}")
    if x.layout != torch.strided:
        raise InputError(
            f"{name} expects a dense x, got layout {x.layout}; use sparse_dropout for sparse "
            "features (no activation comes before it in GCN or GAT)"
        )
    if not x.is_floating_point():
        raise InputError(f"{name} expects a floating-point x, got {x.dtype}; convert it first")
    interval = "[0, 1]" if p_one else "[0, 1)"
    value = float(p) if isinstance(p, numbers.Real) and not isinstance(p, bool) else math.nan
    if not (0.0 <= value <= 1.0 if p_one else 0.0 <= value < 1.0):  # (numpy floats too)
        raise InputError(f"dropout probability p must be a number in {interval}, got {p!r}")
    if not isinstance(training, bool):
        raise InputError(f"{name}: training must be True or False, got {training!r}")
    return value


def _check_draw(draw: Any) -> None:
    if draw not in ("uniform", "bytes"):
        raise InputError(f"draw must be 'uniform' or 'bytes', got {draw!r}")


def dropout_mask(
    shape: tuple[int, ...],
    p: float,
    *,
    device: torch.device | str | None = None,
    keep: bool = True,
) -> Tensor:
    """A boolean dropout mask: each entry is kept with probability ``1 - p``, independently.

    When :math:`256 p` is an integer (``p = 0.5``, ``0.25``...) the mask compares one random
    byte per entry against :math:`256 p` (:func:`gnnkit.ops.random.uniform_draws`): on CPU
    about 50x faster than ``torch.bernoulli``. Other values of ``p`` fall back to
    ``torch.rand(...) >= p``. Both draw from torch's default generator.

    Args:
        shape (tuple of int): the mask's shape.
        p (float): the probability of dropping an entry, in [0, 1).
        device (torch.device or str, optional): where to build it. (default: CPU)
        keep (bool, optional): ``True`` marks the kept entries, ``False`` the dropped ones
            (the complement). (default: ``True``)
    """
    draws, threshold = uniform_draws(shape, p, device)
    return draws >= threshold if keep else draws < threshold


def _scaled_mask(values: Tensor, p: float) -> Tensor:
    """Keep each element with probability ``1 - p``: 0 or ``1 / (1 - p)``, ``values``' shape."""
    if p == 1.0:
        return torch.zeros_like(values)
    # P(U >= p) = 1 - p for U uniform on [0, 1). Drawing uniforms and comparing is 2-3x faster
    # on CPU than the bernoulli_ draw of F.dropout (Cora: 13,264 x 8 attention coefficients
    # 0.42 ms against 1.15 ms).
    return torch.rand_like(values).ge_(p).to(values.dtype).mul_(1.0 / (1.0 - p))


def dropout(x: Tensor, p: float = 0.5, training: bool = True, *, draw: Draw = "uniform") -> Tensor:
    r"""Dropout: ``F.dropout``'s distribution, faster on CPU, and sparse input stays sparse.

    Each element is kept with probability :math:`1 - p` and scaled by :math:`1 / (1 - p)`,
    dropped elements are 0, and the gradient flows through the kept ones with the same scale:
    exactly ``F.dropout(x, p, training)`` in distribution, so ``from gnnkit.nn import dropout``
    replaces ``F.dropout`` in a model's ``forward``.

    A sparse COO or CSR ``x`` (for example features from
    :class:`gnnkit.transforms.SparseFeatures`) goes to :func:`sparse_dropout`: only its stored
    entries are drawn and the result keeps ``x``'s structure, where ``F.dropout``, which
    refuses sparse CSR input, would need ``x`` densified.

    - ``draw="uniform"``: on CPU each entry's uniform comes from a counter-based generator
      and one compiled pass draws, compares with :math:`p` and scales
      (:func:`gnnkit.ops.dropout.counter_dropout`; float32 and float64 with numba, else
      ``torch.rand_like(x) >= p``, still 2-3x faster there than ``bernoulli_``); on other
      devices this is ``F.dropout`` (fused kernels).
    - ``draw="bytes"``: the mask is :func:`dropout_mask` on every device (one random byte per
      entry when :math:`256 p` is an integer).

    Args:
        x (Tensor): any dense tensor, or a sparse COO or CSR matrix.
        p (float, optional): the probability of dropping an element, in [0, 1].
            (default: ``0.5``)
        training (bool, optional): apply dropout; ``False`` returns ``x``. (default: ``True``)
        draw (str, optional): ``"uniform"`` or ``"bytes"`` (see above); for sparse input, how
            the stored values are drawn. (default: ``"uniform"``)

    Shapes:
        - **input:** any shape, dense; or (|V|, F) sparse COO or CSR
        - **output:** the input's shape and layout (sparse: the same stored entries)
    """
    if isinstance(x, Tensor) and x.layout != torch.strided:
        return sparse_dropout(x, p, training, draw=draw)
    p = _check_dense("dropout", x, p, training, p_one=True)
    if not training or p == 0.0:
        return x
    if draw == "bytes" and p < 1.0:
        mask = dropout_mask(tuple(x.shape), p, device=x.device)
        return (x * mask).mul_(1.0 / (1.0 - p))
    _check_draw(draw)
    if x.device.type != "cpu" and p < 1.0:
        return F.dropout(x, p, training)
    if counter_dropout_available(x):
        return counter_dropout(x, p)
    return x * _scaled_mask(x, p)


class _ReLUDropout(torch.autograd.Function):
    """``dropout(relu(x))`` that keeps only its output for the backward pass."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, p: float, draw: str) -> Tensor:
        scale = 1.0 / (1.0 - p)
        if draw == "bytes":
            keep = dropout_mask(tuple(x.shape), p, device=x.device)  # freed on return
        else:
            keep = torch.rand_like(x).ge_(p)  # (N, C) in {0, 1}; freed on return
        out = torch.clamp_min(x, 0.0).mul_(keep).mul_(scale)
        ctx.save_for_backward(out)
        ctx.p = p
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        (out,) = ctx.saved_tensors
        # out > 0 exactly where x > 0 and the unit was kept: the chain's derivative.
        return relu_dropout_grad(out, grad, ctx.p), None, None


def relu_dropout(x: Tensor, p: float, training: bool, *, draw: Draw = "uniform") -> Tensor:
    r"""``dropout(relu(x), p)`` whose backward pass needs only the output.

    .. math::
        y = \frac{m}{1 - p} \odot \max(x, 0), \qquad m_{ij} \sim \mathrm{Bernoulli}(1 - p),
        \qquad \frac{\partial y_{ij}}{\partial x_{ij}} = \frac{\mathbb{1}[y_{ij} > 0]}{1 - p}

    The two steps in a row keep two |V| x C tensors for the backward pass: ReLU's output
    and dropout's mask. Here the output alone is kept, and the next layer saves that tensor
    anyway. On ogbn-arxiv (169,343 x 256 hidden features) this saves 350 MB per hidden
    layer. Values and gradients are bit-identical to ``relu`` followed by :func:`dropout`
    with the same ``draw`` and random state (tested), at the same speed. In evaluation mode,
    or with ``p = 0``, it is ``relu``.

    Args:
        x (Tensor): the input, any shape.
        p (float): the dropout probability, in ``[0, 1)``.
        training (bool): apply dropout (training mode).
        draw (str, optional): the mask's draw, as in :func:`dropout`; with ``"uniform"`` on a
            device other than the CPU this is ``F.dropout(relu(x))``. (default: ``"uniform"``)
    """
    p = _check_dense("relu_dropout", x, p, training, p_one=False)
    _check_draw(draw)
    if not training or p == 0.0:
        return torch.relu(x)
    if draw == "uniform" and x.device.type != "cpu":
        return F.dropout(torch.relu(x), p, training)
    if draw == "uniform" and counter_dropout_available(x):
        return counter_dropout(x, p, relu=True)
    return _ReLUDropout.apply(x, p, draw)


def elu_dropout(
    x: Tensor, p: float, training: bool, *, draw: Draw = "uniform", inplace: bool = False
) -> Tensor:
    r"""``dropout(elu(x), p)`` (ELU with :math:`\alpha = 1`), in one pass on CPU.

    .. math::
        y = \frac{m}{1 - p} \odot \mathrm{ELU}(x), \qquad
        \mathrm{ELU}(x) = \begin{cases} x & x > 0 \\ e^x - 1 & x \le 0 \end{cases}

    GAT's hidden layer (Velickovic et al., ICLR 2018) applies ELU, then dropout. With
    ``draw="uniform"`` on a float32 or float64 CPU tensor with numba, one compiled pass
    computes both (:func:`gnnkit.ops.dropout.counter_elu_dropout`: the same mask as
    :func:`dropout` for the same random state, ELU within 1 ulp of ``F.elu``; on Cora's
    2708 x 64 hidden features 0.06 ms against 0.16 ms for ``F.elu`` then :func:`dropout`,
    and 0.13 against 0.28 ms with the backward pass). Elsewhere it is ``F.elu`` then
    :func:`dropout`. In evaluation mode, or with ``p = 0``, it is ELU.

    Args:
        x (Tensor): the input, any shape.
        p (float): the dropout probability, in ``[0, 1)``.
        training (bool): apply dropout (training mode).
        draw (str, optional): the mask's draw, as in :func:`dropout`. (default: ``"uniform"``)
        inplace (bool, optional): where the two steps run separately, ELU overwrites ``x``
            (``F.elu(x, inplace=True)``). (default: ``False``)
    """
    p = _check_dense("elu_dropout", x, p, training, p_one=False)
    _check_draw(draw)
    if draw == "uniform" and counter_dropout_available(x):
        return counter_elu_dropout(x, p, training)
    return dropout(F.elu(x, inplace=inplace), p, training, draw=draw)


def sparse_dropout(
    x: Tensor, p: float = 0.5, training: bool = True, *, draw: Draw = "uniform"
) -> Tensor:
    r"""Dropout on the stored entries of a sparse matrix, as in Kipf & Welling's GCN code.

    Each stored entry is kept with probability :math:`1 - p` and scaled by
    :math:`1 / (1 - p)`, or dropped. Zeros that are not stored stay zero, which is exactly
    what dense dropout does to them, so the result has the same distribution as
    ``F.dropout(x.to_dense(), p)`` while costing time proportional to the number of non-zeros:
    a bag-of-words matrix such as Cora's 2708 x 1433 features (1.3 % non-zero) is never
    densified. The values are differentiable (a value that requires a gradient gets it
    through the kept entries).

    NOTE: dropped entries stay in the sparse structure as stored zeros; only the values
    change. Kipf's ``sparse_dropout`` removes them (``tf.sparse_retain``). Both give the same
    matrix, hence the same distribution and the same product with any weight matrix, but
    keeping the structure makes dropout one multiplication of the values and lets
    :func:`gnnkit.nn.sparse_linear` reuse the structure (and its transpose) cached for the
    input: the result shares the input's index tensors. ``x._nnz()`` is therefore unchanged;
    ``p = 1`` gives a matrix whose stored values are all zero.

    NOTE: PyG's examples apply ``F.dropout`` to the dense feature matrix; this is the sparse
    equivalent (same expectation and distribution, different random stream).

    Args:
        x (Tensor): a sparse COO or CSR matrix (a dense tensor goes to :func:`dropout`).
            An uncoalesced COO matrix is coalesced first, so duplicates are dropped together.
        p (float, optional): the probability of dropping an entry, in [0, 1]. (default: ``0.5``)
        training (bool, optional): apply dropout; ``False`` returns ``x`` unchanged.
            (default: ``True``)
        draw (str, optional): how the stored values are drawn, as in :func:`dropout`.
            (default: ``"uniform"``)

    Shapes:
        - **input:** (|V|, F), sparse COO or CSR
        - **output:** (|V|, F), same layout, same indices (stored entries), new values
    """
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise InputError(f"dropout probability p must be a number in [0, 1], got {p!r}")
    if not isinstance(x, Tensor):
        raise InputError(f"sparse_dropout expects a torch.Tensor, got {type(x).__name__}")
    if not isinstance(training, bool):
        raise InputError(f"sparse_dropout: training must be True or False, got {training!r}")
    _check_draw(draw)
    if x.layout == torch.strided:
        return dropout(x, float(p), training, draw=draw)
    if x.layout not in (torch.sparse_coo, torch.sparse_csr):
        raise InputError(
            f"sparse_dropout supports sparse COO and CSR tensors, got layout {x.layout}; "
            "convert with x.to_sparse() or x.to_sparse_csr()"
        )
    if x.dim() != 2:
        raise InputError(
            f"sparse_dropout expects a matrix (2 dimensions), got shape {tuple(x.shape)}"
        )
    if not training or p == 0.0:
        return x

    if x.layout == torch.sparse_coo:
        x = x if x.is_coalesced() else x.coalesce()
        values = x.values()  # (nnz,), or (nnz, F) for a hybrid matrix: masked elementwise
        return torch.sparse_coo_tensor(
            x.indices(),
            dropout(values, float(p), True, draw=draw),
            x.shape,
            is_coalesced=True,
            check_invariants=False,
        )
    values = x.values()  # (nnz,)
    return torch.sparse_csr_tensor(
        x.crow_indices(),
        x.col_indices(),
        dropout(values, float(p), True, draw=draw),
        x.shape,
        check_invariants=False,
    )
