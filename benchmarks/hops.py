"""Hop distances from many sources on a large random graph: gnnkit against networkx.

gnnkit's ``hop_distances`` runs scipy's csgraph BFS in C; networkx's
``single_source_shortest_path_length`` is the reference, run on the same sources in the same
process (timed on ``--nx-sources`` of them and reported per source and extrapolated, since a
full networkx run takes minutes). Results agree exactly on the sources both ran.

Run:
    python benchmarks/hops.py [--nodes 100000] [--edges 1000000] [--sources 100] [--json PATH]
Writes benchmarks/results/hops.md (and the JSON when asked).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import networkx as nx
import torch
from _collect import RESULTS, run_environment, script_parser, write_outputs

from gnnkit.graph import hop_distances


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--edges", type=int, default=1_000_000)
    parser.add_argument("--sources", type=int, default=100)
    parser.add_argument("--nx-sources", type=int, default=10, help="sources timed with networkx")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path, default=RESULTS / "hops.md")
    args = parser.parse_args()

    generator = torch.Generator().manual_seed(0)
    edge_index = torch.randint(0, args.nodes, (2, args.edges), generator=generator)
    sources = torch.randperm(args.nodes, generator=generator)[: args.sources].tolist()

    hop_distances(edge_index, args.nodes, sources=sources[:2])  # warm-up
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        hops = hop_distances(edge_index, args.nodes, sources=sources)
        times.append(time.perf_counter() - start)
    gnnkit_s = statistics.median(times)

    graph = nx.DiGraph()
    graph.add_nodes_from(range(args.nodes))
    graph.add_edges_from(edge_index.t().tolist())
    start = time.perf_counter()
    for row, source in enumerate(sources[: args.nx_sources]):
        lengths = nx.single_source_shortest_path_length(graph, source)
        expected = torch.full((args.nodes,), -1, dtype=torch.long)
        expected[list(lengths)] = torch.tensor(list(lengths.values()))
        assert torch.equal(hops[row], expected), "gnnkit and networkx disagree"
    nx_per_source = (time.perf_counter() - start) / args.nx_sources
    nx_total = nx_per_source * args.sources

    result = {
        "nodes": args.nodes,
        "edges": args.edges,
        "sources": args.sources,
        "gnnkit_s_median": round(gnnkit_s, 3),
        "gnnkit_ms_per_source": round(1000 * gnnkit_s / args.sources, 2),
        "networkx_ms_per_source": round(1000 * nx_per_source, 1),
        "networkx_s_extrapolated": round(nx_total, 1),
        "speedup": round(nx_total / gnnkit_s, 1),
        "env": run_environment(),
    }
    env = result["env"]
    table = f"""# Hop distances from {args.sources} sources

Random directed graph, {args.nodes:,} nodes, {args.edges:,} edges (seed 0); `hop_distances(edge_index,
sources=...)` (scipy csgraph BFS) against networkx `single_source_shortest_path_length` in the same
process, which agrees exactly on the {args.nx_sources} sources it ran (its total is extrapolated per source).

| implementation | time for {args.sources} sources | per source |
|---|---:|---:|
| gnnkit | {gnnkit_s:.2f} s (median of {args.repeats}) | {1000 * gnnkit_s / args.sources:.1f} ms |
| networkx | {nx_total:.1f} s (extrapolated) | {1000 * nx_per_source:.0f} ms |

Speedup: **{nx_total / gnnkit_s:.1f}x**.

Machine: {env["cpu"]}, {env["threads"]} threads; torch {env["torch"]}, PyG {env["torch_geometric"]}, {env["date"]}.
Command: `python benchmarks/hops.py --nodes {args.nodes} --edges {args.edges} --sources {args.sources}`
"""
    print(table)
    write_outputs(result, json_path=args.json, markdown_path=args.markdown, markdown=lambda: table)


if __name__ == "__main__":
    main()
