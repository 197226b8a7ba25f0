"""Character LSTM: accuracy of trained runs, training throughput and generation speed.

1. Accuracy: reads the runs that ``gnnkit text train`` wrote under ``--runs``
   (``<runs>/<corpus>-<preset>/history.json``): training and validation next-character
   accuracy and loss, wall time. Train them first, e.g.::

       gnnkit text train --corpus bartleby --preset cpu --out runs/charlm/bartleby-cpu

2. Training throughput (characters per second): gnnkit's ``Trainer`` against a bare loop of
   the same shape written here (``nn.Embedding`` -> ``nn.LSTM`` -> dropout -> ``nn.Linear``,
   Adam, StepLR, gradient clipping, random windows), same data, interleaved A/B repeats in
   one process, medians. gnnkit's loop also computes the batch accuracy and records history.

3. Generation speed (new characters per second) with the trained ``cpu`` model: batch 1 for
   each strategy, batch 64, against a bare ``nn.LSTM`` step loop and against re-reading the
   whole text for every new character (what generation without state carrying costs).

4. The report's Tables 2 and 3 for every trained run: greedy samples at its snapshots, samples
   at the report's temperatures (its tau = 1/T: the report multiplies the logits by tau,
   gnnkit divides them by T) and completions of the report's prompts
   (:func:`gnnkit.seq.charlm.samples_table`, :func:`gnnkit.seq.charlm.completions_table`).

Run (under the shared benchmark lock):
    flock /tmp/gnnkit-bench.lock python benchmarks/charlm.py [--runs runs/charlm]
    python benchmarks/charlm.py --tables-only [--preset paper]   # the tables alone, quick
Writes benchmarks/results/charlm.md and charlm.json (and charlm_<corpus>.png plots), and the
tables to charlm_table_<corpus>.md (charlm_<preset>_table_<corpus>.md for other presets).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gnnkit.seq.charlm import (
    CharLSTM,
    History,
    TextDataset,
    Trainer,
    completions_table,
    generate_batch,
    get_preset,
    load_corpus,
    load_model,
    load_run,
    plot_history,
    samples_table,
)
from gnnkit.seq.charlm.samples import Run
from gnnkit.utils.env import environment
from gnnkit.utils.io import atomic_write_json, atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results"
CORPORA = ("bartleby", "pydoc-tutorial")

#: The report's Table 3 prompts.
REPORT_PROMPTS = ("I would prefer not to.", "for i in range", "Do Re Mi")
#: gnnkit temperatures T of the report's Table 2 rows (its tau = 2, 1, 0.5).
REPORT_TEMPERATURES = (0.5, 1.0, 2.0)
#: Characters per Table 2 sample and per Table 3 completion (prompt included), as the report.
SAMPLE_LENGTH, COMPLETION_LENGTH = 30, 100


# ------------------------------------------------------------------------------ throughput
def bare_loop(data: TextDataset, model_config, train_config, steps: int, seed: int) -> float:
    """Seconds for ``steps`` batches of the plainest loop of the same shape."""
    torch.manual_seed(seed)
    vocab = len(data.vocabulary)
    embedding = nn.Embedding(vocab, model_config.embedding_dim)
    lstm = nn.LSTM(
        model_config.embedding_dim,
        model_config.hidden_size,
        model_config.num_layers,
        batch_first=True,
        dropout=model_config.dropout,
    )
    dropout = nn.Dropout(model_config.dropout)
    head = nn.Linear(model_config.hidden_size, vocab)
    params = [*embedding.parameters(), *lstm.parameters(), *head.parameters()]
    optimizer = torch.optim.Adam(params, lr=train_config.lr, weight_decay=train_config.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(
        optimizer, train_config.lr_decay_every, train_config.lr_decay
    )
    ids = data.train_ids
    span = torch.arange(train_config.seq_length + 1)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for _ in range(steps):
        starts = torch.randint(len(data), (train_config.batch_size,), generator=generator)
        chunk = ids[starts[:, None] + span]
        x, y = chunk[:, :-1], chunk[:, 1:]
        out, _ = lstm(embedding(x))
        logits = head(dropout(out))
        loss = F.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, train_config.clip_norm)
        optimizer.step()
        scheduler.step()
    return time.perf_counter() - start


def gnnkit_loop(data: TextDataset, model_config, train_config, steps: int, seed: int) -> float:
    """Seconds of ``steps`` batches of :class:`gnnkit.seq.charlm.Trainer` (no checkpoints).

    ``History.train_seconds`` times every batch from sampling the windows to recording its
    loss and accuracy; the one evaluation at the end of ``run`` is not part of the throughput.
    """
    config = train_config.replace(
        steps=steps, eval_every=0, sample_every=0, snapshot_every=0, eval_windows=1
    )
    torch.manual_seed(seed)
    trainer = Trainer(CharLSTM(data.vocabulary, model_config), data, config, seed=seed)
    return trainer.run().train_seconds


def throughput(data: TextDataset, preset_name: str, steps: int, repeats: int) -> dict[str, Any]:
    preset = get_preset(preset_name)
    chars = steps * preset.train.batch_size * preset.train.seq_length
    gnnkit_loop(data, preset.model, preset.train, 2, 0)  # warm-up
    bare_loop(data, preset.model, preset.train, 2, 0)
    times: dict[str, list[float]] = {"gnnkit": [], "bare": []}
    for rep in range(repeats):
        order = ("gnnkit", "bare") if rep % 2 == 0 else ("bare", "gnnkit")
        for name in order:
            loop = gnnkit_loop if name == "gnnkit" else bare_loop
            times[name].append(loop(data, preset.model, preset.train, steps, rep))
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "preset": preset_name,
        "corpus": data.name,
        "steps_per_repeat": steps,
        "repeats": repeats,
        "chars_per_repeat": chars,
        "gnnkit_chars_per_s": chars / med["gnnkit"],
        "bare_chars_per_s": chars / med["bare"],
        "ratio": med["bare"] / med["gnnkit"],
        "times_s": times,
    }


# ------------------------------------------------------------------------------ generation
def _bare_generate(model: CharLSTM, prompt_ids: torch.Tensor, length: int) -> None:
    """Greedy generation with the model's modules and nothing else (state carried)."""
    with torch.inference_mode():
        out, state = model.lstm(model.embedding(prompt_ids[None]))
        nxt = model.head(out[:, -1]).argmax(-1, keepdim=True)
        for _ in range(length - 1):
            out, state = model.lstm(model.embedding(nxt), state)
            nxt = model.head(out[:, -1]).argmax(-1, keepdim=True)


