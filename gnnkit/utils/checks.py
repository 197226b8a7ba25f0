"""Input validation shared by every public entry point.

Each check raises :class:`gnnkit.errors.InputError` (a ``ValueError``) whose message names the
argument, says what was received and the valid range (or how to fix it). Three kinds:

- tensors: :func:`check_edge_index`, :func:`check_edge_weight`, :func:`check_finite`,
  :func:`check_node_features`, :func:`check_range` (indices, labels, parts in ``[0, n)``);
- scalar arguments: :func:`check_int`, :func:`check_number`, :func:`check_probability`,
  :func:`check_flag`, :func:`check_choice`, :func:`check_seed`, :func:`check_type`;
- configuration dataclasses: the field rules of :mod:`gnnkit.utils.fields`, which apply the
  scalar checks above.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gnnkit.errors import InputError

__all__ = [
    "as_index",
    "check_choice",
    "check_edge_index",
    "check_edge_weight",
    "check_finite",
    "check_flag",
    "check_flags",
    "check_int",
    "check_ints",
    "check_node_features",
    "check_number",
    "check_probability",
    "check_range",
    "check_seed",
    "check_type",
]


def values_readable(tensor: Tensor) -> bool:
    """Whether a check may read ``tensor``'s values on the host here: not while
    ``torch.compile`` traces (a data-dependent branch would break the graph), nor while a CUDA
    graph captures the stream (a host read is not allowed then;
    :class:`gnnkit.train.CapturedStep` captures after eager steps that checked the
    same inputs)."""
    if torch.compiler.is_compiling():
        return False
    return not (tensor.is_cuda and torch.cuda.is_current_stream_capturing())


def is_integer_tensor(value: Any) -> bool:
    """Whether ``value`` is a tensor of integers (booleans, floats and complex numbers not)."""
    return isinstance(value, Tensor) and not (
        value.is_floating_point() or value.is_complex() or value.dtype == torch.bool
    )


def check_device(name: str, device: Any, *, require_available: bool = True) -> torch.device:
    """``device`` as a :class:`torch.device`: refused, with one line naming ``name``, when it
    is not a device name or (``require_available``) names CUDA on a machine without it (torch
    would raise a long list of device types, or an ``AssertionError`` from deep inside its
    CUDA module). ``require_available=False`` takes a device that is absent here (to describe
    what would run on it)."""
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"{name} must be cpu, cuda or cuda:N, got {device!r}") from None
    if require_available and resolved.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"{name} {device!r}: CUDA is not available on this machine; use cpu")
    return resolved


def describe(value: Any, *, dtype: bool = True) -> str:
    """What a message says it got: a tensor's dtype and shape (its shape alone without
    ``dtype``), anything else its type's name."""
    if not isinstance(value, Tensor):
        return type(value).__name__
    return f"{value.dtype} {tuple(value.shape)}" if dtype else str(tuple(value.shape))


def _preview(values: Tensor, limit: int = 5) -> str:
    shown = values.flatten()[:limit].tolist()
    more = "" if values.numel() <= limit else f" ... ({values.numel()} in all)"
    return f"{shown}{more}"


def as_index(name: str, value: Any) -> int:
    """``value`` as a Python ``int``: an ``int``, a numpy integer or a 0-dim integer tensor
    (booleans, floats and anything else are refused with a message naming ``name``)."""
    if isinstance(value, Tensor) and value.dim() == 0 and not value.is_floating_point():
        value = value.item() if value.dtype != torch.bool else value
    if isinstance(value, bool) or not hasattr(value, "__index__") or isinstance(value, Tensor):
        shown = (
            f"a tensor of shape {tuple(value.shape)}" if isinstance(value, Tensor) else repr(value)
        )
        raise InputError(f"{name} must be an integer, got {shown}")
    return int(value.__index__())


