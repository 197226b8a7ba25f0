r"""Sampled dense-dense matmul (SDDMM) on a :class:`CSRGraph`: one dot product per edge.

.. math::
    \mathrm{out}_{h,e} = \langle a_{h,i,:}, b_{h,j,:} \rangle
    \quad \text{for every edge } e = (j \to i)

It forms the values' gradient of :func:`gnnkit.ops.spmm`, without an ``|E| x C``
tensor: ``torch.sparse.sampled_addmm`` on the block-diagonal pattern of all heads where torch
provides it, else per-edge gathers in chunks of bounded size.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gnnkit.errors import InputError
from gnnkit.ops import backend
from gnnkit.ops.csr import CSRGraph, check_graph
from gnnkit.utils.checks import describe

__all__ = ["sddmm"]

# Upper bound on the elements of one temporary (edges x channels) in the chunked fallback
# kernels (this one and the SpMM's, :mod:`gnnkit.ops.matmul`): 2**24 values (64 MiB in float32).
_CHUNK_ELEMENTS = 2**24


def _sddmm_raw(graph: CSRGraph, a: Tensor, b: Tensor, kernel: str) -> Tensor:
    """``out[h, e] = <a[h, row_e, :], b[h, col_e, :]>`` for every CSR entry ``e``."""
    heads, nnz = a.size(0), graph.num_edges
    if nnz == 0 or a.size(2) == 0:
        return a.new_zeros((heads, nnz))
    a, b = a.contiguous(), b.contiguous()
    if kernel == "csr":
        # One call for all heads on the block-diagonal pattern. sampled_addmm writes straight
        # into our buffer when given it as `out`; the buffer must start at zero (beta=0 does
        # not mask NaN in the input values).
        out = a.new_zeros((heads, nnz))
        ptr, idx = graph.kernel_indices(heads=heads)
        pattern = torch.sparse_csr_tensor(
            ptr,
            idx,
            out.view(-1),
            (heads * graph.num_rows, heads * graph.num_cols),
            check_invariants=False,
        )
        channels = a.size(2)
        torch.sparse.sampled_addmm(
            pattern, a.view(-1, channels), b.view(-1, channels).t(), beta=0.0, out=pattern
        )
        return out
    out = a.new_empty((heads, nnz))
    budget = max(1, _CHUNK_ELEMENTS // max(1, a.size(2)))
    for h in range(heads):
        for lo in range(0, nnz, budget):
            hi = min(lo + budget, nnz)
            rows = a[h].index_select(0, graph.row[lo:hi])
            cols = b[h].index_select(0, graph.col[lo:hi])
            out[h, lo:hi] = (rows * cols).sum(-1)
    return out


def sddmm(graph: CSRGraph, a: Tensor, b: Tensor) -> Tensor:
    r"""One dot product per edge: ``out[e] = <a[i], b[j]>`` for every edge ``e = (j -> i)``.

    Computed without a per-edge ``|E| x C`` tensor (``torch.sparse.sampled_addmm`` where
    available, else in bounded edge chunks). Not differentiable (it is the backward kernel of
    :func:`spmm`).

    Shapes:
        - **input:** ``a`` (|V_out|, C) or (H, |V_out|, C); ``b`` (|V_in|, C) or (H, |V_in|, C)
        - **output:** (|E|,) or (H, |E|), in CSR order
    """
    check_graph("sddmm", graph)
    if (
        not isinstance(a, Tensor)
        or not isinstance(b, Tensor)
        or a.dim() != b.dim()
        or (a.dim() not in (2, 3))
    ):
        shapes = [describe(t, dtype=False) for t in (a, b)]
        raise InputError(
            f"sddmm expects a and b both (|V|, C) or both (H, |V|, C), got {shapes[0]} and "
            f"{shapes[1]}"
        )
    squeeze = a.dim() == 2
    a_h = a.unsqueeze(0) if squeeze else a
    b_h = b.unsqueeze(0) if squeeze else b
    expected = (graph.num_rows, graph.num_cols)
    if (
        (a_h.size(1), b_h.size(1)) != expected
        or a_h.size(0) != b_h.size(0)
        or (a_h.size(2) != b_h.size(2))
    ):
        raise InputError(
            f"sddmm: the graph has {expected[0]} receivers and {expected[1]} senders; a must be "
            f"({expected[0]}, C) and b ({expected[1]}, C) (with one head count), got "
            f"{tuple(a.shape)} and {tuple(b.shape)}"
        )
    if a.dtype != b.dtype or a.device != b.device or not a.is_floating_point():
        raise InputError(
            f"sddmm: a and b must be floating-point tensors of one dtype on one device, got "
            f"{a.dtype} on {a.device} and {b.dtype} on {b.device}"
        )
    kernel = backend.sddmm_kernel(a.device, a.dtype, a_h.size(2))
    out = _sddmm_raw(graph, a_h, b_h, kernel)
    return out.squeeze(0) if squeeze else out
