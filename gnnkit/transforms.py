r"""PyG transforms that put a dataset in the form gnnkit's layers run fastest on.

:class:`SparseFeatures` stores sparse node features (bag-of-words such as Cora's, 1.3 %
non-zero) as a sparse CSR matrix. gnnkit's :class:`~gnnkit.nn.GCNConv` and
:class:`~gnnkit.nn.GATConv` multiply such a matrix by their weights without densifying it
(:func:`gnnkit.nn.sparse_linear`, its structure kept between calls), and
:func:`gnnkit.nn.dropout` drops its stored entries only (:func:`gnnkit.nn.sparse_dropout`).
A script written for PyG needs the transform and ``dropout`` from :mod:`gnnkit.nn` in place of
``F.dropout`` to run on them; everything else stays as it is:

.. code-block:: python

    from gnnkit import SparseFeatures
    from gnnkit.nn import GCNConv, dropout  # dropout(x, p, training) as F.dropout

    data = SparseFeatures(normalize=True)(data)  # or transform=... of a PyG dataset
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor
from torch_geometric.transforms import BaseTransform

from gnnkit.errors import InputError

__all__ = ["MAX_DENSITY", "SparseFeatures"]

#: :class:`SparseFeatures` stores features sparse up to this fraction of non-zero entries.
#: Measured on Cora's shape (2708 x 1433, one thread, float32; sparse: CSR with
#: :func:`gnnkit.nn.sparse_linear` and :func:`gnnkit.nn.sparse_dropout`; dense: ``x @ W`` and
#: dense dropout): a training step (dropout, product with a 1433 x 16 or x 64 weight,
#: backward) is faster sparse up to a density of 0.3-0.5 (4.5x faster at 0.1, 2.1-2.7x at
#: 0.2), the forward product alone up to 0.3 (1.6-2x at 0.2). A CSR matrix also takes 12 bytes
#: per stored float32 entry (value and int64 column) against 4 per dense entry, so it is the
#: smaller one below a density of 1/3.
MAX_DENSITY = 0.25

_LAYOUTS = (torch.strided, torch.sparse_coo, torch.sparse_csr)


class SparseFeatures(BaseTransform):
    r"""Store node features as a sparse CSR matrix when they are sparse enough to gain by it.

    Each feature matrix :math:`X \in \mathbb{R}^{|V| \times F}` named in ``attrs`` whose
    density :math:`\mathrm{nnz}(X) / (|V| F)` is at most ``max_density`` (or every one, with
    ``force=True``) becomes a ``torch.sparse_csr`` tensor with the same values; a denser one
    becomes (or stays) dense. The values never change unless ``normalize=True``, which first
    row-normalises them exactly as PyG's ``T.NormalizeFeatures()``:

    .. math::
        \tilde{x}_{ij} = \frac{x_{ij} - m}{\max\bigl(1, \sum_k (x_{ik} - m)\bigr)},
        \qquad m = \min_{i, j} x_{ij}

    gnnkit's :class:`~gnnkit.nn.GCNConv` and :class:`~gnnkit.nn.GATConv` take the CSR
    matrix as ``x`` and :func:`gnnkit.nn.dropout` keeps it sparse, so a PyG-style model runs
    on it unchanged once ``F.dropout`` is replaced by ``gnnkit.nn.dropout``. The default
    threshold, ``gnnkit.transforms.MAX_DENSITY`` (0.25), is where the sparse form was
    measured to stay faster and smaller (see there). Works on :class:`~torch_geometric.data.Data` and
    :class:`~torch_geometric.data.HeteroData` (every node type), directly or as a dataset's
    ``transform``.

    NOTE: PyG's ``T.NormalizeFeatures()`` cannot read sparse features; it must come *before*
    this transform (``T.Compose([T.NormalizeFeatures(), SparseFeatures()])``), or use
    ``SparseFeatures(normalize=True)``, which does both. Only gnnkit's layers (and
    ``torch.sparse.mm``) accept the CSR matrix; PyG's own layers need dense features.

    Args:
        max_density (float, optional): the largest fraction of non-zero entries stored
            sparse, in [0, 1]. (default: ``MAX_DENSITY``, 0.25)
        force (bool, optional): store every matrix sparse, whatever its density.
            (default: ``False``)
        normalize (bool, optional): row-normalise first, as ``T.NormalizeFeatures()``.
            Sparse input stays sparse while it is normalised when its smallest entry is 0.
            (default: ``False``)
        attrs (list of str, optional): the attributes to convert; each must be in some node
            store (a misspelt name is refused rather than skipped). (default: ``["x"]``)

    Shapes:
        - **input:** ``data.x`` (|V|, F), dense, sparse COO or sparse CSR, floating point
        - **output:** ``data.x`` (|V|, F), sparse CSR (or dense above ``max_density``)

    Example:
        >>> import torch
        >>> from torch_geometric.data import Data
        >>> data = Data(x=torch.eye(100), edge_index=torch.empty(2, 0, dtype=torch.long))
        >>> SparseFeatures()(data).x.layout
        torch.sparse_csr
    """

    def __init__(
        self,
        max_density: float = MAX_DENSITY,
        *,
        force: bool = False,
        normalize: bool = False,
        attrs: list[str] | None = None,
    ) -> None:
        if (
            isinstance(max_density, bool)
            or not isinstance(max_density, (int, float))
            or not 0.0 <= max_density <= 1.0
        ):
            raise InputError(f"max_density must be a number in [0, 1], got {max_density!r}")
        for name, flag in (("force", force), ("normalize", normalize)):
            if not isinstance(flag, bool):
                raise InputError(f"{name} must be True or False, got {flag!r}")
        attrs = ["x"] if attrs is None else attrs
        if (
            isinstance(attrs, str)
            or not isinstance(attrs, (list, tuple))
            or not attrs
            or not all(isinstance(a, str) for a in attrs)
        ):
            raise InputError(f"attrs must be a non-empty list of attribute names, got {attrs!r}")
        self.max_density = float(max_density)
        self.force = force
        self.normalize = normalize
        self.attrs = list(attrs)

    def forward(self, data: Any) -> Any:
        stores = getattr(data, "node_stores", None)
        if stores is None:
            raise InputError(
                f"SparseFeatures transforms a torch_geometric Data or HeteroData, got "
                f"{type(data).__name__}"
            )
        found = {key for store in stores for key in self.attrs if key in store}
        missing = [key for key in self.attrs if key not in found]
        if missing:  # before anything is converted
            raise InputError(
                f"SparseFeatures(attrs={self.attrs!r}): no node store has {missing}; the "
                "data's node attributes are "
                f"{sorted({key for store in stores for key in store})}"
            )
        for store in stores:
            for key, value in store.items(*self.attrs):
                store[key] = self.convert(value, key)
        return data

    def convert(self, x: Any, name: str = "x") -> Tensor:
        """The feature matrix ``x`` in the layout (and normalisation) this transform chooses."""
        x = _checked(x, name)
        if self.normalize:
            x = _row_normalized(x)
        nnz = x._nnz() if x.layout != torch.strided else int(torch.count_nonzero(x))
        if self.force or nnz <= self.max_density * x.numel():
            return _to_csr(x)
        return x.to_dense() if x.layout != torch.strided else x

    def __repr__(self) -> str:
        options = [f"max_density={self.max_density:g}"]
        options += [f"{name}=True" for name in ("force", "normalize") if getattr(self, name)]
        if self.attrs != ["x"]:
            options.append(f"attrs={self.attrs!r}")
        return f"{type(self).__name__}({', '.join(options)})"


def _checked(x: Any, name: str) -> Tensor:
    """``x`` if it is a finite floating-point matrix of a supported layout (COO coalesced)."""
    if not isinstance(x, Tensor):
        raise InputError(f"SparseFeatures: data.{name} must be a tensor, got {type(x).__name__}")
    if x.layout not in _LAYOUTS:
        raise InputError(
            f"SparseFeatures: data.{name} must be dense, sparse COO or sparse CSR, got layout "
            f"{x.layout}; convert it with .to_dense() first"
        )
    if x.dim() != 2 or (x.layout == torch.sparse_coo and x.dense_dim() != 0):
        raise InputError(
            f"SparseFeatures: data.{name} must be a (|V|, F) matrix, got shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise InputError(
            f"SparseFeatures: data.{name} is {x.dtype}; the layers need floating-point "
            f"features: convert it first (data.{name} = data.{name}.float())"
        )
    if x.layout == torch.sparse_coo:
        x = x.coalesce()
    values = x if x.layout == torch.strided else x.values()
    if not bool(torch.isfinite(values).all()):
        raise InputError(f"SparseFeatures: data.{name} holds NaN or infinite values")
    return x


def _row_normalized(x: Tensor) -> Tensor:
    """PyG's ``NormalizeFeatures`` of ``x``; sparse input with minimum 0 is normalised sparse."""
    if x.layout == torch.strided or x.numel() == 0:
        dense = x.to_dense() if x.layout != torch.strided else x
        if dense.numel():
            dense = dense - dense.min()  # PyG: value - value.min(), then divide by row sums
            dense = dense / dense.sum(dim=-1, keepdim=True).clamp(min=1.0)
        return dense
    csr = _to_csr(x)
    values = csr.values()
    smallest = float(values.min()) if values.numel() else 0.0
    if values.numel() < csr.numel():  # an entry that is not stored is a 0
        smallest = min(smallest, 0.0)
    if smallest != 0.0:  # shifting by the minimum fills the unstored zeros: dense
        return _row_normalized(csr.to_dense())
    crow = csr.crow_indices()
    rows = torch.repeat_interleave(torch.arange(csr.size(0), device=x.device), crow.diff())
    sums = torch.zeros(csr.size(0), dtype=values.dtype, device=x.device).index_add_(
        0, rows, values
    )  # (|V|,)
    return _csr(crow, csr.col_indices(), values / sums.clamp(min=1.0)[rows], csr.shape)


def _to_csr(x: Tensor) -> Tensor:
    if x.layout == torch.sparse_csr:
        return x
    with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state"
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support")
        return x.to_sparse_csr()


def _csr(crow: Tensor, col: Tensor, values: Tensor, shape: torch.Size) -> Tensor:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support")
        return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)
