"""``gnnkit data``: list, fetch and verify the registered datasets."""

from __future__ import annotations

import argparse

from torch_geometric.data import Data, Dataset

from gnnkit.cli import add_command, data_kwargs, data_options
from gnnkit.data import registry
from gnnkit.data.store import data_root, mirror_root
from gnnkit.utils.table import format_table


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(subparsers, "data")
    commands = parser.add_subparsers(dest="data_command", metavar="COMMAND", required=True)
    common = data_options()

    listing = commands.add_parser(
        "list", parents=[common], help="every dataset with its kind and status"
    )
    listing.set_defaults(func=run_list)

    fetch = commands.add_parser(
        "fetch",
        parents=[common],
        help="obtain a dataset (data root, mirror, then upstream) and load it",
    )
    fetch.add_argument(
        "names", nargs="+", metavar="NAME", help="dataset name(s), see `gnnkit data list`"
    )
    fetch.set_defaults(func=run_fetch)

    verify = commands.add_parser(
        "verify", parents=[common], help="check files in the data root against checksums"
    )
    verify.add_argument(
        "names", nargs="*", metavar="NAME", help="dataset name(s) (default: every present one)"
    )
    verify.set_defaults(func=run_verify)


def _check_options(args: argparse.Namespace) -> None:
    """Refuse a bad --data-root or --mirror before any work, even where it is not needed."""
    data_root(args.data_root)
    if args.mirror is not None:
        mirror_root(args.mirror)


def run_list(args: argparse.Namespace) -> int:
    _check_options(args)
    rows = [
        (
            spec.name,
            spec.kind,
            registry.status(spec.name, root=args.data_root, mirror=args.mirror),
            spec.description,
        )
        for spec in registry.DATASETS.values()
    ]
    print(format_table(["name", "kind", "status", "description"], rows))
    print(f"\ndata root: {data_root(args.data_root)}")
    return 0


def _summary(obj: object) -> str:
    if isinstance(obj, str):
        return f"{len(obj):,} characters, {len(set(obj))} distinct"
    if isinstance(obj, Data):
        return f"{obj.num_nodes:,} nodes, {obj.edge_index.size(1):,} directed edges"
    if isinstance(obj, Dataset):
        data = obj[0]
        if len(obj) == 1:
            return f"1 graph, {data.num_nodes:,} nodes, {data.edge_index.size(1):,} directed edges"
        return f"{len(obj):,} graphs"
    return str(obj)


def run_fetch(args: argparse.Namespace) -> int:
    _check_options(args)
    for name in args.names:
        obj = registry.load(name, **data_kwargs(args))
        print(f"{name}: ready ({_summary(obj)})")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    _check_options(args)
    names = args.names or [
        s.name
        for s in registry.DATASETS.values()
        if registry.status(s.name, root=args.data_root) == "present"
    ]
    if not names:
        print(
            f"no dataset is present in {data_root(args.data_root)}; fetch one with `gnnkit data fetch NAME`"
        )
        return 0
    failed = False
    rows = []
    for name in names:
        spec = registry.get_spec(name)
        if spec.embedded:
            rows.append((name, "embedded", "-"))
            continue
        report = registry.verify(name, root=args.data_root)
        if report.trusted:
            verdict = (
                "ok"
                if not report.unknown
                else f"ok ({len(report.unknown)} file(s) without a known checksum)"
            )
        else:
            failed = True
            verdict = f"{len(report.missing)} missing, {len(report.mismatched)} corrupt"
            if report.untrusted:
                verdict += (
                    f", {len(report.untrusted)} untrusted cache file(s) (rebuilt on next load)"
                )
        first_bad = (report.mismatched + report.missing + report.untrusted)[:1]
        rows.append((name, verdict, first_bad[0] if first_bad else "-"))
    print(format_table(["name", "result", "first problem"], rows))
    return 1 if failed else 0
