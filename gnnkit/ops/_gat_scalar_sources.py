"""Kernel sources of the fused GAT's passes over per-edge scalars, written out per head count
(compiled and run by :mod:`gnnkit.ops._gat_rows`).

Each pass keeps one running value per head (a row's largest score, the softmax backward's
weighted sum, a receiver's or a sender's score gradient) in locals ``name_{h}``: LLVM's SLP
vectoriser packs the H of them into vectors, where the general kernels keep them in a small
array indexed by a head count known only at run time (one scalar update at a time). The
arithmetic and its order are the general kernels' (:mod:`gnnkit.ops._gat_cpu`), so the
results are the same bits. Each source defines ``kernel(lo, hi, ...)`` over rows ``lo:hi``,
reading its tensors through addresses (the globals of
:func:`gnnkit.ops._jit.kernel_globals` and :func:`gnnkit.ops._jit.node_row_globals`, plus
``INDEX``, ``ONE_U`` and ``NEG_INF``); the leaky ReLU's input adds the receiver's score
(``has_dst``) and the edge's (``has_score``) where given.
"""

from __future__ import annotations

__all__ = ["score", "score_grad", "source_grad"]


def _each_head(heads: int, *templates: str) -> list[str]:
    """Each line template (``str.format`` with ``h``) once per head, the templates in turn."""
    return [template.format(h=h) for template in templates for h in range(heads)]


# The receiver's row ``ih``; entry ``e`` at ``eh`` and its sender's row at ``jh``. The leaky
# ReLU's input ``s_{h}``: the sender's score, plus the receiver's and the edge's where given.
_SCORE_INPUT = [
    "            s_{h} = a_src[jh + E{h}]",
    "            if has_dst:",
    "                s_{h} += a_dst[ih + E{h}]",
    "            if has_score:",
    "                s_{h} += edge_score[eh + E{h}]",
]
_SCORE_ARRAYS = [
    "    rowptr = carray(INDEX(rowptr), hi + 1)",
    "    col = carray(INDEX(col), num_edges)",
    "    a_src = carray(FLOAT(a_src), num_src * HEADS_N)",
    "    a_dst = carray(FLOAT(a_dst), hi * HEADS_N if has_dst else 0)",
    "    edge_score = carray(FLOAT(edge_score), num_edges * HEADS_N if has_score else 0)",
    "    alpha = carray(FLOAT(alpha), num_edges * HEADS_N)",
    "    SLOPE = FLOAT_TYPE(slope)",
    "    for i in range(np.uint64(lo), np.uint64(hi)):",
    "        start, end = np.uint64(rowptr[i]), np.uint64(rowptr[i + ONE_U])",
    "        ih = i * HEADS",
]
_ENTRIES = ["        for e in range(start, end):", "            eh = e * HEADS"]
_SENDER_ENTRIES = [
    "        for e in range(start, end):",
    "            eh, jh = e * HEADS, np.uint64(col[e]) * HEADS",
]


def _score_input(heads: int) -> list[str]:
    lines: list[str] = []
    for line in _SCORE_INPUT:
        lines += [line] if line.endswith(":") else _each_head(heads, line)
    return lines


def score(heads: int, channels: int, dropout: bool) -> str:
    """``kernel(lo, hi, rowptr, col, a_src, a_dst, has_dst, edge_score, has_score, alpha,
    slope, num_edges, num_src)``: the forward's first pass, the leaky-ReLU scores less each
    row's maximum per head, into ``alpha`` (``channels`` and ``dropout`` are unused)."""
    lines = [
        "def kernel(lo, hi, rowptr, col, a_src, a_dst, has_dst, edge_score, has_score, alpha,",
        "           slope, num_edges, num_src):",
        *_SCORE_ARRAYS,
        *_each_head(heads, "        peak_{h} = NEG_INF"),
        *_SENDER_ENTRIES,
        *_score_input(heads),
    ]
    lines += _each_head(
        heads,
        "            z_{h} = s_{h} if s_{h} > ZERO else s_{h} * SLOPE",
        "            alpha[eh + E{h}] = z_{h}",
        "            peak_{h} = z_{h} if z_{h} > peak_{h} else peak_{h}",
    )
    lines += [*_ENTRIES, *_each_head(heads, "            alpha[eh + E{h}] -= peak_{h}")]
    return "\n".join(lines) + "\n"


def score_grad(heads: int, channels: int, dropout: bool) -> str:
    """``kernel(lo, hi, rowptr, col, a_src, a_dst, has_dst, edge_score, has_score, alpha,
    grad_score, grad_dst, slope, num_edges, num_src)``: the backward's pass over receivers,
    the softmax and leaky-ReLU backward of each row; ``grad_score`` holds the attention
    gradient on entry and the score gradient on exit."""
    lines = [
        "def kernel(lo, hi, rowptr, col, a_src, a_dst, has_dst, edge_score, has_score, alpha,",
        "           grad_score, grad_dst, slope, num_edges, num_src):",
        "    grad_score = carray(FLOAT(grad_score), num_edges * HEADS_N)",
        "    grad_dst = carray(FLOAT(grad_dst), hi * HEADS_N)",
        *_SCORE_ARRAYS,
        *_each_head(heads, "        weighted_{h} = ZERO"),
        *_ENTRIES,
        *_each_head(heads, "            weighted_{h} += alpha[eh + E{h}] * grad_score[eh + E{h}]"),
        *_each_head(heads, "        total_{h} = ZERO"),
        *_SENDER_ENTRIES,
        *_each_head(heads, "            g_{h} = alpha[eh + E{h}] * (grad_score[eh + E{h}] - weighted_{h})"),
        *_score_input(heads),
    ]  # fmt: skip
    lines += _each_head(
        heads,
        "            g_{h} = g_{h} if s_{h} > ZERO else g_{h} * SLOPE",
        "            grad_score[eh + E{h}] = g_{h}",
        "            total_{h} += g_{h}",
    )
    lines += _each_head(heads, "        grad_dst[ih + E{h}] = total_{h}")
    return "\n".join(lines) + "\n"


def source_grad(heads: int, channels: int, dropout: bool) -> str:
    """``kernel(lo, hi, colptr, perm_t, grad_score, grad_src, num_edges)``: the backward's
    last pass, each sender's score gradient, the sum of its edges' in the transposed order."""
    lines = [
        "def kernel(lo, hi, colptr, perm_t, grad_score, grad_src, num_edges):",
        "    colptr = carray(INDEX(colptr), hi + 1)",
        "    perm_t = carray(INDEX(perm_t), num_edges)",
        "    grad_score = carray(FLOAT(grad_score), num_edges * HEADS_N)",
        "    grad_src = carray(FLOAT(grad_src), hi * HEADS_N)",
        "    for j in range(np.uint64(lo), np.uint64(hi)):",
        *_each_head(heads, "        total_{h} = ZERO"),
        "        for k in range(np.uint64(colptr[j]), np.uint64(colptr[j + ONE_U])):",
        "            eh = np.uint64(perm_t[k]) * HEADS",
        *_each_head(heads, "            total_{h} += grad_score[eh + E{h}]"),
        *_each_head(heads, "        grad_src[j * HEADS + E{h}] = total_{h}"),
    ]
    return "\n".join(lines) + "\n"
