"""Adam and AdamW whose fused step takes parameters stored in another dense order without a copy.

:class:`gnnkit.models.GCN` and :class:`gnnkit.models.GAT` keep their first weight
(hidden x input features) column-major, so that the sparse feature product reads rows of
:math:`W^\\top` (``GCN._store_input_weight_transposed``). torch's fused Adam step on CPU
(``torch._fused_adam_``) copies every gradient that is not contiguous in row-major order before
it updates the parameter through raw pointers, and then reads the original gradient: the copy is
wasted work, 70-100 us a step for Cora GAT's 64 x 1433 weight on one thread (a GAT epoch on
Cora takes about 6 ms). :class:`Adam` and :class:`AdamW` hand the fused step each such parameter,
its gradient and its moments as the contiguous views of their memory (a permutation of their
dimensions): the same elements updated in the same memory order, so the same bits, without the
copy. Every other step (``foreach``, the per-parameter loop, ``capturable``, ``differentiable``)
is torch's own.

Walking raw pointers, torch's fused step is also wrong where a gradient or a moment is laid out
unlike its parameter (a gradient assigned by hand, moments loaded in another layout): it pairs
entries by memory position. Here such a tensor is first copied into its parameter's layout (a
moment once, in the optimiser's state), so the step updates the entries it should.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor

__all__ = ["Adam", "AdamW", "adam_class", "memory_order"]

# The lists torch's Adam._init_group fills, after (self, group); the override relies on them.
_GROUP_LISTS = ["params_with_grad", "grads", "exp_avgs", "exp_avg_sqs", "max_exp_avg_sqs",
                "state_steps"]  # fmt: skip


# The state keys of the moments, in the order of _GROUP_LISTS's lists of them.
_MOMENTS = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")


def memory_order(t: Tensor) -> Tensor:
    """``t`` as the contiguous view of its memory (its dimensions permuted) when it is dense in
    another order, such as a transposed matrix; else ``t`` itself."""
    if t.is_contiguous():
        return t
    strides = t.stride()
    order = sorted(range(t.dim()), key=lambda d: (-strides[d], d))
    view = t.permute(order)
    return view if view.is_contiguous() else t


def _knows_init_group(cls: type) -> bool:
    """Whether ``cls._init_group`` takes the lists this module rewrites (torch's private API)."""
    try:
        names = list(inspect.signature(cls._init_group).parameters)  # type: ignore[attr-defined]
    except (AttributeError, TypeError, ValueError):
        return False
    return names[2:] == _GROUP_LISTS


class _MemoryOrderFused:
    """Mixin over torch's Adam: the fused step's tensors in memory order (module docstring)."""

    def _init_group(self, group: dict[str, Any], *lists: list[Tensor]) -> Any:
        result = super()._init_group(group, *lists)  # type: ignore[misc]
        if group.get("fused") and len(lists) == len(_GROUP_LISTS):
            params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, _ = lists
            rewritten = [params, grads, exp_avgs, exp_avg_sqs]
            if group.get("amsgrad"):
                rewritten.append(max_exp_avg_sqs)
            for i, p in enumerate(params):
                if all(t[i].is_contiguous() for t in rewritten):  # the common case: as it is
                    continue
                if any(t[i].stride() != p.stride() for t in rewritten[1:]):
                    moments = dict(zip(_MOMENTS, rewritten[2:], strict=False))  # amsgrad's third
                    self._same_layout(p, i, grads, moments)
                if memory_order(p).is_contiguous():  # a dense parameter: its memory's view
                    for t in rewritten:
                        t[i] = memory_order(t[i])
        return result

    def _same_layout(
        self, p: Tensor, i: int, grads: list[Tensor], moments: dict[str, list[Tensor]]
    ) -> None:
        """Copy entry ``i`` of ``grads`` and of each moment's list into ``p``'s layout where
        it differs (a moment in the optimiser's state too, so the step updates it in place)."""
        if grads[i].stride() != p.stride():
            grads[i] = torch.empty_like(p).copy_(grads[i])
        state = self.state[p]  # type: ignore[attr-defined]
        for key, tensors in moments.items():
            if tensors[i].stride() != p.stride():
                state[key] = tensors[i] = torch.empty_like(p).copy_(tensors[i])


class Adam(_MemoryOrderFused, torch.optim.Adam):
    """:class:`torch.optim.Adam`; with ``fused=True``, parameters stored in another dense order
    (a column-major weight) are updated without the copy torch's fused CPU step makes (module
    docstring). The same arguments, state and results as torch's."""


class AdamW(_MemoryOrderFused, torch.optim.AdamW):
    """:class:`torch.optim.AdamW` with :class:`Adam`'s fused step on column-major parameters."""


def adam_class(decoupled: bool = False) -> type[torch.optim.Optimizer]:
    """:class:`Adam` (or :class:`AdamW` with ``decoupled``) where torch's private
    ``_init_group`` takes the lists they rewrite, else torch's own class."""
    ours, theirs = (AdamW, torch.optim.AdamW) if decoupled else (Adam, torch.optim.Adam)
    return ours if _knows_init_group(theirs) else theirs
