"""Neighbour sampling: structure, fan-out, order, determinism, uniformity, and bad input."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
import torch
from scipy.stats import chisquare
from torch_geometric.nn import GCNConv as PygGCNConv
from torch_geometric.utils import k_hop_subgraph

from gnnkit.errors import InputError
from gnnkit.sampling import NeighborLoader, NeighborSampler, SampledSubgraph
from gnnkit.sampling.neighbor import _floyd_subsets, derive_seed

pytestmark = pytest.mark.usefixtures("one_thread")


def power_law_graph(num_nodes=400, num_edges=3000, seed=0):
    """A directed graph with heavy-tailed in-degrees, multi-edges and self-loops included."""
    g = torch.Generator().manual_seed(seed)
    weights = torch.arange(1, num_nodes + 1, dtype=torch.float).pow(-1.2)
    dst = torch.multinomial(weights, num_edges, replacement=True, generator=g)
    src = torch.randint(0, num_nodes, (num_edges,), generator=g)
    return torch.stack([src, dst])


def gen(seed):
    return torch.Generator().manual_seed(seed)


def check_structure(sub: SampledSubgraph, edge_index, seeds, fanouts, replace=False):
    """Every property a sampled subgraph must have, checked against the input edge list."""
    n_id, (s, d) = sub.node_ids, sub.edge_index
    # Seeds first, in the given order; every node once.
    assert sub.batch_size == len(seeds) and n_id[: len(seeds)].tolist() == list(seeds)
    assert n_id.unique().numel() == n_id.numel()
    assert sum(sub.num_sampled_nodes) == n_id.numel() and sub.num_sampled_nodes[0] == len(seeds)
    assert sum(sub.num_sampled_edges) == s.numel() == sub.edge_ids.numel()
    # Each sampled edge is a real edge: edge_ids point at a column with these global ends.
    assert torch.equal(edge_index[0, sub.edge_ids], n_id[s])
    assert torch.equal(edge_index[1, sub.edge_ids], n_id[d])
    in_degree = torch.bincount(edge_index[1], minlength=int(edge_index.max()) + 1)
    # Hop by hop: receivers are that hop's frontier; fan-out respected; new nodes appended.
    bounds = [0, *itertools.accumulate(sub.num_sampled_nodes)]
    hop_edges = torch.split(torch.arange(s.numel()), sub.num_sampled_edges)
    for hop, (k, edges) in enumerate(zip(fanouts, hop_edges, strict=True)):
        lo, hi = bounds[hop], bounds[hop + 1]  # local ids of the nodes added at this hop
        receivers = d[edges]
        assert bool(((receivers >= lo) & (receivers < hi)).all())
        counts = torch.bincount(receivers - lo, minlength=hi - lo)
        degree = in_degree[n_id[lo:hi]]
        if k < 0:
            expected = degree
        elif replace:
            expected = torch.where(degree > 0, k, 0)
        else:
            expected = degree.clamp(max=k)
        assert torch.equal(counts, expected), hop
        if not replace:  # distinct edges per receiver
            assert sub.edge_ids[edges].unique().numel() == len(edges)
        # The hop's new nodes are exactly the senders not seen before, in increasing id order.
        new = sorted(set(n_id[s[edges]].tolist()) - set(n_id[:hi].tolist()))
        assert n_id[hi : bounds[hop + 2]].tolist() == new


@pytest.mark.parametrize("fanouts", [(3,), (5, 3), (2, 2, 2), (-1, 4), (0, 3)])
def test_subgraph_structure(fanouts):
    edge_index = power_law_graph()
    seeds = [17, 3, 250, 99, 0, 398]
    sub = NeighborSampler(edge_index, 400, fanouts).sample(torch.tensor(seeds), gen(1))
    check_structure(sub, edge_index, seeds, fanouts)


def test_with_replacement_draws_exactly_k():
    edge_index = power_law_graph()
    seeds = [1, 2, 3, 200]
    sub = NeighborSampler(edge_index, 400, [7, 2], replace=True).sample(torch.tensor(seeds), gen(0))
    check_structure(sub, edge_index, seeds, [7, 2], replace=True)


def test_full_fanout_is_the_k_hop_neighbourhood():
    """With every neighbour kept, the nodes are PyG's k_hop_subgraph and the edges all in-edges."""
    edge_index = power_law_graph(200, 700)
    seeds = torch.tensor([5, 60, 190])
    sub = NeighborSampler(edge_index, 200, [-1, -1]).sample(seeds)
    nodes, _, _, _ = k_hop_subgraph(seeds, 2, edge_index, num_nodes=200)
    assert sorted(sub.node_ids.tolist()) == nodes.tolist()
    inner = torch.cat(
        [seeds, sub.node_ids[sub.batch_size : sub.batch_size + sub.num_sampled_nodes[1]]]
    )
    expected = torch.isin(edge_index[1], inner).nonzero().view(-1)
    assert sorted(sub.edge_ids.tolist()) == expected.tolist()


