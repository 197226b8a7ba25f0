"""Where an ogbl-ddi training step spends its time: gnnkit's model against OGB's on PyG.

One step of ``gnnkit.train.link``'s loop (OGB's ddi example): encode all 4,267 nodes (two
GCN layers on 2.1 M edges), draw as many negatives as positives with PyG's
``negative_sampling`` (``--negatives device``: gnnkit's ``NegativeSampler``), score the
65,536 + 65,536 pairs with the Hadamard MLP, backward, clip, Adam. Each part is timed separately; the table shows the median over ``--steps``
steps after ``--warmup`` ones, for gnnkit's ``LinkGNN`` and for the PyG reference model
(``benchmarks/references_ogb.py``), in that order in one process.

Run (needs ogbl-ddi: ``GNNKIT_MIRROR`` or the network):
    python benchmarks/ddi_step.py [--steps 5] [--threads 1] [--negatives pyg|device]
        [--json PATH]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time

import torch

from gnnkit.bench.pyg import PygDDI
from gnnkit.data import load
from gnnkit.models import LinkGNN
from gnnkit.train.link import DEFAULT_NEGATIVES, NEGATIVES, link_data, negative_drawer
from gnnkit.utils.env import environment
from gnnkit.utils.io import atomic_write_json

PARTS = ("encoder", "negative_sampling", "predictor_forward", "backward", "optimizer", "total")


def time_steps(
    model: torch.nn.Module, data, batch_size: int, steps: int, warmup: int, negatives: str
):
    """Median seconds per part of a training step, over ``steps`` steps."""
    draw = negative_drawer(data, negatives)
    graph = model.prepare_graph(data.edge_index, data.num_nodes)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.005)
    model.train()
    records = []
    for step in range(warmup + steps):
        ticks = [time.perf_counter()]
        optimizer.zero_grad(set_to_none=True)
        h = model.encode(graph)
        ticks.append(time.perf_counter())
        perm = torch.randperm(data.train_pos.size(0))[:batch_size]
        pos = data.train_pos[perm].t()
        neg = draw(batch_size)
        ticks.append(time.perf_counter())
        loss = model.link_loss(h, pos, neg)
        ticks.append(time.perf_counter())
        loss.backward()
        ticks.append(time.perf_counter())
        for group in model.clip_groups():
            torch.nn.utils.clip_grad_norm_(group, 1.0, foreach=True)
        optimizer.step()
        ticks.append(time.perf_counter())
        if step >= warmup:
            parts = [b - a for a, b in itertools.pairwise(ticks)]
            records.append([*parts, ticks[-1] - ticks[0]])
    return {name: statistics.median(r[i] for r in records) for i, name in enumerate(PARTS)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64 * 1024)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--negatives", choices=NEGATIVES, default=DEFAULT_NEGATIVES)
    parser.add_argument("--json", help="write the medians as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = link_data(load("ogbl-ddi"))
    results = {}
    for name, build in (("gnnkit", LinkGNN.ogb_ddi), ("pyg", PygDDI)):
        torch.manual_seed(0)
        results[name] = time_steps(
            build(data.num_nodes), data, args.batch_size, args.steps, args.warmup, args.negatives
        )
    print(
        f"seconds per ogbl-ddi training step (median of {args.steps}, {args.threads} "
        f"thread(s), negatives: {args.negatives})"
    )
    print(f"{'part':<20}{'gnnkit':>10}{'PyG':>10}{'ratio':>8}")
    for part in PARTS:
        ours, theirs = results["gnnkit"][part], results["pyg"][part]
        print(f"{part:<20}{ours:>10.3f}{theirs:>10.3f}{theirs / ours:>7.2f}x")
    if args.json:
        payload = {"steps": args.steps, "batch_size": args.batch_size, **results}
        payload["negatives"] = args.negatives
        payload["env"] = environment()
        atomic_write_json(args.json, payload)
        print(f"wrote {args.json}")
    else:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
