"""The fused GAT's passes by head at ogbn-arxiv's size, against the general kernels.

Past the cache, the fused GAT forward aggregates one head at a time and the backward's
sender pass runs one head at a time, each written out for the head's channels and
prefetching the gathered rows (:mod:`gnnkit.ops._gat_rows`); before, the general kernels of
:mod:`gnnkit.ops._gat_cpu` served these graphs. Both run here in one process on one thread,
interleaved call by call (CPU time of the thread, medians):

- ``aggregation pass``: the pass alone, on a random graph of ogbn-arxiv's size with
  self-loops (169,343 nodes, 1,166,243 edges plus one loop each) and features of 8 heads x 32
  channels; each call first restores the exponentials the pass normalises in place (43 MB
  copied, a few ms of both candidates' times);
- ``fused forward``: the fused GAT forward's kernels on that graph (the scores, their
  exponentials and the aggregation, with their outputs allocated as in training);
- ``sender pass``: the backward's sender pass alone (the attention gradient and the
  features' gradient, gathering the output gradient's rows over the transposed structure);
- ``fused backward``: the fused GAT backward's kernels (the sender pass, the softmax and
  leaky-ReLU backward, the sender-score sums);
- ``layer step``: a whole step of ``GATConv(128, 32, heads=8)``, forward and backward, as
  ``benchmarks/layers.py`` times it (the GEMMs and every other pass are the same code in
  both).

Run ``python benchmarks/gat_aggregation.py``; it writes
``benchmarks/results/gat_aggregation.json`` and ``.md`` (``--no-write``: print only).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

import _collect as collect
import torch

from gnnkit.nn import GATConv
from gnnkit.ops import CSRGraph, _gat_cpu, _gat_rows
from gnnkit.ops._jit import as_numpy, run_rows
from gnnkit.ops._memory import empty_advised

NODES, EDGES, HEADS, CHANNELS = 169_343, 1_166_243, 8, 32


def switched(on: bool, call: Callable[[], Any]) -> Any:
    """``call()`` with the passes by head on or off (the general kernels then)."""
    by_head = _gat_rows._by_head
    _gat_rows._by_head = by_head if on else (lambda xw: False)
    try:
        return call()
    finally:
        _gat_rows._by_head = by_head


def paired(reps: int, call: Callable[[], Any]) -> dict[str, list[float]]:
    """``call`` by head and with the general kernels, interleaved."""
    candidates = {"by head": lambda: switched(True, call), "general": lambda: switched(False, call)}
    return collect.interleaved_times(candidates, reps)


def kernel_times(reps: int) -> dict[str, dict[str, list[float]]]:
    """The aggregation pass alone (with the exponentials it normalises in place restored
    before each call: 43 MB copied, a few ms), the fused forward's kernels, the sender pass
    alone and the fused backward's kernels, by head and general."""
    gen = torch.Generator().manual_seed(0)
    edge_index = torch.randint(0, NODES, (2, EDGES), generator=gen)
    loops = torch.arange(NODES).expand(2, -1)
    graph = CSRGraph.from_edge_index(torch.cat([edge_index, loops], 1), NODES)
    rowptr, col = graph.rowptr, graph.col
    xw = empty_advised(torch.empty(0), NODES, HEADS, CHANNELS)
    xw.copy_(torch.randn(NODES, HEADS, CHANNELS, generator=gen))
    scores = [torch.randn(NODES, HEADS, generator=gen) for _ in "sd"]
    exps = torch.rand(graph.num_edges, HEADS, generator=gen) + 0.1
    alpha = exps.clone()
    rows = as_numpy(rowptr)
    assert _gat_rows.written_feature_passes(xw, rowptr), "the passes by head are off here"
    # The kernel writes its output through an address in `arguments`: `by_head` holds on to
    # `out_by_head`, the tensor at that address.
    kernel, arguments, out_by_head = _gat_rows.aggregation(rowptr, col, xw, alpha, None, 1.0)
    out = empty_advised(xw, NODES, HEADS, CHANNELS)
    params = _gat_cpu._params(xw.dtype, 0.2, 1.0)
    general = (rows, as_numpy(col), as_numpy(xw), params, *_gat_cpu._optional(None, torch.bool))
    general += (as_numpy(out), as_numpy(alpha), _gat_cpu._distance(xw))

    def by_head() -> torch.Tensor:
        alpha.copy_(exps)
        run_rows(kernel, rows, *arguments)
        return out_by_head

    def general_kernel() -> None:
        alpha.copy_(exps)
        run_rows(_gat_cpu._aggregate_rows, rows, *general)

    def forward() -> Any:
        return _gat_cpu.forward(rowptr, col, *scores, None, xw, 0.2, None, 1.0)

    transposed = graph.transpose()
    colptr, row_t, _, perm_t = transposed
    grad_out = empty_advised(xw, NODES, HEADS, CHANNELS)
    grad_out.copy_(torch.randn(NODES, HEADS, CHANNELS, generator=gen))
    grad_xw, grad_alpha = torch.empty_like(xw), torch.empty_like(alpha)
    colptr_np = as_numpy(colptr)

    def sender_by_head() -> None:
        pass_inputs = (xw, alpha, None, 1.0, grad_out, grad_xw, grad_alpha, colptr_np)
        _gat_rows.sender_gradient((colptr, row_t, perm_t), *pass_inputs)

    def sender_general_kernel() -> None:
        pass_inputs = (xw, alpha, None, params, grad_out, grad_xw, grad_alpha)
        _gat_cpu.general_sender_pass((colptr_np, row_t, perm_t), *pass_inputs)

    def backward() -> Any:
        return _gat_cpu.backward(
            rowptr, col, colptr, row_t, perm_t, *scores, None, xw, alpha, 0.2, None, 1.0,
            grad_out,
        )  # fmt: skip

    return {
        "aggregation pass": collect.interleaved_times(
            {"by head": by_head, "general": general_kernel}, reps
        ),
        "fused forward (scores, exponentials, aggregation)": paired(reps, forward),
        "sender pass": collect.interleaved_times(
            {"by head": sender_by_head, "general": sender_general_kernel}, reps
        ),
        "fused backward (sender pass, score gradients, sender-score sums)": paired(reps, backward),
    }


