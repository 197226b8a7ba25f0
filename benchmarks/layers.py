"""One GCN / GAT layer, forward + backward, on a graph of ogbn-arxiv's size: gnnkit against PyG.

Synthetic graph: 169,343 nodes, 1,166,243 uniformly random directed edges, 128 input
channels (seed 0). Layers, default configuration in both libraries (no caching):

- ``gcn``: ``GCNConv(128, 256)``
- ``gat``: ``GATConv(128, 32, heads=8)`` (concatenated heads, 256 outputs)
- ``gcn_cached`` (extra): ``GCNConv(128, 256, cached=True)`` in both, the transductive setting

The ``gcn`` and ``gat`` rows also time ``pyg-tuned`` (:mod:`gnnkit.bench.pyg_tuned`, the strongest
PyG configuration, :data:`TUNED`): ``GCNConv(cached=True)`` on a transposed CSR adjacency
``adj_t`` built once, and ``GATConv(add_self_loops=False)`` on the edges with the self-loops
added once, sorted by target. The features are dense here (arxiv's are), so the sparse-feature
part of that configuration does not apply.

One step is ``out = layer(x, edge_index); out.backward(grad)`` with a fixed random ``grad`` of
the output's shape (the input features need no gradient, as in a first layer). Each
implementation runs in its own fresh process (``spawn``), builds the same graph and copies the
same weights (gnnkit loads PyG's ``state_dict``), runs ``--warmup`` untimed steps then
``--repeat`` timed ones; the time is the median step (the graph of ``pyg-tuned`` is prepared
before them, as a script prepares it once). Memory is the peak resident set size
during those steps minus the RSS just before them (graph, features, gradient and layer already
allocated): the kernel's ``VmHWM`` after resetting it through ``/proc/self/clear_refs``. The
outputs are compared (they must agree to 1e-3), so all compute the same thing.

``--kernels`` also times the candidate kernels of :mod:`gnnkit.ops` on the same graph (64
channels): the measurements behind its kernel choices.

Run (hold the lock so that no other benchmark shares the CPU):
    flock /tmp/gnnkit-bench.lock python benchmarks/layers.py --json benchmarks/results/layers.json
    python benchmarks/layers.py --quick          # small smoke run, writes nothing by default
Writes benchmarks/results/layers.md (and the JSON when asked).
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import time
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
    with_pyg_weights,
    write_outputs,
)

from gnnkit.utils.timing import WARMUP_CALLS, PeakRSS, run_in_subprocess, time_function

LAYERS: dict[str, dict[str, Any]] = {
    "gcn": {
        "kind": "gcn",
        "out": 256,
        "kwargs": {},
        "label": "GCNConv 128 -> 256",
        "tuned": True,
    },
    "gat": {
        "kind": "gat",
        "out": 32,
        "kwargs": {"heads": 8},
        "label": "GATConv 128 -> 8 x 32",
        "tuned": True,
    },
    "gcn_cached": {
        "kind": "gcn",
        "out": 256,
        "kwargs": {"cached": True},
        "label": "GCNConv 128 -> 256, cached=True",
    },
    "gcn_adj": {
        "kind": "gcn",
        "out": 256,
        "kwargs": {},
        "input": "adj_t",
        "label": "GCNConv 128 -> 256, torch.sparse CSR adj_t input",
    },
    "gat_edge": {
        "kind": "gat",
        "out": 32,
        "kwargs": {"heads": 8, "edge_dim": 16},
        "input": "edge_attr",
        "label": "GATConv 128 -> 8 x 32, 16 edge features",
    },
    "gat_bipartite": {
        "kind": "gat",
        "out": 32,
        "kwargs": {"heads": 8, "add_self_loops": False},
        "input": "bipartite",
        "label": "GATConv (128, 128) -> 8 x 32, bipartite, half the nodes as targets",
    },
}
#: The ``pyg-tuned`` layer of each kind: PyG's layer with ``kwargs`` added on the graph that
#: :func:`gnnkit.bench.pyg_tuned.prepare_graph` prepares once (``adjacency``, ``self_loops``).
TUNED: dict[str, dict[str, Any]] = {
    "gcn": {"kwargs": {"cached": True}, "adjacency": "csr", "self_loops": "remove"},
    "gat": {"kwargs": {"add_self_loops": False}, "adjacency": "sorted", "self_loops": "once"},
}
#: Speed-up over PyG's default layer (``speedup``) and over ``pyg-tuned`` (``speedup_tuned``,
#: issue 23's targets), and peak memory over PyG's default layer (``memory_ratio``).
TARGETS = {
    "gcn": {"speedup": 3.0, "speedup_tuned": 3.0, "memory_ratio": 0.5},
    "gat": {"speedup": 1.0, "speedup_tuned": 3.0, "memory_ratio": 0.33},
}


def build_layer(impl: str, spec: dict[str, Any], in_channels: int) -> torch.nn.Module:
    """PyG's layer with seed-0 weights, or gnnkit's with those weights copied in."""
    channels = (in_channels, in_channels) if spec.get("input") == "bipartite" else in_channels

    def layer(library: str, **extra: Any) -> torch.nn.Module:
        cls = getattr(importlib.import_module(library), f"{spec['kind'].upper()}Conv")
        return cls(channels, spec["out"], **{**spec["kwargs"], **extra})

    if impl == "pyg-tuned":  # the same seed-0 weights as PyG's default layer
        torch.manual_seed(0)
        return layer("torch_geometric.nn", **TUNED[spec["kind"]]["kwargs"])
    gnnkit = "gnnkit" if impl.startswith("gnnkit") else impl
    return with_pyg_weights(gnnkit, lambda: layer("torch_geometric.nn"), lambda: layer("gnnkit.nn"))


def layer_inputs(
    spec: dict[str, Any], x: torch.Tensor, edge_index: torch.Tensor, impl: str = "gnnkit"
) -> tuple:
    """The call's arguments for the layer's input form (``spec["input"]``); for
    ``pyg-tuned`` the graph of :data:`TUNED`, prepared once."""
    form = spec.get("input", "edge_index")
    nodes = x.size(0)
    if impl == "pyg-tuned":
        from gnnkit.bench.pyg_tuned import prepare_graph

        tuned = TUNED[spec["kind"]]
        adjacency, loops = tuned["adjacency"], tuned["self_loops"]
        return x, prepare_graph(edge_index, nodes, adjacency=adjacency, self_loops=loops)
    if form == "adj_t":  # PyG's transposed convention: row = target
        values = torch.ones(edge_index.size(1), device=x.device)
        adj = torch.sparse_coo_tensor(edge_index.flip(0), values, check_invariants=False)
        return x, adj.coalesce().to_sparse_csr()
    if form == "edge_attr":
        generator = torch.Generator().manual_seed(1)
        attr = torch.randn(edge_index.size(1), spec["kwargs"]["edge_dim"], generator=generator)
        return x, edge_index, attr.to(x.device)
    if form == "bipartite":  # every node sends; the first half receive
        half = nodes // 2
        return (x, x[:half]), torch.stack([edge_index[0], edge_index[1] % half])
    return x, edge_index


def use_revision(impl: str) -> None:
    """For ``impl = "gnnkit@DIR"``: import gnnkit from ``DIR`` (an older tree) from now on."""
    import sys

    folder = impl.partition("@")[2]
    for name in [m for m in sys.modules if m == "gnnkit" or m.startswith("gnnkit.")]:
        del sys.modules[name]
    sys.path.insert(0, folder)


#: The options of the command line that :func:`measure` takes.
SETTINGS = ("nodes", "edges", "channels", "repeat", "warmup", "threads", "device")


def measure(
    impl: str,
    layer_name: str,
    *,
    nodes: int,
    edges: int,
    channels: int,
    repeat: int,
    warmup: int,
    threads: int | None,
    device: str,
) -> dict[str, Any]:
    """Runs in a fresh process: time and peak memory of one layer's forward + backward."""
    if threads:
        torch.set_num_threads(threads)
    if "@" in impl:
        use_revision(impl)
    spec = LAYERS[layer_name]
    generator = torch.Generator().manual_seed(0)
    edge_index = torch.randint(0, nodes, (2, edges), generator=generator).to(device)
    x = torch.randn(nodes, channels, generator=generator).to(device)
    layer = build_layer(impl, spec, channels).to(device)
    inputs = layer_inputs(spec, x, edge_index, impl)
    out_dim = spec["out"] * spec["kwargs"].get("heads", 1)
    out_rows = nodes // 2 if spec.get("input") == "bipartite" else nodes
    grad = torch.randn(out_rows, out_dim, generator=generator).to(device)
    first: list[torch.Tensor] = []

    def step() -> None:
        out = layer(*inputs)
        out.backward(grad)
        layer.zero_grad(set_to_none=True)
        if not first:
            first.append(out.detach()[:2000].cpu().clone())

    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        base_cuda = torch.cuda.memory_allocated()
    with PeakRSS() as mem:
        timing = time_function(step, repeat=repeat, warmup=warmup, device=device)
    result = {
        "impl": impl,
        "layer": layer_name,
        "time": timing.as_dict(),
        "memory": mem.usage.as_dict(),
        "output_head": first[0].tolist(),
        "threads": torch.get_num_threads(),
    }
    if cuda:
        result["cuda_peak_increase_bytes"] = torch.cuda.max_memory_allocated() - base_cuda
    if impl.startswith("gnnkit"):
        from gnnkit import ops

        result["backend"] = ops.backend_info(device)
    return result


