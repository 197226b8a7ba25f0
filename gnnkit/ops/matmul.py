r"""Sparse-dense matmul (SpMM) on a :class:`CSRGraph`: the kernel choice, the raw calls, autograd.

``spmm(graph, values, x)`` computes :math:`Y = A X` where :math:`A_{ij}` is the value of edge
:math:`j \to i`. Several heads (attention heads, each with its own edge values) are batched in
the leading dimension, as in :func:`torch.bmm`:

.. math::
    Y_{h,i,:} = \sum_{e = (j \to i)} v_{h,e} \, X_{h,j,:}

Its backward never materialises an ``|E| x C`` (or ``H x |E| x C``) tensor:

.. math::
    \frac{\partial L}{\partial X_h} = A_h^\top \frac{\partial L}{\partial Y_h}
    \quad (\text{an SpMM on the transpose}), \qquad
    \frac{\partial L}{\partial v_{h,e}} =
    \Big\langle \frac{\partial L}{\partial Y_{h,i,:}}, X_{h,j,:} \Big\rangle
    \quad (\text{an SDDMM: one dot product per edge}).

The SDDMM is :func:`gnnkit.ops.sddmm` (``ops/_sddmm.py``); the layouts of the inputs and
gradients (row-major copies, column-major weights) are ``ops/_layout.py``.
"""

from __future__ import annotations

from types import ModuleType

import torch
from torch import Tensor

from gnnkit.errors import InputError
from gnnkit.ops import backend
from gnnkit.ops._layout import _column_major, _of_leaf, _row_major, transposed_gradient
from gnnkit.ops._sddmm import _CHUNK_ELEMENTS, _sddmm_raw
from gnnkit.ops.csr import CSRGraph, check_graph
from gnnkit.ops.linear import bias_gradient
from gnnkit.ops.scatter import _segment
from gnnkit.utils.checks import describe

__all__ = ["spmm"]


def _csr_matrix(ptr: Tensor, idx: Tensor, values: Tensor, shape: tuple[int, int]) -> Tensor:
    """A torch.sparse CSR matrix over kernel indices (:meth:`CSRGraph.kernel_indices`, built
    and validated by gnnkit, so torch's invariant check is skipped) and flattened values."""
    return torch.sparse_csr_tensor(ptr, idx, values.reshape(-1), shape, check_invariants=False)


def _csr_product(matrix: Tensor, x: Tensor, out: Tensor) -> Tensor:
    """``out = matrix @ x`` for a 2-D ``x`` and contiguous 2-D ``out``, returned.

    ``addmm(..., beta=0, out=...)`` into the output avoids the zero-fill and copy that
    ``torch.sparse.mm`` adds (measured 2x faster on CPU); MKL honours ``beta=0``, so rows
    without entries come out as 0 whatever ``out`` held.
    """
    return torch.addmm(out, matrix, x, beta=0.0, out=out)


def _csr_matmul(ptr: Tensor, idx: Tensor, values: Tensor, x: Tensor, out: Tensor) -> None:
    """``out[h] = A_h @ x[h]`` for every head in one torch.sparse call.

    ``ptr``/``idx`` describe the block-diagonal matrix of all heads
    (:meth:`CSRGraph.kernel_indices`), whose values are ``values`` flattened head by head.
    """
    heads, num_out, channels = out.shape
    matrix = _csr_matrix(ptr, idx, values, (heads * num_out, heads * x.size(1)))
    _csr_product(matrix, x.reshape(-1, channels), out.view(heads * num_out, channels))


