"""The SpMM kernels written per channel count (:mod:`gnnkit.ops._spmm_narrow`) against MKL's.

Candidates, interleaved repetition by repetition in one process on one thread, timed in the
thread's CPU time (medians):

- ``mkl``: torch's CSR ``addmm`` into a preallocated output (int32 indices), the kernel the
  backend used for rows under 32 channels;
- ``rows``: gnnkit's numba row kernel (:mod:`gnnkit.ops._spmm_cpu`: four entries a pass for
  sender rows that fit in cache, one with prefetching otherwise);
- ``narrow``: the kernel written out for the row's channel count.

Shapes: Cora's graph with self-loops (2,708 nodes, 13,264 entries) and its bag-of-words
features (49,216 entries over 1,433 columns, the first layer's product with its weight),
a random graph of ogbl-ddi's size (4,267 nodes, about 2 million entries) and a power-law
graph of ogbn-arxiv's (169,343 nodes, 1,166,243 edges). The transposed rows time the
backward's product ``A^T G`` three ways: gathering the values into the transpose's order for
MKL's kernel or the narrow one, or the narrow kernel's pass over ``A``'s own order
(:func:`gnnkit.ops._spmm_narrow.spmm_transposed`, which the backward takes only while its
output fits in cache). ``same bits`` compares each output with MKL's.

Run ``GNNKIT_MIRROR=/work/shared/datasets python benchmarks/narrow_spmm.py``; it writes
``benchmarks/results/narrow_spmm.json`` and ``.md`` (``--no-write``: print only).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _collect as collect
import scale_data
import torch

from gnnkit import ops
from gnnkit.ops import _spmm_cpu, _spmm_narrow
from gnnkit.ops.matmul import _csr_matrix, _take_edges


def interleaved(candidates: dict[str, Callable[[], Any]], reps: int) -> dict[str, float]:
    """Median thread CPU seconds of each candidate, one call of each per repetition."""
    times = collect.interleaved_times(candidates, reps)
    return {name: statistics.median(t) for name, t in times.items()}


def product_row(graph: ops.CSRGraph, channels: int, reps: int) -> dict[str, Any]:
    """``A X`` for X of ``channels`` channels, the three kernels."""
    gen = torch.Generator().manual_seed(channels)
    values = torch.rand(1, graph.num_edges, generator=gen)
    x = torch.randn(1, graph.num_cols, channels, generator=gen)
    ptr, idx = graph.kernel_indices(False)
    matrix = _csr_matrix(ptr, idx, values, (graph.num_rows, graph.num_cols))
    outs = {name: torch.empty(1, graph.num_rows, channels) for name in ("mkl", "rows", "narrow")}
    seconds = interleaved(
        {
            "mkl": lambda: torch.addmm(outs["mkl"][0], matrix, x[0], beta=0.0, out=outs["mkl"][0]),
            "rows": lambda: _spmm_cpu.spmm(ptr, idx, values, x, outs["rows"]),
            "narrow": lambda: _spmm_narrow.spmm(ptr, idx, values, x, outs["narrow"]),
        },
        reps,
    )
    same = {name: torch.equal(outs[name], outs["mkl"]) for name in ("rows", "narrow")}
    return {"seconds": seconds, "same_bits": same}


def transposed_row(graph: ops.CSRGraph, channels: int, reps: int) -> dict[str, Any]:
    """``A^T G`` for G of ``channels`` channels, from values in ``A``'s CSR order."""
    gen = torch.Generator().manual_seed(channels + 1)
    values = torch.rand(1, graph.num_edges, generator=gen)
    grad = torch.randn(1, graph.num_rows, channels, generator=gen)
    ptr, idx = graph.kernel_indices(False)
    ptr_t, idx_t = graph.kernel_indices(True)
    perm = graph.transpose()[3]
    shape = (graph.num_cols, graph.num_rows)
    outs = {name: torch.empty(1, graph.num_cols, channels) for name in ("mkl", "gather", "pass")}

    def mkl() -> None:
        matrix = _csr_matrix(ptr_t, idx_t, _take_edges(values, perm), shape)
        torch.addmm(outs["mkl"][0], matrix, grad[0], beta=0.0, out=outs["mkl"][0])

    seconds = interleaved(
        {
            "mkl": mkl,
            "gather": lambda: _spmm_narrow.spmm(
                ptr_t, idx_t, _take_edges(values, perm), grad, outs["gather"]
            ),
            "pass": lambda: _spmm_narrow.spmm_transposed(ptr, idx, values, grad, outs["pass"]),
        },
        reps,
    )
    same = {name: torch.equal(outs[name], outs["mkl"]) for name in ("gather", "pass")}
    return {"seconds": seconds, "same_bits": same}


