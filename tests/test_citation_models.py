"""The citation sentiment models (gnnkit.citation.svm, text, graph, hybrid, textgcn and registry)
on small synthetic corpora."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch

from gnnkit.citation import (
    MODEL_NAMES,
    BiLSTMEncoder,
    CitationRecord,
    Fold,
    PaperGNN,
    evaluate,
    fold_view,
    make_model,
    paper_features,
    stratified_folds,
    textgcn_graph,
    to_data,
)
from gnnkit.citation.textgcn import pmi_edges, sliding_windows
from gnnkit.errors import InputError

CUE_WORDS = {
    0: ["uses", "follows", "adopts", "describes"],
    1: ["excellent", "improves", "successful", "elegant"],
    2: ["fails", "poor", "flawed", "lacks"],
}
FILLER = ["the", "method", "of", "model", "data", "we", "results", "parser", "corpus", "approach"]
LABEL_CODES = ("o", "p", "n")


pytestmark = pytest.mark.usefixtures("one_thread")


def synthetic_records(
    counts=(90, 60, 45), *, text_signal=True, graph_signal=True, seed=0
) -> list[CitationRecord]:
    """A small corpus whose label is readable from the text, the cited paper, or both.

    With ``graph_signal`` every class has its own four target papers (so the label is a
    function of the target); otherwise targets are drawn from all twelve. With ``text_signal``
    each sentence holds two cue words of its class; otherwise two cue words of random classes.
    """
    rng = np.random.default_rng(seed)
    records = []
    all_cues = [w for words in CUE_WORDS.values() for w in words]
    for label, count in enumerate(counts):
        for _ in range(count):
            target = 4 * label + rng.integers(4) if graph_signal else rng.integers(12)
            source = rng.integers(40)
            cues = CUE_WORDS[label] if text_signal else all_cues
            words = list(rng.choice(FILLER, 5)) + list(rng.choice(cues, 2))
            rng.shuffle(words)
            text = " ".join(words) + " (Smith et al., 2001)."
            records.append(
                CitationRecord(f"S{source}", f"T{target}", LABEL_CODES[label], text, len(records))
            )
    order = rng.permutation(len(records))
    return [records[i] for i in order]


def split(records, seed=0):
    data = to_data(records)
    fold = stratified_folds(data.y, 4, seed=seed)[0]
    return data, fold, fold_view(data, fold, seed=seed)


FAST = {
    "text": {"embed_dim": 16, "hidden": 16, "mlp_hidden": 16, "epochs": 25, "patience": 25,
             "batch_size": 32, "lr": 1e-2, "dropout": 0.1, "min_count": 1},
    "graph": {"epochs": 150, "patience": 150, "lr": 1e-2, "feature_dim": 8, "embed_dim": 16,
              "gnn_hidden": 16, "mlp_hidden": 16, "dropout": 0.1},
    "textgcn": {"hidden": 16, "epochs": 150, "patience": 150, "min_df": 1,
                "min_cooccurrence": 1, "dropout": 0.1},
    "svm": {},
}  # fmt: skip
FAST["hybrid"] = {
    **FAST["text"],
    "paper_embed_dim": 16,
    "feature_dim": 8,
    "gnn_hidden": 16,
    "fused_dim": 16,
    "graph_dropout": 0.1,
}


def fit_score(name, records, **overrides):
    data, fold, view = split(records)
    base = name.split("-")[0]
    model = make_model(name, seed=0, **{**FAST[base], **overrides}).fit(view)
    pred = model.predict(view)
    return evaluate(data.y[fold.test], pred, 3)["macro_f1"], model, view


# -- each model learns a separable corpus -------------------------------------------------------


@pytest.mark.parametrize("name", ["svm", "text", "textgcn", "hybrid", "hybrid-concat"])
def test_text_models_learn_a_text_separable_corpus(name):
    torch.manual_seed(0)
    score, _, _ = fit_score(name, synthetic_records(text_signal=True, graph_signal=False))
    assert score > 0.9


@pytest.mark.parametrize(
    "name", ["graph", "graph-structure", "graph-gat", "hybrid", "hybrid-concat"]
)
def test_graph_models_learn_a_graph_separable_corpus(name):
    # The text carries no signal: only the cited paper tells the class.
    score, _, _ = fit_score(name, synthetic_records(text_signal=False, graph_signal=True))
    assert score > 0.9


def test_text_model_cannot_read_a_graph_only_signal():
    # The control for the test above: the same corpus defeats a text-only model, so the
    # hybrid's score there comes from the graph side of its fusion.
    score, _, _ = fit_score("text", synthetic_records(text_signal=False, graph_signal=True))
    assert score < 0.7


def test_graph_model_predicts_the_same_class_for_a_pair():
    _, model, view = fit_score("graph", synthetic_records(text_signal=False))
    pred = model.predict(view, view.train)
    src, dst = view.data.edge_index[:, view.train]
    by_pair: dict[tuple[int, int], set[int]] = {}
    for s, t, p in zip(src.tolist(), dst.tolist(), pred.tolist(), strict=True):
        by_pair.setdefault((s, t), set()).add(p)
    assert all(len(classes) == 1 for classes in by_pair.values())


def test_training_is_deterministic_with_a_seed():
    records = synthetic_records(counts=(40, 30, 20))
    _, _, view = split(records)
    preds = [
        make_model("hybrid", seed=3, **{**FAST["hybrid"], "epochs": 3}).fit(view).predict(view)
        for _ in range(2)
    ]
    assert np.array_equal(*preds)


# -- no leakage from the test part -------------------------------------------------------------


def marker(i: int) -> str:
    """A word unique to sentence ``i`` (letters only, so the tokeniser keeps it whole)."""
    return "zzq" + "".join("abcdefghij"[int(d)] for d in str(i))


def with_test_only_tokens(records, test_index):
    """Append a word unique to each test sentence and one shared by all test sentences."""
    test = set(test_index.tolist())
    return [
        CitationRecord(r.source, r.target, r.label, f"{r.text} {marker(i)} zzqshared", r.line)
        if i in test
        else r
        for i, r in enumerate(records)
    ]


@pytest.mark.parametrize("name", ["svm", "text", "hybrid", "textgcn"])
def test_fold_vocabulary_has_no_test_only_token(name):
    records = synthetic_records(counts=(40, 30, 20))
    data = to_data(records)
    fold = stratified_folds(data.y, 4, seed=0)[0]
    data = to_data(with_test_only_tokens(records, fold.test))
    view = fold_view(data, fold)
    overrides = {**FAST[name], "epochs": 1} if name != "svm" else {}
    model = make_model(name, **overrides).fit(view)
    if name == "svm":
        vocabulary = {g for gram in model.vectorizer_.vocabulary_ for g in gram.split()}
    elif name == "textgcn":
        vocabulary = set(model.graph_.vocabulary)
    else:
        vocabulary = set(model.vocab_.itos[2:])  # without <pad> and <unk>
    train_tokens = {t for tokens in view.train_tokens for t in tokens}
    test_only = {t for i in fold.test for t in data.tokens[i]} - train_tokens
    assert {"zzqshared", marker(fold.test[0])} <= test_only
    assert vocabulary, "the model built no vocabulary"
    assert vocabulary <= train_tokens
    assert not vocabulary & test_only


def test_paper_features_ignore_test_only_tokens_and_labels():
    records = synthetic_records(counts=(40, 30, 20))
    data = to_data(records)
    fold = stratified_folds(data.y, 4, seed=0)[0]
    plain = paper_features(fold_view(data, fold), 8)
    marked = paper_features(fold_view(to_data(with_test_only_tokens(records, fold.test)), fold), 8)
    torch.testing.assert_close(plain, marked)
    # Changing test labels changes nothing either: the view holds none.
    flipped = [
        CitationRecord(r.source, r.target, "n" if i in set(fold.test.tolist()) else r.label,
                       r.text, r.line)
        for i, r in enumerate(records)
    ]  # fmt: skip
    torch.testing.assert_close(plain, paper_features(fold_view(to_data(flipped), fold), 8))
    assert plain.shape == (data.num_nodes, 2 * 8 + 2)


def test_fold_view_holds_no_test_labels():
    data, fold, view = split(synthetic_records(counts=(20, 12, 8)))
    assert "y" not in view.data
    assert np.array_equal(view.y_train, data.y[fold.train].numpy())
    assert view.y_train.size == fold.train.size


# -- TextGCN's graph against a hand count --------------------------------------------------------


def test_textgcn_graph_matches_a_hand_computed_tfidf_and_pmi():
    tokens = [["a", "b", "a"], ["a", "c"], ["b", "c"], ["a", "d", "e"]]
    train = np.array([0, 1, 2])  # document 3 is a test document: "d", "e" are test-only
    graph = textgcn_graph(tokens, train, min_df=1, window=20, min_cooccurrence=1)
    assert graph.vocabulary == ["a", "b", "c"]
    assert graph.num_docs == 4 and graph.num_nodes == 7
    weights = {
        (int(s), int(t)): float(w)
        for (s, t), w in zip(graph.edge_index.t().tolist(), graph.edge_weight, strict=True)
    }
    # TF-IDF with the smoothed IDF over the 3 training documents: df(a)=2, df(b)=2, df(c)=2.
    idf = math.log(4 / 3) + 1
    word = {"a": 4, "b": 5, "c": 6}
    assert weights[0, word["a"]] == pytest.approx(2 * idf, rel=1e-6)
    assert weights[0, word["b"]] == pytest.approx(idf, rel=1e-6)
    assert weights[3, word["a"]] == pytest.approx(idf, rel=1e-6)  # test doc -> training word
    assert (3, word["b"]) not in weights
    # PMI over 3 windows (one per short document): #W(a)=2, #W(b)=2, #W(c)=2, every pair 1.
    pmi = math.log(1 * 3 / (2 * 2))
    assert pmi < 0  # so no word-word edge survives here ...
    assert graph.num_word_word == 0
    # ... but a pair seen in every window of its words is positive:
    graph = textgcn_graph([["a", "b"], ["a", "b"], ["c"]], np.arange(3), min_df=1)
    pairs = {
        (int(s), int(t)): float(w)
        for (s, t), w in zip(graph.edge_index.t().tolist(), graph.edge_weight, strict=True)
    }
    assert pairs[3, 4] == pytest.approx(math.log(2 * 3 / (2 * 2)), rel=1e-6)
    assert pairs[4, 3] == pairs[3, 4]
    assert graph.num_word_word == 1


def test_textgcn_graph_counts_sliding_windows():
    # One document of 4 tokens with window 2: windows ab, bc, cd (#W = 3).
    tokens = [["a", "b", "c", "d"], ["a", "b"]]
    graph = textgcn_graph(tokens, np.arange(2), min_df=1, window=2, min_cooccurrence=1)
    co = Counter()
    windows = [("a", "b"), ("b", "c"), ("c", "d"), ("a", "b")]
    single = Counter(w for win in windows for w in set(win))
    for win in windows:
        co[tuple(sorted(win))] += 1
    words = {w: 2 + i for i, w in enumerate(graph.vocabulary)}
    got = {
        (int(s), int(t)): float(w)
        for (s, t), w in zip(graph.edge_index.t().tolist(), graph.edge_weight, strict=True)
    }
    for (u, v), n in co.items():
        expected = math.log(n * len(windows) / (single[u] * single[v]))
        key = (words[u], words[v])
        if expected > 0:
            assert got[key] == pytest.approx(expected, rel=1e-6)
        else:
            assert key not in got


def test_sliding_windows_and_pmi_edges_by_hand():
    windows = sliding_windows([[0, 1, 2, 3], [], [0, 1]], num_words=5, window=2)
    assert windows.toarray().tolist() == [
        [1, 1, 0, 0, 0],
        [0, 1, 1, 0, 0],
        [0, 0, 1, 1, 0],
        [1, 1, 0, 0, 0],
    ]  # the empty document has no window; a document of 2 ids has one
    # #W = 4; #W(0) = 2, #W(1) = 3, #W(2) = 2, #W(3) = 1; pairs 01: 2, 12: 1, 23: 1.
    r, c, pmi = pmi_edges(windows, min_cooccurrence=1)
    edges = sorted(zip(r.tolist(), c.tolist(), pmi.tolist(), strict=True))
    assert [(u, v) for u, v, _ in edges] == [(0, 1), (2, 3)]  # PMI(1, 2) = log(4/6) < 0
    assert [w for _, _, w in edges] == pytest.approx([math.log(2 * 4 / 6), math.log(4 / 2)])
    r, c, _ = pmi_edges(windows, min_cooccurrence=2)
    assert (r.tolist(), c.tolist()) == ([0], [1])
    none = sliding_windows([[], []], num_words=3, window=2)
    assert none.shape == (1, 3) and none.nnz == 0
    assert all(a.size == 0 for a in pmi_edges(none, min_cooccurrence=1))


# -- building blocks ---------------------------------------------------------------------------


def test_bilstm_encoder_shapes_and_padding():
    torch.manual_seed(0)
    encoder = BiLSTMEncoder(20, embed_dim=8, hidden=6, dropout=0.0).eval()
    ids = torch.tensor([[3, 4, 5, 0, 0], [7, 8, 9, 10, 11]])
    out = encoder(ids)
    assert out.shape == (2, 12)
    # The forward half of a sentence's pooled state does not see its padding.
    alone = encoder(ids[:1, :3])
    torch.testing.assert_close(out[0, :6], alone[0, :6])
    assert "dropout=0.0" in repr(encoder)


@pytest.mark.parametrize("conv", ["gcn", "gat"])
def test_paper_gnn_shapes(conv):
    gnn = PaperGNN(5, 3, embed_dim=4, hidden=8, conv=conv, heads=2)
    edge_index = torch.tensor([[0, 1, 2, 3], [1, 2, 3, 4]])
    assert gnn(torch.randn(5, 3), edge_index).shape == (5, 8)
    structure = PaperGNN(5, 0, embed_dim=4, hidden=8, conv=conv, heads=2)
    assert structure(None, edge_index).shape == (5, 8)


# -- errors ------------------------------------------------------------------------------------


def test_make_model_errors():
    with pytest.raises(InputError, match="unknown model 'bert'; choose from svm, text"):
        make_model("bert")
    with pytest.raises(InputError, match="has no hyper-parameter colour"):
        make_model("svm", colour="red")
    with pytest.raises(InputError, match="fusion must be one of 'concat', 'gated'"):
        make_model("hybrid", fusion="sum")
    with pytest.raises(InputError, match="conv must be one of 'gcn', 'gat'"):
        make_model("graph", conv="sage")
    with pytest.raises(InputError, match="features must be one of"):
        make_model("graph", features="labels")
    with pytest.raises(InputError, match="lr must be a finite number > 0, got 0"):
        make_model("text", lr=0)
    with pytest.raises(InputError, match=r"dropout must be a number in \[0, 1\)"):
        make_model("text", dropout=1.5)
    with pytest.raises(InputError, match=r"val_fraction must be a number in \(0, 1\), got 1.0"):
        make_model("textgcn", val_fraction=1.0)


@pytest.mark.parametrize("name", ["svm", "cs", "labels", "rgcn"])
@pytest.mark.parametrize("ngram_range", [(3, 1), (0, 2), (1,), "13", (1.0, 2.0)])
def test_make_model_refuses_an_empty_or_malformed_ngram_range(name, ngram_range):
    # (3, 1) used to be accepted: scikit-learn then finds no n-gram at all.
    with pytest.raises(InputError, match=r"ngram_range must be a pair \(min_n, max_n\)"):
        make_model(name, ngram_range=ngram_range)
    assert make_model(name, ngram_range=(2, 2)).ngram_range == (2, 2)
    assert make_model(name, ngram_range=[1, 3]).ngram_range == [1, 3]  # a list from JSON


@pytest.mark.parametrize("option", ["window", "min_df", "min_cooccurrence"])
def test_textgcn_model_checks_its_graph_options_at_construction(option):
    # textgcn_graph refuses them; the model used to accept them and fail only in fit.
    with pytest.raises(InputError, match=rf"{option} must be an integer >= 1, got 0"):
        make_model("textgcn", **{option: 0})
    with pytest.raises(InputError, match=rf"{option} must be an integer >= 1, got 0"):
        textgcn_graph([["a", "b"]] * 3, np.array([0, 1]), **{option: 0})


def test_every_name_makes_a_model_and_the_package_resolves_every_export():
    import gnnkit.citation as package

    for name in MODEL_NAMES:
        model = make_model(name, seed=5)
        assert model.seed == 5 and model.name == name.split("-")[0]
    assert make_model("graph-structure").features == "embedding"
    assert make_model("hybrid-concat", fusion="gated").fusion == "gated"  # overrides win
    for name in package.__all__:
        assert getattr(package, name) is not None
    assert set(package.__all__) <= set(dir(package))
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        package.Nope  # noqa: B018


def test_module_errors():
    with pytest.raises(InputError, match="divisible by heads"):
        PaperGNN(5, 3, hidden=10, conv="gat", heads=4)
    with pytest.raises(InputError, match="needs paper embeddings"):
        PaperGNN(5, 0, embed_dim=0)
    with pytest.raises(InputError, match="vocab_size must be an integer >= 1, got 0"):
        BiLSTMEncoder(0)
    with pytest.raises(InputError, match="min_df must be an integer >= 1, got 0"):
        textgcn_graph([["a"]], np.array([0]), min_df=0)
    with pytest.raises(InputError, match="at least one training document"):
        textgcn_graph([["a"]], np.array([], dtype=int))
    with pytest.raises(InputError, match="lower min_df"):
        textgcn_graph([["a"], ["b"]], np.array([0, 1]), min_df=2)
    tokens = [["a", "b"]] * 3
    with pytest.raises(InputError, match=r"train holds document index\(es\) 9 outside \[0, 3\)"):
        textgcn_graph(tokens, np.array([0, 9]))
    # -1 would silently pick the last document.
    with pytest.raises(InputError, match=r"train holds document index\(es\) -1 outside"):
        textgcn_graph(tokens, np.array([0, -1]))
    with pytest.raises(InputError, match="train must be a 1-D array of document indices"):
        textgcn_graph(tokens, np.array([0.0, 1.0]))


@pytest.mark.parametrize("name", ["svm", "text", "graph", "hybrid", "textgcn"])
def test_predict_before_fit_and_bad_views(name):
    data, fold, view = split(synthetic_records(counts=(20, 12, 8)))
    model = make_model(name)
    with pytest.raises(InputError, match="not fitted; call fit"):
        model.predict(view)
    with pytest.raises(InputError, match="expects a FoldView"):
        model.fit(data)
    one_class = Fold(0, fold.train[view.y_train == 0], fold.test)
    with pytest.raises(InputError, match="single class"):
        model.fit(fold_view(data, one_class))
