"""The ``gnnkit`` command line: one entry point, one subcommand module per feature.

:data:`COMMANDS` lists every subcommand with its module and help line. ``gnnkit --help``
shows them without importing any of those modules, or torch; a module is imported only when
its command runs (:class:`LazySubParsers`), and its ``register(subparsers)`` then adds the
command's parser and sets ``func``. User errors (:class:`gnnkit.errors.GnnkitError`, and a
bad command line: :class:`CommandParser`) and OS errors
(:func:`gnnkit.utils.io.describe_os_error`) print one line and exit with code 2; a
Ctrl-C at any point, the command's imports included, prints one line and exits with 130; every
output path is checked before the command starts (:func:`check_outputs`). What the command modules
share is here too: the data options (:func:`data_options`, :func:`data_kwargs`), a command's
parser (:func:`add_command`), the options several commands have (:func:`add_outputs`,
:func:`add_seed`, :func:`add_threads`), the integer types (:func:`positive_int`,
:func:`nonnegative_int`) and :func:`write_json`."""

from __future__ import annotations

import argparse
import difflib
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from gnnkit import __version__
from gnnkit.errors import GnnkitError, OutputError

__all__ = [
    "COMMANDS",
    "CommandParser",
    "CommandSubParsers",
    "LazySubParsers",
    "add_command",
    "add_outputs",
    "add_seed",
    "add_threads",
    "bounded_int",
    "build_parser",
    "check_outputs",
    "data_kwargs",
    "data_options",
    "finite_float",
    "main",
    "nonnegative_int",
    "positive_int",
    "write_json",
]

#: ``(name, module, help line)`` of every subcommand, in the order ``gnnkit --help`` lists them.
#: The help line is written here only: each module's parser takes it (:func:`add_command`).
COMMANDS = (
    (
        "demo",
        "gnnkit.cli.demo",
        "the newcomer's demo (what `make demo` runs): GCN and GAT on Cora against PyG",
    ),
    ("data", "gnnkit.cli.data", "list, fetch and verify datasets"),
    ("hops", "gnnkit.cli.hops", "adjacency matrix and hop distances of a labelled graph"),
    ("seq", "gnnkit.cli.seq", "RNN/LSTM/biLSTM/GRU on synthetic memory tasks"),
    ("text", "gnnkit.cli.text", "character-level LSTM: train, sample, tables"),
    (
        "citation",
        "gnnkit.cli.citation",
        "citation sentiment on the Athar corpus: does the citation graph help a BiLSTM read it? "
        "(RNN + GNN hybrid and baselines)",
    ),
    (
        "partition",
        "gnnkit.cli.partition",
        "cut a graph into P shards for partition-parallel training (torchrun -m gnnkit.distributed)",
    ),
    (
        "bench",
        "gnnkit.cli.bench",
        "benchmarks: gnnkit against PyG on the same data, seeds and harness",
    ),
)


class CommandSubParsers(argparse._SubParsersAction):
    """The subcommands of a :class:`CommandParser`: arguments that the chosen command does not
    take are refused by that command's parser (named in the error, with its close options),
    not passed up to ``gnnkit``'s."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Any = None) -> None:
        # argparse appends the chosen parser's leftover arguments to this list of the parent's
        known = len(getattr(namespace, argparse._UNRECOGNIZED_ARGS_ATTR, []))
        super().__call__(parser, namespace, values, option_string)
        extras = getattr(namespace, argparse._UNRECOGNIZED_ARGS_ATTR, [])[known:]
        chosen = self._name_parser_map[values[0]]
        if extras and isinstance(chosen, CommandParser):
            chosen.error(f"unrecognized arguments: {' '.join(extras)}{chosen.suggest(extras)}")


class LazySubParsers(CommandSubParsers):
    """Subcommands listed by name and help line, whose parsers are built only when chosen.

    ``add_lazy(name, help, register)`` lists ``name`` in the parent's ``--help`` at the cost
    of a string. When the command line chooses it, ``register(subparsers)`` adds the real
    parser (importing what that command needs, and nothing that the others need), and parsing
    goes on there: ``gnnkit COMMAND --help`` shows the command's full help.

    Use it as ``parser.add_subparsers(action=LazySubParsers, ...)``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._registers: dict[str, Callable[[argparse._SubParsersAction], None]] = {}

    def add_lazy(
        self, name: str, help: str, register: Callable[[argparse._SubParsersAction], None]
    ) -> None:
        """List ``name`` with ``help``; ``register(self)`` adds its parser once it is chosen."""
        self.add_parser(name, help=help, add_help=False)  # a placeholder, for --help and choices
        self._registers[name] = register

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Any = None) -> None:
        register = self._registers.pop(values[0], None)
        if register is not None:
            # Drop the placeholder (argparse refuses a second parser of the same name).
            del self._name_parser_map[values[0]]
            self._choices_actions[:] = [a for a in self._choices_actions if a.dest != values[0]]
            register(self)
        super().__call__(parser, namespace, values, option_string)


