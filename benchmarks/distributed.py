"""Partition-parallel GCN on a synthetic power-law graph: memory, time and halo per rank.

For P = 1, 2, 4 processes (``torchrun``, gloo, CPU) on one synthetic power-law graph
(:func:`gnnkit.distributed.synthetic.power_law_graph`, arxiv-size by default: 169,343 nodes,
mean degree 13.7, 128 features, 40 classes), the script cuts METIS shards
(``gnnkit.distributed.partition_dataset``), trains ``--epochs`` epochs of a two-layer GCN on
them (``python -m gnnkit.distributed``'s code path, one rank per shard) and records for every
rank:

- the peak resident memory above the rank's resident memory once torch, gnnkit and the
  process group were up (so the interpreter and libraries are excluded; glibc's
  ``MALLOC_MMAP_THRESHOLD_=65536`` so that freed tensors leave the resident set), and the exact
  bytes of its shard's tensors;
- the median epoch time (training only; evaluation runs after the last epoch);
- its halo (rows received per exchange) and the bytes it receives per training epoch
  (every layer's halo rows in the forward, the same number of gradient rows in the backward).

It also compares METIS with a random split (total halo nodes), and with ``--project`` fits the
METIS halo fraction against P on growing graphs and projects ogbn-papers100M
(``distributed_projection.py``), beside published full-batch runs. ``--masks`` times the
global-id dropout masks (torch path against the compiled one).

Run: ``python benchmarks/distributed.py --markdown benchmarks/results/distributed.md --json
benchmarks/results/distributed.json`` (``--nodes 20000`` for a quick run).
"""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

from _collect import (
    command_line,
    load_average,
    machine_line,
    markdown_report,
    run_environment,
    script_parser,
    write_outputs,
)
from distributed_projection import compare_published, fit_power_law, project_papers100m

ARXIV = {"nodes": 169_343, "avg_degree": 13.7, "features": 128, "classes": 40}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def worker(args) -> None:
    """One rank (started by torchrun): train on its shard, write rank-R.json."""
    import torch

    from gnnkit.distributed import PartitionConfig, fit_partitioned, load_shard
    from gnnkit.train.distributed import init_distributed, shutdown_distributed

    torch.set_num_threads(args.threads)
    init_distributed(timeout_s=600)
    rank = int(os.environ["RANK"])
    base = _rss_bytes()
    config = PartitionConfig(model="gcn", hidden=args.hidden, epochs=args.epochs, eval_every=0)
    result = fit_partitioned(args.shards, config)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    shard, manifest = load_shard(args.shards, rank)
    shard_bytes = sum(t.numel() * t.element_size() for t in shard.values())
    widths = [args.hidden, manifest["num_classes"]]
    halo = result["num_halo"]
    record = {
        "rank": rank,
        "num_local": result["num_local"],
        "num_halo": halo,
        "peak_mb": (peak - base) / 2**20,
        "shard_mb": shard_bytes / 2**20,
        "epoch_s": median(result["epoch_times"][1:-1] or result["epoch_times"]),
        "recv_bytes_per_epoch": 2 * halo * sum(widths) * 4,
        "test_acc": result["best"].get("test_acc"),
    }
    Path(args.out, f"rank-{rank}.json").write_text(json.dumps(record))
    shutdown_distributed()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(shards: Path, parts: int, args) -> list[dict]:
    out = Path(tempfile.mkdtemp(prefix=f"ranks{parts}-", dir=args.work))
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc-per-node={parts}",
        f"--master-port={_free_port()}",
        __file__,
        "--worker",
        "--shards",
        str(shards),
        "--out",
        str(out),
        "--epochs",
        str(args.epochs),
        "--hidden",
        str(args.hidden),
        "--threads",
        str(args.threads),
    ]
    # Every allocation above 64 KiB is its own mapping, returned to the system when freed:
    # without this, glibc's growing mmap threshold keeps freed tensors in the heap and the
    # peak resident memory measures fragmentation rather than the live tensors.
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MALLOC_MMAP_THRESHOLD_": "65536"}
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    return [json.loads((out / f"rank-{r}.json").read_text()) for r in range(parts)]


