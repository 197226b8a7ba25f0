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
    bounded_int,
    data_kwargs,
    data_options,
    positive_int,
)
from gnnkit.distributed import PARTITION_METHODS, partition_dataset
from gnnkit.errors import InputError
from gnnkit.utils.table import format_table

#: ``--dataset synthetic``'s graph: a power-law graph of ``--nodes`` nodes.
SYNTHETIC = "synthetic"
#: ``--nodes``' default and bounds. Drawing the graph takes about 1.5 GB per million nodes
#: (measured: 1.6 GB peak for 10**6), before the partition and the shards; 10**7 nodes is
#: already larger than ogbn-products (2.4 million).
DEFAULT_NODES, MIN_NODES, MAX_NODES = 10_000, 2, 10_000_000


#: argparse type of ``--nodes``: an integer in [:data:`MIN_NODES`, :data:`MAX_NODES`].
node_count = bounded_int(
    MIN_NODES, MAX_NODES, "a number of nodes (about 1.5 GB of memory per million)"
)


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
        type=node_count,
        default=None,  # None: not given (DEFAULT_NODES), so another dataset can refuse it
        help=f"--dataset {SYNTHETIC} only: the number of nodes, {MIN_NODES} to {MAX_NODES:_} "
        f"(default: {DEFAULT_NODES})",
    )
    add_seed(parser, "METIS / random-split seed, and the synthetic graph's (default: 0)")
    add_overwrite(parser)
    parser.set_defaults(func=run, out_kind="folder")


def check_dataset(args: argparse.Namespace) -> None:
    """Refuse, before anything loads or is written, an unknown dataset, one that is not a
    single node graph (from the registry's kind), and ``--nodes`` for any but synthetic."""
    if args.dataset == SYNTHETIC:
        return
    if args.nodes is not None:
        raise InputError(
            f"--nodes sets the size of --dataset {SYNTHETIC} only; --dataset {args.dataset} "
            "has its own nodes: drop --nodes"
        )
    from gnnkit.data import DATASETS, get_spec

    spec = get_spec(args.dataset)
    if spec.kind != "node":
        names = ", ".join(name for name, s in DATASETS.items() if s.kind == "node")
        raise InputError(
            f"dataset {args.dataset!r} is a {spec.kind} dataset, not one graph to cut; "
            f"partition needs a node dataset ({names}) or {SYNTHETIC!r}"
        )


def _nodes(args: argparse.Namespace) -> int:
    return DEFAULT_NODES if args.nodes is None else args.nodes


def _load(args: argparse.Namespace):
    if args.dataset == SYNTHETIC:
        from gnnkit.distributed.synthetic import power_law_graph

        return power_law_graph(_nodes(args), seed=args.seed)
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
    the dataset's options (:func:`check_dataset`), then a folder that holds shards, are refused
    before the dataset loads, unless ``--overwrite``."""
    from gnnkit.distributed.shards import claim_shard_folder
    from gnnkit.utils.locks import folder_lock

    check_dataset(args)
    if not args.overwrite:
        claim_shard_folder(args.out)
    with folder_lock(args.out, option="--out"):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    data = _load(args)
    name = f"{SYNTHETIC}-{_nodes(args)}-{args.seed}" if args.dataset == SYNTHETIC else args.dataset
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
