"""benchmarks/scale.py on tiny sizes: data generators (scale_data.py), one measurement per
library, reports (scale_report.py)."""

from __future__ import annotations

import pytest
import scale
import scale_data
import scale_report
import torch

from gnnkit.data import load

pytestmark = pytest.mark.usefixtures("one_thread")


def test_power_law_graph_shape_determinism_and_tail():
    edges = scale_data.power_law_graph(2000, 14000, seed=3)
    assert edges.shape == (2, 14000) and int(edges.min()) >= 0 and int(edges.max()) < 2000
    assert torch.equal(edges, scale_data.power_law_graph(2000, 14000, seed=3))
    degree = torch.bincount(edges[1], minlength=2000).float()
    uniform = torch.bincount(torch.randint(0, 2000, (14000,)), minlength=2000).float()
    # Heavy tail: the largest in-degree is far above a uniform graph's of the same size.
    assert degree.max() > 10 * uniform.max()
    # Node ids are shuffled: degree does not decrease with id.
    assert not bool((degree[:-1] >= degree[1:]).all())
    assert scale_data.nodes_for(scale_data.ARXIV_EDGES) == scale_data.ARXIV_NODES


@pytest.mark.parametrize("model", ["gcn", "gat"])
def test_one_measurement_per_library_agrees_and_reports(model, tmp_path):
    runs = {
        impl: scale.measure_epoch(impl, model, 300, 2000, channels=16, classes=5, repeat=1)
        for impl in ("pyg", "gnnkit")
    }
    entry = scale.compare(runs, model)  # raises if the two libraries' outputs differ
    assert entry["outputs_max_abs_diff"] < 1e-4 and entry["edges"] == 2000
    assert entry["speedup"] == pytest.approx(entry["pyg_s"] / entry["gnnkit_s"])
    payload = {
        "results": [entry],
        "config": {"repeat": 1, "warmup": 1, "channels": 16, "classes": 5},
        "env": {
            "cpu": "test",
            "threads": 1,
            "device": "cpu",
            "torch": "x",
            "torch_geometric": "y",
            "torch_scatter": "z",
            "date": "today",
        },
        "loadavg_start": [0, 0, 0],
        "loadavg_end": [0, 0, 0],
    }
    text = scale_report.markdown(payload, "python benchmarks/scale.py")
    assert f"| {model.upper()} | 300 | 2,000 |" in text
    assert ("Target at the top size" in text) == (model == "gcn")
    assert scale_report.plot(payload, tmp_path / "scale.png").stat().st_size > 1000


def test_diverging_outputs_are_refused():
    runs = {
        impl: scale.measure_epoch(impl, "gcn", 200, 1000, channels=8, classes=3, repeat=1)
        for impl in ("pyg", "gnnkit")
    }
    runs["gnnkit"]["output_head"][0][0] += 1.0
    with pytest.raises(SystemExit, match="outputs differ"):
        scale.compare(runs, "gcn")


def test_symmetric_measurement_and_minibatch_epoch():
    run = scale.measure_epoch(
        "gnnkit", "gcn", 200, 1000, channels=8, classes=3, repeat=1, symmetric=True
    )
    assert run["edges"] > 1000  # both directions of every edge
    mini = scale.measure_minibatch_epoch(
        "gnnkit", 500, 3000, fanouts=(3, 2, 2), batch_size=64, max_steps=2
    )
    assert mini["steps_per_epoch"] == -(-int(0.54 * 500) // 64) and mini["steps"] == 2
    assert 0 < mini["sampling_share"] < 1 and mini["subgraph_nodes_mean"] >= 64


def test_arxiv_like_dataset_loads_through_the_data_layer(tmp_path, offline):
    splits = scale_data.write_arxiv_like(tmp_path, 120, 700)
    data = load("ogbn-arxiv", root=tmp_path)
    assert (data.num_nodes, data.x.shape[1], data.num_classes) == (120, 128, 40)
    assert data.edge_index.shape == (2, 700)
    assert [int(data[m].sum()) for m in ("train_mask", "val_mask", "test_mask")] == [
        splits["train"],
        splits["valid"],
        splits["test"],
    ]


def test_arxiv_report_has_both_sections():
    block = {"test_acc_mean": 0.5, "epoch_ms_median": 1500.0, "run_time_s_median": 3.0,
             "peak_rss_mb": 12.0}  # fmt: skip
    steps = {
        "fanouts": [15, 10, 5], "batch_size": 1024, "steps": 15, "steps_per_epoch": 89,
        "step_s_median": 0.2, "sample_s_median": 0.05, "epoch_s_estimate": 18.0,
        "subgraph_nodes_mean": 9000.0, "subgraph_edges_mean": 30000.0,
        "memory": {"increase_bytes": 2**30},
    }  # fmt: skip
    argv = ["gnnkit", "bench", "node", "--dataset", "ogbn-arxiv"]
    payload = {
        "arxiv": {
            "nodes": 2000, "edges": 14000,
            "full_batch": {"argv": argv, "result": {"epochs": 3, "speedup": 2.5,
                                                    "gnnkit": block, "pyg": block}},
            "mini_batch": {"argv": [*argv, "--mini-batch"], "result": {"epochs": 1,
                                                                       "gnnkit": block}},
            "epoch": {"edges": 28000, "pyg_s": 2.0, "gnnkit_s": 0.5, "speedup": 4.0,
                      "pyg_mb": 400.0, "gnnkit_mb": 100.0, "memory_ratio": 0.25},
            "minibatch_steps": {"gnnkit": steps, "pyg": steps},
        },
        "config": {"repeat": 3, "warmup": 1},
        "env": {"cpu": "test", "threads": 1, "torch": "x", "torch_geometric": "y", "date": "d"},
        "loadavg_start": [0, 0, 0], "loadavg_end": [0, 0, 0],
    }  # fmt: skip
    text = scale_report.arxiv_markdown(payload, "python benchmarks/scale.py --arxiv")
    assert "| full batch | gnnkit | 3 | 50.0 % | 1.50 s | 3.0 s | 12 MB |" in text
    assert "| mini-batch | gnnkit | 1 |" in text and "| mini-batch | pyg |" not in text
    assert "Full-batch speedup (PyG run time / gnnkit run time): **2.50x**" in text
    assert "```\n\n## The recipe's training epoch, gnnkit against PyG\n" in text
    assert "| epoch time | 2.00 s | 500 ms | **4.00x** faster |" in text
    assert text.endswith("Command: `python benchmarks/scale.py --arxiv`\n")
