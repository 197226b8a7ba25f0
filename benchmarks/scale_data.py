"""The synthetic data of ``benchmarks/scale.py``: power-law graphs at ogbn-arxiv's size and
edge/node ratio, a node task a graph model can learn on them, and an ogbn-arxiv-shaped dataset
in OGB's raw on-disk format (so that ``gnnkit bench node --dataset ogbn-arxiv`` runs offline).

The graphs are Chung-Lu graphs (Chung & Lu, "Connected components in random graphs with given
expected degree sequences", Annals of Combinatorics 6, 2002) with a power-law degree
exponent, as in real citation graphs.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

#: ogbn-arxiv's size (Hu et al., "Open Graph Benchmark", arXiv 2005.00687).
ARXIV_NODES, ARXIV_EDGES, ARXIV_FEATURES, ARXIV_CLASSES = 169_343, 1_166_243, 128, 40
TRAIN_FRACTION = 0.54  # ogbn-arxiv: 90,941 of 169,343 nodes train


def nodes_for(edges: int) -> int:
    """Nodes of a graph with ``edges`` edges at ogbn-arxiv's edge/node ratio."""
    return max(2, round(edges * ARXIV_NODES / ARXIV_EDGES))


def power_law_graph(
    num_nodes: int, num_edges: int, *, gamma: float = 2.5, seed: int = 0
) -> torch.Tensor:
    """A directed Chung-Lu graph: both endpoints drawn with weight ``rank^(-1/(gamma-1))``.

    Expected degrees follow a power law with exponent ``gamma``; node ids are shuffled so that
    degree does not follow id. Multi-edges and self-loops may occur (each counted).
    """
    generator = torch.Generator().manual_seed(seed)
    weights = torch.arange(1, num_nodes + 1, dtype=torch.float64).pow(-1.0 / (gamma - 1.0))
    ends = torch.multinomial(weights, 2 * num_edges, replacement=True, generator=generator)
    relabel = torch.randperm(num_nodes, generator=generator)
    return relabel[ends].view(2, num_edges)


def node_task(
    num_nodes: int, num_edges: int, channels: int, classes: int, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Features, a power-law graph, labels a GCN can learn, and 54 / 23 / 23 % splits.

    The label of a node is the argmax of a fixed random linear map of the mean features of
    its closed neighbourhood in the symmetrised graph, plus noise. A graph model can learn it,
    so accuracy above chance shows that training works; it means nothing more.
    """
    generator = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(num_nodes, channels, generator=generator)
    edge_index = power_law_graph(num_nodes, num_edges, seed=seed)
    src = torch.cat([edge_index[0], edge_index[1]])
    dst = torch.cat([edge_index[1], edge_index[0]])
    degree = torch.bincount(dst, minlength=num_nodes).add_(1).unsqueeze(1)
    mean = x.clone().index_add_(0, dst, x[src]).div_(degree)  # (N, F) closed-neighbourhood mean
    logits = mean @ torch.randn(channels, classes, generator=generator)
    logits = logits / logits.std() + 0.3 * torch.randn(num_nodes, classes, generator=generator)
    y = logits.argmax(dim=1)
    order = torch.randperm(num_nodes, generator=generator)
    cut_train = int(TRAIN_FRACTION * num_nodes)
    cut_val = cut_train + (num_nodes - cut_train) // 2
    return {
        "x": x,
        "edge_index": edge_index,
        "y": y,
        "train": order[:cut_train].sort().values,
        "valid": order[cut_train:cut_val].sort().values,
        "test": order[cut_val:].sort().values,
    }


def _write_csv_gz(path: Path, array: np.ndarray, fmt: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", compresslevel=1) as handle:
        np.savetxt(handle, array if array.ndim == 2 else array[:, None], fmt=fmt, delimiter=",")


def write_arxiv_like(root: Path, nodes: int, edges: int, seed: int = 0) -> dict[str, int]:
    """An ogbn-arxiv-shaped dataset in OGB's raw format under ``root/ogb/ogbn_arxiv``."""
    task = node_task(nodes, edges, ARXIV_FEATURES, ARXIV_CLASSES, seed=seed)
    base = root / "ogb" / "ogbn_arxiv"
    base.mkdir(parents=True, exist_ok=True)
    (base / "RELEASE_v1.txt").write_text("# Release note\n")
    raw = base / "raw"
    _write_csv_gz(raw / "edge.csv.gz", task["edge_index"].t().numpy(), "%d")
    _write_csv_gz(raw / "node-feat.csv.gz", task["x"].numpy(), "%.4f")
    _write_csv_gz(raw / "node-label.csv.gz", task["y"].numpy(), "%d")
    _write_csv_gz(raw / "node_year.csv.gz", np.full(nodes, 2020), "%d")
    _write_csv_gz(raw / "num-node-list.csv.gz", np.array([nodes]), "%d")
    _write_csv_gz(raw / "num-edge-list.csv.gz", np.array([edges]), "%d")
    for part in ("train", "valid", "test"):
        _write_csv_gz(base / "split" / "time" / f"{part}.csv.gz", task[part].numpy(), "%d")
    return {part: int(task[part].numel()) for part in ("train", "valid", "test")}
