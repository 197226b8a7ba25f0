"""``gnnkit demo``: what ``make demo`` runs for a newcomer.

Obtains Cora (data root, mirror or download; the embedded karate club when none works) and
shows how far information travels by message passing: the reference report's labelled chain,
then the receptive field of a Cora node layer by layer.
"""

from __future__ import annotations

import argparse
import logging

from gnnkit.cliutils import data_kwargs, data_options, format_table
from gnnkit.data import load
from gnnkit.errors import DatasetError
from gnnkit.graph import from_edge_list, hop_distances, layers_to_reach, receptive_field

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", parents=[data_options()], help="the newcomer's demo (what `make demo` runs)"
    )
    parser.set_defaults(func=run)


def load_demo_graph(args: argparse.Namespace):
    """Cora, or the embedded karate club (clearly labelled) when Cora cannot be obtained."""
    try:
        return "cora", load("cora", **data_kwargs(args))
    except DatasetError as exc:
        print(f"Cora is not available here:\n{exc}\n")
        print("Running the same pipeline on the embedded karate club instead (34 nodes).\n")
        return "karate", load("karate")


def run(args: argparse.Namespace) -> int:
    edge_index, labels = from_edge_list(["A-B", "B-C", "C-D", "D-E"])
    layers = layers_to_reach(edge_index, labels.index("A"), labels.index("E"))
    print(f"Chain A-B-C-D-E: information from A reaches E after {layers} message-passing layers.\n")

    name, data = load_demo_graph(args)
    print(
        f"{name}: {data.num_nodes:,} nodes, {data.edge_index.size(1):,} directed edges, {data.num_classes} classes"
    )
    node = 0
    rows = []
    for k in range(1, 5):
        rows.append((k, receptive_field(data.edge_index, node, k, data.num_nodes).numel()))
    print(f"Receptive field of node {node} (nodes whose features reach it after k layers):")
    print(format_table(["layers k", "nodes"], rows, "rr"))
    hops = hop_distances(data.edge_index, data.num_nodes, sources=[node])[0]
    reachable = hops[hops >= 0]
    print(
        f"From node {node}: {reachable.numel() - 1:,} nodes reachable, farthest {int(reachable.max())} hops away; "
        f"{int((hops < 0).sum()):,} nodes never reached (other connected components)."
    )
    return 0
