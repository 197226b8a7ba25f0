"""Numeric arguments at the edge of their range: tiny temperatures sample like greedy (never
"probability tensor contains inf/nan"), integer arguments take numpy and 0-dim integers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gnnkit.errors import InputError
from gnnkit.seq.charlm.generate import pick_next
from gnnkit.utils.checks import as_index, check_int


@pytest.mark.parametrize("temperature", [1e-45, 1e-30, 5e-324])
@pytest.mark.parametrize("strategy", ["temperature", "top-k"])
def test_a_tiny_temperature_picks_the_largest_logit(temperature, strategy):
    logits = torch.tensor([[1.0, 3.0, 2.0, -50.0], [0.5, 0.1, 0.2, 0.4], [-1e30, 7.0, 6.9, 0.0]])
    k = 3 if strategy == "top-k" else None
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        picked = pick_next(logits, strategy, temperature=temperature, k=k, generator=generator)
        assert picked.tolist() == logits.argmax(-1).tolist()


def test_ordinary_temperatures_are_unchanged():
    """The overflow guard leaves the usual path bit for bit: the same draws as softmax(z / T)."""
    logits = torch.randn(64, 30, generator=torch.Generator().manual_seed(1))
    for temperature in (0.5, 1.0, 2.0):
        probs = torch.softmax(logits / temperature, dim=-1)
        expected = torch.multinomial(probs, 1, generator=torch.Generator().manual_seed(2))[:, 0]
        got = pick_next(
            logits,
            "temperature",
            temperature=temperature,
            generator=torch.Generator().manual_seed(2),
        )
        assert torch.equal(got, expected)


def test_numpy_integers_are_integers():
    check_int("epochs", np.int64(3))
    assert as_index("src", np.int32(4)) == 4 and as_index("src", torch.tensor(2)) == 2
    with pytest.raises(InputError, match=r"epochs must be an integer >= 1, got np\.int64\(0\)"):
        check_int("epochs", np.int64(0))
    with pytest.raises(InputError, match=r"pass int\(epochs\) for a 0-dim tensor"):
        check_int("epochs", torch.tensor(3))
    with pytest.raises(InputError, match=r"src must be an integer, got 1\.5"):
        as_index("src", 1.5)
    with pytest.raises(InputError, match=r"src must be an integer, got True"):
        as_index("src", True)
