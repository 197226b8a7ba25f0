"""The sentence graph and the models that read its labels (issue 21, part 4).

References written here: a brute-force loop over sentence pairs for the sibling graph and the
label features, a dense ``D^-1/2 A D^-1/2`` and a dense numpy Correct & Smooth (Huang et al.
2021, with PyG's autoscale and clamping) for :func:`correct_and_smooth`.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from gnnkit.citation import (
    CitationRecord,
    CorrectSmoothModel,
    Fold,
    LabelTrickModel,
    correct_and_smooth,
    fold_view,
    make_model,
    normalize_text,
    normalized_adjacency,
    sibling_graph,
    sibling_label_features,
    to_data,
)
from gnnkit.errors import InputError

#: (source, target, label, text): S1 cites T1 twice, one sentence copied to cite T2 as well.
TINY = [
    ("S1", "T1", "p", "Great method."),
    ("S1", "T1", "n", "It fails badly."),
    ("S1", "T2", "p", "great  method"),  # a copy of sentence 0
    ("S2", "T1", "o", "They use it."),
    ("S2", "T2", "p", "Excellent results here."),
    ("S3", "T2", "o", "As in prior work."),
]


def tiny():
    return to_data([CitationRecord(s, t, lab, x, i) for i, (s, t, lab, x) in enumerate(TINY)])


def brute_graph(rows, relation):
    key = {"pair": lambda r: (r[0], r[1]), "source": lambda r: r[0], "target": lambda r: r[1]}
    n = len(rows)
    a = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            same_text = normalize_text(rows[i][3]) == normalize_text(rows[j][3])
            if i != j and not same_text and key[relation](rows[i]) == key[relation](rows[j]):
                a[i, j] = 1
    return a


@pytest.mark.parametrize("relation", ["pair", "source", "target"])
def test_sibling_graph_against_brute_force(relation):
    a = sibling_graph(tiny(), relation).toarray()
    assert np.array_equal(a, brute_graph(TINY, relation))
    assert np.array_equal(a, a.T) and not a.diagonal().any()


def test_sibling_graph_by_hand_and_errors():
    pair = sibling_graph(tiny(), "pair").toarray()
    assert pair[0, 1] == pair[1, 0] == 1  # same (S1, T1)
    assert sibling_graph(tiny(), "source").toarray()[0, 2] == 0  # a copy is never a sibling
    assert sibling_graph(tiny(), "source", link_copies=True).toarray()[0, 2] == 1
    with pytest.raises(InputError, match="relation must be one of pair, source, target"):
        sibling_graph(tiny(), "author")


def test_normalized_adjacency_against_dense():
    rng = np.random.default_rng(0)
    a = (rng.random((7, 7)) < 0.4).astype(float)
    a = np.triu(a, 1) + np.triu(a, 1).T
    a[6] = a[:, 6] = 0  # an isolated node stays 0
    d = a.sum(1)
    inv = np.where(d > 0, 1 / np.sqrt(np.where(d > 0, d, 1)), 0)
    assert np.allclose(normalized_adjacency(sp.csr_matrix(a)).toarray(), inv[:, None] * a * inv)
    with pytest.raises(InputError, match="must be square"):
        normalized_adjacency(sp.csr_matrix(np.ones((2, 3))))


def view_of(data, train, seed=0):
    train = np.array(sorted(train))
    test = np.setdiff1d(np.arange(data.y.numel()), train)
    return fold_view(data, Fold(0, train, test), seed=seed)


def test_label_features_against_brute_force_and_never_see_test_or_own_labels():
    data = tiny()
    view = view_of(data, [0, 1, 3, 4])
    feats = sibling_label_features(view, ("pair", "source"))
    y = data.y.numpy()
    train = set(view.train.tolist())
    for relation, offset in (("pair", 0), ("source", 4)):
        a = brute_graph(TINY, relation)
        for e in range(len(TINY)):
            counts = np.zeros(3)
            for j in np.flatnonzero(a[e]):
                if j in train:
                    counts[y[j]] += 1
            total = counts.sum()
            assert np.allclose(feats[e, offset : offset + 3], counts / max(total, 1))
            assert np.isclose(feats[e, offset + 3], np.log1p(total))
    # Sentence 2 (a test copy of 0) sees only S1's other training sentence 1 (negative).
    assert feats[2, 4:8].tolist() == pytest.approx([0, 0, 1, np.log1p(1)])
    # Changing the test labels changes nothing; a sentence's own label never enters its row.
    other = tiny()
    other.y[view.test] = (other.y[view.test] + 1) % 3
    assert np.array_equal(sibling_label_features(view_of(other, view.train)), feats)
    flipped = tiny()
    flipped.y[0] = 2
    changed = sibling_label_features(view_of(flipped, view.train))
    assert np.array_equal(changed[0], feats[0]) and not np.array_equal(changed[1], feats[1])


def dense_correct_and_smooth(z, y_train, train, s, layers, alpha):
    """Huang et al. (2021) with PyG's autoscale and clamping, in dense numpy."""
    c = z.shape[1]
    y = np.eye(c)[y_train]
    e0 = np.zeros_like(z)
    e0[train] = y - z[train]
    e = e0.copy()
    for _ in range(layers[0]):
        e = np.clip(alpha[0] * s @ e + (1 - alpha[0]) * e0, -1, 1)
    sigma = np.abs(e0[train]).sum() / train.size
    with np.errstate(divide="ignore"):
        scale = sigma / np.abs(e).sum(1, keepdims=True)
    scale[np.isinf(scale) | (scale > 1000)] = 1.0
    g0 = z + scale * e
    g0[train] = y
    g = g0.copy()
    for _ in range(layers[1]):
        g = np.clip(alpha[1] * s @ g + (1 - alpha[1]) * g0, 0, 1)
    return g


