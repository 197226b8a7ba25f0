"""The fused GAT kernel (:func:`gnnkit.ops.fused_gat`) against gnnkit's unfused lean path and PyG.

Three implementations, interleaved repetition by repetition in one process on one thread,
timed in process CPU time (one thread, so it is the time the work took, whatever else the
shared machine runs):

- ``gnnkit-fused``: :class:`gnnkit.nn.GATConv` with the fused kernel (numba on CPU),
- ``gnnkit-torch``: the same layer on its unfused lean path (``GNNKIT_FUSED_GAT=0``, read per
  call: gathers, edge softmax, dropout and a CSR matmul on the head-interleaved graph),
- ``pyg``: PyG's ``GATConv`` on an ``edge_index`` with self-loops added once
  (``add_self_loops=False``), the ``pyg-tuned`` configuration of issue 23.

Measured: one GATConv forward + backward in training mode at Cora size (2,708 nodes, 13,264
edges with loops, 64 -> 8 x 8 heads, dropout 0.6) and at ogbn-arxiv size (a power-law graph of
169,343 nodes and 1,166,243 edges, 128 -> 32 x 4 heads, dropout 0.6), and a whole Cora GAT
training epoch (gnnkit's recipe and ``pyg-tuned``, from ``benchmarks/dispatch.py``) with its
ATen operator count.

Run::

    GNNKIT_MIRROR=/work/shared/datasets python benchmarks/gat_kernel.py

Writes ``benchmarks/results/gat_kernel.json`` and ``.md`` (``--no-write`` to print only).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from _collect import (
    RESULTS,
    command_line,
    load_average,
    machine_line,
    markdown_report,
    run_environment,
    script_parser,
    write_outputs,
)
from scale_data import ARXIV_EDGES, ARXIV_NODES, power_law_graph

IMPLS = ("gnnkit-fused", "gnnkit-torch", "pyg")


@contextlib.contextmanager
def fused(on: bool) -> Iterator[None]:
    """gnnkit's GATConv with (``on``) or without its fused kernel inside the block."""
    previous = os.environ.get("GNNKIT_FUSED_GAT")
    os.environ["GNNKIT_FUSED_GAT"] = "1" if on else "0"
    try:
        yield
    finally:
        if previous is None:
            del os.environ["GNNKIT_FUSED_GAT"]
        else:
            os.environ["GNNKIT_FUSED_GAT"] = previous


def _layer_step(impl: str, nodes: int, edge_index: Any, dims: tuple[int, int, int]) -> Callable:
    """One forward + backward of a training GATConv, as a function of no arguments."""
    from torch_geometric.nn import GATConv as PygGATConv
    from torch_geometric.utils import add_remaining_self_loops

    from gnnkit.nn import GATConv

    fin, channels, heads = dims
    torch.manual_seed(0)
    x = torch.randn(nodes, fin, requires_grad=True)
    if impl == "pyg":
        looped, _ = add_remaining_self_loops(edge_index, num_nodes=nodes)
        layer: Any = PygGATConv(fin, channels, heads=heads, dropout=0.6, add_self_loops=False)
        graph = looped
    else:
        layer = GATConv(fin, channels, heads=heads, dropout=0.6)
        graph = edge_index
    layer.train()
    on = impl == "gnnkit-fused"

    def step() -> None:
        with fused(on):
            out = layer(x, graph)
            out.sum().backward()

    return step


def time_layer(nodes: int, edge_index: Any, dims: tuple[int, int, int], reps: int) -> dict:
    """Median seconds of a forward + backward per implementation, interleaved."""
    steps = {impl: _layer_step(impl, nodes, edge_index, dims) for impl in IMPLS}
    for step in steps.values():  # warm up: caches, kernel compile or load
        step()
        step()
    times: dict[str, list[float]] = {impl: [] for impl in IMPLS}
    for r in range(reps):
        for impl in IMPLS if r % 2 == 0 else IMPLS[::-1]:
            tick = time.process_time()
            steps[impl]()
            times[impl].append(time.process_time() - tick)
    return {impl: statistics.median(t) for impl, t in times.items()}


