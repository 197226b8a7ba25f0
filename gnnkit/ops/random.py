"""Random draws for dropout masks, cheaper than one float per entry on CPU."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from gnnkit.ops._jit import jit_available
from gnnkit.ops.dropout import counter_keep_mask

__all__ = ["keep_mask", "uniform_draws"]


def uniform_draws(
    shape: tuple[int, ...], p: float, device: Any = None, *, words: Tensor | None = None
) -> tuple[Tensor, float | int]:
    r"""Uniform draws for a dropout mask, and the threshold below which an entry is dropped.

    An entry is dropped when its draw is below the threshold, which happens with probability
    :math:`p`. When :math:`256 p` is an integer (``p = 0.5``, ``0.25``...) the draws are random
    bytes compared against :math:`256 p`; the bytes come from 64-bit random words, so one call
    to the generator serves 8 entries. On CPU that is about 50x faster than
    ``torch.bernoulli``, which draws one 32-bit number per entry. Other values of :math:`p`
    fall back to ``torch.rand(shape)`` against :math:`p`. Both draw from torch's default
    generator, so ``torch.manual_seed`` makes them reproducible.

    Args:
        shape (tuple of int): the mask's shape.
        p (float): the probability of dropping an entry, in [0, 1).
        device (torch.device or str, optional): where to draw. (default: CPU)
        words (Tensor, optional): an int64 buffer of at least ``ceil(numel / 8)`` entries on
            ``device`` to draw the random words into (reused between calls by
            :func:`gnnkit.ops.hadamard_mlp`). (default: a fresh tensor)

    Returns:
        ``(draws, threshold)``: uint8 bytes and an int, or floats in [0, 1) and ``p``.
    """
    threshold = 256.0 * p
    if threshold != int(threshold):
        return torch.rand(shape, device=device), p
    numel = math.prod(shape)
    size = (numel + 7) // 8
    if words is None:
        words = torch.empty(size, dtype=torch.int64, device=device)
    torch.randint(-(2**63), 2**63 - 1, (size,), dtype=torch.int64, out=words)
    return words.view(torch.uint8)[:numel].view(shape), int(threshold)


def keep_mask(shape: tuple[int, ...], p: float, device: Any = None) -> Tensor:
    """A boolean dropout keep mask: each entry is kept with probability :math:`1 - p`.

    On CPU with numba it comes from the counter-based stream of
    :func:`gnnkit.ops.dropout.counter_keep_mask` (one compiled pass, about 6x faster than
    drawing floats and comparing); elsewhere from :func:`uniform_draws`. Both are seeded by
    torch's default generator.

    Args:
        shape (tuple of int): the mask's shape.
        p (float): the probability of dropping an entry, in [0, 1).
        device (torch.device or str, optional): where to build it. (default: CPU)
    """
    if torch.device(device or "cpu").type == "cpu" and jit_available():
        return counter_keep_mask(shape, p)
    draws, threshold = uniform_draws(shape, p, device)
    return draws >= threshold
