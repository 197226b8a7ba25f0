"""Sample tables of trained character-LSTM runs, as Markdown, one column per run.

What a character model has learnt shows in its samples (Graves, arXiv:1308.0850; Karpathy's
char-rnn): :func:`load_run` gathers the snapshots of a run, :func:`samples_table` shows greedy
samples from random start characters at every snapshot, then samples at the given
temperatures from the last one, :func:`completions_table` continues the given prompts, and
:func:`sample_table` puts both under captions.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gnnkit.errors import CheckpointError, InputError
from gnnkit.seq.charlm.generate import generate, prompt_list
from gnnkit.seq.charlm.model import CharLSTM
from gnnkit.seq.charlm.snapshot import model_from_payload, read_model_file

__all__ = ["Run", "completions_table", "load_run", "sample_table", "samples_table"]

_SNAPSHOT = re.compile(r"^step_(\d+)\.pt$")
_CHECKPOINT = "checkpoint.pt"


@dataclass
class Run:
    """The models of one training run, by step, and the name of its corpus."""

    name: str
    models: list[tuple[int, CharLSTM]]

    @property
    def final(self) -> tuple[int, CharLSTM]:
        return self.models[-1]


def _load(path: Path) -> tuple[int, str | None, str | None, CharLSTM]:
    payload = read_model_file(path)
    corpus = payload.get("corpus") or {}
    model = model_from_payload(payload, path).eval()
    return int(payload.get("step", 0)), corpus.get("name"), corpus.get("sha256"), model


def load_run(path: str | os.PathLike) -> Run:
    """The models of one run, oldest first.

    ``path`` is a run folder (its ``step_NNNNNN.pt`` snapshots and ``checkpoint.pt``) or a
    model file or training checkpoint (that file plus the earlier snapshots of the same
    corpus beside it).
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if _SNAPSHOT.match(p.name))
        if (path / _CHECKPOINT).is_file():
            files.append(path / _CHECKPOINT)
        if not files:
            raise CheckpointError(f"{path} holds no {_CHECKPOINT} and no step_*.pt snapshots")
        loaded = [_load(f) for f in files]
        anchor = max(loaded, key=lambda item: item[0])
    else:
        anchor = _load(path)
        siblings = sorted(p for p in path.parent.iterdir() if _SNAPSHOT.match(p.name))
        loaded = [anchor, *(_load(f) for f in siblings if f.resolve() != path.resolve())]
    top_step, name, sha, _ = anchor
    by_step: dict[int, CharLSTM] = {}
    for step, _, corpus_sha, model in loaded:
        if step <= top_step and corpus_sha == sha:
            by_step.setdefault(step, model)
    by_step[top_step] = anchor[3]
    label = name or (path.name if path.is_dir() else path.parent.name)
    return Run(label, sorted(by_step.items(), key=lambda item: item[0]))


def _cell(text: str) -> str:
    """A sample as a Markdown table cell: escapes shown, trailing spaces removed."""
    text = text.rstrip(" ").replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")
    text = text.replace("|", "\\|")
    if not text:
        return ""
    fence = "``" if "`" in text else "`"
    pad = " " if "`" in text else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _steps(step: int) -> str:
    return f"{step:,}".replace(",", " ")


def _starts(model: CharLSTM, count: int, seed: int) -> list[str]:
    generator = torch.Generator().manual_seed(seed)
    chars = model.vocabulary.chars
    # start from ASCII letters when the vocabulary has them, like a word would
    letters = [c for c in chars if c.isascii() and c.isalpha()] or list(chars)
    # distinct start characters while there are enough of them
    order = torch.randperm(len(letters), generator=generator).tolist()
    return [letters[order[i % len(order)]] for i in range(count)]


def _check_runs(runs: Any) -> list[Run]:
    """``runs`` as a list, refusing anything but :class:`Run` objects (paths included)."""
    if isinstance(runs, Run):
        raise InputError("runs must be a list of Runs; for one run pass [run]")
    if isinstance(runs, str | os.PathLike) or not isinstance(runs, Iterable):
        raise InputError(
            f"runs must be a list of Runs from load_run(path), got {type(runs).__name__}"
        )
    runs = list(runs)
    if not runs:
        raise InputError("give at least one run")
    for n, run in enumerate(runs):
        if not isinstance(run, Run):
            hint = (
                f"; pass load_run({os.fspath(run)!r})" if isinstance(run, str | os.PathLike) else ""
            )
            raise InputError(
                f"runs[{n}] must be a Run from load_run(path), got {type(run).__name__}{hint}"
            )
    return runs