def time_epochs(data: Any, runs: int, epochs: int) -> dict:
    """Median epoch seconds (median over each run's epochs, then over runs) and ATen ops."""
    import dispatch

    impls = {"gnnkit-fused": "gnnkit", "gnnkit-torch": "gnnkit", "pyg": "pyg-tuned"}
    ops = {}
    for impl, name in impls.items():
        with fused(impl == "gnnkit-fused"):
            ops[impl] = sum(dispatch.count_ops(name, "gat", data).values())
    medians: dict[str, list[float]] = {impl: [] for impl in impls}
    for r in range(runs):
        for impl in IMPLS if r % 2 == 0 else IMPLS[::-1]:
            with fused(impl == "gnnkit-fused"):
                run = dispatch._session(impls[impl], "gat", data, r, epochs)
                times = []
                for _ in range(epochs):
                    tick = time.process_time()
                    run.step()
                    times.append(time.process_time() - tick)
            medians[impl].append(statistics.median(times[1:]))
    return {
        impl: {"epoch_s": statistics.median(m), "ops_per_epoch": ops[impl]}
        for impl, m in medians.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = script_parser(__doc__)
    parser.add_argument("--reps", type=int, default=30, help="layer repetitions (Cora)")
    parser.add_argument("--arxiv-reps", type=int, default=7, help="layer repetitions (arxiv)")
    parser.add_argument("--runs", type=int, default=5, help="Cora epoch runs")
    parser.add_argument("--epochs", type=int, default=100, help="epochs per run")
    parser.add_argument("--out", type=Path, default=RESULTS / "gat_kernel")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from gnnkit.data import load

    start = load_average()
    data = load("cora")
    cora_ei = data.edge_index
    rows: dict[str, Any] = {}
    rows["cora layer"] = time_layer(data.num_nodes, cora_ei, (64, 8, 8), args.reps)
    print("cora layer", rows["cora layer"])
    arxiv_ei = power_law_graph(ARXIV_NODES, ARXIV_EDGES)
    rows["arxiv layer"] = time_layer(ARXIV_NODES, arxiv_ei, (128, 32, 4), args.arxiv_reps)
    print("arxiv layer", rows["arxiv layer"])
    epochs = time_epochs(data, args.runs, args.epochs)
    rows["cora epoch"] = {impl: v["epoch_s"] for impl, v in epochs.items()}
    ops = {impl: v["ops_per_epoch"] for impl, v in epochs.items()}
    print("cora epoch", rows["cora epoch"], ops)
    env = run_environment("cpu", 1)
    payload = {"env": env, "seconds": rows, "ops_per_epoch": ops, "command": command_line()}
    if args.no_write:
        return 0

    def markdown() -> str:
        body = [
            "| what | gnnkit-fused (ms) | gnnkit-torch (ms) | pyg (ms) | fused vs torch path "
            "| fused vs pyg |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for what, row in rows.items():
            f, t, p = (1e3 * row[impl] for impl in IMPLS)
            body.append(f"| {what} | {f:.3f} | {t:.3f} | {p:.3f} | {t / f:.2f}x | {p / f:.2f}x |")
        body += [
            "",
            f"ATen operators per Cora epoch: gnnkit-fused {ops['gnnkit-fused']}, gnnkit-torch "
            f"{ops['gnnkit-torch']}, pyg-tuned {ops['pyg']}.",
        ]
        intro = (
            "GATConv forward + backward (training, dropout 0.6) and a whole Cora GAT epoch "
            "(8 heads x 8, dropout 0.6; gnnkit's recipe, and PyG's GATConv with sparse features "
            "and self-loops added once), interleaved in one process; medians of process CPU time "
            "on one thread. `gnnkit-torch` is the same layer with `GNNKIT_FUSED_GAT=0`."
        )
        machine = machine_line(env, start, load_average(), "a shared machine: read ratios")
        return markdown_report(
            "Fused GAT kernel", intro, body, machine=machine, command=command_line()
        )

    write_outputs(
        payload,
        json_path=args.out.with_suffix(".json"),
        markdown_path=args.out.with_suffix(".md"),
        markdown=markdown,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
