"""The memory tasks produce what they promise: permutations, palindromes, seeded streams."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from gnnkit.errors import InputError
from gnnkit.seq import TASKS, Palindrome, RandomCombinations, make_task
from gnnkit.seq.tasks import generator


@pytest.mark.parametrize("seq_len", [2, 3, 5, 10, 15])
def test_random_combinations_are_permutations_missing_the_label(seq_len):
    task = RandomCombinations(seq_len)
    tokens, labels = task.sample(500, np.random.default_rng(0))
    assert tokens.shape == (500, seq_len - 1) and labels.shape == (500,)
    assert tokens.dtype == labels.dtype == torch.long
    for row, label in zip(tokens.tolist(), labels.tolist(), strict=True):
        assert len(set(row)) == seq_len - 1  # no repeats
        assert set(range(seq_len)) - set(row) == {label}  # the label is the missing number
    assert (task.num_tokens, task.num_classes, task.input_len) == (seq_len, seq_len, seq_len - 1)


def test_random_combinations_cover_all_permutations_uniformly():
    task = RandomCombinations(4)
    tokens, labels = task.sample(24_000, np.random.default_rng(1))
    full = torch.cat([tokens, labels[:, None]], dim=1)
    counts = {}
    for row in full.tolist():
        counts[tuple(row)] = counts.get(tuple(row), 0) + 1
    assert set(counts) == set(itertools.permutations(range(4)))
    # 24 equally likely permutations, 1,000 expected each: a loose 6-sigma band
    assert all(abs(c - 1000) < 6 * np.sqrt(1000) for c in counts.values())


@pytest.mark.parametrize("seq_len", [2, 3, 4, 7, 10, 30])
def test_palindromes_read_the_same_backwards(seq_len):
    task = Palindrome(seq_len)
    tokens, labels = task.sample(300, np.random.default_rng(2))
    full = torch.cat([tokens, labels[:, None]], dim=1)
    assert full.shape == (300, seq_len)
    assert torch.equal(full, full.flip(1))
    assert torch.equal(labels, tokens[:, 0])  # the label is the first digit
    assert int(full.min()) >= 0 and int(full.max()) <= 9
    assert (task.num_tokens, task.num_classes) == (10, 10)


def test_palindrome_first_half_is_uniform_over_digits():
    tokens, _ = Palindrome(6).sample(20_000, np.random.default_rng(3))
    counts = torch.bincount(tokens[:, :3].flatten(), minlength=10).numpy()
    assert np.all(np.abs(counts - 6000) < 6 * np.sqrt(6000))


def test_stream_is_seeded_and_infinite():
    task = RandomCombinations(6)
    first = list(itertools.islice(task.stream(16, seed=4), 50))
    again = list(itertools.islice(task.stream(16, seed=4), 50))
    other = next(task.stream(16, seed=5))
    assert len(first) == 50
    for (a, b), (c, d) in zip(first, again, strict=True):
        assert torch.equal(a, c) and torch.equal(b, d)
    assert not torch.equal(first[0][0], other[0])
    assert not torch.equal(first[0][0], first[1][0])  # batches differ from each other


def test_validation_set_is_fixed_and_independent_of_the_stream():
    task = Palindrome(8)
    val_tokens, val_labels = task.validation_set(seed=0)
    assert val_tokens.shape == (4096, 7) and val_labels.shape == (4096,)
    again_tokens, _ = task.validation_set(seed=0)
    assert torch.equal(val_tokens, again_tokens)
    train_tokens, _ = next(task.stream(4096, seed=0))
    assert not torch.equal(val_tokens, train_tokens)
    # the three streams of a seed draw different numbers
    draws = [generator(0, s).random(4) for s in ("train", "validation", "confirmation")]
    assert not np.allclose(draws[0], draws[1]) and not np.allclose(draws[1], draws[2])


def test_make_task_by_name():
    assert set(TASKS) == {"randomcomb", "palindrome"}
    assert isinstance(make_task("randomcomb", 5), RandomCombinations)
    assert isinstance(make_task("palindrome", 5), Palindrome)
    assert repr(make_task("palindrome", 5)) == "Palindrome(seq_len=5)"


@pytest.mark.parametrize("cls", [RandomCombinations, Palindrome])
def test_bad_sequence_lengths(cls):
    with pytest.raises(InputError, match="seq_len must be >= 2, got 1"):
        cls(1)
    with pytest.raises(InputError, match="seq_len must be >= 2, got -3"):
        cls(-3)
    with pytest.raises(InputError, match="seq_len must be an integer, got float"):
        cls(5.0)
    with pytest.raises(InputError, match="seq_len must be an integer, got bool"):
        cls(True)


def test_bad_task_arguments():
    with pytest.raises(
        InputError, match="unknown task 'copy'; choose one of: randomcomb, palindrome"
    ):
        make_task("copy", 5)
    task = RandomCombinations(5)
    with pytest.raises(InputError, match="batch_size must be >= 1, got 0"):
        next(task.stream(0))
    with pytest.raises(InputError, match="seed must be >= 0, got -1"):
        next(task.stream(8, seed=-1))
    with pytest.raises(InputError, match="num_samples must be >= 1, got 0"):
        task.validation_set(0)
    with pytest.raises(InputError, match="unknown stream 'test'"):
        generator(0, "test")
