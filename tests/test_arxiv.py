"""ogbn-arxiv: OGB's GCN recipe, its PyG reference, and the whole `gnnkit bench node` path.

The real ogbn-arxiv is not available offline: these tests write a small dataset in OGB's raw
format (``tests/ogb_format.write_ogbn_arxiv``) into a temporary data root.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from ogb.nodeproppred import Evaluator
from ogb_format import write_ogbn_arxiv

from gnnkit.bench.pyg import PygArxivGAT, PygArxivGCN
from gnnkit.cli import main
from gnnkit.data import load
from gnnkit.errors import InputError
from gnnkit.graph import symmetrize
from gnnkit.models import BatchNormGAT, BatchNormGCN
from gnnkit.train import TrainConfig, fit, node_inputs
from gnnkit.train.inputs import raw_features

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def arxiv_root(tmp_path, offline) -> Path:
    write_ogbn_arxiv(tmp_path, num_nodes=80, num_edges=300, num_features=8, seed=1)
    return tmp_path


def random_graph(nodes=50, edges=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(nodes, 8, generator=g), torch.randint(0, nodes, (2, edges), generator=g)


# --------------------------------------------------------------------------- graph, features


def test_symmetrize_is_both_directions_once():
    edge_index = torch.tensor([[0, 1, 1, 2, 3, 3], [1, 0, 2, 2, 0, 0]])  # 0<->1 twice, loop 2
    out = symmetrize(edge_index, 5)
    pairs = [tuple(p) for p in out.t().tolist()]
    expected = {(a, b) for a, b in edge_index.t().tolist()} | {
        (b, a) for a, b in edge_index.t().tolist()
    }
    assert sorted(pairs) == sorted(expected) and len(pairs) == len(set(pairs))
    assert out.shape[1] == 7  # (0,1) (1,0) (1,2) (2,1) (2,2) (0,3) (3,0)
    with pytest.raises(InputError, match="node indices"):
        symmetrize(torch.tensor([[0], [7]]), 3)


def test_raw_features_are_unchanged_dense_float32():
    x = torch.tensor([[1.0, -2.0], [0.0, 3.5]], dtype=torch.float64)
    assert torch.equal(raw_features(x), x.float())
    assert torch.equal(raw_features(x.to_sparse_csr()), x.float())


# --------------------------------------------------------------------------- models vs PyG


@pytest.mark.parametrize("batch_norm", [True, False])
def test_arxiv_gcn_equals_ogb_example_built_from_pyg(batch_norm):
    x, edge_index = random_graph()
    edge_index = symmetrize(edge_index, 50)
    torch.manual_seed(0)
    reference = PygArxivGCN(8, 5, hidden_channels=16)
    if not batch_norm:
        reference.bns = torch.nn.ModuleList(torch.nn.Identity() for _ in reference.bns)
    ours = BatchNormGCN(8, 5, hidden_channels=16, batch_norm=batch_norm)
    ours.load_state_dict(reference.state_dict())
    for mode in ("eval", "train"):
        for m in (ours, reference):
            getattr(m, mode)()
            m.dropout = 0.0  # same function in training mode: batch statistics, no dropout
        out, ref = ours(x, edge_index), reference(x, edge_index)
        assert torch.allclose(out, ref, atol=1e-5), mode
    out.square().sum().backward()
    ref.square().sum().backward()
    for (name, p), q in zip(ours.named_parameters(), reference.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, atol=1e-4, rtol=1e-4), name


def test_arxiv_gat_equals_pyg_counterpart():
    x, edge_index = random_graph(seed=1)
    torch.manual_seed(0)
    reference = PygArxivGAT(8, 5, hidden_channels=4, heads=3).eval()
    ours = BatchNormGAT(8, 5, hidden_channels=4, heads=3).eval()
    ours.load_state_dict(reference.state_dict())
    assert torch.allclose(ours(x, edge_index), reference(x, edge_index), atol=1e-5)


def test_model_shapes_options_and_errors():
    x, edge_index = random_graph()
    assert BatchNormGCN(8, 3, num_layers=1)(x, edge_index).shape == (50, 3)
    assert len(BatchNormGCN(8, 3).convs) == 3 and len(BatchNormGCN(8, 3).bns) == 2
    assert BatchNormGAT(8, 3, num_layers=1, heads=2)(x, edge_index).shape == (50, 3)
    assert "num_layers=3, dropout=0.5" in repr(BatchNormGCN(8, 3))
    # Dropout is on in training mode only.
    model = BatchNormGCN(8, 3, dropout=0.9).train()
    torch.manual_seed(0)
    a = model(x, edge_index)
    torch.manual_seed(1)
    assert not torch.allclose(a, model(x, edge_index))
    model.eval()
    assert torch.equal(model(x, edge_index), model(x, edge_index))
    with pytest.raises(InputError, match="num_layers must be an integer >= 1, got 0"):
        BatchNormGCN(8, 3, num_layers=0)
    with pytest.raises(InputError, match=r"dropout must be a number in \[0, 1\)"):
        BatchNormGCN(8, 3, dropout=1.0)
    with pytest.raises(InputError, match="batch_norm must be True or False"):
        BatchNormGCN(8, 3, batch_norm="yes")
    with pytest.raises(InputError, match="heads must be an integer >= 1, got 0"):
        BatchNormGAT(8, 3, heads=0)
    with pytest.raises(InputError, match="cached must be True or False"):
        BatchNormGAT(8, 3, cached=None)


# --------------------------------------------------------------------------- data and harness


@pytest.fixture
def arxiv_inputs(arxiv_root):
    """The synthetic arxiv's raw features on its symmetric graph, as the arxiv recipe trains."""
    inputs = node_inputs(load("ogbn-arxiv", root=arxiv_root), features=raw_features)
    inputs.edge_index = symmetrize(inputs.edge_index, inputs.num_nodes)
    return inputs


