"""``gnnkit bench node|graph|link``: the command line of :mod:`gnnkit.bench`.

Each benchmark parses its options, loads its dataset, calls the library function of its task
(:func:`~gnnkit.bench.node.run_node_benchmark`, :func:`~gnnkit.bench.graph.run_graph_benchmark`,
:func:`~gnnkit.bench.link.run_link_benchmark`), prints the result's report and writes
``--json`` and ``--plot``. Only the chosen benchmark's parser is built, and only its module is
imported (:class:`~gnnkit.cli.LazySubParsers`, :data:`BENCHMARKS`). This module holds what
every benchmark shares: its common options, the checkpoint options and their claim of
``--checkpoint-dir``, the dataset check and the report and files of a result. The node
benchmark is in :mod:`gnnkit.cli.bench_node`; the OGB graph and link benchmarks are in
:mod:`gnnkit.cli.bench_ogb`.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from gnnkit.cli import (
    LazySubParsers,
    add_command,
    add_outputs,
    add_overwrite,
    add_seed,
    add_threads,
    data_kwargs,
    data_options,
    positive_int,
    write_json,
)
from gnnkit.cli.bench_compare import add_compare
from gnnkit.errors import InputError

__all__ = ["BENCHMARKS", "register"]

#: ``(name, module, help line)`` of each benchmark, in the order ``gnnkit bench --help`` lists
#: them; ``module.register_<name>(subparsers)`` adds its parser when it is chosen.
BENCHMARKS = (
    (
        "node",
        "gnnkit.cli.bench_node",
        "node classification (Cora...): gnnkit's GCN/GAT against PyG's",
    ),
    (
        "graph",
        "gnnkit.cli.bench_ogb",
        "molecular property prediction (ogbg-mol*): gnnkit's GCN/GAT against PyG's",
    ),
    (
        "link",
        "gnnkit.cli.bench_ogb",
        "link prediction (ogbl-ddi): gnnkit's GCN/GAT against PyG's, Hits@20",
    ),
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(
        subparsers, "bench", "Benchmarks: gnnkit against PyG on the same data, seeds and harness."
    )
    benchmarks = parser.add_subparsers(
        action=LazySubParsers, dest="benchmark", metavar="BENCHMARK", required=True
    )
    for name, module, line in BENCHMARKS:
        benchmarks.add_lazy(name, line, _registrar(name, module))


def _registrar(name: str, module: str) -> Callable[[argparse._SubParsersAction], None]:
    def register_benchmark(subparsers: argparse._SubParsersAction) -> None:
        getattr(importlib.import_module(module), f"register_{name}")(subparsers)

    return register_benchmark


# --------------------------------------------------------------------------- shared options


#: The parsed options that every benchmark function takes as they are (:func:`run_benchmark`).
COMMON = ("dataset", "model", "compare", "runs", "epochs", "seed", "device")


def add_benchmark_parser(
    subparsers: argparse._SubParsersAction,
    name: str,
    description: str,
    *,
    dataset: str,
    dataset_help: str,
    runs: int,
    plot_help: str,
    references: tuple[str, ...] = ("pyg",),
) -> argparse.ArgumentParser:
    """The parser of benchmark ``name`` with the options every benchmark has.

    They are the data options (:func:`~gnnkit.cli.data_options`), ``--dataset`` (default
    ``dataset``), ``--model`` (a recipe of the task ``name``, default ``gcn``), ``--runs``
    (default ``runs``), ``--epochs`` (default: the recipe's), ``--seed``, ``--compare REF``
    (one of ``references``, a comma list or repeated:
    :func:`~gnnkit.cli.bench_compare.add_compare`), ``--json PATH``, ``--plot PATH``,
    ``--device`` and ``--threads``.
    """
    from gnnkit.recipes import GRAPH_RECIPES, LINK_RECIPES, NODE_RECIPES

    models = {"node": NODE_RECIPES, "graph": GRAPH_RECIPES, "link": LINK_RECIPES}[name]
    parser = add_command(subparsers, name, description, table=BENCHMARKS, parents=[data_options()])
    parser.add_argument("--dataset", default=dataset, help=dataset_help)
    parser.add_argument(
        "--model", default="gcn", help=f"one of: {', '.join(models)} (default: gcn)"
    )
    parser.add_argument(
        "--runs",
        type=positive_int,
        default=runs,
        help=f"seeds per implementation (default: {runs})",
    )
    parser.add_argument(
        "--epochs", type=positive_int, help="epochs per run (default: the recipe's)"
    )
    add_seed(parser, "seed of the first run; run r uses SEED + r (default: 0)")
    add_compare(parser, references)
    add_outputs(parser, json="write the results as JSON", plot=plot_help)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    add_threads(parser)
    return parser


def add_checkpoint_arguments(parser: argparse.ArgumentParser) -> None:
    """``--checkpoint-dir DIR`` and ``--resume``."""
    parser.add_argument("--checkpoint-dir", metavar="DIR", help="write each run's checkpoints here")
    parser.add_argument(
        "--resume", action="store_true", help="continue interrupted runs from --checkpoint-dir"
    )
    add_overwrite(parser)
    parser.set_defaults(checkpoint_names=checkpoint_names)


def checkpoint_names(args: argparse.Namespace) -> list[str]:
    """The checkpoints this benchmark writes: one per implementation, seed and mode."""
    from gnnkit.bench.harness import checkpoint_suffix, run_checkpoints

    suffix = checkpoint_suffix(getattr(args, "mini_batch", None) or None)  # a mode, or None
    compare = getattr(args, "compare", None)
    return run_checkpoints(f"{args.dataset}-{args.model}", compare, args.seed, args.runs, suffix)


@contextlib.contextmanager
def checkpoint_guard(args: argparse.Namespace, options: dict[str, Any]) -> Iterator[None]:
    """Claim the checkpoints this benchmark writes in ``--checkpoint-dir`` (one per
    implementation and seed: refused, or kept for ``--resume``, or left for the runs to replace
    with ``--overwrite``: :func:`gnnkit.train.checkpoint.claim_checkpoint_dir`) and hold the
    folder's lock while the benchmark runs, so two commands never write the same checkpoints."""
    import glob

    from gnnkit.train.checkpoint import claim_checkpoint_dir
    from gnnkit.utils.locks import folder_lock

    folder, resume = options.get("checkpoint_dir"), bool(options.get("resume"))
    overwrite = bool(getattr(args, "overwrite", False))
    claim_checkpoint_dir(None, "", resume=resume, overwrite=overwrite)  # the flags agree
    if folder is None or os.environ.get("RANK", "0") != "0":
        yield
        return
    with folder_lock(folder, option="--checkpoint-dir"):
        patterns = [glob.escape(name) for name in checkpoint_names(args)]
        claim_checkpoint_dir(folder, patterns, resume=resume, overwrite=overwrite)
        yield


def load_dataset_of_kind(name: str, args: argparse.Namespace, kind: str) -> Any:
    """Load a registered dataset of ``kind``; others are refused with the list of that kind."""
    from gnnkit.data import DATASETS, get_spec, load
    from gnnkit.data.registry import did_you_mean

    names = [n for n, s in DATASETS.items() if s.kind == kind]
    if name not in DATASETS:  # the datasets this command takes, not every registered one
        raise InputError(
            f"unknown dataset {name!r}{did_you_mean(name, names)}; bench {kind} takes: "
            f"{', '.join(names)}"
        )
    spec = get_spec(name)
    if spec.kind != kind:
        raise InputError(
            f"dataset {name!r} is a {spec.kind} dataset; bench {kind} needs one of: "
            f"{', '.join(names)}"
        )
    return load(name, **data_kwargs(args))


def set_threads(args: argparse.Namespace) -> None:
    """``--threads``: torch's CPU threads for the rest of the process."""
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)


