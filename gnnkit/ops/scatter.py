"""Reductions of edge values onto nodes: over CSR segments and over unsorted indices.

Segment reductions take values already sorted by receiver (CSR order) and a row pointer; they
are deterministic on every device. Scatter reductions take values in any order plus the
receiver of each; they use atomic kernels unless deterministic mode is on, where they sort
first and reduce segments. :mod:`gnnkit.ops.backend` picks the kernel.
"""

from __future__ import annotations

import numbers
from typing import Literal

import torch
from torch import Tensor

from gnnkit.errors import InputError
from gnnkit.ops import backend
from gnnkit.ops._csr_checks import integer_vector, pointer_rises
from gnnkit.utils.checks import describe, values_readable

__all__ = ["index_sum", "scatter_max", "scatter_sum", "segment_max", "segment_sum"]

Reduce = Literal["sum", "max"]


def _segment(src: Tensor, ptr: Tensor, reduce: Reduce, axis: int = 0) -> Tensor:
    """Reduce CSR segments of ``src`` along ``axis`` (0, or 1 for head-major (H, |E|) data)."""
    num_segments = ptr.numel() - 1
    shape = list(src.shape)
    shape[axis] = num_segments
    if src.size(axis) == 0 or num_segments == 0:
        return src.new_full(shape, 0.0 if reduce == "sum" else float("-inf"))
    offsets = ptr if axis == 0 else ptr.expand(*src.shape[:axis], -1).contiguous()
    if backend.segment_kernel() == "torch_scatter":
        ts = backend.torch_scatter_module()
        out = ts.segment_csr(src, offsets, reduce=reduce)
        if reduce == "max":  # torch_scatter fills empty segments with 0
            empty = ptr[1:] == ptr[:-1]
            empty = empty.view(-1, *([1] * (src.dim() - 1))) if axis == 0 else empty
            out = out.masked_fill(empty, float("-inf"))
        return out
    return torch.segment_reduce(src, reduce, offsets=offsets, axis=axis, unsafe=True)


def _check_src(prefix: str, src: object) -> None:
    if not isinstance(src, Tensor) or src.dim() == 0:
        got = describe(src, dtype=False)
        raise InputError(f"{prefix}src must be a tensor of shape (|E|, *), got {got}")
    if src.dtype == torch.bool or src.is_complex():
        raise InputError(
            f"{prefix}src must be a floating-point or integer tensor, got {src.dtype}; "
            "pass src.float()"
        )


def _lowest(src: Tensor) -> float | int:
    """What a maximum over no entries holds: ``-inf``, or an integer dtype's smallest value."""
    return float("-inf") if src.is_floating_point() else torch.iinfo(src.dtype).min


def _scatter_reduce(src: Tensor, index: Tensor, dim_size: int, reduce: Reduce) -> Tensor:
    """``src`` reduced by ``index`` with torch's ``scatter_reduce``; slots no entry reaches
    hold 0 (sum) or :func:`_lowest` (max). It serves integer ``src`` too, which torch's segment
    kernel does not take: integer sums and maxima are exact in any order, so deterministic."""
    fill = 0 if reduce == "sum" else _lowest(src)
    out = src.new_full((dim_size, *src.shape[1:]), fill)
    expanded = index.view(-1, *([1] * (src.dim() - 1))).expand_as(src)
    return out.scatter_reduce(0, expanded, src, "sum" if reduce == "sum" else "amax")


def _integer_segments(src: Tensor, ptr: Tensor, reduce: Reduce) -> Tensor:
    """:func:`_segment` along rows for integer ``src``: the segment of every row of
    ``src[ptr[0]:ptr[-1]]`` spelled out, then :func:`_scatter_reduce`."""
    num_segments = ptr.numel() - 1
    lengths = ptr.diff()
    segment = torch.repeat_interleave(torch.arange(num_segments, device=ptr.device), lengths)
    first = int(ptr[0]) if num_segments else 0
    return _scatter_reduce(src[first : first + segment.numel()], segment, num_segments, reduce)


