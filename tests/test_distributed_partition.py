"""Partition-parallel training equals single-process full-batch training (issue 20).

P = 2 and P = 4 gloo processes train GCN and GAT on their shards of Cora and of a synthetic
power-law graph; the reference, written here, trains on the whole graph in one process with
the same initial parameters and the same global-id dropout masks: gnnkit's own full-graph
:class:`gnnkit.nn.GCNConv` (a PyG-compatible layer, a different code path: self-loops and
normalisation computed on the whole graph) for GCN, and for GAT a layer written here on the
global edge list with PyG's ``softmax`` and ``index_add_``, whose attention dropout draws the
mask of every (global edge id, head) with :func:`gnnkit.distributed.keep_mask` (checked
against :class:`gnnkit.nn.GATConv` and PyG's ``GATConv`` without attention dropout). Losses,
gradients and parameters must agree to 1e-5 (float64). Each P is one spawn that runs every
case, to keep the file fast.
"""

from __future__ import annotations

import traceback
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import GATConv as PyGGATConv
from torch_geometric.utils import softmax

from gnnkit.distributed import (
    ATTENTION_STREAM,
    PartitionConfig,
    PartitionTask,
    build_model,
    fit_partitioned,
    global_edges,
    keep_mask,
    load_shard,
    metis_available,
    node_dropout,
    partition_dataset,
)
from gnnkit.distributed.synthetic import power_law_graph
from gnnkit.errors import InputError
from gnnkit.nn import GATConv, GCNConv

EPOCHS = 3
TOL = 1e-5
CASES = [
    ("gcn", PartitionConfig(model="gcn", epochs=EPOCHS, dtype="float64", seed=3)),
    # feature dropout 0.6 and attention dropout 0.5, both keyed by global ids
    (
        "gat",
        PartitionConfig(
            model="gat", epochs=EPOCHS, dtype="float64", seed=4, heads=2, attention_dropout=0.5
        ),
    ),
]


# -- the reference: full graph, one process ------------------------------------------------


class EdgeListGAT(nn.Module):
    """Velickovic et al.'s layer on the whole graph's edge list (self-loops included), with
    attention dropout keyed by (global edge id, head)."""

    def __init__(self, in_channels, out_channels, heads, concat, dropout):
        super().__init__()
        self.heads, self.out_channels, self.concat, self.dropout = (
            heads, out_channels, concat, dropout,
        )  # fmt: skip
        self.lin = nn.Linear(in_channels, heads * out_channels, bias=False)
        self.att_src = nn.Parameter(torch.zeros(1, heads, out_channels))
        self.att_dst = nn.Parameter(torch.zeros(1, heads, out_channels))
        self.bias = nn.Parameter(torch.zeros(heads * out_channels if concat else out_channels))

    def forward(self, x, edges, *, seed=0, step=0, layer=0):
        n, H, C = x.size(0), self.heads, self.out_channels
        src, dst = edges
        h = self.lin(x).view(n, H, C)
        scores = (h * self.att_src).sum(-1)[src] + (h * self.att_dst).sum(-1)[dst]  # (E, H)
        alpha = softmax(F.leaky_relu(scores, 0.2), dst, num_nodes=n)
        if self.training and self.dropout > 0:
            ids = torch.arange(src.numel())  # global edge id = position in global_edges
            keep = keep_mask(
                ids, H, self.dropout, seed=seed, step=step, layer=layer + ATTENTION_STREAM
            )
            alpha = alpha * keep / (1 - self.dropout)
        out = torch.zeros(n, H, C, dtype=h.dtype).index_add_(0, dst, h[src] * alpha[..., None])
        out = out.reshape(n, H * C) if self.concat else out.mean(1)
        return out + self.bias


