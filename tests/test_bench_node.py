"""``gnnkit bench node``: table, JSON, plot, --compare pyg, resume, unwritable outputs.

The bad command lines: ``test_cli_errors.py``.
"""

from __future__ import annotations

import json
import re
import statistics

import pytest
import torch

from gnnkit.bench.node import run_node_benchmark
from gnnkit.cli import main
from gnnkit.data import load
from gnnkit.errors import InputError

REQUIRED = {"test_acc_mean", "test_acc_std", "run_time_s_median", "epoch_ms_median", "peak_rss_mb"}
KARATE = ["bench", "node", "--dataset", "karate", "--warmup", "1", "--no-progress"]


pytestmark = pytest.mark.usefixtures("one_thread")


def test_karate_table_and_json(tmp_path, capsys):
    out = tmp_path / "karate.json"
    argv = [*KARATE, "--model", "gcn", "--runs", "3", "--epochs", "4", "--json", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "GCN on karate: 3 run(s) x 4 epochs, seeds 0-2" in printed
    assert re.search(r"implementation +test accuracy", printed) and "\ngnnkit " in printed
    assert "speedup" not in printed
    result = json.loads(out.read_text())
    assert {"dataset", "model", "runs", "epochs", "gnnkit", "speedup", "env"} <= set(result)
    assert (result["dataset"], result["model"], result["runs"], result["epochs"]) == (
        "karate",
        "gcn",
        3,
        4,
    )
    assert set(result["gnnkit"]) >= REQUIRED and "pyg" not in result and result["speedup"] is None
    assert {"torch", "torch_geometric", "device", "threads", "cpu"} <= set(result["env"])
    block = result["gnnkit"]
    accs = block["test_acc"]
    assert len(accs) == 3 and all(0 <= a <= 1 for a in accs)
    assert block["test_acc_mean"] == pytest.approx(statistics.fmean(accs))
    assert block["test_acc_std"] == pytest.approx(statistics.stdev(accs))
    assert block["run_time_s_median"] == pytest.approx(statistics.median(block["run_time_s"]))
    assert result["seeds"] == [0, 1, 2] and block["features"].startswith("sparse csr (34, 34)")


@pytest.mark.parametrize("model", ["gcn", "gat"])
def test_compare_pyg_interleaved_with_json_and_plot(model, tmp_path, capsys):
    out, plot = tmp_path / "r.json", tmp_path / "curves.png"
    argv = [*KARATE, "--model", model, "--runs", "2", "--epochs", "5", "--compare", "pyg", "--json", str(out), "--plot", str(plot)]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    # "N x faster" or, on 5 epochs of a 34-node graph, possibly "N x slower"; never "0.7x faster"
    assert "\npyg " in printed and re.search(r"\d x (faster|slower) than PyG per run", printed)
    result = json.loads(out.read_text())
    assert set(result["pyg"]) >= REQUIRED and set(result["gnnkit"]) >= REQUIRED
    ratio = result["pyg"]["run_time_s_median"] / result["gnnkit"]["run_time_s_median"]
    assert result["speedup"] == pytest.approx(ratio)
    assert result["pyg"]["features"].startswith("dense (34, 34)")
    assert plot.stat().st_size > 10_000 and plot.read_bytes()[:4] == b"\x89PNG"


def test_both_implementations_see_the_same_seeds_and_data():
    data = load("karate")
    result = run_node_benchmark(
        data, dataset="karate", model="gcn", compare="pyg", runs=2, epochs=3, warmup_epochs=0
    )
    assert (
        [r.seed for r in result.records["gnnkit"]]
        == [r.seed for r in result.records["pyg"]]
        == [0, 1]
    )
    # both trained on PyG's NormalizeFeatures values, one sparse and one dense
    assert result.features["gnnkit"].startswith("sparse") and result.features["pyg"].startswith(
        "dense"
    )


def test_checkpoints_and_resume_through_the_cli(tmp_path, capsys):
    ckpt, first, second = tmp_path / "ckpt", tmp_path / "a.json", tmp_path / "b.json"
    base = [*KARATE, "--model", "gcn", "--runs", "2", "--epochs", "4", "--checkpoint-dir", str(ckpt), "--checkpoint-every", "2"]  # fmt: skip
    assert main([*base, "--json", str(first)]) == 0
    assert sorted(p.name for p in ckpt.iterdir()) == [
        "karate-gcn-gnnkit-seed0.pt",
        "karate-gcn-gnnkit-seed1.pt",
    ]
    assert main([*base, "--resume", "--json", str(second)]) == 0
    a, b = json.loads(first.read_text()), json.loads(second.read_text())
    assert b["gnnkit"]["resumed_runs"] == 2 and "resumed_runs" not in a["gnnkit"]
    assert a["gnnkit"]["test_acc"] == b["gnnkit"]["test_acc"]
    # The resumed runs' memory was mostly used by the first process: not reported as a
    # (smaller) peak of their own.
    assert a["gnnkit"]["peak_rss_mb"] is not None and b["gnnkit"]["peak_rss_mb"] is None
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("gnnkit ")]
    assert rows[0].endswith("MiB") and rows[-1].endswith(" n/a")


