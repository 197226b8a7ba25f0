"""NegativeSampler: only non-edges, no repeats, uniform, PyG's pair numbering, bad input."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
import torch
from scipy.stats import chisquare

# PyG's own pair numbering (private module, no public export): the reference for our codes.
from torch_geometric.utils._negative_sampling import edge_index_to_vector, vector_to_edge_index

from gnnkit.errors import InputError
from gnnkit.sampling import NegativeSampler

pytestmark = pytest.mark.usefixtures("one_thread")

# Six nodes; a self-loop and a repeated edge on purpose.
EDGES = torch.tensor([[0, 0, 1, 2, 3, 4, 4, 5, 5], [1, 1, 2, 2, 0, 5, 1, 0, 3]])


def non_edges(edge_index: torch.Tensor, num_nodes: int) -> set[tuple[int, int]]:
    """Every ordered pair (i, j), i != j, that is not an edge: enumerated directly."""
    edges = set(map(tuple, edge_index.t().tolist()))
    return {
        (i, j)
        for i, j in itertools.product(range(num_nodes), repeat=2)
        if i != j and (i, j) not in edges
    }


def test_codes_are_pygs_numbering_of_off_diagonal_pairs():
    num_nodes = 7
    pairs = torch.tensor([(i, j) for i in range(num_nodes) for j in range(num_nodes) if i != j]).t()
    sampler = NegativeSampler(EDGES, num_nodes)
    theirs, population = edge_index_to_vector(pairs, (num_nodes, num_nodes), False)
    assert sampler.population == population == num_nodes * (num_nodes - 1)
    assert torch.equal(sampler.encode(pairs[0], pairs[1]), theirs)
    assert torch.equal(sampler.decode(theirs), pairs)
    codes = torch.arange(population)
    assert torch.equal(sampler.decode(codes), vector_to_edge_index(codes, (7, 7), False))


@pytest.mark.parametrize("k", [4, 10])  # 4: rejection of random candidates; 10: enumeration
def test_draws_distinct_non_edges_each_equally_often_in_random_order(k):
    allowed = non_edges(EDGES, 6)
    sampler = NegativeSampler(EDGES, 6)
    assert sampler.available == len(allowed) == 30 - 7
    torch.manual_seed(0)
    counts: Counter[tuple[int, int]] = Counter()
    first: Counter[tuple[int, int]] = Counter()
    for _ in range(3000):
        pairs = list(map(tuple, sampler(k).t().tolist()))
        assert len(pairs) == k and len(set(pairs)) == k and set(pairs) <= allowed
        counts.update(pairs)
        first[pairs[0]] += 1
    assert set(counts) == allowed
    assert chisquare([counts[p] for p in sorted(allowed)]).pvalue > 1e-3
    assert chisquare([first[p] for p in sorted(allowed)]).pvalue > 1e-3  # the order is random


def test_large_graph_path_rejects_edges_and_returns_exactly_what_was_asked():
    """ddi-like density: the rejection path, not the enumeration."""
    g = torch.Generator().manual_seed(1)
    num_nodes = 300
    edge_index = torch.randint(0, num_nodes, (2, 20_000), generator=g)
    sampler = NegativeSampler(edge_index, num_nodes)
    assert sampler.available > 4 * 2000
    torch.manual_seed(0)
    drawn = sampler(2000)
    assert drawn.shape == (2, 2000) and drawn.dtype == torch.long
    pairs = set(map(tuple, drawn.t().tolist()))
    assert len(pairs) == 2000 and pairs <= non_edges(edge_index, num_nodes)
    # Order is random, not sorted by code.
    codes = sampler.encode(drawn[0], drawn[1])
    assert not torch.equal(codes, codes.sort().values)
    torch.manual_seed(0)
    assert torch.equal(sampler(2000), drawn)  # torch's seed fixes the draw


def test_a_dense_graph_merges_several_rounds_of_candidates(monkeypatch):
    """Few non-edges among many pairs: the first round falls short and later rounds add to it."""
    num_nodes = 300
    everything = torch.tensor([(i, j) for i in range(num_nodes) for j in range(num_nodes)]).t()
    missing = torch.arange(0, 89_700, 89)[:1000]  # 1,000 non-edges, spread over the codes
    sampler = NegativeSampler(torch.empty(2, 0, dtype=torch.long), num_nodes)
    kept = ~torch.isin(sampler.encode(*everything[:, everything[0] != everything[1]]), missing)
    dense = NegativeSampler(everything[:, everything[0] != everything[1]][:, kept], num_nodes)
    assert dense.available == 1000
    rounds = []
    original = torch.randint
    monkeypatch.setattr(torch, "randint", lambda *a, **kw: rounds.append(a) or original(*a, **kw))
    torch.manual_seed(0)
    drawn = dense(200)
    assert len(rounds) > 1
    codes = dense.encode(drawn[0], drawn[1])
    assert codes.numel() == 200 and codes.unique().numel() == 200
    assert bool(torch.isin(codes, missing).all())


def test_asking_for_more_than_there_is_returns_every_non_edge_once():
    sampler = NegativeSampler(EDGES, 6)
    everything = sampler(100)
    assert everything.shape == (2, sampler.available)
    assert set(map(tuple, everything.t().tolist())) == non_edges(EDGES, 6)
    assert sampler(0).shape == (2, 0)
    complete = torch.tensor([(i, j) for i in range(3) for j in range(3) if i != j]).t()
    assert NegativeSampler(complete, 3)(5).shape == (2, 0)


def test_a_graph_without_edges_samples_from_all_pairs():
    sampler = NegativeSampler(torch.empty(2, 0, dtype=torch.long), 3)
    assert sampler.available == 6
    assert set(map(tuple, sampler(6).t().tolist())) == non_edges(torch.empty(2, 0), 3)


def test_bad_input():
    with pytest.raises(InputError, match="integer node indices"):
        NegativeSampler(EDGES.float(), 6)
    with pytest.raises(InputError, match="out of range for num_nodes=4"):
        NegativeSampler(EDGES, 4)
    for num_nodes in (0, 1):
        with pytest.raises(InputError, match=r"num_nodes must be at least 2.*data\.num_nodes"):
            NegativeSampler(torch.empty(2, 0, dtype=torch.long), num_nodes)
    sampler = NegativeSampler(EDGES, 6)
    for bad in (-1, 2.0, True):
        with pytest.raises(InputError, match="num_samples must be a non-negative int"):
            sampler(bad)


@pytest.mark.cuda
def test_on_cuda_the_draw_stays_on_the_device():
    sampler = NegativeSampler(EDGES.cuda(), 6)
    cpu_state = torch.get_rng_state()
    torch.manual_seed(3)
    drawn = sampler(5)
    assert drawn.device.type == "cuda"
    pairs = set(map(tuple, drawn.cpu().t().tolist()))
    assert len(pairs) == 5 and pairs <= non_edges(EDGES, 6)
    torch.manual_seed(3)
    assert torch.equal(sampler(5), drawn)  # seeded by torch, on the device's generator
    torch.set_rng_state(cpu_state)
    sampler(5)
    assert torch.equal(torch.get_rng_state(), cpu_state)  # the CPU stream is left alone