def add_command(
    subparsers: argparse._SubParsersAction,
    name: str,
    description: str | None = None,
    *,
    table: Sequence[tuple[str, str, str]] = COMMANDS,
    **kwargs: Any,
) -> argparse.ArgumentParser:
    """The parser of command ``name``, listed with its help line in ``table``.

    Args:
        subparsers (argparse._SubParsersAction): where the command goes.
        name (str): the command.
        description (str, optional): the paragraph atop the command's own ``--help``.
        table (sequence, optional): ``(name, module, help line)`` rows, the one place a help
            line is written: :data:`COMMANDS`, or :data:`gnnkit.cli.bench.BENCHMARKS`.
            (default: :data:`COMMANDS`)
        **kwargs: more of ``add_parser``'s keyword arguments (``parents``...).
    """
    help_line = next(line for command, _, line in table if command == name)
    return subparsers.add_parser(name, help=help_line, description=description, **kwargs)


def data_options() -> argparse.ArgumentParser:
    """A parent parser with ``--data-root``, ``--mirror`` and ``--offline``."""
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("data")
    group.add_argument(
        "--data-root",
        metavar="DIR",
        default=None,
        help="writable folder for datasets (default: $GNNKIT_DATA or ./datasets)",
    )
    group.add_argument(
        "--mirror",
        metavar="DIR",
        default=None,
        help="read-only local mirror laid out like the data root (default: $GNNKIT_MIRROR)",
    )
    group.add_argument(
        "--offline",
        action="store_true",
        help="never try the upstream download (also: GNNKIT_OFFLINE=1)",
    )
    return parser


def data_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """``root``, ``mirror`` and ``download`` for :func:`gnnkit.data.load` from parsed options."""
    return {
        "root": args.data_root,
        "mirror": args.mirror,
        "download": False if args.offline else None,
    }


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _integer(text, 1, "a positive integer")


def nonnegative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _integer(text, 0, "a non-negative integer")


def bounded_int(minimum: int, maximum: int, what: str) -> Callable[[str], int]:
    """argparse type: an integer in ``minimum..maximum``, described as ``what`` in the error."""

    def parse(text: str) -> int:
        return _integer(text, minimum, f"{what} in {minimum}..{maximum:,}", maximum=maximum)

    return parse


def sequence_length(text: str) -> int:
    """argparse type: a sequence length, an integer >= 2 (an input element and a label)."""
    return _integer(text, 2, "a sequence length (an input element and a label)")


def finite_float(text: str) -> float:
    """argparse type: a finite number (no NaN, no infinity)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _integer(text: str, minimum: int, what: str, *, maximum: int | None = None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if maximum is not None and not minimum <= value <= maximum:  # (the range is in `what`)
        raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected {what} (>= {minimum}), got {value}")
    return value


def add_outputs(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    *,
    json: str | None = None,
    plot: str | None = None,
    markdown: str | None = None,
) -> None:
    """``--json PATH``, ``--plot PATH`` and ``--markdown PATH``: each whose help is given, and
    ``--overwrite`` (``add_overwrite``)."""
    for option, help_text in (("--json", json), ("--plot", plot), ("--markdown", markdown)):
        if help_text is not None:
            parser.add_argument(option, metavar="PATH", help=help_text)
    add_overwrite(parser)


#: ``--overwrite``'s help, one text for every command (results, and checkpoints where kept).
OVERWRITE_HELP = (
    "replace what an earlier run wrote: existing result files (--json, --plot, --markdown, "
    "--out) and, with --checkpoint-dir, this benchmark's checkpoints; without it they are "
    "refused"
)


def add_overwrite(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--overwrite``, once per command (the output and the checkpoint options both ask)."""
    if "--overwrite" not in parser._option_string_actions:
        parser.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)


