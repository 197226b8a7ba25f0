"""Partition-parallel training equals single-process full-batch training (issue 20).

P = 2 and P = 4 gloo processes train GCN and GAT on their shards of Cora and of a synthetic
power-law graph; the reference, written here, trains gnnkit's own full-graph
:class:`gnnkit.nn.GCNConv` / :class:`gnnkit.nn.GATConv` (PyG-compatible layers, a different code
path: self-loops, normalisation and attention computed on the whole graph) with the same
initial parameters and the same global-id dropout masks. Losses, gradients and parameters
must agree to 1e-5 (float64). Each P is one spawn that runs every case, to keep the file fast.
"""

from __future__ import annotations

import traceback
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from gnnkit.distributed import (
    PartitionConfig,
    PartitionTask,
    build_model,
    fit_partitioned,
    load_shard,
    metis_available,
    node_dropout,
    partition_dataset,
)
from gnnkit.distributed.synthetic import power_law_graph
from gnnkit.nn import GATConv, GCNConv

EPOCHS = 3
TOL = 1e-5
CASES = [
    ("gcn", PartitionConfig(model="gcn", epochs=EPOCHS, dtype="float64", seed=3)),
    ("gat", PartitionConfig(model="gat", epochs=EPOCHS, dtype="float64", seed=4, heads=2)),
]


# -- the reference: full graph, one process ------------------------------------------------


class Reference(nn.Module):
    def __init__(self, config: PartitionConfig, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.config = config
        if config.model == "gcn":
            self.conv1 = GCNConv(in_channels, config.hidden)
            self.conv2 = GCNConv(config.hidden, num_classes)
        else:
            self.conv1 = GATConv(in_channels, config.hidden, heads=config.heads)
            self.conv2 = GATConv(config.hidden * config.heads, num_classes, concat=False)

    def forward(self, x, edge_index, step):
        ids, p, seed = torch.arange(x.size(0)), self.config.dropout, self.config.seed
        act = F.relu if self.config.model == "gcn" else F.elu
        x = node_dropout(x, ids, p, seed=seed, step=step, layer=0, training=self.training)
        x = act(self.conv1(x, edge_index))
        x = node_dropout(x, ids, p, seed=seed, step=step, layer=1, training=self.training)
        return self.conv2(x, edge_index)


def reference_run(data, config: PartitionConfig) -> dict:
    x = data.x.double()
    model = Reference(config, x.size(1), int(data.num_classes)).double()
    start = build_model(config, x.size(1), int(data.num_classes))
    model.load_state_dict(start.state_dict())
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    losses = []
    for epoch in range(1, config.epochs + 1):
        model.train()
        opt.zero_grad()
        out = model(x, data.edge_index, epoch)
        loss = F.cross_entropy(out[data.train_mask], data.y[data.train_mask])
        loss.backward()
        grads = {k: p.grad.clone() for k, p in model.named_parameters()}
        opt.step()
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        pred = model(x, data.edge_index, 0).argmax(-1)
    acc = {s: (pred == data.y)[data[f"{s}_mask"]].double().mean().item() for s in ("val", "test")}
    return {"losses": losses, "grads": grads, "params": dict(model.state_dict()), "acc": acc}


# -- the partitioned runs: one process per part --------------------------------------------


def _worker(rank: int, world: int, init_file: str, folders: list[str], out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    try:
        dist.init_process_group(
            "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world
        )
        results = {}
        for folder in folders:
            for name, config in CASES:
                shard, manifest = load_shard(folder, rank, num_parts=world)
                totals = {s: manifest["split_sizes"][s] for s in ("train", "val", "test")}
                task = PartitionTask(shard, totals, config, manifest["num_classes"])
                losses = [task.train_epoch(e)["loss"] for e in range(1, EPOCHS + 1)]
                grads = {k: p.grad.clone() for k, p in task.model.named_parameters()}
                params = dict(task.model.state_dict())
                metrics = task.evaluate(0)
                results[f"{Path(folder).name}/{name}"] = {
                    "losses": losses,
                    "grads": grads,
                    "params": params,
                    "metrics": metrics,
                }
        engine = fit_partitioned(folders[-1], CASES[0][1])  # the same through the engine
        results["engine"] = {"best": engine["best"], "num_halo": engine["num_halo"]}
        torch.save(results, Path(out) / f"rank{rank}.pt")
        dist.destroy_process_group()
    except Exception:
        (Path(out) / f"rank{rank}.err").write_text(traceback.format_exc())
        raise


def run_partitioned(tmp_path: Path, folders: list[Path], world: int) -> list[dict]:
    out = tmp_path / f"out{world}"
    out.mkdir()
    args = (world, str(tmp_path / f"init{world}"), [str(f) for f in folders], str(out))
    # fork: the workers inherit the imported modules (spawn would import torch again, ~5 s each)
    mp.start_processes(_worker, args=args, nprocs=world, start_method="fork")
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(world)]


_REFERENCES: dict[str, dict] = {}


def graph_and_references(name: str, dataset):
    """The graph, and its reference runs (computed once for both P)."""
    if name == "cora":
        data = dataset("cora")
    else:
        data = power_law_graph(300, avg_degree=6, num_features=12, num_classes=4, seed=5)
    if name not in _REFERENCES:
        _REFERENCES[name] = {model: reference_run(data, config) for model, config in CASES}
    return data, _REFERENCES[name]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["synthetic", pytest.param("cora", marks=pytest.mark.data)])
@pytest.mark.parametrize("world", [2, 4])
def test_partitioned_training_equals_full_batch(tmp_path, dataset, name, world):
    data, refs = graph_and_references(name, dataset)
    folder = tmp_path / name
    method = "metis" if name == "cora" and metis_available() else "random"
    partition_dataset(data, folder, world, dataset=name, method=method)
    results = run_partitioned(tmp_path, [folder], world)
    for model, _ in CASES:
        ref = refs[model]
        for rank, result in enumerate(results):
            got = result[f"{name}/{model}"]
            where = f"{name} {model} P={world} rank {rank}"
            assert got["losses"] == pytest.approx(ref["losses"], abs=TOL), where
            for key, value in ref["grads"].items():
                assert torch.allclose(got["grads"][key], value, atol=TOL), f"{where} grad {key}"
            for key, value in ref["params"].items():
                assert torch.allclose(got["params"][key], value, atol=TOL), f"{where} {key}"
            for split in ("val", "test"):
                assert got["metrics"][f"{split}_acc"] == pytest.approx(ref["acc"][split])
    # the engine's run: the same selection on every rank, and every rank has a halo
    assert len({str(r["engine"]["best"]) for r in results}) == 1
    assert all(r["engine"]["num_halo"] > 0 for r in results)