def layer_times(reps: int) -> dict[str, list[float]]:
    """Steps of the layer, the passes by head switched on and off step by step."""
    gen = torch.Generator().manual_seed(0)
    edge_index = torch.randint(0, NODES, (2, EDGES), generator=gen)
    x = torch.randn(NODES, 128, generator=gen)
    layer = GATConv(128, CHANNELS, heads=HEADS)
    grad = torch.randn(NODES, HEADS * CHANNELS, generator=gen)

    def step() -> None:
        layer(x, edge_index).backward(grad)
        layer.zero_grad(set_to_none=True)

    return paired(reps, step)


def summary(times: dict[str, list[float]]) -> dict[str, Any]:
    """Medians and minima (ms), and the median of the paired ratios general / by head."""
    pairs = [g / b for b, g in zip(times["by head"], times["general"], strict=True)]
    row: dict[str, Any] = {"paired_ratio": statistics.median(pairs), "reps": len(pairs)}
    for name, values in times.items():
        row[name] = {"median_ms": statistics.median(values) * 1e3, "min_ms": min(values) * 1e3}
    return row


def main() -> None:
    parser = collect.script_parser(__doc__)
    parser.add_argument("--kernel-reps", type=int, default=15)
    parser.add_argument("--layer-reps", type=int, default=10)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = collect.load_average()
    rows = {name: summary(t) for name, t in kernel_times(args.kernel_reps).items()}
    rows["layer step (forward and backward)"] = summary(layer_times(args.layer_reps))
    env = collect.run_environment(threads=1)
    end = collect.load_average()
    lines = ["| what | by head (ms) | general (ms) | general / by head |", "|---|---:|---:|---:|"]
    for name, row in rows.items():
        b, g = row["by head"], row["general"]
        lines.append(
            f"| {name} | {b['median_ms']:.1f} (min {b['min_ms']:.1f}) | {g['median_ms']:.1f} "
            f"(min {g['min_ms']:.1f}) | **{row['paired_ratio']:.2f}x** |"
        )
        print(lines[-1])
    if args.no_write:
        return
    title = "The fused GAT's passes by head at ogbn-arxiv's size, against the general kernels"
    intro = (
        f"{NODES:,} nodes, {EDGES:,} random edges plus a self-loop each, 8 heads x 32 channels, "
        "float32, one thread; the candidates interleaved call by call in one process, thread "
        "CPU time (medians and minima; the ratio is the median of the paired ratios). The "
        "aggregation pass's calls each restore the 43 MB of exponentials it normalises in "
        "place (a few ms of both times); the fused forward is the layer's forward kernels "
        "(scores, exponentials, aggregation); the sender pass is the backward's pass over "
        "the transposed structure alone, the fused backward the backward's kernels (sender "
        "pass, score gradients, sender-score sums); the layer step is a forward and backward "
        "step of `GATConv(128, 32, heads=8)`, the passes by head (aggregation and sender "
        "pass) switched on and off step by step."
    )
    machine = collect.machine_line(env, start, end, "a shared machine: compare within a row")
    collect.write_outputs(
        {"rows": rows, "environment": env, "command": collect.command_line()},
        json_path=collect.RESULTS / "gat_aggregation.json",
        markdown_path=collect.RESULTS / "gat_aggregation.md",
        markdown=lambda: collect.markdown_report(
            title, intro, lines, machine=machine, command=collect.command_line()
        ),
    )


if __name__ == "__main__":
    main()
