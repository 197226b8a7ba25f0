"""``gnnkit bench node|graph|link``: the command line of :mod:`gnnkit.bench`.

Each benchmark parses its options, loads its dataset, calls the library function of its task
(:func:`~gnnkit.bench.node.run_node_benchmark`, :func:`~gnnkit.bench.graph.run_graph_benchmark`,
:func:`~gnnkit.bench.link.run_link_benchmark`), prints the result's report and writes
``--json`` and ``--plot``. Only the chosen benchmark's parser is built
(:class:`~gnnkit.cli.LazySubParsers`). The node benchmark is here, with the options every
benchmark shares; the OGB graph and link benchmarks are in :mod:`gnnkit.cli.bench_ogb`.

``gnnkit bench node``: ``--protocol paper`` trains each model under its paper's own protocol
(the recipe's :attr:`~gnnkit.recipes.Recipe.protocol`, :mod:`gnnkit.train.protocols`: GCN
stops by Kipf & Welling's window rule within 200 epochs, GAT by Veličković et al.'s patience
of 100 within 100,000), PyG's reference too; ``--mini-batch`` trains on sampled neighbourhoods
(:class:`gnnkit.train.minibatch.SamplingConfig`); ``--mini-batch --distributed``, in each of
the processes that ``torchrun --nproc_per_node=N`` starts, trains data-parallel: rank 0 loads
(and processes) the dataset before the others, and alone prints and writes files.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import os
import sys
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
from gnnkit.errors import GnnkitError, InputError

__all__ = ["BENCHMARKS", "OPTIONS", "register", "register_node", "run_node", "sampling_config"]

#: ``(name, module, help line)`` of each benchmark, in the order ``gnnkit bench --help`` lists
#: them; ``module.register_<name>(subparsers)`` adds its parser when it is chosen.
BENCHMARKS = (
    (
        "node",
        "gnnkit.cli.bench",
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

    spec = get_spec(name)
    if spec.kind != kind:
        names = ", ".join(n for n, s in DATASETS.items() if s.kind == kind)
        raise InputError(
            f"dataset {name!r} is a {spec.kind} dataset; bench {kind} needs one of: {names}"
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


# --------------------------------------------------------------------------- bench node


#: The options recorded in the ``--json`` payload, as parsed (``warmup`` resolved).
OPTIONS = (
    "dataset", "model", "runs", "epochs", "seed", "patience", "compare", "device", "threads",
    "warmup", "mini_batch", "fanouts", "batch_size", "accumulate", "distributed", "protocol",
    "cuda_graph",
)  # fmt: skip


def register_node(subparsers: argparse._SubParsersAction) -> None:
    from gnnkit.bench.harness import REFERENCES
    from gnnkit.bench.node import WARMUP_EPOCHS
    from gnnkit.data import DATASETS

    node_datasets = ", ".join(n for n, spec in DATASETS.items() if spec.kind == "node")
    parser = add_benchmark_parser(
        subparsers,
        "node",
        "Train a node classifier over several seeds and report test accuracy (at the best "
        "validation epoch), run and epoch time and peak memory; with --compare pyg (the model "
        "of PyG's example), pyg-tuned (PyG's layers in their fastest configuration) or "
        "pyg,pyg-tuned, the references train through the same harness, interleaved run by run.",
        dataset="cora",
        dataset_help=f"one of: {node_datasets} (default: cora)",
        runs=10,
        plot_help="draw loss and accuracy curves (PNG, PDF or SVG)",
        references=REFERENCES,
    )
    parser.add_argument(
        "--patience",
        type=positive_int,
        default=None,
        help="early-stopping patience in epochs (default: off)",
    )
    parser.add_argument(
        "--protocol",
        choices=["default", "paper"],
        default="default",
        help="default: --epochs epochs, test accuracy at the best validation accuracy; paper: "
        "the model's paper protocol (GCN: Kipf & Welling's stopping window of 10 within 200 "
        "epochs, final model; GAT: Velickovic et al.'s patience of 100 on validation loss and "
        "accuracy within 100,000 epochs, the model where both were best); --epochs caps it",
    )
    add_checkpoint_arguments(parser)
    parser.add_argument(
        "--checkpoint-every",
        type=positive_int,
        default=None,
        metavar="N",
        help="epochs between checkpoints in --checkpoint-dir (default: 10)",
    )
    full, mini = WARMUP_EPOCHS["full-batch"], WARMUP_EPOCHS["mini-batch"]
    parser.add_argument(
        "--warmup",
        type=int,
        default=None,
        metavar="EPOCHS",
        help=f"untimed warm-up epochs per implementation (default: {full}; {mini} with "
        "--mini-batch)",
    )
    _add_sampling_arguments(parser)
    parser.add_argument(
        "--cuda-graph",
        action="store_true",
        help="gnnkit's runs capture their training step as a CUDA graph after 3 eager steps "
        "and replay it (--device cuda, full batch; the references train eagerly)",
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar (default: when stderr is a terminal)",
    )
    parser.set_defaults(func=run_node)


def _add_sampling_arguments(parser: argparse.ArgumentParser) -> None:
    sampled = parser.add_argument_group(
        "mini-batch training (graphs whose full-batch training does not fit in memory)"
    )
    sampled.add_argument(
        "--mini-batch",
        action="store_true",
        help="train on sampled neighbourhoods of batches of training nodes; evaluate on the "
        "whole graph",
    )
    sampled.add_argument(
        "--fanouts",
        type=int,
        nargs="+",
        metavar="K",
        help="neighbours sampled per node at each hop, one per layer; -1 keeps all "
        "(default: the recipe's: 15 10 5 for ogbn-arxiv, 10 10 for the Cora models)",
    )
    sampled.add_argument(
        "--batch-size",
        type=positive_int,
        metavar="N",
        help="training nodes per shard, i.e. per process and micro-batch (default: 1024)",
    )
    sampled.add_argument(
        "--accumulate",
        type=positive_int,
        metavar="N",
        help="shards whose gradients add up before each optimiser step (default: 1)",
    )
    sampled.add_argument(
        "--distributed",
        action="store_true",
        help="data-parallel over the processes that `torchrun --nproc_per_node=N` started "
        "(DistributedDataParallel: gloo on CPU, nccl on CUDA)",
    )


def _one_of_several_torchrun_processes() -> bool:
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    from gnnkit.train.distributed import launched_by_torchrun

    return launched_by_torchrun()


def sampling_config(args: argparse.Namespace, dataset: str) -> Any:
    """The :class:`~gnnkit.train.minibatch.SamplingConfig` of ``--mini-batch``, or ``None``."""
    given = [
        flag
        for flag, value in (
            ("--fanouts", args.fanouts),
            ("--batch-size", args.batch_size),
            ("--accumulate", args.accumulate),
            ("--distributed", args.distributed or None),
        )
        if value is not None
    ]
    if not args.mini_batch:
        if given:
            raise InputError(f"{given[0]} is a mini-batch option: add --mini-batch")
        if _one_of_several_torchrun_processes():
            raise InputError(
                "this is one of several processes started by torchrun: add --mini-batch "
                "--distributed to train data-parallel, or run without torchrun"
            )
        return None
    if not args.distributed and _one_of_several_torchrun_processes():
        raise InputError(
            "this is one of several processes started by torchrun: add --distributed, or "
            "run without torchrun"
        )
    from gnnkit.recipes import get_recipe
    from gnnkit.train.minibatch import SamplingConfig, check_fanouts_fit

    recipe = get_recipe("node", args.model, dataset)
    sampling = SamplingConfig(
        fanouts=tuple(args.fanouts) if args.fanouts is not None else recipe.fanouts,
        batch_size=args.batch_size or 1024,
        accumulate=args.accumulate or 1,
    )
    model = recipe.build(1, 2)  # a throwaway copy counts its layers before any data is loaded
    check_fanouts_fit(model, sampling.fanouts, option="--fanouts", hint=recipe.fanouts)
    return sampling


def _paper_protocol(args: argparse.Namespace, sampling: Any) -> str | None:
    """The protocol of ``--protocol paper`` (a key of :data:`gnnkit.train.protocols.PROTOCOLS`),
    or ``None`` for the default; refuses the options a paper's protocol does not take."""
    if args.protocol != "paper":
        return None
    from gnnkit.recipes import NODE_RECIPES, get_recipe

    recipe = get_recipe("node", args.model, args.dataset)
    if recipe.protocol is None:
        covered = ", ".join(name for name, r in NODE_RECIPES.items() if r.protocol)
        raise InputError(
            f"--protocol paper: the {recipe.name} recipe has no paper protocol (models with one: "
            f"{covered})"
        )
    if sampling is not None:
        raise InputError("--protocol paper trains full-batch, as the papers do: drop --mini-batch")
    if args.patience is not None:
        raise InputError("--protocol paper stops by the paper's own rule: drop --patience")
    return recipe.protocol


