"""gnnkit's GCN and GAT node classifiers against PyG models assembled in the test."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torch_geometric.nn as pyg

from gnnkit.errors import InputError
from gnnkit.models import GAT, GCN
from gnnkit.nn.functional import check_dropout, dropout
from gnnkit.recipes import NODE_RECIPES, Recipe, get_recipe
from gnnkit.train import normalize_features

pytestmark = pytest.mark.usefixtures("one_thread")


def random_graph(num_nodes=40, num_features=30, num_edges=120, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = (torch.rand(num_nodes, num_features, generator=generator) < 0.1).float()
    x[:, 0] = 1.0  # no empty row
    edge_index = torch.randint(0, num_nodes, (2, num_edges), generator=generator)
    edge_index = torch.cat([edge_index, edge_index.flip(0)], dim=1)  # undirected
    return normalize_features(x, layout="dense"), edge_index


class PygTwoLayerGCN(torch.nn.Module):
    def __init__(self, fin, hidden, out):
        super().__init__()
        self.conv1, self.conv2 = pyg.GCNConv(fin, hidden), pyg.GCNConv(hidden, out)

    def forward(self, x, edge_index):
        return self.conv2(self.conv1(x, edge_index).relu(), edge_index)


class PygTwoLayerGAT(torch.nn.Module):
    def __init__(self, fin, hidden, heads, out, out_heads):
        super().__init__()
        self.conv1 = pyg.GATConv(fin, hidden, heads=heads)
        self.conv2 = pyg.GATConv(hidden * heads, out, heads=out_heads, concat=False)

    def forward(self, x, edge_index):
        return self.conv2(F.elu(self.conv1(x, edge_index)), edge_index)


def test_gcn_equals_pyg_layers_with_copied_weights_dense_and_sparse():
    x, edge_index = random_graph()
    model = GCN(30, 5).eval()
    reference = PygTwoLayerGCN(30, 16, 5)
    reference.load_state_dict(model.state_dict())  # PyG's parameter names
    expected = reference(x, edge_index)
    assert torch.allclose(model(x, edge_index), expected, atol=1e-5)
    assert torch.allclose(model(x.to_sparse_csr(), edge_index), expected, atol=1e-5)
    assert torch.allclose(model(x.to_sparse(), edge_index), expected, atol=1e-5)


@pytest.mark.parametrize("out_heads", [1, 3])
def test_gat_equals_pyg_layers_with_copied_weights(out_heads):
    x, edge_index = random_graph(seed=1)
    model = GAT(30, 4, hidden_channels=6, heads=5, out_heads=out_heads).eval()
    reference = PygTwoLayerGAT(30, 6, 5, 4, out_heads)
    reference.load_state_dict(model.state_dict())
    expected = reference(x, edge_index)
    assert torch.allclose(model(x, edge_index), expected, atol=1e-5)
    assert torch.allclose(model(x.to_sparse_csr(), edge_index), expected, atol=1e-5)


def test_paper_hyper_parameters_on_cora_sizes():
    gcn, gat = GCN(1433, 7), GAT(1433, 7)
    assert gcn.conv1.lin.weight.shape == (16, 1433) and gcn.conv2.lin.weight.shape == (7, 16)
    assert gcn.dropout == 0.5
    assert (gat.conv1.heads, gat.conv1.out_channels, gat.conv1.concat) == (8, 8, True)
    assert (gat.conv2.heads, gat.conv2.out_channels, gat.conv2.concat) == (1, 7, False)
    assert gat.dropout == 0.6 and gat.conv1.dropout == 0.6 and gat.conv2.dropout == 0.6
    assert "dropout=0.5" in repr(gcn) and "heads=8" in repr(gat)


def test_gcn_decays_the_first_layer_only_and_gat_everything():
    gcn, gat = GCN(10, 3), GAT(10, 3)
    first, second = gcn.parameter_groups(5e-4)
    assert first["weight_decay"] == 5e-4 and second["weight_decay"] == 0.0
    assert {id(p) for p in first["params"]} == {id(p) for p in gcn.conv1.parameters()}
    assert {id(p) for p in second["params"]} == {id(p) for p in gcn.conv2.parameters()}
    (group,) = gat.parameter_groups(5e-4)
    assert len(group["params"]) == len(list(gat.parameters())) and group["weight_decay"] == 5e-4


@pytest.mark.parametrize("cls", [GCN, GAT])
def test_training_mode_drops_out_and_eval_mode_is_deterministic(cls):
    x, edge_index = random_graph()
    xs = x.to_sparse_csr()
    torch.manual_seed(0)
    model = cls(30, 5)
    model.train()
    a, b = model(xs, edge_index), model(xs, edge_index)
    assert a.shape == (40, 5) and not torch.allclose(a, b)
    model.eval()
    assert torch.equal(model(xs, edge_index), model(xs, edge_index))
    a.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_reset_parameters_redraws_weights():
    model = GCN(10, 3)
    before = model.conv1.lin.weight.clone()
    model.reset_parameters()
    assert not torch.equal(before, model.conv1.lin.weight)


def test_dense_dropout_keeps_the_expectation():
    torch.manual_seed(0)
    x = torch.ones(200, 100)
    out = dropout(x, 0.3, True)
    kept = out != 0
    assert abs(kept.float().mean().item() - 0.7) < 0.01
    assert torch.allclose(out[kept], torch.full_like(out[kept], 1 / 0.7))
    assert dropout(x, 0.3, False) is x and dropout(x, 0.0, True) is x
    with pytest.raises(InputError, match=r"dropout must be a number in \[0, 1\), got 1.0"):
        check_dropout(1.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"in_channels": 0, "out_channels": 3}, "in_channels must be an integer >= 1, got 0"),
        (
            {"in_channels": 5, "out_channels": 3, "hidden_channels": 2.0},
            "hidden_channels must be an integer >= 1, got 2.0",
        ),
        (
            {"in_channels": 5, "out_channels": 3, "dropout": 1.0},
            r"dropout must be a number in \[0, 1\), got 1.0",
        ),
        ({"in_channels": 5, "out_channels": 3, "dropout": "0.5"}, "dropout must be a number"),
    ],
)
@pytest.mark.parametrize("cls", [GCN, GAT])
def test_models_reject_bad_arguments(cls, kwargs, message):
    with pytest.raises(InputError, match=message):
        cls(**kwargs)


def test_gat_rejects_bad_heads():
    with pytest.raises(InputError, match="heads must be an integer >= 1, got 0"):
        GAT(5, 3, heads=0)


def test_registry():
    assert set(NODE_RECIPES) >= {"gcn", "gat"}
    spec = get_recipe("node", "gcn")
    assert isinstance(spec, Recipe) and (spec.lr, spec.weight_decay, spec.epochs) == (
        0.01,
        5e-4,
        200,
    )
    assert isinstance(spec.build(12, 3), GCN) and isinstance(
        get_recipe("node", "gat").build(12, 3), GAT
    )
    assert get_recipe("node", "gat").lr == 0.005
    with pytest.raises(InputError, match="unknown model 'sage'; known models: gcn, gat"):
        get_recipe("node", "sage")


def test_train_config_defaults_are_the_gcn_recipe():
    # TrainConfig's defaults are Kipf & Welling's Cora set-up: the recipe, not a second copy.
    from gnnkit.train import TrainConfig

    recipe, config = get_recipe("node", "gcn"), TrainConfig()
    assert (config.lr, config.weight_decay, config.epochs) == (
        recipe.lr,
        recipe.weight_decay,
        recipe.epochs,
    )


@pytest.mark.parametrize("name", ["gcn", "gat"])
def test_the_input_weight_is_stored_transposed_with_pyg_values(name, tmp_path):
    # GCN and GAT keep conv1's weight column-major (W^T contiguous, what the sparse product
    # reads), initialised with the values PyG's layers draw for the same seed.
    from gnnkit.nn import GATConv, GCNConv

    torch.manual_seed(0)
    model = GCN(30, 5) if name == "gcn" else GAT(30, 5)
    torch.manual_seed(0)
    if name == "gcn":
        first, second = GCNConv(30, 16), GCNConv(16, 5)
    else:
        first, second = GATConv(30, 8, heads=8), GATConv(64, 5, concat=False)
    first.reset_parameters(), second.reset_parameters()
    weight = model.conv1.lin.weight
    assert weight.t().is_contiguous() and not weight.is_contiguous()
    assert torch.equal(weight, first.lin.weight)
    # a state dict round trip keeps values and layout; a PyG layer loads the values
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    clone = GCN(30, 5) if name == "gcn" else GAT(30, 5)
    clone.load_state_dict(torch.load(path, weights_only=True))
    assert (
        torch.equal(clone.conv1.lin.weight, weight) and clone.conv1.lin.weight.t().is_contiguous()
    )
    first.load_state_dict(model.conv1.state_dict())
    assert torch.equal(first.lin.weight, weight) and first.lin.weight.is_contiguous()
