"""Rules for the fields of configuration dataclasses, and the one function that applies them.

Each field names its rule in its metadata (``field(default=64, metadata=POSITIVE_INT)``) and the
dataclass's ``__post_init__`` calls :func:`validate_fields`, which applies the scalar checks of
:mod:`gnnkit.utils.checks` (each raises :class:`gnnkit.errors.InputError` naming the field, the
value and the valid range).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import fields
from functools import partial
from types import MappingProxyType
from typing import Any

from gnnkit.utils.checks import (
    check_choice,
    check_flag,
    check_int,
    check_number,
    check_probability,
    check_seed,
)

__all__ = [
    "CHECK",
    "FLAG",
    "NON_NEGATIVE_INT",
    "NON_NEGATIVE_NUMBER",
    "OPTIONAL_POSITIVE_INT",
    "OPTIONAL_POSITIVE_NUMBER",
    "POSITIVE_INT",
    "POSITIVE_NUMBER",
    "PROBABILITY",
    "SEED",
    "Check",
    "one_of",
    "rule",
    "validate_fields",
]

#: The key of a dataclass field's ``metadata`` that holds its check.
CHECK = "gnnkit.check"

#: A check of one value: ``check(name, value)`` raises :class:`~gnnkit.errors.InputError`.
Check = Callable[[str, Any], None]


def rule(check: Callable[..., None], **options: Any) -> Mapping[str, Check]:
    """Field metadata that makes :func:`validate_fields` call ``check(name, value, **options)``.

    ``epochs: int = field(default=200, metadata=rule(check_int, minimum=1))``; the common rules
    have names (:data:`POSITIVE_INT`, :data:`PROBABILITY`...).
    """
    return MappingProxyType({CHECK: partial(check, **options)})


def one_of(*choices: Any) -> Mapping[str, Check]:
    """Field metadata: the value must be one of ``choices`` (:func:`check_choice`)."""
    return rule(check_choice, choices=choices)


#: An ``int`` >= 1.
POSITIVE_INT = rule(check_int, minimum=1)
#: An ``int`` >= 1, or ``None``.
OPTIONAL_POSITIVE_INT = rule(check_int, minimum=1, optional=True)
#: An ``int`` >= 0.
NON_NEGATIVE_INT = rule(check_int, minimum=0)
#: A finite number > 0.
POSITIVE_NUMBER = rule(check_number, low=0.0, open_low=True)
#: A finite number > 0, or ``None``.
OPTIONAL_POSITIVE_NUMBER = rule(check_number, low=0.0, open_low=True, optional=True)
#: A finite number >= 0.
NON_NEGATIVE_NUMBER = rule(check_number, low=0.0)
#: A number in [0, 1).
PROBABILITY = rule(check_probability)
#: ``True`` or ``False``.
FLAG = rule(check_flag)
#: An ``int`` or ``None``.
SEED = rule(check_seed)


def _field_check(cls: type, name: str) -> Check | None:
    """The check of field ``name``: its own, else that of the nearest base class declaring one."""
    for klass in cls.__mro__:
        spec = vars(klass).get("__dataclass_fields__", {}).get(name)
        if spec is not None and CHECK in spec.metadata:
            return spec.metadata[CHECK]
    return None


def validate_fields(config: Any, *, qualified: bool = False) -> None:
    """Check every field of the dataclass instance ``config`` that declares a rule, in order.

    A field declares its rule in its metadata (:func:`rule`, :data:`POSITIVE_INT`...); a
    field annotated ``bool`` without one must be ``True`` or ``False`` (:func:`check_flag`: a
    string such as ``"no"`` would otherwise count as true). Call this first thing in
    ``__post_init__``. A subclass that redeclares a field only to change
    its default (``epochs: int = 300``) keeps the rule of the base class that declared it.

    Args:
        config (dataclass instance): the configuration to check.
        qualified (bool, optional): name fields ``ClassName.field`` in messages.
            (default: ``False``)

    Raises:
        InputError: the first field whose value breaks its rule (the message names the
            field, the value and the valid range).
    """
    cls = type(config)
    prefix = f"{cls.__name__}." if qualified else ""
    for spec in fields(config):
        check = _field_check(cls, spec.name)
        if check is None and spec.type in ("bool", bool):  # a flag: True or False, not "no"
            check = check_flag
        if check is not None:
            check(prefix + spec.name, getattr(config, spec.name))
