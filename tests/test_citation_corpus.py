"""The Athar corpus reader, tokeniser, vocabulary and graph (gnnkit.citation.corpus)."""

from __future__ import annotations

import csv
import logging
import os
from collections import Counter

import pytest
import torch

from gnnkit.citation import corpus as athar
from gnnkit.errors import DatasetError, InputError

HEADER = "# a header line\n# Source_Paper  Target_Paper  Sentiment  Citation_Text\n\n"


def write(tmp_path, body: str, name: str = "corpus.txt"):
    path = tmp_path / name
    path.write_text(HEADER + body, encoding="utf-8")
    return path


# -- tokeniser ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Jing and McKeown (2000) proposed it.", ["<cit>", "proposed", "it", "."]),
        ("Mani et al. (1999) is good", ["<cit>", "is", "good"]),
        ("as in (Brill, 1995; Cutting et al., 1992).", ["as", "in", "<cit>", "."]),
        ("see [12] and [3, 4]", ["see", "<cit>", "and", "<cit>"]),
        ("Collins' (1999) parser", ["<cit>", "parser"]),
        ("van Halteren et al. (1998) found", ["<cit>", "found"]),
        ("BLEU of 23.5 on 2,000 sentences", ["bleu", "of", "<num>", "on", "<num>", "sentences"]),
        ("cut-and-paste, don't!", ["cut-and-paste", ",", "don't", "!"]),
        ("(see Table 3)", ["(", "see", "table", "<num>", ")"]),
    ],
)
def test_tokenize_examples(text, expected):
    assert athar.tokenize(text) == expected


def test_tokenize_keeps_every_non_space_character_outside_citations():
    text = "A model: p(x|y) = 0.5; great!"
    tokens = athar.tokenize(text)
    assert athar.CITATION_TOKEN not in tokens
    assert "".join(t if t != "<num>" else "0.5" for t in tokens) == text.lower().replace(" ", "")


def test_tokenize_rejects_non_strings():
    with pytest.raises(InputError, match="expects a str"):
        athar.tokenize(["not", "text"])


# -- vocabulary --------------------------------------------------------------------------------


def test_vocabulary_orders_by_frequency_and_maps_unknowns():
    vocab = athar.Vocabulary.from_corpus([["b", "a", "b"], ["c", "b", "a"]], min_count=2)
    assert vocab.itos == ["<pad>", "<unk>", "b", "a"]
    assert vocab.encode(["a", "c", "zzz", "b"]) == [3, 1, 1, 2]
    assert "c" not in vocab and "a" in vocab
    assert len(vocab) == 4


def test_vocabulary_errors():
    with pytest.raises(InputError, match="min_count must be an integer >= 1"):
        athar.Vocabulary.from_corpus([["a"]], min_count=0)
    with pytest.raises(InputError, match="must be distinct"):
        athar.Vocabulary(["a", "a"])
    with pytest.raises(InputError, match="must be str"):
        athar.Vocabulary(["a", 3])


# -- reader ------------------------------------------------------------------------------------


def test_read_corpus_parses_records_with_line_numbers(tmp_path):
    path = write(
        tmp_path,
        'P1\tP2\to\t"We use (Smith, 2001)."\n'
        "\n"
        "P3\tP2\tp\tAn excellent idea of Smith (2001).\n"
        "# a comment in the middle\n"
        "P1\tP4\tn\tIt fails.\n",
    )
    corpus = athar.read_corpus(path)
    assert [r.line for r in corpus.records] == [4, 6, 8]
    assert corpus.records[0] == athar.CitationRecord("P1", "P2", "o", "We use (Smith, 2001).", 4)
    assert [r.label_id for r in corpus.records] == [0, 1, 2]
    assert corpus.counts() == {"o": 1, "p": 1, "n": 1}
    assert corpus.skipped == []


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "P1\tP2\to\n",
            r"corpus.txt:5: malformed corpus line: expected 4 tab-separated fields.*got 3",
        ),
        ("P1\tP2\tx\ttext\n", r":5: .*unknown sentiment label 'x'; expected one of o, p, n"),
        ("P1\tP2\to\ttext\textra\n", r":5: .*got 5"),
        ("\tP2\to\ttext\n", r":5: .*empty paper id"),
        ('P1\tP2\to\t""\n', r":5: .*empty citation text"),
    ],
)
def test_malformed_line_is_reported_with_its_number(tmp_path, line, message):
    path = write(tmp_path, "P1\tP2\to\tfine.\n" + line)
    with pytest.raises(DatasetError, match=message):
        athar.read_corpus(path)
    with pytest.raises(DatasetError, match="--skip-malformed"):
        athar.read_corpus(path)


def test_skip_malformed_counts_and_warns(tmp_path, caplog):
    path = write(tmp_path, "P1\tP2\to\tfine.\nbad line\nP1\tP2\tq\ttext\nP2\tP3\tp\tgood.\n")
    with caplog.at_level(logging.WARNING, logger="gnnkit"):
        corpus = athar.read_corpus(path, skip_malformed=True)
    assert len(corpus) == 2
    assert [n for n, _ in corpus.skipped] == [5, 6]
    assert "skipped 2 malformed line(s)" in caplog.text
    assert "line 5" in caplog.text
    data = athar.load_citations(path, skip_malformed=True)
    assert data.skipped_lines == 2