def small_arxiv_gcn(inputs):
    """A seeded BatchNormGCN of 16 hidden channels for ``inputs``."""
    torch.manual_seed(0)
    return BatchNormGCN(inputs.num_features, inputs.num_classes, hidden_channels=16)


def test_fit_accuracy_equals_ogb_evaluator(arxiv_inputs):
    inputs = arxiv_inputs
    model = small_arxiv_gcn(inputs)
    result = fit(model, inputs, TrainConfig(epochs=15, lr=0.01, weight_decay=0.0, seed=0))
    model.eval()  # restore_best: the parameters of the selected epoch
    with torch.no_grad():
        pred = model(inputs.x, inputs.edge_index).argmax(dim=-1, keepdim=True)
    evaluator = Evaluator(name="ogbn-arxiv")
    y = inputs.y.view(-1, 1)
    for split, idx, acc in (
        ("test", inputs.test_idx, result.test_acc),
        ("valid", inputs.val_idx, result.val_acc),
    ):
        ogb_acc = evaluator.eval({"y_true": y[idx], "y_pred": pred[idx]})["acc"]
        assert acc == pytest.approx(ogb_acc), split


def test_corrupt_processed_arxiv_cache_is_rebuilt(arxiv_root, caplog):
    first = load("ogbn-arxiv", root=arxiv_root)
    processed = arxiv_root / "ogb" / "ogbn_arxiv" / "processed" / "geometric_data_processed.pt"
    assert processed.is_file()
    for damage in (processed.read_bytes()[:500], b"not a torch file at all"):
        processed.write_bytes(damage)
        with caplog.at_level(logging.WARNING, logger="gnnkit.data.loaders"):
            again = load("ogbn-arxiv", root=arxiv_root)
        assert "gnnkit did not write" in caplog.text and "rebuilding" in caplog.text
        caplog.clear()
        assert torch.equal(again.edge_index, first.edge_index)
        assert torch.equal(again.x, first.x) and torch.equal(again.train_mask, first.train_mask)


def test_minibatch_training_learns_on_synthetic_arxiv(arxiv_inputs):
    from gnnkit.train.minibatch import SamplingConfig, fit_minibatch

    inputs = arxiv_inputs
    model = small_arxiv_gcn(inputs)
    config = TrainConfig(epochs=6, lr=0.01, weight_decay=0.0, seed=0)
    result = fit_minibatch(model, inputs, config, SamplingConfig(fanouts=(4, 4, 4), batch_size=8))
    losses = result.history["loss"]
    assert len(losses) == 6 and losses[-1] < losses[0]
    # The loss is the mean cross-entropy over all training nodes: at epoch 1 it is near ln(40).
    assert abs(losses[0] - torch.log(torch.tensor(40.0)).item()) < 1.5
    assert not any(conv.cached for conv in model.convs)  # caches are off on sampled graphs


