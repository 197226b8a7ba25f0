"""Kernel sources of the fused GAT's passes over feature rows, written out per (heads,
channels) (compiled and run by :mod:`gnnkit.ops._gat_rows`, which explains each pass and
when it runs).

Each source defines ``kernel(lo, hi, ...)`` over rows ``lo:hi``, reading its tensors through
addresses (the globals of :func:`gnnkit.ops._jit.kernel_globals` and
:func:`gnnkit.ops._jit.node_row_globals`, plus ``INDEX``, ``BYTE``, ``ZERO_U``, ``ONE_U``,
``LINE`` (entries per cache line), ``prefetch_l2``, ``transpose8`` and ``DROPOUT``). A row's
sums are locals ``sum_{k}`` that LLVM's SLP vectoriser packs into vectors; every sum adds its
terms in a fixed order, which :mod:`gnnkit.ops._gat_rows_check` repeats in numpy.

Attention dropout multiplies each coefficient by its mask value, ``SCALE`` times the keep
flag read as a byte (:func:`masked`), as torch's ``alpha * keep * scale`` does: a dropped
entry is 0 times its value (a NaN stays NaN, a negative gradient gives -0). Written as a
choice (``value * SCALE if keep else ZERO``), the kernels branched on every entry: x86 has no
conditional move for a scalar float, LLVM lowers such a choice to a jump, and the keep flags
are random, so the processor cannot predict the jumps. Read as ``bool`` the flag is one LLVM
knows to be 0 or 1, and it turns the product back into that choice; read as a byte it cannot
(Cora with dropout 0.6, 1 thread: the aggregation of 8 heads x 8 channels 215 against 608 us,
of 1 x 7 63 against 123 us, a GAT training epoch 1.04x as fast;
``benchmarks/results/gat_dropout_mask.md``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

__all__ = [
    "aggregate",
    "aggregate_by_head",
    "halving_sum",
    "heads_last",
    "masked",
    "sender_grad",
    "sender_grad_by_head",
]


def _inverses(heads: range, indent: str) -> list[str]:
    """Lines that set ``inverse_{h}`` for each of ``heads`` to 1 / the sum of row
    ``start:end``'s exponentials (0 for an empty row)."""
    lines = [f"{indent}inverse_{h} = ZERO" for h in heads]
    lines.append(f"{indent}for e in range(start, end):")
    lines += [f"{indent}    inverse_{h} += alpha[e * HEADS + E{h}]" for h in heads]
    lines += [f"{indent}inverse_{h} = ONE / inverse_{h} if end > start else ZERO" for h in heads]
    return lines


def _coefficients(heads: range, dropout: bool, indent: str) -> list[str]:
    """Lines that turn entry ``e``'s exponentials into ``a_{h}`` for each of ``heads``
    (``eh`` = ``e`` H): normalised (and stored in ``alpha``), then with the dropout mask
    applied where ``dropout``."""
    lines = []
    for h in heads:
        lines += [
            f"{indent}a_{h} = alpha[eh + E{h}] * inverse_{h}",
            f"{indent}alpha[eh + E{h}] = a_{h}",
        ]
        if dropout:
            lines.append(f"{indent}a_{h} = {masked(f'a_{h}', f'eh + E{h}')}")
    return lines


def masked(value: str, entry: str) -> str:
    """Source of ``value`` times entry ``entry``'s dropout mask value (module docstring)."""
    return f"{value} * (SCALE * FLOAT_TYPE(keep[{entry}]))"


def _aggregation_header(extra: str) -> list[str]:
    """The first lines of an aggregation kernel, ``extra`` arguments before ``scale``: its
    signature and its arrays at the addresses it is given."""
    return [
        f"def kernel(lo, hi, rowptr, col, xw, alpha, keep, out, {extra}scale, num_edges, num_x):",
        "    rowptr = carray(INDEX(rowptr), hi + 1)",
        "    col = carray(INDEX(col), num_edges)",
        "    xw = carray(FLOAT(xw), num_x * ENTRIES_N)",
        "    alpha = carray(FLOAT(alpha), num_edges * HEADS_N)",
        "    keep = carray(BYTE(keep), num_edges * HEADS_N if DROPOUT else 0)",
        "    out = carray(FLOAT(out), hi * ENTRIES_N)",
    ]


