r"""A linear map of sparse input features, with a backward pass that never re-sorts them."""

from __future__ import annotations

import torch
from torch import Tensor

from gnnkit import ops
from gnnkit.errors import InputError
from gnnkit.nn._cache import GraphCache
from gnnkit.ops.csr import CSRGraph
from gnnkit.utils.checks import describe

__all__ = ["column_major_", "sparse_linear", "sparse_structure"]


def column_major_(weight: Tensor) -> Tensor:
    """Store a (F_out, F_in) weight in column-major memory, in place: the same values and the
    same object, stored as the contiguous (F_in, F_out) matrix ``weight.t()``. Returns
    ``weight``.

    A layer that multiplies sparse features, ``X W^T`` (:func:`sparse_linear`, and the first
    layer of a model on bag-of-words features), needs ``W^T`` contiguous: a row-major ``W``
    (``torch.nn.Linear``'s and PyG's layout) is copied on every forward pass, in training and
    in evaluation, and its gradient, which comes out as ``X^T G``, is copied back into
    ``W``'s layout: three copies in a training step and an evaluation. On CPU a compiled
    blocked copy makes them (:mod:`gnnkit.ops._transpose_cpu`; GAT's 64 x 1433 weight on
    Cora, 1 thread, 93-185 us each against torch's 169-267 us,
    ``benchmarks/results/weight_copies.md``); in column-major memory they are gone.
    :class:`gnnkit.models.GCN` and :class:`gnnkit.models.GAT` do this to their first layer; a
    script of its own calls ``column_major_(model.conv1.lin.weight)`` once, before it builds
    its optimizer.

    NOTE: the results are the same (bit for bit on Cora: a dense ``F.linear`` reads either
    layout); only ``weight.is_contiguous()`` becomes ``False``, which breaks code that needs
    contiguous parameters: ``weight.view(-1)`` (``torch.nn.utils.parameters_to_vector``) and
    safetensors' ``save_file`` (save ``state_dict`` values with ``.contiguous()``).
    ``load_state_dict`` and in-place initialisers keep the layout; an initialiser fills memory
    in storage order, so after ``reset_parameters`` the same seed draws other (equally
    distributed) values than in row-major memory; ``vector_to_parameters`` writes the weight
    back in row-major memory. Fused Adam on CPU steps a weight in this layout more slowly
    (Cora GAT: 85 against 49 us for 64 x 1433), less than the copies cost. Because of what
    the layout breaks, gnnkit's layers never change a weight's layout themselves.

    Args:
        weight (Tensor): a 2-D weight, usually an ``nn.Parameter`` (its ``data`` is replaced).
    """
    if not isinstance(weight, Tensor) or weight.dim() != 2 or weight.layout != torch.strided:
        got = (
            f"{tuple(weight.shape)} ({weight.layout})"
            if isinstance(weight, Tensor)
            else type(weight).__name__
        )
        raise InputError(f"column_major_ expects a 2-D dense weight tensor, got {got}")
    if not weight.is_leaf:
        raise InputError(
            "column_major_ expects a leaf tensor such as a layer's nn.Parameter (replacing the "
            "memory of a computed tensor or view would detach it); pass layer.lin.weight"
        )
    weight.data = weight.data.t().contiguous().t()
    return weight


def _plain_matrix(x: Tensor) -> bool:
    """A 2-D sparse CSR or COO matrix without dense (hybrid) dimensions."""
    return x.layout == torch.sparse_csr or x.sparse_dim() == 2


def _structure_key(x: Tensor) -> tuple[tuple[Tensor, ...], tuple]:
    """The tensors that define ``x``'s sparsity structure, and the settings beside them."""
    tensors: tuple[Tensor, ...] = (
        (x.crow_indices(), x.col_indices()) if x.layout == torch.sparse_csr else (x.indices(),)
    )
    return tensors, (x.layout, tuple(x.shape), x.device)


def sparse_structure(x: Tensor, cache: GraphCache | None = None) -> CSRGraph:
    """The :class:`gnnkit.ops.CSRGraph` of a sparse matrix's structure, cached in ``cache``.

    The cache is keyed on the index tensors (``crow_indices``/``col_indices`` of a CSR
    matrix, ``indices`` of a coalesced COO one): it hits while they are the same tensors,
    unmodified, or other tensors with equal contents (:class:`gnnkit.nn._cache.GraphCache`).
    :func:`gnnkit.nn.sparse_dropout` keeps the index tensors, so a dropped-out copy of a
    matrix hits the cache of the matrix.

    Args:
        x (Tensor): a 2-D sparse CSR matrix, or a coalesced sparse COO matrix.
        cache (GraphCache, optional): where to keep the structure between calls.
            (default: ``None``, build it every call)
    """
    if cache is None:
        return CSRGraph.from_sparse(x)
    if not isinstance(cache, GraphCache):
        raise InputError(f"cache must be a gnnkit.nn.GraphCache, got {type(cache).__name__}")
    tensors, extra = _structure_key(x)
    graph = cache.lookup(tensors, extra)
    if graph is None:
        graph = CSRGraph.from_sparse(x)
        cache.store(tensors, extra, graph)
    return graph