def test_reader_file_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        athar.read_corpus(tmp_path / "missing.txt")
    with pytest.raises(DatasetError, match="holds no records"):
        athar.read_corpus(write(tmp_path, "# only comments\n"))
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(b"P1\tP2\to\tna\xefve\n")
    with pytest.raises(DatasetError, match="not UTF-8"):
        athar.read_corpus(bad)
    os.mkfifo(tmp_path / "pipe")  # a read of it would wait for a writer forever
    with pytest.raises(DatasetError, match=r"pipe is a FIFO, not a regular file; give the"):
        athar.read_corpus(tmp_path / "pipe")
    with pytest.raises(DatasetError, match=r"corpus .* is a folder, not a file"):
        athar.read_corpus(tmp_path)


# -- graph -------------------------------------------------------------------------------------


def test_to_data_keeps_multi_edges_and_builds_the_simple_graph(tmp_path):
    path = write(
        tmp_path,
        "A\tB\to\tone.\nA\tB\tp\ttwo.\nC\tB\tn\tthree.\nB\tA\to\tfour.\nA\tB\to\tfive.\n",
    )
    data = athar.to_data(athar.read_corpus(path))
    assert data.paper_ids == ["A", "B", "C"]
    assert data.num_nodes == 3
    assert data.edge_index.tolist() == [[0, 0, 2, 1, 0], [1, 1, 1, 0, 1]]
    assert data.y.tolist() == [0, 1, 2, 0, 0]
    assert data.line.tolist() == [4, 5, 6, 7, 8]
    assert data.tokens[1] == ["two", "."]
    assert data.citation_edge_index.tolist() == [[0, 2, 1], [1, 1, 0]]
    # Each sentence's pair column points at its own (source, target).
    pairs = data.citation_edge_index[:, data.edge_pair]
    assert torch.equal(pairs, data.edge_index)
    assert data.num_classes == 3
    assert data.class_names == ["neutral", "positive", "negative"]


def test_to_data_rejects_an_empty_corpus():
    with pytest.raises(InputError, match="at least one citation record"):
        athar.to_data([])


def test_to_data_rejects_what_is_not_a_citation_record():
    record = athar.CitationRecord("A", "B", "o", "one.", 1)
    expected = "takes a CitationCorpus or a sequence of CitationRecord"
    with pytest.raises(InputError, match=f"{expected} .*, got str at position 0"):
        athar.to_data(["a"])
    with pytest.raises(InputError, match=f"{expected} .*, got tuple at position 1"):
        athar.to_data([record, ("A", "B", "o", "two.", 2)])
    with pytest.raises(InputError, match=f"{expected} .*, got str$"):
        athar.to_data("A\tB\to\tone.")
    with pytest.raises(InputError, match=f"{expected} .*, got int$"):
        athar.to_data(5)
    assert athar.to_data(iter([record])).num_nodes == 2  # any iterable of records still works


def test_label_homophily_against_brute_force(tmp_path):
    rows = [("A", "B", "o"), ("A", "B", "o"), ("A", "B", "p"), ("C", "B", "n"), ("C", "D", "p")]
    rows += [("C", "D", "p"), ("E", "B", "o"), ("A", "D", "n")]
    path = write(
        tmp_path, "".join(f"{s}\t{t}\t{y}\ttext {i}.\n" for i, (s, t, y) in enumerate(rows))
    )
    data = athar.load_citations(path)
    for group, key in (
        ("pair", lambda r: r[:2]),
        ("source", lambda r: r[0]),
        ("target", lambda r: r[1]),
    ):
        pairs = [(a[2], b[2]) for i, a in enumerate(rows) for j, b in enumerate(rows)
                 if i != j and key(a) == key(b)]  # fmt: skip
        result = athar.label_homophily(data, group)
        assert result["pairs"] == len(pairs)
        assert result["agreement"] == pytest.approx(sum(a == b for a, b in pairs) / len(pairs))
        first = Counter(a for a, _ in pairs)
        second = Counter(b for _, b in pairs)
        chance = sum(first[c] * second[c] for c in "opn") / len(pairs) ** 2
        assert result["chance"] == pytest.approx(chance)
        for code, name in zip("opn", data.class_names, strict=True):
            if first[code]:
                given = sum(a == b == code for a, b in pairs) / first[code]
                assert result["lift"][name] == pytest.approx(given / (second[code] / len(pairs)))
    with pytest.raises(InputError, match="group must be one of pair, source, target"):
        athar.label_homophily(data, "venue")


# -- the real corpus ---------------------------------------------------------------------------


@pytest.mark.data
def test_athar_counts_match_the_published_figures(dataset):
    path = dataset("athar-citations")
    data = athar.load_citations(path)
    # The figures of Athar (2011) and the dataset README: 8,736 sentences (o 7,627, p 829,
    # n 280), 3,069 papers, 5,042 distinct paper-to-paper edges.
    assert data.y.numel() == 8736
    assert torch.bincount(data.y).tolist() == [7627, 829, 280]
    assert data.num_nodes == 3069
    assert data.citation_edge_index.size(1) == 5042
    assert data.skipped_lines == 0

    # An independent count with the csv module.
    with open(path, encoding="utf-8", newline="") as handle:
        rows = [
            row
            for row in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
            if row and not row[0].startswith("#")
        ]
    assert len(rows) == 8736
    assert Counter(r[2] for r in rows) == {"o": 7627, "p": 829, "n": 280}
    assert len({r[0] for r in rows} | {r[1] for r in rows}) == data.num_nodes
    assert len({(r[0], r[1]) for r in rows}) == data.citation_edge_index.size(1)
    # Node ids keep the paper ids: every sentence's endpoints are its own papers.
    src, dst = data.edge_index
    assert [
        (data.paper_ids[s], data.paper_ids[t]) for s, t in zip(src[:50], dst[:50], strict=True)
    ] == [(r[0], r[1]) for r in rows[:50]]
