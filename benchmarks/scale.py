"""Scale study: one full-batch training epoch of GCN and GAT, gnnkit against PyG, |E| = 1e4 .. 1.2e6.

Synthetic power-law graphs (Chung-Lu). The largest has ogbn-arxiv's size: 169,343 nodes,
1,166,243 directed edges, 128 features and 40 classes. The smaller ones keep its ratio of
edges to nodes. Both endpoints of every edge are drawn with probability proportional to
``rank^(-1/(gamma - 1))``, with ``gamma = 2.5``, and the node ids are shuffled.

Models (``gnnkit.models.BatchNormGCN``/``BatchNormGAT`` against ``gnnkit.bench.pyg`` and
``gnnkit.bench.pyg_tuned``):

- ``gcn``: OGB's arxiv GCN (3 layers, 256 hidden, batch norm, ReLU, dropout 0.5), with
  ``cached=True`` in both libraries, as in OGB's example;
- ``gat``: the same shape with GAT layers, 8 heads x 32 hidden;
- ``pyg-tuned`` (``--references pyg,pyg-tuned``, the default): the same PyG models in the
  strongest configuration, ``PygTunedArxivGCN`` (``GCNConv(cached=True)`` on a transposed CSR
  adjacency built once) and ``PygTunedArxivGAT`` (``GATConv(add_self_loops=False)`` on the
  edges with the self-loops added once, sorted by target).

Every (model, library, size) runs in its own fresh process (``spawn``). The process builds the
graph and model (gnnkit loads PyG's initial ``state_dict``), checks that both libraries'
outputs agree, then runs ``--warmup`` untimed and ``--repeat`` timed training epochs. An
epoch is forward on all nodes, cross-entropy on the 54 % training nodes, backward, and a
fused Adam step. The time is the median epoch. Memory is the peak RSS during the epochs minus
the RSS just before them, the graph, features and model already allocated. It is read from
``VmHWM`` after resetting it through ``/proc/self/clear_refs``, as ``benchmarks/layers.py``
does.

``--arxiv`` runs instead the ogbn-arxiv section (``benchmarks/results/arxiv.md``):

- The full ``gnnkit bench node --dataset ogbn-arxiv`` path, full batch and ``--mini-batch``,
  on an arxiv-sized dataset written in OGB's raw format. The real data is not reachable
  offline.
- The arxiv recipe's epoch on the symmetrised arxiv-sized graph, against the PyG reference.

Run (hold the lock so that no other benchmark shares the CPU):
    flock /tmp/gnnkit-bench.lock python benchmarks/scale.py --json benchmarks/results/scale.json
    flock /tmp/gnnkit-bench.lock python benchmarks/scale.py --arxiv --json benchmarks/results/arxiv.json
    python benchmarks/scale.py --quick        # small smoke run, writes nothing by default
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from _collect import (
    RESULTS,
    command_line,
    load_average,
    run_environment,
    script_parser,
    with_pyg_weights,
    write_outputs,
)
from scale_data import (
    ARXIV_CLASSES,
    ARXIV_EDGES,
    ARXIV_FEATURES,
    ARXIV_NODES,
    node_task,
    nodes_for,
    write_arxiv_like,
)
from scale_report import arxiv_markdown, markdown, plot, ratio

from gnnkit.utils.timing import WARMUP_CALLS, PeakRSS, run_in_subprocess, time_function

REPO = Path(__file__).resolve().parents[1]

SIZES = (10_000, 31_623, 100_000, 316_228, ARXIV_EDGES)
MODELS = ("gcn", "gat")


# ---------------------------------------------------------------------------------------------
# One measurement (runs in its own process)
# ---------------------------------------------------------------------------------------------


def build_model(impl: str, model: str, in_channels: int, classes: int) -> torch.nn.Module:
    """PyG's reference with seed-0 weights, or gnnkit's model with those weights loaded;
    ``pyg-tuned``: the tuned reference, built with the same seed-0 weights."""
    from gnnkit.bench.pyg import PygArxivGAT, PygArxivGCN
    from gnnkit.models import BatchNormGAT, BatchNormGCN

    if impl == "pyg-tuned":
        from gnnkit.bench.pyg_tuned import PygTunedArxivGAT, PygTunedArxivGCN

        torch.manual_seed(0)
        tuned = PygTunedArxivGCN if model == "gcn" else PygTunedArxivGAT
        return tuned(in_channels, classes)
    pyg, ours = (PygArxivGCN, BatchNormGCN) if model == "gcn" else (PygArxivGAT, BatchNormGAT)
    return with_pyg_weights(
        impl, lambda: pyg(in_channels, classes), lambda: ours(in_channels, classes)
    )


def measure_epoch(
    impl: str,
    model: str,
    nodes: int,
    edges: int,
    *,
    channels: int = ARXIV_FEATURES,
    classes: int = ARXIV_CLASSES,
    repeat: int = 3,
    warmup: int = WARMUP_CALLS,
    threads: int | None = None,
    symmetric: bool = False,
) -> dict[str, Any]:
    """Time and peak memory of full-batch training epochs (call it in a fresh process)."""
    import torch.nn.functional as F

    if threads:
        torch.set_num_threads(threads)
    task = node_task(nodes, edges, channels, classes)
    edge_index = task["edge_index"]
    if symmetric:
        from gnnkit.graph import symmetrize

        edge_index = symmetrize(edge_index, nodes)
    x, y, train = task["x"], task["y"], task["train"]
    net = build_model(impl, model, channels, classes)
    net.eval()
    with torch.no_grad():
        head = net(x, edge_index)[:1000].clone()
    net.train()
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01, fused=True)
    y_train = y[train]
    torch.manual_seed(1)

    def epoch() -> None:
        optimizer.zero_grad(set_to_none=True)
        out = net(x, edge_index)
        F.cross_entropy(out[train], y_train).backward()
        optimizer.step()

    with PeakRSS() as memory:
        timing = time_function(epoch, repeat=repeat, warmup=warmup)
    return {
        "impl": impl,
        "model": model,
        "nodes": nodes,
        "edges": int(edge_index.size(1)),
        "time": timing.as_dict(),
        "memory": memory.usage.as_dict(),
        "output_head": head.tolist(),
        "threads": torch.get_num_threads(),
    }


def measure_minibatch_epoch(
    impl: str,
    nodes: int,
    edges: int,
    *,
    fanouts: tuple[int, ...] = (15, 10, 5),
    batch_size: int = 1024,
    threads: int | None = None,
    max_steps: int | None = None,
) -> dict[str, Any]:
    """Mini-batch steps of the arxiv GCN recipe (sampler + training, no evaluation).

    Runs one epoch, or its first ``max_steps`` steps; reports the time per step, the share
    spent sampling, the sampled subgraph sizes and the peak memory.
    """
    import torch.nn.functional as F

    from gnnkit.graph import symmetrize
    from gnnkit.sampling import NeighborSampler
    from gnnkit.train.minibatch import disable_graph_caches

    if threads:
        torch.set_num_threads(threads)
    task = node_task(nodes, edges, ARXIV_FEATURES, ARXIV_CLASSES)
    edge_index = symmetrize(task["edge_index"], nodes)
    x, y, train = task["x"], task["y"], task["train"]
    net = build_model(impl, "gcn", ARXIV_FEATURES, ARXIV_CLASSES)
    disable_graph_caches(net)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01, fused=True)
    sampler = NeighborSampler(edge_index, nodes, fanouts)
    generator = torch.Generator().manual_seed(0)
    sample_s, step_s, sizes = [], [], []
    order = train[torch.randperm(train.numel(), generator=generator)]
    batches = order.split(batch_size)
    total_steps = len(batches)
    with PeakRSS() as memory:
        for seeds in batches[:max_steps]:
            tick = time.perf_counter()
            sub = sampler.sample(seeds, generator)
            sampled = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            out = net(x[sub.node_ids], sub.edge_index)[: sub.batch_size]
            F.cross_entropy(out, y[seeds]).backward()
            optimizer.step()
            step_s.append(time.perf_counter() - tick)
            sample_s.append(sampled - tick)
            sizes.append((sub.num_nodes, sub.num_edges))
    return {
        "impl": impl,
        "steps": len(step_s),
        "steps_per_epoch": total_steps,
        "step_s_median": statistics.median(step_s),
        "epoch_s_estimate": statistics.fmean(step_s) * total_steps,
        "sampling_share": sum(sample_s) / sum(step_s),
        "sample_s_median": statistics.median(sample_s),
        "subgraph_nodes_mean": statistics.fmean(n for n, _ in sizes),
        "subgraph_edges_mean": statistics.fmean(e for _, e in sizes),
        "memory": memory.usage.as_dict(),
        "fanouts": list(fanouts),
        "batch_size": batch_size,
        "edges": int(edge_index.size(1)),
    }


# ---------------------------------------------------------------------------------------------
# Summaries, tables, plot
# ---------------------------------------------------------------------------------------------


def compare(runs: dict[str, dict[str, Any]], model: str) -> dict[str, Any]:
    """Ratios of one (model, size) from the processes' results (gnnkit, PyG and, when it ran,
    ``pyg-tuned``); checks that the outputs agree."""
    g, p = runs["gnnkit"], runs["pyg"]
    head = torch.tensor(g["output_head"])
    references = [impl for impl in ("pyg", "pyg-tuned") if impl in runs]
    diff = max(
        float((head - torch.tensor(runs[impl]["output_head"])).abs().max()) for impl in references
    )
    if diff > 1e-3:
        raise SystemExit(
            f"{model} at |E|={g['edges']}: gnnkit's and the references' outputs differ by {diff:g}"
        )
    entry = {
        "model": model,
        "nodes": g["nodes"],
        "edges": g["edges"],
        "gnnkit_s": g["time"]["median_s"],
        "pyg_s": p["time"]["median_s"],
        "speedup": p["time"]["median_s"] / g["time"]["median_s"],
        "gnnkit_mb": g["memory"]["increase_bytes"] / 2**20,
        "pyg_mb": p["memory"]["increase_bytes"] / 2**20,
        "gnnkit_process_mb": g["memory"]["peak_bytes"] / 2**20,
        "pyg_process_mb": p["memory"]["peak_bytes"] / 2**20,
        "outputs_max_abs_diff": diff,
    }
    entry["memory_ratio"] = entry["gnnkit_mb"] / entry["pyg_mb"] if entry["pyg_mb"] else None
    if "pyg-tuned" in runs:
        t = runs["pyg-tuned"]
        entry["pyg_tuned_s"] = t["time"]["median_s"]
        entry["speedup_tuned"] = t["time"]["median_s"] / g["time"]["median_s"]
        entry["pyg_tuned_mb"] = t["memory"]["increase_bytes"] / 2**20
        entry["pyg_tuned_process_mb"] = t["memory"]["peak_bytes"] / 2**20
        tuned_mb = entry["pyg_tuned_mb"]
        entry["memory_ratio_tuned"] = entry["gnnkit_mb"] / tuned_mb if tuned_mb else None
    for run in runs.values():
        run.pop("output_head", None)
    entry["runs"] = runs
    return entry


# ---------------------------------------------------------------------------------------------
# ogbn-arxiv section
# ---------------------------------------------------------------------------------------------


def run_cli(argv: list[str], timeout_s: float) -> dict[str, Any]:
    """``gnnkit ARGV`` in a subprocess (the CLI's own code path); returns its JSON and output."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        command = [sys.executable, "-m", "gnnkit", *argv, "--json", str(out)]
        tick = time.perf_counter()
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout_s, cwd=REPO, check=False
        )
        wall = time.perf_counter() - tick
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr}")
        return {
            "argv": ["gnnkit", *argv],
            "wall_s": wall,
            "stdout": done.stdout,
            "result": json.loads(out.read_text()),
        }


