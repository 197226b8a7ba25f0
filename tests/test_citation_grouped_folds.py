"""Grouped stratified folds (gnnkit.citation.folds: text_groups, citation_folds): issue 21, part 2.

The reference for "the same sentence" is written here independently of the library (a
hand-built table of texts, and on the real corpus a plain regular-expression normaliser).
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np
import pytest

from gnnkit.citation import (
    CitationRecord,
    citation_folds,
    normalize_text,
    stratified_folds,
    text_groups,
    to_data,
)
from gnnkit.errors import InputError


def reference_key(text: str) -> str:
    """Lower-case words only: an independent notion of "the same sentence"."""
    return " ".join(re.findall(r"[^\W_]+", unicodedata.normalize("NFKC", text).lower()))


def test_normalize_text_merges_only_case_spacing_and_punctuation():
    assert normalize_text('  "Jing and McKeown (2000)  proposed it."') == (
        "jing and mckeown 2000 proposed it"
    )
    assert normalize_text("A-B") == normalize_text("a b") == "a b"
    assert normalize_text("word") != normalize_text("words")
    with pytest.raises(InputError, match="expects a str, got int"):
        normalize_text(3)


def test_text_groups_by_hand():
    texts = ["Good work.", "good  work", "Bad work.", "GOOD WORK!", "bad-work"]
    assert text_groups(texts).tolist() == [0, 0, 1, 0, 1]
    assert text_groups([]).tolist() == []


def duplicated_corpus(seed: int = 0):
    """120 distinct sentences, 40 of them copied 1-3 times (other target, same or other label)."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(3, size=120, p=[0.6, 0.25, 0.15])
    records = []
    for i, c in enumerate(labels):
        copies = 1 + (rng.integers(1, 4) if i < 40 else 0)
        for k in range(copies):
            label = c if k == 0 or rng.random() < 0.8 else rng.integers(3)
            text = f"Sentence {i} says {['nothing', 'good', 'bad'][c]}."
            if k % 2:
                text = text.upper()  # same normalised text
            records.append(CitationRecord(f"S{i}", f"T{k}", "opn"[label], text, len(records)))
    order = rng.permutation(len(records))
    return to_data([records[j] for j in order])


@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("seed", [0, 1])
def test_grouped_folds_partition_and_never_split_a_sentence(k, seed):
    data = duplicated_corpus(seed)
    folds = citation_folds(data, k, seed=seed)
    assert len(folds) == k
    tests = np.concatenate([f.test for f in folds])
    assert np.array_equal(np.sort(tests), np.arange(data.y.numel()))
    keys = np.array([reference_key(t) for t in data.text])
    for fold in folds:
        assert np.intersect1d(fold.train, fold.test).size == 0
        assert not set(keys[fold.train]) & set(keys[fold.test])


def test_plain_stratified_folds_do_split_copies():
    """The flaw being fixed: the old folds put copies in training and test."""
    data = duplicated_corpus()
    keys = np.array([reference_key(t) for t in data.text])
    folds = citation_folds(data, 5, seed=0, grouped=False)
    shared = sum(len(set(keys[f.train]) & set(keys[f.test])) for f in folds)
    assert shared > 0
    old = stratified_folds(data.y, 5, seed=0)
    assert all(np.array_equal(a.test, b.test) for a, b in zip(folds, old, strict=True))


def test_grouped_folds_are_seeded_and_stratified():
    data = duplicated_corpus()
    y = data.y.numpy()
    a, b = citation_folds(data, 4, seed=3), citation_folds(data, 4, seed=3)
    assert all(np.array_equal(f.test, g.test) for f, g in zip(a, b, strict=True))
    c = citation_folds(data, 4, seed=4)
    assert not all(np.array_equal(f.test, g.test) for f, g in zip(a, c, strict=True))
    share = np.bincount(y, minlength=3) / y.size
    for fold in a:
        test_share = np.bincount(y[fold.test], minlength=3) / fold.test.size
        assert np.abs(test_share - share).max() < 0.06


def test_grouped_folds_errors():
    data = duplicated_corpus()
    with pytest.raises(InputError, match="one id per sentence"):
        stratified_folds(data.y, 3, groups=np.zeros(4))
    y = np.array([0, 1] * 10)
    with pytest.raises(InputError, match="needs 5 groups, got 2"):
        stratified_folds(y, 5, groups=np.arange(20) % 2)


@pytest.mark.data
def test_athar_grouped_folds_no_shared_text_and_stratified(dataset):
    from gnnkit.citation import load_citations

    data = load_citations(dataset("athar-citations"))
    keys = np.array([reference_key(t) for t in data.text])
    assert len(set(keys)) < keys.size - 500  # hundreds of repeated sentences
    y = data.y.numpy()
    share = np.bincount(y, minlength=3) / y.size
    folds = citation_folds(data, 10, seed=0)
    for fold in folds:
        assert not set(keys[fold.train]) & set(keys[fold.test])
        test_share = np.bincount(y[fold.test], minlength=3) / fold.test.size
        assert np.abs(test_share - share).max() < 0.01
        assert abs(fold.test.size - y.size / 10) < 0.05 * y.size / 10
