"""A graph's connectivity in compressed sparse row (CSR) form, rows = receivers.

:class:`CSRGraph` is built once per graph (one stable sort) and reused by every kernel: SpMM,
SDDMM, segment reductions and the edge softmax. Its transpose (rows = senders), which the
backward passes need, is built on first use and kept.

Everything a :class:`CSRGraph` builds is an ordinary tensor, even when it is built under
:func:`torch.inference_mode`: a graph cached by a layer during evaluation must still serve a
later training step, which saves some of these tensors for its backward pass.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import torch
from torch import Tensor

from gnnkit.errors import InputError
from gnnkit.ops._csr_checks import check_sparse, check_structure, count
from gnnkit.utils.checks import check_device, check_range, is_integer_tensor

__all__ = ["CSRGraph"]

# torch warns once per process that CSR support is "beta". gnnkit builds its CSR tensors from
# validated, sorted indices, so the warning says nothing to a user: trigger it here, silenced,
# without touching the process-wide warning filters.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    torch.sparse_csr_tensor(
        torch.zeros(2, dtype=torch.long),
        torch.zeros(0, dtype=torch.long),
        torch.zeros(0),
        (1, 1),
        check_invariants=False,
    )


def check_graph(name: str, graph: object) -> None:
    """Raise unless ``graph`` is a :class:`CSRGraph` (``name``: the function it was given to)."""
    if not isinstance(graph, CSRGraph):
        raise InputError(
            f"{name}: graph must be a CSRGraph, got {type(graph).__name__}; build it with "
            "CSRGraph.from_edge_index(edge_index, num_nodes)"
        )


def _stable_argsort(keys: Tensor, upper: int) -> Tensor:
    """Stable argsort of non-negative integer keys below ``upper`` (int32 keys sort ~2x faster)."""
    if upper < 2**31 - 1 and keys.dtype != torch.int32:
        keys = keys.to(torch.int32)
    return torch.sort(keys, stable=True).indices


@contextlib.contextmanager
def ordinary_tensors() -> Iterator[None]:
    """Build cached structures as ordinary tensors, whatever the caller's mode.

    Tensors created under :func:`torch.inference_mode` cannot be saved for backward; a
    structure cached during evaluation is reused by training, so it must not be one of them.
    ``no_grad`` because ``inference_mode(False)`` re-enables gradient recording.
    """
    with torch.inference_mode(False), torch.no_grad():
        yield


def _ptr_from_sorted(index: Tensor, size: int) -> Tensor:
    """Row pointer (size + 1,) of a sorted index vector."""
    return torch._convert_indices_from_coo_to_csr(index, size, out_int32=False)


def _index_dtype(upper: int) -> torch.dtype:
    """int32 for indices below ``upper`` where it fits, else int64."""
    return torch.int32 if upper < 2**31 - 1 else torch.int64


def _interleave_segments(
    ptr: Tensor, heads: int, total: int, dtype: torch.dtype
) -> tuple[Tensor, Tensor, Tensor]:
    """Segments of ``ptr`` repeated per head, segment ``(i, h)`` numbered ``i * heads + h``.

    Returns the new pointer (N H + 1,) (int64), the segment of every new entry and the old
    entry it copies (both (total H,) of ``dtype``), without a sort: segment ``(i, h)`` starts
    at ``heads * ptr[i] + h * degree[i]`` and copies entries ``ptr[i]:ptr[i + 1]`` in order.
    """
    degree = ptr.diff()  # (N,)
    offsets = torch.arange(heads, device=ptr.device)  # (H,)
    starts = (ptr[:-1].unsqueeze(1) * heads + offsets * degree.unsqueeze(1)).view(-1)  # (N H,)
    new_ptr = torch.cat([starts, starts.new_full((1,), heads * total)])
    counts = degree.to(dtype).repeat_interleave(heads)  # (N H,)
    segment = torch.repeat_interleave(counts, output_size=heads * total)  # (total H,)
    # Entry m of segment (i, h) copies entry ptr[i] + m - starts[(i, h)].
    shift = (ptr[:-1].repeat_interleave(heads) - starts).to(dtype)  # (N H,)
    source = shift.index_select(0, segment)
    source += torch.arange(heads * total, dtype=dtype, device=ptr.device)
    return new_ptr, segment, source


class CSRGraph:
    r"""Edges sorted by receiver: row :math:`i` lists the senders of node :math:`i`.

    The matrix this describes is :math:`A` with :math:`A_{ij}` the weight of edge
    :math:`j \to i`, the convention of :func:`gnnkit.adjacency`; ``spmm(graph, values, x)``
    computes :math:`A X` (one round of sum aggregation).

    Build it with :meth:`from_edge_index`. The sort is stable, so edges that share a receiver
    keep their input order and every reduction over a row adds in the same order every run.
    Built from its arrays directly (``CSRGraph(rowptr, col, row, perm, num_rows,
    num_cols)``), it checks them first: the compiled kernels index memory through them
    without bounds checks, so an index out of range would read or write outside a tensor.

    Attributes:
        rowptr (Tensor): (|V_out| + 1,) row pointer; row ``i`` is ``rowptr[i]:rowptr[i+1]``.
        col (Tensor): (|E|,) the sender of each entry, in CSR order.
        row (Tensor): (|E|,) the receiver of each entry, in CSR order (``rowptr`` expanded).
        perm (Tensor): (|E|,) ``perm[k]`` is the position in the input ``edge_index`` of the
            ``k``-th CSR entry; ``values_in_input_order[perm]`` gives CSR-ordered values.
        num_rows (int): |V_out|, the number of receivers.
        num_cols (int): |V_in|, the number of senders.
    """

    __slots__ = (
        "_base",
        "_heads",
        "_kernel_indices",
        "_perm",
        "_perm_parts",
        "_transpose",
        "col",
        "num_cols",
        "num_rows",
        "row",
        "rowptr",
    )

    def __init__(
        self,
        rowptr: Tensor,
        col: Tensor,
        row: Tensor,
        perm: Tensor | None,
        num_rows: int,
        num_cols: int,
        *,
        check: bool = True,
    ) -> None:
        if check:  # (gnnkit's own constructions pass arrays they built: check=False)
            check_structure(rowptr, col, row, perm, num_rows, num_cols)
        self.rowptr = rowptr
        self.col = col
        self.row = row
        self._perm = perm
        self.num_rows = num_rows
        self.num_cols = num_cols
        self._transpose: tuple[Tensor, Tensor, Tensor, Tensor] | None = None
        self._kernel_indices: dict[tuple[bool, int], tuple[Tensor, Tensor]] = {}
        # Set by interleave_heads: the head count, the one-head graph this one copies (until
        # the transpose is built from it) and what perm is built from (its rowptr, perm - row).
        self._heads = 1
        self._base: CSRGraph | None = None
        self._perm_parts: tuple[Tensor, Tensor] | None = None

    @classmethod
    def from_edge_index(
        cls, edge_index: Tensor, num_nodes: int, num_cols: int | None = None
    ) -> CSRGraph:
        """Sort ``edge_index`` (row 0 senders, row 1 receivers) by receiver.

        Args:
            edge_index (Tensor): (2, |E|) integer tensor; its senders must lie in
                ``[0, num_cols)`` and its receivers in ``[0, num_nodes)``.
            num_nodes (int): number of receivers (and of senders unless ``num_cols`` is given).
            num_cols (int, optional): number of senders. (default: ``num_nodes``)

        Raises:
            InputError: ``edge_index`` is not a (2, |E|) integer tensor, a count is not a
                non-negative int, or an index is out of range (the kernels would read or
                write outside their tensors).
        """
        num_nodes = count("num_nodes", num_nodes)
        num_cols = num_nodes if num_cols is None else count("num_cols", num_cols)
        if not is_integer_tensor(edge_index) or edge_index.dim() != 2 or edge_index.size(0) != 2:
            got = (
                f"{edge_index.dtype} {tuple(edge_index.shape)}"
                if isinstance(edge_index, Tensor)
                else type(edge_index).__name__
            )
            raise InputError(f"CSRGraph: edge_index must be a (2, |E|) integer tensor, got {got}")
        fix = "fix the edges or pass the right node counts"
        check_range("CSRGraph: edge_index[0] (senders)", edge_index[0], num_cols, fix)
        check_range("CSRGraph: edge_index[1] (receivers)", edge_index[1], num_nodes, fix)
        src, dst = edge_index[0].long(), edge_index[1].long()
        perm = _stable_argsort(dst, num_nodes)
        row = dst[perm]
        col = src[perm]
        rowptr = _ptr_from_sorted(row, num_nodes)
        return cls(rowptr, col, row, perm, num_nodes, num_cols, check=False)

    @classmethod
    def from_sparse(cls, matrix: Tensor) -> CSRGraph:
        """The sparsity structure of a 2-D sparse CSR or coalesced COO matrix.

        Row ``i`` of the graph is row ``i`` of ``matrix``, so ``spmm(graph, matrix.values(),
        y)`` computes ``matrix @ y`` (the values of a CSR matrix, and of a coalesced COO one,
        are already in CSR order; ``perm`` is the identity). This is how a sparse feature
        matrix (|V| x F, rows = nodes) reuses the SpMM / SDDMM kernels and the cached
        transpose of a graph.

        Args:
            matrix (Tensor): sparse CSR, or sparse COO with ``is_coalesced()``, of shape
                (rows, cols) with no dense dimensions.

        Raises:
            InputError: ``matrix`` is not such a tensor, or its indices are out of range (a
                CSR tensor built with torch's default ``check_invariants=False`` may hold any).
        """
        check_sparse(matrix)
        num_rows, num_cols = matrix.shape
        with ordinary_tensors():
            if matrix.layout == torch.sparse_csr:
                rowptr = matrix.crow_indices().long()
                col = matrix.col_indices().long()
                counts = rowptr.diff()
                rows = torch.arange(num_rows, device=col.device)
                row = torch.repeat_interleave(rows, counts, output_size=col.numel())
            else:
                indices = matrix.indices()
                row, col = indices[0], indices[1]
                rowptr = _ptr_from_sorted(row, num_rows)
            perm = torch.arange(col.numel(), device=col.device)
        fix = "build the matrix with check_invariants=True to find the bad entry"
        check_range("CSRGraph.from_sparse: the column indices", col, num_cols, fix)
        return cls(rowptr, col, row, perm, num_rows, num_cols, check=False)

    @property
    def perm(self) -> Tensor:
        """(|E|,) input position of each CSR entry (an interleaved graph builds it on first use)."""
        if self._perm is None:
            assert self._perm_parts is not None  # only interleave_heads leaves perm unset
            rowptr, shift = self._perm_parts  # shift: perm_k - i for base entry k into node i
            heads = self._heads
            with ordinary_tensors():
                _, row, edge = _interleave_segments(rowptr, heads, shift.numel(), shift.dtype)
                # (perm_k H + h) = (perm_k - i) H + (i H + h) for entry k into node i.
                self._perm = shift.index_select(0, edge).mul_(heads).add_(row)
        return self._perm

    @perm.setter
    def perm(self, value: Tensor) -> None:
        self._perm = value

    @property
    def num_edges(self) -> int:
        """|E|, the number of stored entries."""
        return self.col.numel()

    @property
    def device(self) -> torch.device:
        return self.col.device

    def transpose(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The CSC view, built on first call and cached: ``(colptr, row_t, col_t, perm_t)``.

        ``colptr`` (|V_in| + 1,) points into entries sorted by sender; ``row_t`` holds their
        receivers (the column index of the transposed matrix), ``col_t`` their senders, and
        ``perm_t[k]`` is the CSR position of the ``k``-th CSC entry, so
        ``values_csr[perm_t]`` are the values of :math:`A^\\top` in its own CSR order.
        """
        if self._transpose is None and self._base is not None:
            with ordinary_tensors():
                self._transpose = self._interleaved_transpose()
            self._base = None  # everything else it served is built
        if self._transpose is None:
            with ordinary_tensors():
                perm_t = _stable_argsort(self.col, self.num_cols)
                col_t = self.col[perm_t]
                colptr = _ptr_from_sorted(col_t, self.num_cols)
                self._transpose = (colptr, self.row[perm_t], col_t, perm_t)
        return self._transpose

    def _interleaved_transpose(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The transpose of an interleaved graph from its base graph's transpose, no sort.

        The base transpose is not kept unless it was cached already (it would only serve
        this call). Temporaries of |E| H entries are freed as soon as they are used.
        """
        base, heads, dtype = self._base, self._heads, self.col.dtype
        assert base is not None
        cached = base._transpose is not None
        colptr_b, row_b, col_b, perm_b = base.transpose()
        if not cached:
            base._transpose = None
        # Rows of the transpose are senders (j, h), each listing j's entries in base order.
        colptr, col_t, edge = _interleave_segments(colptr_b, heads, base.num_edges, dtype)
        # The receiver of (entry k, head h) is i_k H + h = (i_k - j_k) H + (j_k H + h).
        row_t = (row_b - col_b).to(dtype).index_select(0, edge).mul_(heads).add_(col_t)
        # Its position in this graph's CSR order: base CSR entry p = perm_b[k] into node i
        # sits at H rowptr_i + h degree_i + (p - rowptr_i).
        perm_t = col_b.to(dtype).index_select(0, edge).mul_(-heads).add_(col_t)  # h
        degree = base.rowptr.diff()[row_b].to(dtype)  # (|E|,) degree of each entry's receiver
        perm_t.mul_(degree.index_select(0, edge))
        first = (perm_b + (heads - 1) * base.rowptr[row_b]).to(dtype)  # (|E|,)
        perm_t.add_(first.index_select(0, edge))
        return colptr, row_t, col_t, perm_t

    def kernel_indices(self, transpose: bool = False, heads: int = 1) -> tuple[Tensor, Tensor]:
        r"""``(ptr, idx)`` for torch.sparse kernels, built once per ``(transpose, heads)``.

        With ``heads > 1`` they describe the block-diagonal matrix
        :math:`\operatorname{diag}(A_1, \dots, A_H)` of shape (H |V_out|, H |V_in|), all
        heads sharing this sparsity pattern, so a single kernel call serves every head (one
        parallel region instead of H). Indices are int32 whenever they fit: torch's MKL and
        cuSPARSE kernels take 32-bit indices, and int64 makes every call convert them
        (measured: a third of the time of a CSR matmul on CPU).
        """
        key = (transpose, heads)
        if key not in self._kernel_indices:
            with ordinary_tensors():
                self._kernel_indices[key] = self._build_kernel_indices(transpose, heads)
        return self._kernel_indices[key]

    def _build_kernel_indices(self, transpose: bool, heads: int) -> tuple[Tensor, Tensor]:
        ptr, idx = (self.transpose()[:2]) if transpose else (self.rowptr, self.col)
        num_in = self.num_rows if transpose else self.num_cols
        nnz = idx.numel()
        small = heads * max(nnz, self.num_rows, self.num_cols) < 2**31 - 1
        dtype = torch.int32 if small else torch.int64
        ptr, idx = ptr.to(dtype), idx.to(dtype)
        if heads > 1:  # block h: rows shifted by h * nnz entries, columns by h * num_in
            offsets = torch.arange(heads, dtype=dtype, device=ptr.device).unsqueeze(1)
            ptr = torch.cat([(ptr[:-1] + nnz * offsets).reshape(-1), ptr.new_tensor([heads * nnz])])
            idx = (idx + num_in * offsets).reshape(-1)
        return ptr, idx

    def interleave_heads(self, heads: int) -> CSRGraph:
        r"""``heads`` copies of this graph, one per head, node :math:`(i, h)` numbered :math:`iH + h`.

        Edge :math:`j \to i` of head :math:`h` becomes edge :math:`jH + h \to iH + h`, so a
        head-interleaved node tensor (|V|, H, C), viewed as (|V| H, C) without a copy, is a
        plain node-feature matrix of this graph, and an (|V|, H) tensor flattened is one value
        per node. Every kernel (SpMM, SDDMM, segment reductions, edge softmax) then serves all
        heads in one call, with no transpose to a head-major layout in either pass (attention
        heads in :class:`gnnkit.nn.GATConv`).

        The row of node :math:`(i, h)` lists the edges into :math:`i` in this graph's CSR order.
        ``perm[k]`` is ``perm_e * H + h`` for the ``k``-th entry (edge ``e``, head ``h``): its
        position in an (|E|, H) tensor in the *input* edge order, flattened. With ``heads == 1``
        the graph itself is returned.

        Nothing is sorted: the rows, columns and the transpose (built on first use, from this
        graph's transpose) follow from the row pointers by arithmetic, in a few passes over
        the |E| H entries. Entry indices are int32 whenever |E| H and |V| H fit (the kernels
        take them as they are, and they take half the memory); ``perm`` is built on first use
        (only :meth:`gnnkit.nn.GATConv.attention` needs it).

        Shapes:
            - **output:** a graph with |V_out| H rows, |V_in| H columns and |E| H entries
        """
        if isinstance(heads, bool) or not isinstance(heads, int) or heads < 1:
            raise InputError(f"heads must be a positive int, got {heads!r}")
        if heads == 1:
            return self
        with ordinary_tensors():
            itype = _index_dtype(heads * (max(self.num_edges, self.num_rows, self.num_cols) + 1))
            rowptr, row, edge = _interleave_segments(self.rowptr, heads, self.num_edges, itype)
            # Entry (edge k, head h) of row i H + h: column col_k H + h = (col_k - i) H + row.
            col = (self.col - self.row).to(itype).index_select(0, edge).mul_(heads).add_(row)
        graph = CSRGraph(
            rowptr, col, row, None, self.num_rows * heads, self.num_cols * heads, check=False
        )
        graph._heads = heads
        graph._base = self
        with ordinary_tensors():
            graph._perm_parts = (self.rowptr, (self.perm - self.row).to(itype))
        return graph

    def to_sparse_csr(self, values: Tensor) -> Tensor:
        """A ``torch.sparse_csr_tensor`` of shape (|V_out|, |V_in|) with ``values`` (CSR order)."""
        rowptr = self.rowptr.to(self.col.dtype)  # an interleaved graph's columns may be int32
        return torch.sparse_csr_tensor(
            rowptr,
            self.col,
            values,
            (self.num_rows, self.num_cols),
            check_invariants=False,
        )

    def to(self, device: torch.device | str) -> CSRGraph:
        """A copy on ``device`` (the cached transpose moves too)."""
        device = check_device("device", device)
        moved = CSRGraph(
            self.rowptr.to(device),
            self.col.to(device),
            self.row.to(device),
            None if self._perm is None else self._perm.to(device),
            self.num_rows,
            self.num_cols,
            check=False,
        )
        if self._transpose is not None:
            moved._transpose = tuple(t.to(device) for t in self._transpose)  # type: ignore[assignment]
        moved._heads = self._heads
        if self._base is not None:
            moved._base = self._base.to(device)
        if self._perm_parts is not None:
            moved._perm_parts = tuple(t.to(device) for t in self._perm_parts)  # type: ignore[assignment]
        return moved

    def __getstate__(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state: dict) -> None:
        self._base, self._heads, self._perm, self._perm_parts = None, 1, None, None  # older states
        for name, value in state.items():
            setattr(self, name, value)

    def __repr__(self) -> str:
        return (
            f"CSRGraph(num_rows={self.num_rows}, num_cols={self.num_cols}, "
            f"num_edges={self.num_edges}, device={self.device})"
        )
