"""gnnkit's gathering kernels prefetching into L2, as shipped, against their form before.

The CPU kernels that gather rows far past the cache ask for each row some entries ahead of
its use. They ask for it into L2 (``gnnkit.ops._jit.prefetch_l2``: LLVM's temporal locality
2, x86 ``prefetcht1``); before, they asked into L1 (locality 3, ``prefetcht0``). This script
compiles each kernel twice from the same Python or generated source, once as shipped and once
with every request into L1, and times the two on the same inputs, interleaved repetition by
repetition in one process on one thread (thread CPU time, medians). ``same bits`` compares
the two outputs: a prefetch is a hint and must not change a result.

Kernels, on a random graph of ogbn-arxiv's size (169,343 nodes, 1,166,243 edges, seed 0):

- the SpMM row kernel (:mod:`gnnkit.ops._spmm_cpu`) at 64, 128 and 256 channels;
- the fused GAT's aggregation and backward sender pass by head (:mod:`gnnkit.ops._gat_rows`),
  8 heads x 32 channels, on the graph with a self-loop per node (as ``GATConv`` adds them);
- the narrow SpMM kernels (:mod:`gnnkit.ops._spmm_narrow`, then 8-63 channels) at 16, 32 and 48
  channels, which did not prefetch at all before: their prefetching kind as shipped against
  their plain kind, which rows that stay in cache still take.

Run ``python benchmarks/prefetch_locality.py`` (``--nodes`` / ``--edges`` for another size,
``--reps`` repetitions); it writes ``benchmarks/results/prefetch_locality.{json,md}``
(``--no-write``: print only).
"""

from __future__ import annotations

import statistics
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _collect as collect
import torch
from torch import Tensor

from gnnkit import ops
from gnnkit.ops import _gat_rows, _jit, _spmm_cpu
from gnnkit.ops._jit import NUMPY_DTYPES

ARXIV_NODES, ARXIV_EDGES = 169_343, 1_166_243
SPMM_CHANNELS = (64, 128, 256)
NARROW_CHANNELS = (16, 32, 48)
HEADS, CHANNELS = 8, 32
FORMS = {"L2 (shipped)": 2, "L1 (before)": 3}  # name -> LLVM temporal locality


def spmm_kernel(locality: int) -> Any:
    """:func:`gnnkit.ops._spmm_cpu._spmm_rows` compiled again with its requests at
    ``locality`` (its Python function with ``prefetch_l2`` bound to that request)."""
    function = _spmm_cpu._spmm_rows.py_func
    scope = dict(function.__globals__, prefetch_l2=_jit._prefetch(locality))
    clone = types.FunctionType(function.__code__, scope, function.__name__)
    return _jit._numba().njit(nogil=True)(clone)


def gat_kernel(kind: str, locality: int) -> Any:
    """The generated GAT kernel ``kind`` (8 x 32, float32, no dropout) compiled with its
    requests at ``locality``, as :func:`gnnkit.ops._gat_rows._compiled` compiles it."""
    shipped = _gat_rows.prefetch_l2
    _gat_rows.prefetch_l2 = _jit._prefetch(locality)
    try:  # the uncached builder, so that neither form is the other's cached dispatcher
        kernel = _gat_rows._dispatcher.__wrapped__(kind, HEADS, CHANNELS, False, "float32")
    finally:
        _gat_rows.prefetch_l2 = shipped
    _jit.compile_vectorised(kernel, _gat_rows._signature(kind))
    return kernel


def timed(calls: dict[str, Callable[[], tuple[Tensor, ...]]], reps: int) -> dict[str, Any]:
    """Median thread CPU milliseconds of each form's call, and whether their outputs agree."""
    outputs: dict[str, Any] = {}
    candidates = {
        name: (lambda n=name, f=f: outputs.__setitem__(n, f())) for name, f in calls.items()
    }
    times = collect.interleaved_times(candidates, reps)
    first, *rest = outputs.values()
    return {
        "ms": {name: 1000 * statistics.median(t) for name, t in times.items()},
        "same_bits": all(
            all(torch.equal(a, b) for a, b in zip(first, o, strict=True)) for o in rest
        ),
    }


