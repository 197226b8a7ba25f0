"""Collect ``gnnkit bench graph --json`` results into ``benchmarks/results/ogbg.{json,md}``.

Each argument is the JSON one ``gnnkit bench graph ... --compare pyg --json PATH`` run wrote.
A run replaces the entry of its dataset and model in ``--json`` (entries of other datasets and
models are kept), then the markdown table is rebuilt from the whole collection.

Run:
    python benchmarks/ogbg_table.py RUN.json [RUN.json ...] \\
        [--json benchmarks/results/ogbg.json] [--markdown benchmarks/results/ogbg.md] [--notes MD]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.tables import collection_parser, read_collection
from gnnkit.train.graphprop import metric_direction
from gnnkit.utils.io import atomic_write_json, atomic_write_text

HEADER = """# OGB molecular property prediction: gnnkit against PyG

OGB's `examples/graphproppred/mol` protocol (`gnnkit.train.graphprop`): AtomEncoder, 5 layers
of 300, batch norm, ReLU, dropout 0.5, mean pooling, linear head, batches of 32 molecules,
Adam 1e-3; test score at the best validation epoch (OGB's Evaluator), mean ± sample std over
seeds. Both implementations train the same seeds through the same loop, stepped in turn epoch
by epoch in one process (1 torch thread). Epoch time: median over all epochs of all runs
(training pass plus evaluation of the validation and test graphs). Speedup = PyG's median
epoch time / gnnkit's. Bond features: summed onto the receiving atoms before each layer for
both implementations (gnnkit's and PyG's GCNConv/GATConv take no edge features; see
`gnnkit/models/graph.py`), so scores are comparable with each other, not with OGB's
leaderboard (its GCN puts the bond embedding inside each message).
"""


def _key(entry: dict[str, Any]) -> str:
    return f"{entry['dataset']}/{entry['model']}"


def _row(entry: dict[str, Any]) -> str:
    g, p = entry["gnnkit"], entry["pyg"]
    better = "higher" if metric_direction(entry["metric"]) == "max" else "lower"
    verdict = "yes" if entry["within_one_std"] else "**no**"
    return (
        f"| {entry['dataset']} | {entry['model'].upper()} | {entry['metric']} ({better} is "
        f"better) | {entry['runs']} x {entry['epochs']} | {g['test_mean']:.4f} ± "
        f"{g['test_std']:.4f} | {p['test_mean']:.4f} ± {p['test_std']:.4f} | {verdict} | "
        f"{1000 * g['epoch_s_median']:.0f} ms | {1000 * p['epoch_s_median']:.0f} ms | "
        f"**{entry['speedup']:.2f}x** |"
    )


MODEL_ORDER = ("gcn", "gcn-virtual", "gat", "gat-virtual")


def markdown(entries: dict[str, dict[str, Any]], notes: str = "") -> str:
    """The table of ``entries`` (GCN first), commands, plots, machines, then ``notes``."""
    ordered = sorted(
        entries.values(),
        key=lambda e: (
            MODEL_ORDER.index(e["model"]) if e["model"] in MODEL_ORDER else 9,
            e["dataset"],
        ),
    )
    lines = [
        HEADER,
        "| dataset | model | metric | runs x epochs | gnnkit test | PyG test | within one PyG "
        "std or better | gnnkit epoch | PyG epoch | speedup |",
        "|---|---|---|---:|---:|---:|---|---:|---:|---:|",
        *(_row(e) for e in ordered),
        "",
        "Targets: gnnkit within one standard deviation of the PyG reference or better on each "
        "dataset, and faster per epoch. Per-seed test scores are in `ogbg.json`.",
        "",
        "Commands (`GNNKIT_MIRROR=/work/shared/datasets`), then this script on their JSON:",
        "",
        "```",
    ]
    for e in ordered:
        stem = e["dataset"].removeprefix("ogbg-")
        lines.append(
            f"gnnkit bench graph --dataset {e['dataset']} --model {e['model']} --runs "
            f"{e['runs']} --epochs {e['epochs']} --compare pyg --threads 1 --json ... --plot "
            f"benchmarks/results/ogbg_{stem}_{e['model']}.png"
        )
    lines += [
        "```",
        "",
        "Plots: `ogbg_<dataset>_<model>.png` (training loss and validation/test score per "
        "epoch; light per seed, dark mean).",
        "",
        "Machines: "
        + "; ".join(
            sorted(
                {
                    f"{e['env']['cpu']}, {e['env']['threads']} thread(s), {e['env']['device']}, "
                    f"torch {e['env']['torch']}, PyG {e['env']['torch_geometric']}"
                    for e in ordered
                }
            )
        )
        + ".",
        "",
    ]
    if notes:
        lines += [notes.strip(), ""]
    return "\n".join(lines)


def main() -> None:
    parser = collection_parser(__doc__, "graph", "ogbg")
    parser.add_argument("--notes", type=Path, help="markdown appended below the table")
    args = parser.parse_args()
    entries = read_collection(args.json)
    for path in args.runs:
        entry = json.loads(path.read_text())
        if "pyg" not in entry:
            parser.error(f"{path} has no PyG comparison (run with --compare pyg)")
        entries[_key(entry)] = entry
    atomic_write_json(args.json, entries)
    notes = args.notes.read_text() if args.notes else ""
    atomic_write_text(args.markdown, markdown(entries, notes))
    print(f"wrote {args.json} and {args.markdown} ({len(entries)} entries)")


if __name__ == "__main__":
    main()
