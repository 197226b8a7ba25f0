"""``gnnkit citation``: citation sentiment on the Athar corpus.

What the two commands do is :data:`DESCRIPTION`, the text ``gnnkit citation --help`` shows;
the models are :mod:`gnnkit.citation.registry`'s.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gnnkit.cli import (
    _integer,
    add_command,
    add_outputs,
    add_seed,
    add_threads,
    data_kwargs,
    data_options,
    positive_int,
    write_json,
)
from gnnkit.errors import InputError

# Only the names here: the models, scikit-learn and the corpus code load when a command runs.
from gnnkit.recipes import CITATION_MODEL_NAMES as MODEL_NAMES
from gnnkit.recipes import CITATION_MODELS as BASE_MODELS
from gnnkit.recipes import CITATION_VARIANTS as VARIANTS
from gnnkit.utils.table import format_table

if TYPE_CHECKING:
    from torch_geometric.data import Data

    from gnnkit.citation.metrics import CVResult

__all__ = [
    "DESCRIPTION",
    "fold_count",
    "parse_models",
    "plot_confusions",
    "register",
    "run",
    "run_bench",
    "run_info",
]

logger = logging.getLogger(__name__)

DEFAULT_MODELS = ",".join(BASE_MODELS)

#: ``gnnkit citation --help``'s paragraph: the module docstring's, in plain text.
DESCRIPTION = (
    "`gnnkit citation info` prints the corpus's counts; `gnnkit citation bench` cross-validates "
    "the models on the same seeded folds (stratified, and grouped by sentence text unless "
    "--grouping none) and prints a table of macro-F1 (the headline), micro-F1 and per-class F1, "
    "mean +- sample std over folds, with optional JSON results and a confusion-matrix plot."
)


def fold_count(text: str) -> int:
    """argparse type: k of k-fold cross-validation, an integer >= 2 (a fold to test on, the
    others to train on)."""
    return _integer(text, 2, "a number of folds")


def parse_models(text: str) -> list[str]:
    """``"svm,text"`` -> ``["svm", "text"]``; unknown or repeated names are an error."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise InputError(f"--models is empty; choose from {', '.join(MODEL_NAMES)}")
    unknown = [n for n in names if n not in MODEL_NAMES]
    if unknown:
        raise InputError(
            f"unknown model(s) {', '.join(unknown)} in --models; choose from "
            f"{', '.join(MODEL_NAMES)}"
        )
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InputError(f"--models lists {', '.join(repeated)} more than once")
    return names


def _corpus_options() -> argparse.ArgumentParser:
    """A parent parser with ``--corpus`` and ``--skip-malformed``."""
    corpus = argparse.ArgumentParser(add_help=False)
    group = corpus.add_argument_group("corpus")
    group.add_argument(
        "--corpus",
        metavar="FILE",
        default=None,
        help="a corpus file in Athar's format (default: the athar-citations dataset)",
    )
    group.add_argument(
        "--skip-malformed",
        action="store_true",
        help="skip malformed lines (their count is reported) instead of stopping at the first",
    )
    return corpus


def _add_bench(
    commands: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]
) -> None:
    bench = commands.add_parser(
        "bench",
        parents=parents,
        help="k-fold cross-validation of the models on the same folds",
        description="Stratified k-fold cross-validation of citation sentiment models, the "
        "folds grouped by sentence text unless --grouping none; every model is scored on the "
        "same seeded folds.",
    )
    bench.add_argument(
        "--models",
        default=DEFAULT_MODELS,
        metavar="LIST",
        help=f"comma-separated models (default: {DEFAULT_MODELS}); ablations: "
        f"{', '.join(VARIANTS)}",
    )
    bench.add_argument("--folds", type=fold_count, default=10, help="k, at least 2 (default: 10)")
    bench.add_argument(
        "--grouping",
        choices=("text", "none"),
        default="text",
        help="text: keep copies of a sentence (equal normalised text) in one fold (default); "
        "none: the plain stratified folds of gnnkit <= 0.2",
    )
    add_seed(bench, "fold and model seed (default: 0)")
    bench.add_argument(
        "--jobs",
        type=positive_int,
        default=1,
        help="fit this many (model, fold) pairs at once in worker processes (default: 1)",
    )
    add_threads(
        bench,
        "torch threads per process (default: 1; the small recurrent and sparse operations here "
        "run best single-threaded, use --jobs for parallelism)",
        default=1,
    )
    add_outputs(
        bench, json="write the results as JSON", plot="save the confusion matrices (.png/.pdf)"
    )
    bench.set_defaults(func=run)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(subparsers, "citation", DESCRIPTION)
    commands = parser.add_subparsers(dest="citation_command", metavar="COMMAND", required=True)
    parents = [data_options(), _corpus_options()]
    info = commands.add_parser(
        "info",
        parents=parents,
        help="counts of the corpus: sentences per label, papers, citation edges",
    )
    info.add_argument(
        "--homophily",
        action="store_true",
        help="also print how often sentences sharing a paper pair, source or target agree",
    )
    info.set_defaults(func=run)
    _add_bench(commands, parents)


