"""Kernel selection: which implementation runs each sparse operation, per device and dtype.

This module is the one place that decides. Every sparse operation in :mod:`gnnkit.ops` asks it
for a kernel, so switching a backend or turning on deterministic mode changes every layer at
once. :func:`backend_info` reports the choices in force.

The defaults were chosen by measurement on CPU (``python benchmarks/layers.py``, kernel table
in ``benchmarks/results/layers.md``: 169,343 nodes, 1,166,243 edges, 64 channels):

- Sparse-dense matmul (SpMM) runs as a CSR matmul (``torch.addmm`` on a ``torch.sparse`` CSR
  tensor with int32 indices, MKL on CPU, cuSPARSE on CUDA; all attention heads in one call on
  a block-diagonal matrix): about 20x faster than gathering messages and adding them with
  ``index_add_``, and it never materialises the ``|E| x C`` message tensor. On CPU, rows of at
  least 32 channels in a product of at least ``2**20`` multiply-adds take gnnkit's numba kernel
  instead (:mod:`gnnkit.ops._spmm_cpu`: one thread per output row, prefetching the sender rows
  about 8 KiB ahead, huge pages under a large fresh output), where numba is available
  (``spmm_kernel``). Measured in one process, candidates interleaved, one thread, CPU time
  (``python benchmarks/roofline.py``, ``benchmarks/results/roofline.md``; random graphs): at
  ogbn-arxiv's size (1,166,243 edges) the operation is 1.8-2.2x faster than with MKL's kernel
  for 32 channels, 3.8x for 64, 4.7-4.8x for 128 and 2.9x for 256 (bare kernels: 2.1-2.3x,
  3.1-3.3x, 3.9-4.3x, 2.3x; the numba kernel reaches 55-85 % of the streaming bound from 64
  channels, MKL's 20-27 %). The product-size threshold followed the first numba kernel, slower
  than MKL's at Cora's size (13,264 edges) up to 64 channels; since rows that stay in cache take
  a kernel adding four entries a pass, the operation as dispatched is 1.3x slower than MKL's at
  32 channels there, and faster from 64 channels at every size measured (0.74-0.91 of MKL's
  time from 500 to 4,267 nodes), so the threshold now keeps MKL for some products numba would
  win. Rows of 8 to 64 channels take a third kernel, written out per channel count so that
  LLVM vectorises rows that narrow and keeps each row's sums in registers
  (:mod:`gnnkit.ops._spmm_narrow`; ``python benchmarks/narrow_spmm.py``,
  ``benchmarks/results/narrow_spmm.md``). Measured against MKL's kernel in one process, 1
  thread, CPU time, the candidates interleaved: on Cora's 13,264-entry graph 15 against
  30 us at 16 channels, 18 against 28 at 32, 32 against 66 at 64; Cora's features times a
  weight 29 against 58 us at 16 channels, 66 against 206 at 64; at ogbl-ddi's size (2 million
  entries) 1.2 against 1.8 ms at 16 channels and 3.5 against 9.3 at 64 (7.0 for the row
  kernel); at ogbn-arxiv's size 2.0 against 2.8 ms at 8 channels, 3.1 against 4.0 at 16, 5.2
  against 8.1 at 32 and 9.3 against 22.2 at 48 (11.2 for the row kernel). Since that kernel
  asks for the sender rows ahead past the cache it also beats the row kernel there from 64
  channels up, with the same bits: on a random graph of ogbn-arxiv's size, 1 thread, 15.5
  against 21.6 ms at 64 channels, 28-32 against 48-50 ms at 96-112, 38.5-40.6 against
  60.8-63.3 ms at 128, and 82-87 against 89-101 ms at 256. Its sums in registers are what
  the row kernel lacks: that kernel loads and stores the output row once per entry. So rows
  of 65 to 128 channels whose sender rows take 12 MiB or more take it as well; narrower
  products of those widths keep the row kernel (the written-out kernel is faster there too,
  0.53-0.74x its time from 2 to 16 MiB of features at 80 and 128 channels, but compiling a
  kernel this wide takes 1.2-2 s on a machine's first use, which a small product does not
  repay), and wider rows do too (3.7-7.6 s to compile at 160-256 channels, for a 7-26 %
  gain). Compiled kernels are kept on disk (:mod:`gnnkit.ops._kernel_cache`), so later
  processes load them in about 0.1 s. At 7 channels
  MKL's kernel is as fast (16 against 17 us on Cora), so it keeps narrower rows, except where a
  bias is added: the narrow kernel adds it as it stores each row, saving the 6-8 us of an add
  after MKL's product. The prefetching numba kernel and the narrow one add each
  row's entries in CSR order, without fused multiply-adds, as MKL's does (the same bits in
  every measurement); the cache-resident four-entry kernel adds them four at a time
  (last-bit differences). The rule is fixed in code rather
  than timed per shape at run time, so that every process picks the same kernel, no first call
  pays for a timing and no noisy measurement on a shared machine decides it.
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
#3175). On CPU, the CSR kernels (MKL's and the numba SpMM) are already deterministic (each
output row is reduced by one thread in a fixed order), so only the unsorted scatters change.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any, Literal

import torch

from gnnkit.errors import InputError
from gnnkit.ops._jit import PREFETCH_MIN_BYTES, jit_available
from gnnkit.utils.checks import check_device
from gnnkit.utils.env import switched_off

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
# The numba SpMM kernel beats MKL's on CPU for rows this wide, in products this large (|E| H C).
_CPU_SPMM_JIT_MIN_CHANNELS = 32
_CPU_SPMM_JIT_MIN_WORK = 2**20
# Rows this wide take the numba kernel written out per channel count; see spmm_kernel.
_CPU_SPMM_NARROW_CHANNELS = (8, 64)
# Wider rows, up to this many channels, take it too when their sender rows are past the cache,
# in products large enough to repay its compilation (seconds on first use; see spmm_kernel).
_CPU_SPMM_NARROW_WIDE = 128


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
        if not isinstance(override, bool):
            raise InputError(f"deterministic must be True, False or None, got {override!r}")
        return override
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


def spmm_kernel(
    device: torch.device,
    dtype: torch.dtype,
    deterministic: bool,
    channels: int | None = None,
    entries: int | None = None,
    senders: int | None = None,
    biased: bool = False,
) -> str:
    """``"csr"`` (torch.sparse CSR matmul), ``"narrow"`` or ``"numba"`` (gnnkit's compiled
    row kernels, CPU) or ``"segment"`` (chunked gather + segment sum).

    ``channels`` is the width C of the dense rows, ``entries`` the number of sparse entries
    (|E| H for H heads) and ``senders`` the number of dense rows gathered (|V_in| H), where
    known; ``biased``: a bias is added to the product. On CPU, with numba available, rows of
    8 to 64 channels (1 to 64 with a bias, which that kernel adds as it stores each row) take
    :mod:`gnnkit.ops._spmm_narrow`'s kernel, and so do rows of 65 to 128 channels whose
    sender rows are past the cache (12 MiB or more: a product large enough to repay the 1-2 s
    of compiling a kernel that wide on first use), unless ``GNNKIT_NARROW_SPMM=0``;
    otherwise rows of at least 32 channels in a product of at least ``2**20`` multiply-adds
    take :mod:`gnnkit.ops._spmm_cpu`'s, and narrower rows, smaller products and products of
    unknown size MKL's CSR kernel. All add each row's entries in CSR order and give the same
    result. The measurements behind the rule are in the module docstring.
    """
    if deterministic and device.type != "cpu":
        return "segment"
    if dtype not in _SPARSE_DTYPES.get(device.type, ()):
        return "segment"
    if device.type != "cpu" or channels is None or not jit_available():
        return "csr"
    low, high = (1 if biased else _CPU_SPMM_NARROW_CHANNELS[0]), _CPU_SPMM_NARROW_CHANNELS[1]
    past_cache = senders is not None and senders * channels * dtype.itemsize >= PREFETCH_MIN_BYTES
    narrow = low <= channels <= high or (high < channels <= _CPU_SPMM_NARROW_WIDE and past_cache)
    if narrow and not switched_off("GNNKIT_NARROW_SPMM"):
        return "narrow"
    if (
        entries is not None
        and channels >= _CPU_SPMM_JIT_MIN_CHANNELS
        and entries * channels >= _CPU_SPMM_JIT_MIN_WORK
    ):
        return "numba"
    return "csr"


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


def _gat_kernel_name(device: torch.device, dtype: torch.dtype) -> str:
    from gnnkit.ops.attention import fused_gat_backend  # imports this module

    return {
        "numba": "fused numba kernel (gnnkit.ops._gat_cpu)",
        "triton": "fused Triton kernel (gnnkit.ops._gat_triton)",
        "torch": "gathers + segment softmax (GATConv: its unfused lean path)",
    }[fused_gat_backend(device, dtype)]


def _spmm_description(device: torch.device, dtype: torch.dtype, det: bool, default: str) -> str:
    """The SpMM kernel of unknown or small products, and the rules that pick numba's where
    they apply here (each asked of :func:`spmm_kernel` with a product it would take)."""
    rules = []
    low, high = _CPU_SPMM_NARROW_CHANNELS
    if spmm_kernel(device, dtype, det, low) == "narrow":
        rules.append(
            f"gnnkit's numba kernels written per channel count (gnnkit.ops._spmm_narrow) for "
            f"rows of {low} to {high} channels, and of up to {_CPU_SPMM_NARROW_WIDE} channels "
            f"whose sender rows take {PREFETCH_MIN_BYTES >> 20} MiB or more"
        )
    wide = (high + 1, _CPU_SPMM_JIT_MIN_WORK)  # a product the row kernel's rule takes
    if spmm_kernel(device, dtype, det, *wide) == "numba":
        rules.append(
            f"gnnkit's numba row kernel (gnnkit.ops._spmm_cpu) for other rows of >= "
            f"{_CPU_SPMM_JIT_MIN_CHANNELS} channels in products of >= "
            f"2**{_CPU_SPMM_JIT_MIN_WORK.bit_length() - 1} multiply-adds"
        )
    return "; ".join([default, *rules])


def device_of(name: str, device: Any) -> torch.device:
    """``device`` as a :class:`torch.device`, present or not; a name torch does not know (or
    not a name) is refused with :func:`gnnkit.utils.checks.check_device`'s one-line message
    rather than torch's list of every device type."""
    return check_device(name, device, require_available=False)


