"""Cross-entropy and accuracy of several node splits from one tensor of logits.

Evaluating a node classifier every epoch (the loss and accuracy of the training, validation
and test nodes) is a dozen small operators when written in torch: gather the rows, the row
maxima, the log-sum-exp, the target logits, the correct predictions, the sums per split. On
a small graph their fixed costs add up to more than a tenth of an epoch (Cora: 1,640 evaluated
rows of 7 classes took 132 us of a 1.3 ms GCN epoch). On CPU :func:`split_metrics` runs two
compiled passes over the rows (numba, :mod:`gnnkit.ops._metrics_cpu`) around one vectorised
numpy ``exp``: 39 us there. Elsewhere (other devices, half precision, numba missing or
``GNNKIT_JIT=0``) it runs the torch operators. Both paths compute in float64, so a small
loss is not lost to float32 rounding, and give the same sums to float64 rounding.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from gnnkit.ops._jit import as_numpy, jit_available

__all__ = ["split_metrics"]


def _compiled(logits: Tensor, index: Tensor) -> bool:
    return (
        logits.device.type == "cpu"
        and logits.dtype in (torch.float32, torch.float64)
        and logits.dim() == 2
        and logits.size(1) > 0
        and index.dtype == torch.int64
        and jit_available()
    )


def split_metrics(
    logits: Tensor, index: Tensor, target: Tensor, split: Tensor, num_splits: int
) -> Tensor:
    """Summed cross-entropy and number of correct predictions of each split, (S, 2) float64.

    Row ``k`` of the evaluation is node ``index[k]`` with class ``target[k]`` in split
    ``split[k]``; ``out[s, 0]`` is the sum of the cross-entropies of split ``s``'s rows
    (``F.cross_entropy(..., reduction="sum")`` in float64) and ``out[s, 1]`` how many of them
    have their target as the largest logit. Divide by the splits' sizes for the means.

    Args:
        logits (Tensor): (N, C) scores of every node (not normalised).
        index (Tensor): (M,) int64 rows of ``logits`` to evaluate, each in ``[0, N)``.
        target (Tensor): (M,) int64 class of each, in ``[0, C)``.
        split (Tensor): (M,) int64 split of each, in ``[0, num_splits)``.
        num_splits (int): S, the number of splits.

    The indices are trusted (the caller built them once, for every epoch): out-of-range
    entries are not checked here.
    """
    logits = logits.detach()
    if _compiled(logits, index):
        return _compiled_sums(logits, index, target, split, num_splits)
    out = logits[index].double()  # (M, C)
    top, pred = out.max(dim=-1, keepdim=True)  # (M, 1), (M, 1)
    log_norm = (out - top).exp_().sum(dim=-1, keepdim=True).log_()  # (M, 1)
    y = target.unsqueeze(-1)
    losses = log_norm.add_(top).sub_(out.gather(1, y))  # (M, 1)
    stats = torch.cat([losses, pred == y], dim=1)  # (M, 2) loss, correct (0 or 1)
    sums = torch.zeros(num_splits, 2, dtype=torch.float64, device=out.device)
    return sums.index_add_(0, split, stats)


def _compiled_sums(
    logits: Tensor, index: Tensor, target: Tensor, split: Tensor, num_splits: int
) -> Tensor:
    """:func:`split_metrics` on CPU: two compiled passes around one numpy ``exp``."""
    from gnnkit.ops import _metrics_cpu

    rows, classes = index.numel(), logits.size(1)
    shifted = np.empty((rows, classes))  # float64 work arrays, no torch operator
    top, hit, exps = np.empty(rows), np.empty(rows, np.bool_), np.empty((rows, classes))
    target_np = as_numpy(target)
    _metrics_cpu.shifted_rows(
        as_numpy(logits.contiguous()), as_numpy(index), target_np, shifted, top, hit
    )
    np.exp(shifted, out=exps)  # vectorised (the module docstring)
    sums = torch.zeros(num_splits, 2, dtype=torch.float64)
    _metrics_cpu.split_sums(exps, shifted, top, target_np, hit, as_numpy(split), as_numpy(sums))
    return sums
