"""Molecule GNN (``gnnkit.models.graph``): against PyG's layers, OGB's encoders, and bad input."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from ogb.graphproppred.mol_encoder import BondEncoder
from torch_geometric.loader import DataLoader
from torch_geometric.nn import global_mean_pool

from gnnkit.data import load
from gnnkit.errors import InputError
from gnnkit.models import MolGNN, bond_counts, mean_pool
from gnnkit.nn.functional import dropout_mask
from gnnkit.recipes import GRAPH_RECIPES, get_recipe

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from ogb_format import fold_into_ogb_vocabularies, write_ogbg_mol  # noqa: E402


def write_molecules(root: Path, name: str, num_graphs: int, seed: int) -> None:
    """``write_ogbg_mol`` with atom and bond features folded into OGB's vocabularies."""
    write_ogbg_mol(root, name, num_graphs=num_graphs, seed=seed)
    fold_into_ogb_vocabularies(root, name)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def molecules(tmp_path_factory):
    """A batch of 16 small synthetic molecules in OGB's format (ogbg-molhiv lookalike)."""
    root = tmp_path_factory.mktemp("ogb")
    write_molecules(root, "ogbg-molhiv", num_graphs=16, seed=3)
    dataset = load("ogbg-molhiv", root=root, download=False, mirror=None)
    return next(iter(DataLoader(dataset, batch_size=16)))


@pytest.fixture
def reference(monkeypatch):
    import gnnkit.bench.pyg as refs

    return refs


def test_bond_counts_times_tables_equals_bond_encoder_summed_onto_targets(molecules):
    torch.manual_seed(0)
    encoder = BondEncoder(8)
    dims = [emb.num_embeddings for emb in encoder.bond_embedding_list]
    counts = bond_counts(molecules.edge_attr, molecules.edge_index[1], molecules.num_nodes, dims)
    table = torch.cat([emb.weight for emb in encoder.bond_embedding_list])
    expected = torch.zeros(molecules.num_nodes, 8)
    expected.index_add_(0, molecules.edge_index[1], encoder(molecules.edge_attr))
    torch.testing.assert_close(counts @ table, expected)
    # Each edge contributes one count per feature.
    assert counts.sum().item() == molecules.edge_attr.numel()


def test_bond_counts_by_hand():
    edge_attr = torch.tensor([[0, 1], [2, 0], [0, 0]])
    target = torch.tensor([1, 1, 0])
    counts = bond_counts(edge_attr, target, 3, [3, 2], dtype=torch.float64)
    expected = torch.tensor(
        [[1, 0, 0, 1, 0], [1, 0, 1, 1, 1], [0, 0, 0, 0, 0]], dtype=torch.float64
    )
    assert torch.equal(counts, expected)


@pytest.mark.parametrize(
    ("edge_attr", "target", "message"),
    [
        # [5, 0] used to be counted in node 1's first column (5 = one row of width 5 further).
        ([[5, 0]], [0], r"edge_attr column 0 holds value\(s\) 5 outside \[0, 3\)"),
        ([[0, 2]], [0], r"edge_attr column 1 holds value\(s\) 2 outside \[0, 2\)"),
        ([[-1, 0], [1, 1]], [0, 1], r"edge_attr column 0 holds value\(s\) -1 outside"),
        ([[0, 0], [1, 1]], [0, 7], r"target holds node index\(es\) 7 outside \[0, 2\)"),
        ([[0, 0], [1, 1]], [-1, 0], r"target holds node index\(es\) -1 outside \[0, 2\)"),
        ([[0, 0], [1, 1]], [0], r"target must have shape \(\|E\|,\) = \(2,\)"),
        ([[0.0, 1.0]], [0], "must hold integers .* got dtypes torch.float32 and torch.int64"),
    ],
)
def test_bond_counts_refuses_values_outside_their_range(edge_attr, target, message):
    with pytest.raises(InputError, match=message):
        bond_counts(torch.tensor(edge_attr), torch.tensor(target), 2, [3, 2])


