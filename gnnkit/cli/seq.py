"""``gnnkit seq``: recurrent classifiers on the synthetic memory tasks.

``gnnkit seq train`` trains one model, ``gnnkit seq bench`` sweeps models x sequence lengths x
seeds (mean +- std and training curves), ``gnnkit seq gradients`` measures how the gradient of
the last step's loss vanishes back in time (Bengio, Simard & Frasconi, IEEE TNN 1994), for a
vanilla RNN against the LSTM (Hochreiter & Schmidhuber, Neural Computation 1997).

The parser is built without importing :mod:`gnnkit.seq`, so ``gnnkit --help`` stays cheap:
the names and defaults below mirror the library's (``tests/test_seq_cli.py`` checks that they
agree), and each ``run_*`` function imports what it runs.
"""

from __future__ import annotations

import argparse
import logging
import struct
import time
from typing import Any

from gnnkit.cli import (
    add_command,
    add_outputs,
    add_seed,
    add_threads,
    nonnegative_int,
    positive_int,
    sequence_length,
    write_json,
)
from gnnkit.errors import InputError
from gnnkit.utils.table import format_table

logger = logging.getLogger(__name__)

#: :data:`gnnkit.seq.TASKS`.
TASK_NAMES = ("randomcomb", "palindrome")
#: :data:`gnnkit.seq.MODELS`.
MODEL_NAMES = ("rnn", "lstm", "lstm-gnnkit", "bilstm", "gru")
#: The models with per-time-step hidden states (all but the bidirectional one).
STATE_MODEL_NAMES = ("rnn", "lstm", "lstm-gnnkit", "gru")
#: The models with a forget gate (:class:`gnnkit.seq.LSTMClassifier` and its subclasses):
#: the only ones ``--forget-bias`` applies to.
LSTM_MODEL_NAMES = ("lstm", "lstm-gnnkit", "bilstm")
#: The largest ``--forget-bias``: the LSTM biases are float32 (``torch.finfo(torch.float32).max``).
MAX_FORGET_BIAS = 3.4028234663852886e38
#: :data:`gnnkit.seq.DEFAULT_HIDDEN_DIM` and :data:`gnnkit.seq.DEFAULT_FORGET_BIAS`.
DEFAULT_HIDDEN_DIM, DEFAULT_FORGET_BIAS = 256, 1.0
#: :class:`gnnkit.seq.TrainConfig`'s ``max_batches`` and ``confirm_samples``.
DEFAULT_MAX_BATCHES, DEFAULT_CONFIRM_SAMPLES = 2000, 16384
#: The benchmark script that sets a ``seq bench --json`` file beside the report's Table 1.
TABLE1_SCRIPT = "benchmarks/seq_table1.py"


def _training_options() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("training (defaults: gnnkit.seq.TrainConfig's)")
    group.add_argument(
        "--hidden-dim",
        type=positive_int,
        default=DEFAULT_HIDDEN_DIM,
        metavar="H",
        help=f"hidden size (default: {DEFAULT_HIDDEN_DIM})",
    )
    group.add_argument(
        "--max-batches",
        type=positive_int,
        default=DEFAULT_MAX_BATCHES,
        metavar="N",
        help=f"training budget in batches (default: {DEFAULT_MAX_BATCHES})",
    )
    group.add_argument(
        "--confirm-samples",
        type=nonnegative_int,
        default=DEFAULT_CONFIRM_SAMPLES,
        metavar="N",
        help="confirm each early stop on N fresh samples; 0 = the 3-batch rule alone "
        f"(default: {DEFAULT_CONFIRM_SAMPLES})",
    )
    group.add_argument(
        "--forget-bias",
        default=None,  # None: not given (DEFAULT_FORGET_BIAS), so a model without one refuses it
        metavar="B",
        help="initial forget-gate bias of the LSTMs (lstm, lstm-gnnkit, bilstm), or 'torch' "
        f"for PyTorch's initialisation (default: {DEFAULT_FORGET_BIAS:g})",
    )
    group.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    add_threads(
        group,
        "torch intra-op threads for this command (default: torch's choice); these models are "
        "small, and 1 thread is often fastest on a busy machine",
    )
    return parser


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(
        subparsers,
        "seq",
        "Sequence classifiers on the random-combinations and palindrome memory tasks: train one "
        "model, sweep models x lengths x seeds, or measure vanishing gradients.",
    )
    commands = parser.add_subparsers(dest="seq_command", metavar="SUBCOMMAND", required=True)
    training = _training_options()
    _add_train(commands, training)
    _add_bench(commands, training)
    _add_gradients(commands)


