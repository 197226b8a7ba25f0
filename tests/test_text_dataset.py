"""Vocabulary, corpus loading and windows of gnnkit.seq.charlm."""

from __future__ import annotations

import pytest
import torch

from gnnkit.errors import InputError
from gnnkit.seq.charlm import TextDataset, Vocabulary, load_corpus, strip_gutenberg

TEXT = "the quick brown fox jumps over the lazy dog. " * 20


# ------------------------------------------------------------------------------ vocabulary
def test_vocabulary_round_trip_and_order():
    vocab = Vocabulary.from_text("banana!")
    assert vocab.chars == ("!", "a", "b", "n")  # code-point order
    ids = vocab.encode("banana")
    assert ids.dtype == torch.long
    assert ids.tolist() == [2, 1, 3, 1, 3, 1]
    assert vocab.decode(ids) == "banana"
    assert vocab.decode([0, 2]) == "!b"
    assert len(vocab) == 4 and "n" in vocab and "z" not in vocab
    assert Vocabulary(vocab.to_list()) == vocab
    assert "4 characters" in repr(vocab)


def test_vocabulary_any_unicode():
    text = "naïve 😀 café\n"
    vocab = Vocabulary.from_text(text)
    assert vocab.decode(vocab.encode(text)) == text
    assert vocab.encode("").tolist() == []


def test_vocabulary_unknown_characters_are_listed():
    vocab = Vocabulary.from_text("abc")
    with pytest.raises(InputError, match=r"2 character\(s\) outside.*'x'.*'é' \(U\+00E9"):
        vocab.encode("abxé", what="prompt")
    assert vocab.unknown("abxéx") == ["x", "é"]


def test_vocabulary_skip_unknown():
    vocab = Vocabulary.from_text("abc")
    assert vocab.decode(vocab.encode("axbyc", unknown="skip")) == "abc"


@pytest.mark.parametrize(
    ("chars", "match"),
    [
        (["a", "a"], "distinct; repeated: \\['a'\\]"),
        (["ab"], "single characters"),
        ([], "at least one character"),
    ],
)
def test_vocabulary_bad_chars(chars, match):
    with pytest.raises(InputError, match=match):
        Vocabulary(chars)


def test_vocabulary_bad_arguments():
    vocab = Vocabulary.from_text("abc")
    with pytest.raises(InputError, match="unknown must be 'error' or 'skip'"):
        vocab.encode("a", unknown="drop")
    with pytest.raises(InputError, match=r"ids must be integers in 0 \.\. 2"):
        vocab.decode([0, 7])
    with pytest.raises(InputError, match="empty text"):
        Vocabulary.from_text("")


# ---------------------------------------------------------------------------------- corpus
def test_strip_gutenberg_keeps_only_the_body():
    text = (
        "The Project Gutenberg EBook of X\nLicence #1 $\n\n"
        "*** START OF THIS PROJECT GUTENBERG EBOOK X ***\n\n\nBody line.\nMore.\n\n"
        "*** END OF THIS PROJECT GUTENBERG EBOOK X ***\nfooter [1]\n"
    )
    assert strip_gutenberg(text) == "Body line.\nMore.\n"
    assert strip_gutenberg("no markers here\n") == "no markers here\n"


def test_load_corpus_from_file(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_bytes(b"line one\r\nline two\r\n")
    text, name = load_corpus(path)
    assert text == "line one\nline two\n"  # universal newlines
    assert name == "corpus.txt"


def test_load_corpus_errors(tmp_path):
    with pytest.raises(InputError, match=r"neither a registered text corpus.*bartleby"):
        load_corpus(tmp_path / "missing.txt")
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(b"caf\xe9\n")
    with pytest.raises(InputError, match="not UTF-8 text"):
        load_corpus(bad)
    with pytest.raises(InputError, match="is a node dataset, not a text corpus"):
        load_corpus("cora")
    with pytest.raises(InputError, match="gutenberg must be 'strip' or 'keep'"):
        load_corpus(bad, gutenberg="remove")


@pytest.mark.data
def test_registered_corpora(dataset):
    raw = dataset("bartleby")
    body, name = load_corpus("bartleby")
    assert name == "bartleby"
    assert len(set(body)) == 65  # the report's count: the body without the licence
    assert len(set(raw)) > 65
    assert body in raw
    keep, _ = load_corpus("bartleby", gutenberg="keep")
    assert keep == raw
    tutorial, _ = load_corpus("pydoc-tutorial")
    assert tutorial == dataset("pydoc-tutorial")


# -------------------------------------------------------------------------------- windows
def test_windows_targets_are_inputs_shifted_by_one():
    data = TextDataset(TEXT, 7, val_fraction=0.1)
    ids = data.vocabulary.encode(TEXT)
    for i in (0, 1, 13, len(data) - 1):
        x, y = data[i]
        assert x.tolist() == ids[i : i + 7].tolist()
        assert y.tolist() == ids[i + 1 : i + 8].tolist()
    x, y = data.sample_batch(16, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (16, 7)
    assert torch.equal(x[:, 1:], y[:, :-1])
    # every sampled window is a piece of the training text
    train = data.vocabulary.decode(data.train_ids)
    for row_x, row_y in zip(x, y, strict=True):
        window = data.vocabulary.decode(row_x) + data.vocabulary.decode(row_y[-1:])
        assert window in train


def test_split_holds_out_the_last_tenth():
    text = "".join(chr(ord("a") + i % 26) for i in range(1000))
    data = TextDataset(text, 10, val_fraction=0.1)
    assert data.train_ids.numel() == 900 and data.val_ids.numel() == 100
    assert data.vocabulary.decode(data.val_ids) == text[900:]
    x, y = data.windows("val")
    assert x.shape == (9, 10)  # non-overlapping windows of the 100 validation characters
    assert data.vocabulary.decode(x[1]) == text[910:920]
    assert data.vocabulary.decode(y[1]) == text[911:921]
    xs, _ = data.windows("train", limit=5)
    assert xs.shape == (5, 10)
    assert len(data) == 890
    assert data.info()["val_chars"] == 100


def test_no_validation_part():
    data = TextDataset(TEXT, 5, val_fraction=0.0)
    assert data.val_ids.numel() == 0
    with pytest.raises(InputError, match="no validation part"):
        data.windows("val")
    with pytest.raises(InputError, match="split must be 'train' or 'val'"):
        data.windows("test")


def test_window_index_out_of_range():
    data = TextDataset(TEXT, 5)
    with pytest.raises(IndexError, match="out of range"):
        data[len(data)]
    assert torch.equal(data[-1][0], data[len(data) - 1][0])


@pytest.mark.parametrize(
    ("text", "kwargs", "match"),
    [
        ("", {}, "is empty"),
        ("abc" * 5, {}, "too short: its training part holds"),
        ("abcdefgh" * 5, {"val_fraction": 0.1}, "too short: its validation part"),
        ("abc" * 50, {"val_fraction": 1.0}, r"val_fraction must lie in \[0, 1\)"),
        (b"bytes", {}, "text must be a str"),
    ],
)
def test_dataset_bad_input(text, kwargs, match):
    with pytest.raises(InputError, match=match):
        TextDataset(text, 30, name="corpus", **kwargs)


def test_dataset_bad_seq_length_and_vocabulary():
    with pytest.raises(InputError, match="seq_length must be an integer >= 1"):
        TextDataset(TEXT, 0)
    with pytest.raises(InputError, match=r"outside the model's vocabulary.*'q'"):
        TextDataset(TEXT, 5, vocabulary=Vocabulary.from_text(TEXT.replace("q", "")))
