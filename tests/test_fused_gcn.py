"""gnnkit.models.GCN's fused step (gnnkit.models._fused_gcn): one autograd node for the network.

References: the same model run layer by layer (``TwoLayerNetwork.forward``, bit for bit, the
dropout draws included), PyG's ``GCNConv`` layers with copied weights (gradients, no dropout),
and the layer path wherever the fused step must not run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch_geometric.nn as pyg
from test_models_node import random_graph

from gnnkit.errors import InputError, SecondDerivativeError
from gnnkit.models import GCN
from gnnkit.models._fused_gcn import fused_gcn
from gnnkit.models.gcn import TwoLayerNetwork
from gnnkit.nn import GCNConv

pytestmark = pytest.mark.usefixtures("one_thread")

FUSED = "_TwoLayerGCNBackward"


def run(model, x, edge_index, fused: bool, seed: int = 5):
    """Output and parameter gradients of one pass (a fixed weighting of the logits)."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    forward = fused_gcn if fused else TwoLayerNetwork.forward
    out = forward(model, x, edge_index)
    weights = torch.arange(out.numel(), dtype=out.dtype).view_as(out).sin()
    (out * weights).sum().backward()
    return [out.detach(), *(p.grad for p in model.parameters())], out.grad_fn


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_step_equals_the_layers_bit_for_bit(training, dtype):
    x, edge_index = random_graph(num_nodes=60, num_features=40, num_edges=200)
    x = x.to(dtype).to_sparse_csr()
    model = GCN(40, 6, hidden_channels=12).to(dtype).train(training)
    fused, node = run(model, x, edge_index, fused=True)
    layers, _ = run(model, x, edge_index, fused=False)
    assert type(node).__name__ == FUSED
    for a, b in zip(fused, layers, strict=True):
        assert torch.equal(a, b)
    # model(...) itself takes the fused step, and draws the same masks
    model.zero_grad()
    torch.manual_seed(5)
    assert torch.equal(model(x, edge_index), fused[0])


def test_gradients_equal_pyg_layers_with_copied_weights():
    x, edge_index = random_graph(seed=3)
    model = GCN(30, 5, dropout=0.0).double()
    reference = torch.nn.Module()
    reference.conv1, reference.conv2 = pyg.GCNConv(30, 16), pyg.GCNConv(16, 5)
    reference.double().load_state_dict(model.state_dict())
    x = x.double()
    out = model(x.to_sparse_csr(), edge_index)
    assert type(out.grad_fn).__name__ == FUSED
    expected = reference.conv2(reference.conv1(x, edge_index).relu(), edge_index)
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad)
    assert torch.allclose(out, expected, atol=1e-12)
    for (name, ours), theirs in zip(model.named_parameters(), reference.parameters(), strict=True):
        assert torch.allclose(ours.grad, theirs.grad, atol=1e-12), name


def test_frozen_parameters_get_no_gradient():
    x, edge_index = random_graph()
    model = GCN(30, 5)
    model.conv1.lin.weight.requires_grad_(False)
    model(x.to_sparse_csr(), edge_index).sum().backward()
    assert model.conv1.lin.weight.grad is None
    assert model.conv2.lin.weight.grad is not None and model.conv1.bias.grad is not None


def test_without_gradients_the_step_runs_no_autograd():
    x, edge_index = random_graph()
    model = GCN(30, 5).eval()
    with torch.inference_mode():
        out = model(x.to_sparse_csr(), edge_index)
    assert out.grad_fn is None
    assert torch.equal(out, TwoLayerNetwork.forward(model, x.to_sparse_csr(), edge_index).detach())


def _layer_path(model, x, edge_index):
    out = model(x, edge_index)
    assert type(out.grad_fn).__name__ != FUSED
    return out


def test_dense_and_coo_features_run_the_layers():
    x, edge_index = random_graph()
    model = GCN(30, 5).eval()
    for features in (x, x.to_sparse()):
        assert torch.allclose(_layer_path(model, features, edge_index),
                              fused_gcn(model, x.to_sparse_csr(), edge_index), atol=1e-6)  # fmt: skip