def test_relu_dropout_equals_relu_then_dropout_bit_for_bit():
    from gnnkit.nn.functional import dropout, relu_dropout

    x = torch.randn(300, 17, generator=torch.Generator().manual_seed(0))
    grad = torch.randn(300, 17, generator=torch.Generator().manual_seed(1))
    for p in (0.1, 0.5, 0.8):
        a = x.clone().requires_grad_()
        torch.manual_seed(3)
        fused = relu_dropout(a, p, training=True)
        fused.backward(grad)
        b = x.clone().requires_grad_()
        torch.manual_seed(3)
        chain = dropout(torch.relu(b), p, training=True)
        chain.backward(grad)
        assert torch.equal(fused, chain) and torch.equal(a.grad, b.grad), p
        kept = float((fused != 0).sum()) / float((x > 0).sum())
        assert abs(kept - (1 - p)) < 0.05  # the keep rate is 1 - p
    # Evaluation mode and p = 0 are a plain ReLU.
    assert torch.equal(relu_dropout(x, 0.5, training=False), torch.relu(x))
    assert torch.equal(relu_dropout(x, 0.0, training=True), torch.relu(x))


# --------------------------------------------------------------------------- gnnkit bench node


def bench(root: Path, *args: str) -> list[str]:
    return [
        "bench", "node", "--dataset", "ogbn-arxiv", "--offline", "--data-root", str(root),
        "--runs", "2", "--epochs", "3", "--warmup", "1", "--no-progress", *args,
    ]  # fmt: skip


def test_recipe_resolves_and_prepares_the_graph(arxiv_root):
    from gnnkit.bench.node import _prepare_inputs
    from gnnkit.recipes import get_recipe

    spec = get_recipe("node", "gcn", "ogbn-arxiv")
    assert (spec.name, spec.lr, spec.weight_decay, spec.epochs) == ("arxiv-gcn", 0.01, 0.0, 500)
    assert (
        get_recipe("node", "gcn", "cora").name == "gcn"
        and get_recipe("node", "gat", "ogbn-arxiv").name == "arxiv-gat"
    )
    data = load("ogbn-arxiv", root=arxiv_root)
    inputs = _prepare_inputs(data, spec, torch.device("cpu"))
    assert torch.equal(inputs.edge_index, symmetrize(data.edge_index, data.num_nodes))
    assert torch.equal(inputs.x, data.x)  # raw features, no row normalisation
    model = spec.build(inputs.num_features, inputs.num_classes)
    assert (
        isinstance(model, BatchNormGCN) and model.hidden_channels == 256 and len(model.convs) == 3
    )


def test_full_batch_path_against_pyg(arxiv_root, tmp_path, capsys):
    out = tmp_path / "full.json"
    assert main(bench(arxiv_root, "--compare", "pyg", "--json", str(out))) == 0
    printed = capsys.readouterr().out
    assert "GCN (arxiv-gcn) on ogbn-arxiv: 2 run(s) x 3 epochs" in printed and "\npyg " in printed
    result = json.loads(out.read_text())
    assert (result["recipe"], result["mode"], result["epochs"]) == ("arxiv-gcn", "full-batch", 3)
    assert "sampling" not in result
    for impl in ("gnnkit", "pyg"):
        assert result[impl]["features"] == "dense (80, 8)"  # raw features for both
        assert len(result[impl]["test_acc"]) == 2


def test_mini_batch_path_against_pyg_and_resume(arxiv_root, tmp_path, capsys):
    out, ckpt = tmp_path / "mb.json", tmp_path / "ckpt"
    args = ["--mini-batch", "--fanouts", "4", "3", "2", "--batch-size", "16", "--compare", "pyg"]
    argv = bench(arxiv_root, *args, "--checkpoint-dir", str(ckpt), "--json", str(out))
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "(mini-batch, fan-outs 4,3,2, 16 seeds per shard)" in printed
    result = json.loads(out.read_text())
    assert result["mode"] == "mini-batch" and result["world_size"] == 1
    assert result["sampling"] == {
        "fanouts": [4, 3, 2],
        "batch_size": 16,
        "accumulate": 1,
        "replace": False,
    }
    assert result["options"]["warmup"] == 1
    # PyG's GCNConv(cached=True) would reuse the first subgraph's normalisation: it trained, so
    # the harness turned the cache off.
    assert len(result["pyg"]["test_acc"]) == 2
    assert sorted(p.name for p in ckpt.iterdir()) == [
        f"ogbn-arxiv-gcn-{impl}-seed{s}-minibatch.pt" for impl in ("gnnkit", "pyg") for s in (0, 1)
    ]
    again = tmp_path / "again.json"
    argv = bench(arxiv_root, *args, "--checkpoint-dir", str(ckpt), "--resume", "--json", str(again))
    assert main(argv) == 0
    resumed = json.loads(again.read_text())
    assert resumed["gnnkit"]["resumed_runs"] == 2
    assert resumed["gnnkit"]["test_acc"] == result["gnnkit"]["test_acc"]


