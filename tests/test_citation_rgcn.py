"""``rgcn``: the relational GCN over typed sentence edges (issue 21, part 4).

References written here: the typed edges of a six-sentence corpus listed by hand, and PyG's
own ``RGCNConv`` (``aggr="mean"``) with copied weights for the relational layer.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch_geometric.nn import RGCNConv

from gnnkit.citation import (
    CitationRecord,
    Fold,
    RGCNModel,
    SentenceRGCN,
    fold_view,
    make_model,
    sibling_graph,
    sibling_means,
    to_data,
    typed_sentence_edges,
)
from gnnkit.errors import InputError

pytestmark = pytest.mark.usefixtures("one_thread")

#: (source, target, label, text); sentence 2 is a copy of sentence 0 citing another paper.
TINY = [
    ("S1", "T1", "p", "Great method."),
    ("S1", "T1", "n", "It fails badly."),
    ("S1", "T2", "p", "great  method"),
    ("S2", "T1", "o", "They use it."),
    ("S2", "T2", "p", "Excellent results here."),
    ("S3", "T2", "o", "As in prior work."),
]


def tiny():
    return to_data([CitationRecord(s, t, lab, x, i) for i, (s, t, lab, x) in enumerate(TINY)])


def both(*pairs):
    return {e for i, j in pairs for e in ((i, j), (j, i))}


#: Worked out on paper: pair (S1, T1) = {0, 1}; source S1 = {0, 1, 2} without the copy link
#: 0-2, S2 = {3, 4}; target T1 = {0, 1, 3}, T2 = {2, 4, 5}.
EXPECTED = {
    0: both((0, 1)),
    1: both((0, 1), (1, 2), (3, 4)),
    2: both((0, 1), (0, 3), (1, 3), (2, 4), (2, 5), (4, 5)),
}


def test_typed_edges_by_hand():
    edge_index, edge_type = typed_sentence_edges(tiny())
    assert edge_index.dtype == edge_type.dtype == torch.long
    assert edge_index.shape == (2, 20) and edge_type.shape == (20,)
    for k, expected in EXPECTED.items():
        got = edge_index[:, edge_type == k].t().tolist()
        assert len(got) == len(expected) and set(map(tuple, got)) == expected
    # Relation order follows the argument.
    index, types = typed_sentence_edges(tiny(), ("target", "pair"))
    assert set(map(tuple, index[:, types == 1].t().tolist())) == EXPECTED[0]
    assert int((types == 0).sum()) == 12


def corpus(n=150, seed=0):
    """Sentences whose words carry the label, grouped in (source, target) pairs."""
    rng = np.random.default_rng(seed)
    y = rng.choice(3, size=n, p=[0.6, 0.25, 0.15])
    words = ["plain", "great", "poor"]
    records = [
        CitationRecord(
            f"S{i % 9}", f"T{i % 4}", "opn"[c], f"a {words[c]} idea {rng.integers(1000)} {i}", i
        )
        for i, c in enumerate(y)
    ]
    return to_data(records)


def with_copies():
    """:func:`corpus` plus copies of ten sentences citing other papers (copies never link)."""
    data = corpus(60)
    records = [
        CitationRecord(s, t, lab, x, i)
        for i, (s, t, lab, x) in enumerate(
            zip(
                [data.paper_ids[int(p)] for p in data.edge_index[0]],
                [data.paper_ids[int(p)] for p in data.edge_index[1]],
                ["opn"[int(c)] for c in data.y],
                data.text,
                strict=True,
            )
        )
    ]
    copies = [
        CitationRecord(r.source, f"T{(int(r.target[1:]) + 1) % 4}", r.label, r.text.upper(), 60 + i)
        for i, r in enumerate(records[:10])
    ]
    return to_data(records + copies)


@pytest.mark.parametrize("relation", ["pair", "source", "target"])
def test_sibling_mean_is_the_row_normalised_sibling_graph(relation):
    data = with_copies()
    a = torch.as_tensor(sibling_graph(data, relation).toarray(), dtype=torch.float32)
    expected = a / a.sum(1, keepdim=True).clamp(min=1)
    (mean,) = sibling_means(data, (relation,))
    assert torch.allclose(mean.to_dense(), expected, atol=1e-6)


def test_layer_matches_pyg_rgcnconv():
    torch.manual_seed(0)
    data = with_copies()
    n, v, hidden, relations = data.edge_index.size(1), 20, 8, 3
    x = (torch.rand(n, v) < 0.3).float() * torch.rand(n, v)
    model = SentenceRGCN(v, hidden, relations, 3, label_channels=2).eval()
    labels = torch.rand(n, 2)
    out = model(x.to_sparse(), sibling_means(data), labels)
    assert out.shape == (n, 3)
    conv = RGCNConv(hidden, hidden, relations, aggr="mean")
    with torch.no_grad():
        conv.weight.copy_(model.relation[0])
        conv.root.copy_(model.root[0].weight.t())
        conv.bias.copy_(model.root[0].bias)
    edge_index, edge_type = typed_sentence_edges(data)
    h = F.relu(x @ model.project)
    h = F.relu(conv(h, edge_index, edge_type))
    expected = model.head(torch.cat([h, labels], dim=1))
    assert torch.allclose(out, expected, atol=1e-5)
    with pytest.raises(InputError, match="expected 3 adjacency matrices"):
        model(x.to_sparse(), sibling_means(data)[:2], labels)


FAST = {"hidden": 16, "epochs": 60, "patience": 60, "min_df": 1}


@pytest.mark.parametrize("name", ["rgcn", "rgcn-edges", "rgcn-text"])
def test_rgcn_learns_and_never_sees_test_labels(name):
    data = corpus()
    rng = np.random.default_rng(1)
    test = np.sort(rng.choice(data.y.numel(), 40, replace=False))
    train = np.setdiff1d(np.arange(data.y.numel()), test)
    view = fold_view(data, Fold(0, train, test))
    model = make_model(name, seed=0, **FAST)
    assert isinstance(model, RGCNModel)
    assert len(model.relations) == (0 if name == "rgcn-text" else 3)
    pred = model.fit(view).predict(view)
    assert pred.shape == test.shape and pred.dtype == np.int64
    assert (pred == data.y.numpy()[test]).mean() > 0.8
    logits = model._all_logits(np.arange(data.y.numel()))
    assert logits.shape == (data.y.numel(), 3)
    scrambled = corpus()
    scrambled.y[test] = (scrambled.y[test] + 1) % 3
    again = make_model(name, seed=0, **FAST)
    assert np.array_equal(again.fit(fold_view(scrambled, Fold(0, train, test))).predict(view), pred)


def test_rgcn_errors():
    with pytest.raises(InputError, match="relations must be distinct names"):
        RGCNModel(relations=("pair", "authors"))
    with pytest.raises(InputError, match="relations must be distinct names"):
        typed_sentence_edges(tiny(), ("pair", "pair"))
    with pytest.raises(InputError, match="relations must be distinct names"):
        typed_sentence_edges(tiny(), ())
    with pytest.raises(InputError, match="label_features=True needs at least one relation"):
        RGCNModel(relations=())
    with pytest.raises(InputError, match="not fitted"):
        RGCNModel().predict(fold_view(tiny(), Fold(0, np.array([0, 1, 3, 4]), np.array([2, 5]))))