def spmm_rows(graph: ops.CSRGraph, reps: int) -> list[dict[str, Any]]:
    """The SpMM row kernel at each of :data:`SPMM_CHANNELS`, both forms."""
    kernels = {name: spmm_kernel(locality) for name, locality in FORMS.items()}
    rows = []
    for channels in SPMM_CHANNELS:
        gen = torch.Generator().manual_seed(channels)
        values = torch.rand(1, graph.num_edges, generator=gen)
        x = torch.randn(1, graph.num_cols, channels, generator=gen)
        ptr, idx = graph.kernel_indices(False)
        outs = {name: torch.empty(1, graph.num_rows, channels) for name in FORMS}
        distance = _jit.prefetch_distance(channels * x.element_size())

        def call(name: str, ptr=ptr, idx=idx, values=values, x=x, outs=outs, distance=distance):
            args = _spmm_cpu.kernel_arguments(ptr, idx, values, x, outs[name])
            _jit.run_rows(kernels[name], args[0], *args, distance)
            return (outs[name],)

        result = timed({name: (lambda n=name: call(n)) for name in FORMS}, reps)
        rows.append({"kernel": f"SpMM, {channels} channels", "before": "into L1"} | result)
        print(rows[-1], flush=True)
    return rows


def gat_rows(graph: ops.CSRGraph, reps: int) -> list[dict[str, Any]]:
    """The GAT aggregation and sender pass by head, both forms."""
    gen = torch.Generator().manual_seed(HEADS * CHANNELS)
    n, e = graph.num_rows, graph.num_edges
    xw = torch.randn(n, HEADS, CHANNELS, generator=gen)
    exponentials = torch.rand(e, HEADS, generator=gen)
    grad_out = torch.randn(n, HEADS, CHANNELS, generator=gen)
    transposed = graph.transpose()
    colptr, row_t, perm_t = transposed[0], transposed[1], transposed[3]
    colptr_np = colptr.numpy()
    rows = []

    # Each form's buffers are allocated once, outside the timed calls: fresh memory for a
    # 173 MB output would time the allocator's page faults, not the kernel.
    alphas = {name: torch.empty_like(exponentials) for name in FORMS}
    aggregations = {
        name: _gat_rows.aggregation(graph.rowptr, graph.col, xw, alphas[name], None, 1.0)
        for name in FORMS
    }
    grads = {name: (torch.empty_like(xw), torch.empty_like(exponentials)) for name in FORMS}

    def aggregate(name: str, kernel: Any) -> Any:
        alphas[name].copy_(exponentials)  # normalised in place by the kernel
        _, arguments, out = aggregations[name]
        _jit.run_rows(kernel, graph.rowptr.numpy(), *arguments)
        return (out,)

    def sender(name: str, kernel: Any) -> Any:
        grad_xw, grad_alpha = grads[name]
        addresses = [t.data_ptr() for t in (colptr, row_t, perm_t, xw, exponentials)]
        addresses += [0, grad_out.data_ptr(), grad_xw.data_ptr(), grad_alpha.data_ptr()]
        distance = _gat_rows._by_head_distance(xw)
        _jit.run_rows(kernel, colptr_np, *addresses, distance, 1.0, e, n)
        return grad_xw, grad_alpha

    for label, kind, run in (
        ("GAT aggregation by head, 8 x 32", "aggregate by head", aggregate),
        ("GAT sender pass by head, 8 x 32", "sender grad by head", sender),
    ):
        kernels = {name: gat_kernel(kind, locality) for name, locality in FORMS.items()}
        calls = {name: (lambda n=name, k=kernels[name], r=run: r(n, k)) for name in FORMS}
        result = timed(calls, reps)
        rows.append({"kernel": label, "before": "into L1"} | result)
        print(rows[-1], flush=True)
    return rows