def _load(args: argparse.Namespace) -> Data:
    from gnnkit.citation.corpus import load_citations

    kwargs = {} if args.corpus else data_kwargs(args)
    data = load_citations(args.corpus, skip_malformed=args.skip_malformed, **kwargs)
    if data.skipped_lines:
        print(f"skipped {data.skipped_lines} malformed line(s)", file=sys.stderr)
    return data


def _corpus_counts(data: Data) -> dict[str, Any]:
    from gnnkit.citation.corpus import LABELS

    counts = data.y.bincount(minlength=len(LABELS)).tolist()
    return {
        "sentences": int(data.y.numel()),
        "labels": dict(zip(data.class_names, counts, strict=True)),
        "papers": int(data.num_nodes),
        "citation_edges": int(data.citation_edge_index.size(1)),
        "skipped_lines": int(data.skipped_lines),
    }


def run(args: argparse.Namespace) -> int:
    if args.citation_command == "info":
        return run_info(args)
    return run_bench(args)


def run_info(args: argparse.Namespace) -> int:
    from gnnkit.citation.corpus import label_homophily

    data = _load(args)
    counts = _corpus_counts(data)
    rows = [("sentences", counts["sentences"])]
    rows += [(f"  {name}", n) for name, n in counts["labels"].items()]
    rows += [
        ("papers", counts["papers"]),
        ("distinct citation edges", counts["citation_edges"]),
        ("skipped lines", counts["skipped_lines"]),
    ]
    print(format_table(("", "count"), rows, "lr", rule=False))
    if args.homophily:
        print()
        print("label homophily (ordered pairs of sentences sharing a pair, source or target):")
        table = []
        for group in ("pair", "source", "target"):
            h = label_homophily(data, group)
            table.append(
                [group, h["pairs"], f"{h['agreement']:.3f}", f"{h['chance']:.3f}"]
                + [f"{v:.2f}" for v in h["lift"].values()]
            )
        header = ["shared", "pairs", "agreement", "chance"]
        header += [f"lift {c}" for c in data.class_names]
        print(format_table(header, table, "lrrr" + "r" * len(data.class_names)))
    return 0


def _table(result: CVResult) -> str:
    header = ["model", "macro-F1", "micro-F1"] + [f"F1 {c}" for c in result.class_names]
    header.append("time")
    rows = []
    for name in result.scores:
        s = result.summary(name)
        rows.append(
            [
                name,
                f"{s['macro_f1_mean']:.3f} +- {s['macro_f1_std']:.3f}",
                f"{s['micro_f1_mean']:.3f} +- {s['micro_f1_std']:.3f}",
            ]
            + [
                f"{s['per_class_f1'][c]:.3f} +- {s['per_class_f1_std'][c]:.3f}"
                for c in result.class_names
            ]
            + [f"{s['time_s']:.0f}s"]
        )
    return format_table(header, rows, "l" + "r" * (len(header) - 1))


def _comparison(result: CVResult) -> str | None:
    """The hybrid-vs-text line: the gain in macro-F1 in units of the text model's std."""
    if "hybrid" not in result.scores or "text" not in result.scores:
        return None
    import numpy as np

    hybrid, text = result.summary("hybrid"), result.summary("text")
    gain = hybrid["macro_f1_mean"] - text["macro_f1_mean"]
    std = max(hybrid["macro_f1_std"], text["macro_f1_std"])
    paired = np.subtract(hybrid["macro_f1"], text["macro_f1"])
    wins = int((paired > 0).sum())
    verdict = "more" if std > 0 and gain > std else "not more"
    return (
        f"hybrid - text macro-F1: {gain:+.3f} ({verdict} than one std, {std:.3f}); "
        f"hybrid better on {wins} of {paired.size} folds"
    )


