"""Bad inputs to the citation package: each is refused with one line saying what and how to fix.

Also the module split of the folds (``gnnkit.citation.folds``) from cross-validation
(``gnnkit.citation.cv``): every name imported from the old place is the same object.
References written here: a dense ``D^-1/2 A D^-1/2`` in numpy, and the text-only forward pass of
:class:`SentenceRGCN` with no relation written out with its own weights.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from gnnkit.citation import (
    CitationRecord,
    SentenceRGCN,
    SVMModel,
    Vocabulary,
    citation_folds,
    cross_validate,
    fold_view,
    inner_split,
    make_model,
    normalized_adjacency,
    paper_features,
    to_data,
)
from gnnkit.citation.graph import GraphModel
from gnnkit.errors import InputError


def corpus(counts=(20, 10, 6), seed=0):
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.repeat(np.arange(len(counts)), counts))
    records = [
        CitationRecord(f"S{i % 7}", f"T{i % 5}", "opn"[c], f"word{c} filler {i} text.", i + 1)
        for i, c in enumerate(y)
    ]
    return to_data(records)


# -- the module split --------------------------------------------------------------------------


def test_fold_names_live_in_folds_and_still_import_from_cv():
    from gnnkit.citation import cv, folds

    for name in folds.__all__:
        assert getattr(cv, name) is getattr(folds, name), name
    assert set(cv.__all__) == {"cross_validate", "fold_seed", "set_threads"}
    assert not set(cv.__all__) & set(folds.__all__)
    import gnnkit.citation as package

    for name in folds.__all__:
        if name in package.__all__:
            assert getattr(package, name) is getattr(folds, name), name


# -- cross_validate ----------------------------------------------------------------------------


def test_cross_validate_refuses_no_fold():
    data = corpus()
    svm = functools.partial(make_model, "svm")
    with pytest.raises(InputError, match=r"needs at least one fold, got none; .*citation_folds"):
        cross_validate(data, {"svm": svm}, [])
    with pytest.raises(InputError, match=r"needs at least one fold"):
        cross_validate(data, {"svm": svm}, ())


@pytest.mark.parametrize(
    "factory, got",
    [(SVMModel(), "SVMModel"), ("svm", "str"), (None, "NoneType")],
)
def test_cross_validate_refuses_a_model_that_is_not_a_factory(factory, got):
    data = corpus()
    folds = citation_folds(data, 2)
    with pytest.raises(
        InputError, match=rf"models\['m'\] must be callable as factory\(seed=...\).*got {got}; "
    ):
        cross_validate(data, {"m": factory}, folds)


def test_cross_validate_refuses_what_is_not_a_mapping_or_a_fold():
    data = corpus()
    folds = citation_folds(data, 2)
    svm = functools.partial(make_model, "svm")
    with pytest.raises(InputError, match=r"models must be a mapping name -> factory.*got list"):
        cross_validate(data, [svm], folds)
    with pytest.raises(InputError, match=r"folds must be a sequence of Fold.*got generator"):
        cross_validate(data, {"svm": svm}, (f for f in folds))
    with pytest.raises(InputError, match=r"folds\[1\] must be a Fold .*got tuple"):
        cross_validate(data, {"svm": svm}, [folds[0], (folds[1].train, folds[1].test)])
    # A class is a factory: it is called as SVMModel(seed=k) and runs.
    result = cross_validate(data, {"svm": SVMModel}, folds)
    assert len(result.scores["svm"]) == 2


# -- inner_split -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "index, labels, shapes",
    [
        (np.arange(10), np.zeros(7, dtype=np.int64), r"\(10,\) and labels of shape \(7,\)"),
        (np.arange(10), np.tile([0, 1], 6), r"\(10,\) and labels of shape \(12,\)"),
        (np.arange(10).reshape(2, 5), np.zeros((2, 5), dtype=np.int64), r"\(2, 5\) and"),
    ],
)
def test_inner_split_refuses_labels_that_do_not_match_the_index(index, labels, shapes):
    with pytest.raises(InputError, match=rf"one label per index .*got index of shape {shapes}"):
        inner_split(index, labels)


def test_inner_split_keeps_matching_inputs():
    index = np.arange(100, 140)
    labels = np.tile([0, 1], 20)
    fit, val = inner_split(index, labels, fraction=0.25, seed=3)
    assert np.array_equal(np.sort(np.concatenate([fit, val])), index)
    assert np.bincount(labels[val - 100]).tolist() == [5, 5]  # stratified


# -- SentenceRGCN ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, message",
    [
        ({"num_relations": -1}, r"num_relations must be an integer >= 0, got -1"),
        ({"num_relations": 1.5}, r"num_relations must be an integer >= 0, got 1.5"),
        ({"hidden": 0}, r"hidden must be an integer >= 1, got 0"),
        ({"layers": 0}, r"layers must be an integer >= 1, got 0"),
        ({"label_channels": -2}, r"label_channels must be an integer >= 0, got -2"),
        ({"dropout": 1.0}, r"dropout must be"),
    ],
)
def test_sentence_rgcn_refuses_bad_sizes(change, message):
    args = {"in_channels": 5, "hidden": 4, "num_relations": 2, "out_channels": 3, **change}
    with pytest.raises(InputError, match=message):
        SentenceRGCN(**args)


def test_sentence_rgcn_without_relations_is_the_text_only_network():
    # num_relations=0 is the rgcn-text control: the self term, no relational sum.
    torch.manual_seed(0)
    model = SentenceRGCN(6, 4, 0, 3, layers=2).eval()
    x = torch.rand(5, 6).to_sparse()
    h = torch.relu(x.to_dense() @ model.project)
    for root in model.root:
        h = torch.relu(h @ root.weight.T + root.bias)
    expected = h @ model.head.weight.T + model.head.bias
    torch.testing.assert_close(model(x, [], None), expected)
    with pytest.raises(InputError, match="expected 0 adjacency matrices, got 1"):
        model(x, [torch.eye(5)], None)


# -- paper_features ----------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [0, -3, 2.0, True])
def test_paper_features_refuses_a_dim_below_one(dim):
    data = corpus()
    view = fold_view(data, citation_folds(data, 2)[0])
    with pytest.raises(InputError, match=rf"dim must be an integer >= 1, got {dim!r}"):
        paper_features(view, dim=dim)


def test_graph_model_refuses_a_feature_dim_below_one():
    with pytest.raises(InputError, match=r"feature_dim must be an integer >= 1, got 0"):
        GraphModel(feature_dim=0)


# -- Vocabulary --------------------------------------------------------------------------------


@pytest.mark.parametrize("tokens", ["abc", b"abc"])
def test_vocabulary_refuses_a_plain_string(tokens):
    with pytest.raises(InputError, match=r"Vocabulary takes a list of tokens, got the (str|bytes)"):
        Vocabulary(tokens)
    assert Vocabulary(["abc"]).itos == ["<pad>", "<unk>", "abc"]  # one token, not three


def test_vocabulary_from_corpus_refuses_untokenised_sentences():
    with pytest.raises(InputError, match=r"but sentence 1 is the str 'not split'; pass tokenize"):
        Vocabulary.from_corpus([["a", "b"], "not split"])
    with pytest.raises(InputError, match=r"from_corpus takes a list of tokenised sentences"):
        Vocabulary.from_corpus("a b")
    vocab = Vocabulary.from_corpus([["b", "a"], ["b"]])
    assert vocab.itos == ["<pad>", "<unk>", "b", "a"]


# -- normalized_adjacency ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "adjacency, got",
    [
        (torch.ones(3, 3), r"Tensor of shape \(3, 3\)"),
        (torch.ones(3, 3).to_sparse(), r"Tensor of shape \(3, 3\)"),
        (np.ones((3, 3)), r"ndarray of shape \(3, 3\)"),
        ([[0, 1], [1, 0]], r"list;"),
    ],
)
def test_normalized_adjacency_refuses_what_is_not_scipy_sparse(adjacency, got):
    with pytest.raises(InputError, match=rf"takes a scipy.sparse matrix, got {got}"):
        normalized_adjacency(adjacency)


@pytest.mark.parametrize(
    "value, shown",
    [(-1.0, r"-1\.0 at \(0, 2\), 2 such"), (np.nan, r"nan at \(0, 2\), 2 such"), (np.inf, "inf")],
)
def test_normalized_adjacency_refuses_negative_or_non_finite_weights(value, shown):
    a = np.array([[0, 1, value], [1, 0, 1], [value, 1, 0]])
    with pytest.raises(InputError, match=rf"must be finite and >= 0 .*got {shown}"):
        normalized_adjacency(sp.csr_matrix(a))


def test_normalized_adjacency_takes_sparse_arrays_and_matches_dense():
    a = np.array([[0, 2.0, 1, 0], [2, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
    d = a.sum(1)
    inv = np.where(d > 0, 1 / np.sqrt(np.where(d > 0, d, 1)), 0)
    expected = inv[:, None] * a * inv
    for form in (sp.csr_matrix(a), sp.coo_array(a), sp.lil_matrix(a)):
        np.testing.assert_allclose(normalized_adjacency(form).toarray(), expected)