def test_hooks_on_a_layer_are_honoured():
    x, edge_index = random_graph()
    model = GCN(30, 5).eval()
    seen = []
    handle = model.conv1.register_forward_hook(lambda module, args, out: seen.append(out.shape))
    _layer_path(model, x.to_sparse_csr(), edge_index)
    assert seen == [torch.Size([40, 16])]
    handle.remove()
    assert type(model(x.to_sparse_csr(), edge_index).grad_fn).__name__ == FUSED


def test_features_needing_a_gradient_and_learned_loops_run_the_layers():
    x, edge_index = random_graph()
    model = GCN(30, 5)
    features = x.to_sparse_csr().requires_grad_()
    _layer_path(model, features, edge_index).sum().backward()
    assert features.grad is not None
    model.conv1 = GCNConv(30, 16, cached=True, learn_self_loop_weight=True)
    _layer_path(model, x.to_sparse_csr(), edge_index).sum().backward()
    assert model.conv1.raw_self_loop_weight.grad is not None


def test_a_second_layer_wider_than_the_first_runs_the_layers():
    x, edge_index = random_graph()
    model = GCN(30, 8, hidden_channels=4)  # aggregated before its transform
    assert fused_gcn(model, x.to_sparse_csr(), edge_index) is None
    _layer_path(model, x.to_sparse_csr(), edge_index)


def test_bad_inputs_get_the_layers_messages():
    x, edge_index = random_graph()
    model = GCN(30, 5)
    with pytest.raises(InputError, match=r"float64 but GCNConv.s parameters are torch\.float32"):
        model(x.double().to_sparse_csr(), edge_index)
    bad = x.clone()
    bad[3, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        model(bad.to_sparse_csr(), edge_index)
    with pytest.raises(InputError, match="has 29 features per node"):
        model(x[:, :29].to_sparse_csr(), edge_index)


def test_a_second_derivative_is_refused_not_wrong():
    x, edge_index = random_graph()
    model = GCN(30, 5)
    out = model(x.to_sparse_csr(), edge_index)
    with pytest.raises(SecondDerivativeError, match="fused two-layer step is differentiable"):
        torch.autograd.grad(out.square().sum(), model.conv1.bias, create_graph=True)


def test_without_numba_the_fused_step_still_equals_the_layers():
    code = (
        "import sys, torch\n"
        "sys.path.insert(0, 'tests')\n"
        "from test_fused_gcn import run\n"
        "from test_models_node import random_graph\n"
        "from gnnkit.models import GCN\n"
        "from gnnkit.ops._jit import jit_available\n"
        "assert not jit_available()\n"
        "x, edge_index = random_graph()\n"
        "model = GCN(30, 5)\n"
        "fused, node = run(model, x.to_sparse_csr(), edge_index, fused=True)\n"
        "layers, _ = run(model, x.to_sparse_csr(), edge_index, fused=False)\n"
        "assert type(node).__name__ == '_TwoLayerGCNBackward'\n"
        "assert all(torch.equal(a, b) for a, b in zip(fused, layers, strict=True))\n"
    )
    env = {**os.environ, "GNNKIT_JIT": "0"}
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True,
                          text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_the_kept_adjacency_matrices_follow_the_graph_and_its_weights():
    # The fused step keeps A and A^T per cached structure and normalised weights: a second
    # graph, the first again, and weights changed in place must each give the layers' result.
    x, first = random_graph(num_nodes=50, num_features=20, num_edges=150, seed=1)
    _, second = random_graph(num_nodes=50, num_features=20, num_edges=120, seed=2)
    x = x.to_sparse_csr()
    model = GCN(20, 4, hidden_channels=8)
    for edge_index in (first, second, first):
        fused, _ = run(model, x, edge_index, fused=True)
        layers, _ = run(model, x, edge_index, fused=False)
        assert all(torch.equal(a, b) for a, b in zip(fused, layers, strict=True))
    _, _, _, structure, weights = model.conv1._checked_inputs(x, first, None)
    assert structure.matrices is not None and structure.matrices[0] is weights
    with torch.no_grad():
        weights.mul_(0.5)  # a new version: A and A^T are built again from these values
    fused, _ = run(model, x, first, fused=True)
    layers, _ = run(model, x, first, fused=False)
    assert all(torch.equal(a, b) for a, b in zip(fused, layers, strict=True))
    assert structure.matrices[1] == weights._version