def halo_fractions(sizes: list[int], parts: list[int]) -> dict[str, dict[str, float]]:
    """Total METIS halo / |V| for every graph size and P (graphs as the main one)."""
    from gnnkit.distributed import halo_sizes, partition_nodes
    from gnnkit.distributed.synthetic import power_law_graph

    table: dict[str, dict[str, float]] = {}
    for n in sizes:
        g = power_law_graph(
            n, avg_degree=ARXIV["avg_degree"], num_features=1, num_classes=2, seed=0
        )
        table[str(n)] = {}
        for p in parts:
            part = partition_nodes(g.edge_index, n, p, method="metis")
            table[str(n)][str(p)] = sum(halo_sizes(g.edge_index, part, p)) / n
    return table


def measure_masks(repeats: int = 15) -> dict:
    """Seconds per epoch spent drawing the global-id dropout masks of Cora-size models, torch
    path against the compiled one, interleaved in this process (1 thread), medians."""
    import torch

    from gnnkit.distributed import keep_mask
    from gnnkit.ops._jit import jit_available

    torch.set_num_threads(1)
    ids, edges = torch.arange(2708), torch.arange(13264)  # Cora's nodes, edges + self-loops
    shapes = {  # every mask of one training epoch: (ids, columns, layer)
        "gcn": [(ids, 1433, 0), (ids, 16, 1)],
        "gat": [(ids, 1433, 0), (ids, 64, 1), (edges, 8, 2), (edges, 1, 3)],
    }
    paths = [False, True] if jit_available() else [False]
    for compiled in paths:  # warm-up (and the compile)
        keep_mask(ids, 8, 0.5, seed=0, step=0, layer=0, compiled=compiled)
    times: dict[str, dict[str, list[float]]] = {m: {str(c): [] for c in paths} for m in shapes}
    for rep in range(repeats):
        for model, masks in shapes.items():
            for compiled in paths:
                tick = time.perf_counter()
                for node_ids, columns, layer in masks:
                    keep_mask(
                        node_ids, columns, 0.5, seed=0, step=rep, layer=layer, compiled=compiled
                    )
                times[model][str(compiled)].append(time.perf_counter() - tick)
    return {
        model: {
            "torch_s": median(t["False"]),
            "compiled_s": median(t["True"]) if "True" in t else None,
        }
        for model, t in times.items()
    }


def _when() -> dict:
    import datetime

    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return {"date": now, "load_average": load_average(), "command": command_line()}


def measure(args) -> dict:
    import torch

    from gnnkit.distributed import halo_sizes, partition_dataset, partition_nodes
    from gnnkit.distributed.synthetic import power_law_graph

    data = power_law_graph(
        args.nodes,
        avg_degree=ARXIV["avg_degree"],
        num_features=ARXIV["features"],
        num_classes=ARXIV["classes"],
        seed=0,
    )
    payload: dict = {"nodes": args.nodes, "edges": int(data.edge_index.size(1)), "runs": {}}
    payload["halo"] = {}
    for p in args.parts:
        if p > 1:
            for method in ("metis", "random"):
                part = partition_nodes(data.edge_index, args.nodes, p, method=method)
                payload["halo"][f"{method}-{p}"] = sum(halo_sizes(data.edge_index, part, p))
        folder = Path(args.work) / f"metis-{p}"
        tick = time.perf_counter()
        partition_dataset(data, folder, p, dataset="synthetic", method="metis", overwrite=True)
        cut = time.perf_counter() - tick
        payload["runs"][str(p)] = {"partition_s": cut, "ranks": launch(folder, p, args)}
        print(f"P={p}: {payload['runs'][str(p)]}", flush=True)
    del data, torch
    return payload


