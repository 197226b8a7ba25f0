"""Training throughput of gnnkit's LSTM classifiers against a bare ``torch.nn.LSTM`` loop.

Random combinations, batch 128, embedding 2 T, hidden 256 (gnnkit's default), Adam lr 1e-3,
gradient clipping at 10: the report's protocol. Three implementations train on the same data
stream (generated inside every loop):

- ``bare``: ``nn.Embedding`` -> ``nn.LSTM`` -> ``nn.Linear`` and a hand-written loop
  (forward, loss, backward, clip, step, ``loss.item()``): the reference.
- ``gnnkit``: :class:`gnnkit.seq.LSTMClassifier` (on ``nn.LSTM``) trained by
  :func:`gnnkit.seq.fit` on the training engine (input checks, accuracy, history, early-stop
  and random-state bookkeeping included; the stop rule is switched off so every call trains
  exactly ``--batches`` batches).
- ``gnnkit-hand``: the same with ``backend="gnnkit"``, the hand-written LSTM (a Python loop
  over time steps of :class:`gnnkit.seq.LSTMCell`).

Each timed round trains ``--batches`` batches per implementation, implementations interleaved
round by round after one warm-up round; the time per batch is the median over ``--rounds``.
Speed ratio = t_bare / t_impl (1.0 = as fast as the bare loop). Targets: gnnkit >= 0.9,
gnnkit-hand >= 1/3.

Run (hold the lock so that no other benchmark shares the CPU):
    flock /tmp/gnnkit-bench.lock .venv/bin/python benchmarks/seq_throughput.py
Writes benchmarks/results/seq_throughput.md and .json (``--out`` to change the stem).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _collect import (
    RESULTS,
    load_average,
    machine_line,
    markdown_report,
    run_environment,
    write_outputs,
)
from torch import nn

from gnnkit.seq import LSTMClassifier, RandomCombinations, TrainConfig, fit

TARGETS = {"gnnkit": 0.9, "gnnkit-hand": 1 / 3}


def bare_loop(task: RandomCombinations, hidden: int, batches: int, seed: int = 0) -> None:
    """What a user writes by hand with torch.nn.LSTM: the reference."""
    embedding = nn.Embedding(task.num_tokens, 2 * task.seq_len)
    lstm = nn.LSTM(2 * task.seq_len, hidden, batch_first=True)
    head = nn.Linear(hidden, task.num_classes)
    params = [*embedding.parameters(), *lstm.parameters(), *head.parameters()]
    optimizer = torch.optim.Adam(params, lr=1e-3)
    stream = task.stream(128, seed=seed)
    for _ in range(batches):
        tokens, labels = next(stream)
        _, (h_n, _) = lstm(embedding(tokens))
        loss = F.cross_entropy(head(h_n[0]), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, 10.0)
        optimizer.step()
        loss.item()


def gnnkit_loop(backend: str):
    def run(task: RandomCombinations, hidden: int, batches: int, seed: int = 0) -> None:
        model = LSTMClassifier(
            task.num_tokens,
            task.num_classes,
            embed_dim=2 * task.seq_len,
            hidden_dim=hidden,
            backend=backend,
        )
        # never stop early, validate on one sample: time the training loop itself
        config = TrainConfig(
            max_batches=batches, patience=batches + 1, val_samples=1, confirm_samples=0
        )
        fit(model, task, seed=seed, config=config)

    return run


IMPLS = {"bare": bare_loop, "gnnkit": gnnkit_loop("torch"), "gnnkit-hand": gnnkit_loop("gnnkit")}


def measure(seq_len: int, hidden: int, batches: int, rounds: int) -> dict[str, list[float]]:
    """Seconds per batch of every implementation, one value per timed round."""
    task = RandomCombinations(seq_len)
    times: dict[str, list[float]] = {name: [] for name in IMPLS}
    for round_ in range(rounds + 1):
        for name, loop in IMPLS.items():
            torch.manual_seed(round_)
            start = time.perf_counter()
            loop(task, hidden, batches if round_ else max(batches // 4, 1))
            elapsed = time.perf_counter() - start
            if round_:  # round 0 is the warm-up
                times[name].append(elapsed / batches)
    return times


def run_lengths(args: argparse.Namespace) -> list[dict]:
    """One row per sequence length: median ms per batch, every round, and the speed ratios."""
    rows = []
    for seq_len in args.lengths:
        times = measure(seq_len, args.hidden, args.batches, args.rounds)
        medians = {name: statistics.median(v) for name, v in times.items()}
        row = {
            "seq_len": seq_len,
            "ms_per_batch": {name: 1e3 * m for name, m in medians.items()},
            "ms_per_batch_rounds": {name: [1e3 * t for t in v] for name, v in times.items()},
            "speed_ratio": {
                name: medians["bare"] / medians[name] for name in IMPLS if name != "bare"
            },
        }
        rows.append(row)
        print(
            f"T={seq_len}: "
            + ", ".join(f"{n} {ms:.1f} ms" for n, ms in row["ms_per_batch"].items())
            + " | "
            + ", ".join(f"{n} {r:.2f}x" for n, r in row["speed_ratio"].items()),
            flush=True,
        )
    return rows


def markdown(payload: dict, args: argparse.Namespace) -> str:
    intro = (
        f"Random combinations, batch 128, embedding 2 T, hidden {args.hidden}, Adam + clipping "
        f"(the report's protocol). Time per batch = median of {args.rounds} interleaved rounds "
        f"of {args.batches} batches after a warm-up round; data generation included in every "
        "loop. Speed ratio = t_bare / t_impl (higher is faster; 1.0 = the bare loop)."
    )
    table = [
        "| T | bare nn.LSTM loop | gnnkit LSTMClassifier + fit | ratio (target >= 0.9) | "
        "hand-written LSTM + fit | ratio (target >= 0.33) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for row in payload["results"]:
        ms, ratio = row["ms_per_batch"], row["speed_ratio"]
        table.append(
            f"| {row['seq_len']} | {ms['bare']:.1f} ms | {ms['gnnkit']:.1f} ms | "
            f"**{ratio['gnnkit']:.2f}x** | {ms['gnnkit-hand']:.1f} ms | "
            f"**{ratio['gnnkit-hand']:.2f}x** |"
        )
    load = payload["load_average"]
    note = "a shared machine: only the ratios, measured in the same run, are meaningful"
    machine = machine_line(payload["environment"], load["start"], load["end"], note)
    title = "Sequence models: training throughput against a bare torch.nn.LSTM loop"
    return markdown_report(title, intro, table, machine=machine, command=payload["command"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[5, 15])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--batches", type=int, default=60, help="batches per timed round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    parser.add_argument("--out", type=Path, default=RESULTS / "seq_throughput")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    load_start = load_average()
    started = time.perf_counter()
    rows = run_lengths(args)
    options = [
        f"--lengths {' '.join(map(str, args.lengths))}",
        f"--hidden {args.hidden}",
        f"--batches {args.batches}",
        f"--rounds {args.rounds}",
        f"--threads {args.threads}",
    ]
    payload = {
        "benchmark": "seq_throughput",
        "command": "flock /tmp/gnnkit-bench.lock .venv/bin/python benchmarks/seq_throughput.py "
        + " ".join(options),
        "setup": {
            "task": "randomcomb",
            "batch_size": 128,
            "embed_dim": "2 x seq_len",
            "hidden": args.hidden,
            "batches_per_round": args.batches,
            "rounds": args.rounds,
        },
        "targets": TARGETS,
        "results": rows,
        "wall_seconds": time.perf_counter() - started,
        "load_average": {"start": load_start, "end": load_average()},
        "environment": run_environment("cpu", args.threads),
    }
    write_outputs(
        payload,
        json_path=args.out.with_suffix(".json"),
        markdown_path=args.out.with_suffix(".md"),
        markdown=lambda: markdown(payload, args),
    )


if __name__ == "__main__":
    main()
