"""Uniform neighbour sampling on a CSR graph, vectorised over every node of a hop.

The scheme is GraphSAGE's (Hamilton et al., "Inductive Representation Learning on Large
Graphs", NeurIPS 2017, arXiv 1706.02216), as PyG's ``NeighborLoader`` implements it. Start
from a batch of seed nodes. At hop :math:`\\ell = 1..L`, each node added at hop
:math:`\\ell - 1` draws :math:`\\min(k_\\ell, d_v)` of its :math:`d_v` in-neighbours uniformly
without replacement. :math:`k_\\ell` is the fan-out; ``-1`` keeps every in-neighbour. Each
draw adds the edge :math:`u \\to v`. The neighbours not seen before become the next hop's
nodes.

How it runs without a per-node loop:

- Degrees and row starts come from the CSR row pointer.
- A node with :math:`d_v \\le k` keeps its whole row: one ``repeat_interleave`` for the
  whole hop.
- A node with :math:`d_v > k` draws a uniform :math:`k`-subset by Floyd's algorithm (Bentley
  & Floyd, "Programming pearls: a sample of brilliance", CACM 1987), with every such node
  advancing in lockstep. There are :math:`k` rounds of vectorised work, each costing
  :math:`O(k)` per node.
- New nodes are found with one ``unique`` per hop. Global to local ids go through a
  |V|-sized lookup table.

So one hop costs :math:`O(m k^2 + |V|)` work for :math:`m` expanded nodes, whatever their
degrees.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gnnkit.errors import InputError
from gnnkit.ops.csr import CSRGraph
from gnnkit.utils.checks import check_edge_index, check_range

__all__ = ["NeighborLoader", "NeighborSampler", "SampledSubgraph", "derive_seed"]


def derive_seed(seed: int, *keys: int) -> int:
    """A 63-bit seed derived from ``seed`` and ``keys`` (NumPy's ``SeedSequence`` hash).

    Distinct key tuples give statistically independent streams. The trainers use it to seed
    the sampling and dropout of each (epoch, step, shard), so that a run is reproducible in
    any number of processes and can resume without saving generator states.
    """
    entropy = [int(v) % 2**64 for v in (seed, *keys)]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> np.uint64(1))


def check_fanouts(fanouts: Any) -> tuple[int, ...]:
    """Fan-outs must be a non-empty sequence of ints, each ``-1`` (all) or ``>= 0``."""
    if isinstance(fanouts, (str, bytes)) or not isinstance(fanouts, Sequence) or not fanouts:
        raise InputError(
            f"fanouts must be a non-empty list of ints, one per layer (e.g. [15, 10, 5]), "
            f"got {fanouts!r}"
        )
    for value in fanouts:
        if isinstance(value, bool) or not isinstance(value, int) or value < -1:
            raise InputError(
                f"each fan-out must be an int >= 0, or -1 for every neighbour; got {fanouts!r}"
            )
    return tuple(int(v) for v in fanouts)


@dataclass
class SampledSubgraph:
    """One sampled mini-batch: the seeds' multi-hop neighbourhood with local node ids.

    Run a model on it as on a whole graph, and read the seeds' outputs from the first rows:
    ``model(x[sub.node_ids], sub.edge_index)[: sub.batch_size]``.

    Attributes:
        node_ids (Tensor): (n,) global ids of the subgraph's nodes. The seeds come first, in
            the order given, then each hop's new nodes in increasing id order.
        edge_index (Tensor): (2, e) sampled edges in local ids. Row 0 is the sampled
            neighbour (the sender), row 1 the node it was sampled for (the receiver).
        edge_ids (Tensor): (e,) each sampled edge's column in the sampler's input
            ``edge_index``, for edge features or weights.
        batch_size (int): the number of seeds, the first ``batch_size`` entries of
            ``node_ids``.
        num_sampled_nodes (list of int): nodes added per hop; entry 0 is ``batch_size``.
        num_sampled_edges (list of int): edges sampled per hop.
    """

    node_ids: Tensor
    edge_index: Tensor
    edge_ids: Tensor
    batch_size: int
    num_sampled_nodes: list[int] = field(default_factory=list)
    num_sampled_edges: list[int] = field(default_factory=list)

    @property
    def num_nodes(self) -> int:
        return self.node_ids.numel()

    @property
    def num_edges(self) -> int:
        return self.edge_index.size(1)

    @property
    def seeds(self) -> Tensor:
        """(batch_size,) global ids of the seed nodes."""
        return self.node_ids[: self.batch_size]

    def to(self, device: str | torch.device) -> SampledSubgraph:
        """A copy with the tensors on ``device``."""
        return SampledSubgraph(
            self.node_ids.to(device),
            self.edge_index.to(device),
            self.edge_ids.to(device),
            self.batch_size,
            list(self.num_sampled_nodes),
            list(self.num_sampled_edges),
        )


def _floyd_subsets(degree: Tensor, k: int, generator: torch.Generator | None) -> Tensor:
    """Uniform ``k``-subsets of ``range(d)`` for each ``d`` in ``degree`` (all ``> k``).

    Floyd's algorithm, vectorised over rows: for ``j = d - k .. d - 1`` draw ``t`` uniform in
    ``[0, j]`` and keep ``t`` unless already kept, else keep ``j``. Every ``k``-subset comes
    out with probability ``1 / C(d, k)``.

    Returns:
        Tensor: (len(degree), k) distinct offsets per row, each in ``[0, d)``.
    """
    rows = degree.numel()
    uniforms = torch.rand(
        (rows, k), generator=generator, dtype=torch.float64, device=degree.device
    )  # float64: exact floors for degrees far beyond 2**24
    chosen = torch.empty((rows, k), dtype=torch.long, device=degree.device)
    for step in range(k):
        j = degree - (k - step)  # (rows,) the largest value this round may take
        draw = torch.minimum((uniforms[:, step] * (j + 1)).long(), j)
        if step:
            taken = (chosen[:, :step] == draw.unsqueeze(1)).any(dim=1)
            draw = torch.where(taken, j, draw)
        chosen[:, step] = draw
    return chosen


class NeighborSampler:
    r"""Uniform multi-hop neighbour sampling (GraphSAGE's, as PyG's ``NeighborLoader``).

    At hop :math:`\ell` every node added at hop :math:`\ell - 1` keeps
    :math:`\min(k_\ell, d_v)` of its :math:`d_v` in-neighbours, drawn uniformly without
    replacement (with ``replace=True``: exactly :math:`k_\ell` draws with replacement, none
    for a node with no in-neighbour). Nodes reached at an earlier hop are not expanded
    again. The sampled edges point from the neighbour to the node it was drawn for, so
    messages flow from hop :math:`\ell` towards the seeds. An :math:`L`-layer model on the
    subgraph computes each seed's output from its sampled :math:`L`-hop neighbourhood.

    The sampler holds the graph in CSR form, sorted once by receiver. Sampling is vectorised
    over the nodes of a hop (see :mod:`gnnkit.sampling.neighbor`) and runs on the graph's
    device.

    NOTE: departures from PyG's ``NeighborLoader`` (pyg-lib):

    - The subgraph holds only the sampled edges (PyG's default ``subgraph_type="directional"``).
    - Each hop's new nodes are ordered by global id, not by first appearance.
    - The random streams differ, so the samples differ for the same seed; the distribution
      is the same.

    Args:
        edge_index (Tensor): (2, |E|) edges, row 0 senders, row 1 receivers. Sampling follows
            in-edges, so symmetrise a directed graph first if neighbours in both directions
            should count.
        num_nodes (int, optional): |V|. (default: largest index plus one)
        fanouts (sequence of int): :math:`k_1, \dots, k_L`, neighbours per node at each hop,
            one per layer of the model; ``-1`` keeps every neighbour.
        replace (bool, optional): draw with replacement. (default: ``False``)

    Shapes:
        - **input:** ``edge_index`` (2, |E|); ``seeds`` (B,) per call
        - **output:** :class:`SampledSubgraph` with ``node_ids`` (n,) and ``edge_index``
          (2, e)

    Example:
        >>> sampler = NeighborSampler(edge_index, num_nodes, fanouts=[15, 10, 5])
        >>> sub = sampler.sample(torch.tensor([3, 14, 15]), torch.Generator().manual_seed(0))
        >>> out = model(x[sub.node_ids], sub.edge_index)[: sub.batch_size]
    """

    def __init__(
        self,
        edge_index: Tensor,
        num_nodes: int | None = None,
        fanouts: Sequence[int] = (15, 10, 5),
        *,
        replace: bool = False,
    ) -> None:
        self.num_nodes = check_edge_index(edge_index, num_nodes)
        self.fanouts = check_fanouts(fanouts)
        if not isinstance(replace, bool):
            raise InputError(f"replace must be True or False, got {replace!r}")
        self.replace = replace
        self.graph = CSRGraph.from_edge_index(edge_index, self.num_nodes)

    @property
    def device(self) -> torch.device:
        return self.graph.device

    def _check_seeds(self, seeds: Any) -> Tensor:
        if not isinstance(seeds, Tensor):
            seeds = torch.as_tensor(seeds)
        if seeds.is_floating_point() or seeds.is_complex() or seeds.dtype == torch.bool:
            raise InputError(f"seeds must hold integer node ids, got dtype {seeds.dtype}")
        if seeds.dim() != 1:
            raise InputError(f"seeds must be a 1-D tensor of node ids, got {tuple(seeds.shape)}")
        seeds = seeds.to(self.device, torch.long)
        check_range("seeds", seeds, self.num_nodes, "pass ids of the graph's nodes",
                    what="node id")  # fmt: skip
        return seeds

    def _hop(
        self, frontier: Tensor, fanout: int, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor]:
        """Sample one hop for ``frontier``: CSR positions (e,) and, per edge, its frontier slot."""
        rowptr = self.graph.rowptr
        start = rowptr[frontier]
        degree = rowptr[frontier + 1] - start  # (m,)
        if fanout < 0:
            counts = degree
        elif self.replace:
            counts = torch.where(degree > 0, fanout, 0)
        else:
            counts = degree.clamp(max=fanout)
        arange = torch.arange(frontier.numel(), device=frontier.device)
        owner = torch.repeat_interleave(arange, counts)  # (e,) frontier slot of each sample
        first = torch.cumsum(counts, 0) - counts  # (m,) where each row's samples start
        # Entry i of row v reads CSR position start_v + i: one gather for the whole hop.
        pos = torch.arange(owner.numel(), device=frontier.device) + (start - first)[owner]
        if fanout >= 0 and self.replace:
            uniforms = torch.rand(
                owner.numel(), generator=generator, dtype=torch.float64, device=frontier.device
            )
            deg = degree[owner]
            pos = start[owner] + torch.minimum((uniforms * deg).long(), deg - 1)
        elif fanout >= 0:
            rows = (degree > fanout).nonzero().view(-1)  # rows that keep only some neighbours
            if rows.numel():
                chosen = _floyd_subsets(degree[rows], fanout, generator)  # (m', k)
                slots = first[rows].unsqueeze(1) + torch.arange(fanout, device=rows.device)
                pos[slots.view(-1)] = (start[rows].unsqueeze(1) + chosen).view(-1)
        return pos, owner

    def sample(self, seeds: Tensor, generator: torch.Generator | None = None) -> SampledSubgraph:
        """Sample the multi-hop neighbourhood of ``seeds``.

        Args:
            seeds (Tensor): (B,) distinct node ids.
            generator (torch.Generator, optional): the random stream, on the graph's device;
                the same generator state gives the same subgraph. (default: torch's global
                generator)

        Returns:
            SampledSubgraph: seeds first, then each hop's new nodes.
        """
        seeds = self._check_seeds(seeds)
        device = self.device
        batch = seeds.numel()
        local = torch.full((self.num_nodes,), -1, dtype=torch.long, device=device)
        positions = torch.arange(batch, device=device)
        local[seeds] = positions
        if batch and not bool(torch.equal(local[seeds], positions)):
            raise InputError("seeds must be distinct node ids; remove the duplicates")

        nodes, senders, receivers, edge_ids = [seeds], [], [], []
        frontier, frontier_local, count = seeds, positions, batch
        for fanout in self.fanouts:
            pos, owner = self._hop(frontier, fanout, generator)
            src = self.graph.col[pos]  # (e,) global ids of the sampled neighbours
            # Nodes not seen before, sorted by id: flags on a |V| table (no sort needed).
            seen = torch.zeros(self.num_nodes, dtype=torch.bool, device=device)
            seen[src] = True
            seen[local >= 0] = False
            new = seen.nonzero().view(-1)  # (n_new,)
            local[new] = torch.arange(count, count + new.numel(), device=device)
            count += new.numel()
            senders.append(local[src])
            receivers.append(frontier_local[owner])
            edge_ids.append(self.graph.perm[pos])
            nodes.append(new)
            frontier, frontier_local = new, local[new]

        return SampledSubgraph(
            node_ids=torch.cat(nodes),
            edge_index=torch.stack([torch.cat(senders), torch.cat(receivers)]),
            edge_ids=torch.cat(edge_ids),
            batch_size=batch,
            num_sampled_nodes=[n.numel() for n in nodes],
            num_sampled_edges=[s.numel() for s in senders],
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_nodes={self.num_nodes}, "
            f"num_edges={self.graph.num_edges}, fanouts={list(self.fanouts)}, "
            f"replace={self.replace})"
        )


class NeighborLoader:
    """Batches of seed nodes, each with its sampled neighbourhood (one epoch per iteration).

    Every ``for batch in loader`` is one epoch. The seeds are shuffled (if ``shuffle``), cut
    into batches of ``batch_size``, and each batch's neighbourhood is sampled by
    :class:`NeighborSampler`. Epoch ``e`` draws from a generator seeded by ``(seed, e)``, so
    the batches are reproducible, and :meth:`set_epoch` jumps to any epoch. The epoch counter
    advances each time an iteration starts.

    Args:
        edge_index (Tensor): (2, |E|) edges, row 0 senders, row 1 receivers.
        seeds (Tensor): (S,) distinct node ids to cover each epoch (e.g. the training nodes).
        fanouts (sequence of int): neighbours per node and hop; ``-1`` for all.
        num_nodes (int, optional): |V|. (default: largest index plus one)
        batch_size (int, optional): seeds per batch. (default: ``512``)
        shuffle (bool, optional): shuffle the seeds each epoch. (default: ``True``)
        drop_last (bool, optional): skip a last batch smaller than ``batch_size``.
            (default: ``False``)
        replace (bool, optional): sample with replacement. (default: ``False``)
        seed (int, optional): the seed of the epoch generators. (default: ``0``)

    Example:
        >>> loader = NeighborLoader(edge_index, train_idx, [15, 10], batch_size=1024)
        >>> for sub in loader:
        ...     out = model(x[sub.node_ids], sub.edge_index)[: sub.batch_size]
        ...     loss = F.cross_entropy(out, y[sub.seeds])
    """

    def __init__(
        self,
        edge_index: Tensor,
        seeds: Tensor,
        fanouts: Sequence[int],
        *,
        num_nodes: int | None = None,
        batch_size: int = 512,
        shuffle: bool = True,
        drop_last: bool = False,
        replace: bool = False,
        seed: int = 0,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size must be a positive int, got {batch_size!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InputError(f"seed must be an int, got {seed!r}")
        self.sampler = NeighborSampler(edge_index, num_nodes, fanouts, replace=replace)
        self.seeds = self.sampler._check_seeds(seeds)
        if self.seeds.numel() != torch.unique(self.seeds).numel():
            raise InputError("seeds must be distinct node ids; remove the duplicates")
        self.batch_size = batch_size
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration epoch ``epoch`` (its shuffle and samples)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        full, rest = divmod(self.seeds.numel(), self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def __iter__(self) -> Iterator[SampledSubgraph]:
        device = self.sampler.device
        generator = torch.Generator(device=device).manual_seed(derive_seed(self.seed, self.epoch))
        order = self.seeds
        if self.shuffle:
            order = order[torch.randperm(order.numel(), generator=generator, device=device)]
        self.epoch += 1
        for batch in range(len(self)):
            chunk = order[batch * self.batch_size : (batch + 1) * self.batch_size]
            yield self.sampler.sample(chunk, generator)
