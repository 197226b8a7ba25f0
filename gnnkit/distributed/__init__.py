"""Partition-parallel full-graph training on ``torch.distributed``, for graphs bigger than one
process.

``gnnkit partition`` (:func:`partition_dataset`) cuts a graph by destination node into P
shards (METIS, or a random / contiguous split); ``torchrun --nproc-per-node P -m
gnnkit.distributed --shards DIR`` starts one rank per shard (:func:`fit_partitioned`). Each
rank holds only its nodes, their in-edges and the halo rows its layers fetch with
``all_to_all``; parameters are replicated and their gradients all-reduced, so training equals
single-process full-batch training (the guide: ``docs/guide/distributed.md``).
"""

from gnnkit.distributed.dropout import (
    ATTENTION_STREAM,
    attention_dropout,
    keep_mask,
    node_dropout,
)
from gnnkit.distributed.halo import HaloPlan, PartitionGraph, exchange_halo
from gnnkit.distributed.layers import PartitionGAT, PartitionGATConv, PartitionGCN, PartitionGCNConv
from gnnkit.distributed.partition import (
    PARTITION_METHODS,
    build_shards,
    global_edges,
    halo_sizes,
    metis_available,
    partition_dataset,
    partition_nodes,
)
from gnnkit.distributed.shards import load_shard, read_manifest, version_hash, write_shards
from gnnkit.distributed.train import (
    PartitionConfig,
    PartitionTask,
    build_model,
    check_same_version,
    fit_partitioned,
)

__all__ = [
    "ATTENTION_STREAM",
    "PARTITION_METHODS",
    "HaloPlan",
    "PartitionConfig",
    "PartitionGAT",
    "PartitionGATConv",
    "PartitionGCN",
    "PartitionGCNConv",
    "PartitionGraph",
    "PartitionTask",
    "attention_dropout",
    "build_model",
    "build_shards",
    "check_same_version",
    "exchange_halo",
    "fit_partitioned",
    "global_edges",
    "halo_sizes",
    "keep_mask",
    "load_shard",
    "metis_available",
    "node_dropout",
    "partition_dataset",
    "partition_nodes",
    "read_manifest",
    "version_hash",
    "write_shards",
]
