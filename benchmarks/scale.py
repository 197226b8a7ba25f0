"""Scale study: one full-batch training epoch of GCN and GAT, gnnkit against PyG, |E| = 1e4 .. 1.2e6.

Synthetic power-law graphs (Chung-Lu). The largest has ogbn-arxiv's size: 169,343 nodes,
1,166,243 directed edges, 128 features and 40 classes. The smaller ones keep its ratio of
edges to nodes. Both endpoints of every edge are drawn with probability proportional to
``rank^(-1/(gamma - 1))``, with ``gamma = 2.5``, and the node ids are shuffled.

Models (``gnnkit.models.BatchNormGCN``/``BatchNormGAT`` against ``gnnkit.bench.pyg``):

- ``gcn``: OGB's arxiv GCN (3 layers, 256 hidden, batch norm, ReLU, dropout 0.5), with
  ``cached=True`` in both libraries, as in OGB's example;
- ``gat``: the same shape with GAT layers, 8 heads x 32 hidden.

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
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gnnkit.utils.env import environment
from gnnkit.utils.io import atomic_write_json, atomic_write_text
from gnnkit.utils.timing import PeakRSS, run_in_subprocess, time_function

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]

ARXIV_NODES, ARXIV_EDGES, ARXIV_FEATURES, ARXIV_CLASSES = 169_343, 1_166_243, 128, 40
SIZES = (10_000, 31_623, 100_000, 316_228, ARXIV_EDGES)
MODELS = ("gcn", "gat")
TARGETS = {"gcn": {"speedup": 2.0, "memory_ratio": 0.5}}
TRAIN_FRACTION = 0.54  # ogbn-arxiv: 90,941 of 169,343 nodes train


# ---------------------------------------------------------------------------------------------
# Synthetic data
# ---------------------------------------------------------------------------------------------


def _ratio(value: float | None, digits: int = 2) -> str:
    """A memory ratio for the report; ``n/a`` when PyG's RSS did not grow measurably."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def nodes_for(edges: int) -> int:
    """Nodes of a graph with ``edges`` edges at ogbn-arxiv's edge/node ratio."""
    return max(2, round(edges * ARXIV_NODES / ARXIV_EDGES))


def power_law_graph(
    num_nodes: int, num_edges: int, *, gamma: float = 2.5, seed: int = 0
) -> torch.Tensor:
    """A directed Chung-Lu graph: both endpoints drawn with weight ``rank^(-1/(gamma-1))``.

    Expected degrees follow a power law with exponent ``gamma``; node ids are shuffled so that
    degree does not follow id. Multi-edges and self-loops may occur (each counted).
    """
    generator = torch.Generator().manual_seed(seed)
    weights = torch.arange(1, num_nodes + 1, dtype=torch.float64).pow(-1.0 / (gamma - 1.0))
    ends = torch.multinomial(weights, 2 * num_edges, replacement=True, generator=generator)
    relabel = torch.randperm(num_nodes, generator=generator)
    return relabel[ends].view(2, num_edges)


