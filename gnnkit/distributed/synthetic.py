"""A synthetic power-law graph with communities, for partition tests and scale benchmarks.

:func:`power_law_graph` draws a Chung-Lu graph (node :math:`i` has expected degree
:math:`\\propto (i + 1)^{-1/(\\gamma - 1)}`, so degrees follow a power law of exponent
:math:`\\gamma`) in which a fraction ``locality`` of the edges is rewired to land inside the
sender's community: real graphs have such locality, and it is what METIS finds. Node ids are
shuffled, so a contiguous split knows nothing of the communities. Labels are the community
modulo the number of classes; features are a class mean plus Gaussian noise.
"""

from __future__ import annotations

import torch
from torch_geometric.data import Data

from gnnkit.errors import InputError

__all__ = ["power_law_graph"]


def power_law_graph(
    num_nodes: int,
    *,
    avg_degree: float = 10.0,
    num_features: int = 32,
    num_classes: int = 8,
    num_communities: int | None = None,
    gamma: float = 2.5,
    locality: float = 0.8,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> Data:
    """A seeded, undirected synthetic power-law graph with split masks.

    Args:
        num_nodes (int): |V| (>= 2).
        avg_degree (float, optional): mean undirected degree before deduplication. (default: ``10``)
        num_features (int, optional): F. (default: ``32``)
        num_classes (int, optional): the number of labels. (default: ``8``)
        num_communities (int, optional): planted communities. (default: ``max(|V| / 200, classes)``)
        gamma (float, optional): the power-law exponent (> 2). (default: ``2.5``)
        locality (float, optional): the fraction of edges inside a community. (default: ``0.8``)
        seed (int, optional): everything is drawn from it. (default: ``0``)
        dtype (torch.dtype, optional): of the features. (default: ``torch.float32``)

    Returns:
        torch_geometric.data.Data: ``x``, ``y``, ``edge_index`` (both directions, no self-loops,
        no duplicates), ``train_mask`` (20 nodes per class where possible), ``val_mask`` (10 %),
        ``test_mask`` (the rest), ``num_classes``.
    """
    if num_nodes < 2 or gamma <= 2.0 or not 0.0 <= locality <= 1.0:
        raise InputError(
            f"power_law_graph needs num_nodes >= 2, gamma > 2 and locality in [0, 1]; got "
            f"{num_nodes}, {gamma}, {locality}"
        )
    g = torch.Generator().manual_seed(seed)
    comms = num_communities or max(num_nodes // 200, num_classes)
    weight = torch.arange(1, num_nodes + 1, dtype=torch.float64).pow(-1.0 / (gamma - 1.0))
    num_draws = int(num_nodes * avg_degree / 2)
    src = torch.multinomial(weight, num_draws, replacement=True, generator=g)
    dst = torch.multinomial(weight, num_draws, replacement=True, generator=g)
    community = torch.randint(comms, (num_nodes,), generator=g)
    order = torch.sort(community, stable=True).indices  # nodes grouped by community
    size = torch.bincount(community, minlength=comms)
    start = torch.cumsum(size, 0) - size
    local = torch.rand(num_draws, generator=g) < locality
    c = community[src[local]]
    pick = (torch.rand(int(local.sum()), generator=g) * size[c]).long()
    dst[local] = order[start[c] + pick]
    perm = torch.randperm(num_nodes, generator=g)  # shuffle ids
    src, dst = perm[src], perm[dst]
    community = torch.empty_like(community).scatter_(0, perm, community)
    keep = src != dst
    key = torch.unique(
        torch.cat([src[keep] * num_nodes + dst[keep], dst[keep] * num_nodes + src[keep]])
    )
    edge_index = torch.stack([key // num_nodes, key % num_nodes])
    y = community % num_classes
    means = torch.randn(num_classes, num_features, generator=g, dtype=torch.float64)
    x = means[y] + 2.0 * torch.randn(num_nodes, num_features, generator=g, dtype=torch.float64)
    shuffled = torch.randperm(num_nodes, generator=g)
    train = torch.zeros(num_nodes, dtype=torch.bool)
    for label in range(num_classes):
        train[shuffled[y[shuffled] == label][:20]] = True
    rest = shuffled[~train[shuffled]]
    val = torch.zeros(num_nodes, dtype=torch.bool)
    val[rest[: num_nodes // 10]] = True
    test = ~(train | val)
    return Data(
        x=x.to(dtype),
        y=y,
        edge_index=edge_index,
        train_mask=train,
        val_mask=val,
        test_mask=test,
        num_classes=num_classes,
    )
