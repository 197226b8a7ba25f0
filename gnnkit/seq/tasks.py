"""Synthetic memory tasks for sequence classifiers.

Long time lags are what recurrent networks find hard to learn (Bengio, Simard & Frasconi,
IEEE TNN 1994) and what the LSTM was built for (Hochreiter & Schmidhuber, Neural
Computation 1997, whose experiments are synthetic long-time-lag tasks like these two): both
need a memory that spans the whole sequence, so they grow harder with its length T.

Each task draws whole sequences, shows a model all but the last element and asks it to name
the last one. Samples are generated on the fly from a seeded :class:`numpy.random.Generator`,
so a training stream is infinite and reproducible, and the validation set is a fixed batch of
independent draws from a second, unrelated stream of the same seed.

NOTE: "independent" means drawn independently, not disjoint from training: for short
sequences (5! = 120 permutations) every validation sequence is also seen in training.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from gnnkit.errors import InputError

__all__ = [
    "STREAMS",
    "TASKS",
    "MemoryTask",
    "Palindrome",
    "RandomCombinations",
    "generator",
    "make_task",
]

#: The default validation-set size.
VALIDATION_SAMPLES = 4096


def _check_int(value: object, name: str, minimum: int, hint: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise InputError(f"{name} must be >= {minimum}, got {value}{hint}")
    return int(value)


#: The independent random streams derived from one seed.
STREAMS = ("train", "validation", "confirmation")


def generator(seed: int, stream: str = "train") -> np.random.Generator:
    """The generator of one of :data:`STREAMS` for ``seed``; different streams are independent.

    Built with :meth:`numpy.random.SeedSequence.spawn`, so the training, validation and
    confirmation samples of a seed never share random numbers.
    """
    seed = _check_int(seed, "seed", 0)
    if stream not in STREAMS:
        raise InputError(f"unknown stream {stream!r}; choose one of: {', '.join(STREAMS)}")
    children = np.random.SeedSequence(seed).spawn(len(STREAMS))
    return np.random.default_rng(children[STREAMS.index(stream)])


class MemoryTask:
    """Base of the memory tasks: draw sequences, split into (input, last element).

    Subclasses set :attr:`num_tokens` and :attr:`num_classes` and implement
    :meth:`sequences`.

    Args:
        seq_len (int): length T of a whole sequence; a model sees the first T - 1 elements.

    Attributes:
        seq_len (int): T.
        input_len (int): T - 1, the length of a model's input.
        num_tokens (int): vocabulary size of the inputs (rows of the embedding).
        num_classes (int): number of possible labels.
    """

    name = "task"
    num_tokens: int
    num_classes: int

    def __init__(self, seq_len: int) -> None:
        self.seq_len = _check_int(
            seq_len, "seq_len", 2, " (a model needs at least one input element and a label)"
        )
        self.input_len = self.seq_len - 1

    def sequences(self, num_samples: int, rng: np.random.Generator) -> np.ndarray:
        """``num_samples`` whole sequences, shape (num_samples, T), dtype int64."""
        raise NotImplementedError

    def sample(self, num_samples: int, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
        """Draw ``num_samples`` samples.

        Returns:
            tokens (LongTensor): the first T - 1 elements, shape (num_samples, T - 1).
            labels (LongTensor): the last element, shape (num_samples,).
        """
        num_samples = _check_int(num_samples, "num_samples", 1)
        seqs = torch.from_numpy(self.sequences(num_samples, rng))
        return seqs[:, :-1].contiguous(), seqs[:, -1].contiguous()

    def stream(self, batch_size: int = 128, *, seed: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """An infinite, seeded stream of training batches ``(tokens, labels)``.

        Args:
            batch_size (int, optional): samples per batch. (default: 128)
            seed (int, optional): the stream's seed; the same seed gives the same batches.
                (default: 0)
        """
        batch_size = _check_int(batch_size, "batch_size", 1)
        rng = generator(seed, "train")
        while True:
            yield self.sample(batch_size, rng)

    def validation_set(
        self, num_samples: int = VALIDATION_SAMPLES, *, seed: int = 0
    ) -> tuple[Tensor, Tensor]:
        """A fixed validation set, drawn independently of :meth:`stream` with the same seed.

        Args:
            num_samples (int, optional): number of samples. (default: 4096)
            seed (int, optional): the seed. (default: 0)
        """
        return self.sample(num_samples, generator(seed, "validation"))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(seq_len={self.seq_len})"


class RandomCombinations(MemoryTask):
    """A random permutation of ``0 .. T-1``; the label is the one number missing from the input.

    The model sees T - 1 distinct numbers and must name the absent one, so it has to remember
    every number it has seen.

    Args:
        seq_len (int): T, both the permutation length and the number of classes (>= 2).

    Shapes:
        tokens (T - 1,) in ``0 .. T-1``; label () in ``0 .. T-1``; ``num_tokens = num_classes = T``.
    """

    name = "randomcomb"

    def __init__(self, seq_len: int) -> None:
        super().__init__(seq_len)
        self.num_tokens = self.seq_len
        self.num_classes = self.seq_len

    def sequences(self, num_samples: int, rng: np.random.Generator) -> np.ndarray:
        # argsort of i.i.d. uniforms is a uniformly random permutation per row
        return np.argsort(rng.random((num_samples, self.seq_len)), axis=1).astype(np.int64)


class Palindrome(MemoryTask):
    """A random palindrome of decimal digits; the label is the last digit, equal to the first.

    Every digit of the first half is uniform on 0-9 and the second half mirrors it, so the
    only way to predict the last digit is to remember the first one across T - 1 steps: the
    classic task where a vanilla RNN fails as T grows.

    Args:
        seq_len (int): the palindrome's length T (>= 2).

    Shapes:
        tokens (T - 1,) in ``0 .. 9``; label () in ``0 .. 9``; ``num_tokens = num_classes = 10``.
    """

    name = "palindrome"

    def __init__(self, seq_len: int) -> None:
        super().__init__(seq_len)
        self.num_tokens = 10
        self.num_classes = 10

    def sequences(self, num_samples: int, rng: np.random.Generator) -> np.ndarray:
        half = rng.integers(0, 10, size=(num_samples, (self.seq_len + 1) // 2), dtype=np.int64)
        # the middle digit (odd T) is not repeated
        mirror = half[:, : self.seq_len // 2][:, ::-1]
        return np.concatenate([half, mirror], axis=1)


#: Task names accepted by :func:`make_task` and the CLI.
TASKS: dict[str, type[MemoryTask]] = {
    RandomCombinations.name: RandomCombinations,
    Palindrome.name: Palindrome,
}


def make_task(name: str, seq_len: int) -> MemoryTask:
    """The task called ``name`` (``"randomcomb"`` or ``"palindrome"``) with length ``seq_len``."""
    if name not in TASKS:
        raise InputError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}")
    return TASKS[name](seq_len)