def arxiv_section(args: argparse.Namespace) -> dict[str, Any]:
    nodes, edges = args.arxiv_nodes, args.arxiv_edges
    payload: dict[str, Any] = {"nodes": nodes, "edges": edges}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tick = time.perf_counter()
        payload["splits"] = write_arxiv_like(root, nodes, edges)
        payload["write_s"] = time.perf_counter() - tick
        print(
            f"wrote a synthetic dataset in ogbn-arxiv's OGB format ({payload['write_s']:.0f} s)",
            flush=True,
        )
        common = ["bench", "node", "--dataset", "ogbn-arxiv", "--offline", "--data-root", tmp]
        common += ["--runs", "1", "--no-progress"]
        if args.threads:
            common += ["--threads", str(args.threads)]
        full = [*common, "--epochs", str(args.arxiv_epochs), "--warmup", "1", "--compare", "pyg"]
        payload["full_batch"] = run_cli(full, timeout_s=3600)
        print(payload["full_batch"]["stdout"], flush=True)
        mini = [*common, "--epochs", str(args.arxiv_minibatch_epochs), "--warmup", "0"]
        payload["mini_batch"] = run_cli([*mini, "--mini-batch"], timeout_s=3600)
        print(payload["mini_batch"]["stdout"], flush=True)
    # The recipe's epoch (symmetrised graph), each library in its own process.
    payload["epoch"] = epoch_comparison(args, "gcn", nodes, edges, "arxiv recipe", symmetric=True)
    payload["minibatch_steps"] = {
        impl: run_in_subprocess(
            measure_minibatch_epoch, impl, nodes, edges, threads=args.threads, max_steps=15
        )
        for impl in ("pyg", "gnnkit")
    }
    for impl, steps in payload["minibatch_steps"].items():
        print(
            f"mini-batch step {impl}: {steps['step_s_median']:.2f} s "
            f"(sampling {100 * steps['sampling_share']:.0f} %)",
            flush=True,
        )
    return payload


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def epoch_comparison(
    args: argparse.Namespace,
    model: str,
    nodes: int,
    edges: int,
    label: str,
    *,
    symmetric: bool = False,
) -> dict[str, Any]:
    """One (model, graph): each implementation's epochs (:func:`measure_epoch`) in its own
    fresh process, the references first (``--references``), then :func:`compare`; each
    measurement is printed after ``label``."""
    runs = {}
    for impl in (*args.references, "gnnkit"):
        tick = time.perf_counter()
        runs[impl] = run_in_subprocess(
            measure_epoch, impl, model, nodes, edges, repeat=args.repeat, warmup=args.warmup,
            threads=args.threads, symmetric=symmetric,
        )  # fmt: skip
        print(
            f"{label} {impl:9s} epoch {runs[impl]['time']['median_s']:.3f} s, +RSS "
            f"{runs[impl]['memory']['increase_bytes'] / 2**20:,.0f} MB "
            f"({time.perf_counter() - tick:.0f} s)",
            flush=True,
        )
    return compare(runs, model)