def sparse_linear(
    x: Tensor, weight: Tensor, *, structure: CSRGraph | None = None, cache: GraphCache | None = None
) -> Tensor:
    r"""``x @ weight.T`` for a sparse CSR or COO ``x``, without densifying it.

    .. math::
        Y = X W^\top, \qquad
        \frac{\partial L}{\partial W} = \Big(X^\top \frac{\partial L}{\partial Y}\Big)^\top,
        \qquad
        \frac{\partial L}{\partial X_{ij}} = \Big(\frac{\partial L}{\partial Y} W\Big)_{ij}
        \ \text{for stored } (i, j)

    The forward pass is one CSR sparse-dense matmul (:func:`gnnkit.ops.spmm` on the structure
    of ``x``). The backward pass multiplies by :math:`X^\top` in CSR form, built once per
    sparsity structure and kept with it (``structure`` or ``cache``): PyTorch's own backward of
    ``torch.sparse.mm(x, w)`` converts and sorts the transpose on every call, which dominated
    a training epoch on Cora. When the values of ``x`` require a gradient it is computed at
    the stored entries only (one dot product per entry, :func:`gnnkit.ops.sddmm`), exactly as
    ``torch.sparse.mm`` does; unstored entries have no gradient.

    NOTE: a COO ``x`` that is not coalesced is coalesced first (duplicates summed), as
    ``torch.sparse.mm`` does. A hybrid COO matrix (``sparse_dim() == 1``: whole rows stored
    as dense vectors) is multiplied row by row and scattered into place.

    Args:
        x (Tensor): sparse CSR or COO features, (|V|, F_in).
        weight (Tensor): (F_out, F_in), as ``torch.nn.Linear.weight``; same dtype and device
            as ``x``.
        structure (CSRGraph, optional): the structure of ``x`` from
            :func:`sparse_structure`, to reuse its cached transpose. (default: built here)
        cache (GraphCache, optional): a cache for the structure, used when ``structure`` is
            not given. (default: ``None``)

    Shapes:
        - **input:** ``x`` (|V|, F_in) sparse; ``weight`` (F_out, F_in)
        - **output:** (|V|, F_out), dense
    """
    if not isinstance(x, Tensor) or x.layout not in (torch.sparse_csr, torch.sparse_coo):
        layout = x.layout if isinstance(x, Tensor) else type(x).__name__
        raise InputError(f"sparse_linear expects a sparse CSR or COO x, got {layout}")
    if x.dim() != 2:
        raise InputError(f"sparse_linear expects a matrix x (2 dimensions), got {tuple(x.shape)}")
    if not isinstance(weight, Tensor) or weight.dim() != 2 or weight.size(1) != x.size(-1):
        shape = describe(weight, dtype=False)
        raise InputError(
            f"sparse_linear: weight must have shape (out_features, {x.size(-1)}) for x of "
            f"shape {tuple(x.shape)}, got {shape}"
        )
    if weight.dtype != x.dtype or weight.device != x.device:
        raise InputError(
            f"sparse_linear: x is {x.dtype} on {x.device} but weight is {weight.dtype} on "
            f"{weight.device}; convert one to the other"
        )
    if x.layout == torch.sparse_coo and not x.is_coalesced():
        x = x.coalesce()
    if not _plain_matrix(x):  # hybrid COO: whole rows stored, values (nnz, F_in)
        if x.sparse_dim() != 1:
            return x.to_dense() @ weight.t()
        rows = x.values() @ weight.t()  # (nnz, F_out)
        return rows.new_zeros(x.size(0), weight.size(0)).index_add(0, x.indices()[0], rows)
    if structure is None:
        structure = sparse_structure(x, cache)
    elif (structure.num_rows, structure.num_cols, structure.num_edges) != (
        *x.shape,
        x.values().size(0),
    ):
        raise InputError(
            f"sparse_linear: the structure describes a {structure.num_rows} x "
            f"{structure.num_cols} matrix with {structure.num_edges} entries, but x is "
            f"{tuple(x.shape)} with {x.values().size(0)} entries; build it from x with "
            "sparse_structure(x)"
        )
    # spmm's gradient for its dense operand is the SpMM with the transposed structure.
    return ops.spmm(structure, x.values(), weight.t())  # (|V|, F_out)
