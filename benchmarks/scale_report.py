"""The reports of ``benchmarks/scale.py``: the scale study's and the ogbn-arxiv section's
markdown, and the scale study's figure (epoch time and memory against |E|)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from _collect import machine_line, markdown_report

#: What gnnkit should reach at the largest size, per model: the epoch at least ``speedup``
#: times faster than PyG's, and at most ``memory_ratio`` times its peak memory.
TARGETS = {"gcn": {"speedup": 2.0, "memory_ratio": 0.5}}


def ratio(value: float | None, digits: int = 2) -> str:
    """A memory ratio for the report; ``n/a`` when PyG's RSS did not grow measurably."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def markdown(payload: dict[str, Any], command: str) -> str:
    cfg = payload["config"]
    intro = (
        f"Synthetic power-law (Chung-Lu, gamma 2.5) directed graphs at ogbn-arxiv's edge/node "
        f"ratio; {cfg['channels']} features, {cfg['classes']} classes, 54 % training nodes. "
        "GCN = OGB's arxiv GCN (3 layers, 256 hidden, batch norm, dropout 0.5, `cached=True`); "
        "GAT = the same shape with 8 heads x 32 (`gnnkit.bench.pyg.PygArxivGAT`). One epoch = "
        "forward, cross-entropy, backward, fused Adam step. Each cell runs in its own fresh "
        f"process: median of {cfg['repeat']} timed epochs after {cfg['warmup']} warm-up; "
        "memory = peak RSS during the epochs minus RSS before them (graph, features, model "
        "already allocated). Speed-up = T_reference / T_gnnkit over PyG's models (PyG) and "
        "over the same PyG models tuned (`gnnkit.bench.pyg_tuned`: `GCNConv(cached=True)` on "
        "a transposed CSR adjacency built once; `GATConv(add_self_loops=False)` on the edges "
        "with the self-loops added once, sorted by target); memory ratio = M_gnnkit / M_reference."
    )
    tuned = any("pyg_tuned_s" in e for e in payload["results"])
    if tuned:
        lines = [
            "| model | nodes | edges | PyG epoch | tuned PyG epoch | gnnkit epoch | speed-up vs "
            "PyG | speed-up vs tuned | PyG +RSS | tuned +RSS | gnnkit +RSS | memory ratio vs "
            "PyG | vs tuned |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
    else:
        lines = [
            "| model | nodes | edges | PyG epoch | gnnkit epoch | speedup | PyG +RSS | gnnkit "
            "+RSS | memory ratio |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
    for e in payload["results"]:
        memory = ratio(e["memory_ratio"])
        head = f"| {e['model'].upper()} | {e['nodes']:,} | {e['edges']:,} | {_s(e['pyg_s'])} | "
        if tuned:
            lines.append(
                head + f"{_s(e['pyg_tuned_s'])} | {_s(e['gnnkit_s'])} | **{e['speedup']:.2f}x** "
                f"| **{e['speedup_tuned']:.2f}x** | {e['pyg_mb']:,.0f} MB | "
                f"{e['pyg_tuned_mb']:,.0f} MB | {e['gnnkit_mb']:,.0f} MB | **{memory}** | "
                f"**{ratio(e['memory_ratio_tuned'])}** |"
            )
        else:
            lines.append(
                head + f"{_s(e['gnnkit_s'])} | **{e['speedup']:.2f}x** | {e['pyg_mb']:,.0f} MB | "
                f"{e['gnnkit_mb']:,.0f} MB | **{memory}** |"
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
            f"{target['memory_ratio']:g}x ({ratio(top['memory_ratio'])}: "
            f"{'met' if met_mem else '**missed**'})"
            + (
                f"; against tuned PyG {top['speedup_tuned']:.2f}x."
                if "speedup_tuned" in top
                else "."
            )
        )
    lines += ["", "![epoch time and peak memory against |E|](scale.png)"]
    note = "a shared machine: read the ratios, which come from the same run"
    machine = machine_line(payload["env"], payload["loadavg_start"], payload["loadavg_end"], note)
    title = "Scale study: one full-batch training epoch, gnnkit against PyG and tuned PyG"
    return markdown_report(title, intro, lines, machine=machine, command=command)


def _s(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def plot(payload: dict[str, Any], path: Path) -> Path:
    """Log-log epoch time and peak memory against |E|, one line per (model, library)."""
    from gnnkit.utils.plotting import save_figure, subplots

    fig, (ax_time, ax_mem) = subplots(1, 2, figsize=(11.0, 4.2))
    styles = {"gnnkit": "-", "pyg": "--", "pyg_tuned": ":"}
    names = {"gnnkit": "gnnkit", "pyg": "PyG", "pyg_tuned": "tuned PyG"}
    colors = {"gcn": "C0", "gat": "C3"}
    for model in dict.fromkeys(e["model"] for e in payload["results"]):
        rows = sorted(
            (e for e in payload["results"] if e["model"] == model), key=lambda e: e["edges"]
        )
        edges = [e["edges"] for e in rows]
        for impl in ("gnnkit", "pyg", "pyg_tuned"):
            if any(f"{impl}_s" not in e for e in rows):
                continue
            label = f"{model.upper()} {names[impl]}"
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


def arxiv_markdown(payload: dict[str, Any], command: str) -> str:
    """The ogbn-arxiv section's report: the whole CLI path, then the recipe's epoch."""
    intro = (
        "**The real ogbn-arxiv is not reachable from this machine** (no network; it is not in "
        "the mirror), so the leaderboard target (GCN: **71.74 +- 0.29 %** test accuracy over 10 "
        "seeds) is not measured here. Where the data is available, run:"
    )
    body = [*_arxiv_path_lines(payload["arxiv"]), *_arxiv_epoch_lines(payload)]
    note = "a shared machine: read the ratios"
    machine = machine_line(payload["env"], payload["loadavg_start"], payload["loadavg_end"], note)
    title = "ogbn-arxiv: OGB's full-batch GCN recipe and the mini-batch mode"
    return markdown_report(title, intro, body, machine=machine, command=command)


def _arxiv_path_lines(a: dict[str, Any]) -> list[str]:
    """What ran through ``gnnkit bench node --dataset ogbn-arxiv``, full batch and mini-batch."""
    fb, mb = a["full_batch"]["result"], a["mini_batch"]["result"]
    lines = [
        "```",
        "gnnkit bench node --dataset ogbn-arxiv --runs 10 --compare pyg \\",
        "    --json benchmarks/results/arxiv_real.json --plot benchmarks/results/arxiv_real.png",
        "```",
        "",
        "(500 epochs per run, the recipe's default; add `--device cuda` on a GPU.)",
        "",
        f"What ran instead: a synthetic dataset in ogbn-arxiv's format ({a['nodes']:,} nodes, "
        f"{a['edges']:,} power-law directed edges, 128 features, 40 classes that a graph model "
        "can learn: `benchmarks/scale_data.py:node_task`), written in OGB's raw on-disk format, so that "
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
    ]
    return lines


def _arxiv_epoch_lines(payload: dict[str, Any]) -> list[str]:
    """The recipe's training epoch and mini-batch steps, gnnkit against PyG."""
    a = payload["arxiv"]
    e, steps = a["epoch"], a["minibatch_steps"]
    return [
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
        f"**{ratio(e['memory_ratio'])}** |",
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
    ]
