"""gnnkit.SparseFeatures: the values of PyG's own features and transforms, in sparse CSR form.

References: the dense matrix itself, PyG's ``T.NormalizeFeatures()``, and gnnkit's layers run
on the dense features with the same weights.
"""

from __future__ import annotations

import pytest
import torch
import torch_geometric.transforms as T
from torch_geometric.data import Data, HeteroData
from torch_geometric.datasets import KarateClub
from torch_geometric.loader import DataLoader

import gnnkit
from gnnkit import InputError, SparseFeatures
from gnnkit.nn import GATConv, GCNConv
from gnnkit.transforms import MAX_DENSITY


def bag_of_words(rows: int, cols: int, density: float, seed: int) -> torch.Tensor:
    """Counts 1-3 at about ``density`` of the entries, zeros elsewhere."""
    g = torch.Generator().manual_seed(seed)
    keep = torch.rand(rows, cols, generator=g) < density
    return torch.randint(1, 4, (rows, cols), generator=g).float() * keep


def ring(n: int) -> torch.Tensor:
    src = torch.arange(n)
    return torch.stack([torch.cat([src, (src + 1) % n]), torch.cat([(src + 1) % n, src])])


def graph(x: torch.Tensor) -> Data:
    return Data(x=x, edge_index=ring(x.size(0)))


# --- layouts and values -------------------------------------------------------------------------


def test_sparse_features_become_csr_with_the_same_values():
    x = bag_of_words(60, 40, 0.05, seed=0)
    out = SparseFeatures()(graph(x.clone())).x
    assert out.layout == torch.sparse_csr
    assert out._nnz() == int(torch.count_nonzero(x))  # zeros are not stored
    assert torch.equal(out.to_dense(), x)


def test_dense_features_stay_dense_unless_forced():
    x = bag_of_words(60, 40, 0.6, seed=1)
    data = graph(x.clone())
    assert SparseFeatures()(data).x is data.x  # not worth it: untouched
    forced = SparseFeatures(force=True)(graph(x.clone())).x
    assert forced.layout == torch.sparse_csr and torch.equal(forced.to_dense(), x)


def test_the_threshold_is_inclusive_and_a_sparse_input_above_it_becomes_dense():
    x = torch.zeros(10, 10)
    x.view(-1)[:25] = 1.0  # density 0.25 exactly
    assert MAX_DENSITY == 0.25
    assert SparseFeatures()(graph(x.clone())).x.layout == torch.sparse_csr
    assert SparseFeatures(0.24)(graph(x.clone())).x.layout == torch.strided
    out = SparseFeatures(0.24)(graph(x.to_sparse())).x
    assert out.layout == torch.strided and torch.equal(out, x)


@pytest.mark.parametrize("layout", ["coo", "uncoalesced-coo", "csr"])
def test_sparse_input_becomes_csr(layout):
    x = bag_of_words(30, 20, 0.1, seed=2)
    if layout == "csr":
        given = x.to_sparse_csr()
    elif layout == "coo":
        given = x.to_sparse()
    else:  # every entry split in two halves, stored twice
        coo = x.to_sparse()
        idx, val = coo.indices(), coo.values()
        given = torch.sparse_coo_tensor(
            torch.cat([idx, idx], 1), torch.cat([val / 2, val / 2]), x.shape, check_invariants=True
        )
    out = SparseFeatures()(graph(given)).x
    assert out.layout == torch.sparse_csr and torch.equal(out.to_dense(), x)
    if layout == "csr":
        assert out is given


def test_normalize_is_pygs_normalize_features():
    x = bag_of_words(50, 30, 0.1, seed=3)
    x[7] = 0.0  # an empty row: PyG divides by max(1, sum)
    reference = T.NormalizeFeatures()(graph(x.clone())).x
    for given in (x, x.to_sparse(), x.to_sparse_csr()):
        out = SparseFeatures(normalize=True)(graph(given.clone())).x
        assert out.layout == torch.sparse_csr
        torch.testing.assert_close(out.to_dense(), reference, rtol=1e-6, atol=0)
    composed = T.Compose([T.NormalizeFeatures(), SparseFeatures()])(graph(x.clone())).x
    assert torch.equal(composed.to_dense(), reference)


def test_normalize_with_negative_values_shifts_like_pyg_and_densifies():
    x = bag_of_words(20, 10, 0.1, seed=4)
    x[3, 2] = -2.0  # the minimum: every entry is shifted by 2, nothing stays zero
    reference = T.NormalizeFeatures()(graph(x.clone())).x
    out = SparseFeatures(normalize=True)(graph(x.to_sparse_csr())).x
    assert out.layout == torch.strided  # density 1 after the shift
    torch.testing.assert_close(out, reference, rtol=1e-6, atol=0)


def test_every_node_type_of_hetero_data_and_other_attributes():
    data = HeteroData()
    data["paper"].x = bag_of_words(20, 30, 0.05, seed=5)
    data["author"].x = bag_of_words(10, 4, 0.9, seed=6)
    data["author"].extra = bag_of_words(10, 30, 0.05, seed=7)
    out = SparseFeatures()(data)
    assert out["paper"].x.layout == torch.sparse_csr
    assert out["author"].x.layout == torch.strided
    assert out["author"].extra.layout == torch.strided  # not in attrs
    out = SparseFeatures(attrs=["extra"])(out)
    assert out["author"].extra.layout == torch.sparse_csr