def _extremes(values: Any) -> tuple[Any, Any]:
    """The smallest and the largest entry of a non-empty tensor (one reduction, one host
    read) or array-like (through numpy), as Python numbers."""
    if isinstance(values, Tensor):
        low, high = torch.aminmax(values)
        if values.device.type == "cpu":
            return low.item(), high.item()
        return tuple(torch.stack([low, high]).tolist())  # one copy to the host
    array = np.asarray(values)
    return array.min().item(), array.max().item()


def check_range(
    name: str, values: Any, size: int, fix: str, *, what: str = "index", unit: str = "nodes"
) -> None:
    """Raise unless every entry of ``values`` lies in ``[0, size)``: node indices, class
    labels, part ids.

    Costs one min/max reduction and one host read (nothing for an empty ``values``). Skipped
    where values cannot be read on the host (``values_readable``: while ``torch.compile``
    traces or a CUDA graph captures). The message reads ``"{name} holds {what} {bad}, out of
    range for {size} {unit} (valid: 0 .. {size - 1}); {fix}"``.

    Args:
        name (str): the argument, as the message names it.
        values (Tensor or array-like): integer entries (a tensor, a numpy array, a list).
        size (int): the number of valid values, ``n``.
        fix (str): how to fix it, the end of the message.
        what (str, optional): what one entry is. (default: ``"index"``)
        unit (str, optional): what ``size`` counts. (default: ``"nodes"``)
    """
    if isinstance(values, Tensor):
        if values.numel() == 0 or not values_readable(values):
            return
    elif np.size(values) == 0:
        return
    low, high = _extremes(values)
    if low < 0 or high >= size:
        valid = f"valid: 0 .. {size - 1}" if size > 0 else "there are none"
        raise InputError(
            f"{name} holds {what} {low if low < 0 else high}, out of range for {size} {unit} "
            f"({valid}); {fix}"
        )


def check_edge_index(
    edge_index: Tensor, num_nodes: int | None = None, *, name: str = "edge_index"
) -> int:
    """Check that ``edge_index`` is an integer tensor of shape (2, |E|) with valid node indices.

    Args:
        edge_index (Tensor): the COO connectivity, row 0 the source and row 1 the target nodes.
        num_nodes (int, optional): the number of nodes; ``None`` derives it from the largest
            index plus one. (default: ``None``)
        name (str, optional): the argument name used in messages. (default: ``"edge_index"``)

    Returns:
        int: the number of nodes (``num_nodes`` or the derived value).
    """
    if not isinstance(edge_index, Tensor):
        raise InputError(
            f"{name} must be a torch.Tensor of shape (2, num_edges), got {type(edge_index).__name__}; "
            "build it with torch.tensor([[sources...], [targets...]], dtype=torch.long)"
        )
    if edge_index.layout != torch.strided:  # an adjacency matrix, not a list of edges
        raise InputError(
            f"{name} must be a dense (2, num_edges) tensor of node indices, got a sparse "
            f"{edge_index.layout} adjacency matrix; pass its edges, adj.to_sparse_coo().coalesce().indices() (the "
            "two rows swapped for a transposed adj_t), with its .values() as edge_weight"
        )
    if not is_integer_tensor(edge_index):
        raise InputError(
            f"{name} must hold integer node indices, got dtype {edge_index.dtype}; "
            f"convert it with {name}.long()"
        )
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        hint = (
            " (it looks transposed: use edge_index.t())"
            if edge_index.dim() == 2 and edge_index.size(1) == 2
            else ""
        )
        raise InputError(
            f"{name} must have shape (2, num_edges), got {tuple(edge_index.shape)}{hint}"
        )
    if num_nodes is not None:
        try:
            num_nodes = as_index("num_nodes", num_nodes)
        except InputError:
            raise InputError(f"num_nodes must be a non-negative int, got {num_nodes!r}") from None
        if num_nodes < 0:
            raise InputError(f"num_nodes must be a non-negative int, got {num_nodes!r}")
    if edge_index.numel() == 0:
        return 0 if num_nodes is None else num_nodes
    negative = edge_index[edge_index < 0]
    if negative.numel():
        raise InputError(
            f"{name} holds negative node indices {_preview(negative)}; node indices start at 0"
        )
    largest = int(edge_index.max())
    if num_nodes is None:
        return largest + 1
    if largest >= num_nodes:
        too_big = edge_index[edge_index >= num_nodes]
        raise InputError(
            f"{name} holds node indices {_preview(too_big)} out of range for num_nodes={num_nodes} "
            f"(valid: 0 .. {num_nodes - 1}); pass a larger num_nodes (to a layer: an x with one row "
            "per node) or fix the edges"
        )
    return num_nodes


