"""The Athar (2011) citation sentiment corpus: records, tokens, a vocabulary and a PyG graph.

The corpus (`"Sentiment Analysis of Citations using Sentence Structure-Based Features"
<https://aclanthology.org/P11-3015>`_, Athar, ACL 2011 Student Session) holds 8,736 citation
sentences from the ACL Anthology, each labelled ``o`` (neutral, 7,627), ``p`` (positive, 829) or
``n`` (negative, 280). The file has 18 ``#`` header lines, then one tab-separated record a line::

    Source_Paper  Target_Paper  Sentiment  Citation_Text

:func:`read_corpus` parses it into :class:`CitationRecord` (with 1-based line numbers, so a bad
line is reported where it is); :func:`to_data` turns the records into a PyG
:class:`~torch_geometric.data.Data` whose nodes are papers (3,069 on the real corpus) and whose
edges are citation sentences (multi-edges kept), beside the simple citation graph (5,042
distinct paper-to-paper edges); :func:`tokenize` splits a sentence into words and punctuation
with citation markers normalised; :class:`Vocabulary` maps tokens to ids and is always built
from the training part of a fold.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Data

from gnnkit.errors import DatasetError, InputError
from gnnkit.utils.io import not_a_file

__all__ = [
    "CITATION_TOKEN",
    "CLASS_NAMES",
    "LABELS",
    "NUMBER_TOKEN",
    "CitationCorpus",
    "CitationRecord",
    "Vocabulary",
    "label_homophily",
    "load_citations",
    "read_corpus",
    "to_data",
    "tokenize",
]

logger = logging.getLogger(__name__)

#: Label codes in class-id order: neutral, positive, negative.
LABELS: tuple[str, ...] = ("o", "p", "n")
#: Readable class names, same order as :data:`LABELS`.
CLASS_NAMES: tuple[str, ...] = ("neutral", "positive", "negative")
#: The token every citation marker becomes.
CITATION_TOKEN = "<cit>"
#: The token every number becomes.
NUMBER_TOKEN = "<num>"

_LABEL_ID = {code: i for i, code in enumerate(LABELS)}


# ---------------------------------------------------------------------------------------------
# Tokeniser
# ---------------------------------------------------------------------------------------------

_YEAR = r"(?:19|20)\d\d[a-z]?"
_SURNAME = r"(?:(?:van|von|de|der|den|del|da|di|la|le|du)\s+)*[A-Z][\w'`\-]*"
# "Jing and McKeown (2000)", "Mani et al. (1999a; 1999b)", "Collins' (1999)".
_TEXT_CITATION = re.compile(
    rf"{_SURNAME}(?:\s+(?:et\s+al\s*\.?|and\s+{_SURNAME}|&\s+{_SURNAME}))?\s*'?s?\s*"
    rf"\(\s*{_YEAR}(?:\s*[,;]\s*{_YEAR})*\s*\)"
)
# "(Jing and McKeown, 1999; Jing and McKeown, 2000)", "(Church 1988)", "(1999)".
_PAREN_CITATION = re.compile(rf"\([^()]*?\b{_YEAR}\b[^()]*\)")
# "[12]", "[3, 4-6]".
_NUMERIC_CITATION = re.compile(r"\[\s*\d+(?:\s*[,;\-]\s*\d+)*\s*\]")
_CITATION_SLOT = "\x00"
_TOKEN = re.compile(r"\x00|\d+(?:[.,]\d+)*|[^\W\d_]+(?:['\-][^\W\d_]+)*|[^\w\s]", re.UNICODE)


def tokenize(text: str) -> list[str]:
    """Split a citation sentence into lower-cased words and punctuation marks.

    Citation markers become :data:`CITATION_TOKEN` (``<cit>``): textual ones ("Jing and McKeown
    (2000)", "Mani et al. (1999)"), parenthetical ones with a year ("(Brill, 1995; Cutting et
    al., 1992)") and numeric ones ("[12]"). Numbers become :data:`NUMBER_TOKEN`. A word keeps
    inner hyphens and apostrophes ("cut-and-paste", "don't"); every other non-space character
    is its own token.

    NOTE: the corpus does not say which of several markers cites the target paper, so all
    markers map to the same token.

    Args:
        text (str): one citation sentence.

    Returns:
        list of str: the tokens, in order.

    Example:
        >>> tokenize("Jing and McKeown (2000) proposed a system (see Mani et al., 1999).")
        ['<cit>', 'proposed', 'a', 'system', '<cit>', '.']
    """
    if not isinstance(text, str):
        raise InputError(f"tokenize expects a str, got {type(text).__name__}")
    text = _TEXT_CITATION.sub(f" {_CITATION_SLOT} ", text)
    text = _PAREN_CITATION.sub(f" {_CITATION_SLOT} ", text)
    text = _NUMERIC_CITATION.sub(f" {_CITATION_SLOT} ", text)
    tokens = []
    for token in _TOKEN.findall(text):
        if token == _CITATION_SLOT:
            tokens.append(CITATION_TOKEN)
        elif token[0].isdigit():
            tokens.append(NUMBER_TOKEN)
        else:
            tokens.append(token.lower())
    return tokens


def _tokenised(sentences: Iterable[Sequence[str]]) -> Iterable[Sequence[str]]:
    """``sentences``, refusing a plain string where a sentence's token list belongs."""
    if isinstance(sentences, (str, bytes)):
        raise InputError(
            f"Vocabulary.from_corpus takes a list of tokenised sentences, got the {type(sentences).__name__} "
            f"{sentences[:40]!r}; pass [tokenize(text) for text in texts]"
        )
    for i, sentence in enumerate(sentences):
        if isinstance(sentence, (str, bytes)):
            raise InputError(
                f"Vocabulary.from_corpus takes tokenised sentences (lists of str), but sentence {i} is the "
                f"{type(sentence).__name__} {sentence[:40]!r}; pass tokenize(text) for each"
            )
        yield sentence


class Vocabulary:
    """Tokens with integer ids: ``0`` is padding, ``1`` the unknown token, then by frequency.

    Build it with :meth:`from_corpus` on the *training* sentences of a fold only, so that no
    token seen only in the test part gets an id (such tokens map to ``<unk>``).

    Args:
        tokens (iterable of str): distinct tokens in id order, without the two specials (a
            plain ``str`` is refused: it would become one token per character).
    """

    PAD = "<pad>"
    UNK = "<unk>"

    def __init__(self, tokens: Iterable[str]) -> None:
        if isinstance(tokens, (str, bytes)):
            raise InputError(
                f"Vocabulary takes a list of tokens, got the {type(tokens).__name__} "
                f"{tokens[:40]!r}; pass [token] for one token, or tokenize(text) for a sentence"
            )
        self.itos: list[str] = [self.PAD, self.UNK]
        for token in tokens:
            if not isinstance(token, str):
                raise InputError(f"vocabulary tokens must be str, got {token!r}")
            if token in (self.PAD, self.UNK):
                continue
            self.itos.append(token)
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise InputError("vocabulary tokens must be distinct")

    @classmethod
    def from_corpus(cls, sentences: Iterable[Sequence[str]], *, min_count: int = 1) -> Vocabulary:
        """The tokens seen at least ``min_count`` times, most frequent first (ties by token)."""
        if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
            raise InputError(f"min_count must be an integer >= 1, got {min_count!r}")
        counts = Counter(t for sentence in _tokenised(sentences) for t in sentence)
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        return cls(t for t, c in ranked if c >= min_count)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: object) -> bool:
        return token in self.stoi

    def encode(self, tokens: Sequence[str]) -> list[int]:
        """Token ids; unknown tokens become ``1``."""
        return [self.stoi.get(t, 1) for t in tokens]

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} tokens)"


