"""``gnnkit text sample`` and ``gnnkit text table``: what reads a trained character-level LSTM.

The parsers of the two commands that load a run's model rather than train one; ``gnnkit text``
(:mod:`gnnkit.cli.text`) registers them beside ``train``. As there, the parsers are built
without importing :mod:`gnnkit.seq.charlm`: the names below mirror the library's
(``tests/test_text_cli.py`` checks that they agree), and each ``run_*`` function imports what
it runs.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from gnnkit.cli import add_seed, bounded_int, positive_int
from gnnkit.errors import InputError

logger = logging.getLogger(__name__)

#: :data:`gnnkit.seq.charlm.STRATEGIES`.
STRATEGY_NAMES = ("greedy", "temperature", "top-k")
#: :data:`gnnkit.seq.charlm.training.CHECKPOINT_NAME`: a run folder's model.
CHECKPOINT_NAME = "checkpoint.pt"
#: ``text table``'s prompts and temperatures unless --prompt / --temperature say otherwise.
DEFAULT_PROMPTS = ("I would prefer not to.", "for i in range", "Do Re Mi")
DEFAULT_TEMPERATURES = (0.5, 1.0, 2.0)
#: The benchmark script that writes the reference report's Tables 2 and 3.
TABLES_SCRIPT = "benchmarks/charlm.py --tables-only"


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _table_temperature(text: str) -> float:
    """argparse type of ``text table --temperature``: T > 0 (its greedy rows are the T -> 0
    limit, so there is no strategy to switch to)."""
    value = _float(text)
    if not 0 < value < float("inf"):  # NaN fails too
        raise argparse.ArgumentTypeError(
            f"expected a finite temperature > 0, got {text!r}; the table's greedy rows "
            "(--samples) already show the T -> 0 limit"
        )
    return value


#: The longest sample ``text sample --length`` writes (ten million characters, hours of
#: generation on a CPU); beyond it the request is a typo rather than a plan.
MAX_SAMPLE_LENGTH = 10_000_000


def add_sample(commands: argparse._SubParsersAction) -> None:
    """Add ``text sample`` to the ``gnnkit text`` commands."""
    sample = commands.add_parser(
        "sample",
        help="continue a prompt (prints only the text)",
        description=(
            "Continue a prompt with a trained model and print the text (prompt included unless "
            "--no-prompt). Temperature T divides the logits: T -> 0 is greedy."
        ),
    )
    sample.add_argument(
        "--checkpoint",
        required=True,
        metavar="PATH",
        help="a run folder (its checkpoint.pt), a training checkpoint or a model snapshot",
    )
    sample.add_argument("--prompt", required=True, help="the text to continue (non-empty)")
    sample.add_argument(
        "--length",
        type=bounded_int(0, MAX_SAMPLE_LENGTH, "a number of characters"),
        default=100,
        help=f"new characters, at most {MAX_SAMPLE_LENGTH:,} (default: 100)",
    )
    sample.add_argument(
        "--strategy",
        choices=STRATEGY_NAMES,
        default=None,
        help="greedy, temperature or top-k (default: top-k with --k, temperature with "
        "--temperature, else greedy)",
    )
    sample.add_argument(
        "--temperature", type=_float, default=None, help="T > 0 for sampling (default: 1)"
    )
    sample.add_argument("--k", type=positive_int, help="candidates kept by top-k (>= 1)")
    add_seed(sample, "seed of the sampler", default=None)
    sample.add_argument(
        "--num", type=positive_int, default=1, help="independent samples, batched (default: 1)"
    )
    sample.add_argument(
        "--unknown",
        choices=("error", "skip"),
        default="error",
        help="prompt characters outside the vocabulary: refuse (default) or skip them",
    )
    sample.add_argument("--no-prompt", action="store_true", help="print only the new characters")
    sample.set_defaults(func=run_sample)


def add_table(commands: argparse._SubParsersAction) -> None:
    """Add ``text table`` to the ``gnnkit text`` commands."""
    table = commands.add_parser(
        "table",
        help="sample tables (Markdown) for one or more runs",
        description=(
            "Greedy samples at every snapshot of a run, samples at temperatures T (default: "
            "0.5, 1, 2) from its last model and greedy completions of prompts, one column per "
            f"run. {TABLES_SCRIPT} writes the reference report's Tables 2 and 3."
        ),
    )
    table.add_argument(
        "--checkpoint",
        required=True,
        action="append",
        metavar="PATH",
        help="a run folder, training checkpoint or model snapshot (repeat for more columns)",
    )
    table.add_argument("--out", metavar="FILE", help="write the Markdown here (default: stdout)")
    table.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    table.set_defaults(out_kind="file")
    add_seed(table, "seed (default: 0)")
    table.add_argument(
        "--samples", type=positive_int, default=5, help="greedy samples per checkpoint"
    )
    table.add_argument(
        "--prompt",
        action="append",
        metavar="TEXT",
        help="a prompt to complete (repeat for more rows; default: "
        + ", ".join(repr(p) for p in DEFAULT_PROMPTS)
        + ")",
    )
    table.add_argument(
        "--temperature",
        action="append",
        type=_table_temperature,
        metavar="T",
        help="a sampling temperature (repeat for more rows; default: 0.5 1 2)",
    )
    table.set_defaults(func=run_table)


def run_sample(args: argparse.Namespace) -> int:
    from gnnkit.seq.charlm import generate_batch, load_model

    strategy = args.strategy
    if strategy is None:
        strategy = (
            "top-k"
            if args.k is not None
            else "temperature"
            if args.temperature is not None
            else "greedy"
        )
    if strategy == "greedy" and args.temperature is not None:
        raise InputError(
            "--temperature has no effect with --strategy greedy; drop it or use "
            "--strategy temperature"
        )
    temperature = 1.0 if args.temperature is None else args.temperature
    if not args.checkpoint.strip():
        raise InputError("--checkpoint is empty; give a run folder or a checkpoint file")
    path = Path(args.checkpoint).expanduser()
    model = load_model(path / CHECKPOINT_NAME if path.is_dir() else path)
    texts = generate_batch(
        model,
        [args.prompt] * args.num,
        args.length,
        strategy=strategy,
        temperature=temperature,
        k=args.k,
        seed=args.seed,
        unknown=args.unknown,
    )
    prompt = "" if args.no_prompt else args.prompt
    sys.stdout.write("\n\n".join(prompt + text for text in texts) + "\n")
    return 0


def run_table(args: argparse.Namespace) -> int:
    from gnnkit.seq.charlm import load_run, sample_table
    from gnnkit.utils.io import atomic_write_text

    runs = [load_run(path) for path in args.checkpoint]
    markdown = sample_table(
        runs,
        prompts=args.prompt or DEFAULT_PROMPTS,
        temperatures=args.temperature or DEFAULT_TEMPERATURES,
        greedy_samples=args.samples,
        seed=args.seed,
    )
    if args.out:
        atomic_write_text(args.out, markdown, option="--out")
        logger.info("wrote %s", args.out)
    else:
        sys.stdout.write(markdown)
    logger.info("the reference report's Tables 2 and 3 (its tau = 1/T): python %s", TABLES_SCRIPT)
    return 0
