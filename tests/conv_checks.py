"""What the tests of both convolution layers (``test_gcn.py``, ``test_gat.py``) share: random
graphs and the checks every layer with a graph cache must pass."""

from __future__ import annotations

import torch


def directed_graph(num_nodes=12, num_edges=40, seed=0, loops=False):
    """A random directed graph without duplicate edges (and without self-loops by default)."""
    gen = torch.Generator().manual_seed(seed)
    edge_index = torch.unique(torch.randint(0, num_nodes, (2, num_edges), generator=gen), dim=1)
    if not loops:
        edge_index = edge_index[:, edge_index[0] != edge_index[1]]
    perm = torch.randperm(edge_index.size(1), generator=gen)  # not sorted by anything
    return edge_index[:, perm]


def assert_inference_cache_serves_training(cached, fresh, x, dense, edge_index):
    """``cached`` (``cached=True``), first evaluated under ``torch.inference_mode()``, then
    trained and evaluated again, agrees in values and gradients with ``fresh``, a layer with
    the same weights that has never cached anything, run on the dense features ``dense``.

    Regression: the cache used to keep inference tensors, and the first training step after
    an evaluation under ``torch.inference_mode()`` failed ("cannot be saved for backward").
    """
    cached.eval()
    with torch.inference_mode():
        evaluated = cached(x, edge_index)
    cached.train()
    out = cached(x, edge_index)
    grads = torch.autograd.grad(out.square().sum(), list(cached.parameters()))
    expected = fresh(dense, edge_index)
    expected_grads = torch.autograd.grad(expected.square().sum(), list(fresh.parameters()))
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(evaluated, expected.detach())
    for got, want in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want)
    with torch.inference_mode():  # and back: evaluation after training still works
        torch.testing.assert_close(cached(x, edge_index), expected.detach())


def paired_layers(ours_cls, theirs_cls, *args, fused=True, **kwargs):
    """gnnkit's layer and PyG's with the same weights (float64, PyG's seeded ones) and the same
    non-zero bias; ``fused=False`` puts gnnkit's on PyG's plain message/aggregate path."""
    theirs = theirs_cls(*args, **kwargs).double()
    ours = ours_cls(*args, **kwargs).double()
    ours.load_state_dict(theirs.state_dict())
    if ours.bias is not None:
        with torch.no_grad():
            ours.bias.normal_()
            theirs.bias.copy_(ours.bias)
    ours.fuse = fused
    return ours, theirs


def assert_compiles_like_pyg(ours, theirs, *inputs):
    """``torch.compile`` breaks ``ours`` into no more graphs than PyG's ``theirs`` on
    ``inputs``, and the compiled forward and backward equal eager ones."""
    import torch._dynamo as dynamo

    def breaks(layer):
        dynamo.reset()
        return dynamo.explain(lambda *a: layer(*a).sum())(*inputs).graph_break_count

    assert breaks(ours) <= breaks(theirs)
    dynamo.reset()
    out = torch.compile(ours, backend="aot_eager")(*inputs)
    grads = torch.autograd.grad(out.square().sum(), list(ours.parameters()))
    expected = ours(*inputs)
    expected_grads = torch.autograd.grad(expected.square().sum(), list(ours.parameters()))
    torch.testing.assert_close(out, expected)
    for got, want in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want)
