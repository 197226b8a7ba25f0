"""``gnnkit text``: train a character-level LSTM, sample from it, and tabulate its samples.

The generator of Graves (*Generating Sequences With Recurrent Neural Networks*,
arXiv:1308.0850) and Karpathy's char-rnn, on :mod:`gnnkit.seq.charlm`. The parser is built
without importing it, so ``gnnkit --help`` stays cheap: the names below mirror the library's
(``tests/test_text_cli.py`` checks that they agree), and each ``run_*`` function imports what
it runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from gnnkit.cli import (
    add_command,
    add_seed,
    add_threads,
    data_kwargs,
    data_options,
    nonnegative_int,
    positive_int,
)
from gnnkit.cli.text_sample import CHECKPOINT_NAME, add_sample, add_table
from gnnkit.errors import InputError
from gnnkit.utils.table import format_table

logger = logging.getLogger(__name__)

#: :data:`gnnkit.seq.charlm.PRESETS`.
PRESET_NAMES = ("cpu", "paper")
#: What a run writes into ``--out`` (its checkpoint, the best one, the snapshots): an earlier
#: run's are refused, kept (``--resume``) or deleted (``--overwrite``), never mixed with it.
RUN_CHECKPOINTS = (CHECKPOINT_NAME, "best.pt", "step_*.pt")
#: The other files ``text train`` writes into ``--out``: an earlier run's are refused like its
#: checkpoints (unless --overwrite, or --resume, which continues that run).
RUN_OUTPUTS = ("history.json", "history.png")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(
        subparsers,
        "text",
        "A character-level generative LSTM (Graves, arXiv:1308.0850): train it on Bartleby, the "
        "Python tutorial or any UTF-8 file, then sample or complete prompts.",
    )
    commands = parser.add_subparsers(dest="text_command", metavar="COMMAND", required=True)
    _add_train(commands)
    add_sample(commands)
    add_table(commands)


def _add_train(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser(
        "train",
        parents=[data_options()],
        help="train a model and write checkpoints, history and a plot to --out",
        description=(
            "Train a CharLSTM with a preset's schedule. --out receives checkpoint.pt "
            "(resumable), best.pt and step_NNNNNN.pt snapshots, history.json and history.png."
        ),
    )
    train.add_argument(
        "--corpus",
        required=True,
        help="bartleby, pydoc-tutorial (registered corpora) or the path of a UTF-8 text file",
    )
    train.add_argument(
        "--preset",
        choices=PRESET_NAMES,
        default=None,
        help="cpu: 2x256 LSTM, 1,200 batches, about 12 minutes on 2 cores; paper: the "
        "reference 2x1024 set-up (use a GPU) (default: cpu, or the checkpoint's on --resume)",
    )
    train.add_argument("--out", required=True, metavar="DIR", help="output folder")
    train.add_argument(
        "--steps", type=positive_int, help="total training batches (default: the preset's)"
    )
    train.add_argument(
        "--lr", type=float, help="Adam's learning rate (default: the preset's; new runs only)"
    )
    train.add_argument(
        "--weight-decay",
        type=float,
        help="Adam's L2 penalty (default: the preset's, 0 for both; new runs only). The "
        "reference set-up's 0.01 collapses the paper model to character frequencies; see the "
        "README",
    )
    train.add_argument("--resume", action="store_true", help="continue from DIR/checkpoint.pt")
    train.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh in a DIR that holds a run, deleting its checkpoints and snapshots",
    )
    train.set_defaults(out_kind="dir")
    add_seed(train)
    train.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:1... (default: cuda when available)"
    )
    train.add_argument(
        "--gutenberg",
        choices=("strip", "keep"),
        default="strip",
        help="strip or keep a Project Gutenberg licence header/footer (default: strip)",
    )
    train.add_argument(
        "--eval-every", type=nonnegative_int, help="batches between evaluations (0: at the end)"
    )
    train.add_argument(
        "--sample-every",
        type=nonnegative_int,
        help="batches between logged greedy samples (0: none)",
    )
    add_threads(train)
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(func=run_train)


# ------------------------------------------------------------------------------------ train
def _device(name: str) -> Any:
    import torch

    from gnnkit.utils.checks import check_device

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return check_device("--device", name)


class _Progress:
    """tqdm bar and Ctrl-C flag for :meth:`Trainer.run`."""

    def __init__(self, start: int, total: int, enabled: bool) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(
            # disable=None: tqdm draws only on a terminal, never into a piped log
            total=total,
            initial=start,
            unit="batch",
            disable=None if enabled else True,
            dynamic_ncols=True,
        )
        self.stop = False

    def __call__(self, step: int, metrics: dict[str, float]) -> bool:
        self.bar.update(1)
        if step % 10 == 0:
            self.bar.set_postfix(loss=f"{metrics['loss']:.3f}", acc=f"{metrics['acc']:.3f}")
        return self.stop

    def interrupt(self, signum: int, frame: Any) -> None:
        if self.stop:  # second Ctrl-C: give up at once
            raise KeyboardInterrupt
        self.stop = True
        logger.warning("interrupted: finishing this batch and writing a checkpoint")


def _resumed_settings(args: argparse.Namespace, checkpoint: Path) -> dict[str, Any]:
    """The checkpoint's preset, configs and vocabulary, after checking the flags against it."""
    from gnnkit.seq.charlm import CharLSTMConfig, TrainConfig
    from gnnkit.seq.charlm.training import training_state

    if not os.path.lexists(checkpoint):
        raise InputError(f"--resume: {checkpoint} does not exist; drop --resume to start")
    state = training_state(checkpoint)
    stored_preset = state.get("preset")
    if args.preset is not None and stored_preset not in (None, args.preset):
        raise InputError(
            f"--preset {args.preset}: {checkpoint} was trained with preset {stored_preset}"
        )
    if args.lr is not None or args.weight_decay is not None:
        raise InputError(
            "--lr and --weight-decay apply to new runs only: a resumed run keeps its "
            "optimizer's settings; start a new run with another --out instead"
        )
    return {
        "preset": stored_preset or args.preset,
        "model": CharLSTMConfig.from_dict(state["model_config"]),
        "train": TrainConfig.from_dict(state.get("train_config") or {}),
        "vocabulary": state["vocabulary"],
        "step": state["step"],
    }