def aggregate(heads: int, channels: int, dropout: bool) -> str:
    """``kernel(lo, hi, rowptr, col, xw, alpha, keep, out, scale, num_edges, num_x)``."""
    entries = heads * channels
    lines = [
        *_aggregation_header(""),
        "    SCALE = FLOAT_TYPE(scale)",
        "    for i in range(np.uint64(lo), np.uint64(hi)):",
        "        start, end = np.uint64(rowptr[i]), np.uint64(rowptr[i + ONE_U])",
    ]
    lines += _inverses(range(heads), "        ")
    lines += [f"        sum_{k} = ZERO" for k in range(entries)]
    lines += [
        "        for e in range(start, end):",
        "            row, eh = np.uint64(col[e]) * ENTRIES, e * HEADS",
    ]
    lines += _coefficients(range(heads), dropout, "            ")
    lines += [f"            sum_{k} += a_{k // channels} * xw[row + E{k}]" for k in range(entries)]
    lines.append("        row = i * ENTRIES")
    lines += [f"        out[row + E{k}] = sum_{k}" for k in range(entries)]
    return "\n".join(lines) + "\n"


def aggregate_by_head(heads: int, channels: int, dropout: bool) -> str:
    """``kernel(lo, hi, rowptr, col, xw, alpha, keep, out, distance, scale, num_edges,
    num_x)``: the aggregation of :func:`aggregate` for features past the cache, one
    head at a time. Each head's C sums are locals (a few vector registers, where H x C of
    them would spill); each head's pass asks for its own lines of the sender row
    ``distance`` entries ahead (spread over the passes, as in :func:`sender_grad_by_head`).
    Each sum adds the same terms in the same order as :func:`aggregate`: the same bits."""
    lines = [
        *_aggregation_header("distance, "),
        "    SCALE, AHEAD = FLOAT_TYPE(scale), np.uint64(distance)",
        "    LAST = np.uint64(num_edges) - AHEAD if np.uint64(num_edges) > AHEAD else ZERO_U",
        "    for i in range(np.uint64(lo), np.uint64(hi)):",
        "        start, end, row = np.uint64(rowptr[i]), np.uint64(rowptr[i + ONE_U]), i * ENTRIES",
    ]
    for h in range(heads):
        lines += _inverses(range(h, h + 1), "        ")
        lines += [f"        sum_{c} = ZERO" for c in range(channels)]
        lines.append("        for e in range(start, end):")
        lines += _ahead_lines("xw", ("col", "e"), h, channels, "            ")
        lines.append("            sender, eh = np.uint64(col[e]) * ENTRIES, e * HEADS")
        lines += _coefficients(range(h, h + 1), dropout, "            ")
        lines += [
            f"            sum_{c} += a_{h} * xw[sender + E{h * channels + c}]"
            for c in range(channels)
        ]
        lines += [f"        out[row + E{h * channels + c}] = sum_{c}" for c in range(channels)]
    return "\n".join(lines) + "\n"


def sender_grad(heads: int, channels: int, dropout: bool) -> str:
    """``kernel(lo, hi, colptr, row_t, perm_t, xw, alpha, keep, grad_out, grad_xw,
    grad_alpha, scale, num_edges, num_rows)``. ``grad_out`` is read and ``grad_xw`` written
    heads-last, (N, C, H) (:func:`heads_last`; for one head that is its own layout), ``xw``
    read in its own (N, H, C) once per sender. The per-edge sums over channels then run
    across the heads' lanes, one vector per channel, with no horizontal sums, and each
    sender's running sums take the gathered row as it lies: written in (H, C) order, LLVM's
    SLP vectoriser packed the sums in that order and permuted every gathered row to match
    (Cora's 8 heads x 8, 1 thread: 311 against 165 us a pass, the heads-last copies included;
    ``benchmarks/gat_sender_pass.py``)."""
    entries = heads * channels
    lines = [
        *_sender_header(""),
        "    SCALE = FLOAT_TYPE(scale)",
        "    for j in range(np.uint64(lo), np.uint64(hi)):",
        "        row = j * ENTRIES",
    ]
    # Entry k = h C + c of a row in (H, C) order sits at c H + h heads-last.
    order = [(h, c) for c in range(channels) for h in range(heads)]  # heads-last order
    lines += [f"        x_{h * channels + c} = xw[row + E{h * channels + c}]" for h, c in order]
    lines += [f"        sum_{c * heads + h} = ZERO" for h, c in order]
    lines += [
        "        for k in range(np.uint64(colptr[j]), np.uint64(colptr[j + ONE_U])):",
        "            e, i = np.uint64(perm_t[k]) * HEADS, np.uint64(row_t[k]) * ENTRIES",
    ]
    lines += [f"            g_{h} = ZERO" for h in range(heads)]
    lines += [
        f"            g_{h} += grad_out[i + E{c * heads + h}] * x_{h * channels + c}"
        for h, c in order
    ]
    lines += [f"            a_{h} = alpha[e + E{h}]" for h in range(heads)]
    if dropout:
        for h in range(heads):
            lines += [
                f"            g_{h} = {masked(f'g_{h}', f'e + E{h}')}",
                f"            a_{h} = {masked(f'a_{h}', f'e + E{h}')}",
            ]
    lines += [f"            grad_alpha[e + E{h}] = g_{h}" for h in range(heads)]
    lines += [
        f"            sum_{c * heads + h} += a_{h} * grad_out[i + E{c * heads + h}]"
        for h, c in order
    ]
    lines += [f"        grad_xw[row + E{k}] = sum_{k}" for k in range(entries)]  # heads-last
    return "\n".join(lines) + "\n"