def _segment_matmul(ptr: Tensor, idx: Tensor, values: Tensor, x: Tensor, out: Tensor) -> None:
    """The same product as gather + segment sum, in row blocks of bounded size.

    Deterministic on every device (each output row is reduced in a fixed order).
    """
    num_rows, channels = out.size(1), max(1, x.size(2))
    budget = max(1, _CHUNK_ELEMENTS // channels)
    ptr_host = ptr.tolist()
    bounds = []
    start = 0
    while start < num_rows:  # row blocks whose edges fit the budget (at least one row each)
        limit = ptr_host[start] + budget
        stop = int(torch.searchsorted(ptr, torch.tensor([limit], device=ptr.device), right=True))
        stop = min(max(stop - 1, start + 1), num_rows)
        bounds.append((start, stop))
        start = stop
    for h in range(values.size(0)):
        for start, stop in bounds:
            lo, hi = ptr_host[start], ptr_host[stop]
            if hi == lo:
                out[h, start:stop] = 0
                continue
            msg = x[h].index_select(0, idx[lo:hi]) * values[h, lo:hi].unsqueeze(-1)  # (e, C)
            out[h, start:stop] = _segment(msg, ptr[start : stop + 1] - lo, "sum")


def _cpu_kernels() -> ModuleType:
    """:mod:`gnnkit.ops._spmm_cpu`, imported (with numba) when its kernel first runs."""
    from gnnkit.ops import _spmm_cpu

    return _spmm_cpu


def _narrow_kernels() -> ModuleType:
    """:mod:`gnnkit.ops._spmm_narrow`, imported (with numba) when its kernel first runs."""
    from gnnkit.ops import _spmm_narrow

    return _spmm_narrow


def _spmm_kernel(graph: CSRGraph, x: Tensor, deterministic: bool, biased: bool) -> str:
    """:func:`gnnkit.ops.backend.spmm_kernel`'s choice for ``A x``, ``x`` (H, N_in, C) or
    one head's (N_in, C)."""
    heads = x.size(0) if x.dim() == 3 else 1
    entries, senders = heads * graph.num_edges, heads * x.size(-2)
    return backend.spmm_kernel(
        x.device, x.dtype, deterministic, x.size(-1), entries, senders, biased
    )


def _spmm_raw(
    graph: CSRGraph,
    transpose: bool,
    values: Tensor,
    x: Tensor,
    kernel: str,
    bias: Tensor | None = None,
    flat: bool = False,
) -> Tensor:
    """(H, E) values and (H, N_in, C) features -> (H, N_out, C), for A or its transpose; plus
    a (C,) ``bias`` where given (added in the narrow kernel as it stores a row, else after:
    the same bits). ``flat`` (one head): the (N_out, C) output itself rather than a view of it
    (what :class:`_SpMM` returns, so that it can be modified in place)."""
    num_out = graph.num_cols if transpose else graph.num_rows
    shape = (num_out, x.size(2)) if flat else (x.size(0), num_out, x.size(2))
    # MKL honours beta=0 (rows without entries come out as 0, whatever `out` held); zero the
    # buffer elsewhere rather than rely on every backend doing the same.
    memory = x.new_empty(shape) if x.device.type == "cpu" else x.new_zeros(shape)
    out = memory.unsqueeze(0) if flat else memory  # (H, N_out, C)
    x, values = _row_major(x), values.contiguous()
    if graph.num_edges == 0 or out.numel() == 0:
        out.zero_()
    elif kernel == "narrow":
        ptr, idx = graph.kernel_indices(transpose)
        _narrow_kernels().spmm(
            ptr, idx, values, x, out, None if bias is None else bias.contiguous()
        )
        bias = None  # added
    elif kernel == "csr":
        ptr, idx = graph.kernel_indices(transpose, heads=x.size(0))
        _csr_matmul(ptr, idx, values, x, out)
    elif kernel == "numba":
        ptr, idx = graph.kernel_indices(transpose)  # one head's indices serve every head
        _cpu_kernels().spmm(ptr, idx, values, x, out)
    else:
        ptr, idx = graph.transpose()[:2] if transpose else (graph.rowptr, graph.col)
        _segment_matmul(ptr, idx, values, x, out)
    if bias is not None:
        out.add_(bias)
    return memory if flat else out


def _spmm_transposed(graph: CSRGraph, values: Tensor, x: Tensor, kernel: str) -> Tensor:
    r"""``A^T x`` for (H, E) values in ``A``'s CSR order and (H, N_out, C) ``x``.

    With the narrow kernel on one thread, where the output rows fit in cache, straight from
    ``A``'s own CSR order (:func:`gnnkit.ops._spmm_narrow.spmm_transposed`: the same bits,
    without gathering the values into the transpose's order); otherwise the values are
    gathered and the transpose multiplied (:func:`_spmm_raw`). That pass adds each entry's
    product to the row of its column, rows that are not in cache once the output outgrows it
    (and it asks for none ahead): on random graphs of 7 entries a row, 1 thread, it took
    0.74-1.04x the gathered product's time up to 4 MiB of output and 1.09-1.67x from 6 to 12
    MiB (16 and 64 channels), 1.14-2.12x at ogbn-arxiv's size (16 to 128 channels;
    ``benchmarks/results/narrow_spmm.md``).

    Its callers are backward passes. With grad mode on there (``create_graph=True``) the
    product is formed with torch's differentiable operators instead, so that a second backward
    pass differentiates it: :math:`(A^\top x)_{h, c} = \sum_{e : c_e = c} a_{he} \,
    x_{h, r_e}`, each entry's (C,) row formed ((H, E, C) memory), the same products added in
    another order (equal to float rounding).
    """
    if torch.is_grad_enabled():
        rows = values.unsqueeze(-1) * x.index_select(1, graph.row)  # (H, E, C)
        out = x.new_zeros(x.size(0), graph.num_cols, x.size(2))
        return out.index_add(1, graph.col, rows)
    out_bytes = x.size(0) * graph.num_cols * x.size(2) * x.element_size()
    if (
        kernel == "narrow"
        and torch.get_num_threads() == 1
        and graph.num_edges > 0
        and out_bytes < _narrow_kernels().PREFETCH_MIN_BYTES
    ):
        out = x.new_empty(x.size(0), graph.num_cols, x.size(2))
        ptr, idx = graph.kernel_indices(False)
        _narrow_kernels().spmm_transposed(ptr, idx, values.contiguous(), x.contiguous(), out)
        return out
    return _spmm_raw(graph, True, _take_edges(values, graph.transpose()[3]), x, kernel)


def _take_edges(values: Tensor, index: Tensor) -> Tensor:
    """``values[:, index]`` for (H, |E|) values; one head as a flat gather (measured 1.5x faster
    than ``index_select`` along dimension 1 on CPU)."""
    if values.size(0) == 1:
        return values.reshape(-1).index_select(0, index).unsqueeze(0)
    return values.index_select(1, index)


def _spmm_forward(
    graph: CSRGraph,
    values: Tensor,
    x: Tensor,
    deterministic: bool,
    bias: Tensor | None,
    flat: bool,
) -> tuple[Tensor, str]:
    """:class:`_SpMM`'s product of (H, E) ``values`` and (H, N_in, C) ``x`` and the kernel
    that made it (for its backward); ``flat`` (one head): the (N_out, C) output itself."""
    kernel = _spmm_kernel(graph, x, deterministic, bias is not None)
    return _spmm_raw(graph, False, values, x, kernel, bias, flat=flat), kernel


class _SpMM(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx,
        graph: CSRGraph,
        values: Tensor,
        x: Tensor,
        deterministic: bool,
        bias: Tensor | None,
        squeeze: bool,
    ) -> Tensor:
        """(H, E) values and (H, N_in, C) ``x`` -> (H, N_out, C); with ``squeeze`` one head's
        (E,) values and (N_in, C) ``x`` -> (N_out, C), with no view nodes around this one."""
        # Save only what the backward needs: x for the values' gradient, values for x's; the
        # inputs themselves (not views made here), so that with create_graph the gradients
        # formed from them reach their graphs.
        ctx.save_for_backward(
            x if ctx.needs_input_grad[1] else None,
            values if ctx.needs_input_grad[2] else None,
        )
        if squeeze:
            values, x = values.unsqueeze(0), x.unsqueeze(0)
        out, kernel = _spmm_forward(graph, values, x, deterministic, bias, squeeze)
        ctx.graph = graph
        ctx.kernel = kernel
        ctx.squeeze = squeeze
        ctx.column_major = squeeze and _column_major(x) and _of_leaf(x)  # (see backward)
        return out  # one head: its (N_out, C) memory itself, not a view

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        x, values = ctx.saved_tensors
        if ctx.squeeze:  # one head's (E,) values and (N_in, C) x: as (1, E) and (1, N_in, C)
            x = None if x is None else x.unsqueeze(0)
            values = None if values is None else values.unsqueeze(0)
        graph: CSRGraph = ctx.graph
        grad_values = grad_x = None
        grad_out = grad_out.contiguous()  # once, for both kernels below
        if ctx.squeeze:
            grad_out = grad_out.unsqueeze(0)
        if ctx.needs_input_grad[1] and torch.is_grad_enabled():
            # create_graph: <grad_out[row_e], x[col_e]> in torch's differentiable operators
            sent = grad_out.index_select(1, graph.row)  # (H, E, C)
            grad_values = (sent * x.index_select(1, graph.col)).sum(-1)
        elif ctx.needs_input_grad[1]:
            kernel = backend.sddmm_kernel(x.device, x.dtype, x.size(2))
            grad_values = _sddmm_raw(graph, grad_out, x, kernel)
        if ctx.needs_input_grad[2]:  # (differentiable with create_graph, see there)
            grad_x = _spmm_transposed(graph, values, grad_out, ctx.kernel)
        grad_bias = None
        if ctx.needs_input_grad[4]:  # as autograd reduces an added (C,) bias: one sum over rows
            grad_bias = bias_gradient(grad_out, (grad_out.size(-1),))
        if ctx.squeeze:
            grad_values = None if grad_values is None else grad_values[0]
            grad_x = None if grad_x is None else grad_x[0]
        if grad_x is not None and ctx.column_major:  # in the layout of x, a leaf's .t()
            grad_x = transposed_gradient(grad_x).t()
        return None, grad_values, grad_x, None, grad_bias, None


def _as_heads(values: Tensor | None, x: Tensor, name: str) -> tuple[Tensor, Tensor, bool]:
    """View (|E|,) values and (|V|, C) features as one head: (1, |E|) and (1, |V|, C)."""
    if isinstance(values, Tensor) and isinstance(x, Tensor):
        if x.layout != torch.strided:  # (torch's error came from deep inside the kernels)
            raise InputError(
                f"{name}: x must be a dense (strided) tensor, got {x.layout}; pass x.to_dense(), "
                "or multiply sparse features by a weight first with gnnkit.nn.sparse_linear"
            )
        if values.dim() == 1 and x.dim() == 2:
            return values.unsqueeze(0), x.unsqueeze(0), True
        if values.dim() == 2 and x.dim() == 3 and values.size(0) == x.size(0):
            return values, x, False
    shapes = [describe(t, dtype=False) for t in (values, x)]
    raise InputError(
        f"{name} expects values (|E|,) with x (|V|, C), or values (H, |E|) with x (H, |V|, C); "
        f"got values {shapes[0]} and x {shapes[1]}"
    )


def spmm(
    graph: CSRGraph,
    values: Tensor | None,
    x: Tensor,
    *,
    bias: Tensor | None = None,
    deterministic: bool | None = None,
) -> Tensor:
    r"""Sum aggregation as a sparse-dense matmul: ``out[i] = sum_{e=(j->i)} values[e] * x[j]``
    (``+ bias``).

    Differentiable with respect to ``values`` (through an SDDMM), ``x`` (through an SpMM on
    the transposed graph) and ``bias``; neither direction materialises per-edge messages.
    Differentiable twice: a backward pass with ``create_graph=True`` forms the gradients with
    torch's operators instead (per-edge rows, (H, |E|, C) memory), which a second backward
    pass differentiates.

    Args:
        graph (CSRGraph): the connectivity.
        values (Tensor or None): one weight per edge in CSR order, (|E|,), or (H, |E|) for H
            heads; ``None`` weighs every edge 1 (the plain adjacency matrix, as PyG's
            ``edge_weight=None`` and a ``SparseTensor`` without values).
        x (Tensor): sender features, (|V_in|, C), or (H, |V_in|, C) for H heads.
        bias (Tensor, optional): (C,), added to every output row (of every head); on CPU the
            compiled kernels add it as they store each row, with the bits of adding it after.
            (default: ``None``)
        deterministic (bool, optional): force deterministic kernels; ``None`` follows
            :func:`gnnkit.ops.is_deterministic`. (default: ``None``)

    Shapes:
        - **input:** ``values`` (|E|,) or (H, |E|); ``x`` (|V_in|, C) or (H, |V_in|, C),
          floating point and dense (sparse features: :func:`gnnkit.nn.sparse_linear`);
          ``bias`` (C,)
        - **output:** (|V_out|, C) or (H, |V_out|, C)
    """
    check_graph("spmm", graph)
    if values is None and isinstance(x, Tensor):  # every edge weighs 1
        shape = (x.size(0), graph.num_edges) if x.dim() == 3 else (graph.num_edges,)
        values = torch.ones(shape, dtype=x.dtype, device=x.device)  # (x may be sparse)
    values_h, x_h, squeeze = _as_heads(values, x, "spmm")
    if values_h.size(1) != graph.num_edges or x_h.size(1) != graph.num_cols:
        raise InputError(
            f"spmm: the graph has {graph.num_edges} edges and {graph.num_cols} senders, got "
            f"{values_h.size(1)} values per head and {x_h.size(1)} feature rows"
        )
    dtype = x_h.dtype
    if values_h.dtype != dtype or not dtype.is_floating_point:
        got = f"values are {values_h.dtype} and x is {dtype}"
        raise InputError(f"spmm: {got}; both must be one floating-point dtype (use .float())")
    if bias is not None and (
        not isinstance(bias, Tensor)
        or bias.shape != (x_h.size(2),)
        or bias.dtype != x_h.dtype
        or bias.device != x_h.device
    ):
        got = (
            f"{tuple(bias.shape)} {bias.dtype} on {bias.device}"
            if isinstance(bias, Tensor)
            else type(bias).__name__
        )
        raise InputError(
            f"spmm: bias must be a ({x_h.size(2)},) tensor of x's dtype on x's device "
            f"({x_h.dtype}, {x_h.device}), got {got}"
        )
    deterministic = backend.is_deterministic(deterministic)
    if not torch.is_grad_enabled() or not (
        values_h.requires_grad or x.requires_grad or (bias is not None and bias.requires_grad)
    ):  # nothing to differentiate (an evaluation): the product without an autograd Function
        return _spmm_forward(graph, values_h, x_h, deterministic, bias, squeeze)[0]
    if squeeze:  # one head: the 2-D tensors themselves (the kernel views them as one head)
        return _SpMM.apply(graph, values, x, deterministic, bias, True)
    return _SpMM.apply(graph, values_h, x_h, deterministic, bias, False)