def markdown(payload: dict, machine: str, command: str) -> str:
    runs = payload["runs"]
    single = runs["1"]["ranks"][0]["peak_mb"] if "1" in runs else None
    lines = [
        "| P | rank | nodes | halo | shard MB | peak MB above start | ratio to P=1 | "
        "epoch s (median) | MB received / epoch |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p, run in runs.items():
        for r in run["ranks"]:
            ratio = f"{r['peak_mb'] / single:.2f}" if single else "-"
            lines.append(
                f"| {p} | {r['rank']} | {r['num_local']:,} | {r['num_halo']:,} | "
                f"{r['shard_mb']:.1f} | {r['peak_mb']:.1f} | {ratio} | {r['epoch_s']:.3f} | "
                f"{r['recv_bytes_per_epoch'] / 2**20:.2f} |"
            )
    lines += [
        "",
        "| P | METIS halo nodes | random halo nodes | METIS / random |",
        "|---|---|---|---|",
    ]
    for p in sorted({int(k.split("-")[1]) for k in payload["halo"]}):
        m, r = payload["halo"][f"metis-{p}"], payload["halo"][f"random-{p}"]
        lines.append(f"| {p} | {m:,} | {r:,} | {m / r:.3f} |")
    if "projection" in payload:
        proj = payload["projection"]
        lines += [
            "",
            "Halo fraction h = total halo nodes / |V| of METIS partitions of growing synthetic "
            f"graphs; fit on the largest: h(P) = {proj['a']:.3f} P^{proj['b']:.3f}.",
            "",
            "| nodes | "
            + " | ".join(f"P = {p}" for p in next(iter(proj["fractions"].values())))
            + " |",
            "|---|" + "---|" * len(next(iter(proj["fractions"].values()))),
            *(
                f"| {int(n):,} | " + " | ".join(f"{v:.3f}" for v in row.values()) + " |"
                for n, row in proj["fractions"].items()
            ),
            "",
            "| machines P | halo fraction | memory per machine GB | GB received per epoch "
            "per machine | communication s per epoch at 100 Gb/s |",
            "|---|---|---|---|---|",
        ]
        for row in proj["papers100m"]:
            lines.append(
                f"| {row['P']} | {row['halo_fraction']:.2f} | {row['memory_gb']:.1f} | "
                f"{row['bytes_per_epoch_gb']:.2f} | {row['comm_s_at_100gbps']:.2f} |"
            )
        lines += [
            "",
            "Beside published full-batch runs on ogbn-papers100M: this scheme projected for the "
            "same model shape and machine count (communication only), and what the system "
            "published (whole epochs).",
            "",
            "| system | model | machines | published | halo fraction | memory per machine GB "
            "| GB received per machine per epoch | communication s per epoch (link) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in proj.get("published") or compare_published(proj["a"], proj["b"]):
            lines.append(
                f"| {row['system']} | {row['model']} | {row['P']} | {row['published']} | "
                f"{row['halo_fraction']:.2f} | {row['memory_gb']:.1f} | "
                f"{row['bytes_per_epoch_gb']:.2f} | {row['comm_s']:.2f} "
                f"({row['link_gbps']:g} Gb/s) |"
            )
    if "masks" in payload:
        lines += [
            "",
            "Drawing one epoch's global-id dropout masks for Cora-size models (2,708 nodes, "
            "13,264 edges with self-loops; GCN: 1433 + 16 feature columns; GAT: 1433 + 64 "
            "feature columns and 8 + 1 attention heads), 1 thread, interleaved, medians of "
            f"{payload['masks'].get('repeats', 15)} ({payload['masks'].get('date', '')}, load "
            f"average {payload['masks'].get('load_average', '')}; "
            f"`{payload['masks'].get('command', '')}`):",
            "",
            "| model | torch path s | compiled (numba) s | speed-up |",
            "|---|---|---|---|",
        ]
        for model in ("gcn", "gat"):
            row = payload["masks"][model]
            fast = row["compiled_s"]
            lines.append(
                f"| {model.upper()} | {row['torch_s']:.4f} | "
                + (f"{fast:.4f} | {row['torch_s'] / fast:.0f}x |" if fast else "- | - |")
            )
    lines += ["", *NOTES]
    intro = (
        f"Two-layer GCN (hidden {payload['hidden']}) on a synthetic power-law graph of "
        f"{payload['nodes']:,} nodes and {payload['edges']:,} directed edges, METIS shards, "
        f"{payload['epochs']} epochs, one process per part (torchrun, gloo)."
    )
    return markdown_report(
        "Partition-parallel training (issue 20)", intro, lines, machine=machine, command=command
    )


NOTES = [
    "Notes.",
    "",
    "- The graph is `power_law_graph(169343, avg_degree=13.7, num_features=128, "
    "num_classes=40)`: Chung-Lu degrees with exponent 2.5, 80 % of the edges inside one of "
    "846 planted communities and 20 % anywhere. The 20 % long-range edges and the hubs make "
    "its halo large (at P = 4 a part's halo is bigger than the part); real citation graphs "
    "cut better, so these halos are pessimistic. Its labels are easy (the accuracy says "
    "nothing), it exists for sizes and times.",
    "- Peak memory: resident memory high-water mark (`ru_maxrss`) minus the resident memory "
    "once torch, gnnkit and the process group were up, with `MALLOC_MMAP_THRESHOLD_=65536` so "
    "freed tensors leave the resident set. It covers the shard, the CSR, parameters, Adam, "
    "activations, the halo buffers and the dropout masks. Shards hold every edge's global id "
    "(int64, 8 bytes an edge: GAT's attention dropout is keyed by it; GCN leaves it unused). "
    "Activations scale with local + halo "
    "rows, so with a halo as large as the part the ratio to P = 1 stays above 1 / P.",
    "- Epoch time: the median of 10 training epochs (the first and last left out), each rank "
    "with 1 thread, on 2 cores shared with other engineers' jobs (see the load average): P = 4 "
    "oversubscribes them. `MALLOC_MMAP_THRESHOLD_` maps every large tensor afresh (page "
    "faults), which slows every run and P = 1, with the largest tensors, most: an earlier run "
    "of the same command without it measured 5.8 / 5.4 / 3.0 s for P = 1 / 2 / 4 (and peak "
    "memory ratios of about 0.7 / 0.6 that measured glibc's retained heap, not live tensors).",
    "- Bytes received per epoch: both layers' halo rows (128 + 40 float32 columns) in the "
    "forward and as many gradient rows in the backward.",
    "- Projection to ogbn-papers100M (111,059,956 nodes, 1,615,685,872 edges, 128 features, "
    "172 classes), for a two-layer GCN of hidden width 256 in float32: halo fraction h(P) "
    "from the power law fitted on the largest synthetic graph's METIS runs (P = 2..16), "
    "extrapolated, capped at P - 1; per machine: the CSR (int32 columns, int64 row pointers, "
    "float64 norms), features and labels, and three (local + halo) x (256 + 172) float32 "
    "buffers for activations, halos and gradients; bytes = forward halo rows plus backward "
    "gradient rows; time = bytes / 12.5 GB/s (100 Gb/s, no overlap, latency and computation "
    "left out). The fit comes from P <= 16 on a 169,343-node graph; P = 32..256 extrapolate "
    "it, and real citation graphs cut better than this synthetic one, so the halos are "
    "pessimistic.",
    "- Published runs. DistGNN (SC'21) trains ogbn-papers100M full-batch on 32, 64 and 128 "
    "CPU sockets, one rank per socket, with a vertex-cut partition (Libra) and three "
    "schedules: cd-0 (synchronous, every layer's remote partial aggregates exchanged every "
    "epoch: the counterpart of this exact scheme), cd-5 (remote aggregates delayed by up to 5 "
    "epochs) and 0c (no communication of aggregates). Its model (4 GraphSAGE layers of width "
    "64, 200 epochs, learning rate 0.08) and socket counts are those of its code in DGL's "
    "examples (`examples/pytorch/graphsage/experimental/dist_ogbn_papers.sh`, "
    "`train_dist_sym_ogbn-papers.py`, from DGL pull request 3381). What the paper reports of "
    "its per-epoch times, memory and communication on papers100M was not in the sources "
    "searched here (the stored arXiv page gave its abstract only; "
    "searched: the pages, docs, issues and code corpora for DistGNN, Libra, cd-0 / cd-5, "
    "papers100M epoch times; dmlc/dgl, IntelLabs/SAR and yuk12/libxsmm's DistGNN README), so "
    "only its abstract's claim is quoted: up to 97x over DGL on one socket, with 128 sockets. "
    "The DistGNN row is this scheme's projection for its configuration at an assumed 100 "
    "Gb/s (the link is not stated in the sources at hand). SAR (MLSys'22, Intel's "
    "sequential aggregation and rematerialization, also exact full-batch training) publishes "
    "3.8 s per epoch for a 3-layer GraphSAGE (hidden 256) on 128 two-socket machines with 200 "
    "Gb/s links; this scheme's projected communication for that configuration is 1.35 s of "
    "it, before any computation. Not comparable, for scale only: DistGNN-MB (arXiv "
    "2211.06385, mini-batch) reports 2 s (GraphSAGE) and 4.9 s (GAT) per epoch on 32 "
    "two-socket nodes.",
]


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("--nodes", type=int, default=ARXIV["nodes"])
    parser.add_argument("--parts", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    parser.add_argument("--project", action="store_true", help="fit the halo and project")
    parser.add_argument("--masks", action="store_true", help="time the dropout masks")
    parser.add_argument(
        "--work",
        default=None,
        help="where shards go (default: a temp folder); an earlier run's there are cut again",
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--from-json", type=Path, help="rewrite --markdown from this result")
    parser.add_argument("--worker", action="store_true", help=argparse_hidden())
    parser.add_argument("--shards", help=argparse_hidden())
    parser.add_argument("--out", help=argparse_hidden())
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if args.from_json:
        payload = json.loads(args.from_json.read_text())
        report = payload["report"]
        if "projection" in payload:
            proj = payload["projection"]
            proj["published"] = compare_published(proj["a"], proj["b"])
        if args.masks:
            payload["masks"] = {**measure_masks(), "repeats": 15, **_when()}
        write_outputs(
            payload,
            json_path=args.json,
            markdown_path=args.markdown,
            markdown=lambda: markdown(payload, report["machine"], report["command"]),
        )
        return
    args.work = args.work or tempfile.mkdtemp(prefix="gnnkit-dist-")
    start = load_average()
    payload = measure(args)
    payload.update(hidden=args.hidden, epochs=args.epochs, threads_per_rank=args.threads)
    if args.masks:
        payload["masks"] = {**measure_masks(), "repeats": 15, **_when()}
    if args.project:
        sizes = sorted({20_000, 50_000, args.nodes})
        fractions = halo_fractions(sizes, [2, 4, 8, 16])
        a, b = fit_power_law(fractions[str(args.nodes)])
        payload["projection"] = {
            "fractions": fractions,
            "a": a,
            "b": b,
            "papers100m": project_papers100m(a, b),
            "published": compare_published(a, b),
        }
    env = run_environment(threads=args.threads)
    payload["environment"] = env
    machine = machine_line(
        env, start, load_average(), "2 cores shared with other work; P = 4 oversubscribes them"
    )
    command = command_line()
    payload["report"] = {"machine": machine, "command": command}
    write_outputs(
        payload,
        json_path=args.json,
        markdown_path=args.markdown,
        markdown=lambda: markdown(payload, machine, command),
    )


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
