"""Dropout masks that depend on the global node id, not on the process that draws them.

A partitioned run and a single-process run drop the same entries when every entry's fate is a
function of ``(seed, step, layer, global node id, column)`` alone: :func:`keep_mask` hashes
those five numbers (a 32-bit integer mix, "lowbias32" by C. Wellons) and keeps an entry when
the hash is at or above :math:`p \\cdot 2^{32}`. No generator state is consumed, so the masks
are the same for any number of parts and any order of evaluation.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gnnkit.errors import InputError

__all__ = ["keep_mask", "node_dropout"]

_M32 = 0xFFFFFFFF
#: Rows hashed at once: bounds the int64 temporaries to a few MB per column block.
_CHUNK = 1 << 22


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


def keep_mask(
    node_ids: Tensor, num_columns: int, p: float, *, seed: int, step: int, layer: int
) -> Tensor:
    """Which entries of a (|V|, C) node-feature matrix dropout keeps.

    Args:
        node_ids (Tensor): (|V|,) global ids of the rows.
        num_columns (int): C.
        p (float): the probability of dropping an entry, in [0, 1).
        seed (int): the run's seed.
        step (int): the training step (epoch).
        layer (int): which dropout of the model.

    Returns:
        Tensor: (|V|, C) booleans, ``True`` = kept.
    """
    key = _mix_int(_mix_int(_mix_int(seed ^ (seed >> 32)) ^ step) ^ layer)
    ids = node_ids.long()
    row = _mix(_mix(ids ^ key) ^ (ids >> 32))  # (|V|,)
    column = _mix(torch.arange(num_columns, device=ids.device) + 0x9E3779B9)  # (C,)
    threshold = round(p * 2**32)
    rows_per_chunk = max(1, _CHUNK // max(num_columns, 1))
    blocks = [_mix(part.unsqueeze(1) ^ column) >= threshold for part in row.split(rows_per_chunk)]
    if not blocks:
        return torch.zeros((0, num_columns), dtype=torch.bool, device=ids.device)
    return torch.cat(blocks)


def node_dropout(
    x: Tensor, node_ids: Tensor, p: float, *, seed: int, step: int, layer: int, training: bool
) -> Tensor:
    """Dropout of ``x``'s entries with :func:`keep_mask`'s mask, kept ones scaled by 1 / (1 - p).

    Shapes:
        - **input:** ``x`` (|V|, C), ``node_ids`` (|V|,)
        - **output:** (|V|, C)
    """
    if not 0.0 <= p < 1.0:
        raise InputError(f"dropout p must be in [0, 1), got {p}")
    if not training or p == 0.0:
        return x
    mask = keep_mask(node_ids, x.size(1), p, seed=seed, step=step, layer=layer)
    return x * mask.to(x.dtype) / (1.0 - p)