def _claim_outputs(out: Path, *, replace: bool) -> None:
    """Check, before any work, the history files the run will write into ``out``: each must be
    writable, a regular file if it exists, and new unless ``replace``."""
    from gnnkit.errors import OutputError
    from gnnkit.utils.io import check_new_output, not_a_file

    for name in RUN_OUTPUTS:  # what no flag makes writable first, then what --overwrite does
        path = out / name
        problem = not_a_file(path) if os.path.lexists(path) else ""
        if problem:
            raise OutputError(
                f"--out {path} {problem}, where the run writes its {name}; move it away or "
                "choose another --out"
            )
    for name in RUN_OUTPUTS:
        check_new_output(out / name, "--out", replace=replace)


def _settings(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Preset name, model and training configs (flags applied) and, on --resume, the
    checkpoint's vocabulary and step."""
    from gnnkit.seq.charlm import get_preset
    from gnnkit.train.checkpoint import claim_checkpoint_dir

    checkpoint = out / CHECKPOINT_NAME
    old = claim_checkpoint_dir(out, RUN_CHECKPOINTS, resume=args.resume, overwrite=args.overwrite)
    _claim_outputs(out, replace=args.overwrite or args.resume)
    if args.resume:
        settings = _resumed_settings(args, checkpoint)
    else:
        preset = get_preset(args.preset or "cpu")
        settings = {"preset": preset.name, "model": preset.model, "train": preset.train}
    flags = ("steps", "lr", "weight_decay", "eval_every", "sample_every")
    changes = {k: getattr(args, k) for k in flags if getattr(args, k) is not None}
    settings["train"] = settings["train"].replace(**changes)
    if args.resume and settings["step"] >= settings["train"].steps:
        raise InputError(
            f"--resume: {checkpoint} is already at batch {settings['step']} of "
            f"{settings['train'].steps}; pass a larger --steps to train further"
        )
    settings["replaced"] = old  # --overwrite: deleted once the run is ready to start
    return settings


def _dataset(args: argparse.Namespace, settings: dict[str, Any]) -> Any:
    """The corpus as a :class:`TextDataset`, in the checkpoint's vocabulary on --resume."""
    from gnnkit.seq.charlm import TextDataset, Vocabulary, load_corpus

    text, name = load_corpus(args.corpus, gutenberg=args.gutenberg, **data_kwargs(args))
    vocabulary = None
    if "vocabulary" in settings:
        vocabulary = Vocabulary(settings["vocabulary"])
        unknown = vocabulary.unknown(text)
        if unknown:
            raise InputError(
                f"--resume: corpus {name} has {len(unknown)} character(s) that the checkpoint's "
                f"vocabulary lacks ({''.join(unknown[:20])!r}); it was trained on another text"
            )
    config = settings["train"]
    return TextDataset(
        text, config.seq_length, vocabulary=vocabulary, val_fraction=config.val_fraction, name=name
    )


def _train(trainer: Any, total: int, progress: bool) -> tuple[Any, bool]:
    """Run the trainer with a progress bar; Ctrl-C finishes the batch and checkpoints.
    Returns the history and whether the run was interrupted."""
    bar = _Progress(trainer.step, total, progress)
    previous = signal.signal(signal.SIGINT, bar.interrupt)
    try:
        history = trainer.run(on_step=bar)
    finally:
        signal.signal(signal.SIGINT, previous)
        bar.bar.close()
    return history, bar.stop


def run_train(args: argparse.Namespace) -> int:
    """``text train``, holding the lock of ``--out`` so two runs never share a folder."""
    from gnnkit.utils.locks import folder_lock

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a folder")
    with folder_lock(out, option="--out"):
        return _run_train(args, out)


def _run_train(args: argparse.Namespace, out: Path) -> int:
    import torch

    from gnnkit.seq.charlm import CharLSTM, Trainer

    settings = _settings(args, out)
    device = _device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    dataset = _dataset(args, settings)
    torch.manual_seed(args.seed)
    model = CharLSTM(dataset.vocabulary, settings["model"])
    trainer = Trainer(
        model,
        dataset,
        settings["train"],
        out_dir=out,
        seed=args.seed,
        device=device,
        preset=settings["preset"],
    )
    if args.resume:
        trainer.resume(out / CHECKPOINT_NAME)
    params = sum(p.numel() for p in model.parameters())
    logger.info(
        "training %s on %s (%s characters, %d distinct, %s for training) on %s: %s parameters, "
        "%d batches",
        settings["preset"],
        dataset.name,
        f"{dataset.num_chars:,}",
        len(dataset.vocabulary),
        f"{dataset.train_ids.numel():,}",
        device,
        f"{params:,}",
        settings["train"].steps,
    )
    for path in settings["replaced"]:  # every check passed: the earlier run's files go
        path.unlink(missing_ok=True)
    history, interrupted = _train(trainer, settings["train"].steps, not args.no_progress)
    _write_outputs(out, trainer, history, settings, params)
    if interrupted:
        print(f"interrupted at batch {trainer.step}; continue with --resume", file=sys.stderr)
        return 130
    return 0


def _write_outputs(
    out: Path, trainer: Any, history: Any, settings: dict[str, Any], params: int
) -> None:
    """history.json, history.png and the summary table."""
    from gnnkit.seq.charlm import plot_history
    from gnnkit.utils.io import atomic_write_json

    dataset, summary = trainer.dataset, history.summary()
    record = {
        "corpus": dataset.info(),
        "preset": settings["preset"],
        "seed": trainer.seed,
        "device": str(trainer.device),
        "parameters": params,
        "vocabulary_size": len(dataset.vocabulary),
        "model_config": settings["model"].to_dict(),
        "train_config": settings["train"].to_dict(),
        "summary": summary,
        "history": history.to_dict(),
    }
    atomic_write_json(out / "history.json", record, option="--out")
    title = f"{dataset.name}, preset {settings['preset']}"
    plot_history(history, out / "history.png", title=title)
    labels = (
        ("train_acc_last", "training accuracy (last 100 batches)", "percent"),
        ("train_eval_acc", "training accuracy (eval mode)", "percent"),
        ("val_acc", "validation accuracy", "percent"),
        ("val_loss", "validation loss", "loss"),
    )
    rows = [("batches", f"{trainer.step:,}")]
    for key, label, kind in labels:
        value = summary.get(key)
        if value is not None:
            rows.append((label, f"{100 * value:.2f} %" if kind == "percent" else f"{value:.3f}"))
    rows += [
        ("training time", f"{history.train_seconds:.0f} s"),
        ("checkpoint", str(out / CHECKPOINT_NAME)),
    ]
    print(format_table(["", dataset.name], rows, "lr"))
