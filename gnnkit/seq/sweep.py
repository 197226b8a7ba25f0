"""Sweeps of the memory-task protocol: models x sequence lengths x seeds, summarised and plotted.

:func:`run_sweep` trains every (model, sequence length, seed) with
:func:`gnnkit.seq.run_experiment`; :func:`summarize` turns the runs into one row per
(model, length), mean +- sample std over seeds; :func:`summary_cells` and
:func:`markdown_summary` format the rows, and further columns (a published baseline, say)
plug in as :data:`Column` s; :func:`plot_sweep` draws the training curves (light lines single
seeds under their dark smoothed mean) and :func:`plot_gradient_norms` the gradient norms per
time step whose decay makes long time lags hard to learn (Bengio, Simard & Frasconi, IEEE TNN
1994; Hochreiter & Schmidhuber, Neural Computation 1997).
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from gnnkit.errors import InputError
from gnnkit.seq.classifiers import DEFAULT_FORGET_BIAS, DEFAULT_HIDDEN_DIM, MODELS
from gnnkit.seq.memory import TrainConfig, TrainResult, run_experiment
from gnnkit.seq.tasks import TASKS, make_task
from gnnkit.utils.checks import check_callable
from gnnkit.utils.plotting import plot_seed_curves, save_figure, subplots

__all__ = [
    "SUMMARY_COLUMNS",
    "Column",
    "format_mean_std",
    "markdown_summary",
    "plot_gradient_norms",
    "plot_sweep",
    "run_sweep",
    "summarize",
    "summary_cells",
]

#: ``callback(model, seq_len, seed, result)`` after every finished run.
RunCallback = Callable[[str, int, int, TrainResult], None]

#: A column of the summary table: ``(header, alignment "l" or "r", row -> cell text)``.
Column = tuple[str, str, Callable[[dict[str, Any]], str]]


def run_sweep(
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
        seeds (int, optional): number of seeds. (default: 3)
        lengths (sequence of int, optional): sequence lengths. (default: 5, 10, 15)
        models (sequence of str, optional): model names, a list even for one (``["lstm"]``).
            (default: lstm, bilstm, rnn)
        task (str, optional): the task. (default: ``"randomcomb"``)
        hidden_dim (int, optional): hidden size of every model. (default: 256)
        forget_bias (float, optional): initial forget-gate bias of the LSTMs, ``None`` for
            PyTorch's initialisation. (default: 1)
        config (TrainConfig, optional): training protocol. (default: ``TrainConfig()``)
        batch_callback (callable, optional): passed to :func:`gnnkit.seq.fit`.
        run_callback (callable, optional): called after every run.

    Returns:
        list of dict: one per run, with ``model``, ``seq_len``, ``seed`` and the fields of
        :class:`gnnkit.seq.TrainResult` (per-batch ``loss`` and ``accuracy`` included).

    Raises:
        InputError: before the first run, for an unknown task or model, a length that is not
            an integer >= 2, a string or a number where a list goes, a repeat, or a callback
            that cannot be called.
    """
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise InputError(f"seeds must be an integer >= 1, got {seeds!r}")
    if not isinstance(task, str) or task not in TASKS:
        raise InputError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
    models = _as_list("models", models, "model names such as ['lstm']")
    lengths = _as_list("lengths", lengths, "sequence lengths such as [5, 10]")
    for name in models:
        if not isinstance(name, str) or name not in MODELS:
            raise InputError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    for seq_len in lengths:
        make_task(task, seq_len)  # refuses a length that is not an integer >= 2
    _check_unique("models", models)
    _check_unique("lengths", lengths)
    check_callable("batch_callback", batch_callback, "a function (batch, loss, accuracy)")
    check_callable("run_callback", run_callback, "a function (model, seq_len, seed, result)")
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


def _as_list(name: str, values: Any, what: str) -> list[Any]:
    """``values`` as a list: a list, tuple or other iterable, but not one string (whose
    letters would be taken as the names) nor a single number."""
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise InputError(f"{name} must be a list of {what}, got {values!r}")
    return list(values)


def _check_unique(name: str, values: Sequence[Any]) -> None:
    """Refuse a value given twice: its runs would be the same runs, counted twice."""
    for value in values:
        if list(values).count(value) > 1:
            raise InputError(
                f"{name} lists {value!r} twice; give each once (a repeat would train the same "
                "runs again and count them twice)"
            )


def _mean_std(values: Sequence[float]) -> list[float] | None:
    """Mean and sample standard deviation (0 for one value); None when empty."""
    if not values:
        return None
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return [statistics.fmean(values), std]


#: What :func:`summarize` reads of each run.
_RUN_KEYS = (
    "model",
    "seq_len",
    "converged",
    "batches_to_converge",
    "report_rule_batch",
    "val_loss",
    "val_acc",
)


