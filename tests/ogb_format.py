"""Write tiny datasets in OGB's raw on-disk format (for loaders of data that is not offline).

The layout follows what the ``ogb`` package reads: ``<root>/ogb/<dir>/RELEASE_v1.txt``,
``raw/*.csv.gz`` (no header, one row per node / edge / graph) and ``split/<type>/*.csv.gz``.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np


def write_csv_gz(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.asarray(rows)
    if array.ndim == 1:
        array = array[:, None]
    with gzip.open(path, "wt") as handle:
        for row in array:
            handle.write(",".join(str(v) for v in row.tolist()) + "\n")


def write_ogbn_arxiv(
    root: Path, num_nodes: int = 60, num_edges: int = 200, num_features: int = 8, seed: int = 0
) -> dict:
    """A small ogbn-arxiv lookalike; returns the arrays written (edges as (E, 2), split indices)."""
    rng = np.random.default_rng(seed)
    base = root / "ogb" / "ogbn_arxiv"
    edges = rng.integers(0, num_nodes, size=(num_edges, 2))
    features = rng.normal(size=(num_nodes, num_features)).round(4)
    labels = rng.integers(0, 40, size=num_nodes)
    years = rng.integers(2010, 2021, size=num_nodes)
    order = rng.permutation(num_nodes)
    split = {
        "train": np.sort(order[: num_nodes // 2]),
        "valid": np.sort(order[num_nodes // 2 : 3 * num_nodes // 4]),
        "test": np.sort(order[3 * num_nodes // 4 :]),
    }
    (base).mkdir(parents=True, exist_ok=True)
    (base / "RELEASE_v1.txt").write_text("# Release note\n")
    write_csv_gz(base / "raw" / "edge.csv.gz", edges)
    write_csv_gz(base / "raw" / "node-feat.csv.gz", features)
    write_csv_gz(base / "raw" / "node-label.csv.gz", labels)
    write_csv_gz(base / "raw" / "node_year.csv.gz", years)
    write_csv_gz(base / "raw" / "num-node-list.csv.gz", [num_nodes])
    write_csv_gz(base / "raw" / "num-edge-list.csv.gz", [num_edges])
    for name, index in split.items():
        write_csv_gz(base / "split" / "time" / f"{name}.csv.gz", index)
    return {"edges": edges, "features": features, "labels": labels, "split": split}


def write_ogbg_mol(
    root: Path, name: str = "ogbg-molhiv", num_graphs: int = 12, seed: int = 0
) -> dict:
    """Small molecule-like graphs with 9 atom and 3 bond features, one binary label each."""
    rng = np.random.default_rng(seed)
    base = root / "ogb" / name.replace("-", "_")
    node_counts = rng.integers(3, 8, size=num_graphs)
    edge_rows, edge_feats, node_feats, edge_counts = [], [], [], []
    for n in node_counts:
        # a path plus one chord: undirected edges listed once (ogb adds the inverse edges)
        pairs = [(i, i + 1) for i in range(n - 1)] + [(0, n - 1)]
        edge_rows += pairs
        edge_counts.append(len(pairs))
        edge_feats += rng.integers(0, 3, size=(len(pairs), 3)).tolist()
        node_feats += rng.integers(0, 5, size=(n, 9)).tolist()
    labels = rng.integers(0, 2, size=num_graphs)
    base.mkdir(parents=True, exist_ok=True)
    (base / "RELEASE_v1.txt").write_text("# Release note\n")
    write_csv_gz(base / "raw" / "edge.csv.gz", edge_rows)
    write_csv_gz(base / "raw" / "edge-feat.csv.gz", edge_feats)
    write_csv_gz(base / "raw" / "node-feat.csv.gz", node_feats)
    write_csv_gz(base / "raw" / "graph-label.csv.gz", labels)
    write_csv_gz(base / "raw" / "num-node-list.csv.gz", node_counts)
    write_csv_gz(base / "raw" / "num-edge-list.csv.gz", edge_counts)
    order = rng.permutation(num_graphs)
    split = {
        "train": order[: num_graphs // 2],
        "valid": order[num_graphs // 2 : 3 * num_graphs // 4],
        "test": order[3 * num_graphs // 4 :],
    }
    for part, index in split.items():
        write_csv_gz(base / "split" / "scaffold" / f"{part}.csv.gz", index)
    return {
        "node_counts": node_counts,
        "edge_counts": edge_counts,
        "labels": labels,
        "split": split,
    }


def fold_into_ogb_vocabularies(root: Path, name: str) -> None:
    """Fold the atom and bond features :func:`write_ogbg_mol` wrote into OGB's vocabularies.

    (``write_ogbg_mol`` draws every feature from 0..4 and 0..2; OGB's encoders accept fewer
    values for some features, e.g. 2 for "is in ring".)
    """
    from ogb.utils.features import get_atom_feature_dims, get_bond_feature_dims

    raw = root / "ogb" / name.replace("-", "_") / "raw"
    for stem, dims in (
        ("node-feat", get_atom_feature_dims()),
        ("edge-feat", get_bond_feature_dims()),
    ):
        with gzip.open(raw / f"{stem}.csv.gz", "rt") as handle:
            rows = np.loadtxt(handle, delimiter=",", dtype=np.int64, ndmin=2)
        write_csv_gz(raw / f"{stem}.csv.gz", rows % np.asarray(dims))
