"""gnnkit.nn.dropout as a drop-in for F.dropout: dense as before, sparse input kept sparse.

References: ``F.dropout`` itself (signature, distribution, errors) and
:func:`gnnkit.nn.sparse_dropout`, which a sparse input must match draw for draw.
"""

from __future__ import annotations

import inspect

import pytest
import torch
import torch.nn.functional as F

from gnnkit import InputError
from gnnkit.nn import dropout, elu_dropout, relu_dropout, sparse_dropout


def sparse_features(layout: str, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    dense = torch.rand(200, 150, generator=g) * (torch.rand(200, 150, generator=g) < 0.05)
    return dense.to_sparse_csr() if layout == "csr" else dense.to_sparse()


def test_the_signature_starts_as_f_dropouts():
    # The tensor comes first (F.dropout names it ``input``), then p and training by name.
    ours = list(inspect.signature(dropout).parameters.values())[:3]
    theirs = list(inspect.signature(F.dropout).parameters.values())[:3]
    assert [(p.name, p.default) for p in ours[1:]] == [(p.name, p.default) for p in theirs[1:]]
    assert ours[0].kind == theirs[0].kind == inspect.Parameter.POSITIONAL_OR_KEYWORD


@pytest.mark.parametrize("layout", ["csr", "coo"])
@pytest.mark.parametrize("draw", ["uniform", "bytes"])
def test_sparse_input_is_sparse_dropout_draw_for_draw(layout, draw):
    x = sparse_features(layout, seed=1)
    torch.manual_seed(3)
    out = dropout(x, p=0.5, training=True, draw=draw)
    torch.manual_seed(3)
    expected = sparse_dropout(x, 0.5, True, draw=draw)
    assert out.layout == x.layout and out._nnz() == x._nnz()
    assert torch.equal(out.to_dense(), expected.to_dense())
    if layout == "csr":  # the structure is shared: sparse_linear's cache hits
        assert out.col_indices().data_ptr() == x.col_indices().data_ptr()


@pytest.mark.parametrize("p", [0.5, 0.6])
def test_sparse_dropout_has_f_dropouts_distribution_on_the_stored_entries(p):
    x = sparse_features("csr", seed=2)
    dense = x.to_dense()
    stored = dense != 0
    draws = 400
    torch.manual_seed(4)
    ours = torch.stack([dropout(x, p, True).to_dense() for _ in range(draws)])
    theirs = torch.stack([F.dropout(dense, p, True) for _ in range(draws)])
    for sample in (ours, theirs):
        kept = sample[:, stored] != 0  # (draws, nnz)
        assert abs(kept.float().mean().item() - (1 - p)) < 0.004  # 600,000 draws: 6 sigma
        torch.testing.assert_close(
            sample[:, stored][kept], dense[stored].expand_as(kept)[kept] / (1 - p)
        )
        assert not sample[:, ~stored].any()  # unstored zeros stay zero
    # Unbiased like F.dropout: the mean total over draws matches the input's total, within 4
    # standard deviations of that mean (each stored v adds v^2 p / (1 - p) to the variance).
    values = dense[stored]
    std = ((values**2).sum() * p / (1 - p) / draws).sqrt()
    for sample in (ours, theirs):
        assert abs(sample.mean(0).sum() - dense.sum()) < 4 * std


def test_sparse_gradient_reaches_the_kept_values():
    x = sparse_features("csr", seed=5).double().requires_grad_()
    torch.manual_seed(5)
    out = dropout(x, 0.4, True)
    out.values().sum().backward()
    kept = out.values().detach() != 0
    torch.testing.assert_close(x.grad.values(), kept.double() / 0.6)


def test_evaluation_mode_and_p_zero_return_the_input():
    x = sparse_features("csr")
    assert dropout(x, 0.5, training=False) is x
    assert dropout(x, 0.0, training=True) is x
    dense = torch.rand(4, 3)
    assert dropout(dense, 0.5, training=False) is dense


def test_in_a_pyg_style_forward_the_features_stay_sparse():
    x = sparse_features("csr", seed=6)
    weight = torch.randn(150, 8)
    h = dropout(x, p=0.5, training=True)  # what a user's forward writes for F.dropout
    assert h.layout == torch.sparse_csr
    torch.testing.assert_close(h @ weight, h.to_dense() @ weight, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_out_of_range_p_is_refused_like_f_dropout(p):
    with pytest.raises(ValueError):
        F.dropout(torch.ones(3), p)
    with pytest.raises(InputError, match=r"dropout probability p must be a number in \[0, 1\]"):
        dropout(torch.ones(3), p)
    with pytest.raises(InputError, match=r"dropout probability p must be a number in \[0, 1\]"):
        dropout(sparse_features("csr"), p)


def test_unsupported_sparse_layout_and_draw():
    with pytest.raises(InputError, match="supports sparse COO and CSR"):
        dropout(torch.eye(3).to_sparse_csc(), 0.5)
    with pytest.raises(InputError, match="draw must be 'uniform' or 'bytes'"):
        dropout(sparse_features("csr"), 0.5, draw="normal")


@pytest.mark.parametrize("fn", [relu_dropout, elu_dropout])
@pytest.mark.parametrize("p", [1.0, 1.5, -0.5, float("nan"), True, "0.5", None])
def test_the_fused_activations_refuse_a_p_outside_0_1(fn, p):
    # relu_dropout used to return zeros for p >= 1 and mis-scale a negative p, silently
    with pytest.raises(InputError, match=r"dropout probability p must be a number in \[0, 1\)"):
        fn(torch.randn(4, 3), p, True)


@pytest.mark.parametrize("fn", [dropout, relu_dropout, elu_dropout, sparse_dropout])
def test_every_dropout_names_its_bad_arguments(fn):
    x = torch.randn(4, 3)
    with pytest.raises(InputError, match="training must be True or False, got None"):
        fn(x, 0.5, None)
    with pytest.raises(InputError, match=r"expects a floating-point x, got torch\.int64"):
        fn(torch.ones(4, 3, dtype=torch.long), 0.5, True)
    with pytest.raises(InputError, match=r"expects a torch\.Tensor"):
        fn(x.numpy(), 0.5, True)
    if fn is not dropout:
        with pytest.raises(InputError, match="dropout probability p must be a number"):
            fn(x, torch.tensor(0.5), True)
    assert fn(x, 0.5, False).shape == x.shape  # valid arguments: accepted


@pytest.mark.parametrize("fn", [relu_dropout, elu_dropout])
def test_the_fused_activations_refuse_sparse_input(fn):
    with pytest.raises(InputError, match=r"expects a dense x, got layout torch\.sparse_csr"):
        fn(sparse_features("csr"), 0.5, True)