def _ahead_lines(
    array: str, index: tuple[str, str], h: int, channels: int, indent: str
) -> list[str]:
    """Lines that ask for head ``h``'s entries of a row of ``array``: the row that the index
    array ``index[0]`` (``col`` or ``row_t``) names ``AHEAD`` entries past entry ``index[1]``
    (unless that is past ``LAST``). Its cache lines, and the line of its last entry for a
    head that straddles two, into L2 (``gnnkit.ops._jit._prefetch`` says why)."""
    (indices, entry), base, last = index, h * channels, h * channels + channels - 1
    return [
        f"{indent}if {entry} < LAST:",
        f"{indent}    ahead = np.uint64({indices}[{entry} + AHEAD]) * ENTRIES",
        f"{indent}    for q in range(np.uint64({base}), np.uint64({base + channels}), LINE):",
        f"{indent}        prefetch_l2({array}, ahead + q)",
        f"{indent}    prefetch_l2({array}, ahead + np.uint64({last}))",
    ]


def halving_sum(terms: list[Any], add: Callable[[Any, Any], Any]) -> Any:
    """``terms`` summed in a fixed tree: term ``c`` plus term ``c + ceil(n / 2)``, halving
    until one is left (the order of a vector's horizontal sum, so LLVM's SLP vectoriser
    packs each level into vectors). ``add`` joins two: kernel source text, or numbers in
    :mod:`gnnkit.ops._gat_rows_check`."""
    while len(terms) > 1:
        half = (len(terms) + 1) // 2
        terms = [
            add(terms[c], terms[c + half]) if c + half < len(terms) else terms[c]
            for c in range(half)
        ]
    return terms[0]


def _sender_header(extra: str) -> list[str]:
    """The first lines of a sender-pass kernel, ``extra`` arguments before ``scale``."""
    return [
        "def kernel(lo, hi, colptr, row_t, perm_t, xw, alpha, keep, grad_out, grad_xw,",
        f"           grad_alpha, {extra}scale, num_edges, num_rows):",
        "    colptr = carray(INDEX(colptr), hi + 1)",
        "    row_t = carray(INDEX(row_t), num_edges)",
        "    perm_t = carray(INDEX(perm_t), num_edges)",
        "    xw = carray(FLOAT(xw), hi * ENTRIES_N)",
        "    alpha = carray(FLOAT(alpha), num_edges * HEADS_N)",
        "    keep = carray(BYTE(keep), num_edges * HEADS_N if DROPOUT else 0)",
        "    grad_out = carray(FLOAT(grad_out), num_rows * ENTRIES_N)",
        "    grad_xw = carray(FLOAT(grad_xw), hi * ENTRIES_N)",
        "    grad_alpha = carray(FLOAT(grad_alpha), num_edges * HEADS_N)",
    ]


