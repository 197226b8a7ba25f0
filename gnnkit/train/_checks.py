"""Argument checks shared by the training configurations of :mod:`gnnkit.train`.

NOTE: scalar checks like these belong in :mod:`gnnkit.utils.checks`, next to the tensor
checks, where every package could use them; until they move there, the training
configurations share these.
"""

from __future__ import annotations

from typing import Any

from gnnkit.errors import InputError

__all__ = ["check_instance", "check_positive_fields", "check_seed"]


def check_positive_fields(config: Any, *names: str) -> None:
    """The fields ``names`` of ``config`` must be ``int`` >= 1 (booleans refused)."""
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be a positive integer, got {value!r}")


def check_seed(seed: Any) -> None:
    """``seed`` must be an ``int`` or ``None`` (booleans refused)."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise InputError(f"seed must be an integer or None, got {seed!r}")


def check_instance(name: str, value: Any, cls: type, what: str) -> None:
    """``value`` must be a ``cls``; the message says that ``name`` must be ``what``."""
    if not isinstance(value, cls):
        raise InputError(f"{name} must be {what}, got {type(value).__name__}")
