r"""The graph attention layer's whole sparse part in one pass: :func:`fused_gat`.

For every receiver :math:`i` and head :math:`h`, over the edges :math:`e = (j \to i)` of row
:math:`i` of a :class:`~gnnkit.ops.CSRGraph`:

.. math::
    s_{e h} = a^{src}_{j h} + a^{dst}_{i h} + \sigma_{e h}, \qquad
    \alpha_{e h} = \frac{\exp(\operatorname{LeakyReLU}(s_{e h}) - m_{i h})}
    {\sum_{e' \to i} \exp(\operatorname{LeakyReLU}(s_{e' h}) - m_{i h})}, \qquad
    x'_{i h} = \sum_{e \to i} \frac{\kappa_{e h}}{1 - p}\, \alpha_{e h}\, x_{j h}

with :math:`m_{i h}` the row maximum of the leaky-ReLU scores, :math:`\sigma` optional edge
scores and :math:`\kappa \in \{0, 1\}` the attention-dropout keep mask (all ones outside
training). Rows without edges give zeros.

Backends, chosen per call by :func:`fused_gat_backend`:

- ``"numba"`` on CPU (:mod:`gnnkit.ops._gat_cpu`, compiled on first use and cached on disk),
- ``"triton"`` on CUDA when Triton imports (:mod:`gnnkit.ops._gat_triton`),
- ``"torch"`` elsewhere: the same math as gathers and segment reductions (per-edge messages
  of |E| x H x C; the reference the kernels are tested against).

The kernels fuse scores, leaky ReLU, softmax, dropout and aggregation into one row-parallel
pass over the receivers, and the backward into passes over the senders (the transposed
structure) and the receivers, the FusedMM / dgNN approach (Rahman et al., arXiv 2011.06391;
Zhang et al., arXiv 2110.09524): no |E| x H x C tensor in either direction, and every sum in a
fixed order, so results are bit-identical run to run on every backend.
"""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any

import torch
from torch import Tensor

from gnnkit.errors import InputError
from gnnkit.ops._autograd import recomputed_gradients
from gnnkit.ops._gat_reference import reference_gat, torch_form
from gnnkit.ops._jit import jit_available
from gnnkit.ops.backend import device_of
from gnnkit.ops.csr import CSRGraph, check_graph
from gnnkit.ops.random import keep_mask
from gnnkit.utils.checks import describe
from gnnkit.utils.env import switched_off

__all__ = [
    "fused_gat",
    "fused_gat_backend",
    "node_scores",
    "node_scores_available",
    "projected_node_scores",
]

_KERNEL_DTYPES = (torch.float32, torch.float64)


@functools.cache
def _triton_kernels() -> ModuleType | None:
    """:mod:`gnnkit.ops._gat_triton`, or ``None`` where Triton (or the module) is missing."""
    try:
        from gnnkit.ops import _gat_triton  # type: ignore[attr-defined,unused-ignore]
    except Exception:  # a module that fails to import: the torch path serves
        return None
    return _gat_triton if _gat_triton.available() else None  # no Triton: the torch path


def _cpu_kernels() -> ModuleType:
    from gnnkit.ops import _gat_cpu  # imports numba: only when a CPU kernel first runs

    return _gat_cpu


def _score_kernels() -> ModuleType:
    """:mod:`gnnkit.ops._node_scores` (written out per head and channel count where that
    pays, else the general kernels); imports numba, only when a kernel first runs."""
    from gnnkit.ops import _node_scores

    return _node_scores


def fused_gat_backend(device: torch.device | str, dtype: torch.dtype) -> str:
    """The backend :func:`fused_gat` uses on ``device`` for ``dtype``.

    ``"numba"`` (CPU, numba available), ``"triton"`` (CUDA, Triton available) or ``"torch"``.
    The environment variable ``GNNKIT_FUSED_GAT=0``, read at every call, forces ``"torch"``
    (and makes :class:`gnnkit.nn.GATConv` take its unfused lean path), for comparisons.
    """
    if switched_off("GNNKIT_FUSED_GAT"):
        return "torch"
    if dtype not in _KERNEL_DTYPES:
        return "torch"
    kind = device_of("device", device).type
    if kind == "cpu" and jit_available():
        return "numba"
    if kind == "cuda" and _triton_kernels() is not None:
        return "triton"
    return "torch"