def check_edge_weight(
    edge_weight: Tensor | None, num_edges: int, *, name: str = "edge_weight"
) -> None:
    """Check that ``edge_weight`` is ``None`` or a finite floating tensor of shape (|E|,)."""
    if edge_weight is None:
        return
    if not isinstance(edge_weight, Tensor) or not edge_weight.is_floating_point():
        got = edge_weight.dtype if isinstance(edge_weight, Tensor) else type(edge_weight).__name__
        raise InputError(
            f"{name} must be a floating-point tensor, got {got}; convert it with .float()"
        )
    if edge_weight.dim() != 1 or edge_weight.numel() != num_edges:
        raise InputError(
            f"{name} must have shape ({num_edges},), one weight per edge, got {tuple(edge_weight.shape)}"
        )
    check_finite(edge_weight, name=name)


def check_finite(tensor: Tensor, *, name: str) -> None:
    """Raise if a floating-point tensor holds NaN or infinity."""
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        bad = (~torch.isfinite(tensor)).sum().item()
        raise InputError(
            f"{name} holds {bad} NaN or infinite value(s); clean the input before passing it"
        )


def check_node_features(x: Tensor, num_nodes: int | None = None, *, name: str = "x") -> None:
    """Check node features: a floating tensor (dense or sparse) of shape (|V|, F), rows = nodes."""
    if not isinstance(x, Tensor):
        raise InputError(
            f"{name} must be a torch.Tensor of shape (num_nodes, num_features), got {type(x).__name__}"
        )
    if not x.is_floating_point():
        raise InputError(
            f"{name} must be floating point, got dtype {x.dtype}; convert it with {name}.float()"
        )
    if x.dim() != 2:
        raise InputError(f"{name} must have shape (num_nodes, num_features), got {tuple(x.shape)}")
    if num_nodes is not None and x.size(0) != num_nodes:
        raise InputError(
            f"{name} has {x.size(0)} rows but the graph has {num_nodes} nodes; "
            "pass one feature row per node (or the right num_nodes)"
        )
    if x.layout == torch.strided:
        check_finite(x, name=name)
    elif x.layout in (torch.sparse_coo, torch.sparse_csr):
        values = x.coalesce().values() if x.layout == torch.sparse_coo else x.values()
        check_finite(values, name=name)


# ---------------------------------------------------------------------------------------------
# Scalar arguments
# ---------------------------------------------------------------------------------------------


def check_type(name: str, value: Any, cls: type | tuple[type, ...], what: str) -> None:
    """Raise unless ``value`` is a ``cls``; the message says that ``name`` must be ``what``
    (``"a TrainConfig"``, ``"NodeInputs (from gnnkit.train.node_inputs)"``)."""
    if not isinstance(value, cls):
        raise InputError(f"{name} must be {what}, got {type(value).__name__}")


def check_callable(name: str, value: Any, what: str) -> None:
    """Raise unless ``value`` is ``None`` or callable (``what`` says what it should be)."""
    if value is not None and not callable(value):
        raise InputError(f"{name} must be {what}, got {type(value).__name__}")