def run_scale(args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    for model in args.models:
        for edges in args.sizes:
            nodes = nodes_for(edges) if edges != ARXIV_EDGES else ARXIV_NODES
            entry = epoch_comparison(args, model, nodes, edges, f"{model} |E|={edges:>9,}")
            tuned = entry.get("speedup_tuned")
            print(
                f"  speedup {entry['speedup']:.2f}x"
                + ("" if tuned is None else f", over pyg-tuned {tuned:.2f}x")
                + f", memory ratio {ratio(entry['memory_ratio'], 3)}"
            )
            results.append(entry)
    return results


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument(
        "--sizes", default=",".join(map(str, SIZES)), help="edge counts, comma-separated"
    )
    parser.add_argument("--models", default="gcn,gat")
    parser.add_argument("--repeat", type=int, default=3, help="timed epochs per process")
    parser.add_argument("--warmup", type=int, default=WARMUP_CALLS, help="untimed epochs first")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--references",
        default="pyg,pyg-tuned",
        help="PyG references timed beside gnnkit: pyg, or pyg,pyg-tuned (default)",
    )
    parser.add_argument("--quick", action="store_true", help="two small sizes: a smoke run")
    parser.add_argument("--arxiv", action="store_true", help="the ogbn-arxiv section instead")
    parser.add_argument("--arxiv-nodes", type=int, default=ARXIV_NODES)
    parser.add_argument("--arxiv-edges", type=int, default=ARXIV_EDGES)
    parser.add_argument("--arxiv-epochs", type=int, default=10)
    parser.add_argument("--arxiv-minibatch-epochs", type=int, default=1)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None)
    args = parser.parse_args()
    args.sizes = [int(v) for v in args.sizes.split(",") if v.strip()]
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in args.models if m not in MODELS]
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {list(MODELS)}")
    args.references = [r.strip() for r in args.references.split(",") if r.strip()]
    if "pyg" not in args.references or not set(args.references) <= {"pyg", "pyg-tuned"}:
        parser.error(f"--references is pyg or pyg,pyg-tuned, got {','.join(args.references)}")
    if args.quick:
        args.sizes, args.repeat = [10_000, 30_000], 2
        args.arxiv_nodes, args.arxiv_edges, args.arxiv_epochs = 2_000, 14_000, 3

    payload: dict[str, Any] = {"loadavg_start": load_average()}
    if args.arxiv:
        payload["arxiv"] = arxiv_section(args)
    else:
        payload["results"] = run_scale(args)
    payload["loadavg_end"] = load_average()
    recorded = ("sizes", "models", "repeat", "warmup", "references")
    payload["config"] = {key: getattr(args, key) for key in recorded}
    payload["config"].update(channels=ARXIV_FEATURES, classes=ARXIV_CLASSES)
    payload["env"] = run_environment("cpu", args.threads)

    if not args.arxiv:
        plot_path = args.plot or (None if args.quick else RESULTS / "scale.png")
        if plot_path is not None:
            print(f"wrote {plot(payload, plot_path)}")
    name, report = ("arxiv", arxiv_markdown) if args.arxiv else ("scale", markdown)
    write_outputs(
        payload,
        json_path=args.json,
        markdown_path=args.markdown or (None if args.quick else RESULTS / f"{name}.md"),
        markdown=lambda: report(payload, command_line()),
    )


if __name__ == "__main__":
    main()