class _FusedGAT(torch.autograd.Function):
    """The kernels' forward and backward; ``alpha`` (before dropout) is saved, not recomputed."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        kernels: ModuleType,
        graph: CSRGraph,
        a_src: Tensor,
        a_dst: Tensor | None,
        edge_score: Tensor | None,
        xw: Tensor,
        negative_slope: float,
        keep: Tensor | None,
        scale: float,
    ) -> tuple[Tensor, Tensor]:
        scores = (a_src, a_dst, edge_score)
        out, alpha = kernels_forward(ctx, kernels, graph, scores, xw, negative_slope, keep, scale)
        ctx.save_for_backward(a_src, a_dst, edge_score, xw, alpha, keep)
        return out, alpha

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor | None, _grad_alpha: None) -> tuple[Any, ...]:
        if grad_out is None:  # an undefined gradient (gradcheck passes one): zero
            return (None,) * 9
        a_src, a_dst, edge_score, xw, alpha, keep = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: the torch form, differentiable again
            form = torch_form(ctx.graph, ctx.options, keep)
            inputs = (a_src, a_dst, edge_score, xw)
            grads = recomputed_gradients(form, inputs, ctx.needs_input_grad[2:6], [grad_out])
            return None, None, *grads, None, None, None
        saved = (a_src, a_dst, edge_score, xw, alpha, keep)
        grad_xw, grad_src, grad_dst, grad_score = kernels_backward(ctx, saved, grad_out)
        return None, None, grad_src, grad_dst, grad_score, grad_xw, None, None, None


def kernels_forward(
    ctx: Any, kernels: ModuleType, graph: CSRGraph, scores: tuple, xw: Tensor,
    negative_slope: float, keep: Tensor | None, scale: float,
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """``(out, alpha)`` from the kernels' forward on ``scores`` = ``(a_src, a_dst,
    edge_score)``, with on ``ctx`` what :func:`kernels_backward` reads (the caller saves the
    tensors); ``alpha`` is not differentiable and no zero gradient is made for it."""
    a_src, a_dst, edge_score = scores
    out, alpha = kernels.forward(
        graph.rowptr, graph.col, a_src, a_dst, edge_score, xw, negative_slope, keep, scale
    )
    ctx.kernels, ctx.graph, ctx.options = kernels, graph, (negative_slope, scale)
    ctx.mark_non_differentiable(alpha)
    ctx.set_materialize_grads(False)  # no zero (E, H) gradient for alpha
    return out, alpha


def kernels_backward(ctx: Any, saved: tuple, grad_out: Tensor) -> tuple[Tensor | None, ...]:
    """``(grad_xw, grad_a_src, grad_a_dst, grad_edge_score)`` from the kernels of
    ``ctx.kernels`` on ``ctx.graph``, ``saved`` being ``(a_src, a_dst, edge_score, xw, alpha,
    keep)`` and ``ctx.options`` ``(negative_slope, scale)``."""
    a_src, a_dst, edge_score, xw, alpha, keep = saved
    graph: CSRGraph = ctx.graph
    (slope, scale), (colptr, row_t, _, perm_t) = ctx.options, graph.transpose()
    return ctx.kernels.backward(  # type: ignore[no-any-return]
        graph.rowptr, graph.col, colptr, row_t, perm_t, a_src, a_dst, edge_score, xw,
        alpha, slope, keep, scale, grad_out.contiguous(),
    )  # fmt: skip


def _check(
    graph: Any,
    a_src: Tensor | None,
    a_dst: Tensor | None,
    edge_score: Tensor | None,
    xw: Tensor,
    negative_slope: Any,
    dropout_p: Any,
    *,
    scores_given: bool = True,
) -> None:
    """Raise :class:`InputError` for any argument :func:`fused_gat` cannot take; without
    ``scores_given`` the sender scores are computed by the caller (``a_src`` is ``None``)."""
    check_graph("fused_gat", graph)
    if graph._heads != 1:
        raise InputError("fused_gat: graph must have one copy per edge (not interleave_heads)")
    if not isinstance(xw, Tensor) or xw.dim() != 3 or xw.size(0) != graph.num_cols:
        got = describe(xw, dtype=False)
        raise InputError(f"fused_gat: xw must be (|V_src|={graph.num_cols}, H, C), got {got}")
    heads = xw.size(1)
    if heads == 0 or xw.size(2) == 0:
        raise InputError(
            f"fused_gat: xw must have at least one head and one channel, got {tuple(xw.shape)}"
        )
    expected = {
        "a_src": (a_src, (graph.num_cols, heads)),
        "a_dst": (a_dst, (graph.num_rows, heads)),
        "edge_score": (edge_score, (graph.num_edges, heads)),
    }
    for name, (tensor, shape) in expected.items():
        if tensor is None and (name != "a_src" or not scores_given):
            continue
        if not isinstance(tensor, Tensor) or tuple(tensor.shape) != shape:
            found = describe(tensor, dtype=False)
            raise InputError(f"fused_gat: {name} must have shape {shape}, got {found}")
        if tensor.dtype != xw.dtype or tensor.device != xw.device:
            raise InputError(
                f"fused_gat: {name} is {tensor.dtype} on {tensor.device} but xw is {xw.dtype} "
                f"on {xw.device}; convert one of them"
            )
    if not xw.is_floating_point():
        raise InputError(f"fused_gat: xw must be a floating-point tensor, got {xw.dtype}")
    if graph.device != xw.device:
        raise InputError(f"fused_gat: graph is on {graph.device} but xw on {xw.device}")
    if isinstance(negative_slope, bool) or not isinstance(negative_slope, (int, float)):
        raise InputError(f"fused_gat: negative_slope must be a number, got {negative_slope!r}")
    if isinstance(dropout_p, bool) or not isinstance(dropout_p, (int, float)):
        raise InputError(f"fused_gat: dropout_p must be a number in [0, 1), got {dropout_p!r}")
    if not 0 <= dropout_p < 1:
        raise InputError(f"fused_gat: dropout_p must be a number in [0, 1), got {dropout_p!r}")


def fused_gat(
    graph: CSRGraph,
    a_src: Tensor,
    a_dst: Tensor | None,
    edge_score: Tensor | None,
    xw: Tensor,
    negative_slope: float = 0.2,
    dropout_p: float = 0.0,
    training: bool = False,
    *,
    deterministic: bool | None = None,
    return_attention: bool = False,
) -> tuple[Tensor, Tensor | None]:
    r"""Attention scores, leaky ReLU, edge softmax, attention dropout and aggregation in one
    pass over ``graph`` (the sparse part of :class:`gnnkit.nn.GATConv`; math in the module
    docstring).

    The dropout mask is drawn here (:func:`gnnkit.ops.random.keep_mask`, one
    entry per edge and head in CSR order), so every backend drops the same coefficients for
    the same seed. The transposed structure the backward needs is ``graph.transpose()``,
    built once per graph and kept.

    Args:
        graph (CSRGraph): the edges (rows = receivers), one copy per edge (not
            :meth:`~gnnkit.ops.CSRGraph.interleave_heads`).
        a_src (Tensor): (|V_src|, H) per-sender scores :math:`a^{src}`.
        a_dst (Tensor, optional): (|V_dst|, H) per-receiver scores; ``None`` for none.
        edge_score (Tensor, optional): (|E|, H) per-edge scores :math:`\sigma` in CSR order.
        xw (Tensor): (|V_src|, H, C) the senders' features per head.
        negative_slope (float, optional): the leaky ReLU's slope. (default: ``0.2``)
        dropout_p (float, optional): attention dropout probability in [0, 1).
            (default: ``0.0``)
        training (bool, optional): apply dropout. (default: ``False``)
        deterministic (bool, optional): accepted for symmetry with the other ops; every
            backend of this op is deterministic already (fixed-order sums, no atomics).
            (default: ``None``)
        return_attention (bool, optional): also return the coefficients after dropout
            (detached). (default: ``False``)

    Returns:
        ``(out, alpha)``: ``out`` (|V_dst|, H, C), and ``alpha`` (|E|, H) in CSR order after
        dropout, or ``None`` unless ``return_attention``.

    NOTE: ``alpha`` carries no gradient (the kernels' backward does not take one for it);
    :class:`gnnkit.nn.GATConv` takes its unfused path for ``return_attention_weights`` while
    gradients are recorded.
    """
    _check(graph, a_src, a_dst, edge_score, xw, negative_slope, dropout_p)
    if deterministic is not None and not isinstance(deterministic, bool):
        raise InputError(f"fused_gat: deterministic must be None or a bool, got {deterministic!r}")
    inputs = (graph, a_src, a_dst, edge_score, xw)
    return checked_fused_gat(*inputs, negative_slope, dropout_p, training, return_attention)


def attention_dropout(
    graph: CSRGraph, xw: Tensor, dropout_p: float, training: bool
) -> tuple[Tensor | None, float]:
    """The attention-dropout keep mask (one entry per edge and head, in CSR order, drawn by
    :func:`gnnkit.ops.random.keep_mask`) and its scale; ``(None, 1.0)`` without dropout."""
    if training and dropout_p > 0:
        keep = keep_mask((graph.num_edges, xw.size(1)), dropout_p, xw.device)
        return keep, 1.0 / (1.0 - dropout_p)
    return None, 1.0


def returned_attention(
    out: Tensor, alpha: Tensor, keep: Tensor | None, scale: float, return_attention: bool
) -> tuple[Tensor, Tensor | None]:
    """``(out, coefficients after dropout)``, or ``(out, None)`` unless ``return_attention``."""
    if not return_attention:
        return out, None
    return out, alpha if keep is None else alpha * keep * scale


def checked_fused_gat(
    graph: CSRGraph, a_src: Tensor, a_dst: Tensor | None, edge_score: Tensor | None,
    xw: Tensor, negative_slope: float, dropout_p: float, training: bool,
    return_attention: bool,
) -> tuple[Tensor, Tensor | None]:  # fmt: skip
    """:func:`fused_gat` on inputs it has checked already."""
    keep, scale = attention_dropout(graph, xw, dropout_p, training)
    backend = fused_gat_backend(xw.device, xw.dtype)
    if backend == "torch":
        out, alpha = reference_gat(
            graph, a_src, a_dst, edge_score, xw, float(negative_slope), keep, scale
        )
        alpha = alpha.detach()
    else:
        kernels = _cpu_kernels() if backend == "numba" else _triton_kernels()
        assert kernels is not None  # fused_gat_backend names an available backend
        options = (float(negative_slope), keep, scale)
        if torch.is_grad_enabled() and any(
            t is not None and t.requires_grad for t in (a_src, a_dst, edge_score, xw)
        ):
            graph.transpose()  # built once per graph, before the activations exist
            out, alpha = _FusedGAT.apply(kernels, graph, a_src, a_dst, edge_score, xw, *options)
        else:  # nothing to differentiate (an evaluation): the kernel without a Function
            out, alpha = kernels.forward(graph.rowptr, graph.col, a_src, a_dst, edge_score, xw,
                                         *options)  # fmt: skip
    return returned_attention(out, alpha, keep, scale, return_attention)


def _score_inputs(xw: Tensor, att_src: Tensor, att_dst: Tensor) -> tuple[Tensor, ...]:
    """What the attention-product kernels take: contiguous ``xw`` (N, H, C) and both
    attention vectors as contiguous (H, C)."""
    shape = xw.shape[1:]
    return xw.contiguous(), att_src.reshape(shape).contiguous(), att_dst.reshape(shape).contiguous()


def _torch_scores(xw: Tensor, att_src: Tensor, att_dst: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`node_scores` with torch's operators (for second derivatives)."""
    shape = xw.shape[1:]
    return (xw * att_src.reshape(shape)).sum(-1), (xw * att_dst.reshape(shape)).sum(-1)


class _NodeScores(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, xw: Tensor, att_src: Tensor, att_dst: Tensor) -> tuple[Tensor, Tensor]:
        ctx.shapes = (att_src.shape, att_dst.shape)
        ctx.save_for_backward(xw, att_src, att_dst)  # the inputs: create_graph reaches them
        return _score_kernels().node_scores(*_score_inputs(xw, att_src, att_dst))

    @staticmethod
    def backward(ctx: Any, g_src: Tensor, g_dst: Tensor) -> tuple[Tensor | None, ...]:
        saved = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: the torch form, differentiable again
            return recomputed_gradients(_torch_scores, saved, ctx.needs_input_grad, [g_src, g_dst])
        xw, att_src, att_dst = _score_inputs(*saved)
        g_src, g_dst = g_src.contiguous(), g_dst.contiguous()
        grad_xw, grad_src, grad_dst = _score_kernels().node_scores_grad(
            xw, g_src, g_dst, att_src, att_dst, ctx.needs_input_grad
        )
        # the attention vectors' gradients are (H, C): in the parameters' own shapes
        grad_src = None if grad_src is None else grad_src.view(ctx.shapes[0])
        grad_dst = None if grad_dst is None else grad_dst.view(ctx.shapes[1])
        return grad_xw, grad_src, grad_dst


def node_scores_available(xw: Tensor) -> bool:
    """Whether :func:`node_scores` runs its compiled kernel for ``xw`` (CPU, float32 or
    float64, numba available); elsewhere callers compute the products with a matmul."""
    return xw.device.type == "cpu" and xw.dtype in _KERNEL_DTYPES and jit_available()


def check_score_inputs(what: str, xw: Tensor, att_src: Tensor, att_dst: Tensor) -> None:
    """Raise :class:`InputError` unless ``xw`` is (N, H, C) and both attention vectors hold
    H x C entries; ``what`` names the function in the message."""
    if not all(isinstance(t, Tensor) for t in (xw, att_src, att_dst)):
        found = ", ".join(type(t).__name__ for t in (xw, att_src, att_dst))
        raise InputError(f"{what} expects tensors xw, att_src and att_dst, got {found}")
    entries = xw.size(1) * xw.size(2) if xw.dim() == 3 else -1
    if att_src.numel() != entries or att_dst.numel() != entries:
        raise InputError(
            f"{what} expects xw (N, H, C) and attention vectors of H x C entries, got "
            f"{tuple(xw.shape)}, {tuple(att_src.shape)} and {tuple(att_dst.shape)}"
        )


def node_scores(xw: Tensor, att_src: Tensor, att_dst: Tensor) -> tuple[Tensor, Tensor]:
    r"""GAT's per-node attention products, :math:`a^{src}_{jh} = \langle x_{jh},
    a^{src}_h \rangle` and :math:`a^{dst}_{jh} = \langle x_{jh}, a^{dst}_h \rangle`, in one
    compiled pass over ``xw`` (CPU; see
    :func:`~gnnkit.ops.attention.node_scores_available`).

    On a small graph the block-diagonal matmul that computes both at once costs more in
    operator calls than in arithmetic (Cora's first layer, 8 heads x 8 channels: 0.14 ms
    forward against 0.10 with the general kernel). Up to 64 entries per node the kernels are
    written out for their (H, C) (:mod:`gnnkit.ops._node_scores`: Cora's 8 x 8 forward 19
    against 37 us, backward 11 against 118 us); otherwise the backward pass writes the
    features' gradient in one pass and sums the attention vectors' over the nodes
    (``einsum``).

    Args:
        xw (Tensor): (N, H, C) transformed features per head.
        att_src (Tensor): (H, C) or (1, H, C), the sender attention vector per head.
        att_dst (Tensor): the receiver's, shaped as ``att_src``.

    Returns:
        ``(a_src, a_dst)``, each (N, H) and contiguous.
    """
    check_score_inputs("node_scores", xw, att_src, att_dst)
    if torch.is_grad_enabled() and any(t.requires_grad for t in (xw, att_src, att_dst)):
        return _NodeScores.apply(xw, att_src, att_dst)
    # nothing to differentiate: the kernel without a Function
    return _score_kernels().node_scores(*_score_inputs(xw, att_src, att_dst))


class _ProjectedScores(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: Tensor, projection: Tensor, xw: Tensor, att_src: Tensor, att_dst: Tensor
    ) -> tuple[Tensor, Tensor]:
        ctx.save_for_backward(x, projection)  # the inputs: create_graph reaches them
        return _score_kernels().node_scores(*_score_inputs(xw, att_src, att_dst))

    @staticmethod
    def backward(ctx: Any, g_src: Tensor, g_dst: Tensor) -> tuple[Tensor | None, ...]:
        x, projection = ctx.saved_tensors  # (with create_graph the products are recorded)
        grad = torch.cat([g_src, g_dst], dim=1)  # (N, 2H), as the products x @ projection
        grad_x = grad @ projection.t() if ctx.needs_input_grad[0] else None
        grad_projection = x.t() @ grad if ctx.needs_input_grad[1] else None
        return grad_x, grad_projection, None, None, None


def projected_node_scores(
    x: Tensor, projection: Tensor, xw: Tensor, att_src: Tensor, att_dst: Tensor
) -> tuple[Tensor, Tensor]:
    r""":func:`node_scores` of ``xw`` = :math:`x W^\top` computed from ``xw``, and
    differentiated as ``x @ projection``, where ``projection`` (F_in, 2H) is
    :math:`W^\top A` for the block-diagonal matrix :math:`A` (H C, 2H) of the attention
    vectors (column ``h`` holds ``att_src[h]`` in head ``h``'s rows, column ``H + h``
    ``att_dst[h]``): the same products in exact arithmetic.

    For dense input features narrower than ``xw`` the products' gradients are cheapest through
    ``x`` (they leave ``xw`` with a single consumer, so no (N, H C) gradient is summed), but
    the forward product ``x @ projection`` with its 2H output columns runs far below the GEMM's
    peak: at ogbn-arxiv's size (169,343 x 128 features, 8 heads x 32 channels, 1 thread) 24
    against 11 ms for the compiled pass over ``xw`` (4.0 against 2.0 ms at 30,000 nodes).
    Gradients reach ``x`` and ``projection`` only (``xw`` and the attention vectors take
    theirs through ``projection``). Where the compiled pass does not serve ``xw``
    (:func:`node_scores_available`) or under ``torch.compile``, the products are
    ``x @ projection``.

    Args:
        x (Tensor): (N, F_in) dense input features.
        projection (Tensor): (F_in, 2H), :math:`W^\top A`.
        xw (Tensor): (N, H, C), :math:`x W^\top` per head.
        att_src (Tensor): (H, C) or (1, H, C), the sender attention vector per head.
        att_dst (Tensor): the receiver's, shaped as ``att_src``.

    Returns:
        ``(a_src, a_dst)``, each (N, H).
    """
    heads, entries = (xw.size(1), xw.size(1) * xw.size(2)) if xw.dim() == 3 else (-1, -1)
    shapes_fit = x.dim() == 2 and x.size(0) == xw.size(0)
    shapes_fit = shapes_fit and projection.shape == (x.size(1), 2 * heads)
    if not shapes_fit or att_src.numel() != entries or att_dst.numel() != entries:
        raise InputError(
            f"projected_node_scores expects x (N, F_in), projection (F_in, 2H), xw (N, H, C) "
            f"and attention vectors of H x C entries, got {tuple(x.shape)}, "
            f"{tuple(projection.shape)}, {tuple(xw.shape)}, {tuple(att_src.shape)} and "
            f"{tuple(att_dst.shape)}"
        )
    if torch.compiler.is_compiling() or not node_scores_available(xw):
        a_src, a_dst = (x @ projection).split(heads, dim=1)
        return a_src, a_dst
    if torch.is_grad_enabled() and (x.requires_grad or projection.requires_grad):
        detached = (xw.detach(), att_src.detach(), att_dst.detach())
        return _ProjectedScores.apply(x, projection, *detached)
    return node_scores(xw, att_src, att_dst)