@pytest.mark.parametrize("seed", [0, 1])
def test_correct_and_smooth_against_dense_numpy(seed):
    rng = np.random.default_rng(seed)
    n = 12
    a = (rng.random((n, n)) < 0.3).astype(float)
    a = np.triu(a, 1) + np.triu(a, 1).T
    s = normalized_adjacency(sp.csr_matrix(a))
    z = rng.dirichlet(np.ones(3), size=n)
    train = np.sort(rng.choice(n, 6, replace=False))
    y_train = rng.integers(0, 3, size=6)
    got = correct_and_smooth(z, y_train, train, s, layers=(7, 5), alpha=(0.7, 0.6))
    want = dense_correct_and_smooth(z, y_train, train, s.toarray(), (7, 5), (0.7, 0.6))
    assert np.allclose(got, want, atol=1e-10)
    assert np.allclose(
        got[train],
        dense_correct_and_smooth(z, y_train, train, s.toarray(), (7, 5), (0.7, 0.6))[train],
    )


def cs_inputs():
    """Four nodes, three classes, nodes 0 and 1 labelled."""
    return np.full((4, 3), 1 / 3), np.array([0, 1]), np.array([0, 1]), sp.eye(4).tocsr()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"norm_adjacency": sp.eye(5).tocsr()}, r"norm_adjacency must be a scipy sparse \(4, 4\)"),
        ({"norm_adjacency": np.eye(4)}, r"scipy sparse \(4, 4\) matrix.*got ndarray"),
        ({"z": np.ones(4)}, r"z must be \(n, C\) soft predictions, got shape \(4,\)"),
        ({"train": np.array([0, 9])}, r"train holds node index\(es\) 9 outside \[0, 4\)"),
        ({"train": np.array([0, -1])}, r"train holds node index\(es\) -1 outside \[0, 4\)"),
        ({"y_train": np.array([0])}, r"one class per training node \(2\), got shape \(1,\)"),
        ({"y_train": np.array([0, 7])}, r"y_train holds class id 7, out of range for 3 classes"),
        ({"alpha": (2.0, 0.8)}, r"alpha\[0\] must be a number in \[0, 1\), got 2.0"),
        ({"alpha": (0.8, -0.1)}, r"alpha\[1\] must be a number in \[0, 1\), got -0.1"),
        ({"layers": (-1, 5)}, r"layers\[0\] must be an integer >= 1, got -1"),
        ({"layers": (5,)}, r"layers must be a pair \(correction, smoothing\), got \(5,\)"),
    ],
)
def test_correct_and_smooth_refuses_what_pyg_and_the_model_refuse(change, message):
    z, y_train, train, s = cs_inputs()
    inputs = {"z": z, "y_train": y_train, "train": train, "norm_adjacency": s}
    options = {k: change.pop(k) for k in ("alpha", "layers") if k in change}
    inputs.update(change)
    with pytest.raises(InputError, match=message):
        correct_and_smooth(*inputs.values(), **options)


def test_correct_and_smooth_uses_the_models_rules():
    # The same rules as the CorrectSmoothModel fields they stand for.
    with pytest.raises(InputError, match=r"correction_alpha must be a number in \[0, 1\)"):
        CorrectSmoothModel(correction_alpha=2.0)
    with pytest.raises(InputError, match="smoothing_layers must be an integer >= 1, got 0"):
        CorrectSmoothModel(smoothing_layers=0)
    with pytest.raises(InputError, match=r"layers\[1\] must be an integer >= 1, got 0"):
        correct_and_smooth(*cs_inputs(), layers=(5, 0))


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


#: ``cs`` with little propagation is its base classifier, which must learn the words.
OPTIONS = {
    "labels": {},
    "cs": {"inner_folds": 3, "correction_alpha": 0.01, "smoothing_alpha": 0.01},
}


@pytest.mark.parametrize("name", ["labels", "cs"])
def test_sibling_models_learn_and_never_see_test_labels(name):
    data = corpus()
    rng = np.random.default_rng(1)
    test = np.sort(rng.choice(data.y.numel(), 40, replace=False))
    train = np.setdiff1d(np.arange(data.y.numel()), test)
    view = fold_view(data, Fold(0, train, test))
    model = make_model(name, seed=0, **OPTIONS[name])
    pred = model.fit(view).predict(view)
    assert pred.shape == test.shape
    assert (pred == data.y.numpy()[test]).mean() > 0.8
    scrambled = corpus()
    scrambled.y[test] = (scrambled.y[test] + 1) % 3
    again = make_model(name, seed=0, **OPTIONS[name])
    assert np.array_equal(again.fit(fold_view(scrambled, Fold(0, train, test))).predict(view), pred)


def test_sibling_model_errors():
    with pytest.raises(InputError, match="relations must be a non-empty subset"):
        LabelTrickModel(relations=("authors",))
    with pytest.raises(InputError, match="not fitted"):
        CorrectSmoothModel().predict(view_of(tiny(), [0, 1, 3, 4]))
    with pytest.raises(InputError, match="training sentences only"):
        view_of(tiny(), [0, 1, 3, 4]).labels_of(np.array([2]))
