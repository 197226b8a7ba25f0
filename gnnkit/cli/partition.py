"""``gnnkit partition``: cut a dataset into P shards for partition-parallel training.

The shards are what ``torchrun --nproc-per-node P -m gnnkit.distributed --shards DIR`` trains
on (:mod:`gnnkit.distributed`): one file per part, each with its nodes, their in-edges, the
global normalisation and the halo plan, plus a manifest with checksums.
"""

from __future__ import annotations

import argparse

from gnnkit.cli import (
    add_command,
    add_overwrite,
    add_seed,
    data_kwargs,
    data_options,
    positive_int,
)
from gnnkit.distributed import PARTITION_METHODS, partition_dataset
from gnnkit.errors import InputError
from gnnkit.utils.table import format_table

#: ``--dataset synthetic``'s graph: a power-law graph of ``--nodes`` nodes.
SYNTHETIC = "synthetic"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(
        subparsers,
        "partition",
        "Split a node-classification graph by destination node into P parts (METIS through "
        "pymetis, or a random / contiguous split) and write one shard per part plus a "
        "manifest with sha256 checksums. Train on them with "
        "`torchrun --nproc-per-node P -m gnnkit.distributed --shards DIR`.",
        parents=[data_options()],
    )
    parser.add_argument(
        "--dataset",
        required=True,
        help=f"a node dataset (`gnnkit data list`: cora, ogbn-arxiv...) or {SYNTHETIC!r}",
    )
    parser.add_argument("--parts", type=positive_int, required=True, metavar="P")
    parser.add_argument("--method", choices=PARTITION_METHODS, default="metis")
    parser.add_argument("--out", required=True, metavar="DIR", help="the shard folder")
    parser.add_argument(
        "--nodes",
        type=positive_int,
        default=10_000,
        help=f"--dataset {SYNTHETIC}: the number of nodes (default: 10000)",
    )
    add_seed(parser, "METIS / random-split seed, and the synthetic graph's (default: 0)")
    add_overwrite(parser)
    parser.set_defaults(func=run, out_kind="folder")


def _load(args: argparse.Namespace):
    if args.dataset == SYNTHETIC:
        from gnnkit.distributed.synthetic import power_law_graph

        return power_law_graph(args.nodes, seed=args.seed)
    from torch_geometric.data import Data

    from gnnkit.data import registry

    data = registry.load(args.dataset, **data_kwargs(args))
    if not isinstance(data, Data):  # an OGB node dataset
        data = data[0] if len(data) == 1 else data
    if not isinstance(data, Data) or getattr(data, "train_mask", None) is None:
        raise InputError(
            f"--dataset {args.dataset} is not a node-classification graph with split masks; "
            f"choose one such as cora, or {SYNTHETIC}"
        )
    return data


def run(args: argparse.Namespace) -> int:
    """Cut the shards, holding the lock of ``--out`` so two commands never write one folder;
    a folder that holds shards is refused before the dataset loads, unless ``--overwrite``."""
    from gnnkit.distributed.shards import claim_shard_folder
    from gnnkit.utils.locks import folder_lock

    if not args.overwrite:
        claim_shard_folder(args.out)
    with folder_lock(args.out, option="--out"):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    data = _load(args)
    name = f"{SYNTHETIC}-{args.nodes}-{args.seed}" if args.dataset == SYNTHETIC else args.dataset
    manifest = partition_dataset(
        data,
        args.out,
        args.parts,
        dataset=name,
        method=args.method,
        seed=args.seed,
        overwrite=args.overwrite,
    )
    rows = [
        (p, s["num_nodes"], s["num_halo"], s["num_edges"], s["file"])
        for p, s in enumerate(manifest["shards"])
    ]
    print(format_table(["part", "nodes", "halo", "in-edges", "file"], rows))
    halo = sum(s["num_halo"] for s in manifest["shards"])
    print(
        f"\n{name}: {manifest['num_nodes']:,} nodes in {args.parts} parts ({args.method}), "
        f"halo {halo:,} nodes ({halo / max(manifest['num_nodes'], 1):.1%}); shards in {args.out}"
    )
    print(
        f"train: torchrun --nproc-per-node {args.parts} -m gnnkit.distributed --shards {args.out}"
    )
    return 0
