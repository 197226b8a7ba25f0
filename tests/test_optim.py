"""gnnkit.train.optim: Adam and AdamW whose fused step takes column-major parameters without a
copy, against torch's own optimisers (bit for bit) and the layouts they are handed."""

from __future__ import annotations

import pytest
import torch

from gnnkit.models import GAT
from gnnkit.train import optim
from gnnkit.train.node import TrainConfig, make_optimizer


def parameters(seed=0):
    """A column-major weight (as gnnkit's GCN and GAT keep their first), a permuted 3-D
    tensor, a row-major one and a vector."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=gen)

    return [
        torch.nn.Parameter(rand(37, 5).t()),  # (5, 37), strides (1, 5)
        torch.nn.Parameter(rand(3, 4, 6).permute(2, 0, 1)),
        torch.nn.Parameter(rand(4, 9)),
        torch.nn.Parameter(rand(11)),
    ]


def train(cls, steps=6, **options):
    params = parameters()
    opt = cls(params, lr=0.01, weight_decay=1e-3, **options)
    gen = torch.Generator().manual_seed(1)
    for step in range(steps):
        for p in params:  # gradients in the parameters' own layouts, as autograd leaves them
            values = torch.randn(p.shape, generator=gen).mul_(step + 1)
            p.grad = torch.empty_like(p).copy_(values)
        opt.step()
    return params, opt


@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize(("ours", "theirs"), [(optim.Adam, torch.optim.Adam),
                                                 (optim.AdamW, torch.optim.AdamW)])  # fmt: skip
def test_the_fused_step_gives_torchs_bits(ours, theirs, amsgrad):
    # Against torch's fused step (which copies the column-major gradients first): every
    # parameter and moment bit for bit, in their own layouts; against its per-parameter loop
    # to rounding (the fused kernel's own arithmetic).
    mine, mine_opt = train(ours, fused=True, amsgrad=amsgrad)
    reference, reference_opt = train(theirs, amsgrad=amsgrad, fused=True)
    keys = ("exp_avg", "exp_avg_sq", *(["max_exp_avg_sq"] if amsgrad else []))
    for a, b in zip(mine, reference, strict=True):
        assert a.stride() == b.stride() and torch.equal(a, b)
        for key in keys:
            assert torch.equal(mine_opt.state[a][key], reference_opt.state[b][key])
    loop, _ = train(theirs, amsgrad=amsgrad, foreach=False)
    for a, b in zip(mine, loop, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def _copies(opt) -> int:
    """How many copies (``aten::clone``) one step of ``opt`` makes, seen by the profiler
    (torch's fused CPU kernel makes them below the dispatcher's Python key)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        opt.step()
    return sum(event.name == "aten::clone" for event in prof.events())


def test_no_copy_of_a_column_major_gradient():
    assert _copies(train(optim.Adam, steps=1, fused=True)[1]) == 0
    assert _copies(train(torch.optim.Adam, steps=1, fused=True)[1]) >= 1  # what the views avoid


def test_memory_order_views_dense_tensors_only():
    t = torch.randn(4, 6)
    assert optim.memory_order(t) is t
    view = optim.memory_order(t.t())
    assert view.is_contiguous() and view.data_ptr() == t.data_ptr() and view.shape == (4, 6)
    strided = torch.randn(4, 6)[:, ::2]  # not dense: left as it is
    assert optim.memory_order(strided) is strided
    single = torch.randn(1, 5).t()  # size-1 dimensions: contiguous already
    assert optim.memory_order(single) is single


def test_a_changed_private_api_falls_back_to_torchs_class(monkeypatch):
    assert optim.adam_class() is optim.Adam and optim.adam_class(True) is optim.AdamW

    def other(self, group, params, grads, state):  # a torch whose _init_group changed
        raise AssertionError("not called")

    monkeypatch.setattr(torch.optim.Adam, "_init_group", other)
    assert optim.adam_class() is torch.optim.Adam


def test_the_trainer_uses_it_for_gnnkits_column_major_models():
    model = GAT(20, 3)
    assert not model.conv1.lin.weight.is_contiguous()  # stored transposed
    opt = make_optimizer(model, TrainConfig(epochs=1))
    assert type(opt) is optim.Adam and opt.defaults["fused"]
    assert type(make_optimizer(model, TrainConfig(epochs=1, optimizer="adamw"))) is optim.AdamW
    state = opt.state_dict()  # torch's state dict: loads into torch's own Adam
    torch.optim.Adam(model.parameters(), lr=0.1).load_state_dict(state)


def test_gradients_and_moments_laid_out_unlike_their_parameter_update_the_right_entries():
    # torch's fused step pairs entries by memory position: a row-major gradient on a
    # column-major weight, or moments loaded row-major, update the wrong entries there. Here
    # they are copied into the parameter's layout first (the moments once, in the state).
    def run(cls, relaid_moments=False, **options):
        torch.manual_seed(0)
        p = torch.nn.Parameter(torch.randn(37, 5).t())  # column-major
        opt = cls([p], lr=0.01, **options)
        gen = torch.Generator().manual_seed(2)
        for step in range(4):
            p.grad = torch.randn(5, 37, generator=gen)  # row-major, unlike p
            opt.step()
            if relaid_moments and step == 1:  # as a state loaded in another layout
                for key in ("exp_avg", "exp_avg_sq"):
                    opt.state[p][key] = opt.state[p][key].contiguous()
        return p.detach(), opt

    for relaid in (False, True):
        loop, _ = run(torch.optim.Adam, relaid, foreach=False)
        ours, opt = run(optim.Adam, relaid, fused=True)
        torch.testing.assert_close(ours, loop, rtol=1e-6, atol=1e-7)
        (p,) = opt.param_groups[0]["params"]
        assert opt.state[p]["exp_avg"].stride() == p.stride()
        torchs, _ = run(torch.optim.Adam, relaid, fused=True)
        assert (torchs - loop).abs().max() > 1e-3  # what the copies mend
