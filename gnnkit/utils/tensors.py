"""What a tensor holds, for reports: its storage in MiB and a one-line description of its layout.

Both read dense, sparse COO and sparse CSR tensors, the layouts node features come in
(:func:`gnnkit.train.node_inputs`: sparse CSR for gnnkit, dense for PyG's references).
"""

from __future__ import annotations

import torch

__all__ = ["MIB", "describe_layout", "tensor_mib"]

#: Bytes in a mebibyte.
MIB = 1024.0 * 1024.0


def tensor_mib(t: torch.Tensor) -> float:
    """The bytes that ``t`` stores, in MiB: its values, and the indices of a sparse layout.

    A COO tensor is counted coalesced (one entry per position).
    """
    parts: tuple[torch.Tensor, ...]
    if t.layout == torch.sparse_csr:
        parts = (t.crow_indices(), t.col_indices(), t.values())
    elif t.layout == torch.sparse_coo:
        t = t.coalesce()
        parts = (t.indices(), t.values())
    else:
        parts = (t,)
    return sum(p.numel() * p.element_size() for p in parts) / MIB


def describe_layout(x: torch.Tensor) -> str:
    """``"dense (N, F)"``, or ``"sparse csr (N, F), NNZ non-zeros"`` (``coo`` likewise)."""
    if x.layout == torch.strided:
        return f"dense {tuple(x.shape)}"
    nnz = x._nnz() if x.layout == torch.sparse_coo else x.values().numel()
    layout = "csr" if x.layout == torch.sparse_csr else "coo"
    return f"sparse {layout} {tuple(x.shape)}, {nnz} non-zeros"