def sender_grad_by_head(heads: int, channels: int, dropout: bool) -> str:
    """``kernel(lo, hi, colptr, row_t, perm_t, xw, alpha, keep, grad_out, grad_xw,
    grad_alpha, distance, scale, num_edges, num_rows)``: the sender pass of
    :func:`sender_grad` for features past the cache, one head at a time, ``grad_out`` read
    in its own (N, H, C) layout. The head's C inputs ``x_{c}`` and sums ``sum_{c}`` are
    locals (a few vector registers); each edge's dot product is a :func:`halving_sum` of
    its C products. Each head's pass asks for its own lines of the receiver row ``distance``
    entries ahead, so the requests are spread over the whole pass (the first head asking for
    every line: 329 against 229 ms in a prototype at ogbn-arxiv's size), and the first
    head's pass asks for the edge's attention values too."""
    lines = [
        *_sender_header("distance, "),
        "    SCALE, AHEAD = FLOAT_TYPE(scale), np.uint64(distance)",
        "    LAST = np.uint64(num_edges) - AHEAD if np.uint64(num_edges) > AHEAD else ZERO_U",
        "    for j in range(np.uint64(lo), np.uint64(hi)):",
        "        start, end, row = np.uint64(colptr[j]), np.uint64(colptr[j + ONE_U]), j * ENTRIES",
    ]
    for h in range(heads):
        base = h * channels
        lines += [f"        x_{c} = xw[row + E{base + c}]" for c in range(channels)]
        lines += [f"        sum_{c} = ZERO" for c in range(channels)]
        lines.append("        for k in range(start, end):")
        lines += _ahead_lines("grad_out", ("row_t", "k"), h, channels, "            ")
        if h == 0:  # the edge's attention values, for every head
            lines += [
                "                edge = np.uint64(perm_t[k + AHEAD]) * HEADS",
                "                prefetch_l2(alpha, edge)",
                "                prefetch_l2(grad_alpha, edge)",
            ]
            if dropout:
                lines.append("                prefetch_l2(keep, edge)")
        lines.append(
            "            e, i = np.uint64(perm_t[k]) * HEADS, np.uint64(row_t[k]) * ENTRIES"
        )
        lines += [f"            o_{c} = grad_out[i + E{base + c}]" for c in range(channels)]
        products = [f"o_{c} * x_{c}" for c in range(channels)]
        lines.append("            g = " + halving_sum(products, lambda a, b: f"({a} + {b})"))
        lines.append(f"            a = alpha[e + E{h}]")
        if dropout:
            lines += [
                f"            g = {masked('g', f'e + E{h}')}",
                f"            a = {masked('a', f'e + E{h}')}",
            ]
        lines.append(f"            grad_alpha[e + E{h}] = g")
        lines += [f"            sum_{c} += a * o_{c}" for c in range(channels)]
        lines += [f"        grad_xw[row + E{base + c}] = sum_{c}" for c in range(channels)]
    return "\n".join(lines) + "\n"


def heads_last(heads: int, channels: int, dropout: bool) -> str:
    """``kernel(lo, hi, src, dst)``: the (N, H, C) rows of ``src`` into ``dst`` as (N, C, H),
    the layout the sender pass gathers and writes. With H and C multiples of 8, each row's
    8 x 8 blocks go through ``transpose8`` (:func:`gnnkit.ops._jit._transpose8`: vector
    shuffles; Cora's 2708 x 8 x 8, one thread: 40 us, against 107 us for the same copy written
    as 64 scalar moves and 175 us for torch's ``transpose(1, 2).contiguous()``,
    ``benchmarks/results/weight_copies.md``); other shapes read each row whole into locals,
    then store them in the new order."""
    lines = [
        "def kernel(lo, hi, src, dst):",
        "    src = carray(FLOAT(src), hi * ENTRIES_N)",
        "    dst = carray(FLOAT(dst), hi * ENTRIES_N)",
        "    for i in range(np.uint64(lo), np.uint64(hi)):",
        "        row = i * ENTRIES",
    ]
    if heads % 8 == 0 and channels % 8 == 0:  # row strides: C entries in, H out
        for h, c in itertools.product(range(0, heads, 8), range(0, channels, 8)):
            source, target = f"row + E{h * channels + c}", f"row + E{c * heads + h}"
            lines.append(f"        transpose8(src, {source}, E{channels}, dst, {target}, HEADS)")
        return "\n".join(lines) + "\n"
    lines += [f"        x_{k} = src[row + E{k}]" for k in range(heads * channels)]
    lines += [
        f"        dst[row + E{c * heads + h}] = x_{h * channels + c}"
        for c in range(channels)
        for h in range(heads)
    ]
    return "\n".join(lines) + "\n"