def add_seed(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    help: str = "random seed (default: 0)",
    *,
    default: int | None = 0,
) -> None:
    """``--seed SEED``, an integer in [0, 2**32 - 1] (what every generator gnnkit seeds takes:
    numpy's legacy one, used by scikit-learn in ``citation bench``, is the narrowest)."""
    parser.add_argument("--seed", type=seed_value, default=default, help=help)


#: The seeds the CLI takes: numpy's legacy generator (scikit-learn's) takes no more.
MAX_SEED = 2**32 - 1


def seed_value(text: str) -> int:
    """An argparse type: a seed in [0, :data:`MAX_SEED`]."""
    return _integer(text, 0, f"an integer seed in [0, {MAX_SEED}]", maximum=MAX_SEED)


def add_threads(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    help: str = "torch CPU threads (default: torch's choice)",
    *,
    default: int | None = None,
) -> None:
    """``--threads N``, torch's CPU threads for the command (:func:`positive_int`)."""
    parser.add_argument("--threads", type=positive_int, default=default, metavar="N", help=help)


def write_json(path: str | Path, payload: Any) -> Path:
    """Write a result atomically as strict JSON; a bad path or a NaN is one clear error."""
    from gnnkit.utils.io import atomic_write_json

    return atomic_write_json(path, payload, option="--json")


#: Options naming files a command writes, checked before it starts (:func:`check_outputs`).
FILE_OPTIONS = ("json", "plot", "markdown")
#: Options naming folders a command writes into.
FOLDER_OPTIONS = ("checkpoint_dir",)


def check_outputs(args: argparse.Namespace) -> None:
    """Check every output path of a command before any work: ``--json``, ``--plot``,
    ``--markdown``, ``--checkpoint-dir``, and ``--out`` (a file or a folder, as the command's
    ``out_kind`` default says). An empty, unwritable or non-regular path is one clear error."""
    from gnnkit.train.checkpoint import check_result_output
    from gnnkit.utils.io import check_output_dir

    files = [name for name in FILE_OPTIONS if getattr(args, name, None) is not None]
    folders = [name for name in FOLDER_OPTIONS if getattr(args, name, None) is not None]
    kind = getattr(args, "out_kind", None)
    if getattr(args, "out", None) is not None and kind is not None:
        (files if kind == "file" else folders).append("out")
    for name in (*files, *folders):  # one spelling for the checks, the claims and the writes
        value = getattr(args, name)
        if isinstance(value, str):
            setattr(args, name, os.path.expanduser(value))
    resume = bool(getattr(args, "resume", False))
    continued = resume and _holds_checkpoints(args)  # an earlier run's results are its own
    overwrite = bool(getattr(args, "overwrite", False))
    written: dict[Path, str] = {}
    for name in files:
        option = "--" + name.replace("_", "-")
        target = check_result_output(
            getattr(args, name), option, overwrite=overwrite, resume=resume, continued=continued
        )
        assert target is not None
        resolved = target.resolve()
        if resolved in written:
            raise OutputError(
                f"{written[resolved]} and {option} name the same file {target}; give each "
                "output its own path"
            )
        written[resolved] = option
        if name == "plot":
            check_plot_format(target)
    for name in folders:
        check_output_dir(getattr(args, name), "--" + name.replace("_", "-"))


def _holds_checkpoints(args: argparse.Namespace) -> bool:
    """Whether the command's checkpoint folder (``--checkpoint-dir``, or a folder ``--out``)
    holds a checkpoint for ``--resume`` to continue: one of the command's own
    (``args.checkpoint_names(args)``, where the command names them), else any ``*.pt``."""
    folder = getattr(args, "checkpoint_dir", None)
    if folder is None and getattr(args, "out_kind", "file") != "file":
        folder = getattr(args, "out", None)
    if folder is None or not Path(folder).is_dir():
        return False
    names = getattr(args, "checkpoint_names", None)
    if names is None:
        return any(Path(folder).glob("*.pt"))
    return any(Path(folder, name).is_file() for name in names(args))


def check_plot_format(path: Path) -> None:
    """Refuse, before any work, a ``--plot`` whose suffix matplotlib cannot write."""
    from matplotlib.figure import Figure

    formats = Figure().canvas.get_supported_filetypes()
    suffix = path.suffix.lstrip(".").lower()
    if suffix not in formats:
        raise OutputError(
            f"--plot {path}: matplotlib cannot write {suffix or 'a file without a suffix'!r}; "
            f"use one of {', '.join(sorted(formats))} (e.g. plot.png)"
        )