def _check_ptr(name: str, src: Tensor, ptr: Tensor) -> None:
    """Raise unless ``ptr`` is a 1-D integer tensor that never falls, from at least 0 to at
    most ``src``'s rows: torch's segment kernel (run with ``unsafe=True``) reads ``src`` at
    these offsets without bounds checks."""
    _check_src(f"{name}: ", src)
    if not integer_vector(ptr) or ptr.numel() == 0:
        found = describe(ptr)
        raise InputError(f"{name}: ptr must be a 1-D integer tensor (|V| + 1,), got {found}")
    if ptr.device != src.device:
        raise InputError(f"{name}: ptr is on {ptr.device} but src on {src.device}")
    if values_readable(ptr) and not pointer_rises(ptr, src.size(0), exact=False):
        raise InputError(
            f"{name}: ptr must never fall and stay within src's {src.size(0)} rows, got "
            f"{ptr.flatten()[:6].tolist()}{' ...' if ptr.numel() > 6 else ''}"
        )


def segment_sum(src: Tensor, ptr: Tensor) -> Tensor:
    """Sum of each CSR segment: ``out[i] = src[ptr[i]:ptr[i+1]].sum(0)`` (0 for empty segments).

    Deterministic on every device and differentiable with respect to ``src``, twice too (its
    backward pass gathers each segment's gradient with ``index_select``, whose own gradient
    is a sum again; torch's segment reduction has no second derivative). Integer ``src`` is
    summed exactly in its own dtype, as ``torch_scatter.segment_csr`` does (torch's segment
    kernel takes floating point only, so integers take ``scatter_reduce``).

    Shapes:
        - **input:** ``src`` (|E|, *), ``ptr`` (|V| + 1,), integers that never fall, within
          ``[0, |E|]``
        - **output:** (|V|, *)
    """
    _check_ptr("segment_sum", src, ptr)
    if not src.is_floating_point():
        return _integer_segments(src, ptr, "sum")
    if src.requires_grad and torch.is_grad_enabled():
        return _SegmentSum.apply(src, ptr)
    return _segment(src, ptr, "sum")


class _SegmentSum(torch.autograd.Function):
    """:func:`segment_sum` whose backward pass is made of differentiable operators."""

    @staticmethod
    def forward(ctx, src: Tensor, ptr: Tensor) -> Tensor:
        ctx.save_for_backward(ptr)
        ctx.rows = src.size(0)
        return _segment(src, ptr, "sum")

    @staticmethod
    def backward(ctx, grad: Tensor):
        (ptr,) = ctx.saved_tensors
        # Each entry in [ptr[0], ptr[-1]) takes its segment's gradient; entries outside every
        # segment take 0.
        rows = torch.repeat_interleave(ptr.diff())
        out = grad.index_select(0, rows)
        first, last = int(ptr[0]), int(ptr[-1])
        if first > 0 or last < ctx.rows:
            pad = [0, 0] * (grad.dim() - 1) + [first, ctx.rows - last]
            out = torch.nn.functional.pad(out, pad)
        return out, None


def segment_max(src: Tensor, ptr: Tensor) -> Tensor:
    """Maximum of each CSR segment (``-inf`` for empty segments; for integer ``src``, the
    dtype's smallest value). Shapes as :func:`segment_sum`."""
    _check_ptr("segment_max", src, ptr)
    if not src.is_floating_point():
        return _integer_segments(src, ptr, "max")
    return _segment(src, ptr, "max")


def _check_index(src: Tensor, index: Tensor, dim_size: int) -> None:
    """``index`` must give each row of ``src`` a target row in ``[0, dim_size)`` (the sorted
    deterministic path would drop one past the end silently, ``index_add_`` fail deep in
    torch)."""
    _check_src("", src)
    if not integer_vector(index) or index.numel() != src.size(0):
        found = f"{index.dtype} {tuple(index.shape)}" if isinstance(index, Tensor) else index
        raise InputError(
            f"index must be an integer tensor of shape ({src.size(0)},), one target per row "
            f"of src, got {found}"
        )
    if isinstance(dim_size, bool) or not isinstance(dim_size, numbers.Integral) or dim_size < 0:
        raise InputError(f"dim_size must be a non-negative int, got {dim_size!r}")
    if index.numel() and values_readable(index):
        low, high = (int(v) for v in torch.aminmax(index))
        if low < 0 or high >= dim_size:
            raise InputError(
                f"index holds {low if low < 0 else high}, out of range for dim_size={dim_size} "
                f"(valid: 0 .. {dim_size - 1})"
            )