def check_int(name: str, value: Any, minimum: int | None = 1, *, optional: bool = False) -> None:
    """Raise unless ``value`` is an integer (``int`` or numpy) >= ``minimum`` (booleans refused).

    Args:
        name (str): the argument name used in the message.
        value (Any): the value received.
        minimum (int, optional): the smallest valid value; ``None``: no bound. (default: ``1``)
        optional (bool, optional): ``None`` is valid too. (default: ``False``)
    """
    if value is None and optional:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)  # int and numpy integers
        or (minimum is not None and value < minimum)
    ):
        bound = "" if minimum is None else f" >= {minimum}"
        none = " or None" if optional else ""
        hint = (
            f"; pass int({name}) for a 0-dim tensor"
            if isinstance(value, Tensor) and value.dim() == 0 and not value.is_floating_point()
            else ""
        )
        raise InputError(f"{name} must be an integer{bound}{none}, got {value!r}{hint}")


def check_ints(*, minimum: int = 1, **values: Any) -> None:
    """:func:`check_int` on each keyword argument: ``check_ints(in_channels=3, heads=8)``."""
    for name, value in values.items():
        check_int(name, value, minimum)


def _interval(low: float, high: float, open_low: bool, open_high: bool) -> str:
    """``"> 0"``, ``">= 0"``, ``"in [0, 1)"``...: the valid range, as messages write it."""
    if math.isinf(high):
        return "" if math.isinf(low) else f" {'>' if open_low else '>='} {low:g}"
    if math.isinf(low):
        return f" {'<' if open_high else '<='} {high:g}"
    return f" in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"


def check_number(
    name: str,
    value: Any,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    open_low: bool = False,
    open_high: bool = False,
    optional: bool = False,
) -> None:
    """Raise unless ``value`` is a finite ``int`` or ``float`` between ``low`` and ``high``.

    NaN and infinity are refused whatever the bounds; so are booleans.

    Args:
        name (str): the argument name used in the message.
        value (Any): the value received.
        low, high (float, optional): the bounds, included unless ``open_low`` / ``open_high``.
            (default: ``-inf``, ``inf``: no bound)
        open_low, open_high (bool, optional): exclude the bound itself. (default: ``False``)
        optional (bool, optional): ``None`` is valid too. (default: ``False``)
    """
    if value is None and optional:
        return
    valid = (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
        and (value > low if open_low else value >= low)
        and (value < high if open_high else value <= high)
    )
    if not valid:
        bounded = not (math.isinf(low) or math.isinf(high))
        what = "a number" if bounded else "a finite number"
        none = " or None" if optional else ""
        interval = _interval(low, high, open_low, open_high)
        raise InputError(f"{name} must be {what}{interval}{none}, got {value!r}")


def check_probability(name: str, value: Any) -> None:
    """Raise unless ``value`` is a number in [0, 1) (a dropout rate, a held-out share)."""
    check_number(name, value, 0.0, 1.0, open_high=True)


def check_flag(name: str, value: Any) -> None:
    """Raise unless ``value`` is ``True`` or ``False``."""
    if not isinstance(value, bool):
        raise InputError(f"{name} must be True or False, got {value!r}")


def check_flags(**values: Any) -> None:
    """:func:`check_flag` on each keyword argument: ``check_flags(cached=True, residual=False)``."""
    for name, value in values.items():
        check_flag(name, value)


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
    """Raise unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise InputError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


#: The seeds ``torch.manual_seed`` takes: a 64-bit integer, signed or unsigned.
SEED_RANGE = (-(2**63), 2**64 - 1)


def check_seed(name: str, value: Any) -> None:
    """Raise unless ``value`` is ``None`` or an ``int`` that ``torch.manual_seed`` takes (in
    ``SEED_RANGE``; booleans refused)."""
    check_int(name, value, None, optional=True)
    if value is not None and not SEED_RANGE[0] <= value <= SEED_RANGE[1]:
        raise InputError(
            f"{name} must be a 64-bit integer ({SEED_RANGE[0]} .. {SEED_RANGE[1]}), got {value!r}"
        )
