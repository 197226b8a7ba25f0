"""State-carrying generation: exactness against full forward passes, sampling, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gnnkit.errors import InputError
from gnnkit.seq.charlm import (
    CharLSTM,
    CharLSTMConfig,
    Vocabulary,
    generate,
    generate_batch,
    pick_next,
)

VOCAB = Vocabulary.from_text("abcdefghijklmnopqrstuvwxyz .,\n")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model() -> CharLSTM:
    torch.manual_seed(0)
    config = CharLSTMConfig(embedding_dim=8, hidden_size=16, num_layers=2, dropout=0.3)
    net = CharLSTM(VOCAB, config).double()
    # larger weights give peaked, non-trivial distributions (not near-uniform ones)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3.0)
    return net.eval()


def _argmax_continuation(model: CharLSTM, prompt: str, text: str) -> str:
    """Independent reference: one full forward pass over prompt + text, argmax everywhere."""
    ids = VOCAB.encode(prompt + text)[None, :-1]
    logits, _ = model(ids)
    predicted = logits[0].argmax(-1)[len(prompt) - 1 :]
    return VOCAB.decode(predicted)


def test_greedy_equals_argmax_of_a_full_forward_pass(model):
    prompt = "the cat sat on the mat"
    text = generate(model, prompt, 60)
    assert len(text) == 60
    assert text == _argmax_continuation(model, prompt, text)


def test_greedy_is_deterministic_and_ignores_seed(model):
    assert generate(model, "abc", 30, seed=1) == generate(model, "abc", 30, seed=2)


def test_batched_prompts_of_different_lengths_are_exact(model):
    prompts = ["a", "hello world", "xyz, the"]
    batched = generate_batch(model, prompts, 25)
    assert batched == [generate(model, p, 25) for p in prompts]
    for prompt, text in zip(prompts, batched, strict=True):
        assert text == _argmax_continuation(model, prompt, text)


@pytest.mark.parametrize(
    ("strategy", "kwargs"), [("temperature", {"temperature": 1.0}), ("top-k", {"k": 5})]
)
def test_same_seed_same_sample(model, strategy, kwargs):
    first = generate(model, "the ", 80, strategy=strategy, seed=7, **kwargs)
    second = generate(model, "the ", 80, strategy=strategy, seed=7, **kwargs)
    other = generate(model, "the ", 80, strategy=strategy, seed=8, **kwargs)
    assert first == second
    assert first != other
    batch = generate_batch(model, ["the "] * 3, 40, strategy=strategy, seed=3, **kwargs)
    assert batch == generate_batch(model, ["the "] * 3, 40, strategy=strategy, seed=3, **kwargs)
    assert len(set(batch)) > 1  # rows draw independently


def test_prompts_may_be_any_iterable_read_once(model):
    prompts = ["the", "a", "xyz"]
    expected = generate_batch(model, prompts, 12)
    assert generate_batch(model, (p for p in prompts), 12) == expected
    assert generate_batch(model, iter(tuple(prompts)), 12) == expected
    sampled = generate_batch(model, prompts, 12, strategy="temperature", seed=4)
    assert generate_batch(model, (p for p in prompts), 12, strategy="temperature", seed=4) == (
        sampled
    )


def test_seed_takes_torchs_whole_range(model):
    sample = {"strategy": "temperature", "length": 30}
    # numpy integers are seeds too, and the same one as the int
    assert generate(model, "the ", seed=np.int64(5), **sample) == generate(
        model, "the ", seed=5, **sample
    )
    # torch.Generator.manual_seed's bounds: -2**63 .. 2**64 - 1 (negative seeds wrap around)
    assert generate(model, "the ", seed=2**64 - 1, **sample) == generate(
        model, "the ", seed=-1, **sample
    )
    generate(model, "the ", seed=-(2**63), **sample)


def test_generation_restores_training_mode(model):
    model.train()
    try:
        generate(model, "a", 5)
        assert model.training
    finally:
        model.eval()


def test_top_k_of_one_and_tiny_temperature_are_greedy(model):
    greedy = generate(model, "the ", 40)
    assert generate(model, "the ", 40, strategy="top-k", k=1, seed=0) == greedy
    assert generate(model, "the ", 40, strategy="temperature", temperature=1e-4, seed=0) == greedy


def test_pick_next_temperature_distribution():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]]).expand(40_000, 4)
    generator = torch.Generator().manual_seed(0)
    for temperature in (0.5, 2.0):
        picks = pick_next(
            logits, "temperature", temperature=temperature, generator=generator
        ).bincount(minlength=4)
        expected = [math.exp(z / temperature) for z in (2.0, 1.0, 0.0, -1.0)]
        expected = torch.tensor([e / sum(expected) for e in expected])
        torch.testing.assert_close(picks / picks.sum(), expected, atol=0.012, rtol=0)


def test_pick_next_top_k_only_draws_the_k_best():
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.9, -2.0]]).expand(5000, 5)
    picks = pick_next(logits, "top-k", k=2, generator=torch.Generator().manual_seed(0))
    assert set(picks.tolist()) == {1, 3}
    # k larger than the vocabulary is plain temperature sampling
    wide = pick_next(logits, "top-k", k=50, generator=torch.Generator().manual_seed(0))
    assert set(wide.tolist()) == {0, 1, 2, 3, 4}


def test_length_zero_and_empty_batch(model):
    assert generate(model, "abc", 0) == ""
    assert generate_batch(model, [], 10) == []


# ---------------------------------------------------------------------------- bad input
def test_unknown_prompt_characters_are_listed(model):
    with pytest.raises(InputError, match=r"prompt has 2 character\(s\).*'A'.*'Z'.*--unknown skip"):
        generate(model, "A Zebra", 10)
    assert generate(model, "A Zebra", 10, unknown="skip") == generate(model, " ebra", 10)


@pytest.mark.parametrize("temperature", [0, 0.0, -1.0, float("inf")])
def test_temperature_must_be_positive(model, temperature):
    with pytest.raises(InputError, match=r"temperature must be a finite number > 0.*'greedy'"):
        generate(model, "a", 5, strategy="temperature", temperature=temperature)


def test_temperature_nan_refused(model):
    with pytest.raises(InputError, match="temperature must be a number > 0"):
        generate(model, "a", 5, strategy="temperature", temperature=float("nan"))


@pytest.mark.parametrize(
    ("seed", "match"),
    [
        ("abc", r"seed must be an integer or None, got 'abc'"),
        (1.5, r"seed must be an integer or None, got 1\.5"),
        (True, r"seed must be an integer or None, got True"),
        (2**64, r"seed must be a 64-bit integer \(-9223372036854775808 \.\. 1844"),
        (-(2**63) - 1, r"seed must be a 64-bit integer"),
    ],
)
@pytest.mark.parametrize("strategy", ["greedy", "temperature"])
def test_bad_seed_is_refused(model, seed, match, strategy):
    with pytest.raises(InputError, match=match):
        generate(model, "a", 5, strategy=strategy, seed=seed)
    with pytest.raises(InputError, match=match):  # checked before the empty batch returns
        generate_batch(model, [], 5, strategy=strategy, seed=seed)


@pytest.mark.parametrize("temperature", [0.5, 2, -1.0, 0, float("nan"), "1.0", True])
def test_greedy_refuses_a_temperature_like_k(model, temperature):
    with pytest.raises(
        InputError,
        match=r"temperature=.* is only used by strategy='temperature' or 'top-k' \(got "
        r"strategy='greedy'\); drop temperature",
    ):
        generate(model, "a", 5, temperature=temperature)


def test_greedy_accepts_the_default_temperature(model):
    greedy = generate(model, "the ", 20)
    assert generate(model, "the ", 20, temperature=1.0) == greedy
    assert generate(model, "the ", 20, strategy="greedy", temperature=1) == greedy


@pytest.mark.parametrize("k", [0, -3, 2.5])
def test_k_must_be_at_least_one(model, k):
    with pytest.raises(InputError, match="k must be an integer >= 1"):
        generate(model, "a", 5, strategy="top-k", k=k)


def test_other_bad_arguments(model):
    with pytest.raises(InputError, match="strategy='top-k' needs k"):
        generate(model, "a", 5, strategy="top-k")
    with pytest.raises(InputError, match="k=3 is only used by strategy='top-k'"):
        generate(model, "a", 5, strategy="temperature", k=3)
    with pytest.raises(InputError, match="k=2 is only used by strategy='top-k'"):
        generate(model, "a", 5, k=2)
    with pytest.raises(InputError, match="strategy must be one of greedy, temperature, top-k"):
        generate(model, "a", 5, strategy="beam")
    with pytest.raises(InputError, match="prompt is empty; give at least one character"):
        generate(model, "", 5)
    with pytest.raises(InputError, match="empty after skipping unknown characters"):
        generate(model, "ABC", 5, unknown="skip")
    with pytest.raises(InputError, match="length must be an integer >= 0"):
        generate(model, "a", -1)
    with pytest.raises(InputError, match="prompt must be a str"):
        generate(model, 3, 5)
    with pytest.raises(InputError, match="prompts must be a list of strings; for one prompt"):
        generate_batch(model, "abc", 5)
    with pytest.raises(InputError, match="prompts must be a list of strings, got int"):
        generate_batch(model, 3, 5)
    with pytest.raises(InputError, match="prompt 1 must be a str"):
        generate_batch(model, ["a", None], 5)
    with pytest.raises(InputError, match="model must be a CharLSTM"):
        generate(torch.nn.Linear(2, 2), "a", 5)