def _importer(module: str):
    """``register(subparsers)`` of ``module``, imported when called."""

    def register(subparsers: argparse._SubParsersAction) -> None:
        importlib.import_module(module).register(subparsers)

    return register


class CommandParser(argparse.ArgumentParser):
    """The parser of ``gnnkit`` and of every command under it (argparse builds a subcommand's
    parser with its parent's class, and its subcommands with :class:`CommandSubParsers`).

    A long option must be spelt out, since an abbreviation is silently another option where
    two share a prefix (``seq bench --seed 3`` would be ``--seeds 3``, three runs). An error is
    one line, ``gnnkit: error: MESSAGE (see `gnnkit bench node --help`)``, and exit code 2.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self.register("action", "parsers", CommandSubParsers)

    def error(self, message: str) -> NoReturn:
        """Print ``message`` as one line naming this command's ``--help``; exit with 2."""
        message = " ".join(message.splitlines())
        self.exit(2, f"gnnkit: error: {message} (see `{self.prog} --help`)\n")

    def suggest(self, extras: Sequence[str]) -> str:
        """``"; did you mean --epochs?"`` for the unknown options in ``extras`` close to one of
        this command's long options, else ``""``."""
        names = [name[2:] for name in self._option_string_actions if name.startswith("--")]
        close = []
        for word in extras:  # names compared without their dashes, which every option shares
            if word.startswith("-"):
                close += difflib.get_close_matches(word.split("=")[0].lstrip("-"), names, n=1)
        close = [f"--{name}" for name in dict.fromkeys(close)]
        return f"; did you mean {' or '.join(close)}?" if close else ""


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser; a subcommand's own parser is built when the command is chosen."""
    parser = CommandParser(
        prog="gnnkit",
        description="gnnkit: graph-learning toolkit and benchmarks on PyTorch Geometric.",
    )
    parser.add_argument("--version", action="version", version=f"gnnkit {__version__}")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="store_true", help="show debug messages")
    verbosity.add_argument(
        "-q", "--quiet", action="store_true", help="show only warnings and errors"
    )
    subparsers = parser.add_subparsers(
        action=LazySubParsers, dest="command", metavar="COMMAND", required=True
    )
    for name, module, help_line in COMMANDS:
        subparsers.add_lazy(name, help_line, _importer(module))
    return parser


def _configure_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("gnnkit: %(message)s"))
    package_logger = logging.getLogger("gnnkit")
    package_logger.handlers[:] = [handler]
    package_logger.setLevel(level)
    package_logger.propagate = False


#: What torch's and numpy's allocators say when a tensor or an array does not fit: the CPU
#: allocator, CUDA's (``torch.cuda.OutOfMemoryError``), cuBLAS and cuDNN creating their
#: workspaces (``CUBLAS_STATUS_ALLOC_FAILED``), shared memory for the data-loader workers
#: (``unable to mmap ...: Cannot allocate memory``), C++'s ``std::bad_alloc`` and numpy.
_ALLOCATION_FAILED = (
    "can't allocate memory",
    "cannot allocate memory",
    "out of memory",
    "unable to allocate",
    "_status_alloc_failed",
    "std::bad_alloc",
)


def _out_of_memory(exc: BaseException) -> str:
    """The one-line message for ``exc`` if it is an allocation that failed, else ``""``."""
    text = (str(exc).strip().splitlines() or [""])[0]
    if not isinstance(exc, MemoryError) and not any(
        words in text.lower() for words in _ALLOCATION_FAILED
    ):
        return ""
    detail = f" ({text[:200]})" if text else ""
    return (
        f"out of memory{detail}; the sizes asked for do not fit this machine: use smaller "
        "ones (fewer nodes, shorter sequences, a smaller batch, width or --num)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 a failed check, 2 an error)."""
    try:
        args = build_parser().parse_args(argv)  # imports the chosen command's module
        _configure_logging(args.verbose, args.quiet)
        check_outputs(args)
        return int(args.func(args) or 0)
    except GnnkitError as exc:
        print(f"gnnkit: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # permissions, a read-only or full disk, a file in place of a folder
        from gnnkit.utils.io import describe_os_error

        print(f"gnnkit: error: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as exc:  # torch's allocators raise RuntimeErrors
        message = _out_of_memory(exc)
        if not message:
            raise
        print(f"gnnkit: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gnnkit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
