"""The copies a row-major first-layer weight costs, and dropout's backward with its mask kept.

A layer on sparse features multiplies them by ``W^T``; a weight stored row-major (PyG's and
``torch.nn.Linear``'s layout, what a user's own script has unless it calls
``gnnkit.nn.column_major_``) is copied into ``W^T``'s layout on every forward pass and its
gradient back. This script times, on Cora's shapes (1,433 input features; GCN's 16 and GAT's
64 output channels), float32, one thread:

- ``forward copy``: ``W.t().contiguous()`` by torch against gnnkit's blocked kernel
  (``gnnkit.ops._transpose_cpu.transposed``), for ``W`` (C, 1433);
- ``gradient copy``: the same for the (1433, C) gradient of ``W^T`` back into ``W``'s layout;

each with the matrix in cache (called again and again) and from memory (a 64 MiB buffer
written between calls, untimed, as a training epoch's other work evicts the weight);

- ``heads-last copy``: the fused GAT's copy of Cora's first-layer (2708, 8, 8) gradient into
  (2708, 8, 8) heads-last (``transpose(1, 2).contiguous()`` against gnnkit's kernel,
  :mod:`gnnkit.ops._gat_rows`), in cache; and

- ``dropout backward``: ``gnnkit.nn.dropout``'s backward on Cora's 2708 x C hidden layer,
  reading the mask kept by the forward pass (``kept_entries``) against drawing it again from
  the seed (``mask_entries``), the two kernels alone.

Every pair is interleaved call by call in one process; thread CPU time, medians, and the
median of the paired ratios. Both sides give the same bits (checked before timing).

Run ``python benchmarks/weight_copies.py``; it writes ``benchmarks/results/weight_copies.json``
and ``.md`` (``--no-write``: print only).
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable
from typing import Any

import _collect as collect
import numpy as np
import torch

from gnnkit.ops import _gat_rows, _transpose_cpu
from gnnkit.ops import dropout as counter

FEATURES, NODES, P = 1433, 2708, 0.6


def paired(
    candidates: dict[str, Callable[[], Any]], reps: int, evict: torch.Tensor | None
) -> dict[str, float]:
    """Thread CPU time of each call, one of each per repetition after a warm-up call each;
    with ``evict``, the buffer is written before every call (untimed)."""
    for fn in candidates.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(reps):
        for name, fn in candidates.items():
            if evict is not None:
                evict.add_(1.0)
            tick = time.thread_time()
            fn()
            times[name].append(time.thread_time() - tick)
    torch_t, ours = times.values()
    return {
        "torch_us": 1e6 * statistics.median(torch_t),
        "gnnkit_us": 1e6 * statistics.median(ours),
        "paired_ratio": statistics.median(a / b for a, b in zip(torch_t, ours, strict=True)),
    }


def copy_rows(reps: int) -> list[dict[str, Any]]:
    evict = torch.zeros(16 << 20)  # 64 MiB of float32
    rows = []
    for channels in (16, 64):
        for what, shape in (("forward copy", (channels, FEATURES)),
                            ("gradient copy", (FEATURES, channels))):  # fmt: skip
            src = torch.randn(shape)
            assert torch.equal(_transpose_cpu.transposed(src), src.t().contiguous())
            pair = {"torch": lambda s=src: s.t().contiguous(),
                    "gnnkit": lambda s=src: _transpose_cpu.transposed(s)}  # fmt: skip
            for where, buffer in (("in cache", None), ("from memory", evict)):
                row = {"what": what, "shape": list(shape), "where": where}
                rows.append(row | paired(pair, reps, buffer))
                print(rows[-1], flush=True)
    # the fused GAT's heads-last copy of Cora's first layer (its sender pass, twice a step)
    grad = torch.randn(NODES, 8, 8)
    heads_last = _gat_rows._compiled("heads last", 8, 8, False, "float32")

    def copy_heads_last() -> torch.Tensor:
        out = torch.empty(NODES, 8, 8)
        heads_last(0, NODES, grad.data_ptr(), out.data_ptr())
        return out

    assert torch.equal(copy_heads_last(), grad.transpose(1, 2))
    pair = {"torch": lambda: grad.transpose(1, 2).contiguous(), "gnnkit": copy_heads_last}
    row = {"what": "heads-last copy", "shape": [NODES, 8, 8], "where": "in cache"}
    rows.append(row | paired(pair, reps, None))
    print(rows[-1], flush=True)
    return rows


def dropout_rows(reps: int) -> list[dict[str, Any]]:
    kernels = counter._kernels()
    rows = []
    for channels in (16, 64):
        grad = torch.randn(NODES, channels)
        keep = counter.counter_keep_mask(tuple(grad.shape), P)
        seed = np.uint64(12345)
        scale = counter._scale(P, grad.dtype)
        drawn, kept = torch.empty_like(grad), torch.empty_like(grad)
        forward = torch.empty_like(grad)
        # the mask the forward pass keeps for this seed, so both sides give the same bits
        counter._entries(
            kernels.mask_keep_entries, grad, forward, keep, seed, counter._threshold(P), scale
        )

        threshold = counter._threshold(P)
        draw_again = functools.partial(
            counter._entries, kernels.mask_entries, grad, drawn, seed, threshold, scale, False
        )
        read_kept = functools.partial(
            counter._entries, kernels.kept_entries, keep, grad, kept, scale
        )
        draw_again(), read_kept()
        assert torch.equal(drawn, kept)
        pair = {"draw again": draw_again, "read kept": read_kept}
        row = {"what": "dropout backward", "shape": [NODES, channels], "where": "in cache"}
        rows.append(row | paired(pair, reps, None))
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = collect.script_parser(__doc__)
    parser.add_argument("--reps", type=int, default=300)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = collect.load_average()
    rows = copy_rows(args.reps) + dropout_rows(args.reps)
    env = collect.run_environment(threads=1)
    end = collect.load_average()
    lines = [
        "| what | shape | where | torch / drawn again (us) | gnnkit / kept (us) | ratio |",
        "|---|---|---|---:|---:|---:|",
    ]
    for row in rows:
        shape = " x ".join(map(str, row["shape"]))
        lines.append(
            f"| {row['what']} | {shape} | {row['where']} | {row['torch_us']:.0f} | "
            f"{row['gnnkit_us']:.0f} | **{row['paired_ratio']:.2f}x** |"
        )
    if args.no_write:
        return
    intro = (
        "Cora's shapes, float32, one thread; each pair interleaved call by call in one process "
        f"({args.reps} calls each), thread CPU time, medians; the ratio is the median of the "
        "paired ratios (how many times longer torch's copy, or drawing the mask again, takes). "
        "Both sides give the same bits (checked before timing). See the script's docstring."
    )
    machine = collect.machine_line(env, start, end, "a shared machine: compare within a row")
    payload = {"rows": rows, "environment": env, "command": collect.command_line()}
    collect.write_report(
        collect.RESULTS / "weight_copies",
        payload,
        "A row-major weight's copies and dropout's backward with its mask kept",
        intro,
        lines,
        machine,
    )


if __name__ == "__main__":
    main()
