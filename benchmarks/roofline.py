"""How close gnnkit's kernels and layers come to this machine's memory and GEMM limits.

Measures the machine, derives the least time each kernel and layer can take on it, times
gnnkit's, and reports the fraction of that bound reached (bound time / measured time; 100 %
is the limit). All in one process, per thread count, candidates interleaved with the
reference operations (triad, GEMMs) round by round, medians. At one CPU thread the clock is
the calling thread's CPU time (torch, MKL and numba all run in that thread then, and the time
a shared machine gives to other processes does not count; ``--clock wall`` for wall-clock
time); with more threads, or on CUDA, it is wall-clock time.

The machine:
- memory bandwidth, STREAM-style in torch on float32 arrays of 2**25 elements (128 MiB each,
  beyond every cache): copy ``a = b`` (8 bytes per element) and triad ``a = b + s c``
  (12 bytes per element), counting bytes as STREAM does (no write-allocate traffic);
- the SGEMM rate at the shapes the layers multiply (|V| x 128 times 128 x 256, and the
  weight gradient 128 x |V| times |V| x 256), written into outputs whose pages are already
  mapped (the page faults of a fresh output are not the machine's GEMM rate).

The model (float32 values and features, int32 indices; B = the median triad bandwidth at the
same thread count, G = the measured SGEMM rate at the layer's shape):
- **SpMM** ``Y = A X`` (|V| x |V|, |E| entries, C channels): reads the row pointer (4 (|V|+1)),
  the column indices and values (8 |E|) and the sender rows, writes Y (4 |V| C). Sender rows
  are counted two ways: *gathered* once per entry (4 |E| C; the honest streaming bound when X
  is larger than the last-level cache, as at ogbn-arxiv size, where a random sender row is
  rarely still cached) and *once* (4 |V| C; perfect reuse, a bound no kernel reaches there).
  Time bound = bytes / B (its 2 |E| C flops are far below G).
- **SDDMM** ``s_e = <a_i, b_j>``: index traffic, a's rows once (rows are visited in order), b's
  rows gathered per entry, one value written per entry.
- **Edge softmax** (H heads): a fused kernel reads the scores and writes the result once
  (8 |E| H) plus the row pointer; forward only.
- **GCN layer** ``A (X W) + b`` with a cached normalisation, forward + backward, X needing no
  gradient (a first layer): the forward GEMM and the weight-gradient GEMM at G, one SpMM
  (gathered) at the narrower of the two widths (gnnkit aggregates first when that is
  narrower; the weight gradient then reuses A X and no backward SpMM is needed), the output
  written and the gradient read once.
- **GAT layer** (H heads of C channels), forward + backward: the two GEMMs at G; the forward
  reads X W's rows once per edge (gathered) and writes the output; the backward gathers the
  output gradient's rows once per edge on the transposed graph (one pass can form both the
  attention gradient and X W's gradient: the softmax correction sum_e alpha_e dalpha_e of a
  receiver is <g_i, y_i>, no edge pass); per-edge scalars (attention written and read back,
  4 |E| H each way) and indices; the attention vectors' node terms (4 |V| H) are ignored.
A layer's floor is the sum of its parts' bound times (no overlap of GEMM and memory phases).

Candidates: SpMM as the bare kernels writing into a preallocated output (torch's CSR
``addmm``, gnnkit's kernel before this one; gnnkit's numba row kernel) and as the operation a
layer calls, which allocates its output (``gnnkit.ops.spmm`` with torch's kernel, "before", and
as it chooses now: the row kernel or the narrow one written out per channel count), at
ogbn-arxiv's size (169,343 nodes, 1,166,243 random edges) and Cora's (2,708
nodes, 13,264 edges). A fresh output costs its page faults on first touch, which the model
leaves out (torch's ``THP_MEM_ALLOC_ENABLE=1`` cuts them with huge pages). Then
``gnnkit.ops.sddmm``, ``gnnkit.ops.edge_softmax``; ``gnnkit.nn.GCNConv(128, 256, cached=True)``
and ``gnnkit.nn.GATConv(128, 32, heads=8)``, forward + backward against a fixed output
gradient, whatever their kernels are when the script runs.

Fresh outputs also cost page faults in the layers (about 600 MB a GAT step at arxiv size);
the second run below keeps freed memory in malloc, so the layers run without them, as in long
training with such an allocator (:mod:`gnnkit.ops._memory`). The report names the allocator.

Run (hold the lock so that no other benchmark shares the CPU):
    flock /tmp/gnnkit-bench.lock python benchmarks/roofline.py
    GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184 \
        python benchmarks/roofline.py --json benchmarks/results/roofline_reuse.json \
        --markdown benchmarks/results/roofline_reuse.md
    python benchmarks/roofline.py --device cuda --threads 1   # on a CUDA machine
    python benchmarks/roofline.py --quick                      # smoke run, writes nothing
Writes benchmarks/results/roofline.md and .json (``roofline_cuda`` on CUDA).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
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

from gnnkit import nn, ops
from gnnkit.ops import backend
from gnnkit.ops._jit import jit_available
from gnnkit.ops.matmul import _csr_matmul

FLOAT, INDEX = 4, 4  # bytes per value and per index
GRAPHS = {"arxiv": (169_343, 1_166_243), "cora": (2_708, 13_264)}
# The clock of every timing: the calling thread's CPU time for one CPU thread (torch, MKL and
# numba then run in the calling thread, and time the shared machine gives to other processes
# does not count), wall-clock time otherwise (set by ``measure``).
CLOCK: list[Callable[[], float]] = [time.perf_counter]


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def interleaved(
    candidates: dict[str, Callable[[], Any]],
    rounds: int,
    device: str,
    calls: int = 1,
    references: dict[str, Callable[[], Any]] | None = None,
) -> dict[str, float]:
    """Median seconds per call of each candidate; one timed batch of ``calls`` each per round,
    candidates taking turns, after one untimed warm-up call each (and one per round before a
    batch of several calls, whose inputs fit in cache). ``references`` (the triad,
    the GEMMs) take their turns too, one call per round, so that the bounds are measured in the
    same minutes as the kernels they bound (the machine is shared)."""
    batches = {name: (fn, calls) for name, fn in candidates.items()}
    batches |= {name: (fn, 1) for name, fn in (references or {}).items()}
    for fn, _ in batches.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in batches}
    for _ in range(rounds):
        for name, (fn, count) in batches.items():
            if count > 1:  # small inputs: warm the caches the other candidates flushed
                fn()
            synchronize(device)
            start = CLOCK[0]()
            for _ in range(count):
                fn()
            synchronize(device)
            times[name].append((CLOCK[0]() - start) / count)
    return {name: statistics.median(t) for name, t in times.items()}


class Machine:
    """The reference operations: STREAM triad and the layers' two SGEMMs, timed beside every
    group of kernels (:func:`interleaved`)."""

    def __init__(self, device: str, elements: int, nodes: int) -> None:
        gen = torch.Generator().manual_seed(0)
        self.a = torch.empty(elements, device=device)
        self.b = torch.rand(elements, generator=gen).to(device)
        self.c = torch.rand(elements, generator=gen).to(device)
        self.x = torch.randn(nodes, 128, generator=gen).to(device)
        self.w = torch.randn(128, 256, generator=gen).to(device)
        self.g = torch.randn(nodes, 256, generator=gen).to(device)
        self.y = torch.empty(nodes, 256, device=device)  # written before timing: no page faults
        self.y.zero_()
        self.dw = torch.empty(128, 256, device=device)
        self.triad_bytes = 3 * FLOAT * elements
        self.gemm_flops = 2 * nodes * 128 * 256

    def references(self, gemm: bool = False) -> dict[str, Callable[[], Any]]:
        refs: dict[str, Callable[[], Any]] = {
            "triad": lambda: torch.add(self.b, self.c, alpha=3.0, out=self.a)
        }
        if gemm:
            refs["gemm_forward"] = lambda: torch.mm(self.x, self.w, out=self.y)
            refs["gemm_weight_grad"] = lambda: torch.mm(self.x.t(), self.g, out=self.dw)
        return refs

    def bandwidth(self, times: dict[str, float]) -> float:
        """Triad bytes per second, from a group's median triad time."""
        return self.triad_bytes / times["triad"]


