"""Operator dispatches and wall time of one Cora training epoch: gnnkit against tuned PyG.

A Cora epoch (one optimiser step and one evaluation of every split on 2,708 nodes) is
dispatch-bound: its time is mostly the fixed cost of each PyTorch operator call, not arithmetic.
This script counts the ATen operators one epoch dispatches (a ``TorchDispatchMode`` sees every
operator that reaches a kernel, the backward pass's included) and times epochs of

- ``gnnkit``: gnnkit's recipe (:class:`gnnkit.models.GCN` or :class:`gnnkit.models.GAT`),
- ``pyg-tuned``: the strongest PyG configuration of issue 23, the harness's reference
  (:mod:`gnnkit.bench.pyg_tuned`): PyG's ``GCNConv(cached=True)`` (``GATConv`` with
  self-loops added once), sparse CSR input features with dropout on their stored values, the
  same two-layer recipe,

both trained by gnnkit's own loop (:class:`gnnkit.train.engine.Run` over
:class:`gnnkit.train.node.NodeTask`, one ``Run.step`` per epoch), on one thread, the two
interleaved run by run in one process. Epoch times are the thread's CPU time
(``time.thread_time``, less disturbed than wall time by other processes on a shared machine),
medians over the epochs of a run (the first excluded), then over runs; the speed-up is the
median over runs of the per-run ratio.

Run::

    GNNKIT_MIRROR=/work/shared/datasets python benchmarks/dispatch.py --runs 7 --epochs 200

Writes ``benchmarks/results/dispatch.json`` and ``.md`` (``--out`` to change, ``--no-write`` to
print only). ``--top N`` prints the N most frequent operators of each epoch.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import torch_geometric
from torch.utils._python_dispatch import TorchDispatchMode

import gnnkit
from gnnkit.bench.pyg_tuned import TUNED_REFERENCES
from gnnkit.data import load
from gnnkit.recipes import get_recipe
from gnnkit.train import TrainConfig, node_inputs
from gnnkit.train.engine import Run
from gnnkit.train.node import NodeTask

RESULTS = Path(__file__).with_name("results")


# ---------------------------------------------------------------------------- measuring


class _Count(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        self.ops[str(func.overloadpacket.__name__)] += 1
        return func(*args, **(kwargs or {}))


def _session(impl: str, model: str, data: Any, seed: int, epochs: int) -> Run:
    """A run of ``impl`` (``"gnnkit"`` or ``"pyg-tuned"``) of ``model`` on ``data``."""
    recipe = get_recipe("node", model, "cora")
    build, features = recipe.build, recipe.features
    if impl == "pyg-tuned":
        build, features, _ = TUNED_REFERENCES[("node", recipe.name)]
    inputs = node_inputs(data, features=features)
    torch.manual_seed(seed)
    net = build(inputs.num_features, inputs.num_classes)
    config = TrainConfig(
        epochs=epochs, lr=recipe.lr, weight_decay=recipe.weight_decay, seed=seed,
        restore_best=False,
    )  # fmt: skip
    return Run(NodeTask(net, inputs, config), epochs=epochs, seed=seed)


def count_ops(impl: str, model: str, data: Any, warm: int = 3) -> collections.Counter[str]:
    """The ATen operators of one epoch after ``warm`` epochs."""
    run = _session(impl, model, data, 0, warm + 1)
    for _ in range(warm):
        run.step()
    with _Count() as counter:
        run.step()
    return counter.ops


def time_epochs(impls: list[str], model: str, data: Any, runs: int, epochs: int) -> dict:
    """Per-epoch wall seconds: median over a run's epochs (the first excluded), per run."""
    medians: dict[str, list[float]] = {impl: [] for impl in impls}
    for r in range(runs):
        order = impls if r % 2 == 0 else impls[::-1]
        for impl in order:
            run = _session(impl, model, data, r, epochs)
            times = []
            for _ in range(epochs):
                tick = time.thread_time()
                run.step()
                times.append(time.thread_time() - tick)
            medians[impl].append(statistics.median(times[1:]))
    return medians


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["gcn", "gat"], choices=["gcn", "gat"])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--top", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "dispatch")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    data = load("cora")
    impls = ["gnnkit", "pyg-tuned"]
    rows: dict[str, Any] = {}
    for model in args.models:
        ops = {impl: count_ops(impl, model, data) for impl in impls}
        medians = time_epochs(impls, model, data, args.runs, args.epochs)
        rows[model] = {
            impl: {
                "ops_per_epoch": sum(ops[impl].values()),
                "epoch_ms_median": 1e3 * statistics.median(medians[impl]),
                "epoch_ms_runs": [1e3 * t for t in medians[impl]],
                "top_ops": dict(ops[impl].most_common(args.top or 15)),
            }
            for impl in impls
        }
        g, p = rows[model]["gnnkit"], rows[model]["pyg-tuned"]
        ratio = statistics.median(
            b / a for a, b in zip(g["epoch_ms_runs"], p["epoch_ms_runs"], strict=True)
        )
        rows[model]["speedup_vs_pyg_tuned"] = ratio
        print(
            f"{model}: gnnkit {g['ops_per_epoch']} ops {g['epoch_ms_median']:.3f} ms | "
            f"pyg-tuned {p['ops_per_epoch']} ops {p['epoch_ms_median']:.3f} ms | "
            f"{ratio:.2f}x"
        )
        if args.top:
            for impl in impls:
                print(f"  {impl}: {ops[impl].most_common(args.top)}")
    if not args.no_write:
        _write(args.out, rows, argv if argv is not None else sys.argv[1:], args)
    return 0


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _write(out: Path, rows: dict[str, Any], argv: list[str], args: Any) -> None:
    env = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": _cpu_model(),
        "load_average": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_geometric": torch_geometric.__version__,
        "gnnkit": gnnkit.__version__,
        "threads": torch.get_num_threads(),
        "command": "python benchmarks/dispatch.py " + " ".join(argv),
        "runs": args.runs,
        "epochs": args.epochs,
    }
    out.with_suffix(".json").write_text(json.dumps({"env": env, "models": rows}, indent=2) + "\n")
    lines = [
        "# Cora epoch: operator dispatches and CPU time",
        "",
        f"{env['date']}, {env['machine']} (load average {env['load_average']} while it ran), "
        f"torch {env['torch']}, PyG {env['torch_geometric']}, {env['threads']} thread, "
        f"{args.runs} runs x {args.epochs} epochs interleaved in one process: the thread's CPU "
        "time per epoch, median over a run's epochs, then over runs; the speed-up is the median "
        "of the per-run ratios.",
        "",
        f"Command: `GNNKIT_MIRROR=/work/shared/datasets {env['command']}`",
        "",
        "| model | implementation | ATen ops / epoch | epoch, CPU ms | speed-up vs pyg-tuned |",
        "|---|---|---:|---:|---:|",
    ]
    for model, row in rows.items():
        for impl in ("gnnkit", "pyg-tuned"):
            r = row[impl]
            ratio = f"{row['speedup_vs_pyg_tuned']:.2f}x" if impl == "gnnkit" else "1"
            lines.append(
                f"| {model} | {impl} | {r['ops_per_epoch']} | {r['epoch_ms_median']:.3f} | "
                f"{ratio} |"
            )
    lines += [
        "",
        "ATen ops: the operators one epoch (training step and evaluation, after 3 warm-up "
        "epochs) dispatches to kernels, counted by a `TorchDispatchMode` (views and the "
        "backward pass included; a profiler that also lists composite operators counts more). "
        "Both implementations train through gnnkit's engine with the same recipe; `pyg-tuned` "
        "is `gnnkit.bench.pyg_tuned`.",
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
