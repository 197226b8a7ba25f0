"""Random state: seed every generator, capture and restore torch's, Python's and CUDA's.

:class:`gnnkit.train.Run` keeps each run's own generator states (:func:`rng_state`) and swaps
them in around its epochs (:func:`set_rng_state`), so runs stepped in turn draw what each would
draw alone, and a checkpoint holds them as plain tensors and lists.
"""

from __future__ import annotations

import random
from typing import Any

import torch

from gnnkit.utils.checks import check_int, check_seed

__all__ = ["rng_state", "seed_everything", "set_rng_state"]


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy and torch (CPU and every CUDA device).

    Args:
        seed (int): any integer ``torch.manual_seed`` takes, from ``-2**63`` to
            ``2**64 - 1`` (NumPy's legacy generator receives it modulo ``2**32``); a NumPy
            integer too.

    Raises:
        InputError: ``seed`` is not an ``int`` (a string, a float, a bool, ``None``) or lies
            outside that range.
    """
    import numpy as np

    check_int("seed", seed, None)
    check_seed("seed", seed)
    seed = int(seed)  # a NumPy integer too (Python's random.seed takes only an int)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state(cuda: bool) -> dict[str, Any]:
    """torch's CPU generator state, Python's (as lists) and, with ``cuda``, every CUDA device's."""
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": [version, list(internal), gauss],
    }
    if cuda:
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured (Python's and CUDA's only where present)."""
    torch.set_rng_state(state["torch"])
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])