def _reread_generate(model: CharLSTM, prompt_ids: torch.Tensor, length: int) -> None:
    """Greedy generation without state carrying: the whole text is read again per character."""
    ids = prompt_ids[None]
    with torch.inference_mode():
        for _ in range(length):
            logits, _ = model(ids)
            ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], dim=1)


def _median_rate(fn, chars: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return chars / statistics.median(times)


def generation(model: CharLSTM, length: int, repeats: int) -> dict[str, Any]:
    prompt = (
        "".join(c for c in "I would prefer not to." if c in model.vocabulary)
        or (model.vocabulary.chars[0])
    )
    prompt_ids = model.vocabulary.encode(prompt)
    generate_batch(model, [prompt], 50)  # warm-up
    result: dict[str, Any] = {"prompt": prompt, "length": length, "batch1": {}}
    for strategy, kwargs in (
        ("greedy", {}),
        ("temperature", {"temperature": 1.0}),
        ("top-k", {"k": 5}),
    ):
        result["batch1"][strategy] = _median_rate(
            lambda s=strategy, kw=kwargs: generate_batch(
                model, [prompt], length, strategy=s, seed=0, **kw
            ),
            length,
            repeats,
        )
    result["bare_batch1_greedy"] = _median_rate(
        lambda: _bare_generate(model, prompt_ids, length), length, repeats
    )
    batch_length = max(length // 4, 1)
    result["batch64_temperature"] = _median_rate(
        lambda: generate_batch(model, [prompt] * 64, batch_length, strategy="temperature", seed=0),
        64 * batch_length,
        repeats,
    )
    reread = min(length, 300)
    result["reread_length"] = reread
    result["reread_batch1_greedy"] = _median_rate(
        lambda: _reread_generate(model, prompt_ids, reread), reread, 1
    )
    result["carried_vs_bare"] = result["batch1"]["greedy"] / result["bare_batch1_greedy"]
    return result


# -------------------------------------------------------------------------------- accuracy
def accuracy(runs: Path, preset: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for corpus in CORPORA:
        path = runs / f"{corpus}-{preset}" / "history.json"
        if not path.is_file():
            continue
        record = json.loads(path.read_text())
        summary = record["summary"]
        history = History.from_dict(record["history"])
        plot_history(history, RESULTS / f"charlm_{corpus}.png", title=f"{corpus}, preset {preset}")
        out[corpus] = {
            "run": str(path.parent),
            "steps": summary["steps"],
            "train_acc_last100": summary["train_acc_last"],
            "train_acc_max_batch": summary["train_acc_max"],
            "train_eval_acc": summary["train_eval_acc"],
            "train_eval_loss": summary["train_eval_loss"],
            "val_acc": summary["val_acc"],
            "val_acc_best": summary["val_acc_best"],
            "val_loss": summary["val_loss"],
            "train_seconds": history.train_seconds,
            "vocabulary_size": record["vocabulary_size"],
            "parameters": record["parameters"],
            "corpus_chars": record["corpus"]["num_chars"],
        }
    return out


# ---------------------------------------------------------------------------------- tables
def report_tau(temperature: float) -> float:
    """The report's tau for a gnnkit temperature T: the report multiplies the logits by tau,
    gnnkit divides them by T, so tau = 1/T."""
    return 1.0 / temperature


def report_tables(runs: list[Run], *, greedy_samples: int = 5, seed: int = 0) -> str:
    """The report's Tables 2 and 3 (Markdown) for ``runs``, one column per run."""
    samples = samples_table(
        runs,
        temperatures=REPORT_TEMPERATURES,
        greedy_samples=greedy_samples,
        sample_length=SAMPLE_LENGTH,
        seed=seed,
        temperature_label=lambda t: f"T = {t:g} (report's τ = {report_tau(t):g})",
    )
    completions = completions_table(
        runs, prompts=REPORT_PROMPTS, completion_length=COMPLETION_LENGTH
    )
    return "\n".join(
        [
            f"Table 2: samples of {SAMPLE_LENGTH} characters from random start characters "
            "(greedy at several checkpoints, then sampled with temperature T from the last one). "
            "Newlines are shown as `\\n`, tabs as `\\t`; trailing spaces removed.",
            "",
            samples,
            f"Table 3: greedy completions of the input strings to {COMPLETION_LENGTH} characters "
            "(prompt included), from the last checkpoint.",
            "",
            completions,
        ]
    )


def write_tables(runs: Path, preset: str, out_dir: Path, seed: int = 0) -> list[Path]:
    """``charlm[_<preset>]_table_<corpus>.md`` in ``out_dir`` for every trained run."""
    written = []
    stem = "charlm_table" if preset == "cpu" else f"charlm_{preset}_table"
    for corpus in CORPORA:
        folder = runs / f"{corpus}-{preset}"
        if folder.is_dir():
            markdown = report_tables([load_run(folder)], seed=seed)
            written.append(atomic_write_text(out_dir / f"{stem}_{corpus}.md", markdown))
    return written


# ---------------------------------------------------------------------------------- report
def _accuracy_lines(acc: dict[str, Any]) -> list[str]:
    if not acc:
        return ["(no trained runs found)", ""]
    lines = [
        "| corpus | chars (distinct) | batches | train acc (last 100 batches) | "
        "train acc (eval) | val acc | val loss | train time |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for corpus, r in acc.items():
        lines.append(
            f"| {corpus} | {r['corpus_chars']:,} ({r['vocabulary_size']}) | {r['steps']:,} | "
            f"{100 * r['train_acc_last100']:.2f} % | {100 * r['train_eval_acc']:.2f} % | "
            f"**{100 * r['val_acc']:.2f} %** | {r['val_loss']:.3f} | "
            f"{r['train_seconds'] / 60:.1f} min |"
        )
    return [
        *lines,
        "",
        "Target: validation accuracy >= 50 % on each corpus. Train acc (eval) is measured "
        "like the validation accuracy (eval mode, no dropout) on as many training windows. "
        "The report's maximum training accuracies (paper preset: 84.22 % Bartleby, "
        "74.84 % tutorials) need a GPU; no GPU was available for this result. Curves: "
        + ", ".join(f"`charlm_{c}.png`" for c in acc)
        + ".",
        "",
    ]


def _throughput_lines(throughput: list[dict[str, Any]]) -> list[str]:
    lines = [
        "## Training throughput against a bare `nn.LSTM` loop of the same shape",
        "",
        "| preset shape | corpus | gnnkit chars/s | bare loop chars/s | ratio (target >= 0.9) |",
        "|---|---|---:|---:|---:|",
    ]
    for t in throughput:
        lines.append(
            f"| {t['preset']} | {t['corpus']} | {t['gnnkit_chars_per_s']:,.0f} | "
            f"{t['bare_chars_per_s']:,.0f} | **{t['ratio']:.2f}x** |"
        )
    repeats = throughput[0]["repeats"]
    return [*lines, "", f"Medians of interleaved repeats in one process ({repeats} each).", ""]


def _generation_lines(g: dict[str, Any] | None) -> list[str]:
    if not g:
        return []
    lines = [
        f"## Generation speed (`cpu` preset model, {g['length']:,} new characters)",
        "",
        "| setting | new chars/s |",
        "|---|---:|",
    ]
    for strategy, rate in g["batch1"].items():
        lines.append(f"| gnnkit, batch 1, {strategy} | **{rate:,.0f}** |")
    return [
        *lines,
        f"| bare `nn.LSTM` step loop, batch 1, greedy | {g['bare_batch1_greedy']:,.0f} |",
        f"| gnnkit, batch 64, temperature (all rows) | {g['batch64_temperature']:,.0f} |",
        f"| re-reading the text per character, batch 1, greedy ({g['reread_length']} chars) "
        f"| {g['reread_batch1_greedy']:,.0f} |",
        "",
        f"Target: >= 2,000 chars/s at batch 1. gnnkit / bare loop: {g['carried_vs_bare']:.2f}x.",
        "",
    ]


def markdown(payload: dict[str, Any], command: str) -> str:
    env = payload["environment"]
    lines = [
        "# Character LSTM (report section 2)",
        "",
        "## Accuracy of the `cpu` preset (2 x 256 LSTM)",
        "",
        *_accuracy_lines(payload["accuracy"]),
        *_throughput_lines(payload["throughput"]),
        *_generation_lines(payload.get("generation")),
        f"Machine: {env['cpu']}, {env['threads']} threads; torch {env['torch']}, "
        f"PyG {env['torch_geometric']}, Python {env['python']}, {env['date']}.",
        f"Command: `{command}`",
        "",
    ]
    return "\n".join(lines)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Sections 1-3: accuracy of the trained runs, training throughput, generation speed."""
    payload: dict[str, Any] = {"environment": environment("cpu")}
    payload["accuracy"] = accuracy(args.runs, "cpu")
    payload["throughput"] = []
    datasets = {}
    for corpus in CORPORA:
        text, name = load_corpus(corpus)
        datasets[corpus] = text, name
        data = TextDataset(text, get_preset("cpu").train.seq_length, name=name)
        payload["throughput"].append(throughput(data, "cpu", args.steps, args.repeats))
        print(json.dumps(payload["throughput"][-1], indent=1), file=sys.stderr)
    if args.paper_steps:
        text, name = datasets["bartleby"]
        data = TextDataset(text, get_preset("paper").train.seq_length, name=name)
        payload["throughput"].append(throughput(data, "paper", args.paper_steps, 3))
        print(json.dumps(payload["throughput"][-1], indent=1), file=sys.stderr)

    checkpoint = args.runs / "bartleby-cpu" / "checkpoint.pt"
    if checkpoint.is_file():
        model = load_model(checkpoint)
    else:
        text, name = datasets["bartleby"]
        data = TextDataset(text, 64, name=name)
        model = CharLSTM(data.vocabulary, get_preset("cpu").model).eval()
    payload["generation"] = generation(model, args.gen_length, 3)
    payload["generation"]["checkpoint"] = str(checkpoint) if checkpoint.is_file() else None
    print(json.dumps(payload["generation"], indent=1), file=sys.stderr)
    return payload


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=Path, default=Path("runs/charlm"))
    parser.add_argument("--steps", type=int, default=20, help="batches per throughput repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--paper-steps", type=int, default=3, help="0 skips the paper shape")
    parser.add_argument("--gen-length", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path, default=RESULTS / "charlm.json")
    parser.add_argument("--markdown", type=Path, default=RESULTS / "charlm.md")
    parser.add_argument("--tables-only", action="store_true", help="only write the tables")
    parser.add_argument("--preset", default="cpu", help="the runs the tables show (default: cpu)")
    parser.add_argument("--tables-dir", type=Path, default=RESULTS, help="where tables go")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    for path in write_tables(args.runs, args.preset, args.tables_dir):
        print(f"wrote {path}", file=sys.stderr)
    if args.tables_only:
        return 0
    payload = measure(args)
    command = "python " + " ".join(["benchmarks/charlm.py", *(argv or sys.argv[1:])])
    payload["command"] = command
    atomic_write_json(args.json, payload)
    atomic_write_text(args.markdown, markdown(payload, command))
    print(markdown(payload, command))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