def _check_counts(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be an integer >= 1, got {value!r}")


def _greedy_rows(
    runs: Sequence[Run], starts: list[list[str]], greedy_samples: int, sample_length: int
) -> list[str]:
    """``greedy_samples`` rows per step that any run has a snapshot of."""
    lines = []
    for step in sorted({step for run in runs for step, _ in run.models}):
        cells = []
        for run, run_starts in zip(runs, starts, strict=True):
            model = dict(run.models).get(step)
            if model is None:
                cells.append(["-"] * greedy_samples)
                continue
            cells.append(
                [
                    _cell(s + generate(model, s, sample_length - 1, unknown="skip"))
                    for s in run_starts
                ]
            )
        for i in range(greedy_samples):
            lines.append(f"| Greedy | {_steps(step)} | " + " | ".join(c[i] for c in cells) + " |")
    return lines


def _temperature_row(
    runs: Sequence[Run], starts: list[list[str]], j: int, temperature: float, length: int, seed: int
) -> list[str]:
    """One sample per run from its last model, at ``temperature``."""
    cells = []
    for run, run_starts in zip(runs, starts, strict=True):
        start = run_starts[j % len(run_starts)]
        text = start + generate(
            run.final[1],
            start,
            length - 1,
            strategy="temperature",
            temperature=temperature,
            seed=seed + j,
        )
        cells.append(_cell(text))
    return cells


def samples_table(
    runs: Sequence[Run],
    *,
    temperatures: Sequence[float],
    greedy_samples: int = 5,
    sample_length: int = 30,
    seed: int = 0,
    temperature_label: Callable[[float], str] | None = None,
) -> str:
    """Greedy samples at every snapshot, then one sample per temperature from the last one.

    Args:
        runs (sequence of Run): the runs, from :func:`load_run` (not their paths); one
            column each.
        temperatures (sequence of float): temperatures :math:`T` (logits divided by
            :math:`T`) of the sampled rows.
        greedy_samples (int, optional): greedy samples per snapshot. (default: 5)
        sample_length (int, optional): characters per sample, the start character included.
            (default: 30)
        seed (int, optional): picks the start characters and seeds the samplers. (default: 0)
        temperature_label (callable, optional): the first cell of a temperature's row.
            (default: ``"T = 0.5"``...)
    """
    runs = _check_runs(runs)
    _check_counts(greedy_samples=greedy_samples, sample_length=sample_length)
    label = temperature_label or (lambda t: f"T = {t:g}")
    starts = [_starts(run.final[1], greedy_samples, seed) for run in runs]
    lines = [
        "| Sampling scheme | Batch | " + " | ".join(run.name for run in runs) + " |",
        "|---|---:|" + "---|" * len(runs),
        *_greedy_rows(runs, starts, greedy_samples, sample_length),
    ]
    final_steps = "/".join(sorted({_steps(run.final[0]) for run in runs}))
    for j, temperature in enumerate(temperatures):
        cells = _temperature_row(runs, starts, j, temperature, sample_length, seed)
        lines.append(f"| {label(temperature)} | {final_steps} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def completions_table(
    runs: Sequence[Run], *, prompts: Sequence[str], completion_length: int = 100
) -> str:
    """Greedy completions of ``prompts`` by every run's last model, one column per run.

    Prompt characters outside a model's vocabulary are skipped, and the cell says so.

    Args:
        runs (sequence of Run): the runs, from :func:`load_run` (not their paths).
        prompts (sequence of str): the prompts, one row each (a list, not one str); an empty
            prompt gets a cell saying so.
        completion_length (int, optional): characters of a completion, prompt included.
            (default: 100)
    """
    runs = _check_runs(runs)
    prompts = prompt_list(prompts, "for one prompt pass [{prompt}]")
    _check_counts(completion_length=completion_length)
    lines = [
        "| Input string | " + " | ".join(run.name for run in runs) + " |",
        "|---|" + "---|" * len(runs),
    ]
    for prompt in prompts:
        cells = []
        for run in runs:
            model = run.final[1]
            if not prompt:
                cells.append("(empty prompt: nothing to continue)")
                continue
            skipped = model.vocabulary.unknown(prompt)
            kept = "".join(c for c in prompt if c in model.vocabulary)
            if not kept:
                cells.append("(no character of the prompt is in the vocabulary)")
                continue
            text = kept + generate(model, kept, max(completion_length - len(kept), 0))
            note = f" (skipped {''.join(skipped)!r})" if skipped else ""
            cells.append(_cell(text) + note)
        lines.append(f"| {_cell(prompt)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def sample_table(
    runs: Sequence[Run],
    *,
    prompts: Sequence[str],
    temperatures: Sequence[float],
    greedy_samples: int = 5,
    sample_length: int = 30,
    completion_length: int = 100,
    seed: int = 0,
) -> str:
    """:func:`samples_table` and :func:`completions_table` under short captions (Markdown).

    See those functions for the arguments.
    """
    runs = _check_runs(runs)
    prompts = prompt_list(
        prompts, "for one prompt pass [{prompt}]"
    )  # refused before any sample is drawn
    samples = samples_table(
        runs,
        temperatures=temperatures,
        greedy_samples=greedy_samples,
        sample_length=sample_length,
        seed=seed,
    )
    completions = completions_table(runs, prompts=prompts, completion_length=completion_length)
    return "\n".join(
        [
            f"Samples of {sample_length} characters from random start characters: greedy at "
            "every snapshot, then sampled with temperature T (the logits divided by T) from "
            "the last one. Newlines are shown as `\\n`, tabs as `\\t`; trailing spaces removed.",
            "",
            samples,
            f"Greedy completions of the prompts to {completion_length} characters (prompt "
            "included), from the last snapshot.",
            "",
            completions,
        ]
    )