def memory_bandwidth(device: str, rounds: int, elements: int) -> dict[str, float]:
    """STREAM copy and triad, GB/s (median and best of ``rounds``)."""
    a = torch.empty(elements, device=device)
    b = torch.rand(elements, device=device)
    c = torch.rand(elements, device=device)
    results = {}
    for name, fn, nbytes in [
        ("copy", lambda: a.copy_(b), 2 * FLOAT * elements),
        ("triad", lambda: torch.add(b, c, alpha=3.0, out=a), 3 * FLOAT * elements),
    ]:
        fn()
        runs = []
        for _ in range(rounds):
            synchronize(device)
            start = CLOCK[0]()
            fn()
            synchronize(device)
            runs.append(CLOCK[0]() - start)
        results[f"{name}_gbs"] = nbytes / statistics.median(runs) / 1e9
        results[f"{name}_best_gbs"] = nbytes / min(runs) / 1e9
    return results


def spmm_bytes(nodes: int, edges: int, channels: int, gathered: bool) -> int:
    """Bytes an SpMM must move (see the module docstring); sender rows gathered or once."""
    senders = edges if gathered else nodes
    return INDEX * (nodes + 1) + (INDEX + FLOAT) * edges + FLOAT * channels * (senders + nodes)


def random_graph(nodes: int, edges: int, device: str) -> tuple[torch.Tensor, ops.CSRGraph]:
    gen = torch.Generator().manual_seed(0)
    edge_index = torch.randint(0, nodes, (2, edges), generator=gen).to(device)
    return edge_index, ops.CSRGraph.from_edge_index(edge_index, nodes)


