"""``gnnkit bench graph`` and its harness (``gnnkit.train.graph``): selection, JSON, errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import gnnkit.train.graph as graphprop
from gnnkit.cli import main
from gnnkit.data import DATASETS, load
from gnnkit.errors import InputError
from gnnkit.models import MolGNN
from gnnkit.train.graph import (
    GraphSplits,
    GraphTrainConfig,
    fit_graph,
    graph_result,
    graph_run,
    graph_splits,
    metric_direction,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ogb_format import fold_into_ogb_vocabularies, write_csv_gz, write_ogbg_mol

pytestmark = pytest.mark.usefixtures("one_thread")


def write_molecules(
    root: Path, name: str = "ogbg-molhiv", num_graphs: int = 24, num_tasks: int = 1
) -> None:
    """``write_ogbg_mol`` with features folded into OGB's vocabularies and labels such that
    every split holds both classes (ROC-AUC needs them); with several tasks, some labels are
    missing (NaN, as in OGB's multi-task sets)."""
    written = write_ogbg_mol(root, name, num_graphs=num_graphs, seed=0)
    fold_into_ogb_vocabularies(root, name)
    raw = root / "ogb" / name.replace("-", "_") / "raw"
    labels = np.zeros((num_graphs, num_tasks))
    for index in written["split"].values():
        for task in range(num_tasks):
            labels[index[task % 2 :: 2], task] = 1
    if num_tasks > 1:
        labels[np.arange(num_graphs) % 7 == 3, 1:] = np.nan  # never all of one class
        write_csv_gz(raw / "graph-label.csv.gz", labels)
    else:
        write_csv_gz(raw / "graph-label.csv.gz", labels.astype(np.int64))


@pytest.fixture(scope="module")
def molhiv_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_molecules(root)
    return root


@pytest.fixture(scope="module")
def splits(molhiv_root):
    return graph_splits(load("ogbg-molhiv", root=molhiv_root, mirror=None, download=False))


def test_metric_direction():
    assert metric_direction("rocauc") == "max" and metric_direction("ap") == "max"
    assert metric_direction("rmse") == "min" and metric_direction("mae") == "min"
    with pytest.raises(InputError, match="unknown OGB metric 'auroc'"):
        metric_direction("auroc")


@pytest.mark.parametrize(
    "name, valid, best",
    [
        # ROC-AUC: the highest validation score wins; ties keep the earlier epoch.
        ("ogbg-molhiv", [0.60, 0.80, 0.70, 0.80], 2),
        # RMSE: the lowest wins.
        ("ogbg-molesol", [2.0, 1.5, 1.7, 1.2], 4),
    ],
)
def test_test_score_is_taken_at_the_best_validation_epoch(name, valid, best, splits, monkeypatch):
    metric = "rocauc" if name == "ogbg-molhiv" else "rmse"
    task = "binary classification" if metric == "rocauc" else "regression"
    these = GraphSplits(name, splits.train, splits.valid, splits.test, 1, task, metric)
    test = [0.1, 0.2, 0.3, 0.4]
    scripted = iter(v for pair in zip(valid, test, strict=True) for v in pair)
    monkeypatch.setattr(graphprop, "evaluate_graphs", lambda *args: next(scripted))
    torch.manual_seed(0)
    result = fit_graph(MolGNN(1, 8, num_layers=2), these, GraphTrainConfig(epochs=4, seed=0))
    assert result.best_epoch == best
    assert result.valid == valid[best - 1]
    assert result.test == test[best - 1]
    assert result.history["valid"] == valid and result.history["test"] == test


def test_harness_on_real_ogb_format_data(splits):
    torch.manual_seed(0)
    config = GraphTrainConfig(epochs=3, batch_size=8, seed=0)
    result = fit_graph(MolGNN(splits.num_tasks, 16, num_layers=2), splits, config)
    assert result.metric == "rocauc"
    assert len(result.epoch_times) == 3 and len(result.history["loss"]) == 3
    assert result.valid == max(result.history["valid"])
    assert result.test == result.history["test"][result.best_epoch - 1]
    assert all(0.0 <= v <= 1.0 for v in result.history["test"])


def test_same_seed_same_run_and_trainers_keep_their_own_random_state(
    splits, interleaving_changes_nothing
):
    interleaving_changes_nothing(
        lambda seed: graph_run(
            MolGNN(1, 8, num_layers=2), splits, GraphTrainConfig(epochs=2, batch_size=8, seed=seed)
        )
    )


def test_eval_train_records_the_training_score(splits):
    torch.manual_seed(0)
    config = GraphTrainConfig(epochs=1, batch_size=8, seed=0, eval_train=True)
    result = fit_graph(MolGNN(1, 8, num_layers=2), splits, config)
    assert len(result.history["train"]) == 1


def test_cli_json_plot_and_pyg_comparison(molhiv_root, tmp_path, capsys, pyg_comparison):
    out = tmp_path / "graph.json"
    plot = tmp_path / "graph.png"
    code = main(
        [
            "bench", "graph", "--dataset", "ogbg-molhiv", "--data-root", str(molhiv_root),
            "--offline", "--model", "gcn", "--runs", "2", "--epochs", "2", "--batch-size", "8",
            "--compare", "pyg", "--json", str(out), "--plot", str(plot),
        ]
    )  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    assert "GCN on ogbg-molhiv: 2 run(s) x 2 epochs" in text and "pyg" in text
    payload = pyg_comparison(out, dataset="ogbg-molhiv", metric="rocauc")
    assert len(payload["gnnkit"]["test"]) == 2 and len(payload["pyg"]["test"]) == 2
    assert plot.stat().st_size > 0


def test_cli_compares_with_tuned_pyg_too(molhiv_root, tmp_path, capsys):
    out = tmp_path / "graph.json"
    code = main(
        [
            "bench", "graph", "--dataset", "ogbg-molhiv", "--data-root", str(molhiv_root),
            "--offline", "--model", "gat", "--runs", "1", "--epochs", "1", "--batch-size", "8",
            "--compare", "pyg,pyg-tuned", "--json", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    assert "than PyG's" in text and "than tuned PyG's" in text
    payload = json.loads(out.read_text())
    assert set(payload["speedups"]) == {"pyg", "pyg-tuned"}
    tuned = payload["pyg-tuned"]
    assert tuned["epoch_s_median"] > 0 and len(tuned["test"]) == 1
    assert payload["speedups"]["pyg-tuned"] == pytest.approx(
        tuned["epoch_s_median"] / payload["gnnkit"]["epoch_s_median"]
    )


def test_any_ogb_molecule_dataset_runs_multi_task_with_missing_labels(tmp_path, capsys):
    write_molecules(tmp_path, "ogbg-moltox21", num_graphs=28, num_tasks=12)
    dataset = load("ogbg-moltox21", root=tmp_path, mirror=None, download=False)
    assert dataset.num_tasks == 12 and torch.isnan(dataset.y).any()
    out = tmp_path / "tox21.json"
    code = main(
        [
            "bench", "graph", "--dataset", "ogbg-moltox21", "--data-root", str(tmp_path),
            "--offline", "--model", "gcn", "--runs", "1", "--epochs", "2", "--batch-size", "8",
            "--json", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    payload = json.loads(out.read_text())
    assert payload["dataset"] == "ogbg-moltox21" and payload["metric"] == "rocauc"
    assert 0.0 <= payload["gnnkit"]["test_mean"] <= 1.0


def test_every_ogb_molecule_dataset_is_registered():
    import ogb.graphproppred

    master = pd.read_csv(Path(ogb.graphproppred.__file__).parent / "master.csv", index_col=0)
    molecules = {name for name in master if master[name]["data type"] == "mol"}
    assert len(molecules) >= 13
    registered = {name for name, spec in DATASETS.items() if name.startswith("ogbg-mol")}
    assert registered == molecules
    assert all(DATASETS[name].kind == "graph" for name in molecules)


def test_cli_virtual_node_without_comparison(molhiv_root, capsys):
    code = main(
        [
            "bench", "graph", "--dataset", "ogbg-molhiv", "--data-root", str(molhiv_root),
            "--offline", "--model", "gat-virtual", "--runs", "1", "--epochs", "1",
            "--device", "cpu",
        ]
    )  # fmt: skip
    assert code == 0
    assert "GAT-VIRTUAL on ogbg-molhiv: 1 run(s) x 1 epochs, seeds 0-0, cpu" in (
        capsys.readouterr().out
    )


@pytest.mark.cuda
def test_training_on_cuda_matches_the_cpu_start(splits):
    torch.manual_seed(0)
    cpu_model = MolGNN(1, 16, num_layers=2)
    cuda_model = MolGNN(1, 16, num_layers=2).cuda()
    cuda_model.load_state_dict(cpu_model.state_dict())
    config = GraphTrainConfig(epochs=1, batch_size=8, seed=0)
    on_cuda = graph_run(cuda_model, splits, config)
    assert on_cuda.task.device.type == "cuda"
    on_cpu = graph_run(cpu_model, splits, config)
    batches = on_cpu.task.eval_batches["valid"]
    cpu_model.eval(), cuda_model.eval()
    with torch.no_grad():
        for cpu_batch, cuda_batch in zip(batches, on_cuda.task.eval_batches["valid"], strict=True):
            torch.testing.assert_close(
                cuda_model(cuda_batch).cpu(), cpu_model(cpu_batch), rtol=1e-4, atol=1e-4
            )
    on_cuda.step()
    assert 0.0 <= graph_result(on_cuda.result(), splits.metric).test <= 1.0


def test_real_molbace_smoke(dataset, capsys):
    bace = dataset("ogbg-molbace")
    these = graph_splits(bace, "ogbg-molbace")
    assert (len(these.train), len(these.valid), len(these.test)) == (1210, 151, 152)
    torch.manual_seed(0)
    result = fit_graph(
        MolGNN(1, 16, num_layers=2), these, GraphTrainConfig(epochs=1, batch_size=128, seed=0)
    )
    assert 0.0 <= result.test <= 1.0


def test_missing_split_file_is_named(tmp_path, capsys):
    write_molecules(tmp_path)
    (tmp_path / "ogb" / "ogbg_molhiv" / "split" / "scaffold" / "valid.csv.gz").unlink()
    code = main(
        ["bench", "graph", "--dataset", "ogbg-molhiv", "--data-root", str(tmp_path), "--offline"]
    )
    assert code == 2
    assert "ogb/ogbg_molhiv/split/scaffold/valid.csv.gz" in capsys.readouterr().err


def test_library_checks(splits):
    with pytest.raises(InputError, match="epochs must be an integer >= 1, got 0"):
        GraphTrainConfig(epochs=0)
    with pytest.raises(InputError, match="lr must be a finite number > 0"):
        GraphTrainConfig(lr=float("nan"))
    with pytest.raises(InputError, match="splits must be GraphSplits"):
        graph_run(MolGNN(1, 8), {"train": []})
    with pytest.raises(InputError, match="needs an OGB PygGraphPropPredDataset"):
        graph_splits([1, 2, 3], "x")
    trainer = graph_run(MolGNN(1, 8, num_layers=2), splits, GraphTrainConfig(epochs=1))
    trainer.step()
    with pytest.raises(InputError, match="already trained all 1 epochs"):
        trainer.step()
    from gnnkit.bench.graph import run_graph_benchmark

    with pytest.raises(InputError, match="runs must be a positive integer"):
        run_graph_benchmark(splits, dataset="x", model="gcn", runs=0)