def graphs() -> dict[str, tuple[ops.CSRGraph, int]]:
    """The graphs measured, with their repetition counts (before ``--scale``)."""
    from torch_geometric.utils import add_self_loops

    from gnnkit.data import load

    data = load("cora")
    cora = ops.CSRGraph.from_edge_index(add_self_loops(data.edge_index)[0], data.num_nodes)
    features = ops.CSRGraph.from_sparse(data.x.to_sparse_csr())
    gen = torch.Generator().manual_seed(0)
    ddi = ops.CSRGraph.from_edge_index(torch.randint(0, 4267, (2, 2_135_822), generator=gen), 4267)
    arxiv_nodes = scale_data.ARXIV_NODES
    arxiv = ops.CSRGraph.from_edge_index(
        scale_data.power_law_graph(arxiv_nodes, scale_data.ARXIV_EDGES), arxiv_nodes
    )
    return {
        "Cora graph": (cora, 200),
        "Cora features": (features, 200),
        "ddi size": (ddi, 10),
        "arxiv size": (arxiv, 5),
    }


CHANNELS = {
    "Cora graph": (7, 8, 16, 32, 64),
    "Cora features": (16, 64),
    "ddi size": (16, 64),
    "arxiv size": (8, 16, 32, 48, 64, 96, 128),
}
TRANSPOSED = {"Cora graph": (16,), "Cora features": (16, 64), "arxiv size": (16, 64, 128)}


def markdown_body(rows: list[dict[str, Any]]) -> list[str]:
    body = [
        "| product | channels | mkl (ms) | rows (ms) | narrow (ms) | narrow vs mkl "
        "| narrow vs rows | same bits |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        if row["kind"] != "product":
            continue
        s = row["seconds"]
        bits = "narrow" + (", rows" if row["same_bits"]["rows"] else "")
        bits = bits if row["same_bits"]["narrow"] else "rows only"
        body.append(
            f"| {row['graph']} | {row['channels']} | {1e3 * s['mkl']:.3f} | "
            f"{1e3 * s['rows']:.3f} | {1e3 * s['narrow']:.3f} | "
            f"{s['mkl'] / s['narrow']:.2f}x | {s['rows'] / s['narrow']:.2f}x | {bits} |"
        )
    body += [
        "",
        "| A^T G | channels | gather + mkl (ms) | gather + narrow (ms) | narrow pass (ms) "
        "| pass vs mkl | same bits |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        if row["kind"] != "transposed":
            continue
        s, same = row["seconds"], row["same_bits"]
        body.append(
            f"| {row['graph']} | {row['channels']} | {1e3 * s['mkl']:.3f} | "
            f"{1e3 * s['gather']:.3f} | {1e3 * s['pass']:.3f} | {s['mkl'] / s['pass']:.2f}x | "
            f"{'yes' if same['gather'] and same['pass'] else 'no'} |"
        )
    return body


def main(argv: list[str] | None = None) -> int:
    parser = collect.script_parser(__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply repetition counts")
    parser.add_argument("--out", type=Path, default=collect.RESULTS / "narrow_spmm")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = collect.load_average()
    rows: list[dict[str, Any]] = []
    for name, (graph, reps) in graphs().items():
        reps = max(3, round(reps * args.scale))
        for channels in CHANNELS[name]:
            rows.append(
                {"graph": name, "kind": "product", "channels": channels}
                | product_row(graph, channels, reps)
            )
            print(rows[-1], flush=True)
        for channels in TRANSPOSED.get(name, ()):
            rows.append(
                {"graph": name, "kind": "transposed", "channels": channels}
                | transposed_row(graph, channels, reps)
            )
            print(rows[-1], flush=True)
    env = collect.run_environment("cpu", 1)
    payload = {"env": env, "rows": rows, "command": collect.command_line()}
    if args.no_write:
        return 0
    intro = (
        "Sparse-dense products of narrow rows, the kernels interleaved repetition by "
        "repetition in one process; medians of the thread's CPU time on one thread. "
        "`rows` is gnnkit's numba row kernel, `narrow` the one written out per channel count "
        "(the backend's choice for 8-64 channels, and for 65-128 when the sender rows are "
        "past the cache). `same bits`: outputs equal to MKL's bit for bit."
    )
    machine = collect.machine_line(
        env, start, collect.load_average(), "a shared machine: read ratios"
    )
    title = "Narrow SpMM kernels"
    collect.write_report(args.out, payload, title, intro, markdown_body(rows), machine)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