# ---------------------------------------------------------------------------------------------
# Reading the corpus file
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CitationRecord:
    """One citation sentence: who cites whom, with which sentiment, on which line."""

    source: str
    target: str
    label: str
    text: str
    line: int

    @property
    def label_id(self) -> int:
        """The class id (:data:`LABELS` order)."""
        return _LABEL_ID[self.label]


@dataclass
class CitationCorpus:
    """The parsed records and the lines that were skipped (``skip_malformed=True`` only)."""

    records: list[CitationRecord]
    skipped: list[tuple[int, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    def counts(self) -> dict[str, int]:
        """Sentences per label code."""
        counts = Counter(r.label for r in self.records)
        return {code: counts.get(code, 0) for code in LABELS}


def _parse_line(line: str, number: int) -> CitationRecord | str:
    """A record, or the reason the line is malformed."""
    fields = line.split("\t")
    if len(fields) != 4:
        return (
            f"expected 4 tab-separated fields (Source_Paper, Target_Paper, Sentiment, "
            f"Citation_Text), got {len(fields)}"
        )
    source, target, label, text = (f.strip() for f in fields)
    if label not in _LABEL_ID:
        return f"unknown sentiment label {label!r}; expected one of {', '.join(LABELS)}"
    if not source or not target:
        return "empty paper id"
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
    if not text.strip():
        return "empty citation text"
    return CitationRecord(source, target, label, text, number)


def read_corpus(
    path: str | os.PathLike, *, skip_malformed: bool = False, max_report: int = 5
) -> CitationCorpus:
    """Parse a corpus file in Athar's format.

    Lines starting with ``#`` and blank lines are ignored. Each other line must hold four
    tab-separated fields with a label in :data:`LABELS`; the citation text loses one pair of
    surrounding double quotes.

    Args:
        path (str or PathLike): the corpus file.
        skip_malformed (bool, optional): skip malformed lines (their numbers and reasons are in
            :attr:`CitationCorpus.skipped`, and a warning gives their count) instead of
            raising. (default: ``False``)
        max_report (int, optional): how many skipped lines the warning lists. (default: ``5``)

    Returns:
        CitationCorpus: the records in file order.

    Raises:
        DatasetError: a malformed line (its number, the reason and the fix in the message), a
            file that cannot be read or decoded, or a file without any record.
    """
    path = Path(path)
    problem = not_a_file(path)  # a FIFO would block the read, /dev/zero never end it
    if problem:
        raise DatasetError(f"citation corpus {path} {problem}; give the corpus's text file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DatasetError(f"citation corpus {path} does not exist") from None
    except UnicodeDecodeError as exc:
        raise DatasetError(f"citation corpus {path} is not UTF-8 text: {exc}") from None
    except OSError as exc:
        raise DatasetError(f"cannot read citation corpus {path}: {exc.strerror or exc}") from None
    records: list[CitationRecord] = []
    skipped: list[tuple[int, str]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parsed = _parse_line(line, number)
        if isinstance(parsed, CitationRecord):
            records.append(parsed)
        elif skip_malformed:
            skipped.append((number, parsed))
        else:
            raise DatasetError(
                f"{path}:{number}: malformed corpus line: {parsed} "
                "(fix the line, or pass skip_malformed=True / --skip-malformed to skip it)"
            )
    if skipped:
        shown = "; ".join(f"line {n}: {why}" for n, why in skipped[:max_report])
        more = f" (and {len(skipped) - max_report} more)" if len(skipped) > max_report else ""
        logger.warning("skipped %d malformed line(s) in %s: %s%s", len(skipped), path, shown, more)
    if not records:
        raise DatasetError(f"citation corpus {path} holds no records")
    return CitationCorpus(records, skipped)


# ---------------------------------------------------------------------------------------------
# The graph
# ---------------------------------------------------------------------------------------------


def _records(corpus: Any) -> list[CitationRecord]:
    """The records of a corpus or a sequence of records; anything else is refused."""
    expected = "a CitationCorpus or a sequence of CitationRecord (from read_corpus)"
    if isinstance(corpus, CitationCorpus):
        records = corpus.records
    elif isinstance(corpus, (str, bytes)) or not isinstance(corpus, Iterable):
        raise InputError(f"to_data takes {expected}, got {type(corpus).__name__}")
    else:
        records = list(corpus)
    if not records:
        raise InputError("to_data needs at least one citation record")
    for position, record in enumerate(records):
        if not isinstance(record, CitationRecord):
            raise InputError(
                f"to_data takes {expected}, got {type(record).__name__} at position {position}"
            )
    return records


def to_data(corpus: CitationCorpus | Sequence[CitationRecord]) -> Data:
    """The corpus as a graph: papers are nodes, citation sentences are (multi-)edges.

    Node ids follow the order in which papers first appear (source before target, file order).

    Returns:
        Data: with

        - ``paper_ids`` (list of str, |V|): the ACL Anthology id of each node;
        - ``edge_index`` (2, |E|): one edge source -> target per sentence, in file order
          (several sentences can join the same pair);
        - ``y`` (|E|,): class ids (:data:`LABELS` order);
        - ``tokens`` (list of list of str, |E|), ``text`` (list of str, |E|) and ``line``
          (|E|,): each sentence's tokens, raw text and line number in the file;
        - ``citation_edge_index`` (2, |P|): the simple citation graph, one edge per distinct
          (source, target) pair, in first-appearance order;
        - ``edge_pair`` (|E|,): the column of ``citation_edge_index`` of each sentence;
        - ``num_nodes``, ``num_classes`` (3) and ``class_names``.

    Shapes:
        - **output:** ``edge_index`` (2, |E|), ``y`` (|E|,), ``citation_edge_index`` (2, |P|)
    """
    records = _records(corpus)
    node_of: dict[str, int] = {}
    pair_of: dict[tuple[int, int], int] = {}
    src, dst, pair = [], [], []
    for record in records:
        s = node_of.setdefault(record.source, len(node_of))
        t = node_of.setdefault(record.target, len(node_of))
        src.append(s)
        dst.append(t)
        pair.append(pair_of.setdefault((s, t), len(pair_of)))
    pairs = torch.tensor(list(pair_of), dtype=torch.long).view(-1, 2).t().contiguous()
    return Data(
        edge_index=torch.tensor([src, dst], dtype=torch.long),
        y=torch.tensor([r.label_id for r in records], dtype=torch.long),
        num_nodes=len(node_of),
        paper_ids=list(node_of),
        tokens=[tokenize(r.text) for r in records],
        text=[r.text for r in records],
        line=torch.tensor([r.line for r in records], dtype=torch.long),
        citation_edge_index=pairs,
        edge_pair=torch.tensor(pair, dtype=torch.long),
        num_classes=len(LABELS),
        class_names=list(CLASS_NAMES),
    )


def load_citations(
    path: str | os.PathLike | None = None,
    *,
    skip_malformed: bool = False,
    root: str | os.PathLike | None = None,
    mirror: str | os.PathLike | None = None,
    download: bool | None = None,
) -> Data:
    """Load the Athar corpus (or any file in its format) as a graph (:func:`to_data`).

    Args:
        path (str or PathLike, optional): a corpus file; ``None`` resolves the registered
            ``athar-citations`` dataset through :func:`gnnkit.data.load`. (default: ``None``)
        skip_malformed (bool, optional): see :func:`read_corpus`. (default: ``False``)
        root, mirror, download: passed to :func:`gnnkit.data.load` when ``path`` is ``None``.

    Returns:
        Data: see :func:`to_data`; ``skipped_lines`` holds the number of skipped lines.
    """
    if path is None:
        from gnnkit.data import load

        path = load("athar-citations", root=root, mirror=mirror, download=download)
    corpus = read_corpus(path, skip_malformed=skip_malformed)
    data = to_data(corpus)
    data.skipped_lines = len(corpus.skipped)
    return data


_GROUPS = ("pair", "source", "target")


def label_homophily(data: Data, group: str = "pair") -> dict[str, object]:
    r"""How often two sentences that share a paper pair (or source, or target) share a label.

    Over all ordered pairs :math:`(e, e')` of distinct sentences in the same group (the same
    (source, target) pair, the same citing paper or the same cited paper):

    .. math::
        \text{agreement} = P(y_e = y_{e'}), \qquad
        \text{chance} = \sum_c P(y_e = c)\, P(y_{e'} = c), \qquad
        \text{lift}_c = \frac{P(y_{e'} = c \mid y_e = c)}{P(y_{e'} = c)}

    Agreement near chance and lifts near 1 mean the graph says little about a sentence's label
    beyond the class frequencies. This describes the whole labelled corpus; no model uses it.

    Args:
        data (Data): from :func:`to_data` (with ``y``).
        group (str, optional): ``"pair"``, ``"source"`` or ``"target"``. (default: ``"pair"``)

    Returns:
        dict: ``pairs`` (the number of ordered sentence pairs), ``agreement``, ``chance`` and
        ``lift`` (one value per class name; ``nan`` for a class in no pair).
    """
    if group not in _GROUPS:
        raise InputError(f"group must be one of {', '.join(_GROUPS)}, got {group!r}")
    key = {"pair": data.edge_pair, "source": data.edge_index[0], "target": data.edge_index[1]}
    keys = key[group].numpy()
    y = data.y.numpy()
    num_classes = int(data.num_classes)
    counts = np.zeros((int(keys.max()) + 1 if keys.size else 0, num_classes))
    np.add.at(counts, (keys, y), 1)
    # Ordered pairs of distinct sentences per group: n_c n_d, minus the n_c self-pairs.
    joint = counts.T @ counts - np.diag(counts.sum(axis=0))
    total = joint.sum()
    names = list(getattr(data, "class_names", range(num_classes)))
    if total == 0:
        nan = float("nan")
        return {"pairs": 0, "agreement": nan, "chance": nan, "lift": dict.fromkeys(names, nan)}
    marginal = joint.sum(axis=1) / total
    with np.errstate(invalid="ignore", divide="ignore"):
        lift = np.diag(joint) / joint.sum(axis=1) / marginal
    return {
        "pairs": int(total),
        "agreement": float(np.trace(joint) / total),
        "chance": float(marginal @ marginal),
        "lift": {str(n): float(v) for n, v in zip(names, lift, strict=True)},
    }
