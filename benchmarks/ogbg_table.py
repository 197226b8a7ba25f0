"""Collect ``gnnkit bench graph --json`` results into ``benchmarks/results/ogbg.{json,md}``.

Each argument is the JSON one ``gnnkit bench graph ... --compare pyg --json PATH`` run wrote.
A run goes into the entry of its dataset and model in ``--json`` (entries of other datasets and
models are kept), then the markdown table is rebuilt from the whole collection:

- a run of other seeds (``--seed 4 --runs 6`` after ``--runs 4``) of the same protocol on the
  same machine **adds** its seeds: the per-seed scores and per-epoch times of both are joined
  and summarised again exactly as one run of all the seeds would be;
- a run of all the entry's seeds (or more) **replaces** it (a rerun supersedes);
- any other run is refused (some seeds in both, a different protocol, machine or software, or
  an entry written before per-seed epoch times were recorded), unless ``--replace`` says to
  drop the entry.

Run:
    python benchmarks/ogbg_table.py RUN.json [RUN.json ...] [--replace] \\
        [--json benchmarks/results/ogbg.json] [--markdown benchmarks/results/ogbg.md] [--notes MD]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from _collect import collection_parser, read_collection

from gnnkit.bench.graph import join_graph_summaries, within_one_std
from gnnkit.train.graph import metric_direction
from gnnkit.utils.io import atomic_write_json, atomic_write_text

HEADER = """# OGB molecular property prediction: gnnkit against PyG

OGB's `examples/graphproppred/mol` protocol (`gnnkit.train.graph`): AtomEncoder, 5 layers
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


PROTOCOL = ("epochs", "batch_size", "emb_dim", "lr", "compare", "device")
"""Options two runs must share for their seeds to be joined."""


def _parts(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs an entry was built from: first seed, number of seeds and date of each."""
    return entry.get("parts") or [
        {"seed": entry["seeds"][0], "runs": len(entry["seeds"]), "date": entry["env"]["date"]}
    ]


def _why_not_joinable(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """Why ``new``'s seeds cannot join ``old``'s, or ``None`` when they can."""
    for name, entry in (("the collected entry", old), ("the run", new)):
        if any("epoch_s" not in entry[impl] for impl in ("gnnkit", "pyg")):
            return f"{name} has no per-seed epoch times (written by an older gnnkit)"
    differ = [key for key in PROTOCOL if old["options"].get(key) != new["options"].get(key)]
    differ += [
        f"env.{key}"
        for key in sorted(old["env"].keys() | new["env"].keys())
        if key != "date" and old["env"].get(key) != new["env"].get(key)
    ]
    return f"they differ in {', '.join(differ)}" if differ else None


def join(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """One entry holding the seeds of ``old`` and then of ``new`` (disjoint, joinable)."""
    joined = {**old, "parts": _parts(old) + _parts(new), "seeds": old["seeds"] + new["seeds"]}
    for impl in ("gnnkit", "pyg"):
        joined[impl] = join_graph_summaries(old[impl], new[impl])
    g, p = joined["gnnkit"], joined["pyg"]
    joined["speedup"] = p["epoch_s_median"] / g["epoch_s_median"]
    joined["within_one_std"] = within_one_std(g, p, joined["metric"])
    joined["runs"] = len(joined["seeds"])
    joined["options"] = {**old["options"], "runs": joined["runs"]}
    return joined


def add_run(
    entries: dict[str, dict[str, Any]], new: dict[str, Any], *, replace: bool = False
) -> str:
    """Put ``new`` into ``entries`` (see the module docstring); returns what was done.

    Raises:
        ValueError: ``new`` neither covers its entry's seeds nor can join them, and
            ``replace`` is false.
    """
    key = _key(new)
    old = entries.get(key)
    if old is None or replace or set(new["seeds"]) >= set(old["seeds"]):
        entries[key] = new
        return f"{key}: {'replaced' if old else 'added'}, seeds {new['seeds']}"
    shared = sorted(set(old["seeds"]) & set(new["seeds"]))
    reason = f"seeds {shared} are in both" if shared else _why_not_joinable(old, new)
    if reason:
        raise ValueError(
            f"{key}: cannot add seeds {new['seeds']} to the collected seeds {old['seeds']}: "
            f"{reason}. Rerun all the seeds in one run, or pass --replace to drop the "
            "collected entry."
        )
    entries[key] = join(old, new)
    return f"{key}: seeds {new['seeds']} joined to {old['seeds']}"


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
        lines += [
            f"gnnkit bench graph --dataset {e['dataset']} --model {e['model']} --seed "
            f"{part['seed']} --runs {part['runs']} --epochs {e['epochs']} --compare pyg "
            f"--threads 1 --json ... --plot benchmarks/results/ogbg_{stem}_{e['model']}.png"
            for part in _parts(e)
        ]
    lines += [
        "```",
        "",
        "Plots: `ogbg_<dataset>_<model>.png` (training loss and validation/test score per "
        "epoch; light per seed, dark mean; where a row joins several runs, the seeds of the "
        "last one).",
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
    parser.add_argument(
        "--replace",
        action="store_true",
        help="a run replaces its dataset and model's entry instead of adding its seeds",
    )
    args = parser.parse_args()
    entries = read_collection(args.json)
    for path in args.runs:
        entry = json.loads(path.read_text())
        if "pyg" not in entry:
            parser.error(f"{path} has no PyG comparison (run with --compare pyg)")
        try:
            print(add_run(entries, entry, replace=args.replace))
        except ValueError as err:
            parser.error(f"{path}: {err}")
    atomic_write_json(args.json, entries)
    notes = args.notes.read_text() if args.notes else ""
    atomic_write_text(args.markdown, markdown(entries, notes))
    print(f"wrote {args.json} and {args.markdown} ({len(entries)} entries)")


if __name__ == "__main__":
    main()
