"""Reproducing the reference report's Table 1 and Figure 1, and the vanishing-gradient plot.

:func:`run_table1` trains every (model, sequence length, seed) with the report's protocol
(:func:`gnnkit.seq.run_experiment`); :func:`summarize` turns the runs into mean +- std rows
beside the report's numbers (:data:`REPORT_TABLE1`); :func:`plot_table1` draws the loss and
accuracy curves in the report's style (light per-seed lines under a dark smoothed mean).
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from gnnkit.errors import InputError
from gnnkit.seq.classifiers import DEFAULT_FORGET_BIAS, DEFAULT_HIDDEN_DIM, MODELS
from gnnkit.seq.memory import TrainConfig, TrainResult, run_experiment
from gnnkit.seq.tasks import TASKS
from gnnkit.utils.plotting import plot_seed_curves, save_figure, subplots

__all__ = [
    "REPORT_TABLE1",
    "markdown_table1",
    "plot_gradient_norms",
    "plot_table1",
    "run_table1",
    "summarize",
]

#: The report's Table 1 (random combinations, mean +- std over three seeds):
#: ``(model, seq_len) -> {"loss": (mean, std), "accuracy": (mean, std), "batches": (mean, std)}``.
REPORT_TABLE1: dict[tuple[str, int], dict[str, tuple[float, float]]] = {
    ("lstm", 5): {"loss": (0.29, 2.7e-2), "accuracy": (1.0, 0.0), "batches": (25.0, 2.2)},
    ("lstm", 10): {"loss": (0.04, 1.0e-3), "accuracy": (1.0, 0.0), "batches": (124.7, 15.1)},
    ("lstm", 15): {"loss": (0.02, 5.9e-3), "accuracy": (1.0, 0.0), "batches": (544.7, 71.0)},
    ("bilstm", 5): {"loss": (0.23, 7.5e-3), "accuracy": (1.0, 0.0), "batches": (18.3, 0.5)},
    ("bilstm", 10): {"loss": (0.02, 4.6e-3), "accuracy": (1.0, 0.0), "batches": (80.7, 12.4)},
    ("bilstm", 15): {"loss": (0.02, 3.8e-3), "accuracy": (1.0, 0.0), "batches": (298.3, 21.5)},
}

#: ``callback(model, seq_len, seed, result)`` after every finished run.
RunCallback = Callable[[str, int, int, TrainResult], None]


def run_table1(
    *,
    seeds: int = 3,
    lengths: Sequence[int] = (5, 10, 15),
    models: Sequence[str] = ("lstm", "bilstm", "rnn"),
    task: str = "randomcomb",
    hidden_dim: int = DEFAULT_HIDDEN_DIM,
    forget_bias: float | None = DEFAULT_FORGET_BIAS,
    config: TrainConfig | None = None,
    batch_callback: Callable[[int, float, float], None] | None = None,
    run_callback: RunCallback | None = None,
) -> list[dict[str, Any]]:
    """Train every model on every length with seeds ``0 .. seeds-1``.

    Args:
        seeds (int, optional): number of seeds. (default: 3, the report's)
        lengths (sequence of int, optional): sequence lengths. (default: 5, 10, 15)
        models (sequence of str, optional): model names. (default: lstm, bilstm, rnn)
        task (str, optional): the task. (default: ``"randomcomb"``, the report's)
        hidden_dim (int, optional): hidden size of every model. (default: 256)
        forget_bias (float, optional): initial forget-gate bias of the LSTMs, ``None`` for
            PyTorch's initialisation. (default: 1)
        config (TrainConfig, optional): training protocol. (default: the report's)
        batch_callback (callable, optional): passed to :func:`gnnkit.seq.fit`.
        run_callback (callable, optional): called after every run.

    Returns:
        list of dict: one per run, with ``model``, ``seq_len``, ``seed`` and the fields of
        :class:`gnnkit.seq.TrainResult` (per-batch ``loss`` and ``accuracy`` included).
    """
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise InputError(f"seeds must be an integer >= 1, got {seeds!r}")
    if task not in TASKS:
        raise InputError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
    for name in models:
        if name not in MODELS:
            raise InputError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    runs = []
    for model in models:
        for seq_len in lengths:
            for seed in range(seeds):
                result = run_experiment(
                    task,
                    model,
                    seq_len,
                    seed=seed,
                    hidden_dim=hidden_dim,
                    forget_bias=forget_bias,
                    config=config,
                    callback=batch_callback,
                )
                if run_callback is not None:
                    run_callback(model, seq_len, seed, result)
                runs.append({"model": model, "seq_len": seq_len, "seed": seed, **result.to_dict()})
    return runs


def _mean_std(values: Sequence[float]) -> list[float] | None:
    """Mean and sample standard deviation (0 for one value); None when empty."""
    if not values:
        return None
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return [statistics.fmean(values), std]


def summarize(runs: Sequence[dict[str, Any]], *, task: str = "randomcomb") -> list[dict[str, Any]]:
    """One row per (model, seq_len): mean +- std over seeds beside the report's numbers.

    Row keys: ``model``, ``seq_len``, ``seeds``, ``converged`` (runs that converged),
    ``val_loss``, ``val_acc``, ``batches`` (batches until convergence over converged runs,
    ``None`` when none converged), ``report_rule_batches`` (the report's rule alone),
    ``min_val_acc``, and ``report`` (the report's row or ``None``), ``batches_ratio``
    (ours / report's mean batches, or ``None``).
    """
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["model"], run["seq_len"]), []).append(run)
    rows = []
    for (model, seq_len), group in groups.items():
        converged = [r["batches_to_converge"] for r in group if r["converged"]]
        rule = [r["report_rule_batch"] for r in group if r["report_rule_batch"] is not None]
        report = REPORT_TABLE1.get((model, seq_len)) if task == "randomcomb" else None
        batches = _mean_std(converged) if len(converged) == len(group) else None
        rows.append(
            {
                "model": model,
                "seq_len": seq_len,
                "seeds": len(group),
                "converged": len(converged),
                "val_loss": _mean_std([r["val_loss"] for r in group]),
                "val_acc": _mean_std([r["val_acc"] for r in group]),
                "min_val_acc": min(r["val_acc"] for r in group),
                "batches": batches,
                "report_rule_batches": _mean_std(rule) if len(rule) == len(group) else None,
                "report": {k: list(v) for k, v in report.items()} if report else None,
                "batches_ratio": (
                    batches[0] / report["batches"][0] if batches and report else None
                ),
            }
        )
    return rows


def plot_table1(
    runs: Sequence[dict[str, Any]], path: str | os.PathLike, *, window: int = 10
) -> Path:
    """Loss and accuracy curves: one row per sequence length, one colour per model.

    Light lines are single seeds, dark lines their mean smoothed over ``window`` batches
    (the report's Figure 1); the batch axis is logarithmic so short and long runs both show.
    """
    lengths = sorted({r["seq_len"] for r in runs})
    models = list(dict.fromkeys(r["model"] for r in runs))
    if not lengths:
        raise InputError("no runs to plot")
    fig, axes = subplots(len(lengths), 2, figsize=(10, 3 * len(lengths)), squeeze=False)
    colours = {m: f"C{i}" for i, m in enumerate(models)}
    for row, seq_len in enumerate(lengths):
        for col, key in enumerate(("loss", "accuracy")):
            ax = axes[row][col]
            for model in models:
                curves = [r[key] for r in runs if r["model"] == model and r["seq_len"] == seq_len]
                plot_seed_curves(ax, curves, label=model, color=colours[model], window=window)
            ax.set_xscale("log")
            ax.set_title(f"T = {seq_len}: training {key}")
            ax.set_xlabel("batch")
            ax.set_ylabel(key)
            if key == "accuracy":
                ax.set_ylim(0, 1.02)
            ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_gradient_norms(
    norms: dict[str, Tensor], path: str | os.PathLike, *, title: str | None = None
) -> Path:
    """:math:`\\lVert \\partial L / \\partial h^{(t)} \\rVert` against t, log scale, one line per model."""
    if not norms:
        raise InputError("no gradient norms to plot")
    fig, ax = subplots(1, 1, figsize=(6, 4))
    for name, values in norms.items():
        steps = range(1, len(values) + 1)
        ax.plot(steps, [max(float(v), 1e-30) for v in values], marker=".", label=name)
    ax.set_yscale("log")
    ax.set_xlabel("time step t")
    ax.set_ylabel("mean ||dL/dh_t||")
    ax.set_title(title or "Gradient of the last step's loss w.r.t. each hidden state")
    ax.legend(loc="best")
    fig.tight_layout()
    return save_figure(fig, path)


def _pm(pair: Sequence[float] | None, fmt: str) -> str:
    return "-" if pair is None else f"{pair[0]:{fmt}} ± {pair[1]:{fmt}}"


def _forget_label(value: float | None) -> str:
    return "PyTorch's init" if value is None else f"{value:g}"


def markdown_table1(payload: dict[str, Any]) -> str:
    """The ``gnnkit seq bench`` JSON payload as a short Markdown report."""
    rows = payload["summary"]
    config = payload["config"]
    lines = [
        f"# The reference report's Table 1 on {payload['task']}: gnnkit against the report",
        "",
        f"Mean ± std over {payload['seeds']} seeds (0 .. {payload['seeds'] - 1}). Embedding "
        f"2 x T, hidden {payload['hidden_dim']}, LSTM forget-gate bias "
        f"{_forget_label(payload.get('forget_bias'))}, Adam lr {config['lr']:g}, batch "
        f"{config['batch_size']}, clipping {config['max_norm']:g}, at most "
        f"{config['max_batches']:,} batches. *batches* = batches until convergence: "
        f"{config['patience']} training batches in a row at 100 % (the report's rule), confirmed "
        f"on {config['confirm_samples']:,} fresh samples (0 = not confirmed); *3-batch rule* = "
        "the batch at which the report's rule alone first fired. Validation: "
        f"{config['val_samples']:,} independent samples, *min acc* = the worst seed.",
        "",
        "| model | T | val loss | val acc | min acc | batches | 3-batch rule | report loss "
        "| report batches | ours / report |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        report = row["report"]
        batches = _pm(row["batches"], ".1f")
        if row["batches"] is None:
            batches = f"{row['converged']}/{row['seeds']} converged"
        ratio = f"**{row['batches_ratio']:.2f}x**" if row["batches_ratio"] else "-"
        lines.append(
            f"| {row['model']} | {row['seq_len']} | {_pm(row['val_loss'], '.3f')} "
            f"| {_pm(row['val_acc'], '.4f')} | {row['min_val_acc']:.4f} | {batches} "
            f"| {_pm(row['report_rule_batches'], '.1f')} "
            f"| {_pm(report['loss'], '.2f') if report else '-'} "
            f"| {_pm(report['batches'], '.1f') if report else '-'} | {ratio} |"
        )
    env = payload["environment"]
    lines += [
        "",
        f"Command: `{payload['command']}`; wall time {payload['wall_seconds']:.0f} s.",
        "",
        f"Machine: {env['cpu']}, {env['threads']} torch thread(s) of {env['cpu_count']} cores, "
        f"device {env['device']}; torch {env['torch']}, PyG {env['torch_geometric']}, Python "
        f"{env['python']}; {env['date']}.",
        "",
    ]
    return "\n".join(lines)