def summarize(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (model, seq_len), in the order the runs come: mean +- std over seeds.

    Row keys: ``model``, ``seq_len``, ``seeds``, ``converged`` (runs that converged),
    ``val_loss``, ``val_acc`` (``[mean, std]``), ``min_val_acc`` (the worst seed),
    ``batches`` (batches until convergence, ``None`` unless every run converged) and
    ``report_rule_batches`` (the 3-batch rule alone, ``None`` unless it fired in every run).
    """
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for index, run in enumerate(_as_list("runs", runs, "the run dicts run_sweep returns")):
        if not isinstance(run, dict):
            raise InputError(
                f"runs[{index}] must be a dict from run_sweep, got {type(run).__name__}"
            )
        missing = [key for key in _RUN_KEYS if key not in run]
        if missing:
            raise InputError(
                f"runs[{index}] has no {', '.join(map(repr, missing))}; pass the dicts run_sweep "
                "returns"
            )
        groups.setdefault((run["model"], run["seq_len"]), []).append(run)
    rows = []
    for (model, seq_len), group in groups.items():
        converged = [r["batches_to_converge"] for r in group if r["converged"]]
        rule = [r["report_rule_batch"] for r in group if r["report_rule_batch"] is not None]
        rows.append(
            {
                "model": model,
                "seq_len": seq_len,
                "seeds": len(group),
                "converged": len(converged),
                "val_loss": _mean_std([r["val_loss"] for r in group]),
                "val_acc": _mean_std([r["val_acc"] for r in group]),
                "min_val_acc": min(r["val_acc"] for r in group),
                "batches": _mean_std(converged) if len(converged) == len(group) else None,
                "report_rule_batches": _mean_std(rule) if len(rule) == len(group) else None,
            }
        )
    return rows


def format_mean_std(pair: Sequence[float] | None, fmt: str, count: int = 2) -> str:
    """``"mean ± std"`` with the format spec ``fmt`` (``"-"`` for ``None``); the mean alone
    when it comes from ``count == 1`` value, which has no spread."""
    if pair is None:
        return "-"
    return f"{pair[0]:{fmt}}" if count == 1 else f"{pair[0]:{fmt}} ± {pair[1]:{fmt}}"


def _batches(row: dict[str, Any]) -> str:
    if row["batches"] is None:
        return f"{row['converged']}/{row['seeds']} converged"
    return format_mean_std(row["batches"], ".1f", row["seeds"])


#: The columns of :func:`summarize` rows.
SUMMARY_COLUMNS: tuple[Column, ...] = (
    ("model", "l", lambda row: row["model"]),
    ("T", "r", lambda row: str(row["seq_len"])),
    ("val loss", "r", lambda row: format_mean_std(row["val_loss"], ".3f", row["seeds"])),
    ("val acc", "r", lambda row: format_mean_std(row["val_acc"], ".4f", row["seeds"])),
    ("min acc", "r", lambda row: f"{row['min_val_acc']:.4f}"),
    ("batches", "r", _batches),
    (
        "3-batch rule",
        "r",
        lambda row: format_mean_std(row["report_rule_batches"], ".1f", row["seeds"]),
    ),
)


def summary_cells(
    rows: Sequence[dict[str, Any]], columns: Sequence[Column] = SUMMARY_COLUMNS
) -> tuple[list[str], list[list[str]], str]:
    """The table of ``rows``: headers, one list of cells per row, and the alignments."""
    header = [name for name, _, _ in columns]
    body = [[cell(row) for _, _, cell in columns] for row in rows]
    return header, body, "".join(align for _, align, _ in columns)


def _forget_label(value: float | None) -> str:
    return "PyTorch's init" if value is None else f"{value:g}"


def markdown_summary(
    payload: dict[str, Any],
    *,
    columns: Sequence[Column] = SUMMARY_COLUMNS,
    title: str | None = None,
) -> str:
    """The ``gnnkit seq bench --json`` payload as a short Markdown report.

    Args:
        payload (dict): ``summary`` (:func:`summarize` rows), ``config`` (the
            :class:`TrainConfig` fields), ``task``, ``seeds``, ``hidden_dim``,
            ``forget_bias``, ``command``, ``wall_seconds`` and ``environment``
            (:func:`gnnkit.utils.env.environment`).
        columns (sequence of Column, optional): the table's columns.
            (default: :data:`SUMMARY_COLUMNS`)
        title (str, optional): the heading. (default: ``"Memory-task sweep on TASK"``)
    """
    config, env, seeds = payload["config"], payload["environment"], payload["seeds"]
    header, body, align = summary_cells(payload["summary"], columns)
    rule = "|" + "".join("---:|" if a == "r" else "---|" for a in align)
    lines = [
        f"# {title or 'Memory-task sweep on ' + payload['task']}",
        "",
        f"Mean ± std over {seeds} seeds (0 .. {seeds - 1}). Embedding 2 x T, hidden "
        f"{payload['hidden_dim']}, LSTM forget-gate bias "
        f"{_forget_label(payload.get('forget_bias'))}, Adam lr {config['lr']:g}, batch "
        f"{config['batch_size']}, clipping {config['max_norm']:g}, at most "
        f"{config['max_batches']:,} batches. *batches* = batches until convergence: "
        f"{config['patience']} training batches in a row at 100 %, confirmed on "
        f"{config['confirm_samples']:,} fresh samples (0 = not confirmed); *3-batch rule* = "
        "the batch at which that rule alone first fired. Validation: "
        f"{config['val_samples']:,} independent samples, *min acc* = the worst seed.",
        "",
        "| " + " | ".join(header) + " |",
        rule,
        *("| " + " | ".join(cells) + " |" for cells in body),
        "",
        f"Command: `{payload['command']}`; wall time {payload['wall_seconds']:.0f} s.",
        "",
        f"Machine: {env['cpu']}, {env['threads']} torch thread(s) of {env['cpu_count']} cores, "
        f"device {env['device']}; torch {env['torch']}, PyG {env['torch_geometric']}, Python "
        f"{env['python']}; {env['date']}.",
        "",
    ]
    return "\n".join(lines)


def plot_sweep(
    runs: Sequence[dict[str, Any]], path: str | os.PathLike, *, window: int = 10
) -> Path:
    """Loss and accuracy curves: one row per sequence length, one colour per model.

    Light lines are single seeds, dark lines their mean smoothed over ``window`` batches;
    the batch axis is logarithmic so short and long runs both show.
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