def test_gat_recipe_runs_mini_batch(arxiv_root, capsys):
    argv = bench(
        arxiv_root, "--model", "gat", "--mini-batch", "--batch-size", "32", "--accumulate", "2"
    )
    argv[argv.index("--runs") + 1] = "1"
    assert main(argv) == 0
    assert (
        "GAT (arxiv-gat) on ogbn-arxiv (mini-batch, fan-outs 15,10,5, 32 seeds per shard, 2 shards per step)"
        in capsys.readouterr().out
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fanouts", "5", "5"], "--fanouts is a mini-batch option: add --mini-batch"),
        (["--batch-size", "8"], "--batch-size is a mini-batch option: add --mini-batch"),
        (["--distributed"], "--distributed is a mini-batch option: add --mini-batch"),
        (["--mini-batch", "--fanouts", "5", "-3"], "each fan-out must be an int >= 0, or -1"),
        (["--mini-batch", "--distributed"], "start them with `torchrun --nproc_per_node=N"),
        (["--mini-batch", "--batch-size", "8", "--accumulate", "64"], "fewer than the 64 shards"),
        (["--dataset", "ogbn-products"], "unknown dataset 'ogbn-products'; bench node takes: cora"),
        (["--model", "sage"], "unknown model 'sage'; known models: gcn, gat, arxiv-gcn, arxiv-gat"),
    ],
)
def test_bad_inputs_exit_2_with_one_line(arxiv_root, args, message, capsys, monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    argv = bench(arxiv_root, *args)
    if "--dataset" in args:  # the later --dataset wins
        argv = [a for a in argv if a != "ogbn-arxiv"]
        argv.remove("--dataset")
    assert main(argv) == 2
    err = capsys.readouterr().err
    # One error line, last; a first load may log the data layer's notes before it.
    assert message in err.splitlines()[-1] and "Traceback" not in err
    assert (
        sum(line.startswith("gnnkit: error") or message in line for line in err.splitlines()) == 1
    )


def test_missing_arxiv_split_file_is_named(arxiv_root, capsys):
    (arxiv_root / "ogb" / "ogbn_arxiv" / "split" / "time" / "test.csv.gz").unlink()
    assert main(bench(arxiv_root)) == 2
    assert "ogb/ogbn_arxiv/split/time/test.csv.gz" in capsys.readouterr().err


def test_torchrun_processes_without_distributed_flag_are_refused(arxiv_root, capsys, monkeypatch):
    for name, value in (("RANK", "1"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "1")):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "1")
    assert main(bench(arxiv_root)) == 2
    assert "add --mini-batch --distributed" in capsys.readouterr().err
    assert main(bench(arxiv_root, "--mini-batch")) == 2
    assert "add --distributed" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_torchrun_two_processes_through_the_cli(arxiv_root, tmp_path):
    """The real entry point: torchrun starts two CPU ranks of `gnnkit bench node`."""
    import shutil
    import subprocess
    import sys

    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun is not installed next to this Python")
    out = tmp_path / "ddp.json"
    argv = bench(
        arxiv_root,
        "--mini-batch",
        "--distributed",
        "--fanouts",
        "3",
        "3",
        "3",
        "--batch-size",
        "8",
        "--json",
        str(out),
    )
    argv[argv.index("--runs") + 1] = "1"
    done = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node=2", "-m", "gnnkit", *argv],
        capture_output=True, text=True, timeout=240, cwd=REPO, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("implementation  test accuracy") == 1  # rank 0 alone prints
    assert ", 2 processes)" in done.stdout
    result = json.loads(out.read_text())
    assert result["world_size"] == 2 and result["mode"] == "mini-batch"
    assert result["options"]["distributed"] is True
