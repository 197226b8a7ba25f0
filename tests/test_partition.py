"""Partitions, shards and their folders (issue 20): checked against the whole graph."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.utils import degree

from gnnkit.cli import main as cli_main
from gnnkit.distributed import (
    PartitionGraph,
    build_shards,
    exchange_halo,
    halo_sizes,
    keep_mask,
    load_shard,
    metis_available,
    node_dropout,
    partition_dataset,
    partition_nodes,
    read_manifest,
)
from gnnkit.distributed import partition as partition_module
from gnnkit.distributed.synthetic import power_law_graph
from gnnkit.errors import CheckpointError, ChecksumError, InputError, OutputError


@pytest.fixture(scope="module")
def graph():
    return power_law_graph(400, avg_degree=6, num_features=5, num_classes=3, seed=2)


def tiny() -> Data:
    # 0 -> 1, 1 -> 2, 2 -> 0, 3 -> 0, 1 -> 3 and a self-loop 2 -> 2 (dropped, then re-added)
    edge_index = torch.tensor([[0, 1, 2, 3, 1, 2], [1, 2, 0, 0, 3, 2]])
    mask = torch.tensor([True, False, True, False])
    return Data(
        x=torch.arange(8.0).view(4, 2),
        y=torch.tensor([0, 1, 0, 1]),
        edge_index=edge_index,
        train_mask=mask,
        val_mask=~mask,
        test_mask=~mask,
        num_nodes=4,
    )


@pytest.mark.parametrize("method", ["metis", "random", "contiguous"])
def test_every_method_assigns_every_node_to_a_part_in_balance(graph, method):
    if method == "metis" and not metis_available():
        pytest.skip("pymetis is not installed")
    parts = partition_nodes(graph.edge_index, graph.num_nodes, 4, method=method, seed=1)
    sizes = torch.bincount(parts, minlength=4)
    assert parts.shape == (graph.num_nodes,) and sizes.sum() == graph.num_nodes
    assert sizes.min() >= 0.8 * graph.num_nodes / 4
    again = partition_nodes(graph.edge_index, graph.num_nodes, 4, method=method, seed=1)
    assert torch.equal(parts, again)  # deterministic for a seed


@pytest.mark.skipif(not metis_available(), reason="pymetis is not installed")
def test_metis_halo_is_less_than_half_of_randoms_on_a_graph_with_communities(graph):
    metis = partition_nodes(graph.edge_index, graph.num_nodes, 4, method="metis")
    rand = partition_nodes(graph.edge_index, graph.num_nodes, 4, method="random")
    assert sum(halo_sizes(graph.edge_index, metis, 4)) < 0.5 * sum(
        halo_sizes(graph.edge_index, rand, 4)
    )


def test_bad_partition_arguments_are_refused(graph, monkeypatch):
    with pytest.raises(InputError, match="unknown partition method 'spectral'"):
        partition_nodes(graph.edge_index, graph.num_nodes, 2, method="spectral")
    with pytest.raises(InputError, match="num_parts must be between 1 and"):
        partition_nodes(graph.edge_index, graph.num_nodes, 0)
    monkeypatch.setattr(partition_module, "metis_available", lambda: False)
    with pytest.raises(InputError, match="METIS partitions need pymetis"):
        partition_nodes(graph.edge_index, graph.num_nodes, 2, method="metis")


def test_a_tiny_shard_worked_out_on_paper():
    parts = torch.tensor([0, 0, 1, 1])
    s0, s1 = build_shards(tiny(), parts, 2)
    # part 0 owns 0 and 1; into 0: 2, 3 (both remote) and itself; into 1: 0 and itself
    assert s0["node_ids"].tolist() == [0, 1] and s0["halo_ids"].tolist() == [2, 3]
    assert s0["rowptr"].tolist() == [0, 3, 5]
    assert s0["col"].tolist() == [2, 3, 0, 0, 1]  # columns: 0, 1 local; 2 -> 2, 3 -> 3
    # in-degrees with a self-loop: node 0: 3, 1: 2, 2: 2 (1 -> 2 and the loop), 3: 2
    expected = torch.tensor([3.0, 2.0, 2.0, 2.0]).pow(-0.5).double()
    assert torch.allclose(s0["norm"], expected[[0, 1, 2, 3]])
    assert s0["recv_counts"].tolist() == [0, 2]
    # part 1 needs node 1 (1 -> 2, 1 -> 3) from part 0: part 0 sends its local row 1
    assert s0["send_idx"].tolist() == [1] and s0["send_counts"].tolist() == [0, 1]
    assert s1["halo_ids"].tolist() == [1] and s1["send_idx"].tolist() == [0, 1]


def test_shards_together_hold_every_edge_once_with_global_degrees(graph):
    parts = partition_nodes(graph.edge_index, graph.num_nodes, 3, method="random")
    shards = build_shards(graph, parts, 3)
    edges = []
    for shard in shards:
        columns = torch.cat([shard["node_ids"], shard["halo_ids"]])
        rows = torch.repeat_interleave(shard["node_ids"], shard["rowptr"].diff())
        edges.append(torch.stack([columns[shard["col"]], rows]))
        deg = degree(graph.edge_index[1], graph.num_nodes) + 1  # PyG's in-degree, plus the loop
        assert torch.allclose(shard["norm"], deg[columns].double().pow(-0.5))
        assert torch.equal(shard["x"], graph.x[shard["node_ids"]])
    got = torch.cat(edges, 1)
    loops = torch.arange(graph.num_nodes).repeat(2, 1)
    want = torch.cat([graph.edge_index, loops], 1)
    key = lambda e: torch.sort(e[0] * graph.num_nodes + e[1]).values  # noqa: E731
    assert torch.equal(key(got), key(want))
    for p, shard in enumerate(shards):  # what p sends q is q's halo from p, in q's order
        sent = shard["node_ids"][shard["send_idx"]].split(shard["send_counts"].tolist())
        for q, other in enumerate(shards):
            from_p = other["halo_ids"].split(other["recv_counts"].tolist())[p]
            assert torch.equal(sent[q], from_p)


def test_one_part_has_no_halo_and_exchanges_nothing(graph, tmp_path):
    partition_dataset(graph, tmp_path, 1, dataset="g")
    shard, _ = load_shard(tmp_path, 0, num_parts=1, dataset="g")
    part = PartitionGraph(shard)
    assert part.plan.num_halo == 0
    assert exchange_halo(torch.ones(part.num_local, 3), part.plan).shape == (0, 3)


def test_a_shard_folder_refuses_another_launch(graph, tmp_path):
    manifest = partition_dataset(graph, tmp_path, 2, dataset="g", method="contiguous")
    assert manifest["num_parts"] == 2 and len(manifest["shards"]) == 2
    assert manifest["split_sizes"]["train"] == int(graph.train_mask.sum())
    with pytest.raises(InputError, match="holds 2 parts but the job has 4 ranks"):
        load_shard(tmp_path, 0, num_parts=4)
    with pytest.raises(InputError, match="holds shards of 'g', not 'cora'"):
        load_shard(tmp_path, 0, dataset="cora")
    with pytest.raises(InputError, match="part 2 is out of range"):
        load_shard(tmp_path, 2)
    path = tmp_path / "part-00001.pt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="does not match the sha256"):
        load_shard(tmp_path, 1)
    path.unlink()
    with pytest.raises(InputError, match="is missing"):
        load_shard(tmp_path, 1)


def test_a_folder_without_a_valid_manifest_is_refused(tmp_path):
    with pytest.raises(InputError, match="is not a shard folder"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "other/9"}))
    with pytest.raises(InputError, match="has format 'other/9'"):
        read_manifest(tmp_path)


def test_a_shard_that_is_a_pickle_of_code_is_never_executed(graph, tmp_path):
    import hashlib

    partition_dataset(graph, tmp_path, 1, dataset="g")
    path = tmp_path / "part-00000.pt"
    torch.save({"x": torch.zeros(1), "evil": print}, path)
    manifest = read_manifest(tmp_path)
    manifest["shards"][0]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"holds the global print, which gnnkit"):
        load_shard(tmp_path, 0)


def test_dropout_masks_depend_on_the_global_id_only():
    ids = torch.arange(5000)
    full = keep_mask(ids, 40, 0.3, seed=7, step=2, layer=1)
    some = torch.tensor([4999, 3, 1234])
    assert torch.equal(keep_mask(some, 40, 0.3, seed=7, step=2, layer=1), full[some])
    assert abs(full.float().mean().item() - 0.7) < 0.01
    for other in ({"seed": 8, "step": 2, "layer": 1}, {"seed": 7, "step": 3, "layer": 1}):
        assert (keep_mask(ids, 40, 0.3, **other) != full).float().mean() > 0.3
    x = torch.ones(5000, 40)
    out = node_dropout(x, ids, 0.3, seed=7, step=2, layer=1, training=True)
    assert torch.allclose(out, full.float() / 0.7)
    assert node_dropout(x, ids, 0.3, seed=7, step=2, layer=1, training=False) is x
    with pytest.raises(InputError, match=r"dropout p must be in \[0, 1\), got 1.0"):
        node_dropout(x, ids, 1.0, seed=7, step=2, layer=1, training=True)


def test_the_synthetic_graph_is_undirected_without_loops_or_duplicates(graph):
    src, dst = graph.edge_index
    key = src * graph.num_nodes + dst
    assert torch.equal(torch.sort(key).values, torch.sort(dst * graph.num_nodes + src).values)
    assert bool((src != dst).all()) and key.unique().numel() == key.numel()
    with pytest.raises(InputError, match="gamma > 2"):
        power_law_graph(10, gamma=1.5)


def test_the_partition_command_writes_shards(tmp_path, capsys):
    out = tmp_path / "shards"
    argv = ["partition", "--dataset", "synthetic", "--nodes", "300", "--parts", "3"]
    assert cli_main([*argv, "--method", "random", "--out", str(out)]) == 0
    assert "torchrun --nproc-per-node 3 -m gnnkit.distributed" in capsys.readouterr().out
    assert read_manifest(out)["dataset"] == "synthetic-300-0"
    with pytest.raises(SystemExit):
        cli_main([*argv, "--method", "spectral", "--out", str(out)])
    assert "invalid choice: 'spectral'" in capsys.readouterr().err


def test_a_folder_that_holds_shards_is_refused_or_replaced_whole(graph, tmp_path, capsys):
    """Shards are never replaced silently; ``--overwrite`` replaces the whole earlier cut, so
    no part of a 3-part cut is left beside a 2-part one."""
    out = tmp_path / "shards"
    partition_dataset(graph, out, 3, dataset="g", method="contiguous")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(OutputError, match=r"already holds shards \(manifest.json\); pass --overw"):
        partition_dataset(graph, out, 2, dataset="g", method="contiguous")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # untouched
    (out / "manifest.json").unlink()  # an older version's interrupted cut: parts, no manifest
    with pytest.raises(
        OutputError,
        match=r"holds an incomplete cut \(part-00000.pt but no manifest.json, left by an "
        r"interrupted `gnnkit partition`\); pass --overwrite",
    ):
        partition_dataset(graph, out, 2, dataset="g", method="contiguous")
    with pytest.raises(InputError, match=r"not a complete shard folder \(part-00000.pt but no"):
        load_shard(out, 0)  # what torchrun's ranks say of it
    manifest = partition_dataset(graph, out, 2, dataset="g", method="random", overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [
        "manifest.json",
        "part-00000.pt",
        "part-00001.pt",
    ]
    assert manifest["num_parts"] == 2 and manifest["method"] == "random"
    argv = ["partition", "--dataset", "synthetic", "--nodes", "300", "--parts", "2"]
    capsys.readouterr()
    assert cli_main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already holds shards" in err
    assert read_manifest(out)["dataset"] == "g"
    assert cli_main([*argv, "--method", "random", "--out", str(out), "--overwrite"]) == 0
    assert read_manifest(out)["dataset"] == "synthetic-300-0"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--dataset", "karate", "--nodes", "100"],
            "--nodes sets the size of --dataset synthetic only; --dataset karate has its own "
            "nodes: drop --nodes",
        ),
        (
            ["--dataset", "ogbg-molbace"],
            "dataset 'ogbg-molbace' is a graph dataset, not one graph to cut; partition needs a "
            "node dataset (cora, citeseer, pubmed, karate, ogbn-arxiv) or 'synthetic'",
        ),
        (["--dataset", "athar-citations"], "dataset 'athar-citations' is a citation dataset"),
        (["--dataset", "nosuch"], "unknown dataset 'nosuch'; known datasets: cora"),
    ],
)
def test_the_partition_command_refuses_a_dataset_before_loading_it(
    argv, message, tmp_path, monkeypatch, cli_fails
):
    from gnnkit.data import registry

    def load(*args, **kwargs):
        raise AssertionError("the dataset was loaded before it was refused")

    monkeypatch.setattr(registry, "load", load)
    out = tmp_path / "shards"
    cli_fails(["partition", *argv, "--parts", "2", "--out", str(out)], message)
    assert not out.exists()  # nor was the folder claimed


def test_the_partition_command_draws_10000_synthetic_nodes_by_default(tmp_path, capsys):
    out = tmp_path / "shards"
    argv = ["partition", "--dataset", "synthetic", "--parts", "2", "--method", "contiguous"]
    assert cli_main([*argv, "--out", str(out)]) == 0
    manifest = read_manifest(out)
    assert manifest["dataset"] == "synthetic-10000-0" and manifest["num_nodes"] == 10_000


def test_parts_and_edges_outside_their_range_are_refused():
    data, edge_index = tiny(), tiny().edge_index
    # halo_sizes returned one entry per part id it met (6 for 2 parts); build_shards failed in
    # bincount on a negative part and said "got shape (4,)" for the right shape
    for parts, bad in ((torch.tensor([0, 1, 5, 0]), 5), (torch.tensor([0, -1, 1, 0]), -1)):
        match = rf"parts holds part {bad}, out of range for 2 parts \(valid: 0 \.\. 1\); pass"
        with pytest.raises(InputError, match=match):
            halo_sizes(edge_index, parts, 2)
        with pytest.raises(InputError, match=match):
            build_shards(data, parts, 2)
    with pytest.raises(
        InputError, match=r"parts must be an integer tensor of shape \(\|V\|,\) = \(4,\)"
    ):
        build_shards(data, torch.tensor([0, 1]), 2)
    with pytest.raises(
        InputError, match="edge_index names node 3 but parts gives the part of only 2"
    ):
        halo_sizes(edge_index, torch.tensor([0, 1]), 2)
    with pytest.raises(InputError, match=r"integer tensor of shape \(\|V\|,\), one part per node"):
        halo_sizes(edge_index, torch.tensor([0.0, 1.0, 0.0, 1.0]), 2)
    # global_edges kept ids >= num_nodes; partition_nodes cut a graph it did not hold
    with pytest.raises(InputError, match=r"edge_index holds node indices \[4, 5"):
        partition_module.global_edges(edge_index + 2, 4)
    with pytest.raises(InputError, match=r"out of range for num_nodes=4"):
        partition_nodes(edge_index + 2, 4, 2, method="random")
    # the checks pass what they should: halo sizes counted by hand (see the tiny shard test)
    assert halo_sizes(edge_index, torch.tensor([0, 0, 1, 1]), 2) == [2, 1]


def test_partition_graph_and_layers_name_what_is_missing():
    from gnnkit.distributed import (
        PartitionConfig,
        PartitionGAT,
        PartitionGATConv,
        PartitionGCNConv,
        build_model,
    )

    with pytest.raises(InputError, match="the shard lacks the tensors node_ids, halo_ids, rowptr"):
        PartitionGraph({})
    shard = build_shards(tiny(), torch.tensor([0, 0, 1, 1]), 2)[0]
    del shard["norm"]
    with pytest.raises(InputError, match=r"the shard lacks the tensors norm; load it"):
        PartitionGraph(shard)
    with pytest.raises(InputError, match="PartitionGraph expects a shard dict, got list"):
        PartitionGraph([])  # type: ignore[arg-type]
    # GCNConv's rule: positive sizes (0 built a layer without weights)
    with pytest.raises(InputError, match="in_channels must be an integer >= 1, got 0"):
        PartitionGCNConv(0, 2)
    with pytest.raises(InputError, match="heads must be an integer >= 1, got 0"):
        PartitionGATConv(3, 2, heads=0)
    with pytest.raises(InputError, match="hidden_channels must be an integer >= 1, got -1"):
        PartitionGAT(3, -1, 2)
    with pytest.raises(InputError, match="num_classes must be an integer >= 1, got 0"):
        build_model(PartitionConfig(), 3, 0)
    with pytest.raises(InputError, match="build_model expects a PartitionConfig, got dict"):
        build_model({"model": "gcn"}, 3, 2)  # type: ignore[arg-type]
    assert build_model(PartitionConfig(model="gat"), 3, 2).conv1.heads == 8


def _hidden(folder) -> list[str]:
    """The staging folders in ``folder`` and beside it."""
    entries = [*folder.parent.iterdir(), *folder.iterdir()]
    return sorted(p.name for p in entries if p.name.endswith(".gnnkit-tmp"))


@pytest.mark.parametrize("fault", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_cut_that_fails_midway_leaves_the_folder_as_it_was(graph, tmp_path, monkeypatch, fault):
    """A fault while part 3 is written leaves no shard folder at all, or the earlier complete
    cut byte for byte (``overwrite``), and no staging folder."""
    from gnnkit.distributed import shards as shards_module

    save = torch.save
    written = []

    def failing_save(obj, handle, *args, **kwargs):
        if len(written) == 3:
            raise fault
        written.append(handle.name)
        return save(obj, handle, *args, **kwargs)

    out = tmp_path / "cuts" / "shards"
    monkeypatch.setattr(shards_module.torch, "save", failing_save)
    with pytest.raises(type(fault)):
        partition_dataset(graph, out, 5, dataset="g", method="random")
    assert len(written) == 3  # parts 0, 1 and 2 were written, then part 3 failed
    assert not out.exists() and list(out.parent.iterdir()) == []

    monkeypatch.setattr(shards_module.torch, "save", save)
    partition_dataset(graph, out, 4, dataset="earlier", method="contiguous")
    (out / "notes.txt").write_text("mine")  # not a shard: kept through every rewrite
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    written.clear()
    monkeypatch.setattr(shards_module.torch, "save", failing_save)
    with pytest.raises(type(fault)):
        partition_dataset(graph, out, 5, dataset="g", method="random", overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert _hidden(out) == []
    assert read_manifest(out)["dataset"] == "earlier"
    load_shard(out, 3, num_parts=4)  # the checksums still match

    monkeypatch.setattr(shards_module.torch, "save", save)
    partition_dataset(graph, out, 2, dataset="g", method="random", overwrite=True)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["manifest.json", "notes.txt", "part-00000.pt", "part-00001.pt"]
    assert read_manifest(out)["num_parts"] == 2 and _hidden(out) == []
    assert (out / "notes.txt").read_text() == "mine"


def test_a_failed_swap_puts_the_earlier_cut_back(graph, tmp_path, monkeypatch):
    """The earlier cut goes aside only once the new one is complete; a rename that fails while
    the new files come in moves every file back."""
    from gnnkit.distributed import shards as shards_module

    out = tmp_path / "shards"
    partition_dataset(graph, out, 3, dataset="earlier", method="contiguous")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    replace = os.replace
    moves, failed = [], []

    def failing_replace(src, dst):
        if not Path(src).name.startswith("."):  # not atomic_open's temporary files
            moves.append((Path(src).name, Path(dst).parent == out))
        if not failed and Path(dst) == out / "part-00001.pt":  # the new part 1 coming in
            failed.append(dst)
            raise OSError(5, "Input/output error", str(dst))
        return replace(src, dst)

    monkeypatch.setattr(shards_module.os, "replace", failing_replace)
    with pytest.raises(OutputError, match="cannot write shard folder"):
        partition_dataset(graph, out, 2, dataset="g", method="random", overwrite=True)
    monkeypatch.setattr(shards_module.os, "replace", replace)
    # the earlier manifest went aside first, then its parts; then the new part 0 came in
    assert moves[:5] == [
        ("manifest.json", False),
        ("part-00000.pt", False),
        ("part-00001.pt", False),
        ("part-00002.pt", False),
        ("part-00000.pt", True),
    ]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before and _hidden(out) == []
    assert read_manifest(out)["dataset"] == "earlier"


def test_staging_folders_of_killed_cuts_are_removed(graph, tmp_path):
    """A cut killed outright (``kill -9``) leaves its staging folder; the next cut removes it
    (its process no longer runs), and a live process's is kept."""
    import subprocess
    import sys

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    pid = int(dead.stdout)
    out = tmp_path / "shards"
    beside = tmp_path / f".shards.{pid}-abc.gnnkit-tmp"
    live = tmp_path / f".shards.{os.getppid()}-abc.gnnkit-tmp"
    for stage in (beside, live):
        stage.mkdir()
        (stage / "part-00000.pt").write_bytes(b"half")
    partition_dataset(graph, out, 2, dataset="g", method="random")
    assert not beside.exists() and live.exists()
    inside = out / f".cut.{pid}-abc.gnnkit-tmp"
    inside.mkdir()
    partition_dataset(graph, out, 2, dataset="g", method="random", overwrite=True)
    assert not inside.exists() and _hidden(out) == [live.name]


