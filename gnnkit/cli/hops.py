"""``gnnkit hops``: adjacency matrix and hop distances of a small labelled graph.

A K-layer message-passing network mixes each node's features with those of its K-hop
neighbourhood and no further (Kipf & Welling, "Semi-Supervised Classification with Graph
Convolutional Networks", arXiv 1609.02907; Gilmer et al., "Neural Message Passing for Quantum
Chemistry", arXiv 1704.01212), so the hop distance from one node to another is the number of
layers information needs to travel between them. The adjacency printed is GCN's
``A + lambda I`` (:func:`gnnkit.graph.adjacency`).
"""

from __future__ import annotations

import argparse

from gnnkit.cli import add_command, add_outputs, finite_float, write_json
from gnnkit.errors import InputError
from gnnkit.graph import adjacency, from_edge_list, hop_distances, parse_edge_string
from gnnkit.utils.table import format_table


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(
        subparsers,
        "hops",
        "Print the adjacency matrix with self-loops and the hop-distance matrix of a small "
        "labelled graph, and how many message-passing layers information needs between two "
        "nodes (a K-layer GNN sees each node's K-hop neighbourhood).",
    )
    parser.add_argument("--edges", required=True, help='edges such as "A-B,B-C,C-D,D-E"')
    parser.add_argument("--directed", action="store_true", help="edges point from U to V only")
    parser.add_argument(
        "--from", dest="source", metavar="LABEL", help="the node information starts at"
    )
    parser.add_argument(
        "--to", dest="target", metavar="LABEL", help="the node information must reach"
    )
    parser.add_argument(
        "--self-loop-weight",
        type=finite_float,
        default=1.0,
        metavar="W",
        help="weight lambda of the self-loops in A + lambda I (default: 1)",
    )
    add_outputs(parser, json="also write the result as JSON")
    parser.set_defaults(func=run)


def _label_index(labels: list[str], label: str, option: str) -> int:
    if label not in labels:
        raise InputError(
            f"{option} {label!r} is not a node of the graph; known labels: {', '.join(labels)}"
        )
    return labels.index(label)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3g}"


def run(args: argparse.Namespace) -> int:
    edge_index, labels = from_edge_list(parse_edge_string(args.edges), directed=args.directed)
    if (args.source is None) != (args.target is None):
        raise InputError("give both --from and --to (or neither)")
    endpoints = None
    if args.source is not None:
        endpoints = (
            _label_index(labels, args.source, "--from"),
            _label_index(labels, args.target, "--to"),
        )
    num_nodes = len(labels)
    matrix = adjacency(edge_index, num_nodes, self_loop_weight=args.self_loop_weight)
    hops = hop_distances(edge_index, num_nodes)

    weight = _number(args.self_loop_weight)
    loops = f"+ {weight}" if args.self_loop_weight >= 0 else f"- {_number(-args.self_loop_weight)}"
    print(f"Adjacency matrix A {loops} I (row i, column j: weight of the edge j -> i):")
    print(
        format_table(
            ["", *labels],
            [[lab, *map(_number, row)] for lab, row in zip(labels, matrix.tolist(), strict=True)],
            "l" + "r" * num_nodes,
            rule=False,
        )
    )
    print()
    print("Hop distances (row: from, column: to; - = unreachable):")
    hop_rows = [
        [lab, *(str(h) if h >= 0 else "-" for h in row)]
        for lab, row in zip(labels, hops.tolist(), strict=True)
    ]
    print(format_table(["", *labels], hop_rows, "l" + "r" * num_nodes, rule=False))

    layers = None
    if endpoints is not None:
        layers = int(hops[endpoints])
        print()
        if layers < 0:
            print(f"Information from {args.source} never reaches {args.target}: there is no path.")
        else:
            plural = "layer" if layers == 1 else "layers"
            print(
                f"Information from {args.source} reaches {args.target} after {layers} message-passing {plural}."
            )

    if args.json:
        write_json(
            args.json,
            {
                "labels": labels,
                "directed": bool(args.directed),
                "self_loop_weight": args.self_loop_weight,
                "adjacency": matrix.tolist(),
                "hops": hops.tolist(),
                "from": args.source,
                "to": args.target,
                "layers": layers,
            },
        )
    return 0