def test_seed_outputs_equal_full_graph_outputs_with_full_fanout():
    """An L-layer sum aggregation on the full-fan-out subgraph gives seeds their full-graph values."""
    edge_index = power_law_graph(300, 2000)
    x = torch.randn(300, 6, generator=gen(3))
    torch.manual_seed(0)
    convs = [PygGCNConv(6, 6, normalize=False), PygGCNConv(6, 4, normalize=False)]

    def model(h, ei):
        return convs[1](convs[0](h, ei).relu(), ei)

    seeds = torch.tensor([10, 20, 30, 299])
    sub = NeighborSampler(edge_index, 300, [-1, -1]).sample(seeds)
    out = model(x[sub.node_ids], sub.edge_index)[: sub.batch_size]
    assert torch.allclose(out, model(x, edge_index)[seeds], atol=1e-5)
    # A fan-out that drops neighbours changes them (the check above can fail).
    small = NeighborSampler(edge_index, 300, [1, 1]).sample(seeds, gen(0))
    approx = model(x[small.node_ids], small.edge_index)[: small.batch_size]
    assert not torch.allclose(approx, model(x, edge_index)[seeds], atol=1e-3)


def test_same_generator_state_same_sample_and_different_seed_differs():
    edge_index = power_law_graph()
    sampler = NeighborSampler(edge_index, 400, [4, 3])
    seeds = torch.arange(0, 400, 7)
    a, b = sampler.sample(seeds, gen(5)), sampler.sample(seeds, gen(5))
    for field in ("node_ids", "edge_index", "edge_ids"):
        assert torch.equal(getattr(a, field), getattr(b, field))
    c = sampler.sample(seeds, gen(6))
    assert not torch.equal(a.edge_ids, c.edge_ids)


def test_each_k_subset_is_equally_likely():
    """A node with 6 in-neighbours and fan-out 2: all 15 pairs appear uniformly (chi-square)."""
    src = torch.tensor([1, 2, 3, 4, 5, 6])
    edge_index = torch.stack([src, torch.zeros(6, dtype=torch.long)])
    sampler = NeighborSampler(edge_index, 7, [2])
    g = gen(123)
    counts = Counter(
        tuple(sorted(sampler.sample(torch.tensor([0]), g).node_ids[1:].tolist()))
        for _ in range(3000)
    )
    pairs = list(itertools.combinations(range(1, 7), 2))
    assert set(counts) == set(pairs)
    assert chisquare([counts[p] for p in pairs]).pvalue > 1e-3


def test_floyd_subsets_uniform_over_many_rows_and_large_degrees():
    degree = torch.tensor([5] * 4000 + [10**9])
    chosen = _floyd_subsets(degree, 3, gen(0))
    assert chosen.shape == (4001, 3)
    assert all(len(set(row)) == 3 for row in chosen.tolist())
    assert int(chosen[:-1].max()) <= 4 and int(chosen.min()) >= 0 and int(chosen[-1].max()) < 10**9
    # Inclusion probability of each offset is k / d = 3 / 5 for the degree-5 rows.
    inclusion = torch.bincount(chosen[:-1].reshape(-1), minlength=5).float() / 4000
    assert torch.allclose(inclusion, torch.full((5,), 0.6), atol=0.03)


