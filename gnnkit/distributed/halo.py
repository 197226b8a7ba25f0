"""A part's view of the graph, and the halo exchange that feeds it.

:class:`PartitionGraph` holds one rank's local CSR (rows = its nodes, columns = its nodes then
its halo nodes), the global GCN weights of its edges and its :class:`HaloPlan`.
:func:`exchange_halo` sends every rank the rows of a node-feature matrix that its neighbours'
in-edges need, with one :func:`torch.distributed.all_to_all_single`; it is differentiable: the
backward sends the halo rows' gradients back to their owners with the reverse all-to-all and
adds them onto the rows that were sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from gnnkit.distributed.shards import GRAPH_KEYS
from gnnkit.errors import InputError
from gnnkit.ops import CSRGraph
from gnnkit.ops._autograd import differentiable_once

__all__ = ["HaloPlan", "PartitionGraph", "exchange_halo"]


@dataclass(frozen=True)
class HaloPlan:
    """Who sends which rows to whom in one halo exchange.

    Attributes:
        send_idx (Tensor): local rows to send, grouped by destination rank.
        send_counts (list of int): rows sent to each rank.
        recv_counts (list of int): halo rows received from each rank (the halo's order).
        num_local (int): the rank's own nodes.
        group (optional): the process group. (default: the world)
    """

    send_idx: Tensor
    send_counts: list[int]
    recv_counts: list[int]
    num_local: int
    group: Any = None

    @property
    def num_halo(self) -> int:
        """The number of halo rows received."""
        return sum(self.recv_counts)


def _all_to_all(
    rows: Tensor, out_rows: int, send: list[int], recv: list[int], group: Any
) -> Tensor:
    out = rows.new_empty((out_rows, *rows.shape[1:]))
    dist.all_to_all_single(
        out,
        rows.contiguous(),
        output_split_sizes=recv,
        input_split_sizes=send,
        group=group,
    )
    return out


class _HaloExchange(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, plan: HaloPlan) -> Tensor:  # type: ignore[override]
        ctx.plan = plan
        rows = x.index_select(0, plan.send_idx)
        return _all_to_all(rows, plan.num_halo, plan.send_counts, plan.recv_counts, plan.group)

    @staticmethod
    @differentiable_once("the halo exchange (all_to_all)")
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        plan: HaloPlan = ctx.plan
        back = _all_to_all(
            grad, plan.send_idx.numel(), plan.recv_counts, plan.send_counts, plan.group
        )
        out = grad.new_zeros((plan.num_local, *grad.shape[1:]))
        return out.index_add_(0, plan.send_idx, back), None


def exchange_halo(x: Tensor, plan: HaloPlan) -> Tensor:
    """The halo rows of ``x``: (num_halo, ...) in the plan's order, from their owners.

    Every rank of the group must call it in the same order (it is a collective). With one
    rank it returns an empty tensor without communicating.

    Shapes:
        - **input:** ``x`` (|V_local|, ...)
        - **output:** (|V_halo|, ...)
    """
    if plan.num_halo == 0 and plan.send_idx.numel() == 0 and len(plan.send_counts) <= 1:
        return x[:0]
    return _HaloExchange.apply(x, plan)


class PartitionGraph:
    """One rank's part of the graph, ready for the layers of ``gnnkit.distributed.layers``.

    Args:
        shard (dict): a shard (:func:`gnnkit.distributed.load_shard`).
        dtype (torch.dtype, optional): of the GCN edge weights. (default: ``torch.float32``)
        device (torch.device or str, optional): where the graph lives. (default: CPU)
        group (optional): the process group. (default: the world)

    Attributes:
        csr (CSRGraph): rows = local nodes, columns = local then halo nodes.
        gcn_weight (Tensor): (|E_local|,) :math:`\\hat d_i^{-1/2} \\hat d_j^{-1/2}` in CSR order.
        node_ids (Tensor): (|V_local|,) global ids of the local nodes.
        edge_ids (Tensor): (|E_local|,) global ids of the local edges, in CSR order.
        plan (HaloPlan): the halo exchange.
    """

    def __init__(
        self,
        shard: dict[str, Tensor],
        *,
        dtype: torch.dtype = torch.float32,
        device: Any = None,
        group: Any = None,
    ) -> None:
        if not isinstance(shard, dict):
            raise InputError(
                f"PartitionGraph expects a shard dict, got {type(shard).__name__}; load one with "
                "gnnkit.distributed.load_shard(folder, part)"
            )
        missing = [key for key in GRAPH_KEYS if not isinstance(shard.get(key), Tensor)]
        if missing:
            raise InputError(
                f"PartitionGraph: the shard lacks the tensors {', '.join(missing)}; load it with "
                "gnnkit.distributed.load_shard(folder, part) or cut it with build_shards"
            )
        rowptr, col = shard["rowptr"].long(), shard["col"].long()
        num_local = rowptr.numel() - 1
        num_halo = shard["halo_ids"].numel()
        row = torch.repeat_interleave(torch.arange(num_local), rowptr.diff())
        self.csr = CSRGraph.from_edge_index(
            torch.stack([col, row]).to(device), num_local, num_local + num_halo
        )
        norm = shard["norm"].to(device)
        self.gcn_weight = (norm[self.csr.row] * norm[self.csr.col]).to(dtype)
        self.node_ids = shard["node_ids"].to(device)
        self.edge_ids = shard["edge_ids"].long().to(device)[self.csr.perm]
        self.plan = HaloPlan(
            send_idx=shard["send_idx"].long().to(device),
            send_counts=[int(c) for c in shard["send_counts"]],
            recv_counts=[int(c) for c in shard["recv_counts"]],
            num_local=num_local,
            group=group,
        )

    @property
    def num_local(self) -> int:
        """The rank's own nodes."""
        return self.plan.num_local

    def with_halo(self, x: Tensor) -> Tensor:
        """``x`` of the local nodes followed by its halo rows: (|V_local| + |V_halo|, ...)."""
        return torch.cat([x, exchange_halo(x, self.plan)])