def _load_on_every_rank(args: argparse.Namespace, world: Any) -> Any:
    """Rank 0 loads (and processes) the dataset first, then the others; errors reach all."""
    failure: str | None = None
    data = None
    if world.rank == 0:
        try:
            data = load_dataset_of_kind(args.dataset, args, "node")
        except GnnkitError as exc:
            failure = str(exc)
    failure = world.broadcast([failure])[0]
    if failure is not None:
        raise GnnkitError(failure)
    if world.rank != 0:
        data = load_dataset_of_kind(args.dataset, args, "node")
    return data


def run_node(args: argparse.Namespace) -> int:
    from gnnkit.bench.harness import check_resume
    from gnnkit.bench.node import default_warmup_epochs
    from gnnkit.recipes import get_recipe

    get_recipe("node", args.model)  # unknown names fail before any data is loaded
    if args.warmup is not None and args.warmup < 0:
        raise InputError(f"--warmup must be >= 0, got {args.warmup}")
    check_resume(args.resume, args.checkpoint_dir or None)
    if args.checkpoint_every is not None and args.checkpoint_dir is None:
        raise InputError(
            "--checkpoint-every needs --checkpoint-dir (the folder the checkpoints go to)"
        )
    sampling = sampling_config(args, args.dataset)
    _paper_protocol(args, sampling)  # refused before any data is loaded
    if args.cuda_graph and not str(args.device).startswith("cuda"):
        raise InputError(f"--cuda-graph captures CUDA work: add --device cuda (got {args.device})")
    if args.warmup is None:
        args.warmup = default_warmup_epochs(sampling)
    set_threads(args)
    if not args.distributed:
        return _run(args, load_dataset_of_kind(args.dataset, args, "node"), sampling)

    from gnnkit.train.distributed import init_distributed, local_device, shutdown_distributed

    world = init_distributed(device=args.device)
    try:
        args.device = str(local_device(args.device))
        data = _load_on_every_rank(args, world)
        if world.rank != 0:  # rank 0 alone prints and writes files
            args.json = args.plot = None
            args.progress = False
            with contextlib.redirect_stdout(io.StringIO()):
                return _run(args, data, sampling)
        return _run(args, data, sampling)
    finally:
        shutdown_distributed()


def _run(args: argparse.Namespace, data: Any, sampling: Any) -> int:
    from gnnkit.bench.node import run_node_benchmark
    from gnnkit.bench.node_result import plot_node_benchmark

    protocol = _paper_protocol(args, sampling)
    return run_benchmark(
        args,
        run_node_benchmark,
        plot_node_benchmark,
        data,
        json_options={**{key: getattr(args, key) for key in OPTIONS}, "paper_protocol": protocol},
        patience=args.patience,
        warmup_epochs=args.warmup,
        checkpoint_dir=args.checkpoint_dir,
        checkpoint_every=args.checkpoint_every or 10,
        resume=args.resume,
        progress=sys.stderr.isatty() if args.progress is None else args.progress,
        sampling=sampling,
        distributed=args.distributed,
        protocol=protocol,
        cuda_graph=args.cuda_graph,
    )