class Reference(nn.Module):
    def __init__(self, config: PartitionConfig, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.config = config
        if config.model == "gcn":
            self.conv1 = GCNConv(in_channels, config.hidden)
            self.conv2 = GCNConv(config.hidden, num_classes)
        else:
            H, att = config.heads, config.attention_dropout
            self.conv1 = EdgeListGAT(in_channels, config.hidden, H, True, att)
            self.conv2 = EdgeListGAT(config.hidden * H, num_classes, 1, False, att)

    def forward(self, x, edge_index, step):
        ids, p, seed = torch.arange(x.size(0)), self.config.dropout, self.config.seed
        x = node_dropout(x, ids, p, seed=seed, step=step, layer=0, training=self.training)
        if self.config.model == "gcn":
            x = F.relu(self.conv1(x, edge_index))
            x = node_dropout(x, ids, p, seed=seed, step=step, layer=1, training=self.training)
            return self.conv2(x, edge_index)
        edges = global_edges(edge_index, x.size(0))
        x = F.elu(self.conv1(x, edges, seed=seed, step=step, layer=0))
        x = node_dropout(x, ids, p, seed=seed, step=step, layer=1, training=self.training)
        return self.conv2(x, edges, seed=seed, step=step, layer=1)


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


# -- single process: the reference's GAT, the edge ids, one part ---------------------------


def _small_graph():
    data = power_law_graph(120, avg_degree=5, num_features=6, num_classes=3, seed=2)
    # a self-loop and a parallel edge: global_edges drops the first and keeps the second
    extra = torch.tensor([[4, 7], [4, 9]])
    data.edge_index = torch.cat([data.edge_index, extra, data.edge_index[:, :1]], 1)
    return data


@pytest.mark.parametrize("concat", [True, False])
def test_the_reference_gat_equals_gnnkit_and_pyg_without_attention_dropout(concat):
    data = _small_graph()
    x = data.x.double()
    torch.manual_seed(0)
    ref = EdgeListGAT(6, 5, 3, concat, 0.0).double()
    for p in ref.parameters():
        torch.nn.init.normal_(p)
    edges = global_edges(data.edge_index, data.num_nodes)
    want = ref(x, edges)
    for layer in (GATConv(6, 5, heads=3, concat=concat), PyGGATConv(6, 5, heads=3, concat=concat)):
        layer = layer.double()
        layer.load_state_dict(ref.state_dict())
        assert torch.allclose(layer(x, data.edge_index), want, atol=1e-10)


def test_every_edge_has_one_global_id_that_names_its_ends(tmp_path):
    data = _small_graph()
    edges = global_edges(data.edge_index, data.num_nodes)
    partition_dataset(data, tmp_path, 3, dataset="g", method="random")
    seen = []
    for part in range(3):
        shard, _ = load_shard(tmp_path, part, num_parts=3)
        columns = torch.cat([shard["node_ids"], shard["halo_ids"]])
        rows = torch.repeat_interleave(shard["node_ids"], shard["rowptr"].diff())
        ids = shard["edge_ids"]
        assert torch.equal(edges[0, ids], columns[shard["col"]])
        assert torch.equal(edges[1, ids], rows)
        seen.append(ids)
    assert torch.equal(torch.sort(torch.cat(seen)).values, torch.arange(edges.size(1)))


def test_one_part_gat_with_attention_dropout_equals_the_reference(tmp_path):
    data = _small_graph()
    config = PartitionConfig(
        model="gat", epochs=2, dtype="float64", seed=1, heads=2, attention_dropout=0.5
    )
    partition_dataset(data, tmp_path, 1, dataset="g", method="contiguous")
    shard, manifest = load_shard(tmp_path, 0, num_parts=1)
    totals = {s: manifest["split_sizes"][s] for s in ("train", "val", "test")}
    task = PartitionTask(shard, totals, config, manifest["num_classes"])
    losses = [task.train_epoch(e)["loss"] for e in (1, 2)]
    ref = reference_run(data, config)
    assert losses == pytest.approx(ref["losses"], abs=TOL)
    for key, value in ref["params"].items():
        assert torch.allclose(task.model.state_dict()[key], value, atol=TOL), key
    # the attention masks do drop something: without them the losses differ
    plain = reference_run(data, PartitionConfig(**{**config.__dict__, "attention_dropout": 0.0}))
    assert abs(plain["losses"][1] - ref["losses"][1]) > 1e-4


def test_shards_cut_before_edge_ids_are_refused(tmp_path):
    import json

    partition_dataset(_small_graph(), tmp_path, 1, dataset="g", method="contiguous")
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    (tmp_path / "manifest.json").write_text(
        json.dumps({**manifest, "format": "gnnkit.partition/1"})
    )
    with pytest.raises(InputError, match=r"has format 'gnnkit\.partition/1'.*cut the shards again"):
        load_shard(tmp_path, 0)
