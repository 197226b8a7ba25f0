"""Character corpora for next-character models: a vocabulary, windows and a validation split.

Character models learn from plain text (Graves, arXiv:1308.0850; Karpathy's char-rnn).
:func:`load_corpus` reads a registered corpus (Melville's *Bartleby, the Scrivener*,
``"bartleby"``; the Python tutorial sources, ``"pydoc-tutorial"``) or any UTF-8 file;
:class:`TextDataset` encodes it with a :class:`Vocabulary`, holds the last 10 % out for
validation and cuts windows whose targets are the inputs shifted by one character.
"""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from gnnkit.errors import InputError
from gnnkit.utils.io import not_a_file

__all__ = ["TextDataset", "Vocabulary", "load_corpus", "strip_gutenberg"]

logger = logging.getLogger(__name__)

Unknown = Literal["error", "skip"]

_GUTENBERG_START = re.compile(r"^\*\*\* ?START OF (THIS|THE) PROJECT GUTENBERG.*$", re.MULTILINE)
_GUTENBERG_END = re.compile(r"^\*\*\* ?END OF (THIS|THE) PROJECT GUTENBERG.*$", re.MULTILINE)


def _describe_char(char: str) -> str:
    name = unicodedata.name(char, "")
    code = f"U+{ord(char):04X}"
    return f"{char!r} ({code} {name})" if name else f"{char!r} ({code})"


class Vocabulary:
    """The characters a model reads and writes, each with an integer id.

    The vocabulary is saved in every checkpoint, so a model always decodes with the characters
    it was trained on.

    Args:
        chars (iterable of str): distinct single characters, in id order.
    """

    def __init__(self, chars: Iterable[str]) -> None:
        chars = list(chars)
        bad = [c for c in chars if not isinstance(c, str) or len(c) != 1]
        if bad:
            raise InputError(f"a vocabulary holds single characters, got {bad[:5]!r}")
        if len(set(chars)) != len(chars):
            dupes = sorted({c for c in chars if chars.count(c) > 1})
            raise InputError(f"vocabulary characters must be distinct; repeated: {dupes!r}")
        if not chars:
            raise InputError("a vocabulary needs at least one character")
        self._chars = tuple(chars)
        self._index = {c: i for i, c in enumerate(chars)}
        self._table: np.ndarray | None = None

    @classmethod
    def from_text(cls, text: str) -> Vocabulary:
        """The distinct characters of ``text`` in code-point order."""
        if not text:
            raise InputError("cannot build a vocabulary from an empty text")
        return cls(sorted(set(text)))

    @property
    def chars(self) -> tuple[str, ...]:
        """The characters in id order."""
        return self._chars

    def __len__(self) -> int:
        return len(self._chars)

    def __iter__(self) -> Iterator[str]:
        return iter(self._chars)

    def __contains__(self, char: object) -> bool:
        return char in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self._chars == other._chars

    def __hash__(self) -> int:
        return hash(self._chars)

    def __repr__(self) -> str:
        preview = "".join(self._chars[:20]).encode("unicode_escape").decode("ascii")
        more = "..." if len(self) > 20 else ""
        return f"Vocabulary({len(self)} characters: {preview!r}{more})"

    def unknown(self, text: str) -> list[str]:
        """The distinct characters of ``text`` outside the vocabulary, sorted."""
        return sorted(set(text) - self._index.keys())

    def encode(self, text: str, *, unknown: Unknown = "error", what: str = "text") -> Tensor:
        """Character ids of ``text`` as a 1-D ``torch.long`` tensor.

        Args:
            text (str): the text.
            unknown (str, optional): ``"error"`` refuses characters outside the vocabulary and
                lists them; ``"skip"`` drops them. (default: ``"error"``)
            what (str, optional): how error messages name the text. (default: ``"text"``)
        """
        if unknown not in ("error", "skip"):
            raise InputError(f"unknown must be 'error' or 'skip', got {unknown!r}")
        missing = self.unknown(text)
        if missing:
            if unknown == "error":
                shown = ", ".join(_describe_char(c) for c in missing[:10])
                more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
                raise InputError(
                    f"{what} has {len(missing)} character(s) outside the model's vocabulary of "
                    f"{len(self)}: {shown}{more}; remove them or skip them "
                    "(unknown='skip', --unknown skip)"
                )
            logger.warning("skipping %d character(s) outside the vocabulary", len(missing))
            text = "".join(c for c in text if c in self._index)
        if not text:
            return torch.zeros(0, dtype=torch.long)
        # code points -> ids through a lookup table: fast for corpora of many megabytes
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        return torch.from_numpy(self._lookup()[codes])

    def _lookup(self) -> np.ndarray:
        if self._table is None:
            table = np.zeros(max(map(ord, self._chars)) + 1, dtype=np.int64)
            table[[ord(c) for c in self._chars]] = np.arange(len(self._chars))
            self._table = table
        return self._table

    def decode(self, ids: Sequence[int] | Tensor) -> str:
        """The text of a sequence of ids."""
        if isinstance(ids, Tensor):
            ids = ids.reshape(-1).tolist()
        chars = self._chars
        try:
            return "".join(chars[i] for i in ids)
        except (IndexError, TypeError):
            raise InputError(
                f"ids must be integers in 0 .. {len(self) - 1}, got {list(ids)[:10]!r}"
            ) from None

    def to_list(self) -> list[str]:
        """The characters as a list (what checkpoints store)."""
        return list(self._chars)


