"""Checks of what a :class:`gnnkit.ops.CSRGraph` is built from.

The compiled kernels (numba on CPU, Triton on CUDA) index memory through a graph's row
pointer and column indices without bounds checks, so a graph built from an index out of range
would read or write outside its tensors (a crash, or silent garbage). Every public way to
build one checks here first; gnnkit's own constructions from arrays it built skip it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gnnkit.errors import InputError
from gnnkit.utils.checks import as_index, check_range, is_integer_tensor, values_readable

__all__ = [
    "check_sparse",
    "check_structure",
    "count",
    "integer_vector",
    "pointer_rises",
]


def count(name: str, value: object) -> int:
    """``value`` as a node count: a non-negative Python int (from an int, a numpy integer or
    a 0-dim integer tensor)."""
    number = as_index(name, value)
    if number < 0:
        raise InputError(f"{name} must be a non-negative int, got {value!r}")
    return number


def integer_vector(value: object) -> bool:
    """Whether ``value`` is a 1-D tensor of integers (not booleans)."""
    return isinstance(value, Tensor) and value.dim() == 1 and is_integer_tensor(value)


def _integer_vector(name: str, value: object) -> Tensor:
    """``value``, checked to be a 1-D integer tensor."""
    if not integer_vector(value):
        got = f"{value.dtype} {tuple(value.shape)}" if isinstance(value, Tensor) else type(value)
        raise InputError(f"CSRGraph: {name} must be a 1-D integer tensor, got {got}")
    assert isinstance(value, Tensor)
    return value


def pointer_rises(ptr: Tensor, end: int, *, exact: bool) -> bool:
    """Whether the (non-empty) integer vector ``ptr`` never falls and runs from 0 to ``end``
    (``exact``: a CSR row pointer) or within ``[0, end]`` (a segment pointer). On CPU through
    numpy: a few microseconds for a batch's pointer."""
    if ptr.device.type == "cpu":
        values = ptr.numpy()
        first, last = int(values[0]), int(values[-1])
        rises = bool((values[1:] >= values[:-1]).all())
    else:
        first, last = ptr[[0, -1]].tolist()
        rises = bool((ptr[1:] >= ptr[:-1]).all())
    ends = first == 0 and last == end if exact else first >= 0 and last <= end
    return ends and rises


def check_structure(
    rowptr: Tensor, col: Tensor, row: Tensor, perm: Tensor | None, num_rows: int, num_cols: int
) -> None:
    """Raise :class:`InputError` unless the arrays describe a valid CSR graph (what the
    compiled kernels assume when they index memory through them)."""
    num_rows, num_cols = count("num_rows", num_rows), count("num_cols", num_cols)
    rowptr, col = _integer_vector("rowptr", rowptr), _integer_vector("col", col)
    row = _integer_vector("row", row)
    sizes = {"rowptr": (rowptr, num_rows + 1), "row": (row, col.numel())}
    if perm is not None:
        sizes["perm"] = (_integer_vector("perm", perm), col.numel())
    for name, (tensor, size) in sizes.items():
        if tensor.numel() != size:
            raise InputError(
                f"CSRGraph: {name} must have {size} entries for {num_rows} rows and "
                f"{col.numel()} edges, got {tensor.numel()}"
            )
    if not values_readable(rowptr):
        return
    fix = "build the graph with CSRGraph.from_edge_index(edge_index, num_nodes)"
    if not pointer_rises(rowptr, col.numel(), exact=True):
        raise InputError(
            f"CSRGraph: rowptr must rise from 0 to the number of edges ({col.numel()}) and "
            f"never fall; {fix}"
        )
    expected = torch.repeat_interleave(
        torch.arange(num_rows, device=rowptr.device), rowptr.diff(), output_size=col.numel()
    )
    if not torch.equal(row.to(expected.dtype), expected):
        raise InputError(f"CSRGraph: row must list each entry's row (rowptr expanded); {fix}")
    check_range("CSRGraph: col", col, num_cols, fix)
    if perm is not None:
        check_range("CSRGraph: perm", perm, max(col.numel(), 1), fix, unit="entries")


def check_sparse(matrix: object) -> None:
    """Raise unless ``matrix`` is a 2-D sparse CSR or coalesced COO tensor with no dense
    dimensions whose CSR row pointer (if CSR) rises from 0 to its number of entries."""
    name = "CSRGraph.from_sparse"
    layout = matrix.layout if isinstance(matrix, Tensor) else type(matrix).__name__
    if layout not in (torch.sparse_csr, torch.sparse_coo):
        raise InputError(f"{name} expects a sparse CSR or COO tensor, got {layout}")
    assert isinstance(matrix, Tensor)
    if matrix.dim() != 2 or matrix.dense_dim() != 0:
        raise InputError(
            f"{name} expects a 2-D matrix with no dense dimensions, got shape "
            f"{tuple(matrix.shape)} with {matrix.dense_dim()} dense"
        )
    if matrix.layout == torch.sparse_coo:
        if not matrix.is_coalesced():
            raise InputError(f"{name} expects a coalesced COO matrix; call matrix.coalesce()")
        fix = "fix the matrix's indices"
        check_range(
            f"{name}: the row indices", matrix.indices()[0], matrix.size(0), fix, unit="rows"
        )
        return
    crow, nnz = matrix.crow_indices(), matrix.values().numel()
    if values_readable(crow) and not pointer_rises(crow, nnz, exact=True):
        raise InputError(
            f"{name}: the CSR row pointer must rise from 0 to the number of entries ({nnz}) "
            "and never fall; build the matrix with check_invariants=True to find the bad entry"
        )
