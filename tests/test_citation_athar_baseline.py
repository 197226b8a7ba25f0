"""The feature and scoring helpers of ``benchmarks/athar_baseline.py`` (issue 21, part 3).

The script's dependency features need spaCy (the optional ``athar`` extra); these tests do not:
they check the helpers by hand, and that a missing spaCy stops the script with a message that
says how to install it.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "athar_baseline.py"


@pytest.fixture(scope="module")
def athar():
    spec = importlib.util.spec_from_file_location("athar_baseline", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["athar_baseline"] = module  # dataclasses look their module up here
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules["athar_baseline"]


def test_target_year_reads_acl_anthology_ids(athar):
    assert athar.target_year("A00-2024") == "2000"
    assert athar.target_year("P97-1003") == "1997"
    assert athar.target_year("W11-0101") == "2011"


def test_target_citation_negation_and_window(athar):
    text = "We do not use the method of Jing and McKeown (2000), unlike (Brill, 1995) work."
    tokens = athar.target_tokens(text, "2000")
    assert tokens == [
        "we", "do", "not", "use", "the", "method", "of", "<tcit>", ",", "unlike", "<cit>",
        "work", ".",
    ]  # fmt: skip
    assert athar.negated(tokens)[2:9] == [
        "not", "use_NEG", "the_NEG", "method_NEG", "of_NEG", "<tcit>", ",",
    ]  # fmt: skip
    assert athar.negated(["no", "a", ".", "b"]) == ["no", "a_NEG", ".", "b"]
    assert athar.windowed(tokens, 2) == ["method", "of", "<tcit>", ",", "unlike"]
    assert athar.windowed(["a", "<cit>"], 1) == ["a", "<cit>"]  # no target: everything


def test_score_variants_by_hand(athar):
    y = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    pred = np.array([0, 0, 0, 1, 1, 0, 2, 0])
    scores = athar.score_variants(y, pred)
    # Per class: precision 3/5, 1/2, 1; recall 3/4, 1/2, 1/2.
    macro_p, macro_r = (3 / 5 + 1 / 2 + 1) / 3, (3 / 4 + 1 / 2 + 1 / 2) / 3
    assert scores["pooled_f1_of_macro_pr"] == pytest.approx(
        2 * macro_p * macro_r / (macro_p + macro_r)
    )
    polar = f1_score(y, pred, labels=[1, 2], average="macro")
    assert scores["pooled_polar_macro_f1"] == pytest.approx(polar)


def test_missing_spacy_is_a_clear_error(athar, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "spacy", None)  # import spacy raises ImportError
    with pytest.raises(SystemExit, match=r"pip install -e '\.\[athar\]'"):
        athar.dependency_triplets(["A sentence."], tmp_path / "cache.json")