def test_isolated_seed_and_empty_batch():
    edge_index = torch.tensor([[0, 1], [1, 2]])
    sampler = NeighborSampler(edge_index, 5, [3, 3])
    sub = sampler.sample(torch.tensor([4, 0]))
    assert sub.node_ids.tolist() == [4, 0] and sub.num_edges == 0
    assert sub.num_sampled_nodes == [2, 0, 0]
    empty = sampler.sample(torch.zeros(0, dtype=torch.long))
    assert empty.num_nodes == 0 and empty.edge_index.shape == (2, 0)


def test_loader_covers_every_seed_once_per_epoch_and_is_reproducible():
    edge_index = power_law_graph()
    train = torch.arange(3, 400, 3)  # 133 seeds
    loader = NeighborLoader(edge_index, train, [3, 2], batch_size=40, seed=9)
    assert len(loader) == 4
    first = list(loader)
    assert [b.batch_size for b in first] == [40, 40, 40, 13]
    assert sorted(torch.cat([b.seeds for b in first]).tolist()) == train.tolist()
    second = list(loader)  # the next epoch: another order
    assert not torch.equal(first[0].seeds, second[0].seeds)
    loader.set_epoch(0)
    again = list(loader)
    assert all(torch.equal(a.edge_ids, b.edge_ids) for a, b in zip(first, again, strict=True))
    dropping = NeighborLoader(edge_index, train, [3], batch_size=40, drop_last=True, shuffle=False)
    batches = list(dropping)
    assert len(dropping) == len(batches) == 3 and batches[0].seeds.tolist() == train[:40].tolist()


def test_derive_seed_is_stable_and_spreads():
    assert derive_seed(0, 1, 2) == derive_seed(0, 1, 2)
    values = {derive_seed(0, e, s) for e in range(20) for s in range(20)}
    assert len(values) == 400 and all(0 <= v < 2**63 for v in values)
    assert derive_seed(-1, 3) == derive_seed(-1, 3)


def test_subgraph_to_device_copies():
    sub = NeighborSampler(power_law_graph(), 400, [2]).sample(torch.tensor([1]), gen(0))
    moved = sub.to("cpu")
    assert moved is not sub and torch.equal(moved.node_ids, sub.node_ids)
    assert "fanouts=[2]" in repr(NeighborSampler(power_law_graph(), 400, [2]))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fanouts": []}, "non-empty list of ints"),
        ({"fanouts": "15,10"}, "non-empty list of ints"),
        ({"fanouts": [5, -2]}, r"each fan-out must be an int >= 0, or -1"),
        ({"fanouts": [5, 2.5]}, r"each fan-out must be an int"),
        ({"fanouts": [True]}, r"each fan-out must be an int"),
        ({"fanouts": [2], "replace": 1}, "replace must be True or False"),
    ],
)
def test_bad_sampler_arguments(kwargs, match):
    with pytest.raises(InputError, match=match):
        NeighborSampler(power_law_graph(), 400, **kwargs)


def test_bad_graph_and_seeds():
    with pytest.raises(InputError, match="edge_index must have shape"):
        NeighborSampler(torch.zeros(3, 4, dtype=torch.long), 5, [2])
    with pytest.raises(InputError, match="node indices"):
        NeighborSampler(torch.tensor([[0], [9]]), 5, [2])
    sampler = NeighborSampler(torch.tensor([[0, 1], [1, 2]]), 3, [2])
    with pytest.raises(
        InputError,
        match=r"seeds holds node id 7, out of range for 3 nodes \(valid: 0 \.\. 2\); pass ids",
    ):
        sampler.sample(torch.tensor([0, 7]))
    with pytest.raises(InputError, match="seeds must be distinct"):
        sampler.sample(torch.tensor([1, 1]))
    with pytest.raises(InputError, match="integer node ids"):
        sampler.sample(torch.tensor([0.5]))
    with pytest.raises(InputError, match="1-D tensor"):
        sampler.sample(torch.tensor([[0]]))
    with pytest.raises(InputError, match="batch_size must be a positive int"):
        NeighborLoader(torch.tensor([[0, 1], [1, 2]]), torch.tensor([0]), [2], batch_size=0)
    with pytest.raises(InputError, match="seeds must be distinct"):
        NeighborLoader(torch.tensor([[0, 1], [1, 2]]), torch.tensor([0, 0]), [2])
    with pytest.raises(InputError, match="seed must be an int"):
        NeighborLoader(torch.tensor([[0, 1], [1, 2]]), torch.tensor([0]), [2], seed=1.5)


