r"""The sentence graph: citation sentences linked when they share a paper pair, source or target.

The committed homophily analysis (:func:`~gnnkit.citation.label_homophily`) finds the
graph's sentiment signal between *sentences*, not papers: two sentences of the same (citing,
cited) pair agree on positive labels 1.54 times and on negative labels 2.25 times more often
than chance. The models that use that signal directly (:mod:`~gnnkit.citation.labeltrick`,
:mod:`~gnnkit.citation.smoothing`) read it through the functions here:

- :func:`sibling_graph`: the (|E|, |E|) adjacency of sentences sharing a relation;
- :func:`normalized_adjacency`: :math:`D^{-1/2} A D^{-1/2}`, as label propagation uses it;
- :func:`sibling_label_features`: per sentence and relation, the class distribution of its
  siblings' *training* labels (the label trick's input features).

Relations: ``"pair"`` (same citing and cited paper), ``"source"`` (same citing paper),
``"target"`` (same cited paper). Copies of one sentence (one row per cited paper, equal
normalised text, :func:`~gnnkit.citation.text_groups`) are never linked: the grouped folds
put them in the same fold, so at test time a copy's label is never available, and a
training sentence must not learn from a signal its test counterpart cannot have.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from torch_geometric.data import Data

from gnnkit.citation.folds import FoldView, text_groups
from gnnkit.errors import InputError

__all__ = [
    "RELATIONS",
    "normalized_adjacency",
    "relation_keys",
    "sibling_graph",
    "sibling_label_features",
]

#: The relations that link two sentences.
RELATIONS = ("pair", "source", "target")


def relation_keys(data: Data, relation: str) -> np.ndarray:
    """(|E|,) int64: each sentence's key under ``relation`` (pair id, citing or cited paper)."""
    if relation not in RELATIONS:
        raise InputError(f"relation must be one of {', '.join(RELATIONS)}, got {relation!r}")
    if relation == "pair":
        return data.edge_pair.numpy()
    return data.edge_index[0 if relation == "source" else 1].numpy()


def _incidence(keys: np.ndarray) -> sp.csr_matrix:
    """(n, K) 0/1 matrix: row i has a 1 in column ``keys[i]``."""
    n = keys.size
    return sp.csr_matrix((np.ones(n), (np.arange(n), keys)), shape=(n, int(keys.max()) + 1))


def sibling_graph(data: Data, relation: str, *, link_copies: bool = False) -> sp.csr_matrix:
    """(|E|, |E|) 0/1 adjacency of the sentences that share ``relation``; no self-loops.

    Args:
        data (Data): the corpus graph (:func:`gnnkit.citation.to_data`).
        relation (str): ``"pair"``, ``"source"`` or ``"target"``.
        link_copies (bool, optional): also link copies of one sentence (equal normalised
            text). (default: ``False``)

    Returns:
        scipy.sparse.csr_matrix: symmetric, float64, zero diagonal.
    """
    keys = relation_keys(data, relation)
    b = _incidence(keys)
    adjacency = (b @ b.T).tocsr()  # (|E|, |E|): shared key
    if not link_copies:
        copies = _incidence(text_groups(data.text))
        adjacency = adjacency - adjacency.multiply(copies @ copies.T)
    adjacency.setdiag(0)
    adjacency.eliminate_zeros()
    adjacency.data[:] = 1.0
    return adjacency.tocsr()


def normalized_adjacency(adjacency: sp.spmatrix | sp.sparray) -> sp.csr_matrix:
    r""":math:`D^{-1/2} A D^{-1/2}` with :math:`D` the row sums of :math:`A` (0 rows stay 0).

    Args:
        adjacency (scipy.sparse matrix or array): (N, N) non-negative finite weights, e.g.
            :func:`sibling_graph`.

    Returns:
        scipy.sparse.csr_matrix: (N, N) float64.

    Raises:
        InputError: ``adjacency`` not scipy sparse (a dense array or a tensor), not square,
            or with a negative or non-finite weight (:math:`D^{-1/2}` of a negative degree
            is not a number).
    """
    if not sp.issparse(adjacency):
        shape = f" of shape {tuple(adjacency.shape)}" if hasattr(adjacency, "shape") else ""
        raise InputError(
            f"normalized_adjacency takes a scipy.sparse matrix, got {type(adjacency).__name__}"
            f"{shape}; convert a dense array a with scipy.sparse.csr_matrix(a), a torch tensor t "
            "with scipy.sparse.csr_matrix(t.to_dense().cpu().numpy())"
        )
    adjacency = sp.csr_matrix(adjacency, dtype=np.float64)
    if adjacency.shape[0] != adjacency.shape[1]:
        raise InputError(f"the adjacency must be square, got shape {adjacency.shape}")
    bad = ~(adjacency.data >= 0) | np.isinf(adjacency.data)  # negative, NaN or infinite
    if bad.any():
        first = np.flatnonzero(bad)[0]
        row = np.searchsorted(adjacency.indptr, first, side="right") - 1
        raise InputError(
            f"the adjacency's weights must be finite and >= 0 (D^-1/2 of a negative degree is "
            f"NaN), got {adjacency.data[first]} at ({row}, {adjacency.indices[first]}), "
            f"{int(bad.sum())} such weight(s) in all; drop or clip them"
        )
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    inv_sqrt = np.divide(1.0, np.sqrt(degree), out=np.zeros_like(degree), where=degree > 0)
    scale = sp.diags(inv_sqrt)
    return (scale @ adjacency @ scale).tocsr()


def sibling_label_features(
    view: FoldView, relations: Sequence[str] = ("pair", "source")
) -> np.ndarray:
    r"""The label trick's features: what the *training* labels of each sentence's siblings say.

    For sentence :math:`e`, relation :math:`r` and class :math:`c`, with :math:`N_r(e)` its
    siblings under :math:`r` (:func:`sibling_graph`: never itself, never a copy of itself)
    and :math:`T` the training sentences of the fold,

    .. math::
        n_{e,r} = |N_r(e) \cap T|, \qquad
        p_{e,r,c} = \frac{|\{e' \in N_r(e) \cap T : y_{e'} = c\}|}{\max(n_{e,r}, 1)}

    and the features are :math:`[p_{e,r,\cdot} \Vert \log(1 + n_{e,r})]` for each relation.
    Only ``view.y_train`` enters: a test sentence's label is not in the view, and no sentence
    sees its own label (the diagonal is zero).

    Returns:
        array: (|E|, len(relations) * (C + 1)) float64.
    """
    n = len(view.tokens)
    onehot = np.zeros((n, view.num_classes))
    onehot[view.train, view.y_train] = 1.0  # test rows stay 0
    parts = []
    for relation in relations:
        adjacency = sibling_graph(view.data, relation)
        counts = adjacency @ onehot  # (|E|, C)
        total = counts.sum(axis=1, keepdims=True)
        parts += [counts / np.maximum(total, 1.0), np.log1p(total)]
    return np.concatenate(parts, axis=1)