def kernel_timings(nodes: int, edges: int, channels: int, repeat: int) -> list[dict[str, Any]]:
    """Candidate kernels for each operation of gnnkit.ops, timed on the same graph."""
    from gnnkit import ops

    generator = torch.Generator().manual_seed(0)
    src = torch.randint(0, nodes, (edges,), generator=generator)
    dst = torch.randint(0, nodes, (edges,), generator=generator)
    graph = ops.CSRGraph.from_edge_index(torch.stack([src, dst]), nodes)
    row, col = graph.row, graph.col
    x = torch.randn(nodes, channels, generator=generator)
    values = torch.rand(edges, generator=generator)
    scores = torch.randn(edges, 8, generator=generator)
    ptr, idx = graph.kernel_indices()
    matrix = torch.sparse_csr_tensor(ptr, idx, values, (nodes, nodes), check_invariants=False)
    out = torch.empty(nodes, channels)
    messages = x[col] * values[:, None]

    candidates: list[tuple[str, str, Any]] = [
        ("scatter sum (E x C)", "torch index_add_",
         lambda: x.new_zeros(nodes, channels).index_add_(0, row, messages)),
        ("scatter max (E x 8)", "torch scatter_reduce",
         lambda: ops.scatter_max(scores, row, nodes)),
        ("segment sum (E x 8)", "torch segment_reduce",
         lambda: ops.segment_sum(scores, graph.rowptr)),
        ("segment max (E x 8)", "torch segment_reduce",
         lambda: ops.segment_max(scores, graph.rowptr)),
        ("SpMM (N x C)", "torch.sparse CSR addmm",
         lambda: torch.addmm(out, matrix, x, beta=0.0, out=out)),
        ("SpMM (N x C)", "gather + index_add_",
         lambda: x.new_zeros(nodes, channels).index_add_(0, row, x[col] * values[:, None])),
        ("SDDMM (E)", "torch.sparse sampled_addmm", lambda: ops.sddmm(graph, x, x)),
    ]  # fmt: skip
    if ops.torch_scatter_available():
        import torch_scatter

        candidates += [
            ("scatter sum (E x C)", "torch_scatter.scatter",
             lambda: torch_scatter.scatter(messages, row, 0, dim_size=nodes, reduce="sum")),
            ("scatter max (E x 8)", "torch_scatter.scatter_max",
             lambda: torch_scatter.scatter_max(scores, row, 0, dim_size=nodes)),
            ("segment sum (E x 8)", "torch_scatter.segment_csr",
             lambda: torch_scatter.segment_csr(scores, graph.rowptr, reduce="sum")),
            ("segment max (E x 8)", "torch_scatter.segment_csr",
             lambda: torch_scatter.segment_csr(scores, graph.rowptr, reduce="max")),
        ]  # fmt: skip
    rows = []
    for operation, kernel, fn in candidates:
        timing = time_function(fn, repeat=repeat)
        rows.append({"operation": operation, "kernel": kernel, "median_ms": 1e3 * timing.median_s})
    rows.sort(key=lambda r: (r["operation"], r["median_ms"]))
    return rows


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    times = [t for run in runs for t in run["time"]["times_s"]]
    increase = max(run["memory"]["increase_bytes"] for run in runs)
    peak = max(run["memory"]["peak_bytes"] for run in runs)
    return {
        "time_median_s": statistics.median(times),
        "times_s": times,
        "peak_rss_increase_mb": increase / 2**20,
        "peak_rss_mb": peak / 2**20,
        "memory_method": runs[0]["memory"]["method"],
    }