# --------------------------------------------------------------------------- mini-batch training


def tiny_task(num_nodes=120, seed=0):
    from torch_geometric.data import Data

    from gnnkit.train import node_inputs

    g = gen(seed)
    y = torch.randint(0, 3, (num_nodes,), generator=g)
    x = torch.randn(num_nodes, 6, generator=g) + torch.nn.functional.one_hot(y, 6).float()
    edge_index = power_law_graph(num_nodes, 6 * num_nodes, seed)
    masks = torch.zeros(3, num_nodes, dtype=torch.bool)
    order = torch.randperm(num_nodes, generator=g)
    third = num_nodes // 3
    masks[0, order[:third]], masks[1, order[third : 2 * third]] = True, True
    masks[2, order[2 * third :]] = True
    data = Data(x=x, edge_index=edge_index, y=y, num_classes=3)
    data.train_mask, data.val_mask, data.test_mask = masks
    return node_inputs(data, features="dense")


def small_model(seed=0):
    from gnnkit.models import BatchNormGCN

    torch.manual_seed(seed)
    return BatchNormGCN(6, 3, hidden_channels=8, num_layers=2)


def test_minibatch_resume_equals_uninterrupted_run(tmp_path):
    from gnnkit.train import TrainConfig
    from gnnkit.train.minibatch import SamplingConfig, fit_minibatch

    inputs, sampling = tiny_task(), SamplingConfig(fanouts=(3, 3), batch_size=10)
    config = TrainConfig(epochs=4, lr=0.02, weight_decay=0.0, seed=3)
    straight_model = small_model()
    straight = fit_minibatch(straight_model, inputs, config, sampling)
    path = tmp_path / "mb.pt"
    first = small_model()
    short = TrainConfig(**{**config.__dict__, "epochs": 2})
    fit_minibatch(first, inputs, short, sampling, checkpoint=path)
    resumed_model = small_model(seed=99)  # its own initialisation is overwritten on resume
    resumed = fit_minibatch(resumed_model, inputs, config, sampling, checkpoint=path, resume=True)
    assert resumed.resumed_from == 2 and resumed.epochs_run == 4
    assert resumed.history == straight.history
    assert (resumed.best_epoch, resumed.test_acc) == (straight.best_epoch, straight.test_acc)
    for key, value in straight_model.state_dict().items():
        assert torch.equal(value, resumed_model.state_dict()[key]), key


def test_minibatch_objective_is_the_mean_over_the_step_however_sharded():
    """One shard of 2b seeds and 2 accumulated shards of b: with every neighbour kept, no
    dropout and no batch norm, both give the same loss and gradient."""
    from gnnkit.models import BatchNormGCN
    from gnnkit.train import TrainConfig
    from gnnkit.train.minibatch import SamplingConfig, fit_minibatch

    inputs = tiny_task()
    config = TrainConfig(epochs=2, lr=0.05, weight_decay=0.0, seed=1, restore_best=False)
    models = []
    for sampling in (
        SamplingConfig(fanouts=(-1, -1), batch_size=20),
        SamplingConfig(fanouts=(-1, -1), batch_size=10, accumulate=2),
    ):
        torch.manual_seed(0)
        model = BatchNormGCN(6, 3, hidden_channels=8, num_layers=2, dropout=0.0, batch_norm=False)
        # Full neighbourhoods, but GCN renormalises on each subgraph: use plain sums so the
        # seeds' outputs do not depend on which other seeds share their subgraph.
        for conv in model.convs:
            conv.normalize = False
        models.append((model, fit_minibatch(model, inputs, config, sampling)))
    (a, ra), (b, rb) = models
    assert ra.history["loss"] == pytest.approx(rb.history["loss"], rel=1e-5)
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-5), name