def strip_gutenberg(text: str) -> str:
    """The body of a Project Gutenberg e-text, without the licence header and footer.

    Keeps what lies between the ``*** START OF THIS PROJECT GUTENBERG ...`` and
    ``*** END OF THIS PROJECT GUTENBERG ...`` lines, with surrounding blank lines removed.
    Text without these markers is returned unchanged.
    """
    start = _GUTENBERG_START.search(text)
    end = _GUTENBERG_END.search(text, start.end() if start else 0)
    if start is None or end is None:
        return text
    return text[start.end() : end.start()].strip("\n") + "\n"


def load_corpus(
    source: str | Path,
    *,
    gutenberg: Literal["strip", "keep"] = "strip",
    root: str | Path | None = None,
    mirror: str | Path | None = None,
    download: bool | None = None,
) -> tuple[str, str]:
    """Read a corpus: a registered text dataset or any UTF-8 file.

    Args:
        source (str or Path): ``"bartleby"``, ``"pydoc-tutorial"`` (any registered text dataset,
            see ``gnnkit data list``) or the path of a UTF-8 text file. A registered name wins
            over a file of the same name; write ``./bartleby`` for the file.
        gutenberg (str, optional): ``"strip"`` removes a Project Gutenberg header and footer
            when present (:func:`strip_gutenberg`), ``"keep"`` keeps the file as it is.
            (default: ``"strip"``)
        root, mirror, download: passed to :func:`gnnkit.data.load` for registered names.

    Returns:
        ``(text, name)``: the text (newlines normalised to ``\\n``) and a short name for it.

    NOTE: stripping is the default because the reference set-up counts 65 distinct characters
    in Bartleby, which is the body alone (the licence text brings the count to 83).
    """
    from gnnkit.data import DATASETS, load

    if gutenberg not in ("strip", "keep"):
        raise InputError(f"gutenberg must be 'strip' or 'keep', got {gutenberg!r}")
    name = str(source)
    if name in DATASETS:
        if DATASETS[name].kind != "text":
            texts = sorted(n for n, s in DATASETS.items() if s.kind == "text")
            raise InputError(
                f"dataset {name!r} is a {DATASETS[name].kind} dataset, not a text corpus; "
                f"text corpora: {', '.join(texts)}"
            )
        text = load(name, root=root, mirror=mirror, download=download)
    else:
        path = Path(source).expanduser()
        problem = not_a_file(path)
        texts = sorted(n for n, s in DATASETS.items() if s.kind == "text")
        if problem == "does not exist":
            raise InputError(
                f"corpus {name!r} is neither a registered text corpus ({', '.join(texts)}) "
                "nor an existing file"
            )
        if problem:
            raise InputError(
                f"corpus {path} {problem}; give a UTF-8 text file or a registered corpus "
                f"({', '.join(texts)})"
            )
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(
                f"corpus file {path} is not UTF-8 text (byte {exc.start}: {exc.reason})"
            ) from None
        except OSError as exc:
            raise InputError(f"cannot read corpus file {path}: {exc.strerror or exc}") from None
        name = path.name
    if gutenberg == "strip":
        text = strip_gutenberg(text)
    return text, name