def node_task(
    num_nodes: int, num_edges: int, channels: int, classes: int, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Features, a power-law graph, labels a GCN can learn, and 54 / 23 / 23 % splits.

    The label of a node is the argmax of a fixed random linear map of the mean features of
    its closed neighbourhood in the symmetrised graph, plus noise. A graph model can learn it,
    so accuracy above chance shows that training works; it means nothing more.
    """
    generator = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(num_nodes, channels, generator=generator)
    edge_index = power_law_graph(num_nodes, num_edges, seed=seed)
    src = torch.cat([edge_index[0], edge_index[1]])
    dst = torch.cat([edge_index[1], edge_index[0]])
    degree = torch.bincount(dst, minlength=num_nodes).add_(1).unsqueeze(1)
    mean = x.clone().index_add_(0, dst, x[src]).div_(degree)  # (N, F) closed-neighbourhood mean
    logits = mean @ torch.randn(channels, classes, generator=generator)
    logits = logits / logits.std() + 0.3 * torch.randn(num_nodes, classes, generator=generator)
    y = logits.argmax(dim=1)
    order = torch.randperm(num_nodes, generator=generator)
    cut_train = int(TRAIN_FRACTION * num_nodes)
    cut_val = cut_train + (num_nodes - cut_train) // 2
    return {
        "x": x,
        "edge_index": edge_index,
        "y": y,
        "train": order[:cut_train].sort().values,
        "valid": order[cut_train:cut_val].sort().values,
        "test": order[cut_val:].sort().values,
    }


# ---------------------------------------------------------------------------------------------
# One measurement (runs in its own process)
# ---------------------------------------------------------------------------------------------


def build_model(impl: str, model: str, in_channels: int, classes: int) -> torch.nn.Module:
    """PyG's reference with seed-0 weights, or gnnkit's model with those weights loaded."""
    from gnnkit.bench.pyg import PygArxivGAT, PygArxivGCN
    from gnnkit.models import BatchNormGAT, BatchNormGCN

    torch.manual_seed(0)
    reference = (PygArxivGCN if model == "gcn" else PygArxivGAT)(in_channels, classes)
    if impl == "pyg":
        return reference
    ours = (BatchNormGCN if model == "gcn" else BatchNormGAT)(in_channels, classes)
    ours.load_state_dict(reference.state_dict())
    return ours


def measure_epoch(
    impl: str,
    model: str,
    nodes: int,
    edges: int,
    *,
    channels: int = ARXIV_FEATURES,
    classes: int = ARXIV_CLASSES,
    repeat: int = 3,
    warmup: int = 1,
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
    """Ratios of one (model, size) from the two processes' results; checks outputs agree."""
    g, p = runs["gnnkit"], runs["pyg"]
    diff = float((torch.tensor(g["output_head"]) - torch.tensor(p["output_head"])).abs().max())
    if diff > 1e-3:
        raise SystemExit(f"{model} at |E|={g['edges']}: gnnkit and PyG outputs differ by {diff:g}")
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
    for run in (g, p):
        run.pop("output_head", None)
    entry["runs"] = runs
    return entry


def markdown(payload: dict[str, Any], command: str) -> str:
    env, cfg = payload["env"], payload["config"]
    lines = [
        "# Scale study: one full-batch training epoch, gnnkit against PyG",
        "",
        f"Synthetic power-law (Chung-Lu, gamma 2.5) directed graphs at ogbn-arxiv's edge/node "
        f"ratio; {cfg['channels']} features, {cfg['classes']} classes, 54 % training nodes. "
        "GCN = OGB's arxiv GCN (3 layers, 256 hidden, batch norm, dropout 0.5, `cached=True`); "
        "GAT = the same shape with 8 heads x 32 (`gnnkit.bench.pyg.PygArxivGAT`). One epoch = "
        "forward, cross-entropy, backward, fused Adam step. Each cell runs in its own fresh "
        f"process: median of {cfg['repeat']} timed epochs after {cfg['warmup']} warm-up; "
        "memory = peak RSS during the epochs minus RSS before them (graph, features, model "
        "already allocated). Speedup = T_pyg / T_gnnkit; memory ratio = M_gnnkit / M_pyg.",
        "",
        "| model | nodes | edges | PyG epoch | gnnkit epoch | speedup | PyG +RSS | gnnkit +RSS | memory ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for e in payload["results"]:
        ratio = _ratio(e["memory_ratio"])
        lines.append(
            f"| {e['model'].upper()} | {e['nodes']:,} | {e['edges']:,} | {_s(e['pyg_s'])} | "
            f"{_s(e['gnnkit_s'])} | **{e['speedup']:.2f}x** | {e['pyg_mb']:,.0f} MB | "
            f"{e['gnnkit_mb']:,.0f} MB | **{ratio}** |"
        )
    lines.append("")
    for model, target in TARGETS.items():
        top = [e for e in payload["results"] if e["model"] == model]
        if not top:
            continue
        top = max(top, key=lambda e: e["edges"])
        met_speed = top["speedup"] >= target["speedup"]
        met_mem = top["memory_ratio"] is not None and top["memory_ratio"] <= target["memory_ratio"]
        lines.append(
            f"Target at the top size ({top['edges']:,} edges), {model.upper()}: epoch >= "
            f"{target['speedup']:g}x faster than PyG ({top['speedup']:.2f}x: "
            f"{'met' if met_speed else '**missed**'}) and peak memory <= "
            f"{target['memory_ratio']:g}x ({_ratio(top['memory_ratio'])}: "
            f"{'met' if met_mem else '**missed**'})."
        )
    lines += [
        "",
        "![epoch time and peak memory against |E|](scale.png)",
        "",
        f"Machine: {env['cpu']}, {env['threads']} thread(s), device {env['device']}; torch "
        f"{env['torch']}, PyG {env['torch_geometric']}, torch-scatter {env['torch_scatter']}; "
        f"{env['date']}. Load average at start / end: {payload['loadavg_start']} / "
        f"{payload['loadavg_end']} (a shared machine: read the ratios, which come from the "
        "same run).",
        "",
        f"Command: `{command}`",
        "",
    ]
    return "\n".join(lines)


def _s(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def plot(payload: dict[str, Any], path: Path) -> Path:
    """Log-log epoch time and peak memory against |E|, one line per (model, library)."""
    from gnnkit.utils.plotting import save_figure, subplots

    fig, (ax_time, ax_mem) = subplots(1, 2, figsize=(11.0, 4.2))
    styles = {"gnnkit": "-", "pyg": "--"}
    colors = {"gcn": "C0", "gat": "C3"}
    for model in MODELS:
        rows = sorted(
            (e for e in payload["results"] if e["model"] == model), key=lambda e: e["edges"]
        )
        if not rows:
            continue
        edges = [e["edges"] for e in rows]
        for impl in ("gnnkit", "pyg"):
            label = f"{model.upper()} {'gnnkit' if impl == 'gnnkit' else 'PyG'}"
            kw = {"color": colors[model], "linestyle": styles[impl], "marker": "o", "label": label}
            ax_time.plot(edges, [e[f"{impl}_s"] for e in rows], **kw)
            ax_mem.plot(edges, [max(e[f"{impl}_mb"], 1e-1) for e in rows], **kw)
    for ax, title, unit in (
        (ax_time, "training epoch time", "seconds"),
        (ax_mem, "peak memory of the epochs (RSS increase)", "MiB"),
    ):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("|E| (edges)")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(alpha=0.3, which="both")
    ax_time.legend()
    fig.suptitle("Full-batch training, 3-layer GCN / GAT (256 hidden), power-law graphs")
    return save_figure(fig, path)


# ---------------------------------------------------------------------------------------------
# ogbn-arxiv section
# ---------------------------------------------------------------------------------------------


def _write_csv_gz(path: Path, array: np.ndarray, fmt: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", compresslevel=1) as handle:
        np.savetxt(handle, array if array.ndim == 2 else array[:, None], fmt=fmt, delimiter=",")


def write_arxiv_like(root: Path, nodes: int, edges: int, seed: int = 0) -> dict[str, int]:
    """An ogbn-arxiv-shaped dataset in OGB's raw format under ``root/ogb/ogbn_arxiv``."""
    task = node_task(nodes, edges, ARXIV_FEATURES, ARXIV_CLASSES, seed=seed)
    base = root / "ogb" / "ogbn_arxiv"
    base.mkdir(parents=True, exist_ok=True)
    (base / "RELEASE_v1.txt").write_text("# Release note\n")
    raw = base / "raw"
    _write_csv_gz(raw / "edge.csv.gz", task["edge_index"].t().numpy(), "%d")
    _write_csv_gz(raw / "node-feat.csv.gz", task["x"].numpy(), "%.4f")
    _write_csv_gz(raw / "node-label.csv.gz", task["y"].numpy(), "%d")
    _write_csv_gz(raw / "node_year.csv.gz", np.full(nodes, 2020), "%d")
    _write_csv_gz(raw / "num-node-list.csv.gz", np.array([nodes]), "%d")
    _write_csv_gz(raw / "num-edge-list.csv.gz", np.array([edges]), "%d")
    for part in ("train", "valid", "test"):
        _write_csv_gz(base / "split" / "time" / f"{part}.csv.gz", task[part].numpy(), "%d")
    return {part: int(task[part].numel()) for part in ("train", "valid", "test")}


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
    runs = {}
    for impl in ("pyg", "gnnkit"):
        runs[impl] = run_in_subprocess(
            measure_epoch,
            impl,
            "gcn",
            nodes,
            edges,
            repeat=args.repeat,
            warmup=args.warmup,
            threads=args.threads,
            symmetric=True,
        )
        print(f"arxiv recipe {impl}: {runs[impl]['time']['median_s']:.2f} s/epoch", flush=True)
    payload["epoch"] = compare(runs, "gcn")
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


def arxiv_markdown(payload: dict[str, Any], command: str) -> str:
    env, a = payload["env"], payload["arxiv"]
    e = a["epoch"]
    fb, mb = a["full_batch"]["result"], a["mini_batch"]["result"]
    steps = a["minibatch_steps"]
    lines = [
        "# ogbn-arxiv: OGB's full-batch GCN recipe and the mini-batch mode",
        "",
        "**The real ogbn-arxiv is not reachable from this machine** (no network; it is not in "
        "the mirror), so the leaderboard target (GCN: **71.74 +- 0.29 %** test accuracy over 10 "
        "seeds) is not measured here. Where the data is available, run:",
        "",
        "```",
        "gnnkit bench node --dataset ogbn-arxiv --runs 10 --compare pyg \\",
        "    --json benchmarks/results/arxiv_real.json --plot benchmarks/results/arxiv_real.png",
        "```",
        "",
        "(500 epochs per run, the recipe's default; add `--device cuda` on a GPU.)",
        "",
        f"What ran instead: a synthetic dataset in ogbn-arxiv's format ({a['nodes']:,} nodes, "
        f"{a['edges']:,} power-law directed edges, 128 features, 40 classes that a graph model "
        "can learn: `benchmarks/scale.py:node_task`), written in OGB's raw on-disk format, so that "
        "the whole path runs: `ogb`'s own processing, gnnkit's data layer, symmetrisation, "
        "raw features, training, model selection, JSON.",
        "",
        "## The whole path (`gnnkit bench node --dataset ogbn-arxiv`)",
        "",
        "| mode | implementation | epochs | test accuracy | median epoch | run | peak +RSS |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for mode, result in (("full batch", fb), ("mini-batch", mb)):
        for impl in ("gnnkit", "pyg"):
            if impl not in result:
                continue
            s = result[impl]
            peak = "n/a" if s.get("peak_rss_mb") is None else f"{s['peak_rss_mb']:,.0f} MB"
            lines.append(
                f"| {mode} | {impl} | {result['epochs']} | {100 * s['test_acc_mean']:.1f} % | "
                f"{s['epoch_ms_median'] / 1000:.2f} s | {s['run_time_s_median']:.1f} s | {peak} |"
            )
    lines += [
        "",
        f"Full-batch speedup (PyG run time / gnnkit run time): **{fb['speedup']:.2f}x**. "
        "Test accuracies on synthetic labels only show that training works end to end; they "
        "say nothing about the real task.",
        "",
        "Commands (inside a temporary data root; `--offline` so nothing is downloaded):",
        "",
        "```",
        " ".join(a["full_batch"]["argv"]),
        " ".join(a["mini_batch"]["argv"]),
        "```",
        "",
        "## The recipe's training epoch, gnnkit against PyG",
        "",
        f"OGB's arxiv GCN (3 x GCNConv, 256 hidden, batch norm, dropout 0.5, cached) on the "
        f"symmetrised graph ({e['edges']:,} edges), each library in its own fresh process; "
        f"median of {payload['config']['repeat']} epochs after {payload['config']['warmup']} "
        "warm-up, peak RSS increase during the epochs:",
        "",
        "| | PyG | gnnkit | ratio |",
        "|---|---:|---:|---:|",
        f"| epoch time | {_s(e['pyg_s'])} | {_s(e['gnnkit_s'])} | **{e['speedup']:.2f}x** faster |",
        f"| peak memory | {e['pyg_mb']:,.0f} MB | {e['gnnkit_mb']:,.0f} MB | "
        f"**{_ratio(e['memory_ratio'])}** |",
        "",
        "## Mini-batch steps (the recipe's model on sampled subgraphs)",
        "",
        f"Fan-outs {steps['gnnkit']['fanouts']}, {steps['gnnkit']['batch_size']} seeds per "
        f"step, the first {steps['gnnkit']['steps']} steps of an epoch "
        f"({steps['gnnkit']['steps_per_epoch']} steps per epoch), both models on gnnkit's "
        "sampler, each in its own process:",
        "",
        "| | PyG model | gnnkit model |",
        "|---|---:|---:|",
        f"| median step | {_s(steps['pyg']['step_s_median'])} | "
        f"{_s(steps['gnnkit']['step_s_median'])} |",
        f"| of which sampling (median) | {_s(steps['pyg']['sample_s_median'])} | "
        f"{_s(steps['gnnkit']['sample_s_median'])} |",
        f"| epoch (estimate, no evaluation) | {_s(steps['pyg']['epoch_s_estimate'])} | "
        f"{_s(steps['gnnkit']['epoch_s_estimate'])} |",
        f"| mean subgraph | {steps['gnnkit']['subgraph_nodes_mean']:,.0f} nodes, "
        f"{steps['gnnkit']['subgraph_edges_mean']:,.0f} edges | same seeds |",
        f"| peak +RSS | {steps['pyg']['memory']['increase_bytes'] / 2**20:,.0f} MB | "
        f"{steps['gnnkit']['memory']['increase_bytes'] / 2**20:,.0f} MB |",
        "",
        f"Machine: {env['cpu']}, {env['threads']} thread(s); torch {env['torch']}, PyG "
        f"{env['torch_geometric']}; {env['date']}. Load average at start / end: "
        f"{payload['loadavg_start']} / {payload['loadavg_end']} (a shared machine: read the "
        "ratios).",
        "",
        f"Command: `{command}`",
        "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def run_scale(args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    for model in args.models:
        for edges in args.sizes:
            nodes = nodes_for(edges) if edges != ARXIV_EDGES else ARXIV_NODES
            runs = {}
            for impl in ("pyg", "gnnkit"):
                tick = time.perf_counter()
                runs[impl] = run_in_subprocess(
                    measure_epoch,
                    impl,
                    model,
                    nodes,
                    edges,
                    repeat=args.repeat,
                    warmup=args.warmup,
                    threads=args.threads,
                )
                print(
                    f"{model} |E|={edges:>9,} {impl:6s} epoch "
                    f"{runs[impl]['time']['median_s']:.3f} s, +RSS "
                    f"{runs[impl]['memory']['increase_bytes'] / 2**20:,.0f} MB "
                    f"({time.perf_counter() - tick:.0f} s)",
                    flush=True,
                )
            entry = compare(runs, model)
            print(
                f"  speedup {entry['speedup']:.2f}x, memory ratio {_ratio(entry['memory_ratio'], 3)}"
            )
            results.append(entry)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", default=",".join(map(str, SIZES)), help="edge counts, comma-separated"
    )
    parser.add_argument("--models", default="gcn,gat")
    parser.add_argument("--repeat", type=int, default=3, help="timed epochs per process")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
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
    if args.quick:
        args.sizes, args.repeat = [10_000, 30_000], 2
        args.arxiv_nodes, args.arxiv_edges, args.arxiv_epochs = 2_000, 14_000, 3

    command = ("python benchmarks/scale.py " + " ".join(sys.argv[1:])).strip()
    payload: dict[str, Any] = {"loadavg_start": [round(v, 2) for v in os.getloadavg()]}
    if args.arxiv:
        payload["arxiv"] = arxiv_section(args)
    else:
        payload["results"] = run_scale(args)
    payload["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    payload["config"] = {
        "sizes": args.sizes,
        "models": args.models,
        "repeat": args.repeat,
        "warmup": args.warmup,
        "channels": ARXIV_FEATURES,
        "classes": ARXIV_CLASSES,
    }
    env = environment("cpu")
    if args.threads:
        env["threads"] = args.threads
    payload["env"] = env

    name = "arxiv" if args.arxiv else "scale"
    markdown_path = args.markdown or (None if args.quick else RESULTS / f"{name}.md")
    if markdown_path is not None:
        text = arxiv_markdown(payload, command) if args.arxiv else markdown(payload, command)
        atomic_write_text(markdown_path, text)
        print(f"wrote {markdown_path}")
    if not args.arxiv:
        plot_path = args.plot or (None if args.quick else RESULTS / "scale.png")
        if plot_path is not None:
            print(f"wrote {plot(payload, plot_path)}")
    if args.json:
        atomic_write_json(args.json, payload)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