def _add_train(commands: argparse._SubParsersAction, training: argparse.ArgumentParser) -> None:
    train = commands.add_parser(
        "train",
        parents=[training],
        help="train one model on one task",
        description="Train one model with gnnkit.seq.fit's protocol and print its validation "
        "result.",
    )
    train.add_argument("--task", choices=TASK_NAMES, default="randomcomb")
    train.add_argument("--model", choices=MODEL_NAMES, default="lstm")
    train.add_argument("--seq-len", type=sequence_length, required=True, metavar="T")
    add_seed(train)
    train.add_argument(
        "--embed-dim",
        type=positive_int,
        default=None,
        metavar="D",
        help="embedding size (default: 2 x seq-len)",
    )
    add_outputs(train, json="also write the result as JSON")
    train.set_defaults(func=run_train)


def _add_bench(commands: argparse._SubParsersAction, training: argparse.ArgumentParser) -> None:
    bench = commands.add_parser(
        "bench",
        parents=[training],
        help="sweep models x lengths x seeds: mean +- std and training curves",
        description=(
            "Train LSTM and biLSTM (and a vanilla RNN for contrast) on random combinations "
            "for T = 5, 10, 15 over several seeds; print mean +- std per model and length. "
            f"{TABLE1_SCRIPT} sets the --json output beside the reference report's Table 1."
        ),
    )
    bench.add_argument("--seeds", type=positive_int, default=3, help="seeds per row (default: 3)")
    bench.add_argument(
        "--lengths",
        type=sequence_length,
        nargs="+",
        default=[5, 10, 15],
        metavar="T",
        help="sequence lengths (default: 5 10 15)",
    )
    bench.add_argument(
        "--models",
        nargs="+",
        choices=MODEL_NAMES,
        default=["lstm", "bilstm", "rnn"],
        metavar="MODEL",
        help=f"models to train, from {', '.join(MODEL_NAMES)} (default: lstm bilstm rnn)",
    )
    bench.add_argument("--task", choices=TASK_NAMES, default="randomcomb")
    add_outputs(
        bench,
        json="write runs, summary and environment",
        plot="write the loss/accuracy curves (.png)",
        markdown="write the table as Markdown (.md)",
    )
    bench.set_defaults(func=run_bench)


def _add_gradients(commands: argparse._SubParsersAction) -> None:
    grads = commands.add_parser(
        "gradients",
        help="vanishing gradients: ||dL/dh_t|| for RNN vs LSTM",
        description=(
            "Gradient norm of the last step's loss with respect to every hidden state, for "
            "freshly initialised models on one batch (Bengio, Simard & Frasconi 1994)."
        ),
    )
    grads.add_argument("--task", choices=TASK_NAMES, default="palindrome")
    grads.add_argument("--seq-len", type=sequence_length, default=30, metavar="T")
    grads.add_argument(
        "--models", nargs="+", choices=STATE_MODEL_NAMES, default=["rnn", "lstm"], metavar="MODEL"
    )
    add_seed(grads)
    grads.add_argument("--batch-size", type=positive_int, default=128)
    grads.add_argument("--hidden-dim", type=positive_int, default=DEFAULT_HIDDEN_DIM, metavar="H")
    grads.add_argument(
        "--forget-bias",
        nargs="+",
        default=None,  # None: not given (torch and DEFAULT_FORGET_BIAS)
        metavar="B",
        help="measure every LSTM model once per initial forget-gate bias B ('torch': "
        f"PyTorch's initialisation) (default: torch {DEFAULT_FORGET_BIAS:g})",
    )
    add_outputs(grads, json="write the norms as JSON", plot="write the plot (.png)")
    grads.set_defaults(func=run_gradients)


