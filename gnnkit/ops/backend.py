"""Kernel selection: which implementation runs each sparse operation, per device and dtype.

This module is the one place that decides. Every sparse operation in :mod:`gnnkit.ops` asks it
for a kernel, so switching a backend or turning on deterministic mode changes every layer at
once. :func:`backend_info` reports the choices in force.

The defaults were chosen by measurement on CPU (``python benchmarks/layers.py``, kernel table
in ``benchmarks/results/layers.md``: 169,343 nodes, 1,166,243 edges, 64 channels):

- Sparse-dense matmul (SpMM) runs as a CSR matmul (``torch.addmm`` on a ``torch.sparse`` CSR
  tensor with int32 indices, MKL on CPU, cuSPARSE on CUDA; all attention heads in one call on
  a block-diagonal matrix): about 20x faster than gathering messages and adding them with
  ``index_add_``, and it never materialises the ``|E| x C`` message tensor.
- Per-edge dot products (SDDMM) run as ``torch.sparse.sampled_addmm`` on the CSR pattern,
  except on CPU for dot products shorter than 8 channels, where it is 3-10x slower than a
  gather and a multiply (measured on Cora's edges; see :func:`sddmm_kernel`).
- Reductions over CSR-sorted edges use ``torch.segment_reduce``; reductions over unsorted
  indices use ``index_add_`` (sum) and ``scatter_reduce`` (max). torch-scatter's kernels tie
  for sums and are slower for max (segment max about 3x, scatter max about 1.5x), so
  the ``"auto"`` backend does not pick them; ``set_backend("torch_scatter")`` selects them
  where they exist (for comparison and testing). CUDA uses the same choices; they were
  measured as whole layers on an H200 (``benchmarks/results/gpu_h200.md``: GCNConv 4.1x and
  GATConv 1.7x PyG's at ogbn-arxiv size), not kernel by kernel, whose launches the kernel
  table does not synchronise.

Kernels that torch.sparse does not provide for a dtype (half and bfloat16 on CPU) fall back to
gather-and-segment kernels, processed in chunks so that the ``|E| x C`` tensor never exists
whole.

Deterministic mode (:func:`set_deterministic`, the :func:`deterministic` context manager,
``torch.use_deterministic_algorithms(True)``, or ``deterministic=True`` on a layer) replaces
every atomic scatter by a sort followed by a segment reduction, and on CUDA runs SpMM as the
chunked gather-and-segment kernel, so the result is bit-identical from run to run (PyG issue
#3175). On CPU, the CSR kernels are already deterministic (each output row is reduced by one
thread in a fixed order), so only the unsorted scatters change.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any, Literal

import torch

from gnnkit.errors import InputError

__all__ = [
    "backend_info",
    "deterministic",
    "get_backend",
    "is_deterministic",
    "set_backend",
    "set_deterministic",
    "torch_scatter_available",
    "use_backend",
]

Backend = Literal["auto", "torch", "torch_scatter"]
_BACKENDS = ("auto", "torch", "torch_scatter")

_state = threading.local()
_global = {"deterministic": False, "backend": "auto"}

try:  # torch-scatter is optional; gnnkit runs on torch alone.
    import torch_scatter as _torch_scatter
except ImportError:  # pragma: no cover - depends on the installation
    _torch_scatter = None

# dtypes for which torch.sparse provides CSR matmul and sampled_addmm, per device type.
_SPARSE_DTYPES = {
    "cpu": (torch.float32, torch.float64),
    "cuda": (torch.float32, torch.float64),
}
_SDDMM_DTYPES = {
    "cpu": (torch.float32, torch.float64),
    "cuda": (torch.float32, torch.float64),
}
# Below this many channels sampled_addmm falls off its fast path on CPU (see sddmm_kernel).
_CPU_SDDMM_MIN_CHANNELS = 8


def torch_scatter_available() -> bool:
    """Whether the optional ``torch_scatter`` package could be imported."""
    return _torch_scatter is not None


def torch_scatter_module() -> Any:
    """The imported ``torch_scatter`` module, or ``None``."""
    return _torch_scatter


def set_deterministic(mode: bool) -> None:
    """Switch deterministic kernels on or off for the whole process.

    Args:
        mode (bool): ``True`` makes every gnnkit sparse operation bit-reproducible from run to
            run (sorted segment reductions instead of atomic scatters).
    """
    if not isinstance(mode, bool):
        raise InputError(f"set_deterministic expects True or False, got {mode!r}")
    _global["deterministic"] = mode


def is_deterministic(override: bool | None = None) -> bool:
    """Whether deterministic kernels are in force.

    Args:
        override (bool, optional): a per-call or per-layer choice; ``None`` defers to the
            context manager :func:`deterministic`, then to :func:`set_deterministic`, then to
            ``torch.are_deterministic_algorithms_enabled()``. (default: ``None``)
    """
    if override is not None:
        return bool(override)
    local = getattr(_state, "deterministic", None)
    if local is not None:
        return local
    return _global["deterministic"] or torch.are_deterministic_algorithms_enabled()


@contextlib.contextmanager
def deterministic(mode: bool = True) -> Iterator[None]:
    """Context manager: deterministic kernels inside the ``with`` block (this thread only).

    Example:
        >>> with gnnkit.ops.deterministic():
        ...     out = layer(x, edge_index)
    """
    if not isinstance(mode, bool):
        raise InputError(f"deterministic expects True or False, got {mode!r}")
    previous = getattr(_state, "deterministic", None)
    _state.deterministic = mode
    try:
        yield
    finally:
        _state.deterministic = previous


def set_backend(name: Backend) -> None:
    """Choose which library provides scatter and segment kernels.

    Args:
        name (str): ``"auto"`` (the measured best per operation: torch-native on CPU),
            ``"torch"`` (torch-native only) or ``"torch_scatter"`` (torch-scatter's kernels for
            every scatter and segment reduction; needs the package).
    """
    if name not in _BACKENDS:
        raise InputError(f"backend must be one of {_BACKENDS}, got {name!r}")
    if name == "torch_scatter" and _torch_scatter is None:
        raise InputError(
            "backend 'torch_scatter' needs the torch-scatter package; install it with "
            "`pip install --no-build-isolation torch-scatter` or use backend 'torch'"
        )
    _global["backend"] = name


def get_backend() -> str:
    """The backend set by :func:`set_backend` (``"auto"`` unless changed)."""
    return _global["backend"]


@contextlib.contextmanager
def use_backend(name: Backend) -> Iterator[None]:
    """Context manager: :func:`set_backend` for the ``with`` block, then restore."""
    previous = _global["backend"]
    set_backend(name)
    try:
        yield
    finally:
        _global["backend"] = previous


def _uses_torch_scatter() -> bool:
    return _global["backend"] == "torch_scatter" and _torch_scatter is not None


def spmm_kernel(device: torch.device, dtype: torch.dtype, deterministic: bool) -> str:
    """``"csr"`` (torch.sparse CSR matmul) or ``"segment"`` (chunked gather + segment sum)."""
    if deterministic and device.type != "cpu":
        return "segment"
    if dtype in _SPARSE_DTYPES.get(device.type, ()):
        return "csr"
    return "segment"


def sddmm_kernel(device: torch.device, dtype: torch.dtype, channels: int | None = None) -> str:
    """``"csr"`` (torch.sparse.sampled_addmm) or ``"gather"`` (chunked gather + dot).

    ``channels`` is the length of each dot product, where known. On CPU, sampled_addmm is
    about 10x slower for fewer than 8 channels than for 8 (measured on Cora's 13,264 edges:
    509 us for 7 channels, 50 us for 8; the gather kernel takes 131 us for 7), so short dot
    products (a GAT output layer with 7 classes) take the gather kernel there.
    """
    if dtype not in _SDDMM_DTYPES.get(device.type, ()):
        return "gather"
    if device.type == "cpu" and channels is not None and channels < _CPU_SDDMM_MIN_CHANNELS:
        return "gather"
    return "csr"


def segment_kernel() -> str:
    """``"torch"`` (torch.segment_reduce) or ``"torch_scatter"`` (segment_csr)."""
    return "torch_scatter" if _uses_torch_scatter() else "torch"


def scatter_kernel(reduce: str, deterministic: bool) -> str:
    """The kernel for a reduction over unsorted indices."""
    if deterministic:
        return "sort+segment"
    if _uses_torch_scatter():
        return "torch_scatter"
    return "index_add" if reduce == "sum" else "scatter_reduce"


def backend_info(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> dict:
    """What runs each sparse operation on ``device`` for ``dtype``, as a JSON-ready dict.

    Keys: ``backend`` (as set by :func:`set_backend`), ``deterministic``,
    ``torch_scatter`` (its version, or ``None`` when not installed), ``device``, ``dtype``, and
    ``kernels``, a mapping from operation to the kernel in force (``spmm``, ``sddmm``,
    ``segment_sum``, ``segment_max``, ``scatter_sum``, ``scatter_max``).
    """
    device = torch.device(device)
    det = is_deterministic()
    spmm = spmm_kernel(device, dtype, det)
    sddmm = sddmm_kernel(device, dtype)
    seg = segment_kernel()
    seg_name = "torch_scatter.segment_csr" if seg == "torch_scatter" else "torch.segment_reduce"
    names = {
        "csr": "torch.sparse CSR addmm (MKL on CPU, cuSPARSE on CUDA)",
        "segment": f"gather + {seg_name} (row-chunked)",
        "index_add": "Tensor.index_add_",
        "scatter_reduce": "Tensor.scatter_reduce_",
        "torch_scatter": "torch_scatter.scatter",
        "sort+segment": f"stable sort + {seg_name}",
    }
    return {
        "backend": get_backend(),
        "deterministic": det,
        "torch_scatter": getattr(_torch_scatter, "__version__", None),
        "device": str(device),
        "dtype": str(dtype).replace("torch.", ""),
        "kernels": {
            "spmm": names[spmm],
            "sddmm": (
                "torch.sparse.sampled_addmm (CSR)"
                if sddmm == "csr"
                else "gather + dot (edge-chunked)"
            ),
            "segment_sum": seg_name,
            "segment_max": seg_name,
            "scatter_sum": names[scatter_kernel("sum", det)],
            "scatter_max": names[scatter_kernel("max", det)],
        },
    }