def spmm_with_csr(graph: ops.CSRGraph, values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``gnnkit.ops.spmm`` with the numba kernels switched off (torch's CSR kernel throughout)."""
    saved = (backend._CPU_SPMM_JIT_MIN_CHANNELS, backend._CPU_SPMM_NARROW_CHANNELS,
             backend._CPU_SPMM_NARROW_WIDE)  # fmt: skip
    backend._CPU_SPMM_JIT_MIN_CHANNELS = 2**62
    backend._CPU_SPMM_NARROW_CHANNELS, backend._CPU_SPMM_NARROW_WIDE = (0, 0), 0
    try:
        return ops.spmm(graph, values, x)
    finally:
        (backend._CPU_SPMM_JIT_MIN_CHANNELS, backend._CPU_SPMM_NARROW_CHANNELS,
         backend._CPU_SPMM_NARROW_WIDE) = saved  # fmt: skip


def spmm_candidates(
    graph: ops.CSRGraph, values: torch.Tensor, x: torch.Tensor
) -> dict[str, Callable[[], Any]]:
    """SpMM as the bare kernels writing into a preallocated output (torch's CSR ``addmm``, and
    gnnkit's numba kernel where numba runs), and as the operation a layer calls, which
    allocates its output: ``gnnkit.ops.spmm`` with torch's CSR kernel (gnnkit before its numba
    kernel) and as it chooses now."""
    out = torch.empty_like(x)
    ptr, idx = graph.kernel_indices()
    candidates: dict[str, Callable[[], Any]] = {
        "torch_kernel": lambda: _csr_matmul(ptr, idx, values, x, out),
        "csr_op": lambda: spmm_with_csr(graph, values, x),
        "gnnkit_op": lambda: ops.spmm(graph, values, x),
    }
    if x.device.type == "cpu" and jit_available():
        from gnnkit.ops import _spmm_cpu

        candidates["numba_kernel"] = lambda: _spmm_cpu.spmm(ptr, idx, values, x, out)
    return candidates


def spmm_rows(device: str, channels: list[int], rounds: int, machine: Machine) -> list[dict]:
    """torch CSR addmm against gnnkit.ops.spmm at each graph size and width."""
    rows = []
    for graph_name, (nodes, edges) in GRAPHS.items():
        _, graph = random_graph(nodes, edges, device)
        gen = torch.Generator().manual_seed(1)
        values = torch.rand(1, edges, generator=gen).to(device)
        calls = max(1, 20_000_000 // (edges * max(channels)))  # batch tiny calls
        for width in channels:
            x = torch.randn(1, nodes, width, generator=gen).to(device)
            times = interleaved(
                spmm_candidates(graph, values, x), rounds, device, calls, machine.references()
            )
            bandwidth = machine.bandwidth(times)
            kernel = backend.spmm_kernel(x.device, x.dtype, False, width, edges, nodes)
            gathered = spmm_bytes(nodes, edges, width, True) / bandwidth
            once = spmm_bytes(nodes, edges, width, False) / bandwidth
            rows.append({
                "graph": graph_name, "nodes": nodes, "edges": edges, "channels": width,
                "bound_gathered_s": gathered, "bound_once_s": once,
                "torch_kernel_s": times["torch_kernel"],
                "numba_kernel_s": times.get("numba_kernel"),
                "csr_op_s": times["csr_op"], "gnnkit_op_s": times["gnnkit_op"],
                "gnnkit_kernel": kernel, "triad_gbs": bandwidth / 1e9,
            })  # fmt: skip
    return rows


def other_kernel_rows(device: str, rounds: int, machine: Machine) -> list[dict]:
    """SDDMM (128 channels) and edge softmax (8 heads) at ogbn-arxiv's size."""
    nodes, edges = GRAPHS["arxiv"]
    _, graph = random_graph(nodes, edges, device)
    gen = torch.Generator().manual_seed(2)
    a = torch.randn(nodes, 128, generator=gen).to(device)
    b = torch.randn(nodes, 128, generator=gen).to(device)
    scores = torch.randn(8, edges, generator=gen).to(device)
    times = interleaved(
        {
            "sddmm": lambda: ops.sddmm(graph, a, b),
            "softmax": lambda: ops.edge_softmax(graph, scores),
        },
        rounds,
        device,
        references=machine.references(),
    )
    bandwidth = machine.bandwidth(times)
    index = INDEX * (nodes + 1 + edges)
    sddmm_bytes = index + FLOAT * (128 * (nodes + edges) + edges)
    softmax_bytes = INDEX * (nodes + 1) + 2 * FLOAT * edges * 8
    return [
        {"kernel": "SDDMM, 128 channels", "bytes": sddmm_bytes, "time_s": times["sddmm"],
         "bound_s": sddmm_bytes / bandwidth},
        {"kernel": "edge softmax, 8 heads (forward)", "bytes": softmax_bytes,
         "time_s": times["softmax"], "bound_s": softmax_bytes / bandwidth},
    ]  # fmt: skip


def layer_rows(device: str, rounds: int, machine: Machine) -> list[dict]:
    """GCNConv and GATConv forward + backward against their floors."""
    nodes, edges = GRAPHS["arxiv"]
    edge_index, _ = random_graph(nodes, edges, device)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(nodes, 128, generator=gen).to(device)
    grad = torch.randn(nodes, 256, generator=gen).to(device)
    torch.manual_seed(0)
    layers = {
        "gcn": nn.GCNConv(128, 256, cached=True).to(device),
        "gat": nn.GATConv(128, 32, heads=8).to(device),
    }

    def step(layer: torch.nn.Module) -> Callable[[], None]:
        def run() -> None:
            layer(x, edge_index).backward(grad)
            layer.zero_grad(set_to_none=True)

        return run

    steps = {name: step(layer) for name, layer in layers.items()}
    times = interleaved(steps, rounds, device, references=machine.references(gemm=True))
    bandwidth = machine.bandwidth(times)
    gemm_s = times["gemm_forward"] + times["gemm_weight_grad"]
    edges_gcn = edges + nodes  # self-loops added
    node_io = 2 * FLOAT * nodes * 256  # output written, its gradient read
    gcn_memory = spmm_bytes(nodes, edges_gcn, 128, True) + node_io
    gather = FLOAT * edges_gcn * 256  # one pass over the edges reading 8 x 32-wide rows
    gat_memory = (
        2 * (gather + INDEX * (nodes + 1 + edges_gcn))  # forward and backward edge passes
        + 2 * FLOAT * edges_gcn * 8  # attention written (forward) and read (backward)
        + 2 * node_io  # X W written and read back beside the output and its gradient
    )
    rows = []
    for name, memory in [("gcn", gcn_memory), ("gat", gat_memory)]:
        memory_s = memory / bandwidth
        rows.append({
            "layer": name, "time_s": times[name], "floor_s": gemm_s + memory_s,
            "gemm_s": gemm_s, "memory_s": memory_s, "bytes": memory,
            "triad_gbs": bandwidth / 1e9,
            "gemm_gflops": [machine.gemm_flops / times[k] / 1e9
                            for k in ("gemm_forward", "gemm_weight_grad")],
        })  # fmt: skip
    return rows


def measure(args: argparse.Namespace, threads: int) -> dict[str, Any]:
    if args.device == "cpu":
        torch.set_num_threads(threads)
    one_thread = args.device == "cpu" and threads == 1 and args.clock == "auto"
    CLOCK[0] = time.thread_time if one_thread else time.perf_counter
    rounds = args.rounds
    machine = Machine(args.device, args.stream_elements, GRAPHS["arxiv"][0])
    bandwidth = memory_bandwidth(args.device, rounds, args.stream_elements)
    times = interleaved({}, rounds, args.device, references=machine.references(gemm=True))
    gemm = {
        f"{k[5:]}_gflops": machine.gemm_flops / t / 1e9 for k, t in times.items() if k != "triad"
    }
    return {
        "threads": torch.get_num_threads() if args.device == "cpu" else None,
        "clock": "thread CPU time" if CLOCK[0] is time.thread_time else "wall clock",
        "bandwidth": bandwidth,
        "gemm": gemm,
        "spmm": spmm_rows(args.device, args.channels, rounds, machine),
        "kernels": other_kernel_rows(args.device, rounds, machine),
        "layers": [] if args.no_layers else layer_rows(args.device, rounds, machine),
    }


def pct(bound: float, measured: float) -> str:
    return f"{100 * bound / measured:.0f} %"


def markdown(payload: dict[str, Any], command: str) -> str:
    body = []
    for run in payload["runs"]:
        bw, gemm = run["bandwidth"], run["gemm"]
        title = (
            f"{run['threads']} thread(s)" if run["threads"] else payload["environment"]["device"]
        )
        body += [
            f"## {title}",
            "",
            f"Memory: copy {bw['copy_gbs']:.1f} GB/s (best {bw['copy_best_gbs']:.1f}), triad "
            f"{bw['triad_gbs']:.1f} GB/s (best {bw['triad_best_gbs']:.1f}); the bounds use the "
            f"median triad. SGEMM: {gemm['forward_gflops']:.0f} GFLOP/s (|V| x 128 @ 128 x 256), "
            f"{gemm['weight_grad_gflops']:.0f} GFLOP/s (weight gradient).",
            "",
            "| SpMM | C | bound: gathered / once | torch CSR kernel | numba kernel | "
            "op before (CSR) | op now (kernel) | of bound: torch kernel / numba kernel / op "
            "before / op now | op speed-up |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in run["spmm"]:
            b = r["bound_gathered_s"]
            numba = r["numba_kernel_s"]
            numba_ms = f"{1e3 * numba:.3f} ms" if numba else "-"
            numba_pct = pct(b, numba) if numba else "-"
            body.append(
                f"| {r['graph']} | {r['channels']} | {1e3 * b:.3f} / "
                f"{1e3 * r['bound_once_s']:.3f} ms | {1e3 * r['torch_kernel_s']:.3f} ms | "
                f"{numba_ms} | {1e3 * r['csr_op_s']:.3f} ms | {1e3 * r['gnnkit_op_s']:.3f} ms "
                f"({r['gnnkit_kernel']}) | {pct(b, r['torch_kernel_s'])} / {numba_pct} / "
                f"{pct(b, r['csr_op_s'])} / {pct(b, r['gnnkit_op_s'])} | "
                f"{r['csr_op_s'] / r['gnnkit_op_s']:.2f}x |"
            )
        body += [
            "",
            "| kernel (arxiv size) | bound | measured | of bound |",
            "|---|---:|---:|---:|",
        ]
        for r in run["kernels"]:
            body.append(
                f"| {r['kernel']} | {1e3 * r['bound_s']:.2f} ms | {1e3 * r['time_s']:.2f} ms | "
                f"{pct(r['bound_s'], r['time_s'])} |"
            )
        if run["layers"]:
            body += [
                "",
                "| layer (arxiv size, forward + backward) | floor (GEMMs + memory) | measured | "
                "times the floor |",
                "|---|---:|---:|---:|",
            ]
            labels = {"gcn": "GCNConv(128, 256, cached=True)", "gat": "GATConv(128, 32, heads=8)"}
            for r in run["layers"]:
                body.append(
                    f"| {labels[r['layer']]} | {1e3 * r['floor_s']:.0f} ms "
                    f"({1e3 * r['gemm_s']:.0f} + {1e3 * r['memory_s']:.0f}) | "
                    f"{1e3 * r['time_s']:.0f} ms | {r['time_s'] / r['floor_s']:.2f}x |"
                )
        body.append("")
    intro = (
        "Fraction of this machine's bound that each kernel and layer reaches (bound time / "
        "measured time), per thread count; the model and its assumptions are in the docstring "
        "of `benchmarks/roofline.py`. Random graphs of ogbn-arxiv's and Cora's sizes, float32, "
        f"{payload['config']['rounds']} interleaved rounds, medians. With more than one thread "
        "on a busy shared machine a parallel region can wait for a descheduled thread (Cora "
        "rows of about 12 ms): read those rows as what the load allowed."
    )
    env = payload["environment"]
    machine = machine_line(
        env, payload["load_start"], payload["load_end"], "a shared machine: compare ratios"
    )
    title = "Roofline"
    if os.environ.get("GLIBC_TUNABLES"):  # roofline_reuse.md
        title += ", with freed memory kept by malloc"
    return markdown_report(title, intro, body, machine=machine, command=command)


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--threads", default=None, help="comma-separated (default: 1,all)")
    parser.add_argument("--channels", default="16,32,64,128,256", help="SpMM widths")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--clock",
        choices=["auto", "wall"],
        default="auto",
        help="auto: the thread's CPU time at one CPU thread, wall-clock time otherwise",
    )
    parser.add_argument("--stream-elements", type=int, default=2**25)
    parser.add_argument("--no-layers", action="store_true", help="skip the layer table")
    parser.add_argument("--quick", action="store_true", help="small, fast, writes nothing")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args()
    args.channels = [int(c) for c in args.channels.split(",")]
    stem = "roofline" if args.device == "cpu" else "roofline_cuda"
    if args.quick:
        GRAPHS["arxiv"] = (20_000, 140_000)
        args.rounds, args.stream_elements, args.channels = 3, 2**22, [16, 128]
    else:
        args.json = args.json or RESULTS / f"{stem}.json"
        args.markdown = args.markdown or RESULTS / f"{stem}.md"
    if args.threads is None:
        args.threads = "1" if args.device != "cpu" else f"1,{os.cpu_count() or 1}"
    thread_counts = sorted({int(t) for t in args.threads.split(",")})
    command = command_line()
    start = load_average()
    runs = []
    for threads in thread_counts if args.device == "cpu" else thread_counts[:1]:
        runs.append(measure(args, threads))
        print(f"measured {threads} thread(s)", flush=True)
    environment = run_environment(args.device)
    environment["threads"] = ", ".join(str(t) for t in thread_counts)
    payload = {
        "config": {
            "device": args.device, "threads": thread_counts, "channels": args.channels,
            "rounds": args.rounds, "stream_elements": args.stream_elements, "graphs": GRAPHS,
        },
        "environment": environment,
        "backend": ops.backend_info(args.device),
        "load_start": start,
        "load_end": load_average(),
        "runs": runs,
        "command": command,
    }  # fmt: skip
    report = markdown(payload, command)
    print(report)
    write_outputs(
        payload, json_path=args.json, markdown_path=args.markdown, markdown=lambda: report
    )


if __name__ == "__main__":
    main()
