"""The ``pyg-tuned`` reference (``gnnkit.bench.pyg_tuned``) and ``--compare`` with several
references: PyG's own layers, value dropout, the graph prepared once, the harness, the CLI and
``benchmarks/layers.py`` / ``benchmarks/scale.py`` rows.

The bad ``--compare`` command lines are in ``test_cli_errors.py``.
"""

from __future__ import annotations

import json

import layers
import pytest
import scale
import scale_report
import torch
import torch_geometric.nn as pyg_nn

import gnnkit.nn
from gnnkit.bench.harness import parse_compare
from gnnkit.bench.node import run_node_benchmark
from gnnkit.bench.pyg import PygArxivGAT, PygArxivGCN, PygGAT, PygGCN, reference
from gnnkit.bench.pyg_tuned import (
    GraphOnce,
    PygTunedArxivGAT,
    PygTunedArxivGCN,
    PygTunedGAT,
    PygTunedGCN,
    prepare_graph,
    pyg_sparse_features,
    value_dropout,
)
from gnnkit.cli import main
from gnnkit.data import load
from gnnkit.errors import InputError
from gnnkit.recipes import get_recipe

pytestmark = pytest.mark.usefixtures("one_thread")

KARATE = ["bench", "node", "--dataset", "karate", "--warmup", "1", "--no-progress"]


def random_graph(nodes: int, edges: int, seed: int = 0) -> torch.Tensor:
    """Uniform random directed edges, with a few self-loops and duplicates on purpose."""
    generator = torch.Generator().manual_seed(seed)
    edge_index = torch.randint(0, nodes, (2, edges), generator=generator)
    loops = torch.arange(3).repeat(2, 1)
    return torch.cat([edge_index, loops, edge_index[:, :4]], dim=1)