def plot_confusions(result: CVResult, path: str | Path) -> Path:
    """One row-normalised confusion matrix per model (summed over folds), counts annotated."""
    import numpy as np

    from gnnkit.utils.plotting import save_figure, subplots

    names = list(result.scores)
    fig, axes = subplots(1, len(names), figsize=(3.2 * len(names), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        summary = result.summary(name)
        counts = np.asarray(summary["confusion"], dtype=float)
        rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
        for i in range(counts.shape[0]):
            for j in range(counts.shape[1]):
                ax.text(
                    j,
                    i,
                    f"{int(counts[i, j])}\n{rates[i, j]:.0%}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if rates[i, j] > 0.6 else "black",
                )
        ticks = range(len(result.class_names))
        ax.set_xticks(ticks, result.class_names, fontsize=7, rotation=30)
        ax.set_yticks(ticks, result.class_names, fontsize=7)
        ax.set_xlabel("predicted", fontsize=8)
        ax.set_title(f"{name}\nmacro-F1 {summary['macro_f1_mean']:.3f}", fontsize=9)
    axes[0][0].set_ylabel("true", fontsize=8)
    fig.suptitle(f"Athar citation sentiment, {result.folds}-fold CV (summed)", fontsize=10)
    fig.tight_layout()
    try:
        return save_figure(fig, path)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot save --plot {path}: {exc}") from exc


def _load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (how busy the machine was), where available."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _command(args: argparse.Namespace, names: list[str]) -> str:
    """The ``gnnkit citation bench`` command line that reproduces this run."""
    parts = [
        "gnnkit citation bench",
        f"--models {','.join(names)}",
        f"--folds {args.folds}",
        f"--grouping {args.grouping}",
        f"--seed {args.seed}",
        f"--jobs {args.jobs}",
        f"--threads {args.threads}",
    ]
    if args.corpus:
        parts.append(f"--corpus {args.corpus}")
    if args.skip_malformed:
        parts.append("--skip-malformed")
    return " ".join(parts)


def run_bench(args: argparse.Namespace) -> int:
    names = parse_models(args.models)
    for option in ("json", "plot"):
        value = getattr(args, option)
        if value is not None and Path(value).is_dir():
            raise InputError(f"--{option} {value} is a folder; give a file name")
    import torch
    from threadpoolctl import threadpool_limits

    previous = torch.get_num_threads()
    with threadpool_limits(limits=args.threads):  # numpy/scipy BLAS and OpenMP pools
        torch.set_num_threads(args.threads)
        try:
            return _bench(args, names)
        finally:
            torch.set_num_threads(previous)


def _bench(args: argparse.Namespace, names: list[str]) -> int:
    from tqdm.auto import tqdm

    from gnnkit.citation.cv import cross_validate
    from gnnkit.citation.folds import citation_folds
    from gnnkit.citation.registry import make_model
    from gnnkit.utils.env import environment

    data = _load(args)
    folds = citation_folds(data, args.folds, seed=args.seed, grouped=args.grouping == "text")
    models = {name: functools.partial(make_model, name) for name in names}
    bar = tqdm(total=len(folds) * len(names), desc="citation CV", unit="fit", disable=None)

    def on_fold(name: str, fold, scores: dict[str, Any], seconds: float) -> None:
        bar.set_postfix_str(f"{name} fold {fold.index}: {scores['macro_f1']:.3f}")
        bar.update()

    load_before = _load_average()
    start = time.perf_counter()
    try:
        result = cross_validate(
            data,
            models,
            folds,
            seed=args.seed,
            jobs=args.jobs,
            threads=args.threads,
            on_fold=on_fold,
        )
    finally:
        bar.close()
    wall = time.perf_counter() - start

    kind = "grouped stratified" if args.grouping == "text" else "stratified"
    print(f"Athar citation sentiment: {len(folds)}-fold {kind} CV, seed {args.seed}")
    print(_table(result))
    comparison = _comparison(result)
    if comparison:
        print(comparison)
    print(f"wall time {wall:.0f}s ({args.jobs} job(s) x {args.threads} thread(s))")
    if args.json:
        payload = result.to_json(
            {
                "wall_time_s": wall,
                "command": _command(args, names),
                "options": {
                    "models": names,
                    "folds": args.folds,
                    "grouping": args.grouping,
                    "seed": args.seed,
                    "jobs": args.jobs,
                    "threads": args.threads,
                    "hyperparameters": {n: repr(make_model(n)) for n in names},
                },
                "corpus": _corpus_counts(data),
                "load_average": {"start": load_before, "end": _load_average()},
                "env": environment("cpu"),
            }
        )
        print(f"wrote {write_json(args.json, payload)}")
    if args.plot:
        print(f"wrote {plot_confusions(result, args.plot)}")
    return 0