def test_bond_counts_checks_dims_and_counts_an_edgeless_batch():
    with pytest.raises(InputError, match=r"dims\[1\] must be an integer >= 1, got -2"):
        bond_counts(torch.tensor([[0, 0]]), torch.tensor([0]), 2, [3, -2])
    with pytest.raises(InputError, match="dims must give the number of values"):
        bond_counts(torch.zeros(1, 0, dtype=torch.long), torch.tensor([0]), 2, [])
    counts = bond_counts(
        torch.zeros(0, 2, dtype=torch.long), torch.zeros(0, dtype=torch.long), 2, [3, 2]
    )
    assert torch.equal(counts, torch.zeros(2, 5))


def test_mean_pool_matches_pyg(molecules):
    h = torch.randn(molecules.num_nodes, 5)
    torch.testing.assert_close(mean_pool(h, molecules.ptr), global_mean_pool(h, molecules.batch))
    empty = mean_pool(torch.ones(3, 2), torch.tensor([0, 3, 3]))
    assert torch.equal(empty, torch.tensor([[1.0, 1.0], [0.0, 0.0]]))


@pytest.mark.parametrize("conv", ["gcn", "gat"])
@pytest.mark.parametrize("virtual_node", [False, True])
def test_equals_pyg_layers_with_the_same_weights(conv, virtual_node, molecules, reference):
    """The PyG reference (torch_geometric.nn convs, same architecture) is the independent check."""
    torch.manual_seed(0)
    ours = MolGNN(2, 24, num_layers=3, conv=conv, virtual_node=virtual_node).double().eval()
    theirs = reference.PygMolGNN(2, 24, num_layers=3, conv=conv, virtual_node=virtual_node)
    theirs = theirs.double().eval()
    ours.load_state_dict(theirs.state_dict())
    torch.testing.assert_close(ours(molecules), theirs(molecules))


@pytest.mark.parametrize("conv", ["gcn", "gat"])
@pytest.mark.parametrize("virtual_node", [False, True])
def test_tuned_pyg_reference_equals_the_example_with_the_same_weights(
    conv, virtual_node, molecules, reference
):
    """``pyg-tuned`` prepares each batch's graph once (gcn_norm, self-loops) for all layers;
    OGB's example with PyG's layers, which prepares it in every layer, is the reference."""
    from gnnkit.bench.pyg_tuned import PygTunedMolGNN

    sizes = {"num_layers": 3, "conv": conv, "virtual_node": virtual_node}
    example = reference.PygMolGNN(2, 24, **sizes).double().eval()
    tuned = PygTunedMolGNN(2, 24, **sizes).double().eval()
    tuned.load_state_dict(example.state_dict())
    torch.testing.assert_close(tuned(molecules), example(molecules))
    recipe = reference.reference(
        get_recipe("graph", f"{conv}{'-virtual' if virtual_node else ''}"), "pyg-tuned"
    )
    assert isinstance(recipe.build(24, 2), PygTunedMolGNN)


def test_layers_share_one_structure_per_batch_and_never_reuse_a_stale_one(molecules):
    torch.manual_seed(0)
    model = MolGNN(1, 16, num_layers=3).eval()
    caches = {id(conv._cache) for conv in model.convs}
    assert len(caches) == 1
    fresh = MolGNN(1, 16, num_layers=3).eval()
    fresh.load_state_dict(model.state_dict())
    for conv in fresh.convs:  # the plain path: every layer builds its own structure
        conv.cached = False
    other = next(iter(DataLoader(list(molecules.to_data_list())[5:], batch_size=11)))
    for batch in (molecules, other, molecules):
        torch.testing.assert_close(model(batch), fresh(batch))


def test_graph_predictions_do_not_depend_on_node_order(molecules):
    torch.manual_seed(0)
    model = MolGNN(1, 16, num_layers=2, virtual_node=True).double().eval()
    graphs = molecules.to_data_list()
    generator = torch.Generator().manual_seed(1)
    permuted = []
    for g in graphs:
        perm = torch.randperm(g.num_nodes, generator=generator)
        inverse = torch.empty_like(perm)
        inverse[perm] = torch.arange(g.num_nodes)
        permuted.append(
            g.__class__(x=g.x[perm], edge_index=inverse[g.edge_index], edge_attr=g.edge_attr, y=g.y)
        )
    batch = next(iter(DataLoader(permuted, batch_size=len(permuted))))
    torch.testing.assert_close(model(molecules), model(batch))