def _sorted_segments(src: Tensor, index: Tensor, dim_size: int, reduce: Reduce) -> Tensor:
    """Deterministic scatter: stable sort by index, then one segment reduction (integers,
    exact in any order, scatter directly)."""
    if not src.is_floating_point():
        return _scatter_reduce(src, index, dim_size, reduce)
    perm = torch.sort(index, stable=True).indices
    counts = torch.bincount(index, minlength=dim_size)
    ptr = torch.zeros(dim_size + 1, dtype=torch.long, device=index.device)
    torch.cumsum(counts, 0, out=ptr[1:])
    return _segment(src[perm], ptr, reduce)


def scatter_sum(
    src: Tensor, index: Tensor, dim_size: int, *, deterministic: bool | None = None
) -> Tensor:
    """``out[i] = sum of src[e] over e with index[e] == i`` (0 where no ``e`` points to ``i``).

    Differentiable with respect to ``src``.

    Args:
        src (Tensor): values, (|E|, *).
        index (Tensor): the target row of each value, (|E|,).
        dim_size (int): the number of output rows.
        deterministic (bool, optional): force (``True``) or forbid (``False``) deterministic
            kernels; ``None`` follows :func:`gnnkit.ops.is_deterministic`. (default: ``None``)

    Shapes:
        - **input:** ``src`` (|E|, *), ``index`` (|E|,)
        - **output:** (dim_size, *)
    """
    _check_index(src, index, dim_size)
    kernel = backend.scatter_kernel("sum", backend.is_deterministic(deterministic))
    if kernel == "sort+segment":
        if src.requires_grad:
            # The sorted path is built from differentiable ops, but segment_reduce's backward
            # is itself a scatter; gather-based backward keeps it deterministic.
            return _DeterministicScatterSum.apply(src, index, dim_size)
        return _sorted_segments(src, index, dim_size, "sum")
    if kernel == "torch_scatter":
        ts = backend.torch_scatter_module()
        return ts.scatter(src, index, dim=0, dim_size=dim_size, reduce="sum")
    out = src.new_zeros((dim_size, *src.shape[1:]))
    return out.index_add_(0, index, src)


def scatter_max(
    src: Tensor, index: Tensor, dim_size: int, *, deterministic: bool | None = None
) -> Tensor:
    """``out[i] = max of src[e] over e with index[e] == i`` (``-inf`` where none; for
    integer ``src``, the dtype's smallest value).

    Maximum is order-independent, so every kernel is deterministic in value; the option only
    changes which kernel runs. Gradients flow to the maximal entries (as ``scatter_reduce``).
    Shapes as :func:`scatter_sum`.
    """
    _check_index(src, index, dim_size)
    kernel = backend.scatter_kernel("max", backend.is_deterministic(deterministic))
    if kernel == "torch_scatter" and not src.requires_grad:
        ts = backend.torch_scatter_module()
        out, _ = ts.scatter_max(src, index, dim=0, dim_size=dim_size)
        empty = torch.bincount(index, minlength=dim_size) == 0
        return out.masked_fill(empty.view(-1, *([1] * (src.dim() - 1))), _lowest(src))
    if kernel == "sort+segment" and not src.requires_grad:
        return _sorted_segments(src, index, dim_size, "max")
    return _scatter_reduce(src, index, dim_size, "max")


class _DeterministicScatterSum(torch.autograd.Function):
    """Sorted-segment scatter sum whose backward is a plain gather (no atomics anywhere)."""

    @staticmethod
    def forward(ctx, src: Tensor, index: Tensor, dim_size: int) -> Tensor:
        ctx.save_for_backward(index)
        return _sorted_segments(src, index, dim_size, "sum")

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        (index,) = ctx.saved_tensors
        return grad_out[index], None, None


def index_sum(values: Tensor, index: Tensor, size: int, dim: int = 0) -> Tensor:
    """``values`` summed along ``dim`` into ``size`` slots by ``index``, with ``index_add``,
    whose backward (``index_select``) is differentiable again. For backward passes under
    ``create_graph=True``, where a segment reduction cannot serve (torch's has no second
    derivative); on CUDA the additions run in no fixed order."""
    shape = list(values.shape)
    shape[dim] = size
    return values.new_zeros(shape).index_add(dim, index, values)
