"""A user's own Cora script on gnnkit's layers: swap the import, add the one step, or not.

A user who trains GCN or GAT with their own PyG-style script (a model class, a ``train()`` and
``test()`` per epoch, as PyG's ``examples/gcn.py`` and ``examples/gat.py``) can use gnnkit in
three ways. This script measures each against PyG's example and against gnnkit's own harness:

- ``pyg``: PyG's example as written: ``torch_geometric.nn`` layers, ``T.NormalizeFeatures()``
  (dense features), ``F.dropout``;
- ``swap``: the same script with ``from gnnkit.nn import GCNConv`` (or ``GATConv``) only;
- ``one-step``: ``swap`` plus the one step: ``gnnkit.SparseFeatures()`` after
  ``T.NormalizeFeatures()`` (sparse CSR features) and ``from gnnkit.nn import dropout`` in
  place of ``F.dropout``;
- ``harness``: :class:`gnnkit.models.GCN` / :class:`~gnnkit.models.GAT` trained by
  :func:`gnnkit.train.fit` on :func:`gnnkit.train.node_inputs`, as ``gnnkit bench node``
  trains them (the recipe of :mod:`gnnkit.recipes`);
- ``one-step-cached`` (diagnostic): ``one-step`` with ``cached=True`` on both layers (gnnkit's
  models set it), to show how much of the remaining gap is the recomputed normalisation;
- ``one-step-tuned`` (diagnostic): ``one-step`` plus the two documented edits that
  :class:`gnnkit.models.GCN` and :class:`~gnnkit.models.GAT` make: the activation and dropout
  between the layers as one call (``gnnkit.nn.relu_dropout`` / ``elu_dropout``) and the
  first layer's weight stored column-major (``gnnkit.nn.column_major_``).

The recipes are the examples': GCN 16 hidden, dropout 0.5, Adam lr 0.01, weight decay 5e-4 on
the first layer; GAT 8 heads x 8 hidden, dropout 0.6, Adam lr 0.005, weight decay 5e-4; 200
epochs. The user's loop times ``train()`` plus ``test()`` per epoch (as the examples do); the
harness's epoch is one step of :func:`~gnnkit.train.fit`'s engine (:class:`gnnkit.train.engine.Run`):
its training step, its evaluation and its per-epoch bookkeeping. Epochs are timed in CPU time
of the process (``time.process_time``: one thread, so a shared machine's other load does not
count) and in wall time. Reported per variant: the median epoch over all epochs of all seeds
and the test accuracy at the best validation epoch (mean +- std over seeds). One process, one
thread; every variant warms up for a few epochs, then for each seed every variant is built
and they take turns, ``--chunk`` epochs each (default 10), in an order rotated per seed, each
on its own random stream (the accuracies are those of runs made alone). ``--chunk 0`` runs
each variant's 200 epochs in one go, as the results before 2026-12-07 03:40 UTC were
measured: on a machine whose speed drifts within minutes, that read variants doing the same
work up to 1.3x apart. Cora comes from gnnkit's data root or ``$GNNKIT_MIRROR``.

Run:  GNNKIT_MIRROR=/path/to/datasets python benchmarks/user_script.py [--seeds 3] [--epochs 200]
Writes benchmarks/results/user_script.{md,json}.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torch_geometric.nn as pyg_nn
import torch_geometric.transforms as T
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

import gnnkit.nn
from gnnkit import SparseFeatures
from gnnkit.data import load
from gnnkit.recipes import get_recipe
from gnnkit.train import TrainConfig, node_inputs, seed_everything
from gnnkit.train.engine import Run
from gnnkit.train.node import NodeTask, train_result

VARIANTS = ("pyg", "swap", "one-step", "harness", "one-step-cached", "one-step-tuned")
ONE_STEP = T.Compose([T.NormalizeFeatures(), SparseFeatures()])
#: The user's script per variant: where its layers come from, their extra options, its dropout
#: and its transform.
SCRIPTS: dict[str, tuple[Any, dict[str, Any], Callable[..., Any], Any]] = {
    "pyg": (pyg_nn, {}, F.dropout, T.NormalizeFeatures()),
    "swap": (gnnkit.nn, {}, F.dropout, T.NormalizeFeatures()),
    "one-step": (gnnkit.nn, {}, gnnkit.nn.dropout, ONE_STEP),
    "one-step-cached": (gnnkit.nn, {"cached": True}, gnnkit.nn.dropout, ONE_STEP),
    "one-step-tuned": (gnnkit.nn, {}, gnnkit.nn.dropout, ONE_STEP),
}
LABELS = {
    "pyg": "PyG's example as written",
    "swap": "swap the import only",
    "one-step": "swap + the one step (SparseFeatures, gnnkit.nn.dropout)",
    "harness": "gnnkit's harness (gnnkit.models + gnnkit.train.fit)",
    "one-step-cached": "(diagnostic) the one step, layers built with cached=True",
    "one-step-tuned": "(diagnostic) the one step + relu_dropout/elu_dropout + column_major_",
}
WARMUP_EPOCHS = 5


# ---------------------------------------------------------------------------------------------
# The user's script: PyG's examples/gcn.py and examples/gat.py, layers and dropout swappable
# ---------------------------------------------------------------------------------------------


class UserGCN(torch.nn.Module):
    def __init__(self, layers: Any, options: dict, dropout: Callable, in_channels: int, out: int):
        super().__init__()
        self.conv1 = layers.GCNConv(in_channels, 16, **options)
        self.conv2 = layers.GCNConv(16, out, **options)
        self.dropout = dropout

    def forward(self, x, edge_index):
        x = self.dropout(x, p=0.5, training=self.training)
        x = self.conv1(x, edge_index).relu()
        x = self.dropout(x, p=0.5, training=self.training)
        return self.conv2(x, edge_index)

    def optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(
            [
                dict(params=self.conv1.parameters(), weight_decay=5e-4),
                dict(params=self.conv2.parameters(), weight_decay=0),
            ],
            lr=0.01,
        )


class UserGAT(torch.nn.Module):
    def __init__(self, layers: Any, options: dict, dropout: Callable, in_channels: int, out: int):
        super().__init__()
        self.conv1 = layers.GATConv(in_channels, 8, heads=8, dropout=0.6, **options)
        self.conv2 = layers.GATConv(8 * 8, out, heads=1, concat=False, dropout=0.6, **options)
        self.dropout = dropout

    def forward(self, x, edge_index):
        x = self.dropout(x, p=0.6, training=self.training)
        x = F.elu(self.conv1(x, edge_index))
        x = self.dropout(x, p=0.6, training=self.training)
        return self.conv2(x, edge_index)

    def optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=0.005, weight_decay=5e-4)


def tuned(script: type, fused: Callable[..., Any], p: float) -> type:
    """``script`` (:class:`UserGCN` or :class:`UserGAT`) with the two edits gnnkit's own model
    makes (module docstring): ``fused`` activation and dropout, a column-major first weight."""

    class Tuned(script):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            gnnkit.nn.column_major_(self.conv1.lin.weight)

        def forward(self, x, edge_index):
            x = self.dropout(x, p=p, training=self.training)
            x = fused(self.conv1(x, edge_index), p, self.training)
            return self.conv2(x, edge_index)

    return Tuned


TunedGCN = tuned(UserGCN, gnnkit.nn.relu_dropout, 0.5)
TunedGAT = tuned(UserGAT, gnnkit.nn.elu_dropout, 0.6)


class UserRun:
    """The user's script for one variant and seed, built; :meth:`epochs` runs ``train()`` and
    ``test()`` epochs, timed, on the run's own random stream (``torch``'s default generator
    is saved and restored around each call, so that variants interleaved in chunks draw what
    they would draw alone)."""

    def __init__(self, kind: str, variant: str, cora: Any, seed: int) -> None:
        layers, options, dropout, transform = SCRIPTS[variant]
        seed_everything(seed)
        self.data = transform(cora.clone())
        tuned = variant == "one-step-tuned"
        script = (
            (TunedGCN if tuned else UserGCN) if kind == "gcn" else (TunedGAT if tuned else UserGAT)
        )
        self.model = script(layers, options, dropout, self.data.num_features, cora.num_classes)
        self.optimizer = self.model.optimizer()
        self.rng = torch.get_rng_state()
        self.cpu: list[float] = []
        self.wall: list[float] = []
        self.best_val_acc = self.test_acc = 0.0

    def train(self) -> float:
        model, data, optimizer = self.model, self.data, self.optimizer
        model.train()
        optimizer.zero_grad()
        out = model(data.x, data.edge_index)
        loss = F.cross_entropy(out[data.train_mask], data.y[data.train_mask])
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    @torch.no_grad()
    def test(self) -> list[float]:
        model, data = self.model, self.data
        model.eval()
        pred = model(data.x, data.edge_index).argmax(dim=-1)
        accs = []
        for mask in [data.train_mask, data.val_mask, data.test_mask]:
            accs.append(int((pred[mask] == data.y[mask]).sum()) / int(mask.sum()))
        return accs

    def epochs(self, count: int) -> None:
        torch.set_rng_state(self.rng)
        for _ in range(count):
            start, start_cpu = time.perf_counter(), time.process_time()
            self.train()
            _, val_acc, tmp_test_acc = self.test()
            if val_acc > self.best_val_acc:
                self.best_val_acc, self.test_acc = val_acc, tmp_test_acc
            self.cpu.append(time.process_time() - start_cpu)
            self.wall.append(time.perf_counter() - start)
        self.rng = torch.get_rng_state()

    def summary(self) -> dict[str, Any]:
        return {"cpu": self.cpu, "wall": self.wall, "test_acc": self.test_acc}


class HarnessRun:
    """gnnkit's model and engine with the recipe ``gnnkit bench node`` uses (what
    :func:`gnnkit.train.fit` runs), stepped epoch by epoch; the engine keeps the run's own
    random stream."""

    def __init__(self, kind: str, inputs: Any, seed: int, epochs: int) -> None:
        recipe = get_recipe("node", kind)
        seed_everything(seed)
        model = recipe.build(inputs.num_features, inputs.num_classes)
        config = TrainConfig(
            epochs=epochs, lr=recipe.lr, weight_decay=recipe.weight_decay, seed=seed
        )
        self.run = Run(NodeTask(model, inputs, config), seed=seed, **config.run_options())
        self.cpu: list[float] = []

    def epochs(self, count: int) -> None:
        for _ in range(count):
            start_cpu = time.process_time()
            self.run.step()
            self.cpu.append(time.process_time() - start_cpu)

    def summary(self) -> dict[str, Any]:
        result = train_result(self.run.result())
        return {"cpu": self.cpu, "wall": result.epoch_times, "test_acc": result.test_acc}


# ---------------------------------------------------------------------------------------------
# Measurement and report
# ---------------------------------------------------------------------------------------------


def measure(kind: str, cora: Any, seeds: int, epochs: int, chunk: int) -> dict[str, Any]:
    """Every variant of ``kind`` for each seed, interleaved: ``chunk`` epochs of each in turn
    (0: each seed's whole run of each variant in turn, in an order rotated per seed); the
    runs' epoch times and accuracy."""
    inputs = node_inputs(cora, features=get_recipe("node", kind).features)

    def build(variant: str, seed: int, count: int) -> Any:
        if variant == "harness":
            return HarnessRun(kind, inputs, seed, count)
        return UserRun(kind, variant, cora, seed)

    for variant in VARIANTS:
        build(variant, 0, WARMUP_EPOCHS).epochs(WARMUP_EPOCHS)
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    for seed in range(seeds):
        order = VARIANTS[seed % len(VARIANTS) :] + VARIANTS[: seed % len(VARIANTS)]
        built = {variant: build(variant, seed, epochs) for variant in order}
        step = chunk or epochs
        for done in range(0, epochs, step):
            for run in built.values():
                run.epochs(min(step, epochs - done))
        for variant, run in built.items():
            runs[variant].append(run.summary())
        print(f"{kind} seed {seed}: done", flush=True)
    rows = {}
    for variant, done in runs.items():
        accs = [r["test_acc"] for r in done]
        rows[variant] = {
            "epoch_ms": 1000 * statistics.median(t for r in done for t in r["cpu"]),
            "epoch_wall_ms": 1000 * statistics.median(t for r in done for t in r["wall"]),
            "test_acc": accs,
            "test_acc_mean": statistics.fmean(accs),
            "test_acc_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
        }
    harness, pyg = rows["harness"], rows["pyg"]
    for row in rows.values():
        row["vs_harness"] = row["epoch_ms"] / harness["epoch_ms"]  # times slower (CPU time)
        row["speedup_vs_pyg"] = pyg["epoch_ms"] / row["epoch_ms"]
        row["vs_harness_wall"] = row["epoch_wall_ms"] / harness["epoch_wall_ms"]
    return rows


def table(kind: str, rows: dict[str, Any]) -> list[str]:
    lines = [
        f"## Cora {kind.upper()}",
        "",
        "| variant | epoch, CPU (ms) | times faster than PyG's example | times slower than the "
        "harness | wall: epoch (ms), vs harness | test accuracy (%) |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for variant, row in rows.items():
        acc = f"{100 * row['test_acc_mean']:.1f} +- {100 * row['test_acc_std']:.1f}"
        lines.append(
            f"| {LABELS[variant]} | {row['epoch_ms']:.2f} | {row['speedup_vs_pyg']:.2f} | "
            f"{row['vs_harness']:.2f} | {row['epoch_wall_ms']:.2f}, "
            f"{row['vs_harness_wall']:.2f} | {acc} |"
        )
    return [*lines, ""]


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument(
        "--chunk", type=int, default=10, help="epochs of each variant in turn (0: whole runs)"
    )
    parser.add_argument("--models", nargs="+", default=["gcn", "gat"], choices=["gcn", "gat"])
    parser.add_argument("--json", default=str(RESULTS / "user_script.json"))
    parser.add_argument("--markdown", default=str(RESULTS / "user_script.md"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    start_load = load_average()
    cora = load("cora")
    results = {
        kind: measure(kind, cora, args.seeds, args.epochs, args.chunk) for kind in args.models
    }
    env = run_environment("cpu", threads=1)
    end_load = load_average()
    command = command_line()
    payload = {
        "benchmark": "user_script",
        "command": command,
        "environment": env,
        "load_average": {"start": start_load, "end": end_load},
        "seeds": args.seeds,
        "epochs": args.epochs,
        "results": results,
    }
    headline = [
        f"- Cora {kind.upper()}: the one-step user script takes "
        f"{rows['one-step']['vs_harness']:.2f}x the harness's epoch CPU time (target <= 1.2x); "
        f"swap-only {rows['swap']['vs_harness']:.2f}x; the one step with cached=True layers "
        f"{rows['one-step-cached']['vs_harness']:.2f}x; with relu_dropout/elu_dropout and "
        f"column_major_ as well {rows['one-step-tuned']['vs_harness']:.2f}x."
        for kind, rows in results.items()
    ]
    body = [*headline, ""] + [line for kind, rows in results.items() for line in table(kind, rows)]
    intro = (
        f"A user's own PyG-style training script on Cora, {args.epochs} epochs, {args.seeds} "
        "seeds, one process, one thread, variants interleaved (see the script's docstring). "
        "Epoch: median over all epochs of all seeds, training step plus evaluation, in CPU "
        "time (wall time beside it)."
    )
    write_outputs(
        payload,
        json_path=Path(args.json) if args.json else None,
        markdown_path=Path(args.markdown) if args.markdown else None,
        markdown=lambda: markdown_report(
            "A user's own script on gnnkit's layers",
            intro,
            body,
            machine=machine_line(
                env, start_load, end_load, "shared machine: wall times include its other load"
            ),
            command=command,
        ),
    )


if __name__ == "__main__":
    main()
