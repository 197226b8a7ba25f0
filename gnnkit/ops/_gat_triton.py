"""Triton kernels of the fused GAT layer on CUDA (see :func:`gnnkit.ops.fused_gat`).

The same math as the numba CPU kernels (:mod:`gnnkit.ops._gat_cpu`), laid out for a GPU
(FusedMM / dgNN: Rahman et al., arXiv 2011.06391; Zhang et al., arXiv 2110.09524):

- forward: one program per (receiver row, block of heads, block of channels). It streams the
  row's edges in chunks of ``BLOCK_E`` with an online softmax (a running maximum and sum that
  rescale the accumulator, as in FlashAttention: Dao et al., arXiv 2205.14135), so the
  features of each sender are read once; the program of the first channel block then
  rewrites the row's ``alpha`` from the final maximum and sum (scores only, no features).
- backward pass 1: one program per (receiver row, block of heads): the dot products
  ``<grad_out_i, xw_j>`` over all channels, then the softmax and leaky-ReLU backward, leaving
  the score gradient of every edge in an ``(E, H)`` buffer.
- backward pass 2: one program per (sender row of the transposed structure, head block,
  channel block): the sender's feature and score gradients, summed in the transposed order.

No atomics: every sum runs in a fixed order (chunks in sequence, a fixed reduction tree
inside a chunk), so results are bit-identical run to run on one GPU and kernel build. They
equal the numba and torch paths to floating-point rounding, not bit for bit (different
summation order). Half-precision inputs (float16, bfloat16) are accumulated in float32,
float64 in float64; outputs take the input dtype.

Triton is optional: this module imports without it, :func:`available` says whether the
kernels can run, and calling them without Triton raises a clear error. CUDA tensors run the
compiled kernels. CPU tensors run only in Triton's interpreter (numpy, one program at a time;
slow, meant for tests), which ``TRITON_INTERPRET=1`` selects for the whole process when set
before Triton is first imported (Triton wraps its own library functions at import). The tests
(``tests/test_gat_triton.py``, skipped without Triton) run it in a child process::

    pip install triton
    pytest tests/test_gat_triton.py

NOTE: the kernel bodies below are plain functions, wrapped by ``triton.jit`` on first use so
that the module imports without Triton. They call no helper functions (a compiled kernel may
only call ``triton.jit`` functions), hence the score computation written out where needed.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from gnnkit.errors import InputError

try:
    import triton
    import triton.language as tl
except Exception:  # missing, or a build that fails to import: available() says False
    triton = None
    tl = None

__all__ = ["available", "backward", "forward"]


def available() -> bool:
    """Whether Triton imports here (the kernels need it; CUDA for the compiled mode)."""
    return triton is not None


# --------------------------------------------------------------------------------- kernels


def _forward_kernel(
    rowptr, col, a_src, a_dst, edge_score, xw, keep, params, out, alpha, H, C,
    HAS_DST: tl.constexpr, HAS_SCORE: tl.constexpr, HAS_KEEP: tl.constexpr, ACC: tl.constexpr,
    BLOCK_E: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    i = tl.program_id(0).to(tl.int64)
    pid_c = tl.program_id(2)
    hs = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)  # (BH,)
    cs = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)  # (BC,)
    h_ok, c_ok = hs < H, cs < C
    slope, scale = tl.load(params), tl.load(params + 1)
    start, end = tl.load(rowptr + i).to(tl.int64), tl.load(rowptr + i + 1).to(tl.int64)
    s_dst = tl.zeros([BLOCK_H], ACC)
    if HAS_DST:
        s_dst = tl.load(a_dst + i * H + hs, mask=h_ok, other=0.0).to(ACC)
    peak = tl.full([BLOCK_H], float("-inf"), ACC)  # running maximum of the scores
    total = tl.zeros([BLOCK_H], ACC)  # running sum of exp(score - peak)
    acc = tl.zeros([BLOCK_H, BLOCK_C], ACC)
    for e0 in range(start, end, BLOCK_E):
        es = e0 + tl.arange(0, BLOCK_E)
        e_ok = es < end
        eh_ok = e_ok[:, None] & h_ok[None, :]  # (BE, BH)
        eh = es[:, None] * H + hs[None, :]  # (BE, BH) offsets into (E, H)
        j = tl.load(col + es, mask=e_ok, other=0).to(tl.int64)
        s = tl.load(a_src + j[:, None] * H + hs[None, :], mask=eh_ok, other=0.0).to(ACC)
        s = s + s_dst[None, :]
        if HAS_SCORE:
            s += tl.load(edge_score + eh, mask=eh_ok, other=0.0).to(ACC)
        z = tl.where(s > 0, s, s * slope)
        z = tl.where(eh_ok, z, float("-inf"))
        new_peak = tl.maximum(peak, tl.max(z, axis=0))
        shift = tl.where(new_peak == float("-inf"), 0.0, new_peak)  # padded heads stay finite
        rescale = tl.exp(peak - shift)
        p = tl.exp(z - shift[None, :])  # (BE, BH), 0 on padding
        total = total * rescale + tl.sum(p, axis=0)
        if HAS_KEEP:
            kept = tl.load(keep + eh, mask=eh_ok, other=0)
            p = tl.where(kept != 0, p * scale, 0.0)
        x_off = (j[:, None, None] * H + hs[None, :, None]) * C + cs[None, None, :]
        x_ok = eh_ok[:, :, None] & c_ok[None, None, :]
        x = tl.load(xw + x_off, mask=x_ok, other=0.0).to(ACC)  # (BE, BH, BC)
        acc = acc * rescale[:, None] + tl.sum(p[:, :, None] * x, axis=0)
        peak = new_peak
    inv = 1.0 / tl.where(total > 0, total, 1.0)  # rows without edges: acc = 0, out = 0
    shift = tl.where(peak == float("-inf"), 0.0, peak)
    o_off = (i * H + hs[:, None]) * C + cs[None, :]
    o_ok = h_ok[:, None] & c_ok[None, :]
    tl.store(out + o_off, (acc * inv[:, None]).to(out.dtype.element_ty), mask=o_ok)
    if pid_c == 0:  # alpha from the final maximum and sum
        for e0 in range(start, end, BLOCK_E):
            es = e0 + tl.arange(0, BLOCK_E)
            e_ok = es < end
            eh_ok = e_ok[:, None] & h_ok[None, :]
            eh = es[:, None] * H + hs[None, :]
            j = tl.load(col + es, mask=e_ok, other=0).to(tl.int64)
            s = tl.load(a_src + j[:, None] * H + hs[None, :], mask=eh_ok, other=0.0).to(ACC)
            s = s + s_dst[None, :]
            if HAS_SCORE:
                s += tl.load(edge_score + eh, mask=eh_ok, other=0.0).to(ACC)
            z = tl.where(s > 0, s, s * slope)
            a = tl.exp(z - shift[None, :]) * inv[None, :]
            tl.store(alpha + eh, a.to(alpha.dtype.element_ty), mask=eh_ok)


def _backward_dst_kernel(
    rowptr, col, a_src, a_dst, edge_score, xw, alpha, keep, params, grad_out, g_s, grad_dst,
    H, C,
    HAS_DST: tl.constexpr, HAS_SCORE: tl.constexpr, HAS_KEEP: tl.constexpr, ACC: tl.constexpr,
    BLOCK_E: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    i = tl.program_id(0).to(tl.int64)
    hs = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    h_ok = hs < H
    slope, scale = tl.load(params), tl.load(params + 1)
    start, end = tl.load(rowptr + i).to(tl.int64), tl.load(rowptr + i + 1).to(tl.int64)
    # Loop 1: g_alpha[e] = <grad_out_i, xw_j> * mask, kept in g_s; weighted = sum alpha g_alpha.
    weighted = tl.zeros([BLOCK_H], ACC)
    for e0 in range(start, end, BLOCK_E):
        es = e0 + tl.arange(0, BLOCK_E)
        e_ok = es < end
        eh_ok = e_ok[:, None] & h_ok[None, :]
        eh = es[:, None] * H + hs[None, :]
        j = tl.load(col + es, mask=e_ok, other=0).to(tl.int64)
        g = tl.zeros([BLOCK_E, BLOCK_H], ACC)
        for c0 in range(0, C, BLOCK_C):
            cs = c0 + tl.arange(0, BLOCK_C)
            c_ok = cs < C
            go_ok = h_ok[:, None] & c_ok[None, :]
            go = tl.load(
                grad_out + (i * H + hs[:, None]) * C + cs[None, :], mask=go_ok, other=0.0
            ).to(ACC)  # (BH, BC)
            x_off = (j[:, None, None] * H + hs[None, :, None]) * C + cs[None, None, :]
            x_ok = eh_ok[:, :, None] & c_ok[None, None, :]
            x = tl.load(xw + x_off, mask=x_ok, other=0.0).to(ACC)
            g += tl.sum(go[None, :, :] * x, axis=2)
        if HAS_KEEP:
            kept = tl.load(keep + eh, mask=eh_ok, other=0)
            g = tl.where(kept != 0, g * scale, 0.0)
        a = tl.load(alpha + eh, mask=eh_ok, other=0.0).to(ACC)
        weighted += tl.sum(a * g, axis=0)
        tl.store(g_s + eh, g, mask=eh_ok)
    tl.debug_barrier()  # loop 2 reads what other threads of this program stored in loop 1
    # Loop 2: softmax backward, then the leaky ReLU's.
    s_dst = tl.zeros([BLOCK_H], ACC)
    if HAS_DST:
        s_dst = tl.load(a_dst + i * H + hs, mask=h_ok, other=0.0).to(ACC)
    total = tl.zeros([BLOCK_H], ACC)
    for e0 in range(start, end, BLOCK_E):
        es = e0 + tl.arange(0, BLOCK_E)
        e_ok = es < end
        eh_ok = e_ok[:, None] & h_ok[None, :]
        eh = es[:, None] * H + hs[None, :]
        j = tl.load(col + es, mask=e_ok, other=0).to(tl.int64)
        s = tl.load(a_src + j[:, None] * H + hs[None, :], mask=eh_ok, other=0.0).to(ACC)
        s = s + s_dst[None, :]
        if HAS_SCORE:
            s += tl.load(edge_score + eh, mask=eh_ok, other=0.0).to(ACC)
        a = tl.load(alpha + eh, mask=eh_ok, other=0.0).to(ACC)
        g = a * (tl.load(g_s + eh, mask=eh_ok, other=0.0) - weighted[None, :])
        g = tl.where(s > 0, g, g * slope)
        tl.store(g_s + eh, g, mask=eh_ok)
        total += tl.sum(tl.where(eh_ok, g, 0.0), axis=0)
    if HAS_DST:
        tl.store(grad_dst + i * H + hs, total.to(grad_dst.dtype.element_ty), mask=h_ok)


def _backward_src_kernel(
    colptr, row_t, perm_t, alpha, keep, params, grad_out, g_s, grad_xw, grad_src, H, C,
    HAS_KEEP: tl.constexpr, ACC: tl.constexpr,
    BLOCK_E: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_C: tl.constexpr,
):  # fmt: skip
    j = tl.program_id(0).to(tl.int64)
    pid_c = tl.program_id(2)
    hs = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    cs = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    h_ok, c_ok = hs < H, cs < C
    scale = tl.load(params + 1)
    start, end = tl.load(colptr + j).to(tl.int64), tl.load(colptr + j + 1).to(tl.int64)
    acc = tl.zeros([BLOCK_H, BLOCK_C], ACC)
    total = tl.zeros([BLOCK_H], ACC)
    for k0 in range(start, end, BLOCK_E):
        ks = k0 + tl.arange(0, BLOCK_E)
        k_ok = ks < end
        kh_ok = k_ok[:, None] & h_ok[None, :]
        e = tl.load(perm_t + ks, mask=k_ok, other=0).to(tl.int64)
        i = tl.load(row_t + ks, mask=k_ok, other=0).to(tl.int64)
        eh = e[:, None] * H + hs[None, :]
        d = tl.load(alpha + eh, mask=kh_ok, other=0.0).to(ACC)
        if HAS_KEEP:
            kept = tl.load(keep + eh, mask=kh_ok, other=0)
            d = tl.where(kept != 0, d * scale, 0.0)
        go_off = (i[:, None, None] * H + hs[None, :, None]) * C + cs[None, None, :]
        go_ok = kh_ok[:, :, None] & c_ok[None, None, :]
        go = tl.load(grad_out + go_off, mask=go_ok, other=0.0).to(ACC)
        acc += tl.sum(d[:, :, None] * go, axis=0)
        total += tl.sum(tl.load(g_s + eh, mask=kh_ok, other=0.0), axis=0)
    o_off = (j * H + hs[:, None]) * C + cs[None, :]
    tl.store(grad_xw + o_off, acc.to(grad_xw.dtype.element_ty), mask=h_ok[:, None] & c_ok[None, :])
    if pid_c == 0:
        tl.store(grad_src + j * H + hs, total.to(grad_src.dtype.element_ty), mask=h_ok)


# ------------------------------------------------------------------------------------ host


@functools.cache
def _kernel(fn: Callable[..., None]) -> Any:
    """``fn`` wrapped by ``triton.jit`` (compiled, or interpreted under ``TRITON_INTERPRET=1``)."""
    return triton.jit(fn)


def _interpreting() -> bool:
    """Whether Triton runs its CPU interpreter (``TRITON_INTERPRET=1`` when it was imported)."""
    knobs = getattr(triton, "knobs", None)  # Triton >= 3.4; older ones read the variable
    if knobs is not None:
        return bool(knobs.runtime.interpret)
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def _launch(fn: Callable[..., None], grid: tuple[int, ...], device: torch.device) -> Any:
    if device.type != "cuda" and not _interpreting():
        raise InputError(
            f"tensors on {device}: the Triton GAT kernels need CUDA tensors, or "
            "TRITON_INTERPRET=1 set before Triton is first imported (its CPU interpreter)"
        )
    return _kernel(fn)[grid]


def _next_pow2(n: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(n, 1))))


def _blocks(heads: int, channels: int, edges: int, rows: int) -> tuple[int, int, int, int]:
    """``(BLOCK_E, BLOCK_H, BLOCK_C, num_warps)``: a (BE, BH, BC) tile of at most 4096 values.

    Channels up to 128 in one block, as many heads as fit in 256 (head, channel) pairs, and
    an edge chunk near the mean degree (padding edges cost no memory traffic, only lanes).
    """
    block_c = min(_next_pow2(channels), 128)
    block_h = min(_next_pow2(heads), max(1, 256 // block_c))
    degree = _next_pow2(math.ceil(edges / max(rows, 1)))
    block_e = max(4, min(degree, 64, 4096 // (block_h * block_c)))
    num_warps = max(1, min(8, block_e * block_h * block_c // 512))
    return block_e, block_h, block_c, num_warps


def _require(xw: Tensor, tensors: dict[str, Tensor | None]) -> tuple[torch.dtype, Any]:
    """The accumulation dtype (torch, triton) for ``xw``; raises without Triton or on a bad
    device or dtype."""
    if triton is None:
        raise RuntimeError(
            "the fused GAT's CUDA kernels need Triton: `pip install triton` (PyTorch's CUDA "
            "wheels ship it), or set GNNKIT_FUSED_GAT=0 to use the torch path"
        )
    if xw.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise InputError(f"xw: expected a floating dtype, got {xw.dtype}")
    for name, t in tensors.items():
        if t is not None and t.device != xw.device:
            raise InputError(f"{name}: on {t.device}, expected {xw.device} like xw")
    if xw.dtype == torch.float64:
        return torch.float64, tl.float64
    return torch.float32, tl.float32


def _keep_bytes(keep: Tensor | None, like: Tensor) -> tuple[Tensor, bool]:
    if keep is None:
        return like, False  # any pointer; never read
    return keep.contiguous().view(torch.uint8), True


@functools.cache  # never evicted: a captured CUDA graph may read the tensor for its lifetime
def _params(negative_slope: float, scale: float, dtype: torch.dtype, device: Any) -> Tensor:
    """(slope, scale) as a tensor of the accumulation dtype (a float argument is float32),
    made once: no host-to-device copy per call (nor inside a CUDA graph capture)."""
    return torch.tensor([negative_slope, scale], dtype=dtype, device=device)


def forward(
    rowptr: Tensor,
    col: Tensor,
    a_src: Tensor,
    a_dst: Tensor | None,
    edge_score: Tensor | None,
    xw: Tensor,
    negative_slope: float,
    keep: Tensor | None,
    scale: float,
) -> tuple[Tensor, Tensor]:
    """``(out (N_d, H, C), alpha (E, H))``: the fused GAT forward (alpha before dropout)."""
    inputs = dict(rowptr=rowptr, col=col, a_src=a_src, a_dst=a_dst, edge_score=edge_score)
    acc_torch, acc = _require(xw, {**inputs, "keep": keep})
    num_rows, num_edges = rowptr.numel() - 1, col.numel()
    _, heads, channels = xw.shape
    xw = xw.detach().contiguous()
    if num_rows == 0 or num_edges == 0 or heads * channels == 0:
        return xw.new_zeros(num_rows, heads, channels), xw.new_zeros(num_edges, heads)
    out = xw.new_empty(num_rows, heads, channels)  # the kernel writes every entry
    alpha = xw.new_empty(num_edges, heads)
    a_src = a_src.detach().contiguous()
    mask, has_keep = _keep_bytes(keep, a_src)
    block_e, block_h, block_c, warps = _blocks(heads, channels, num_edges, num_rows)
    grid = (num_rows, triton.cdiv(heads, block_h), triton.cdiv(channels, block_c))
    _launch(_forward_kernel, grid, xw.device)(
        rowptr.contiguous(), col.contiguous(), a_src,
        a_src if a_dst is None else a_dst.detach().contiguous(),
        a_src if edge_score is None else edge_score.detach().contiguous(),
        xw, mask, _params(negative_slope, scale, acc_torch, xw.device), out, alpha,
        heads, channels,
        HAS_DST=a_dst is not None, HAS_SCORE=edge_score is not None, HAS_KEEP=has_keep,
        ACC=acc, BLOCK_E=block_e, BLOCK_H=block_h, BLOCK_C=block_c,
        num_warps=warps, enable_fp_fusion=True,
    )  # fmt: skip
    return out, alpha


def backward(
    rowptr: Tensor,
    col: Tensor,
    colptr: Tensor,
    row_t: Tensor,
    perm_t: Tensor,
    a_src: Tensor,
    a_dst: Tensor | None,
    edge_score: Tensor | None,
    xw: Tensor,
    alpha: Tensor,
    negative_slope: float,
    keep: Tensor | None,
    scale: float,
    grad_out: Tensor,
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """``(grad_xw, grad_a_src, grad_a_dst or None, grad_edge_score or None)``."""
    graph = dict(rowptr=rowptr, col=col, colptr=colptr, row_t=row_t, perm_t=perm_t)
    more = dict(a_src=a_src, a_dst=a_dst, edge_score=edge_score, alpha=alpha, keep=keep)
    acc_torch, acc = _require(xw, {**graph, **more, "grad_out": grad_out})
    num_rows, num_edges = rowptr.numel() - 1, col.numel()
    num_src, heads, channels = xw.shape
    xw = xw.detach().contiguous()
    if num_edges == 0 or heads * channels == 0:
        zero = xw.new_zeros
        return (
            torch.zeros_like(xw),
            zero(num_src, heads),
            zero(num_rows, heads) if a_dst is not None else None,
            zero(num_edges, heads) if edge_score is not None else None,
        )
    # The kernels write every entry of these.
    grad_xw = torch.empty_like(xw)
    grad_src = xw.new_empty(num_src, heads)
    grad_dst = xw.new_empty(num_rows, heads)
    g_s = torch.empty(num_edges, heads, dtype=acc_torch, device=xw.device)  # score gradient
    a_src = a_src.detach().contiguous()
    alpha = alpha.detach().contiguous()
    grad_out = grad_out.detach().contiguous()
    mask, has_keep = _keep_bytes(keep, a_src)
    params = _params(negative_slope, scale, acc_torch, xw.device)
    block_e, block_h, block_c, warps = _blocks(heads, channels, num_edges, num_rows)
    _launch(_backward_dst_kernel, (num_rows, triton.cdiv(heads, block_h)), xw.device)(
        rowptr.contiguous(), col.contiguous(), a_src,
        a_src if a_dst is None else a_dst.detach().contiguous(),
        a_src if edge_score is None else edge_score.detach().contiguous(),
        xw, alpha, mask, params, grad_out, g_s, grad_dst, heads, channels,
        HAS_DST=a_dst is not None, HAS_SCORE=edge_score is not None, HAS_KEEP=has_keep,
        ACC=acc, BLOCK_E=block_e, BLOCK_H=block_h, BLOCK_C=block_c,
        num_warps=warps, enable_fp_fusion=True,
    )  # fmt: skip
    grid = (num_src, triton.cdiv(heads, block_h), triton.cdiv(channels, block_c))
    block_e = max(4, min(_next_pow2(math.ceil(num_edges / max(num_src, 1))), block_e))
    _launch(_backward_src_kernel, grid, xw.device)(
        colptr.contiguous(), row_t.contiguous(), perm_t.contiguous(), alpha, mask, params,
        grad_out, g_s, grad_xw, grad_src, heads, channels,
        HAS_KEEP=has_keep, ACC=acc, BLOCK_E=block_e, BLOCK_H=block_h, BLOCK_C=block_c,
        num_warps=warps, enable_fp_fusion=True,
    )  # fmt: skip
    return (
        grad_xw,
        grad_src,
        grad_dst if a_dst is not None else None,
        g_s.to(xw.dtype) if edge_score is not None else None,
    )
