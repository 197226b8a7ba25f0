"""Cross-validate citation models on the grouped (default) or the plain stratified folds.

Issue 21, part 2: copies of a sentence (one row per cited paper) must not sit in the training
and the test part of the same fold. This script runs ``gnnkit.citation.cross_validate`` on
:func:`gnnkit.citation.citation_folds` (stratified, grouped by normalised sentence text) or on
the plain stratified folds of earlier versions (``--folds-kind stratified``), and writes the
same JSON as ``gnnkit citation bench --json`` plus the fold kind and the number of test
sentences whose normalised text also occurs in the training part (0 for grouped folds).

Run (one worker per core; the five models take about 15-30 minutes on two cores):
    python benchmarks/citation_folds.py --models svm,text,graph,hybrid,textgcn \\
        --folds-kind grouped --jobs 2 --json benchmarks/results/citation_grouped.json
    python benchmarks/citation_folds.py --models svm,text,graph,hybrid,textgcn \\
        --folds-kind stratified --jobs 2 --json benchmarks/results/citation_stratified.json
    python benchmarks/citation_folds.py --models hybrid-concat,hybrid-structure,graph-structure,\\
        graph-text,graph-gat --folds-kind grouped --jobs 2 \\
        --json benchmarks/results/citation_ablation_grouped_graph.json   # and _hybrid
    python benchmarks/citation_folds.py --models hybrid-concat,hybrid-structure \\
        --folds-kind stratified --jobs 2 \\
        --json benchmarks/results/citation_ablation_stratified_hybrid.json
    python benchmarks/citation_folds.py --models graph-structure,graph-text,graph-gat \\
        --folds-kind stratified --jobs 2 \\
        --json benchmarks/results/citation_ablation_stratified_graph.json
    python benchmarks/citation_folds.py --models rgcn,rgcn-text,rgcn-edges \\
        --folds-kind stratified --jobs 2 --json benchmarks/results/citation_rgcn_stratified.json
    python benchmarks/citation_folds.py --table benchmarks/results/citation_folds.md
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from gnnkit.citation import citation_folds, cross_validate, load_citations, make_model, text_groups
from gnnkit.citation.cv import set_threads
from gnnkit.utils.env import environment
from gnnkit.utils.io import atomic_write_json, atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results"
REPO = RESULTS.parents[1]


def leaked_test_sentences(groups: np.ndarray, folds) -> list[int]:
    """Per fold: test sentences whose normalised text is also a training sentence's."""
    return [int(np.isin(groups[f.test], groups[f.train]).sum()) for f in folds]


def _cell(summary: dict | None, key: str = "macro_f1") -> str:
    if summary is None:
        return "not run"
    return f"{summary[key + '_mean']:.3f} +- {summary[key + '_std']:.3f}"


def table(path: Path) -> None:
    """Both tables (grouped beside stratified) from the JSON files in ``RESULTS``."""
    runs = {}
    for name in (
        "grouped",
        "stratified",
        "ablation_grouped_graph",
        "ablation_grouped_hybrid",
        "ablation",
        "ablation_stratified_hybrid",
        "ablation_stratified_graph",
        "rgcn_grouped",
        "rgcn_controls_grouped",
        "rgcn_stratified",
    ):
        file = RESULTS / f"citation_{name}.json"
        runs[name] = json.loads(file.read_text()) if file.exists() else {"models": {}}
    grouped = {
        **runs["grouped"]["models"],
        **runs["ablation_grouped_graph"]["models"],
        **runs["ablation_grouped_hybrid"]["models"],
        **runs["rgcn_grouped"]["models"],
        **runs["rgcn_controls_grouped"]["models"],
    }
    # The 2026-11-25 ablation run (citation_ablation.json) was on the stratified folds; a
    # re-run of some of its models replaces their rows.
    stratified = {
        **runs["stratified"]["models"],
        **runs["ablation"]["models"],
        **runs["ablation_stratified_hybrid"]["models"],
        **runs["ablation_stratified_graph"]["models"],
        **runs["rgcn_stratified"]["models"],
    }
    lines = [
        "# Citation sentiment: grouped against plain stratified folds (issue 21, part 2)",
        "",
        "10-fold CV, seed 0, the same models and seeds; macro-F1 and micro-F1, mean +- sample"
        " std over folds. Grouped: copies of a sentence (equal normalised text) in one fold;"
        " stratified: the folds of earlier versions, which put copies in training and test.",
        "",
        "| model | grouped macro-F1 | stratified macro-F1 | grouped - stratified |"
        " grouped micro-F1 | stratified micro-F1 | grouped F1 pos / neg |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in dict.fromkeys([*grouped, *stratified]):
        g, s = grouped.get(name), stratified.get(name)
        gap = f"{g['macro_f1_mean'] - s['macro_f1_mean']:+.3f}" if g and s else ""
        pc = (
            f"{g['per_class_f1']['positive']:.3f} / {g['per_class_f1']['negative']:.3f}"
            if g
            else ""
        )
        lines.append(
            f"| {name} | {_cell(g)} | {_cell(s)} | {gap} | {_cell(g, 'micro_f1')} | "
            f"{_cell(s, 'micro_f1')} | {pc} |"
        )
    lines += ["", "Runs:", ""]
    for name, run in runs.items():
        if run["models"]:
            env = run.get("env", {})
            command = run.get("command", "gnnkit citation bench").replace(str(REPO) + "/", "")
            lines.append(
                f"- `citation_{name}.json`: `{command}`"
                f" ({run.get('date', 'see the JSON')}, {run.get('wall_time_s', 0):.0f} s wall,"
                f" torch {env.get('torch', '?')}, leaked test sentences per fold"
                f" {run.get('leaked_test_sentences', 'not recorded')})"
            )
    atomic_write_text(path, "\n".join(lines) + "\n")
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="svm,text,graph,hybrid,textgcn")
    parser.add_argument("--folds", type=int, default=10)
    parser.add_argument("--folds-kind", choices=("grouped", "stratified"), default="grouped")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--table", type=Path, help="only write the tables' Markdown here")
    args = parser.parse_args(argv)
    if args.table:
        table(args.table)
        return 0
    if args.json is None:
        parser.error("--json is required unless --table is given")
    set_threads(args.threads)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    data = load_citations()
    folds = citation_folds(data, args.folds, seed=args.seed, grouped=args.folds_kind == "grouped")
    leaked = leaked_test_sentences(text_groups(data.text), folds)
    models = {name: functools.partial(make_model, name) for name in names}

    def on_fold(name, fold, scores, seconds):
        print(f"{name} fold {fold.index}: {scores['macro_f1']:.3f} ({seconds:.0f}s)", flush=True)

    start = time.perf_counter()
    result = cross_validate(
        data, models, folds, seed=args.seed, jobs=args.jobs, threads=args.threads, on_fold=on_fold
    )
    wall = time.perf_counter() - start
    payload = result.to_json(
        {
            "folds_kind": args.folds_kind,
            "leaked_test_sentences": leaked,
            "wall_time_s": wall,
            "command": "python benchmarks/citation_folds.py " + " ".join(argv or sys.argv[1:]),
            "hyperparameters": {n: repr(make_model(n)) for n in names},
            "env": environment("cpu"),
            "load_average": list(os.getloadavg()),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        }
    )
    atomic_write_json(args.json, payload)
    for name in names:
        s = result.summary(name)
        print(f"{name}: macro-F1 {s['macro_f1_mean']:.3f} +- {s['macro_f1_std']:.3f}")
    print(f"wrote {args.json} ({wall:.0f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