def test_cora_when_available(dataset, data_root, tmp_path, capsys):
    dataset("cora")  # skips when Cora cannot be obtained
    out = tmp_path / "cora.json"
    argv = ["bench", "node", "--dataset", "cora", "--data-root", str(data_root), "--runs", "1", "--epochs", "3", "--warmup", "0", "--json", str(out)]  # fmt: skip
    assert main(argv) == 0
    result = json.loads(out.read_text())
    assert result["dataset"] == "cora" and set(result["gnnkit"]) >= REQUIRED
    assert result["gnnkit"]["features"] == "sparse csr (2708, 1433), 49216 non-zeros"


def test_every_recipe_has_its_pyg_reference_with_the_same_optimiser():
    from gnnkit.bench.pyg import reference
    from gnnkit.recipes import GRAPH_RECIPES, LINK_RECIPES, NODE_RECIPES, Recipe

    for recipes in (NODE_RECIPES, GRAPH_RECIPES, LINK_RECIPES):
        for recipe in recipes.values():
            pyg = reference(recipe)
            assert pyg.name == f"pyg-{recipe.name}" and pyg.build is not recipe.build
            assert (pyg.lr, pyg.weight_decay, pyg.epochs, pyg.task, pyg.graph, pyg.fanouts) == (
                recipe.lr, recipe.weight_decay, recipe.epochs, recipe.task, recipe.graph,
                recipe.fanouts,
            )  # fmt: skip
    custom = Recipe("mine", "node", build=torch.nn.Linear, lr=0.1, weight_decay=0.0, epochs=1)
    with pytest.raises(InputError, match="no PyG reference for the node recipe 'mine'"):
        reference(custom)


def test_unwritable_outputs_exit_2(tmp_path, capsys):
    assert main([*KARATE, "--runs", "1", "--epochs", "1", "--json", str(tmp_path)]) == 2
    assert "is a folder; give a file name" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main([*KARATE, "--runs", "1", "--epochs", "1", "--plot", str(blocker / "x.png")]) == 2
    assert "cannot write --plot" in capsys.readouterr().err


def test_library_entry_point_rejects_bad_values():
    data = load("karate")
    with pytest.raises(InputError, match="runs must be a positive integer, got 0"):
        run_node_benchmark(data, dataset="karate", model="gcn", runs=0)
    with pytest.raises(InputError, match="--compare takes pyg and/or pyg-tuned"):
        run_node_benchmark(data, dataset="karate", model="gcn", compare="dgl")
    with pytest.raises(InputError, match="warmup_epochs must be an integer >= 0, got -1"):
        run_node_benchmark(data, dataset="karate", model="gcn", warmup_epochs=-1)
    with pytest.raises(InputError, match="--distributed trains on mini-batches"):
        run_node_benchmark(data, dataset="karate", model="gcn", distributed=True)
    if not torch.cuda.is_available():
        with pytest.raises(
            InputError, match="--device 'cuda': CUDA is not available on this machine; use cpu"
        ):
            run_node_benchmark(data, dataset="karate", model="gcn", device="cuda")
    with pytest.raises(InputError, match="--device must be cpu, cuda or cuda:N, got 'gpu'"):
        run_node_benchmark(data, dataset="karate", model="gcn", device="gpu")


def test_release_free_memory_returns_freed_heap_pages():
    import platform

    from gnnkit.utils.memory import release_free_memory
    from gnnkit.utils.timing import current_rss

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("malloc_trim is glibc's")
    chunks = [bytearray(64 * 1024) for _ in range(1000)]  # heap chunks, below mmap's threshold
    del chunks[::2]  # free every other one: the live ones keep the heap from shrinking
    before = current_rss()
    assert release_free_memory() is True
    assert before - current_rss() > 16 * 1024 * 1024  # most of the freed 32 MiB went back