def test_training_reduces_the_loss(molecules):
    torch.manual_seed(0)
    model = MolGNN(1, 16, num_layers=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    y = molecules.y.float()
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(molecules), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_dropout_is_active_in_training_only(molecules):
    torch.manual_seed(0)
    model = MolGNN(1, 16, num_layers=2, dropout=0.5)
    model.train()
    a, b = model(molecules), model(molecules)
    assert not torch.equal(a, b)
    model.eval()
    assert torch.equal(model(molecules), model(molecules))


def test_dropout_mask_keeps_the_right_fraction():
    torch.manual_seed(0)
    for p in (0.5, 0.25, 0.3):
        keep = dropout_mask((400, 500), p)
        assert keep.dtype == torch.bool
        assert abs(keep.float().mean().item() - (1 - p)) < 0.01
        drop = dropout_mask((400, 500), p, keep=False)
        assert abs(drop.float().mean().item() - p) < 0.01
    # Columns and rows are independent: no period in the packed bits.
    keep = dropout_mask((1000, 64), 0.5).float()
    assert keep.mean(0).std().item() < 0.05


def test_registry_and_repr():
    assert set(GRAPH_RECIPES) == {"gcn", "gat", "gcn-virtual", "gat-virtual"}
    model = get_recipe("graph", "gat-virtual").build(20, 3)
    assert isinstance(model, MolGNN) and model.virtual_node and model.conv == "gat"
    assert "emb_dim=20" in repr(model) and "virtual_node=True" in repr(model)
    with pytest.raises(InputError, match="unknown graph model 'gin'; known models: gcn, gat"):
        get_recipe("graph", "gin")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_layers": 1}, "num_layers must be an integer >= 2"),
        ({"conv": "gin"}, "conv must be one of 'gcn', 'gat', got 'gin'"),
        ({"conv": "gat", "heads": 7}, "heads=7 must divide emb_dim=300"),
        ({"conv": "gat", "heads": 0}, "heads must be an integer >= 1, got 0"),
        ({"dropout": 1.0}, r"dropout must be a number in \[0, 1\)"),
        ({"virtual_node": "yes"}, "virtual_node must be True or False"),
    ],
)
def test_bad_construction(kwargs, message):
    with pytest.raises(InputError, match=message):
        MolGNN(1, 300, **kwargs)
    with pytest.raises(InputError, match="num_tasks must be an integer >= 1, got 0"):
        MolGNN(0)


def test_bad_batches(molecules):
    model = MolGNN(1, 16, num_layers=2)
    single = molecules.to_data_list()[0]
    with pytest.raises(InputError, match="needs a PyG Batch with 'ptr'"):
        model(single)
    broken = molecules.clone()
    broken.edge_attr = broken.edge_attr[:, :2]
    with pytest.raises(InputError, match=r"edge_attr must have shape \(\|E\|, 3\)"):
        model(broken)
    out_of_range = molecules.clone()
    out_of_range.edge_attr = out_of_range.edge_attr.clone()
    out_of_range.edge_attr[0, 2] = model.bond_dims[2]
    with pytest.raises(InputError, match=r"edge_attr column 2 holds value\(s\)"):
        model(out_of_range)
    missing = molecules.clone()
    missing.edge_attr = None
    with pytest.raises(InputError, match="needs bond features"):
        model(missing)


def test_reset_parameters_reinitialises_and_zeroes_the_virtual_node():
    torch.manual_seed(0)
    model = MolGNN(1, 16, num_layers=2, virtual_node=True)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.5)
    model.reset_parameters()
    assert torch.count_nonzero(model.virtualnode_embedding.weight) == 0
    atom = model.atom_encoder.atom_embedding_list[0].weight
    bound = (6.0 / (atom.size(0) + atom.size(1))) ** 0.5  # Xavier-uniform, as OGB's encoders
    assert atom.abs().max() <= bound and atom.std() > 0
    assert not torch.equal(
        model.convs[0].lin.weight, torch.full_like(model.convs[0].lin.weight, 0.5)
    )
    assert torch.equal(model.batch_norms[0].weight, torch.ones(16))