class TextDataset:
    r"""A corpus encoded as character ids, split into training and validation parts.

    The first ``1 - val_fraction`` of the text trains, the rest validates (the split is by
    position, so no validation window overlaps a training window). A window of length
    :math:`T` starting at :math:`s` is the input :math:`x = c_{s} \dots c_{s+T-1}` with target
    :math:`y = c_{s+1} \dots c_{s+T}`: the next character at every step (teacher forcing).

    Args:
        text (str): the corpus.
        seq_length (int): the window length :math:`T`.
        vocabulary (Vocabulary, optional): the characters; ``None`` builds one from ``text``.
            Characters of ``text`` outside a given vocabulary are an error. (default: ``None``)
        val_fraction (float, optional): the share of the text, taken from its end, held out
            for validation; 0 disables validation. (default: ``0.1``)
        name (str, optional): how messages name the corpus. (default: ``"corpus"``)

    Shapes:
        - ``dataset[i]``: a pair of ``(T,)`` long tensors.
        - :meth:`sample_batch` and :meth:`windows`: pairs of ``(B, T)`` long tensors.
    """

    def __init__(
        self,
        text: str,
        seq_length: int,
        *,
        vocabulary: Vocabulary | None = None,
        val_fraction: float = 0.1,
        name: str = "corpus",
    ) -> None:
        if not isinstance(text, str):
            raise InputError(f"text must be a str, got {type(text).__name__}")
        if isinstance(seq_length, bool) or not isinstance(seq_length, int) or seq_length < 1:
            raise InputError(f"seq_length must be an integer >= 1, got {seq_length!r}")
        if not 0.0 <= float(val_fraction) < 1.0:
            raise InputError(f"val_fraction must lie in [0, 1), got {val_fraction!r}")
        if not text:
            raise InputError(f"{name} is empty: a text corpus needs characters to learn from")
        self.name = name
        self.seq_length = seq_length
        self.val_fraction = float(val_fraction)
        self.vocabulary = vocabulary if vocabulary is not None else Vocabulary.from_text(text)
        self.num_chars = len(text)
        self.sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()
        ids = self.vocabulary.encode(text, what=name)
        split = len(text) - round(len(text) * self.val_fraction)
        self.train_ids = ids[:split]
        self.val_ids = ids[split:]
        need = seq_length + 1
        if self.train_ids.numel() < need:
            raise InputError(
                f"{name} is too short: its training part holds {self.train_ids.numel()} "
                f"character(s) of {len(text)}, fewer than seq_length + 1 = {need}; use a longer "
                "text or a shorter sequence length"
            )
        if self.val_fraction > 0 and self.val_ids.numel() < need:
            raise InputError(
                f"{name} is too short: its validation part ({self.val_fraction:.0%} of "
                f"{len(text)} characters) holds {self.val_ids.numel()} character(s), fewer than "
                f"seq_length + 1 = {need}; use a longer text, a larger validation fraction or a "
                "shorter sequence length"
            )

    def __repr__(self) -> str:
        return (
            f"TextDataset({self.name!r}, chars={self.num_chars}, vocab={len(self.vocabulary)}, "
            f"seq_length={self.seq_length}, train={self.train_ids.numel()}, "
            f"val={self.val_ids.numel()})"
        )

    def __len__(self) -> int:
        """The number of training windows (every start position)."""
        return self.train_ids.numel() - self.seq_length

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        """The training window starting at ``index``: ``(input, target)``."""
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"window {index} out of range for {n} training windows")
        index %= n
        chunk = self.train_ids[index : index + self.seq_length + 1]
        return chunk[:-1], chunk[1:]

    def _part(self, split: str) -> Tensor:
        if split == "train":
            return self.train_ids
        if split == "val":
            if self.val_ids.numel() <= self.seq_length:
                raise InputError("this dataset has no validation part (val_fraction=0)")
            return self.val_ids
        raise InputError(f"split must be 'train' or 'val', got {split!r}")

    def sample_batch(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """``batch_size`` training windows at uniformly random start positions."""
        starts = torch.randint(len(self), (batch_size,), generator=generator)
        return self._gather(self.train_ids, starts)

    def windows(self, split: str = "val", limit: int | None = None) -> tuple[Tensor, Tensor]:
        """Non-overlapping windows covering a split, for evaluation.

        Args:
            split (str, optional): ``"train"`` or ``"val"``. (default: ``"val"``)
            limit (int, optional): at most this many windows, spread evenly over the split.
                (default: all)
        """
        ids = self._part(split)
        starts = torch.arange(0, ids.numel() - self.seq_length, self.seq_length)
        if limit is not None and starts.numel() > limit:
            pick = torch.linspace(0, starts.numel() - 1, limit).round().long()
            starts = starts[pick]
        return self._gather(ids, starts)

    def _gather(self, ids: Tensor, starts: Tensor) -> tuple[Tensor, Tensor]:
        offsets = torch.arange(self.seq_length + 1)
        chunk = ids[starts[:, None] + offsets]  # (B, T + 1)
        return chunk[:, :-1], chunk[:, 1:]

    def info(self) -> dict[str, Any]:
        """A JSON-ready description (stored in checkpoints to recognise the corpus)."""
        return {
            "name": self.name,
            "num_chars": self.num_chars,
            "sha256": self.sha256,
            "val_fraction": self.val_fraction,
            "train_chars": self.train_ids.numel(),
            "val_chars": self.val_ids.numel(),
        }