def run_benchmark(
    args: argparse.Namespace,
    run: Callable[..., Any],
    plot: Callable[[Any, str], Path],
    data: Any,
    *,
    json_options: dict[str, Any] | None = None,
    **options: Any,
) -> int:
    """Run a benchmark, print its report and write ``--json`` and ``--plot``; ``0``.

    Args:
        args (argparse.Namespace): the parsed command line (:func:`add_benchmark_parser`).
        run (callable): the library function, ``run(data, **kwargs)`` -> a
            :class:`~gnnkit.bench.harness.Comparison`; it receives the :data:`COMMON` options
            and ``options``.
        plot (callable): ``plot(result, path)``, the figure of ``--plot``.
        data: the dataset.
        json_options (dict, optional): the options the ``--json`` payload records, for a
            result whose ``to_json(env, options)`` takes them.
        **options: the benchmark's own keyword arguments of ``run``.
    """
    from gnnkit.utils.env import environment

    with checkpoint_guard(args, options):
        result = run(data, **{key: getattr(args, key) for key in COMMON}, **options)
    print(result.report())
    if args.json:
        env = environment(args.device)
        payload = result.to_json(env) if json_options is None else result.to_json(env, json_options)
        print(f"wrote {write_json(args.json, payload)}")
    if args.plot:
        print(f"wrote {plot(result, args.plot)}")
    return 0