def test_a_real_ctrl_c_leaves_no_partial_cut_and_waits_for_the_swap(graph, tmp_path, monkeypatch):
    """A SIGINT while the parts are written leaves the folder as it was; one while the earlier
    cut goes aside is held back until the new cut is in place."""
    import signal

    from gnnkit.distributed import shards as shards_module

    def interrupt() -> None:
        os.kill(os.getpid(), signal.SIGINT)

    save, saved = torch.save, []

    def save_then_interrupt(obj, handle, *args, **kwargs):
        save(obj, handle, *args, **kwargs)
        saved.append(obj)
        if len(saved) == 3:
            interrupt()

    replace = os.replace

    def replace_then_interrupt(src, dst):
        if Path(src).name == "manifest.json" and Path(dst).parent.name == ".replaced":
            interrupt()
        return replace(src, dst)

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's Ctrl-C
    try:
        out = tmp_path / "shards"
        monkeypatch.setattr(shards_module.torch, "save", save_then_interrupt)
        with pytest.raises(KeyboardInterrupt):
            partition_dataset(graph, out, 4, dataset="g", method="random")
        assert len(saved) == 3 and not out.exists() and list(tmp_path.iterdir()) == []
        monkeypatch.setattr(shards_module.torch, "save", save)
        partition_dataset(graph, out, 3, dataset="earlier", method="contiguous")
        monkeypatch.setattr(shards_module.os, "replace", replace_then_interrupt)
        with pytest.raises(KeyboardInterrupt):
            partition_dataset(graph, out, 4, dataset="g", method="random", overwrite=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert read_manifest(out)["dataset"] == "g" and _hidden(out) == []
    assert sorted(p.name for p in out.iterdir()) == [
        "manifest.json",
        *(f"part-0000{i}.pt" for i in range(4)),
    ]
    load_shard(out, 3, num_parts=4)
