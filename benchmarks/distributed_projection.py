"""The ogbn-papers100M projection of ``benchmarks/distributed.py``, and the published runs it is
set beside.

Pure arithmetic on a fitted halo fraction h(P) = a P^b (total halo rows / |V| of METIS parts):
per-machine memory, bytes received per epoch and the communication time at a link rate, for a
given model shape; and :data:`PUBLISHED`, the full-batch papers100M runs it is compared with,
each with the source it comes from.
"""

from __future__ import annotations

import math


def fit_power_law(points: dict[str, float]) -> tuple[float, float]:
    """Least squares of log h = log a + b log P: returns (a, b)."""
    xs = [math.log(int(p)) for p in points]
    ys = [math.log(max(v, 1e-9)) for v in points.values()]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )
    return math.exp(my - b * mx), b


def project_papers100m(
    a: float,
    b: float,
    parts: tuple[int, ...] = (16, 64, 256),
    widths: tuple[int, ...] = (256, 172),
    link_gbps: float = 100.0,
) -> list[dict[str, float]]:
    """Per-machine memory, bytes and communication time of ogbn-papers100M on P machines.

    ``widths`` are the layers' output widths (each layer exchanges its transformed halo rows);
    the default is a two-layer GCN of hidden width 256.
    """
    nodes, edges, features = 111_059_956, 1_615_685_872, 128
    directed = 2 * edges + nodes  # symmetrised, plus self-loops
    rows = []
    for p in parts:
        h = min(a * p**b, p - 1)  # total halo / |V|; at most every other part's nodes
        local, halo = nodes / p, h * nodes / p
        graph = directed / p * 4 + (local + 1) * 8 + (local + halo) * 8  # col, rowptr, norm
        feats = local * (features + 1) * 4  # features and labels (float32 / int32)
        acts = (local + halo) * sum(widths) * 4 * 3  # layer outputs, halos, grads
        sent = 2 * halo * sum(widths) * 4  # forward rows + backward gradient rows
        rows.append(
            {
                "P": p,
                "halo_fraction": h,
                "memory_gb": (graph + feats + acts) / 1e9,
                "bytes_per_epoch_gb": sent / 1e9,
                "comm_s_at_100gbps": sent / 12.5e9,
                "link_gbps": link_gbps,
                "comm_s": sent / (link_gbps / 8 * 1e9),
            }
        )
    return rows


#: Published full-batch ogbn-papers100M runs, set beside this scheme's projection for the same
#: model shape and machine count. ``widths``: the layers' output widths (halo rows exchanged).
PUBLISHED = [
    {
        "system": "DistGNN cd-0 (Md et al., SC'21, arXiv 2104.06700)",
        "model": "GraphSAGE, 4 layers, hidden 64, 200 epochs",
        "widths": (64, 64, 64, 172),
        "machines": (32, 64, 128),
        "link_gbps": 100.0,
        "published": "epoch time not found (notes); abstract: up to 97x over DGL on one "
        "socket, at 128 sockets (best of its 4 datasets)",
        "source": "model and socket counts: dmlc/dgl examples/pytorch/graphsage/experimental/"
        "dist_ogbn_papers.sh and train_dist_sym_ogbn-papers.py (DistGNN's code, DGL PR 3381)",
    },
    {
        "system": "SAR (Mostafa, MLSys'22, arXiv 2111.06483)",
        "model": "GraphSAGE, 3 layers, hidden 256, batch norm",
        "widths": (256, 256, 172),
        "machines": (128,),
        "link_gbps": 200.0,
        "published": "3.8 s per epoch at 128 machines (2 Icelake sockets each, HDR 200 Gb/s)",
        "source": "IntelLabs/SAR README, 'Full-batch training Performance on ogbn-papers100M'",
    },
]


def compare_published(a: float, b: float) -> list[dict]:
    """This scheme's projection for every published configuration in :data:`PUBLISHED`."""
    rows = []
    for entry in PUBLISHED:
        for row in project_papers100m(a, b, entry["machines"], entry["widths"], entry["link_gbps"]):
            rows.append({**{k: v for k, v in entry.items() if k != "machines"}, **row})
    return rows
