"""A one-entry cache for structures derived from a graph, safe against stale reuse."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from gnnkit.errors import InputError

logger = logging.getLogger(__name__)


def _fingerprint(tensor: Tensor | None) -> tuple | None:
    if tensor is None:
        return None
    # A tensor made under torch.inference_mode() has no version counter, so nothing proves
    # it unmodified: a fresh object makes its fingerprint match nothing, not even itself.
    version = object() if tensor.is_inference() else tensor._version
    return (
        tensor.data_ptr(),
        tuple(tensor.shape),
        tuple(tensor.stride()),
        tensor.dtype,
        tensor.device,
        version,
    )


def _shape(tensor: Tensor | None) -> tuple | None:
    return None if tensor is None else (tuple(tensor.shape), tensor.dtype, tensor.device)


class GraphCache:
    """Remembers what a layer derived from one graph (its CSR form, its normalised weights).

    A lookup hits when the graph tensors are the very tensors seen before, unmodified
    (same storage address, shape, strides and in-place version counter; the cache keeps a
    reference to them, so their memory cannot be reused by another tensor while cached), or
    when they are other tensors of the same shape with equal contents (one ``torch.equal``
    pass, far cheaper than rebuilding). Anything else misses and the caller rebuilds: a cache
    never hands back structures of a different graph.

    A copy (``copy.deepcopy``) or an unpickled cache (``torch.save`` of a whole model) starts
    empty, and its first call rebuilds: its entry's addresses would name tensors the copy does
    not hold, which a new graph could be allocated at.

    NOTE: an in-place change made outside PyTorch's knowledge does not bump the version
    counter and is not detected: through a NumPy array that shares memory with the tensor,
    or through ``tensor.data`` (``edge_index.data[1, 0] = 5``); change a graph in place
    through the tensor itself, or pass a new one. Tensors made under
    ``torch.inference_mode()`` have no version counter: they never hit.
    """

    def __init__(self) -> None:
        self.clear()

    def __reduce__(self) -> tuple:
        """Copied and pickled as a new, empty cache (class docstring)."""
        return (type(self), ())

    def clear(self) -> None:
        self._refs: tuple[Tensor | None, ...] | None = None
        self._keys: tuple | None = None
        self._extra: tuple | None = None
        self.value: Any = None

    def lookup(self, tensors: tuple[Tensor | None, ...], extra: tuple) -> Any:
        """The cached value for these graph tensors and settings, or ``None``."""
        if self._refs is None or extra != self._extra:
            return None
        keys = tuple(_fingerprint(t) for t in tensors)
        if keys == self._keys:
            return self.value
        # Other tensors: equal contents count as the same graph, provided the cached
        # references were not modified in place since they were stored.
        if tuple(_fingerprint(t) for t in self._refs) != self._keys:
            return None
        if tuple(_shape(t) for t in tensors) != tuple(_shape(t) for t in self._refs):
            return None
        for new, old in zip(tensors, self._refs, strict=True):
            if new is not None and (old is None or not torch.equal(new, old)):
                logger.debug("graph changed since it was cached; rebuilding")
                return None
        self._refs, self._keys = tensors, keys
        return self.value

    def store(self, tensors: tuple[Tensor | None, ...], extra: tuple, value: Any) -> None:
        """Remember ``value`` for these graph tensors and settings (one entry only)."""
        self._refs = tensors
        self._keys = tuple(_fingerprint(t) for t in tensors)
        self._extra = extra
        self.value = value


class PygCacheAttributes:
    """PyG's private cache attributes, ``_cached_edge_index`` and ``_cached_adj_t``, over a
    layer's :class:`GraphCache` (whose entries are ``(structure, weights, form)``).

    Code written for PyG checks them (``is not None``) or clears the cache by setting them to
    ``None``; both work. They read ``(edge_index, normalised weights)`` in edge order.
    """

    if TYPE_CHECKING:  # provided by the layer; not class annotations, which TorchScript reads
        _cache: GraphCache
        cached: bool

        def clear_cache(self) -> None: ...

    @property
    def _cached_edge_index(self) -> tuple[Tensor, Tensor | None] | None:
        """PyG's cache attribute: ``(edge_index, normalised weights)`` while a graph given as
        ``edge_index`` is cached, else ``None``; setting it to ``None`` clears the cache."""
        return self._cached_entry(("edge_index",))

    @_cached_edge_index.setter
    def _cached_edge_index(self, value: None) -> None:
        self._clear_cached(value)

    @property
    def _cached_adj_t(self) -> tuple[Tensor, Tensor | None] | None:
        """PyG's cache attribute for an adjacency input; like :attr:`_cached_edge_index`."""
        return self._cached_entry(("torch.sparse", "SparseTensor"))

    @_cached_adj_t.setter
    def _cached_adj_t(self, value: None) -> None:
        self._clear_cached(value)

    def _cached_entry(self, forms: tuple[str, ...]) -> tuple[Tensor, Tensor | None] | None:
        entry = self._cache.value
        if not self.cached or entry is None or entry[2] not in forms:
            return None
        structure, weights, _ = entry
        if weights is not None and structure.graph is not None:  # CSR order -> edge order
            ordered = torch.empty_like(weights)
            ordered[structure.graph.perm] = weights
            weights = ordered
        return structure.edge_index, weights

    def _clear_cached(self, value: None) -> None:
        if value is not None:
            raise InputError("the GCN cache can only be cleared (set to None), not assigned")
        self.clear_cache()