# --- PyG datasets and loaders -------------------------------------------------------------------


def test_as_a_dataset_transform():
    dataset = KarateClub(transform=SparseFeatures())  # one-hot features, density 1/34
    data = dataset[0]
    assert data.x.layout == torch.sparse_csr
    assert torch.equal(data.x.to_dense(), KarateClub()[0].x)
    assert (data.num_nodes, data.num_features) == (34, 34)


def test_a_dataloader_batches_csr_features():
    graphs = [SparseFeatures()(graph(bag_of_words(n, 12, 0.1, seed=n))) for n in (5, 7)]
    batch = next(iter(DataLoader(graphs, batch_size=2)))
    assert batch.x.layout == torch.sparse_csr
    expected = torch.cat([g.x.to_dense() for g in graphs])
    assert torch.equal(batch.x.to_dense(), expected)


def test_cora_becomes_sparse(dataset):
    cora = dataset("cora")
    data = SparseFeatures(normalize=True)(cora.clone())
    assert data.x.layout == torch.sparse_csr
    assert data.x._nnz() == 49216  # Cora's 1.27 % non-zero bag of words
    reference = T.NormalizeFeatures()(cora.clone()).x
    torch.testing.assert_close(data.x.to_dense(), reference, rtol=1e-6, atol=0)


# --- the layers give the same output -----------------------------------------------------------


@pytest.mark.parametrize("layer", ["gcn", "gat"])
def test_a_layer_on_the_sparse_features_matches_the_dense_features(layer):
    x = bag_of_words(40, 30, 0.08, seed=8)
    dense = T.NormalizeFeatures()(graph(x.clone()))
    sparse = SparseFeatures(normalize=True)(graph(x.clone()))
    torch.manual_seed(8)
    conv = GCNConv(30, 6) if layer == "gcn" else GATConv(30, 3, heads=2)
    copy = GCNConv(30, 6) if layer == "gcn" else GATConv(30, 3, heads=2)
    copy.load_state_dict(conv.state_dict())
    out_dense = conv(dense.x, dense.edge_index)
    out_sparse = copy(sparse.x, sparse.edge_index)
    torch.testing.assert_close(out_sparse, out_dense, rtol=1e-5, atol=1e-6)
    out_dense.square().sum().backward()
    out_sparse.square().sum().backward()
    for (name, p), q in zip(conv.named_parameters(), copy.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [-0.1, 1.5, True, "0.1", None])
def test_max_density_must_be_a_fraction(bad):
    with pytest.raises(InputError, match=r"max_density must be a number in \[0, 1\]"):
        SparseFeatures(bad)


def test_bad_options():
    with pytest.raises(InputError, match="force must be True or False"):
        SparseFeatures(force=1)
    with pytest.raises(InputError, match="normalize must be True or False"):
        SparseFeatures(normalize="yes")
    for attrs in ("x", [], ["x", 3]):
        with pytest.raises(InputError, match="attrs must be a non-empty list of attribute"):
            SparseFeatures(attrs=attrs)


def test_a_name_in_no_node_store_is_refused_before_anything_is_converted():
    # An empty list would reach PyG's store.items(*[]), which returns every attribute; a
    # misspelt name would be skipped. Both are refused, and data is left as it was.
    data = Data(
        x=torch.eye(3), pos=torch.ones(3, 2), edge_index=torch.zeros(2, 0, dtype=torch.long)
    )
    with pytest.raises(InputError, match=r"no node store has \['posx'\].*'pos', 'x'"):
        SparseFeatures(attrs=["x", "posx"])(data)
    assert data.x.layout == torch.strided and data.pos.layout == torch.strided
    out = SparseFeatures(force=True, attrs=["x"])(data)
    assert out.x.layout == torch.sparse_csr and out.pos.layout == torch.strided


@pytest.mark.parametrize(
    ("x", "match"),
    [
        ([[1.0, 0.0]], r"data\.x must be a tensor, got list"),
        (torch.zeros(2, 3, 4), r"must be a \(\|V\|, F\) matrix, got shape \(2, 3, 4\)"),
        (torch.zeros(3, 4, dtype=torch.long), r"is torch\.int64; .*data\.x\.float\(\)"),
        (torch.tensor([[1.0, float("nan")]]), "NaN or infinite"),
        (torch.eye(3).to_sparse_csc(), r"dense, sparse COO or sparse CSR, got layout"),
    ],
)
def test_bad_features(x, match):
    with pytest.raises(InputError, match=match):
        SparseFeatures()(Data(x=x))


def test_not_a_data_object():
    with pytest.raises(InputError, match="transforms a torch_geometric Data or HeteroData"):
        SparseFeatures()(torch.eye(3))


def test_exported_and_readable():
    assert "SparseFeatures" in gnnkit.__all__
    assert repr(SparseFeatures()) == "SparseFeatures(max_density=0.25)"
    assert (
        repr(SparseFeatures(0.1, force=True, normalize=True, attrs=["x", "h"]))
        == "SparseFeatures(max_density=0.1, force=True, normalize=True, attrs=['x', 'h'])"
    )
