"""Global-id dropout masks (issue 20): the documented hash, the compiled and torch paths
bit-identical, attention dropout keyed by edge id and head."""

from __future__ import annotations

import pytest
import torch

from gnnkit.distributed import ATTENTION_STREAM, attention_dropout, keep_mask, node_dropout
from gnnkit.errors import InputError
from gnnkit.ops._jit import jit_available

M32 = 0xFFFFFFFF


def lowbias32(x: int) -> int:
    """C. Wellons' 32-bit integer mix, in Python integers (the reference)."""
    x &= M32
    x ^= x >> 16
    x = (x * 0x7FEB352D) & M32
    x ^= x >> 15
    x = (x * 0x846CA68B) & M32
    return x ^ (x >> 16)


def kept(node: int, column: int, p: float, seed: int, step: int, layer: int) -> bool:
    key = lowbias32(lowbias32(lowbias32(seed ^ (seed >> 32)) ^ step) ^ layer)
    row = lowbias32(lowbias32(node ^ key) ^ (node >> 32))
    return lowbias32(row ^ lowbias32(column + 0x9E3779B9)) >= round(p * 2**32)


PATHS = [False, pytest.param(True, marks=pytest.mark.skipif(not jit_available(), reason="numba"))]


@pytest.mark.parametrize("compiled", PATHS)
def test_every_entry_is_the_documented_hash_of_its_ids(compiled):
    nodes = [0, 1, 7, 2707, 2**31 + 5, 2**40 + 12345]
    mask = keep_mask(
        torch.tensor(nodes), 9, 0.4, seed=2**33 + 1, step=5, layer=1, compiled=compiled
    )
    want = [[kept(n, c, 0.4, 2**33 + 1, 5, 1) for c in range(9)] for n in nodes]
    assert mask.tolist() == want


@pytest.mark.skipif(not jit_available(), reason="the compiled path needs numba")
@pytest.mark.parametrize("columns", [1, 8, 300])
@pytest.mark.parametrize("p", [0.0, 0.1, 0.6, 0.999])
def test_the_compiled_mask_is_bit_identical_to_the_torch_mask(columns, p):
    ids = torch.randint(0, 2**40, (1000,), generator=torch.Generator().manual_seed(columns))
    args = dict(seed=11, step=3, layer=2)
    fast = keep_mask(ids, columns, p, **args, compiled=True)
    assert fast.dtype == torch.bool and fast.shape == (1000, columns)
    assert torch.equal(fast, keep_mask(ids, columns, p, **args, compiled=False))
    assert torch.equal(
        keep_mask(ids[:0], columns, p, **args, compiled=True),
        keep_mask(ids[:0], columns, p, **args, compiled=False),
    )


def test_the_mask_keeps_one_minus_p_and_changes_with_step_and_layer():
    ids = torch.arange(4000)
    mask = keep_mask(ids, 50, 0.3, seed=0, step=1, layer=0)
    assert abs(mask.float().mean().item() - 0.7) < 0.005
    assert not torch.equal(mask, keep_mask(ids, 50, 0.3, seed=0, step=2, layer=0))
    assert not torch.equal(mask, keep_mask(ids, 50, 0.3, seed=0, step=1, layer=1))
    # a row's fate depends on its global id only, not on which rows come with it
    assert torch.equal(mask[1234:1240], keep_mask(ids[1234:1240], 50, 0.3, seed=0, step=1, layer=0))


def test_attention_dropout_is_the_edge_mask_of_its_own_stream_per_head():
    edges = torch.tensor([5, 0, 9, 2**35, 3])
    alpha = torch.rand(4, 5, dtype=torch.float64)
    out = attention_dropout(alpha, edges, 0.5, seed=1, step=2, layer=1, training=True)
    mask = keep_mask(edges, 4, 0.5, seed=1, step=2, layer=1 + ATTENTION_STREAM).t()
    assert torch.equal(out, alpha * mask / 0.5)
    assert not torch.equal(mask.t(), keep_mask(edges, 4, 0.5, seed=1, step=2, layer=1))
    assert attention_dropout(alpha, edges, 0.5, seed=1, step=2, layer=1, training=False) is alpha


def test_node_dropout_scales_the_kept_entries():
    x = torch.rand(30, 6, dtype=torch.float64) + 1
    out = node_dropout(x, torch.arange(30), 0.25, seed=3, step=1, layer=0, training=True)
    mask = keep_mask(torch.arange(30), 6, 0.25, seed=3, step=1, layer=0)
    assert torch.allclose(out[mask], x[mask] / 0.75) and (out[~mask] == 0).all()


@pytest.mark.parametrize("p", [-0.1, 1.0])
def test_a_probability_outside_0_1_is_one_line(p):
    x = torch.ones(3, 2)
    with pytest.raises(InputError, match=r"dropout p must be in \[0, 1\)"):
        node_dropout(x, torch.arange(3), p, seed=0, step=0, layer=0, training=True)
    with pytest.raises(InputError, match=r"attention dropout p must be in \[0, 1\)"):
        attention_dropout(x.t(), torch.arange(3), p, seed=0, step=0, layer=0, training=True)


def test_ids_must_be_one_integer_per_row_and_p_in_0_1():
    # a wrong count used to fail in a broadcast, p = -1 overflowed a uint64 in the kernel,
    # float ids were truncated silently
    x = torch.ones(3, 2)
    with pytest.raises(
        InputError, match=r"node_dropout: node_ids must be a 1-D integer tensor of 3 entries"
    ):
        node_dropout(x, torch.arange(2), 0.5, seed=0, step=0, layer=0, training=True)
    with pytest.raises(InputError, match=r"edge_ids must be a 1-D integer tensor of 2 entries"):
        attention_dropout(
            torch.ones(5, 2), torch.arange(3), 0.5, seed=0, step=0, layer=0, training=True
        )
    with pytest.raises(InputError, match=r"alpha must be an \(H, \|E\|\) tensor, got \(4,\)"):
        attention_dropout(
            torch.ones(4), torch.arange(4), 0.5, seed=0, step=0, layer=0, training=True
        )
    for p in (-1.0, 1.0, float("nan"), "0.5"):
        with pytest.raises(InputError, match=r"keep_mask: dropout p must be in \[0, 1\)"):
            keep_mask(torch.arange(3), 4, p, seed=0, step=0, layer=0)
    with pytest.raises(InputError, match=r"keep_mask: node_ids must be a 1-D integer tensor"):
        keep_mask(torch.arange(3.0), 4, 0.5, seed=0, step=0, layer=0)
    with pytest.raises(InputError, match=r"num_columns must be an integer >= 0, got -1"):
        keep_mask(torch.arange(3), -1, 0.5, seed=0, step=0, layer=0)
    # matching ids still drop exactly the masked entries
    out = node_dropout(x, torch.tensor([4, 9, 2]), 0.5, seed=0, step=0, layer=0, training=True)
    mask = keep_mask(torch.tensor([4, 9, 2]), 2, 0.5, seed=0, step=0, layer=0)
    assert torch.equal(out, mask.float() * 2)