def compare(layer_name: str, runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """gnnkit against PyG (and ``pyg-tuned`` where it ran): the ratios, the targets met, and
    the largest difference of the first output rows (refused above 1e-3)."""
    references = [impl for impl in ("pyg", "pyg-tuned") if impl in runs]
    summaries = {impl: summarise(runs[impl]) for impl in ("gnnkit", *references)}
    gnnkit, pyg = summaries["gnnkit"], summaries["pyg"]
    head_g = torch.tensor(runs["gnnkit"][0]["output_head"])
    max_diff = max(
        float((head_g - torch.tensor(runs[impl][0]["output_head"])).abs().max())
        for impl in references
    )
    entry = {
        "label": LAYERS[layer_name]["label"],
        "speedup": pyg["time_median_s"] / gnnkit["time_median_s"],
        "memory_ratio": gnnkit["peak_rss_increase_mb"] / pyg["peak_rss_increase_mb"],
        "total_peak_rss_ratio": gnnkit["peak_rss_mb"] / pyg["peak_rss_mb"],
        "gnnkit": gnnkit,
        "pyg": pyg,
        "outputs_max_abs_diff": max_diff,
    }
    tuned = summaries.get("pyg-tuned")
    if tuned is not None:
        entry["pyg-tuned"] = tuned
        entry["speedup_tuned"] = tuned["time_median_s"] / gnnkit["time_median_s"]
        tuned_mb = tuned["peak_rss_increase_mb"]
        entry["memory_ratio_tuned"] = (
            gnnkit["peak_rss_increase_mb"] / tuned_mb if tuned_mb else None
        )
    if layer_name in TARGETS:
        target = TARGETS[layer_name]
        entry["targets"] = target
        entry["targets_met"] = {
            key: (entry[key] <= value if key.startswith("memory") else entry[key] >= value)
            for key, value in target.items()
            if key in entry
        }
    if max_diff > 1e-3:
        raise SystemExit(f"{layer_name}: the implementations' outputs differ by {max_diff:g}")
    return entry


def baseline_cell(entry: dict[str, Any]) -> str:
    """gnnkit's time against the older revision's, as a ratio (1.00: unchanged)."""
    if "baseline" not in entry:
        return "-"
    b = entry["baseline"]
    return f"{b['time_median_s']:.2f} s, {b['speedup_over_baseline']:.2f}x"


def markdown(payload: dict[str, Any], command: str) -> str:
    cfg = payload["config"]
    intro = (
        f"Synthetic graph of ogbn-arxiv's size: {cfg['nodes']:,} nodes, {cfg['edges']:,} random "
        f"directed edges, {cfg['channels']} input channels (seed 0). Each implementation runs in "
        f"its own fresh process; time = median of {cfg['repeat']} timed steps x {cfg['rounds']} "
        f"round(s) after {cfg['warmup']} warm-up step(s); memory = peak RSS during the steps "
        "minus RSS just before them (VmHWM reset via /proc/self/clear_refs). Speed-up = "
        "T_reference / T_gnnkit over PyG's layer as the row says (PyG) and over `pyg-tuned` "
        "(tuned): PyG's `GCNConv(cached=True)` on a transposed CSR adjacency built once, "
        "PyG's `GATConv(add_self_loops=False)` on the edges with the self-loops added once, "
        "sorted by target (`gnnkit.bench.pyg_tuned`; the features are dense, as arxiv's). Memory ratio = "
        "M_gnnkit / M_pyg. gnnkit's layers keep the graph's structure between calls while the "
        "graph is unchanged, whatever `cached` says; PyG's recompute the normalisation every "
        "call unless `cached=True`. The last column times the gnnkit revision named there in "
        "the same run (edge_index rows only)."
    )

    def target_cell(e: dict[str, Any]) -> str:
        if "targets" not in e:
            return "(extra)"
        names = {"speedup": "vs PyG", "speedup_tuned": "vs tuned", "memory_ratio": "memory"}
        parts = [
            f"{names[k]} {'<=' if k.startswith('memory') else '>='} {v:g}: "
            + ("met" if e["targets_met"].get(k) else "**missed**")
            for k, v in e["targets"].items()
            if k in e["targets_met"]
        ]
        return "; ".join(parts)

    def tuned_cells(e: dict[str, Any]) -> tuple[str, str, str]:
        if "pyg-tuned" not in e:
            return "-", "-", "-"
        t = e["pyg-tuned"]
        return (
            f"{t['time_median_s']:.2f} s",
            f"**{e['speedup_tuned']:.2f}x**",
            f"{t['peak_rss_increase_mb']:,.0f} MB",
        )

    body = [
        "| layer | PyG time | tuned PyG time | gnnkit time | speed-up vs PyG | speed-up vs tuned "
        "| PyG peak +RSS | tuned peak +RSS | gnnkit peak +RSS | memory ratio | target | vs gnnkit "
        + (cfg.get("baseline") or "-")
        + " |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for name in cfg["layers"]:
        e = payload[name]
        tuned_time, tuned_speedup, tuned_memory = tuned_cells(e)
        body.append(
            f"| {e['label']} | {e['pyg']['time_median_s']:.2f} s | {tuned_time} "
            f"| {e['gnnkit']['time_median_s']:.2f} s | **{e['speedup']:.2f}x** | {tuned_speedup} "
            f"| {e['pyg']['peak_rss_increase_mb']:,.0f} MB | {tuned_memory} "
            f"| {e['gnnkit']['peak_rss_increase_mb']:,.0f} MB | **{e['memory_ratio']:.2f}** "
            f"| {target_cell(e)} | {baseline_cell(e)} |"
        )
    body += [
        "",
        "Whole-process peak RSS (including the interpreter, torch, graph and features): "
        + "; ".join(
            f"{payload[n]['label']}: PyG {payload[n]['pyg']['peak_rss_mb']:,.0f} MB, gnnkit "
            f"{payload[n]['gnnkit']['peak_rss_mb']:,.0f} MB"
            for n in cfg["layers"]
        )
        + ".",
    ]
    if payload.get("kernels"):
        body += [
            "",
            f"## Kernel candidates ({cfg['nodes']:,} nodes, {cfg['edges']:,} edges, "
            f"{cfg['kernel_channels']} channels; median of {cfg['repeat']})",
            "",
            "| operation | kernel | time |",
            "|---|---|---:|",
        ]
        body += [
            f"| {r['operation']} | {r['kernel']} | {r['median_ms']:.1f} ms |"
            for r in payload["kernels"]
        ]
    note = "a shared machine: ratios come from the same run"
    machine = machine_line(payload["env"], payload["loadavg_start"], payload["loadavg_end"], note)
    title = "One layer, forward + backward: gnnkit against PyG and tuned PyG"
    if os.environ.get("GLIBC_TUNABLES"):  # layers_tuned_reuse.md
        title = "One layer, forward + backward, every process keeping freed memory in malloc"
    return markdown_report(title, intro, body, machine=machine, command=command)


def _parser() -> argparse.ArgumentParser:
    parser = script_parser(__doc__)
    parser.add_argument("--nodes", type=int, default=169_343)
    parser.add_argument("--edges", type=int, default=1_166_243)
    parser.add_argument("--channels", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=5, help="timed steps per process (>= 3)")
    parser.add_argument("--warmup", type=int, default=WARMUP_CALLS, help="untimed steps first")
    parser.add_argument("--rounds", type=int, default=1, help="processes per implementation")
    parser.add_argument("--layers", default="gcn,gat,gcn_cached,gcn_adj,gat_edge,gat_bipartite")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--kernels", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--quick", action="store_true", help="small graph, 2 repeats: a smoke run")
    parser.add_argument(
        "--baseline",
        default=None,
        help="also time gnnkit at this git revision (edge_index layers only), interleaved",
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path, default=None, help="default: results/layers.md")
    return parser


def extract_tree(revision: str) -> str:
    """gnnkit's package at ``revision`` in a temporary folder (``git archive``)."""
    import subprocess
    import tempfile

    folder = tempfile.mkdtemp(prefix="gnnkit-baseline-")
    archive = subprocess.run(
        ["git", "archive", revision, "gnnkit"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
    return folder


def measure_layer(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Both implementations of one layer, ``--rounds`` fresh processes each, alternating who
    goes first; the comparison (:func:`compare`) with every run."""
    runs: dict[str, list[dict[str, Any]]] = {"gnnkit": [], "pyg": []}
    if LAYERS[name].get("tuned"):
        runs["pyg-tuned"] = []
    baseline = f"gnnkit@{args.baseline_tree}" if args.baseline_tree else None
    if baseline and "input" not in LAYERS[name]:  # the older tree takes edge_index only
        runs[baseline] = []
    for round_index in range(args.rounds):
        order = list(runs) if round_index % 2 == 0 else list(runs)[::-1]
        for impl in order:
            started = time.perf_counter()
            settings = {key: getattr(args, key) for key in SETTINGS}
            run = run_in_subprocess(measure, impl, name, **settings)
            runs[impl].append(run)
            print(
                f"{name:13s} {impl[:14]:14s} median {statistics.median(run['time']['times_s']):.3f} s, "
                f"peak +RSS {run['memory']['increase_bytes'] / 2**20:,.0f} MB "
                f"({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
    entry = compare(name, runs)
    if baseline in runs:
        old = summarise(runs.pop(baseline))
        entry["baseline"] = {
            "revision": args.baseline,
            "time_median_s": old["time_median_s"],
            "speedup_over_baseline": old["time_median_s"] / entry["gnnkit"]["time_median_s"],
        }
    for run in (run for impl_runs in runs.values() for run in impl_runs):
        del run["output_head"]
    entry["runs"] = runs
    return entry


def main() -> None:
    parser = _parser()
    args = parser.parse_args()
    if args.quick:
        args.nodes, args.edges, args.repeat, args.kernels = 5_000, 30_000, 2, False
    layers = [name.strip() for name in args.layers.split(",") if name.strip()]
    unknown = [name for name in layers if name not in LAYERS]
    if unknown:
        parser.error(f"unknown layers {unknown}; choose from {sorted(LAYERS)}")

    args.baseline_tree = extract_tree(args.baseline) if args.baseline else None
    loadavg_start = load_average()
    payload: dict[str, Any] = {name: measure_layer(name, args) for name in layers}
    if args.kernels:
        payload["kernels"] = kernel_timings(args.nodes, args.edges, 64, args.repeat)
    payload["loadavg_start"] = loadavg_start
    payload["loadavg_end"] = load_average()
    recorded = ("nodes", "edges", "channels", "repeat", "warmup", "rounds", "baseline")
    payload["config"] = {key: getattr(args, key) for key in recorded}
    payload["config"].update(layers=layers, kernel_channels=64)
    payload["env"] = run_environment(args.device, args.threads)
    for name in layers:
        tuned = payload[name].get("speedup_tuned")
        print(
            f"{name}: speedup {payload[name]['speedup']:.2f}x"
            + ("" if tuned is None else f", over pyg-tuned {tuned:.2f}x")
            + f", memory ratio {payload[name]['memory_ratio']:.3f}"
        )

    write_outputs(
        payload,
        json_path=args.json,
        markdown_path=args.markdown or (None if args.quick else RESULTS / "layers.md"),
        markdown=lambda: markdown(payload, command_line()),
    )


if __name__ == "__main__":
    main()