def sparse_features(nodes: int, channels: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(nodes, channels, generator=generator)
    return (x * (x > 0.8)).to_sparse_csr()


# ------------------------------------------------------------------------- the models


@pytest.mark.parametrize("model", ["gcn", "gat", "arxiv-gcn", "arxiv-gat"])
def test_tuned_reference_is_pyg_own_layers_in_their_fast_configuration(model):
    recipe = get_recipe("node", model)
    tuned = reference(recipe, "pyg-tuned")
    assert tuned.name == f"pyg-tuned-{model}"
    assert (tuned.lr, tuned.weight_decay, tuned.epochs) == (
        recipe.lr,
        recipe.weight_decay,
        recipe.epochs,
    )
    net = tuned.build(20, 4)
    convs = [m for m in net.modules() if isinstance(m, pyg_nn.MessagePassing)]
    assert len(convs) == (2 if model in ("gcn", "gat") else 3)
    for conv in convs:
        assert type(conv).__module__.startswith("torch_geometric.nn")
        assert not isinstance(conv, (gnnkit.nn.GCNConv, gnnkit.nn.GATConv))
        if model.endswith("gcn"):
            assert type(conv) is pyg_nn.GCNConv and conv.cached
        else:
            assert type(conv) is pyg_nn.GATConv and not conv.add_self_loops
    assert isinstance(net.graph, GraphOnce)


@pytest.mark.parametrize(
    ("tuned", "plain", "sparse"),
    [
        (PygTunedGCN, PygGCN, True),
        (PygTunedGAT, PygGAT, True),
        (PygTunedArxivGCN, PygArxivGCN, False),
        (PygTunedArxivGAT, PygArxivGAT, False),
    ],
)
def test_tuned_model_computes_what_the_example_model_computes(tuned, plain, sparse):
    # PyG's example model (dense features, self-loops added by the layer, every call) is the
    # independent reference; the graph has self-loops and duplicate edges.
    nodes, channels = 60, 12
    edge_index = random_graph(nodes, 300)
    x = sparse_features(nodes, channels)
    torch.manual_seed(0)
    ours = tuned(channels, 5).eval()
    torch.manual_seed(0)
    theirs = plain(channels, 5).eval()
    inputs = x if sparse else x.to_dense()
    with torch.no_grad():
        expected = theirs(x.to_dense(), edge_index)
        assert torch.allclose(ours(inputs, edge_index), expected, atol=1e-5)
        assert torch.allclose(ours(inputs, edge_index), expected, atol=1e-5)  # cached graph


def test_tuned_gcn_trains_on_sparse_features_with_gradients():
    nodes, channels = 40, 10
    x, edge_index = sparse_features(nodes, channels), random_graph(nodes, 160)
    torch.manual_seed(0)
    net = PygTunedGCN(channels, 3).train()
    net(x, edge_index).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_value_dropout_keeps_the_structure_and_scales_the_kept_values():
    x = sparse_features(200, 50)
    torch.manual_seed(0)
    out = value_dropout(x, 0.25)
    assert out.layout == torch.sparse_csr and out.shape == x.shape
    assert torch.equal(out.crow_indices(), x.crow_indices())
    assert torch.equal(out.col_indices(), x.col_indices())
    kept = out.values() != 0
    assert torch.allclose(out.values()[kept], x.values()[kept] / 0.75)
    dropped = 1 - kept.float().mean().item()
    assert 0.2 < dropped < 0.3  # about p of ~2,000 values
    assert value_dropout(x, 0.5, training=False) is x
    assert not value_dropout(x, 1.0).values().any()
    dense = torch.ones(100, 100)
    torch.manual_seed(0)
    dropped_dense = value_dropout(dense, 0.5)
    torch.manual_seed(0)
    assert torch.equal(dropped_dense, torch.nn.functional.dropout(dense, 0.5))


def test_value_dropout_refuses_other_sparse_layouts():
    with pytest.raises(InputError, match=r"dense or sparse CSR features, got torch\.sparse_coo"):
        value_dropout(torch.eye(3).to_sparse(), 0.5)


def test_prepared_graph_is_the_transposed_adjacency_with_its_self_loops():
    edge_index = torch.tensor([[0, 0, 1, 2, 2, 2], [1, 1, 2, 0, 2, 1]])  # 0 -> 1 twice, 2 -> 2
    adj = prepare_graph(edge_index, 3, adjacency="csr", self_loops="as-is")
    expected = torch.tensor([[0.0, 0, 1], [2, 0, 1], [0, 1, 1]])  # row = target
    assert adj.layout == torch.sparse_csr and torch.equal(adj.to_dense(), expected)
    removed = prepare_graph(edge_index, 3, adjacency="csr", self_loops="remove")
    assert torch.equal(removed.to_dense(), expected - torch.diag(torch.tensor([0.0, 0, 1])))
    once = prepare_graph(edge_index, 3, adjacency="edge_index", self_loops="once")
    assert sorted(once.t().tolist()).count([2, 2]) == 1 and [0, 0] in once.t().tolist()
    assert prepare_graph(edge_index, 3, adjacency="edge_index", self_loops="as-is") is edge_index
    by_target = prepare_graph(edge_index, 3, adjacency="sorted", self_loops="as-is")
    assert by_target[1].tolist() == [0, 1, 1, 1, 2, 2]
    assert sorted(by_target.t().tolist()) == sorted(edge_index.t().tolist())
    with pytest.raises(InputError, match="adjacency must be 'csr', 'sorted' or 'edge_index'"):
        prepare_graph(edge_index, 3, adjacency="coo", self_loops="as-is")
    with pytest.raises(InputError, match="self_loops must be 'as-is', 'remove' or 'once'"):
        prepare_graph(edge_index, 3, adjacency="csr", self_loops=True)


def test_graph_once_prepares_a_graph_once_per_edge_index_tensor():
    graph = GraphOnce("csr", "once")
    edge_index = random_graph(10, 30)
    first = graph(edge_index, 10)
    assert graph(edge_index, 10) is first
    assert graph(edge_index.clone(), 10) is not first
    assert repr(graph) == "GraphOnce(adjacency='csr', self_loops='once')"


def test_sparse_features_are_normalize_features():
    x = torch.tensor([[1.0, 0, 3], [0, 0, 0], [2, 2, 0]])
    out = pyg_sparse_features(x)
    assert out.layout == torch.sparse_csr
    assert torch.allclose(out.to_dense(), torch.tensor([[0.25, 0, 0.75], [0, 0, 0], [0.5, 0.5, 0]]))


# ------------------------------------------------------------------------ the harness


def test_parse_compare_takes_names_lists_and_repeats():
    assert parse_compare(None) == ()
    assert parse_compare("pyg") == ("pyg",)
    assert parse_compare("pyg, pyg-tuned") == ("pyg", "pyg-tuned")
    assert parse_compare(["pyg-tuned", "pyg,pyg-tuned"]) == ("pyg-tuned", "pyg")
    with pytest.raises(InputError, match=r"takes pyg and/or pyg-tuned .* got 'dgl'"):
        parse_compare("pyg,dgl")
    with pytest.raises(InputError, match="got ''"):
        parse_compare("pyg,")
    with pytest.raises(InputError, match="--compare takes names of references, got 3"):
        parse_compare(3)


def test_bench_node_trains_both_references_in_one_run():
    data = load("karate")
    result = run_node_benchmark(
        data, dataset="karate", model="gat", compare="pyg,pyg-tuned", runs=2, epochs=3,
        warmup_epochs=0,
    )  # fmt: skip
    assert list(result.records) == ["gnnkit", "pyg", "pyg-tuned"]
    assert [r.seed for r in result.records["pyg-tuned"]] == [0, 1]
    assert result.features["pyg-tuned"].startswith("sparse csr (34, 34)")
    assert result.features["pyg"].startswith("dense (34, 34)")
    times = {impl: result.summary(impl)["run_time_s_median"] for impl in result.records}
    assert result.speedups == pytest.approx(
        {impl: times[impl] / times["gnnkit"] for impl in ("pyg", "pyg-tuned")}
    )
    assert result.speedup == result.speedups["pyg"]
    report = result.report()
    assert "gnnkit speed-up" in report and "than PyG per run" in report
    assert "than tuned PyG per run" in report


def test_tuned_reference_alone_and_its_refusals():
    data = load("karate")
    result = run_node_benchmark(
        data, dataset="karate", model="gcn", compare="pyg-tuned", runs=1, epochs=2,
        warmup_epochs=0,
    )  # fmt: skip
    assert list(result.records) == ["gnnkit", "pyg-tuned"] and result.speedup is None
    assert set(result.speedups) == {"pyg-tuned"}
    from gnnkit.train.minibatch import SamplingConfig

    with pytest.raises(InputError, match="--compare pyg-tuned caches the whole graph"):
        run_node_benchmark(
            data, dataset="karate", model="gcn", compare="pyg-tuned",
            sampling=SamplingConfig(fanouts=(5, 5)),
        )  # fmt: skip
    with pytest.raises(InputError, match="no pyg-tuned reference for the link recipe 'gcn'"):
        reference(get_recipe("link", "gcn"), "pyg-tuned")
    with pytest.raises(InputError, match="unknown reference 'dgl'; known: pyg, pyg-tuned"):
        reference(get_recipe("node", "gcn"), "dgl")


@pytest.mark.parametrize(
    "flags",
    [["--compare", "pyg,pyg-tuned"], ["--compare", "pyg", "--compare", "pyg-tuned,pyg"]],
    ids=["comma list", "repeated"],
)
def test_cli_compare_list_or_repeated_flag(flags, tmp_path, capsys):
    out = tmp_path / "r.json"
    argv = [*KARATE, "--runs", "1", "--epochs", "2", *flags, "--json", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "\npyg " in printed and "\npyg-tuned " in printed
    payload = json.loads(out.read_text())
    assert payload["options"]["compare"] == "pyg,pyg-tuned"
    assert {"gnnkit", "pyg", "pyg-tuned"} <= set(payload)
    assert set(payload["speedups"]) == {"pyg", "pyg-tuned"}
    assert payload["speedup"] == payload["speedups"]["pyg"]
    assert payload["pyg-tuned"]["features"].startswith("sparse csr")


# --------------------------------------------------------------- the benchmark scripts


@pytest.mark.parametrize("name", ["gcn", "gat"])
def test_layers_script_times_the_tuned_layer_and_reports_both_ratios(name):
    settings = dict(nodes=300, edges=2000, channels=16, repeat=1, warmup=0, threads=None)
    runs = {
        impl: [layers.measure(impl, name, device="cpu", **settings)]
        for impl in ("gnnkit", "pyg", "pyg-tuned")
    }
    entry = layers.compare(name, runs)  # raises if an output differs
    tuned = runs["pyg-tuned"][0]["time"]["median_s"]
    assert entry["speedup_tuned"] == pytest.approx(tuned / entry["gnnkit"]["time_median_s"])
    assert set(entry["targets_met"]) == {"speedup", "speedup_tuned", "memory_ratio"}
    payload = {
        name: entry,
        "config": {**settings, "rounds": 1, "baseline": None, "layers": [name]},
        "env": {"cpu": "test", "threads": 1, "device": "cpu", "torch": "x",
                "torch_geometric": "y", "torch_scatter": "z", "date": "today"},
        "loadavg_start": [0, 0, 0],
        "loadavg_end": [0, 0, 0],
    }  # fmt: skip
    text = layers.markdown(payload, "python benchmarks/layers.py")
    assert "| speed-up vs PyG | speed-up vs tuned |" in text
    assert f"**{entry['speedup_tuned']:.2f}x**" in text


def test_scale_script_reports_the_tuned_reference(tmp_path):
    runs = {
        impl: scale.measure_epoch(impl, "gat", 300, 2000, channels=16, classes=5, repeat=1)
        for impl in ("pyg", "pyg-tuned", "gnnkit")
    }
    entry = scale.compare(runs, "gat")  # raises if an output differs
    assert entry["speedup_tuned"] == pytest.approx(entry["pyg_tuned_s"] / entry["gnnkit_s"])
    payload = {
        "results": [entry],
        "config": {"repeat": 1, "warmup": 1, "channels": 16, "classes": 5},
        "env": {"cpu": "test", "threads": 1, "device": "cpu", "torch": "x",
                "torch_geometric": "y", "torch_scatter": "z", "date": "today"},
        "loadavg_start": [0, 0, 0],
        "loadavg_end": [0, 0, 0],
    }  # fmt: skip
    text = scale_report.markdown(payload, "python benchmarks/scale.py")
    assert "| speed-up vs PyG | speed-up vs tuned |" in text
    assert f"**{entry['speedup_tuned']:.2f}x**" in text
    assert scale_report.plot(payload, tmp_path / "scale.png").stat().st_size > 1000