def backend_info(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> dict:
    """What runs each sparse operation on ``device`` for ``dtype``, as a JSON-ready dict.

    Keys: ``backend`` (as set by :func:`set_backend`), ``deterministic``,
    ``torch_scatter`` (its version, or ``None`` when not installed), ``device``, ``dtype``, and
    ``kernels``, a mapping from operation to the kernel in force (``spmm``, ``sddmm``,
    ``segment_sum``, ``segment_max``, ``scatter_sum``, ``scatter_max``, and ``gat``:
    :func:`gnnkit.ops.fused_gat`, the attention of :class:`gnnkit.nn.GATConv`).

    NOTE: ``device`` need not be present: ``"cuda"`` reports CUDA's kernels on a machine
    without a GPU. A name that is no device at all is refused.
    """
    device = device_of("device", device)
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
            "spmm": _spmm_description(device, dtype, det, names[spmm]),
            "sddmm": (
                "torch.sparse.sampled_addmm (CSR)"
                if sddmm == "csr"
                else "gather + dot (edge-chunked)"
            ),
            "segment_sum": seg_name,
            "segment_max": seg_name,
            "scatter_sum": names[scatter_kernel("sum", det)],
            "scatter_max": names[scatter_kernel("max", det)],
            "gat": _gat_kernel_name(device, dtype),
        },
    }
