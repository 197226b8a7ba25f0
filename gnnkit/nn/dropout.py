"""Dropout for sparse feature matrices."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from gnnkit.errors import InputError
from gnnkit.ops.csr import _ptr_from_sorted

__all__ = ["sparse_dropout"]


def sparse_dropout(x: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    r"""Dropout on the stored entries of a sparse matrix, as in Kipf & Welling's GCN code.

    Each stored entry is kept with probability :math:`1 - p` and scaled by
    :math:`1 / (1 - p)`; dropped entries are removed from the sparse structure (Kipf's
    ``sparse_dropout`` with ``tf.sparse_retain``). Zeros that are not stored stay zero, which
    is exactly what dense dropout does to them, so the result has the same distribution as
    ``F.dropout(x.to_dense(), p)`` while costing time proportional to the number of non-zeros:
    a bag-of-words matrix such as Cora's 2708 x 1433 features (1.3 % non-zero) is never
    densified.

    NOTE: PyG's examples apply ``F.dropout`` to the dense feature matrix; this is the sparse
    equivalent (same expectation and distribution, different random stream).

    Args:
        x (Tensor): a sparse COO or CSR matrix (a dense tensor is passed to ``F.dropout``).
        p (float, optional): the probability of dropping an entry, in [0, 1]. (default: ``0.5``)
        training (bool, optional): apply dropout; ``False`` returns ``x`` unchanged.
            (default: ``True``)

    Shapes:
        - **input:** (|V|, F), sparse COO or CSR
        - **output:** (|V|, F), same layout, at most as many stored entries
    """
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise InputError(f"dropout probability p must be a number in [0, 1], got {p!r}")
    if not isinstance(x, Tensor):
        raise InputError(f"sparse_dropout expects a torch.Tensor, got {type(x).__name__}")
    if x.layout == torch.strided:
        return F.dropout(x, p, training)
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
        indices, values = x.indices(), x.values()
    else:
        crow, col, values = x.crow_indices(), x.col_indices(), x.values()
    keep = torch.rand(values.shape[0], device=values.device) >= p  # (nnz,)
    kept = values[keep] * (1.0 / (1.0 - p)) if p < 1.0 else values[keep]

    if x.layout == torch.sparse_coo:
        return torch.sparse_coo_tensor(
            indices[:, keep], kept, x.shape, is_coalesced=True, check_invariants=False
        )
    counts = torch.diff(crow)
    row = torch.repeat_interleave(torch.arange(x.size(0), device=crow.device), counts)
    new_crow = _ptr_from_sorted(row[keep], x.size(0)).to(crow.dtype)
    return torch.sparse_csr_tensor(new_crow, col[keep], kept, x.shape, check_invariants=False)
