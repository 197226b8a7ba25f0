"""The fused GAT backward's sender pass on Cora, against a previous revision's kernel source.

On features that stay in cache the backward's pass over the senders (the attention gradient
and the features' gradient of each sender, gathering the receivers' output gradients over
the transposed structure) runs a kernel written out per (heads, channels)
(``gnnkit.ops._gat_feature_sources.sender_grad``). This script compiles that source as it
stood at ``--baseline`` (a git revision of this repository) beside the current one, and
times, on Cora's graph with a self-loop per node, 8 heads x 8 channels and a dropout mask
(GAT's first layer in training):

- ``sender pass``: the whole pass as each revision runs it (the receivers' gradients copied
  heads-last, the kernel, and for the current revision the copy of its heads-last sums back
  to (H, C)),

checking that both give the same bits, interleaved call by call in one process on one
thread (CPU time of the thread, medians).

Run ``python benchmarks/gat_sender_pass.py --baseline REV``; it writes
``benchmarks/results/gat_sender_pass.json`` and ``.md`` (``--no-write``: print only).
"""

from __future__ import annotations

import statistics
import subprocess
import types
from pathlib import Path
from typing import Any

import _collect as collect
import torch
from torch_geometric.utils import add_self_loops, remove_self_loops

from gnnkit.data import load
from gnnkit.ops import CSRGraph, _gat_rows
from gnnkit.ops._jit import as_numpy, run_rows
from gnnkit.ops.random import keep_mask

HEADS, CHANNELS, P = 8, 8, 0.6
ROOT = Path(__file__).resolve().parent.parent


def baseline_sources(revision: str) -> types.ModuleType:
    """``gnnkit/ops/_gat_feature_sources.py`` as it stood at ``revision``, as a module."""
    text = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{revision}:gnnkit/ops/_gat_feature_sources.py"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    module = types.ModuleType("baseline_gat_feature_sources")
    exec(compile(text, f"{revision}:_gat_feature_sources.py", "exec"), module.__dict__)
    return module


def baseline_kernels(revision: str) -> tuple[Any, Any]:
    """The baseline's heads-last copy and sender kernel (8 x 8, dropout), compiled through
    the current machinery with the baseline's source (its self-check skipped: the current
    check expects the current kernel's layout)."""
    old = baseline_sources(revision)
    sources, check = dict(_gat_rows._SOURCES), _gat_rows.self_check
    _gat_rows._SOURCES.update({"sender grad": old.sender_grad, "heads last": old.heads_last})
    _gat_rows.self_check = lambda *args: None
    _gat_rows._dispatcher.cache_clear()
    saved = dict(_gat_rows._COMPILED)
    _gat_rows._COMPILED.clear()
    try:
        copy = _gat_rows._compiled("heads last", HEADS, CHANNELS, False, "float32")
        sender = _gat_rows._compiled("sender grad", HEADS, CHANNELS, True, "float32")
    finally:
        _gat_rows._SOURCES.update(sources)
        _gat_rows.self_check = check
        _gat_rows._dispatcher.cache_clear()
        _gat_rows._COMPILED.clear()
        _gat_rows._COMPILED.update(saved)
    return copy, sender


def cora_case() -> dict[str, Any]:
    """Cora's graph with one self-loop per node, its transposed structure and random inputs."""
    data = load("cora")
    edge_index, _ = remove_self_loops(data.edge_index)
    edge_index, _ = add_self_loops(edge_index, num_nodes=data.num_nodes)
    graph = CSRGraph.from_edge_index(edge_index, data.num_nodes)
    gen = torch.Generator().manual_seed(0)
    nodes, edges = data.num_nodes, graph.num_edges
    torch.manual_seed(0)
    return {
        "transposed": graph.transpose(),
        "xw": torch.randn(nodes, HEADS, CHANNELS, generator=gen),
        "alpha": torch.rand(edges, HEADS, generator=gen),
        "keep": keep_mask((edges, HEADS), P),
        "grad_out": torch.randn(nodes, HEADS, CHANNELS, generator=gen),
    }


def candidates(case: dict[str, Any], revision: str) -> dict[str, Any]:
    """The pass of each revision, each writing its own outputs."""
    colptr, row_t, _, perm_t = case["transposed"]
    xw, alpha, keep, grad_out = case["xw"], case["alpha"], case["keep"], case["grad_out"]
    scale, colptr_np = 1 / (1 - P), as_numpy(colptr)
    outputs = {name: (torch.empty_like(xw), torch.empty_like(alpha)) for name in ("old", "new")}
    copy, sender = baseline_kernels(revision)

    def old() -> None:
        grad_xw, grad_alpha = outputs["old"]
        last = grad_out.new_empty(grad_out.size(0), CHANNELS, HEADS)
        run_rows(copy, grad_out.size(0), grad_out.data_ptr(), last.data_ptr())
        addresses = [t.data_ptr() for t in (colptr, row_t, perm_t, xw, alpha, keep, last)]
        addresses += [grad_xw.data_ptr(), grad_alpha.data_ptr()]
        run_rows(sender, colptr_np, *addresses, scale, alpha.size(0), grad_out.size(0))

    def new() -> None:
        grad_xw, grad_alpha = outputs["new"]
        inputs = (xw, alpha, keep, scale, grad_out, grad_xw, grad_alpha, colptr_np)
        _gat_rows.sender_gradient((colptr, row_t, perm_t), *inputs)

    old(), new()
    same = all(torch.equal(a, b) for a, b in zip(outputs["old"], outputs["new"], strict=True))
    assert same, "the two revisions' sender passes differ"
    return {"baseline": old, "current": new}


def main() -> None:
    parser = collect.script_parser(__doc__)
    parser.add_argument("--baseline", required=True, help="the git revision to compare with")
    parser.add_argument("--reps", type=int, default=400)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = collect.load_average()
    times = collect.interleaved_times(candidates(cora_case(), args.baseline), args.reps)
    env = collect.run_environment(threads=1)
    end = collect.load_average()
    pairs = [b / c for b, c in zip(times["baseline"], times["current"], strict=True)]
    row = {name: 1e6 * statistics.median(t) for name, t in times.items()}
    row["paired_ratio"] = statistics.median(pairs)
    lines = [
        "| what | baseline (us) | current (us) | baseline / current |",
        "|---|---:|---:|---:|",
        f"| sender pass, Cora, 8 heads x 8, dropout | {row['baseline']:.0f} | "
        f"{row['current']:.0f} | **{row['paired_ratio']:.2f}x** |",
    ]
    print(lines[-1])
    if args.no_write:
        return
    title = "The fused GAT backward's sender pass on Cora, against a previous revision's source"
    intro = (
        f"Cora (2,708 nodes, 13,264 edges with a self-loop each), 8 heads x 8 channels, float32, "
        f"a dropout mask (p = {P}), one thread; the baseline is the kernel source of revision "
        f"`{args.baseline}` compiled beside the current one, both passes interleaved call by "
        f"call in one process ({args.reps} calls each), thread CPU time, medians; the ratio is "
        "the median of the paired ratios. Both give the same bits (checked before timing)."
    )
    machine = collect.machine_line(env, start, end, "a shared machine: compare within a row")
    collect.write_outputs(
        {"row": row, "baseline": args.baseline, "environment": env,
         "command": collect.command_line()},
        json_path=collect.RESULTS / "gat_sender_pass.json",
        markdown_path=collect.RESULTS / "gat_sender_pass.md",
        markdown=lambda: collect.markdown_report(
            title, intro, lines, machine=machine, command=collect.command_line()
        ),
    )  # fmt: skip


if __name__ == "__main__":
    main()