def test_minibatch_sparse_features_and_pyg_cache_disabled():
    from torch_geometric.nn import GCNConv

    from gnnkit.data import load
    from gnnkit.train import TrainConfig, node_inputs
    from gnnkit.train.minibatch import SamplingConfig, disable_graph_caches, fit_minibatch

    inputs = node_inputs(load("karate"))  # sparse CSR features
    assert inputs.x.layout == torch.sparse_csr
    from gnnkit.models import GCN

    torch.manual_seed(0)
    result = fit_minibatch(
        GCN(inputs.num_features, inputs.num_classes),
        inputs,
        TrainConfig(epochs=3, seed=0),
        SamplingConfig(fanouts=(5, 5), batch_size=2),
    )
    assert result.epochs_run == 3
    pyg = torch.nn.Sequential(GCNConv(4, 4, cached=True))
    pyg[0]._cached_edge_index = (torch.zeros(2, 1), None)
    assert disable_graph_caches(pyg) == 1 and not pyg[0].cached
    assert pyg[0]._cached_edge_index is None


def test_minibatch_errors(tmp_path):
    from gnnkit.errors import CheckpointError
    from gnnkit.train import NonFiniteLossError, TrainConfig
    from gnnkit.train.minibatch import SamplingConfig, fit_minibatch

    with pytest.raises(InputError, match="batch_size must be an integer >= 1, got 0"):
        SamplingConfig(batch_size=0)
    with pytest.raises(InputError, match="accumulate must be an integer >= 1, got True"):
        SamplingConfig(accumulate=True)
    with pytest.raises(InputError, match="each fan-out"):
        SamplingConfig(fanouts=(2, -3))
    with pytest.raises(InputError, match="replace must be True or False"):
        SamplingConfig(replace="no")
    inputs = tiny_task()
    with pytest.raises(InputError, match="sampling must be a SamplingConfig"):
        fit_minibatch(small_model(), inputs, TrainConfig(epochs=1), {"batch_size": 3})
    with pytest.raises(InputError, match="config must be a TrainConfig"):
        fit_minibatch(small_model(), inputs, {"epochs": 1})
    with pytest.raises(InputError, match="inputs must be NodeInputs"):
        fit_minibatch(small_model(), {"x": 1})
    two_hops = SamplingConfig(fanouts=(2, 2))  # small_model has 2 layers
    with pytest.raises(InputError, match="resume=True needs a checkpoint path"):
        fit_minibatch(small_model(), inputs, sampling=two_hops, resume=True)
    with pytest.raises(InputError, match=r"40 node\(s\), fewer than the 64 shards"):
        wide = SamplingConfig(fanouts=(2, 2), accumulate=64)
        fit_minibatch(small_model(), inputs, TrainConfig(epochs=1), wide)
    foreign = tmp_path / "foreign.pt"
    torch.save({"format": "something else"}, foreign)
    with pytest.raises(CheckpointError, match="not a gnnkit training checkpoint"):
        config = TrainConfig(epochs=1)
        fit_minibatch(small_model(), inputs, config, two_hops, checkpoint=foreign, resume=True)
    path = tmp_path / "run.pt"
    sampling = SamplingConfig(fanouts=(2, 2), batch_size=8)
    fit_minibatch(small_model(), inputs, TrainConfig(epochs=2, seed=0), sampling, checkpoint=path)

    def resume(config: TrainConfig):
        return fit_minibatch(small_model(), inputs, config, sampling, checkpoint=path, resume=True)

    with pytest.raises(CheckpointError, match="already trained 2 epochs"):
        resume(TrainConfig(epochs=1, seed=0))
    with pytest.raises(CheckpointError, match=r"different model.*lr"):
        resume(TrainConfig(epochs=3, seed=0, lr=0.5))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="checkpoint"):
        resume(TrainConfig(epochs=3, seed=0))
    bad = tiny_task()
    bad.x[0, 0] = float("nan")
    model = small_model()
    for conv in model.convs:
        conv.validate = False  # let the NaN reach the loss
    with pytest.raises(NonFiniteLossError, match="non-finite at epoch 1"):
        fit_minibatch(model, bad, TrainConfig(epochs=2, seed=0), SamplingConfig(fanouts=(-1, -1)))