def test_warmup_defaults_to_the_one_definition_per_mode(tmp_path):
    from gnnkit.bench.node import WARMUP_EPOCHS, default_warmup_epochs
    from gnnkit.train.minibatch import SamplingConfig

    assert default_warmup_epochs() == WARMUP_EPOCHS["full-batch"] == 5
    assert default_warmup_epochs(SamplingConfig(fanouts=(2, 2))) == WARMUP_EPOCHS["mini-batch"]
    out = tmp_path / "w.json"
    argv = ["bench", "node", "--dataset", "karate", "--no-progress", "--runs", "1", "--epochs", "1"]
    assert main([*argv, "--json", str(out)]) == 0
    assert json.loads(out.read_text())["options"]["warmup"] == WARMUP_EPOCHS["full-batch"]
    assert main([*argv, "--mini-batch", "--json", str(out), "--overwrite"]) == 0
    assert json.loads(out.read_text())["options"]["warmup"] == WARMUP_EPOCHS["mini-batch"]


def test_bench_help_lists_node(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    assert "node" in capsys.readouterr().out


def test_speed_and_spread_are_phrased_for_what_they_are():
    from gnnkit.bench.harness import mean_std_text, speed_text

    assert speed_text(2.5) == "2.5 x faster" and speed_text(0.5) == "2.0 x slower"
    assert speed_text(1.0) == "1.0 x faster" and speed_text(0.8, ".2f") == "1.25 x slower"
    assert mean_std_text(81.7, 0.8, 20, ".1f", " %") == "81.7 +- 0.8 %"
    assert mean_std_text(81.7, 0.0, 1, ".1f", " %") == "81.7 %"  # one run has no spread


def test_protocol_paper_is_accepted_and_recorded(tmp_path, capsys):
    out, default, plain = tmp_path / "p.json", tmp_path / "d.json", tmp_path / "n.json"
    base = [*KARATE, "--model", "gat", "--runs", "2", "--epochs", "150"]
    assert main([*base, "--protocol", "paper", "--json", str(out)]) == 0
    assert "GAT on karate (velickovic protocol: stops early): 2 run(s)" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["options"]["protocol"] == "paper"
    assert result["options"]["paper_protocol"] == "velickovic"
    block = result["gnnkit"]
    assert 1 <= block["best_epoch_median"] <= block["epochs_run_median"] <= 150
    # --protocol default is today's protocol: the same numbers as no option at all
    assert main([*base, "--protocol", "default", "--json", str(default)]) == 0
    assert main([*base, "--json", str(plain)]) == 0
    a, b = json.loads(default.read_text()), json.loads(plain.read_text())
    assert (
        a["gnnkit"]["test_acc"] == b["gnnkit"]["test_acc"]
        and a["options"]["paper_protocol"] is None
    )


def per_layer(given: str, count: int, layers: int, example: str) -> str:
    return (
        f"--fanouts {given}: {count} fan-out(s) for a model with {layers} message-passing "
        f"layer(s); give one fan-out per layer, e.g. --fanouts {example}"
    )


@pytest.mark.parametrize(
    ("model", "fanouts", "message"),
    [
        ("gcn", ["5"], per_layer("5", 1, 2, "10 10")),
        ("gcn", ["5", "5", "5", "5"], per_layer("5 5 5 5", 4, 2, "10 10")),
        ("gat", ["-1", "3", "3"], per_layer("-1 3 3", 3, 2, "10 10")),
        ("arxiv-gcn", ["4", "4"], per_layer("4 4", 2, 3, "15 10 5")),
    ],
)
def test_fanouts_not_one_per_layer_are_refused_before_loading(
    model, fanouts, message, monkeypatch, capsys
):
    def no_loading(*args, **kwargs):
        raise AssertionError("the dataset was loaded before the options were checked")

    monkeypatch.setattr("gnnkit.data.load", no_loading)
    argv = [*KARATE, "--model", model, "--runs", "1", "--epochs", "2", "--mini-batch", "--fanouts", *fanouts]  # fmt: skip
    assert main(argv) == 2
    assert capsys.readouterr().err == f"gnnkit: error: {message}\n"


def test_fanouts_one_per_layer_train(capsys):
    argv = [*KARATE, "--model", "gcn", "--runs", "1", "--epochs", "2", "--mini-batch", "--fanouts", "5", "-1"]  # fmt: skip
    assert main(argv) == 0
    assert "mini-batch, fan-outs 5,-1" in capsys.readouterr().out


def test_checkpoint_every_needs_checkpoint_dir(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = [*KARATE, "--runs", "1", "--epochs", "2", "--checkpoint-every", "2"]
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        "gnnkit: error: --checkpoint-every needs --checkpoint-dir (the folder the checkpoints "
        "go to)\n"
    )
    assert not list(tmp_path.iterdir())  # nothing trained, nothing written
