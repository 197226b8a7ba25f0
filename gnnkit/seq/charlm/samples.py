"""The reference report's Tables 2 and 3 for trained runs, as Markdown.

Table 2: greedy samples from random start characters at several checkpoints of a run, then
temperature samples from its last checkpoint. Table 3: completions of fixed prompts. One column
per run (corpus), as in the report.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from gnnkit.errors import CheckpointError, InputError
from gnnkit.seq.charlm.checkpoint import load_checkpoint, model_from_payload
from gnnkit.seq.charlm.generate import generate, report_tau
from gnnkit.seq.charlm.model import CharLSTM

__all__ = ["PROMPTS", "TEMPERATURES", "Run", "load_run", "sample_table"]

#: The report's Table 3 prompts.
PROMPTS = ("I would prefer not to.", "for i in range", "Do Re Mi")
#: gnnkit temperatures of the report's Table 2 rows (its tau = 2, 1, 0.5).
TEMPERATURES = (0.5, 1.0, 2.0)

_SNAPSHOT = re.compile(r"^step_(\d+)\.pt$")


@dataclass
class Run:
    """The checkpoints of one training run, by step, and the name of its corpus."""

    name: str
    models: list[tuple[int, CharLSTM]]

    @property
    def final(self) -> tuple[int, CharLSTM]:
        return self.models[-1]


def _load(path: Path) -> tuple[int, str | None, str | None, CharLSTM]:
    payload = load_checkpoint(path)
    corpus = payload.get("corpus") or {}
    model = model_from_payload(payload, path).eval()
    return int(payload.get("step", 0)), corpus.get("name"), corpus.get("sha256"), model


def load_run(path: str | os.PathLike) -> Run:
    """The checkpoints of one run, oldest first.

    ``path`` is a run folder (its ``step_NNNNNN.pt`` snapshots and ``checkpoint.pt``) or a
    checkpoint file (that file plus the earlier snapshots of the same corpus beside it).
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if _SNAPSHOT.match(p.name))
        if (path / "checkpoint.pt").is_file():
            files.append(path / "checkpoint.pt")
        if not files:
            raise CheckpointError(f"{path} holds no checkpoint.pt and no step_*.pt snapshots")
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


def sample_table(
    runs: Sequence[Run],
    *,
    greedy_samples: int = 5,
    sample_length: int = 30,
    temperatures: Sequence[float] = TEMPERATURES,
    prompts: Sequence[str] = PROMPTS,
    completion_length: int = 100,
    seed: int = 0,
) -> str:
    """Markdown with the report's Table 2 and Table 3 layout, one column per run.

    Args:
        runs (sequence of Run): the runs, from :func:`load_run`.
        greedy_samples (int, optional): greedy samples per checkpoint. (default: 5)
        sample_length (int, optional): characters per Table 2 sample, the start character
            included. (default: 30)
        temperatures (sequence of float, optional): gnnkit temperatures :math:`T` of the
            sampled rows (the report's :math:`\\tau = 1/T`). (default: 0.5, 1, 2)
        prompts (sequence of str, optional): Table 3 inputs. (default: the report's)
        completion_length (int, optional): total characters of a completion, prompt
            included, as in the report. (default: 100)
        seed (int, optional): picks the start characters and seeds the samplers. (default: 0)
    """
    if not runs:
        raise InputError("give at least one run")
    for name, value in (
        ("greedy_samples", greedy_samples),
        ("sample_length", sample_length),
        ("completion_length", completion_length),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be an integer >= 1, got {value!r}")
    names = [run.name for run in runs]
    header = "| Sampling scheme | Batch | " + " | ".join(names) + " |"
    rule = "|---|---:|" + "---|" * len(runs)
    lines = [
        f"Table 2: samples of {sample_length} characters from random start characters "
        "(greedy at several checkpoints, then sampled with temperature T from the last one). "
        "Newlines are shown as `\\n`, tabs as `\\t`; trailing spaces removed.",
        "",
        header,
        rule,
    ]
    steps = sorted({step for run in runs for step, _ in run.models})
    starts = [_starts(run.final[1], greedy_samples, seed) for run in runs]
    for step in steps:
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
            row = [c[i] for c in cells]
            lines.append(f"| Greedy | {_steps(step)} | " + " | ".join(row) + " |")
    for j, temperature in enumerate(temperatures):
        cells = []
        for run, run_starts in zip(runs, starts, strict=True):
            step, model = run.final
            start = run_starts[j % len(run_starts)]
            text = start + generate(
                model,
                start,
                sample_length - 1,
                strategy="temperature",
                temperature=temperature,
                seed=seed + j,
            )
            cells.append(_cell(text))
        tau = report_tau(temperature)
        final_steps = "/".join(sorted({_steps(run.final[0]) for run in runs}))
        lines.append(
            f"| T = {temperature:g} (report's τ = {tau:g}) | {final_steps} | "
            + " | ".join(cells)
            + " |"
        )
    lines += [
        "",
        f"Table 3: greedy completions of the input strings to {completion_length} characters "
        "(prompt included), from the last checkpoint.",
        "",
        "| Input string | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(runs),
    ]
    for prompt in prompts:
        cells = []
        for run in runs:
            model = run.final[1]
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
