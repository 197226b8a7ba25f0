"""Models that use the sentence graph's signal, and a power analysis (issue 21, part 4).

On the grouped folds (:func:`gnnkit.citation.citation_folds`, seed 0) this script
cross-validates ``svm`` (TF-IDF n-grams + linear SVM), ``labels`` (the same plus the training
labels of sibling sentences: the label trick) and ``cs`` (Correct & Smooth over the sentence
graph on a logistic regression), pairs every model fold by fold with the text-only models of
``citation_grouped.json`` (same folds, same per-fold seeds), and asks whether the best hybrid
beats the best text-only model by more than one std of the paired per-fold difference.

Power analysis: the paired per-fold difference ``labels - svm`` is measured again on random
subsets of the corpus (whole sentence groups, 25 % and 50 %) to see how its mean and std move
with the number of labelled sentences; and for each hybrid-vs-text pair, the number of
labelled sentences at which a gain ``delta`` would exceed one std of the paired difference,
``N = n (s / delta)^2`` (the usual assumption: the gain stays, the std falls as
``1 / sqrt(n)``), for the measured gain and for gains of 0.005, 0.01 and 0.02 macro-F1.

The typed-edge sentence GNN (``rgcn``) takes longer; it is cross-validated by
``citation_folds.py`` on the same folds and seeds, and ``--add`` pairs its result with the
text-only models here without re-running the others.

Run (about 10 minutes on one core, plus about 30 for ``rgcn``):
    python benchmarks/citation_hybrids.py --json benchmarks/results/citation_hybrids.json \\
        --markdown benchmarks/results/citation_hybrids.md
    python benchmarks/citation_folds.py --models rgcn --folds-kind grouped \\
        --json benchmarks/results/citation_rgcn_grouped.json
    python benchmarks/citation_hybrids.py --add benchmarks/results/citation_rgcn_grouped.json
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

import numpy as np

from gnnkit.citation import (
    citation_folds,
    cross_validate,
    make_model,
    read_corpus,
    text_groups,
    to_data,
)
from gnnkit.citation.cv import set_threads
from gnnkit.data import load
from gnnkit.utils.env import environment
from gnnkit.utils.io import atomic_write_json, atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results"
HYBRIDS = ("labels", "cs")
GAINS = (0.005, 0.01, 0.02)


def paired(a: list[float], b: list[float]) -> dict:
    d = np.subtract(a, b)
    mean, std = float(d.mean()), float(d.std(ddof=1))
    return {
        "mean": mean,
        "std": std,
        "wins": int((d > 0).sum()),
        "folds": int(d.size),
        "beats_by_one_std": bool(mean > std),
    }


def subset(records, fraction: float, seed: int):
    """Whole sentence groups (copies together), ``fraction`` of them, at random."""
    groups = text_groups([r.text for r in records])
    keep = np.random.default_rng(seed).permutation(groups.max() + 1)
    keep = set(keep[: round(fraction * keep.size)].tolist())
    return [r for r, g in zip(records, groups, strict=True) if g in keep]


def cv(data, names, seed: int = 0):
    folds = citation_folds(data, 10, seed=seed)
    models = {n: functools.partial(make_model, n) for n in names}
    return cross_validate(data, models, folds, seed=seed)


def power(records, full: dict, fractions=(0.25, 0.5)) -> dict:
    """The paired ``labels - svm`` difference against the number of sentences (measured on
    random subsets; ``full`` holds the whole corpus's pairs), and the sentences a gain needs.

    ``sentences_needed`` assumes what a power analysis of a paired design usually does: the
    gain stays, and the std of the per-fold difference falls as ``1 / sqrt(n)``, so a gain
    ``delta`` exceeds one std at ``N = n (s / delta)^2``. ``None``: a gain <= 0 never does.
    """
    points = []
    for fraction in fractions:
        data = to_data(subset(records, fraction, seed=1))
        result = cv(data, ("svm", "labels"))
        p = paired(result.summary("labels")["macro_f1"], result.summary("svm")["macro_f1"])
        points.append({"fraction": fraction, "sentences": int(data.y.numel()), **p})
        print(f"power: {fraction:.2f} {data.y.numel()} sentences: {p}", flush=True)
    points.append({"fraction": 1.0, "sentences": len(records), **full["labels - svm"]})
    n = len(records)
    needed = {}
    for key, p in full.items():
        for gain in (p["mean"], *GAINS):
            needed[f"{key} @ {gain:+.4f}"] = float(n * (p["std"] / gain) ** 2) if gain > 0 else None
    return {"points": points, "sentences_needed": needed}


def markdown(payload: dict) -> str:
    rows = payload["models"]
    lines = [
        "# Citation sentiment: models that use the sentence graph (issue 21, part 4)",
        "",
        "Grouped stratified 10-fold CV (copies of a sentence in one fold), seed 0; fold k uses"
        " seed k for every model. Mean +- sample std over folds.",
        "",
        "| model | macro-F1 | F1 positive | F1 negative |",
        "|---|---:|---:|---:|",
    ]
    for name, s in rows.items():
        pc = s["per_class_f1"]
        lines.append(
            f"| {name} | {s['macro_f1_mean']:.3f} +- {s['macro_f1_std']:.3f} | "
            f"{pc['positive']:.3f} | {pc['negative']:.3f} |"
        )
    lines += [
        "",
        "Paired per-fold differences (hybrid - text-only), macro-F1:",
        "",
        "| hybrid | text-only | mean | std | hybrid wins | more than one std? |",
        "|---|---|---:|---:|---:|---|",
    ]
    for key, p in payload["paired"].items():
        hybrid, base = key.split(" - ")
        lines.append(
            f"| {hybrid} | {base} | {p['mean']:+.4f} | {p['std']:.4f} | "
            f"{p['wins']}/{p['folds']} | {'yes' if p['beats_by_one_std'] else 'no'} |"
        )
    pw = payload["power"]
    lines += [
        "",
        "Power analysis: std of the paired per-fold difference `labels - svm` against the"
        " number of labelled sentences (random whole-sentence subsets):",
        "",
        "| sentences | mean difference | std of the difference |",
        "|---:|---:|---:|",
    ]
    for p in pw["points"]:
        lines.append(f"| {p['sentences']:,} | {p['mean']:+.4f} | {p['std']:.4f} |")
    lines += [
        "",
        "Labelled sentences needed for a gain to exceed one std of the paired per-fold"
        " difference, if the gain stays and that std falls as 1/sqrt(n) (first row of each"
        " pair: the measured gain; then 0.005, 0.01, 0.02):",
        "",
        "| comparison @ gain | sentences needed |",
        "|---|---:|",
    ]
    for key, n in pw["sentences_needed"].items():
        lines.append(f"| {key} | {'never (gain <= 0)' if n is None else f'{n:,.0f}'} |")
    env = payload["env"]
    lines += [
        "",
        f"Command: `{payload['command']}`; {payload['date']}; 1 thread; torch {env.get('torch')};"
        f" {env.get('cpu', '')}.",
        "",
    ]
    return "\n".join(lines)


def add(paths: list[Path], json_path: Path, markdown_path: Path, argv) -> int:
    """Add the models of other grouped, seed-0 runs; pair every ``rgcn*`` model fold by fold
    with ``svm``, ``text`` and ``rgcn-text`` (the same network without the graph)."""
    payload = json.loads(json_path.read_text())
    for path in paths:
        run = json.loads(path.read_text())
        if run.get("folds_kind") != "grouped" or run.get("seed") != 0:
            raise SystemExit(f"{path}: --add takes grouped folds with seed 0")
        payload["models"].update(run["models"])
        payload.setdefault("added", {})[path.name] = run["command"]
    # rgcn-text is the same network without the graph: the control for what the graph adds.
    n = payload["power"]["points"][-1]["sentences"]
    for name in [m for m in payload["models"] if m.startswith("rgcn") and m != "rgcn-text"]:
        for base in [b for b in ("svm", "text", "rgcn-text") if b in payload["models"]]:
            key = f"{name} - {base}"
            p = payload["paired"][key] = paired(
                payload["models"][name]["macro_f1"], payload["models"][base]["macro_f1"]
            )
            for gain in (p["mean"], *GAINS):
                payload["power"]["sentences_needed"][f"{key} @ {gain:+.4f}"] = (
                    float(n * (p["std"] / gain) ** 2) if gain > 0 else None
                )
    payload["date"] += time.strftime(" (models added %Y-%m-%d %H:%M UTC)", time.gmtime())
    payload["command"] += " && python benchmarks/citation_hybrids.py " + " ".join(
        argv or sys.argv[1:]
    )
    atomic_write_json(json_path, payload)
    atomic_write_text(markdown_path, markdown(payload))
    print(markdown(payload))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, default=RESULTS / "citation_hybrids.json")
    parser.add_argument("--markdown", type=Path, default=RESULTS / "citation_hybrids.md")
    parser.add_argument("--grouped", type=Path, default=RESULTS / "citation_grouped.json")
    parser.add_argument(
        "--add",
        type=Path,
        nargs="+",
        help="only add these citation_folds.py results (grouped folds, seed 0) to --json and"
        " pair them with svm and text",
    )
    args = parser.parse_args(argv)
    if args.add:
        return add(args.add, args.json, args.markdown, argv)
    set_threads(1)
    records = read_corpus(load("athar-citations")).records
    start = time.perf_counter()
    result = cv(to_data(records), ("svm", *HYBRIDS))
    models = {n: result.summary(n) for n in result.scores}
    text_only = json.loads(args.grouped.read_text())["models"]
    for name in ("text",):
        models[name] = text_only[name]
    pairs = {}
    for hybrid in HYBRIDS:
        for base in ("svm", "text"):
            pairs[f"{hybrid} - {base}"] = paired(
                models[hybrid]["macro_f1"], models[base]["macro_f1"]
            )
    print(json.dumps({"models": {n: m["macro_f1_mean"] for n, m in models.items()}, **pairs}))
    atomic_write_json(args.json, {"models": models, "paired": pairs, "partial": True})
    payload = {
        "models": models,
        "paired": pairs,
        "power": power(records, pairs),
        "seconds": time.perf_counter() - start,
        "command": "python benchmarks/citation_hybrids.py " + " ".join(argv or sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "env": environment("cpu"),
    }
    atomic_write_json(args.json, payload)
    atomic_write_text(args.markdown, markdown(payload))
    print(markdown(payload))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
