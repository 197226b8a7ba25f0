"""``gnnkit text``: train a character LSTM, sample from it, and print the report's tables."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from typing import Any

import torch

from gnnkit.cli.common import data_kwargs, data_options, format_table, positive_int, write_json
from gnnkit.errors import InputError
from gnnkit.seq.charlm.checkpoint import load_checkpoint, load_model
from gnnkit.seq.charlm.config import PRESETS, CharLSTMConfig, TrainConfig, get_preset
from gnnkit.seq.charlm.corpus import TextDataset, load_corpus
from gnnkit.seq.charlm.generate import STRATEGIES, generate_batch
from gnnkit.seq.charlm.model import CharLSTM
from gnnkit.seq.charlm.samples import load_run, sample_table
from gnnkit.seq.charlm.training import CHECKPOINT_NAME, Trainer, plot_history
from gnnkit.utils.io import atomic_write_text

logger = logging.getLogger(__name__)


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "text",
        help="character-level LSTM: train, sample, tables",
        description=(
            "A character-level generative LSTM (the reference report's section 2): train it on "
            "Bartleby, the Python tutorial or any UTF-8 file, then sample or complete prompts."
        ),
    )
    commands = parser.add_subparsers(dest="text_command", metavar="COMMAND", required=True)

    train = commands.add_parser(
        "train",
        parents=[data_options()],
        help="train a model and write checkpoints, history and a plot to --out",
        description=(
            "Train a CharLSTM with a preset's schedule. --out receives checkpoint.pt "
            "(resumable), step_NNNNNN.pt snapshots, history.json and history.png."
        ),
    )
    train.add_argument(
        "--corpus",
        required=True,
        help="bartleby, pydoc-tutorial (registered corpora) or the path of a UTF-8 text file",
    )
    train.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=None,
        help="cpu: 2x256 LSTM, a few minutes on 2 cores; paper: the report's 2x1024 set-up "
        "(use a GPU) (default: cpu, or the checkpoint's on --resume)",
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
        "report's 0.01 collapses the paper model to character frequencies; see the README",
    )
    train.add_argument("--resume", action="store_true", help="continue from DIR/checkpoint.pt")
    train.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
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
        "--eval-every", type=_nonnegative_int, help="batches between evaluations (0: at the end)"
    )
    train.add_argument(
        "--sample-every",
        type=_nonnegative_int,
        help="batches between logged greedy samples (0: none)",
    )
    train.add_argument(
        "--threads", type=positive_int, help="CPU threads for torch (default: torch's choice)"
    )
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(func=run_train)

    sample = commands.add_parser(
        "sample",
        help="continue a prompt (prints only the text)",
        description=(
            "Continue a prompt with a trained model and print the text (prompt included unless "
            "--no-prompt). Temperature T divides the logits: T -> 0 is greedy, the report's tau "
            "is 1/T."
        ),
    )
    sample.add_argument(
        "--checkpoint", required=True, metavar="PATH", help="a checkpoint file or run folder"
    )
    sample.add_argument("--prompt", required=True, help="the text to continue (non-empty)")
    sample.add_argument(
        "--length", type=_nonnegative_int, default=100, help="new characters (default: 100)"
    )
    sample.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default=None,
        help="greedy, temperature or top-k (default: top-k with --k, temperature with "
        "--temperature, else greedy)",
    )
    sample.add_argument(
        "--temperature", type=_float, default=None, help="T > 0 for sampling (default: 1)"
    )
    sample.add_argument("--k", type=int, default=None, help="candidates kept by top-k (>= 1)")
    sample.add_argument("--seed", type=int, default=None, help="seed of the sampler")
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

    table = commands.add_parser(
        "table",
        help="the report's Tables 2 and 3 (Markdown) for one or more runs",
        description=(
            "Greedy samples at every checkpoint of a run, temperature samples (T = 0.5, 1, 2) "
            "and completions of the report's prompts, one column per run."
        ),
    )
    table.add_argument(
        "--checkpoint",
        required=True,
        action="append",
        metavar="PATH",
        help="a run folder or checkpoint file (repeat for more columns)",
    )
    table.add_argument("--out", metavar="FILE", help="write the Markdown here (default: stdout)")
    table.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    table.add_argument(
        "--samples", type=positive_int, default=5, help="greedy samples per checkpoint"
    )
    table.set_defaults(func=run_table)


# ------------------------------------------------------------------------------------ train
def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"--device {name!r} is not a device name (cpu, cuda, cuda:1)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {name}: CUDA is not available on this machine")
    return device


class _Progress:
    """tqdm bar and Ctrl-C flag for :meth:`Trainer.run`."""

    def __init__(self, start: int, total: int, enabled: bool) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=total, initial=start, unit="batch", disable=not enabled, dynamic_ncols=True
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


def run_train(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a folder")
    checkpoint = out / CHECKPOINT_NAME
    payload = None
    if args.resume:
        if not checkpoint.is_file():
            raise InputError(f"--resume: {checkpoint} does not exist; drop --resume to start")
        payload = load_checkpoint(checkpoint)
        stored_preset = payload.get("preset")
        if args.preset is not None and stored_preset not in (None, args.preset):
            raise InputError(
                f"--preset {args.preset}: {checkpoint} was trained with preset {stored_preset}"
            )
        if args.lr is not None or args.weight_decay is not None:
            raise InputError(
                "--lr and --weight-decay apply to new runs only: a resumed run keeps its "
                "optimizer's settings; start a new run with another --out instead"
            )
        preset_name = stored_preset or args.preset
        model_config = CharLSTMConfig.from_dict(payload["model_config"])
        train_config = TrainConfig.from_dict(payload.get("train_config") or {})
    else:
        if checkpoint.is_file():
            raise InputError(
                f"{out} already holds a run ({CHECKPOINT_NAME}); pass --resume to continue it "
                "or choose another --out"
            )
        preset = get_preset(args.preset or "cpu")
        preset_name = preset.name
        model_config, train_config = preset.model, preset.train
    changes = {
        key: value
        for key, value in (
            ("steps", args.steps),
            ("lr", args.lr),
            ("weight_decay", args.weight_decay),
            ("eval_every", args.eval_every),
            ("sample_every", args.sample_every),
        )
        if value is not None
    }
    train_config = train_config.replace(**changes)
    device = _device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)

    text, name = load_corpus(args.corpus, gutenberg=args.gutenberg, **data_kwargs(args))
    if payload is not None:
        from gnnkit.seq.charlm.corpus import Vocabulary

        vocabulary = Vocabulary(payload["vocabulary"])
        unknown = vocabulary.unknown(text)
        if unknown:
            raise InputError(
                f"--resume: corpus {name} has {len(unknown)} character(s) that the checkpoint's "
                f"vocabulary lacks ({''.join(unknown[:20])!r}); it was trained on another text"
            )
    else:
        vocabulary = None
    dataset = TextDataset(
        text,
        train_config.seq_length,
        vocabulary=vocabulary,
        val_fraction=train_config.val_fraction,
        name=name,
    )
    torch.manual_seed(args.seed)
    model = CharLSTM(dataset.vocabulary, model_config)
    trainer = Trainer(
        model,
        dataset,
        train_config,
        out_dir=out,
        seed=args.seed,
        device=device,
        preset=preset_name,
    )
    if payload is not None:
        trainer.resume(checkpoint)
        if trainer.step >= train_config.steps:
            raise InputError(
                f"--resume: {checkpoint} is already at batch {trainer.step} of "
                f"{train_config.steps}; pass a larger --steps to train further"
            )
    params = sum(p.numel() for p in model.parameters())
    logger.info(
        "training %s on %s (%s characters, %d distinct, %s for training) on %s: %s parameters, "
        "%d batches",
        preset_name,
        name,
        f"{dataset.num_chars:,}",
        len(dataset.vocabulary),
        f"{dataset.train_ids.numel():,}",
        device,
        f"{params:,}",
        train_config.steps,
    )
    progress = _Progress(trainer.step, train_config.steps, not args.no_progress)
    previous = signal.signal(signal.SIGINT, progress.interrupt)
    try:
        history = trainer.run(on_step=progress)
    finally:
        signal.signal(signal.SIGINT, previous)
        progress.bar.close()
    summary = history.summary()
    record = {
        "corpus": dataset.info(),
        "preset": preset_name,
        "seed": args.seed,
        "device": str(device),
        "parameters": params,
        "vocabulary_size": len(dataset.vocabulary),
        "model_config": model_config.to_dict(),
        "train_config": train_config.to_dict(),
        "summary": summary,
        "history": history.to_dict(),
    }
    write_json(out / "history.json", record)
    plot_history(history, out / "history.png", title=f"{name}, preset {preset_name}")
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
        ("checkpoint", str(checkpoint)),
    ]
    print(format_table(["", name], rows, "lr"))
    if progress.stop:
        print(f"interrupted at batch {trainer.step}; continue with --resume", file=sys.stderr)
        return 130
    return 0


# ----------------------------------------------------------------------------------- sample
def run_sample(args: argparse.Namespace) -> int:
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
    path = Path(args.checkpoint)
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


# ------------------------------------------------------------------------------------ table
def run_table(args: argparse.Namespace) -> int:
    runs = [load_run(path) for path in args.checkpoint]
    markdown = sample_table(runs, greedy_samples=args.samples, seed=args.seed)
    if args.out:
        atomic_write_text(args.out, markdown)
        logger.info("wrote %s", args.out)
    else:
        sys.stdout.write(markdown)
    return 0