def narrow_rows(graph: ops.CSRGraph, reps: int) -> list[dict[str, Any]]:
    """The narrow SpMM kernels at each of :data:`NARROW_CHANNELS`: the prefetching kind (the
    first form) against the plain kind (the second), both compiled as gnnkit compiles them."""
    from gnnkit.ops import _spmm_narrow

    ptr, idx = graph.kernel_indices(False)
    index = NUMPY_DTYPES[ptr.dtype]
    rows = []
    for channels in NARROW_CHANNELS:
        gen = torch.Generator().manual_seed(channels)
        values = torch.rand(1, graph.num_edges, generator=gen)
        x = torch.randn(1, graph.num_cols, channels, generator=gen)
        outs = {name: torch.empty(1, graph.num_rows, channels) for name in FORMS}
        kinds = dict(zip(FORMS, ("rows, prefetching", "rows"), strict=True))
        kernels = {
            n: _spmm_narrow._compiled(k, channels, "float32", index) for n, k in kinds.items()
        }

        def call(name: str, values=values, x=x, outs=outs, kernels=kernels) -> Any:
            arguments = _spmm_narrow._arguments(ptr, idx, values, x, outs[name], None)
            _jit.run_rows(kernels[name], graph.num_rows, *arguments)
            return (outs[name],)

        result = timed({name: (lambda n=name: call(n)) for name in FORMS}, reps)
        label = f"narrow SpMM, {channels} channels"
        rows.append({"kernel": label, "before": "no prefetch"} | result)
        print(rows[-1], flush=True)
    return rows


def random_graph(nodes: int, edges: int, self_loops: bool) -> ops.CSRGraph:
    """A random directed graph (seed 0), with one self-loop per node if ``self_loops``."""
    edge_index = torch.randint(0, nodes, (2, edges), generator=torch.Generator().manual_seed(0))
    if self_loops:
        loops = torch.arange(nodes).repeat(2, 1)
        edge_index = torch.cat([edge_index, loops], dim=1)
    return ops.CSRGraph.from_edge_index(edge_index, nodes)


def markdown_body(rows: list[dict[str, Any]]) -> list[str]:
    names = list(FORMS)
    lines = [
        "| kernel | shipped: into L2 (ms) | before (ms) | before, the requests | speed-up "
        "| same bits |",
        "|---|---:|---:|---|---:|---|",
    ]
    for row in rows:
        shipped, before = (row["ms"][name] for name in names)
        lines.append(
            f"| {row['kernel']} | {shipped:.1f} | {before:.1f} | {row['before']} | "
            f"{before / shipped:.2f}x | {'yes' if row['same_bits'] else 'no'} |"
        )
    return [*lines, ""]


def main(argv: list[str] | None = None) -> int:
    parser = collect.script_parser(__doc__)
    parser.add_argument("--nodes", type=int, default=ARXIV_NODES)
    parser.add_argument("--edges", type=int, default=ARXIV_EDGES)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--out", type=Path, default=collect.RESULTS / "prefetch_locality")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if not _jit.jit_available():
        parser.error("numba is not available: there are no compiled kernels to time")
    if args.nodes * HEADS * CHANNELS * 4 < _jit.PREFETCH_MIN_BYTES:  # float32 rows of xw
        parser.error(
            f"--nodes {args.nodes} is too small: the GAT passes prefetch only past "
            f"{_jit.PREFETCH_MIN_BYTES // 2**20} MiB of features; give at least "
            f"{-(-_jit.PREFETCH_MIN_BYTES // (HEADS * CHANNELS * 4))} nodes"
        )
    torch.set_num_threads(1)
    start = collect.load_average()
    graph = random_graph(args.nodes, args.edges, False)
    rows = spmm_rows(graph, args.reps) + narrow_rows(graph, args.reps)
    rows += gat_rows(random_graph(args.nodes, args.edges, True), args.reps)
    env = collect.run_environment("cpu", 1)
    payload = {"env": env, "rows": rows, "command": collect.command_line()}
    if args.no_write:
        return 0
    intro = (
        f"Random graph of {args.nodes:,} nodes and {args.edges:,} edges (the GAT rows with a "
        "self-loop per node), float32, one thread. Each kernel compiled twice from the same "
        "source, its prefetches into L2 as shipped and as before (into L1, or none for the "
        "narrow SpMM), the two interleaved "
        f"repetition by repetition ({args.reps} repetitions after a warm-up call), medians of "
        "the thread's CPU time. `same bits`: the two outputs equal bit for bit."
    )
    machine = collect.machine_line(env, start, collect.load_average(), "a shared machine")
    title = "Prefetching into L2 or into L1"
    collect.write_report(args.out, payload, title, intro, markdown_body(rows), machine)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
