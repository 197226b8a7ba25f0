"""Fresh memory for large kernel outputs: transparent huge pages (Linux).

A new output of ogbn-arxiv's size (87 MB at 128 channels, 173 MB for a GAT layer's 8 x 32) is
fresh memory: glibc serves allocations this large with ``mmap``, so every call's output is
new pages, and its first touch costs one page fault per 4 KiB page. Measured on one thread:
filling a fresh 173 MB tensor took 62 ms, 9 ms with 2 MiB pages, about as long as the SpMM
itself at 128 channels without them. The kernels ask for huge pages under their large outputs
(:func:`advise_huge_pages`, :func:`empty_advised`); ``GNNKIT_HUGE_PAGES=0`` turns that off.

Two ways around the page faults, measured on the GAT layer at ogbn-arxiv's size (1 thread,
forward + backward, about 600 MB of fresh outputs a step), in a virtual machine whose host
takes back freed memory (virtio free page reporting):

- huge pages: 830 to 610-650 ms per step, but about one step in three then waited 0.7-0.9 s in
  the kernel for memory the host had taken back (mean 0.8-1.0 s, against 0.85-0.9 s without);
  on a machine without free page reporting the wait does not arise;
- an allocator that keeps freed memory for reuse (glibc:
  ``GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184``, set
  before Python starts; or jemalloc / tcmalloc through ``LD_PRELOAD``): no page faults after the
  first step, 530-560 ms per step, steady. This is the setting for long training on large
  graphs (its cost: memory freed by Python stays with the process).
"""

from __future__ import annotations

import ctypes
import functools
import sys
from typing import Any

from torch import Tensor

from gnnkit.utils.env import switched_off

__all__ = ["MIN_ADVISED_BYTES", "advise_huge_pages", "empty_advised"]

_HUGE_PAGE = 2 << 20  # bytes in an x86-64 / arm64 transparent huge page
_MADV_HUGEPAGE = 14  # <sys/mman.h> on Linux
MIN_ADVISED_BYTES = 8 << 20  # smaller tensors are left alone


@functools.cache
def _madvise() -> Any:
    """libc's ``madvise``, or ``None`` off Linux or where it cannot be loaded."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    function.restype = ctypes.c_int
    return function


def advise_huge_pages(tensor: Tensor) -> None:
    """Ask Linux for transparent huge pages under a large, freshly allocated output.

    ``MADV_HUGEPAGE`` on the 2 MiB-aligned interior of the buffer is only a hint (the kernel's
    ``transparent_hugepage`` setting ``madvise`` or ``always`` honours it, ``never`` ignores
    it); contents and size are unchanged, and failures are ignored. Tensors under 8 MiB are
    left alone, and every tensor when ``GNNKIT_HUGE_PAGES=0`` (read on every call). torch's
    own ``THP_MEM_ALLOC_ENABLE=1`` does this for every allocation, but only when set before
    torch starts.
    """
    nbytes = tensor.numel() * tensor.element_size()
    if nbytes < MIN_ADVISED_BYTES or switched_off("GNNKIT_HUGE_PAGES"):
        return
    madvise = _madvise()
    if madvise is None:
        return
    start = tensor.data_ptr()
    first = -(-start // _HUGE_PAGE) * _HUGE_PAGE
    last = (start + nbytes) // _HUGE_PAGE * _HUGE_PAGE
    if last > first:
        madvise(first, last - first, _MADV_HUGEPAGE)


def empty_advised(like: Tensor, *shape: int) -> Tensor:
    """``like.new_empty(shape)``, with huge pages asked for when it is large."""
    out = like.new_empty(shape)
    advise_huge_pages(out)
    return out
