"""One GATConv layer on a CUDA GPU: gnnkit's fused Triton kernels against PyG, in one process.

For a GPU session (issue 23's GPU rows). Forward + backward of one layer on synthetic graphs
(uniform random directed edges without duplicates, seed 0):

- ``cora``: 2,708 nodes, 10,556 edges, ``GATConv(1433, 8, heads=8)`` (dense features);
- ``arxiv``: 169,343 nodes, 1,166,243 edges, ``GATConv(128, 32, heads=8)``.

Implementations, all with PyG's seed-0 weights (``benchmarks/layers.py`` builds them):
``gnnkit`` (the fused kernels, :func:`gnnkit.ops.fused_gat` on Triton), ``gnnkit-unfused``
(the same layer with ``GNNKIT_FUSED_GAT=0``), ``pyg`` (``GATConv`` on ``edge_index``) and
``pyg-tuned`` (self-loops added once, a CSR ``adj_t``, ``add_self_loops=False``). Each
takes ``--warmup`` untimed steps (Triton compiles there), then ``--repeat`` rounds of one
step of every implementation in turn, synchronised; the time is the median step. The outputs
must agree to 1e-3.

Run: python benchmarks/gpu_gat.py [--repeat 30] [--sizes cora arxiv]
Writes benchmarks/results/gat_cuda_<gpu>.json and .md (``--out-dir``, ``--out-stem`` to
change). ``--device cpu`` runs the same steps on the CPU (``gat_cpu``): a check of the script
(``benchmarks/gpu_session.sh``), not the measurement it is for.
"""

from __future__ import annotations

import os
import re
import statistics
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
from layers import build_layer, layer_inputs
from torch_geometric.utils import coalesce

from gnnkit.utils.timing import time_function

SIZES = {
    "cora": {"nodes": 2708, "edges": 10556, "channels": 1433, "out": 8},
    "arxiv": {"nodes": 169343, "edges": 1166243, "channels": 128, "out": 32},
}
IMPLS = ("gnnkit", "gnnkit-unfused", "pyg", "pyg-tuned")


def measure(size: str, repeat: int, warmup: int, device: str = "cuda") -> dict[str, Any]:
    """Median step time of every implementation at ``size``, interleaved, and their ratios."""
    from gnnkit.ops.attention import fused_gat_backend

    cfg = SIZES[size]
    gen = torch.Generator().manual_seed(0)
    edges = torch.randint(0, cfg["nodes"], (2, cfg["edges"]), generator=gen)
    # Without duplicates: the CSR adj_t of pyg-tuned would merge them into one edge.
    edge_index = coalesce(edges, num_nodes=cfg["nodes"]).to(device)
    x = torch.randn(cfg["nodes"], cfg["channels"], generator=gen).to(device)
    grad = torch.randn(cfg["nodes"], 8 * cfg["out"], generator=gen).to(device)
    spec = {"kind": "gat", "out": cfg["out"], "kwargs": {"heads": 8}}
    steps, outputs = {}, {}
    for impl in IMPLS:
        built = "gnnkit" if impl.startswith("gnnkit") else impl
        layer = build_layer(built, spec, cfg["channels"]).to(device)
        inputs = layer_inputs(spec, x, edge_index, built)
        fused = "0" if impl == "gnnkit-unfused" else "1"

        def step(layer=layer, inputs=inputs, fused=fused) -> torch.Tensor:
            os.environ["GNNKIT_FUSED_GAT"] = fused  # read by gnnkit at every call
            out = layer(*inputs)
            out.backward(grad)
            layer.zero_grad(set_to_none=True)
            return out.detach()

        outputs[impl] = step()
        time_function(step, repeat=1, warmup=warmup, device=device)
        steps[impl] = step
    times: dict[str, list[float]] = {impl: [] for impl in IMPLS}
    for _ in range(repeat):
        for impl in IMPLS:
            times[impl] += time_function(steps[impl], repeat=1, warmup=0, device=device).times_s
    os.environ.pop("GNNKIT_FUSED_GAT", None)
    diff = max(float((outputs[i] - outputs["gnnkit"]).abs().max()) for i in IMPLS)
    if diff > 1e-3:
        raise SystemExit(f"{size}: the implementations' outputs differ by {diff:g}")
    median = {impl: statistics.median(t) for impl, t in times.items()}
    return {
        **cfg,
        "edges": edge_index.size(1),
        "backend": fused_gat_backend(device, torch.float32),
        "median_ms": {impl: 1e3 * t for impl, t in median.items()},
        "times_s": times,
        "speedup": {impl: median[impl] / median["gnnkit"] for impl in IMPLS},
        "outputs_max_abs_diff": diff,
    }


def markdown(payload: dict[str, Any], command: str) -> str:
    body = [
        "| size | gnnkit (fused) | gnnkit unfused | PyG | tuned PyG | vs PyG | vs tuned |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for size in payload["sizes"]:
        e = payload[size]
        ms, up = e["median_ms"], e["speedup"]
        body.append(
            f"| {size} ({e['nodes']:,} nodes, {e['edges']:,} edges) | {ms['gnnkit']:.2f} ms "
            f"| {ms['gnnkit-unfused']:.2f} ms | {ms['pyg']:.2f} ms | {ms['pyg-tuned']:.2f} ms "
            f"| **{up['pyg']:.2f}x** | **{up['pyg-tuned']:.2f}x** |"
        )
    where = "CUDA" if payload["device"] == "cuda" else "the CPU (a check of the script)"
    intro = (
        f"One `GATConv` (8 heads) forward + backward on {where}, median of {payload['repeat']} "
        "interleaved steps; vs = T_reference / T_gnnkit. gnnkit's backend: "
        + ", ".join(f"{s} {payload[s]['backend']}" for s in payload["sizes"])
        + "."
    )
    env = payload["environment"]
    machine = machine_line(env, payload["load"][0], payload["load"][1], f"{where} timings")
    return markdown_report(f"GATConv on {where}", intro, body, machine=machine, command=command)


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("--out-stem", default=None, help="default: gat_cuda_<gpu>, or gat_cpu")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit(
            "gpu_gat.py needs a CUDA GPU (torch.cuda.is_available() is False); "
            "--device cpu checks the script on the CPU"
        )
    start = load_average()
    payload: dict[str, Any] = {"sizes": args.sizes, "repeat": args.repeat, "device": args.device}
    for size in args.sizes:
        payload[size] = measure(size, args.repeat, args.warmup, args.device)
        print(size, {k: f"{v:.2f} ms" for k, v in payload[size]["median_ms"].items()})
    payload["environment"] = run_environment(args.device)
    payload["load"] = [start, load_average()]
    stem = args.out_stem or "gat_cpu"
    if args.device == "cuda" and args.out_stem is None:
        gpu = torch.cuda.get_device_name().split()[-1].lower()
        stem = f"gat_cuda_{re.sub(r'[^a-z0-9]+', '', gpu)}"
    command = command_line()
    write_outputs(
        payload,
        json_path=args.out_dir / f"{stem}.json",
        markdown_path=args.out_dir / f"{stem}.md",
        markdown=lambda: markdown(payload, command),
    )


if __name__ == "__main__":
    main()
