"""Dropout masks that depend on global ids, not on the process that draws them.

A partitioned run and a single-process run drop the same entries when every entry's fate is a
function of ``(seed, step, layer, global id, column)`` alone: :func:`keep_mask` hashes those
five numbers (a 32-bit integer mix, "lowbias32" by C. Wellons) and keeps an entry when the hash
is at or above :math:`p \\cdot 2^{32}`. No generator state is consumed, so the masks are the
same for any number of parts and any order of evaluation.

Feature dropout (:func:`node_dropout`) keys the rows by global node id; GAT's attention
dropout (:func:`attention_dropout`) keys them by global edge id (the edge's position in
:func:`gnnkit.distributed.global_edges`) with one column per head, in a stream of layers of its
own (``layer + ATTENTION_STREAM``), so the two never share a mask.

On CPU with numba (:mod:`gnnkit.ops._jit`) the mask is one compiled pass
(``gnnkit.distributed._mask_jit``); elsewhere a chunked torch computation gives the same bits.
"""

from __future__ import annotations

import numbers

import torch
from torch import Tensor

from gnnkit.errors import InputError
from gnnkit.ops._jit import jit_available
from gnnkit.utils.checks import check_int, describe, is_integer_tensor

__all__ = ["ATTENTION_STREAM", "attention_dropout", "keep_mask", "node_dropout"]

_M32 = 0xFFFFFFFF
#: Rows hashed at once by the torch path: bounds the int64 temporaries per column block.
_CHUNK = 1 << 22
#: Added to ``layer`` for attention-dropout masks, so they never coincide with feature masks.
ATTENTION_STREAM = 1 << 16


def _mix_int(x: int) -> int:
    x &= _M32
    x ^= x >> 16
    x = (x * 0x7FEB352D) & _M32
    x ^= x >> 15
    x = (x * 0x846CA68B) & _M32
    return x ^ (x >> 16)


def _mix(x: Tensor) -> Tensor:
    # int64 products wrap modulo 2**64, so their low 32 bits are exact.
    x = x & _M32
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _M32
    return x ^ (x >> 16)


def _hashes(
    node_ids: Tensor, num_columns: int, p: float, seed: int, step: int, layer: int
) -> tuple[Tensor, Tensor, int]:
    """Row hashes (|V|,), column hashes (C,) and the keep threshold."""
    key = _mix_int(_mix_int(_mix_int(seed ^ (seed >> 32)) ^ step) ^ layer)
    ids = node_ids.long()
    row = _mix(_mix(ids ^ key) ^ (ids >> 32))
    column = _mix(torch.arange(num_columns, device=ids.device) + 0x9E3779B9)
    return row, column, round(p * 2**32)


def _keep_mask_torch(row: Tensor, column: Tensor, threshold: int) -> Tensor:
    rows_per_chunk = max(1, _CHUNK // max(column.numel(), 1))
    blocks = [_mix(part.unsqueeze(1) ^ column) >= threshold for part in row.split(rows_per_chunk)]
    if not blocks:
        return torch.zeros((0, column.numel()), dtype=torch.bool, device=row.device)
    return torch.cat(blocks)


def keep_mask(
    node_ids: Tensor,
    num_columns: int,
    p: float,
    *,
    seed: int,
    step: int,
    layer: int,
    compiled: bool | None = None,
) -> Tensor:
    """Which entries of a (|V|, C) matrix dropout keeps: row ``k`` belongs to global id
    ``node_ids[k]``.

    Args:
        node_ids (Tensor): (|V|,) global ids of the rows (node ids, or edge ids).
        num_columns (int): C.
        p (float): the probability of dropping an entry, in [0, 1).
        seed (int): the run's seed.
        step (int): the training step (epoch).
        layer (int): which dropout of the model.
        compiled (bool, optional): use the numba kernel; ``None`` uses it on CPU when numba
            is available. Both paths give the same bits. (default: ``None``)

    Returns:
        Tensor: (|V|, C) booleans, ``True`` = kept.
    """
    _check_p(p, "keep_mask: dropout")
    _check_ids("keep_mask", "node_ids", node_ids)
    check_int("num_columns", num_columns, 0)
    row, column, threshold = _hashes(node_ids, num_columns, p, seed, step, layer)
    if compiled is None:
        compiled = row.device.type == "cpu" and jit_available()
    if compiled:
        from gnnkit.distributed._mask_jit import keep_mask_cpu

        return keep_mask_cpu(row.cpu(), column.cpu(), threshold).to(row.device)
    return _keep_mask_torch(row, column, threshold)


def _check_p(p: float, name: str) -> None:
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= p < 1.0:
        raise InputError(f"{name} p must be in [0, 1), got {p!r}")


def _check_ids(name: str, what: str, ids: Tensor, rows: int | None = None, of: str = "") -> None:
    """``ids`` must be a 1-D integer tensor, one global id per row (``rows`` of them, when
    given): a float id would be truncated, a wrong count broadcast or fail deep in torch."""
    if not is_integer_tensor(ids) or ids.dim() != 1 or (rows is not None and ids.numel() != rows):
        got = describe(ids)
        count = "" if rows is None else f" of {rows} entries, one per {of}"
        raise InputError(f"{name}: {what} must be a 1-D integer tensor{count}, got {got}")


def node_dropout(
    x: Tensor, node_ids: Tensor, p: float, *, seed: int, step: int, layer: int, training: bool
) -> Tensor:
    """Dropout of ``x``'s entries with :func:`keep_mask`'s mask, kept ones scaled by 1 / (1 - p).

    Shapes:
        - **input:** ``x`` (|V|, C), ``node_ids`` (|V|,)
        - **output:** (|V|, C)
    """
    _check_p(p, "dropout")
    if not isinstance(x, Tensor) or x.dim() != 2:
        got = describe(x, dtype=False)
        raise InputError(f"node_dropout: x must be a (|V|, C) tensor, got {got}")
    _check_ids("node_dropout", "node_ids", node_ids, x.size(0), "row of x")
    if not training or p == 0.0:
        return x
    mask = keep_mask(node_ids, x.size(1), p, seed=seed, step=step, layer=layer)
    return x * mask.to(x.dtype) / (1.0 - p)


def attention_dropout(
    alpha: Tensor, edge_ids: Tensor, p: float, *, seed: int, step: int, layer: int, training: bool
) -> Tensor:
    """GAT's dropout of attention coefficients, keyed by global edge id and head.

    Entry ``(h, e)`` is kept when :func:`keep_mask` keeps entry ``(e, h)`` of the edges'
    mask at ``layer + ATTENTION_STREAM``; kept ones are scaled by 1 / (1 - p).

    Shapes:
        - **input:** ``alpha`` (H, |E|), ``edge_ids`` (|E|,) in ``alpha``'s edge order
        - **output:** (H, |E|)
    """
    _check_p(p, "attention dropout")
    if not isinstance(alpha, Tensor) or alpha.dim() != 2:
        got = describe(alpha, dtype=False)
        raise InputError(f"attention_dropout: alpha must be an (H, |E|) tensor, got {got}")
    _check_ids("attention_dropout", "edge_ids", edge_ids, alpha.size(1), "column (edge) of alpha")
    if not training or p == 0.0:
        return alpha
    mask = keep_mask(
        edge_ids, alpha.size(0), p, seed=seed, step=step, layer=layer + ATTENTION_STREAM
    )
    return alpha * mask.t().to(alpha.dtype) / (1.0 - p)