def _forget_bias(text: str | None) -> float | None:
    """``--forget-bias``: a number the float32 biases hold, or ``torch`` (PyTorch's
    initialisation); ``None`` (not given) is :data:`DEFAULT_FORGET_BIAS`."""
    if text is None:
        return DEFAULT_FORGET_BIAS
    if text.strip().lower() in ("torch", "none"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise InputError(
            f"--forget-bias must be a number or 'torch' (PyTorch's initialisation), got {text!r}"
        ) from None
    if not abs(value) <= MAX_FORGET_BIAS:  # NaN too
        raise InputError(
            f"--forget-bias must be a finite number that the LSTMs' float32 biases hold "
            f"(|B| <= {MAX_FORGET_BIAS:.4g}) or 'torch', got {text!r}"
        )
    return value


def _check_forget_bias_applies(given: object, models: list[str], option: str) -> None:
    """Refuse a ``--forget-bias`` the user gave when none of ``models`` has a forget gate."""
    if given is not None and not any(name in LSTM_MODEL_NAMES for name in models):
        raise InputError(
            f"--forget-bias sets the forget gate of the LSTM models "
            f"({', '.join(LSTM_MODEL_NAMES)}); {option} {' '.join(models)} "
            f"{'has' if len(models) == 1 else 'have'} none: drop --forget-bias"
        )


def _check_unique(option: str, values: list[Any]) -> None:
    """Refuse a value listed twice: it would be the same runs, counted twice."""
    for value in values:
        if values.count(value) > 1:
            raise InputError(f"{option} lists {value} twice: give each once")


def _float32(value: float) -> float:
    """``value`` as the float32 biases hold it."""
    return struct.unpack("f", struct.pack("f", value))[0]


def _bias_text(value: float | None) -> str:
    """``torch`` or the shortest text of ``value`` that names its float32 exactly: two biases
    with one text are one model, two models never share a text."""
    if value is None:
        return "torch"
    held = _float32(value)
    for digits in range(6, 10):  # 9 significant digits name every float32
        text = f"{held:.{digits}g}"
        if _float32(float(text)) == held:
            return text
    raise AssertionError(f"no text names the float32 {held!r}")  # pragma: no cover


def _forget_name(value: float | None) -> str:
    return "PyTorch init" if value is None else f"forget bias {_bias_text(value)}"


def _config(args: argparse.Namespace):
    import torch

    from gnnkit.seq import TrainConfig

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    return TrainConfig(max_batches=args.max_batches, confirm_samples=args.confirm_samples)


def _progress(args: argparse.Namespace, total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, disable=True if args.no_progress else None)


# ------------------------------------------------------------------------------------ train
def run_train(args: argparse.Namespace) -> int:
    from gnnkit.seq import run_experiment

    _check_forget_bias_applies(args.forget_bias, [args.model], "--model")
    forget_bias = _forget_bias(args.forget_bias)
    config = _config(args)
    with _progress(args, config.max_batches, f"{args.model} T={args.seq_len}") as bar:

        def update(batch: int, loss: float, accuracy: float) -> None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", acc=f"{accuracy:.3f}", refresh=False)

        result = run_experiment(
            args.task,
            args.model,
            args.seq_len,
            seed=args.seed,
            embed_dim=args.embed_dim,
            hidden_dim=args.hidden_dim,
            forget_bias=forget_bias,
            config=config,
            callback=update,
        )
    if result.converged:
        status = f"converged after {result.batches_to_converge} batches"
        if result.report_rule_batch != result.batches_to_converge:
            status += f" (the 3-batch rule first fired at batch {result.report_rule_batch})"
    else:
        status = f"did not converge in {result.batches} batches"
    print(f"{args.model} on {args.task} (T={args.seq_len}, seed {args.seed}): {status}")
    print(
        f"validation ({config.val_samples:,} samples): accuracy {result.val_acc:.4f}, "
        f"loss {result.val_loss:.4f}   [{result.seconds:.1f} s]"
    )
    if args.json:
        write_json(args.json, _train_record(args, result))
    return 0


def _train_record(args: argparse.Namespace, result: Any) -> dict[str, Any]:
    """The ``seq train --json`` payload."""
    return {
        "task": args.task,
        "model": args.model,
        "seq_len": args.seq_len,
        "seed": args.seed,
        "converged": result.converged,
        "batches_to_converge": result.batches_to_converge,
        "val_acc": result.val_acc,
        "val_loss": result.val_loss,
        "report_rule_batch": result.report_rule_batch,
        "batches": result.batches,
        "embed_dim": args.embed_dim or 2 * args.seq_len,
        "hidden_dim": args.hidden_dim,
        "forget_bias": _forget_bias(args.forget_bias),
        "seconds": result.seconds,
    }


# ------------------------------------------------------------------------------------ bench
def run_bench(args: argparse.Namespace) -> int:
    from gnnkit.seq.sweep import (
        markdown_summary,
        plot_sweep,
        run_sweep,
        summarize,
        summary_cells,
    )
    from gnnkit.utils.env import environment

    _check_unique("--models", args.models)
    _check_unique("--lengths", args.lengths)
    _check_forget_bias_applies(args.forget_bias, args.models, "--models")
    config = _config(args)
    sweep = {
        key: getattr(args, key) for key in ("task", "seeds", "lengths", "models", "hidden_dim")
    }
    sweep["forget_bias"] = _forget_bias(args.forget_bias)
    start = time.perf_counter()
    total = len(args.models) * len(args.lengths) * args.seeds
    with _progress(args, total, "runs") as bar:
        runs = run_sweep(**sweep, config=config, run_callback=lambda *_: bar.update(1))
    seconds = time.perf_counter() - start
    rows = summarize(runs)
    print(
        f"{args.task}: mean ± std over {args.seeds} seed{'s' if args.seeds != 1 else ''}; batches = batches until convergence "
        f"(confirmed on {config.confirm_samples:,} fresh samples), 3-batch rule = that rule "
        f"alone; validation on {config.val_samples:,} samples"
    )
    print(format_table(*summary_cells(rows)))
    print(f"[{seconds:.0f} s]")
    print(f"beside the reference report's Table 1: python {TABLE1_SCRIPT} BENCH.json (--json)")
    if args.plot:
        plot_sweep(runs, args.plot)
    payload = {
        "command": _bench_command(args),
        **sweep,
        "embed_dim": "2 x seq_len",
        "config": vars(config),
        "wall_seconds": seconds,
        "environment": environment("cpu"),
        "summary": rows,
        "runs": runs,
    }
    if args.markdown:
        _write_text(args.markdown, markdown_summary(payload))
    if args.json:
        write_json(args.json, payload)
    return 0


def _write_text(path: str, text: str) -> None:
    from gnnkit.utils.io import atomic_write_text

    atomic_write_text(path, text, option="--markdown")


def _bench_command(args: argparse.Namespace) -> str:
    """The command line that reproduces this bench run."""
    parts = [
        "gnnkit seq bench",
        f"--seeds {args.seeds}",
        f"--lengths {' '.join(map(str, args.lengths))}",
        f"--models {' '.join(args.models)}",
        f"--task {args.task}",
        f"--hidden-dim {args.hidden_dim}",
        f"--max-batches {args.max_batches}",
        f"--confirm-samples {args.confirm_samples}",
    ]
    if any(name in LSTM_MODEL_NAMES for name in args.models):
        parts.insert(6, f"--forget-bias {args.forget_bias or DEFAULT_FORGET_BIAS}")
    if args.threads is not None:
        parts.append(f"--threads {args.threads}")
    return " ".join(parts)


# -------------------------------------------------------------------------------- gradients
def _gradient_variants(args: argparse.Namespace) -> list[tuple[str, str, float | None]]:
    """``(label, model, forget_bias)`` per measured model: LSTMs once per ``--forget-bias``."""
    from gnnkit.seq import MODELS, LSTMClassifier

    _check_unique("--models", args.models)
    _check_forget_bias_applies(args.forget_bias, args.models, "--models")
    biases = [_forget_bias(text) for text in _gradient_biases(args)]
    _check_unique("--forget-bias", [_bias_text(b) for b in biases])
    variants = []
    for name in args.models:
        if issubclass(MODELS[name][0], LSTMClassifier):
            variants += [(f"{name} ({_forget_name(b)})", name, b) for b in biases]
        else:
            variants.append((name, name, None))
    return variants


def _gradient_biases(args: argparse.Namespace) -> list[str]:
    """``seq gradients --forget-bias``, or its default: PyTorch's initialisation and 1."""
    return args.forget_bias or ["torch", str(DEFAULT_FORGET_BIAS)]


def run_gradients(args: argparse.Namespace) -> int:
    import torch

    from gnnkit.seq import build_model, gradient_norms, make_task
    from gnnkit.seq.sweep import plot_gradient_norms

    task = make_task(args.task, args.seq_len)
    batch = task.validation_set(args.batch_size, seed=args.seed)
    norms = {}
    for label, name, forget_bias in _gradient_variants(args):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(args.seed)
            model = build_model(name, task, hidden_dim=args.hidden_dim, forget_bias=forget_bias)
        norms[label] = gradient_norms(model, batch)
    steps = task.input_len
    rows = [
        [t + 1, *(f"{float(values[t]):.3e}" for values in norms.values())] for t in range(steps)
    ]
    print(
        f"mean ||dL/dh_t|| on {args.task} (T={args.seq_len}, {args.batch_size} samples, "
        f"freshly initialised, seed {args.seed}); L is the loss at the last step t={steps}"
    )
    print(format_table(["t", *norms], rows, "r" * (1 + len(norms))))
    for name, values in norms.items():
        first, last = float(values[0]), float(values[-1])
        ratio = first / last if last else float("nan")
        print(f"{name}: ||dL/dh_1|| / ||dL/dh_{steps}|| = {ratio:.2e}")
    if args.plot:
        title = f"{args.task}, T = {args.seq_len}: gradient of the last loss per hidden state"
        plot_gradient_norms(norms, args.plot, title=title)
    if args.json:
        write_json(
            args.json,
            {
                "task": args.task,
                "seq_len": args.seq_len,
                "seed": args.seed,
                "batch_size": args.batch_size,
                "hidden_dim": args.hidden_dim,
                "forget_bias": [_forget_bias(text) for text in _gradient_biases(args)],
                "norms": {name: [float(v) for v in values] for name, values in norms.items()},
            },
        )
    return 0