def test_minibatch_without_seed_resumes_with_the_drawn_seed(tmp_path):
    from gnnkit.train import TrainConfig
    from gnnkit.train.minibatch import SamplingConfig, fit_minibatch
    from gnnkit.utils.io import safe_torch_load

    inputs, sampling = tiny_task(), SamplingConfig(fanouts=(3, 3), batch_size=10)
    path = tmp_path / "unseeded.pt"
    torch.manual_seed(11)
    fit_minibatch(small_model(), inputs, TrainConfig(epochs=1), sampling, checkpoint=path)
    drawn = safe_torch_load(path)["task"]["seed"]
    straight = small_model()
    fit_minibatch(straight, inputs, TrainConfig(epochs=2, seed=drawn), sampling)
    resumed = small_model()
    with pytest.raises(Exception, match=r"different model.*seed"):  # a seed was not asked for
        fit_minibatch(
            resumed,
            inputs,
            TrainConfig(epochs=2, seed=drawn),
            sampling,
            checkpoint=path,
            resume=True,
        )
    fit_minibatch(resumed, inputs, TrainConfig(epochs=2), sampling, checkpoint=path, resume=True)
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_message_passing_layers_counts_the_convolutions():
    from torch_geometric.nn import GCNConv

    from gnnkit.models import GAT, GCN, BatchNormGCN
    from gnnkit.train.minibatch import message_passing_layers

    assert message_passing_layers(GCN(6, 3)) == 2
    assert message_passing_layers(GAT(6, 3)) == 2
    assert message_passing_layers(BatchNormGCN(6, 3, hidden_channels=8, num_layers=4)) == 4
    pyg = torch.nn.ModuleList([GCNConv(6, 6), torch.nn.Linear(6, 6), GCNConv(6, 3)])
    assert message_passing_layers(pyg) == 2
    assert message_passing_layers(torch.nn.Linear(6, 3)) == 0


PER_LAYER = (
    "fan-out(s) for a model with 2 message-passing layer(s); give one fan-out per layer, "
    "e.g. SamplingConfig(fanouts=(10, 10))"
)


@pytest.mark.parametrize(
    ("fanouts", "message"),
    [
        ((5,), f"sampling.fanouts (5,): 1 {PER_LAYER}"),
        ((15, 10, 5), f"sampling.fanouts (15, 10, 5): 3 {PER_LAYER}"),
    ],
)
def test_fanouts_not_one_per_layer_are_refused(fanouts, message):
    from gnnkit.train.minibatch import check_fanouts_fit

    with pytest.raises(InputError) as caught:
        check_fanouts_fit(small_model(), fanouts)
    assert str(caught.value) == message
    check_fanouts_fit(small_model(), (4, 4))  # one per layer
    check_fanouts_fit(torch.nn.Linear(6, 3), fanouts)  # no MessagePassing: not checked


def test_minibatch_takes_more_hops_than_layer_modules():
    """One APPNP layer propagates K hops: the library does not refuse its K fan-outs (only the
    CLI checks its own recipes' fan-outs, one per layer)."""
    from torch_geometric.nn import APPNP

    from gnnkit.train import TrainConfig
    from gnnkit.train.minibatch import SamplingConfig, fit_minibatch

    class Propagated(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin, self.prop = torch.nn.Linear(6, 3), APPNP(K=3, alpha=0.1)

        def forward(self, x, edge_index):
            return self.prop(self.lin(x), edge_index)

    sampling = SamplingConfig(fanouts=(3, 3, 3), batch_size=10)
    result = fit_minibatch(Propagated(), tiny_task(), TrainConfig(epochs=2, seed=0), sampling)
    assert len(result.history["loss"]) == 2
