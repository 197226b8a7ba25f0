"""Link prediction (ogbl-ddi set-up): model, Hits@K, training loop, checkpoints, errors.

The ``gnnkit bench link`` command line: ``test_bench_link_cli.py``.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.utils import to_undirected

import gnnkit.train.link as linkpred
from gnnkit.errors import CheckpointError, InputError
from gnnkit.models import EmbeddingGNN, HadamardMLP, LinkGNN
from gnnkit.nn.functional import dropout_mask
from gnnkit.ops.hadamard import Workspace, hadamard_mlp
from gnnkit.recipes import LINK_RECIPES, get_recipe
from gnnkit.train.link import LinkData, LinkTrainConfig, fit_link, hits_at_k, link_data, link_run

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")


class TinyLinkDataset:
    """An ogbl-ddi lookalike: ``dataset[0]`` and ``get_edge_split()``, 40 nodes."""

    def __init__(self, num_nodes: int = 40, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        pairs = torch.randint(0, num_nodes, (600, 2), generator=g)
        pairs = pairs[pairs[:, 0] < pairs[:, 1]]
        pairs = torch.unique(pairs, dim=0)
        pairs = pairs[torch.randperm(pairs.size(0), generator=g)]
        train, valid, test = pairs[:150], pairs[150:180], pairs[180:210]
        self.num_nodes = num_nodes
        self.edge_index = to_undirected(train.t(), num_nodes=num_nodes)
        self.split = {
            "train": {"edge": train},
            "valid": {"edge": valid, "edge_neg": torch.randint(0, num_nodes, (50, 2), generator=g)},
            "test": {"edge": test, "edge_neg": torch.randint(0, num_nodes, (50, 2), generator=g)},
        }

    def __getitem__(self, index: int) -> Data:
        return Data(edge_index=self.edge_index, num_nodes=self.num_nodes)

    def get_edge_split(self):
        return self.split


@pytest.fixture(scope="module")
def tiny():
    return link_data(TinyLinkDataset())


def small_model(data: LinkData, conv: str = "gcn", hidden: int = 16) -> LinkGNN:
    encoder = EmbeddingGNN(data.num_nodes, hidden, conv=conv, heads=2)
    return LinkGNN(encoder, HadamardMLP(hidden, hidden))


# --------------------------------------------------------------------------- metric and data


def test_hits_at_k_by_hand():
    pos = torch.tensor([0.9, 0.5, 0.3, 0.8])
    neg = torch.tensor([0.1, 0.6, 0.4, 0.2, 0.7])
    # K-th best negative: 0.7, 0.6, 0.4; positives strictly above it.
    assert hits_at_k(pos, neg, 1) == 0.5
    assert hits_at_k(pos, neg, 2) == 0.5
    assert hits_at_k(pos, neg, 3) == 0.75
    assert hits_at_k(pos, neg, 10) == 1.0  # fewer negatives than K: OGB counts every positive
    with pytest.raises(InputError, match="k must be a positive integer"):
        hits_at_k(pos, neg, 0)


def test_eval_train_sample_is_ogbs(tiny):
    """OGB's example: torch.manual_seed(12345); randperm(|train|)[:|valid|]."""
    state = torch.get_rng_state()
    torch.manual_seed(12345)
    expected = torch.randperm(tiny.train_pos.size(0))[: tiny.valid_pos.size(0)]
    torch.set_rng_state(state)
    assert torch.equal(tiny.eval_train_pos, tiny.train_pos[expected])
    assert tiny.fingerprint() == link_data(TinyLinkDataset()).fingerprint()
    assert tiny.fingerprint() != link_data(TinyLinkDataset(seed=1)).fingerprint()


def test_link_data_errors():
    dataset = TinyLinkDataset()
    split = {**dataset.split, "valid": {"edge": dataset.split["valid"]["edge"]}}
    with pytest.raises(InputError, match="the edge split has no 'valid'/'edge_neg'"):
        link_data(None, edge_index=dataset.edge_index, split=split)
    bad = {
        **dataset.split,
        "test": {"edge": torch.tensor([[0, 99]]), "edge_neg": dataset.split["test"]["edge_neg"]},
    }
    with pytest.raises(
        InputError, match=r"split\['test'\]\['edge'\] holds node index 99, out of range for"
    ):
        link_data(None, edge_index=dataset.edge_index, split=bad)
    with pytest.raises(InputError, match=r"must be an integer tensor of shape \(M, 2\)"):
        link_data(
            None,
            edge_index=dataset.edge_index,
            split={**dataset.split, "train": {"edge": torch.zeros(3)}},
        )


# --------------------------------------------------------------------------- model


def _reference_predictor(h, src, dst, weight, bias, last_weight, last_bias, p, seed):
    """The predictor in plain autograd, with the dropout mask dropout_mask draws after seed."""
    hidden = torch.relu((h[src] * h[dst]) @ weight.t() + bias)
    if p > 0.0:
        torch.manual_seed(seed)
        hidden = hidden * dropout_mask(tuple(hidden.shape), p) / (1.0 - p)
    return hidden if last_weight is None else hidden @ last_weight.t() + last_bias


@pytest.mark.parametrize("p", [0.0, 0.5, 0.3])
@pytest.mark.parametrize("out_channels", [1, 3, None])  # None: the hidden layer is returned
@pytest.mark.parametrize("reuse", [False, True])
def test_fused_predictor_matches_autograd_reference(p, out_channels, reuse):
    torch.manual_seed(0)
    dtype = torch.float64
    h = torch.randn(12, 5, dtype=dtype, requires_grad=True)
    weight = torch.randn(7, 5, dtype=dtype, requires_grad=True)
    bias = torch.randn(7, dtype=dtype, requires_grad=True)
    last_weight = last_bias = None
    inputs = [h, weight, bias]
    if out_channels is not None:
        last_weight = torch.randn(out_channels, 7, dtype=dtype, requires_grad=True)
        last_bias = torch.randn(out_channels, dtype=dtype, requires_grad=True)
        inputs += [last_weight, last_bias]
    src, dst = torch.randint(0, 12, (2, 30))
    workspace = Workspace() if reuse else None

    def ours(h, weight, bias, last_weight=None, last_bias=None):
        torch.manual_seed(7)  # the same dropout mask on every call
        return hadamard_mlp(
            h, torch.stack([src, dst]), weight, bias, last_weight, last_bias, p=p,
            workspace=workspace,
        )  # fmt: skip

    got = ours(*inputs)
    want = _reference_predictor(h, src, dst, weight, bias, last_weight, last_bias, p, seed=7)
    torch.testing.assert_close(got, want)
    if out_channels is None and p > 0.0:  # dropout zeroed some activations, not all
        assert 0 < int((got == 0).sum()) < got.numel()
    upstream = torch.randn_like(want)
    for a, b in zip(
        torch.autograd.grad(got, inputs, upstream),
        torch.autograd.grad(want, inputs, upstream),
        strict=True,
    ):
        torch.testing.assert_close(a, b)
    assert torch.autograd.gradcheck(ours, tuple(inputs))


def _twin_predictors(num_layers: int = 2):
    torch.manual_seed(0)
    fresh = HadamardMLP(6, 8, num_layers=num_layers, reuse_buffers=False)
    reused = HadamardMLP(6, 8, num_layers=num_layers)
    reused.load_state_dict(fresh.state_dict())
    return fresh, reused


def _train_step(model, h, batches, seed):
    """Forward every batch (one graph), then backward; returns the gradients."""
    torch.manual_seed(seed)
    h = h.detach().requires_grad_()
    loss = sum((model(h, pairs) ** 2).sum() for pairs in batches)
    loss.backward()
    grads = [h.grad] + [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    return grads


@pytest.mark.parametrize("num_layers", [2, 3])
def test_reused_buffers_give_the_same_steps(num_layers):
    fresh, reused = _twin_predictors(num_layers)
    h = torch.randn(20, 6)
    pairs = torch.randint(0, 20, (2, 50))
    other = torch.randint(0, 20, (2, 30))
    for seed, batches in enumerate([[pairs], [pairs, other], [other], [pairs, other, pairs]]):
        # several forward passes before one backward (the later ones allocate their own)
        for a, b in zip(
            _train_step(fresh, h, batches, seed),
            _train_step(reused, h, batches, seed),
            strict=True,
        ):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert reused._workspace.nbytes() > 0 and fresh._workspace.nbytes() == 0
    reused.free_buffers()
    assert reused._workspace.nbytes() == 0


def test_reused_buffers_are_reused_and_never_overwritten_under_a_live_graph():
    _, model = _twin_predictors()
    h = torch.randn(20, 6, requires_grad=True)
    pairs = torch.randint(0, 20, (2, 50))
    model(h, pairs).sum().backward()
    pointer = model._workspace._buffers["h_src"].data_ptr()
    out = model(h, pairs)
    assert model._workspace._buffers["h_src"].data_ptr() == pointer  # reused after a backward
    assert model._workspace.acquire() is None  # the live graph holds them
    del out  # a graph freed without backward gives them back
    assert model._workspace.acquire() is not None

    # A second backward through a graph whose buffers a later step reused fails loudly.
    first = model(h, pairs).sum()
    first.backward(retain_graph=True)
    model(h, pairs).sum().backward()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        first.backward()


@pytest.mark.cuda
def test_predictor_on_cuda_equals_cpu():
    fresh, _ = _twin_predictors()
    on_cuda = copy.deepcopy(fresh).cuda()
    h = torch.randn(20, 6)
    pairs = torch.randint(0, 20, (2, 50))
    fresh.eval(), on_cuda.eval()
    torch.testing.assert_close(on_cuda(h.cuda(), pairs.cuda()).cpu(), fresh(h, pairs))
    on_cuda.train()
    h_cuda = h.cuda().requires_grad_()
    (on_cuda(h_cuda, pairs.cuda()) ** 2).sum().backward()
    assert torch.isfinite(h_cuda.grad).all() and on_cuda._workspace.nbytes() == 0


def test_predictor_copies_and_pickles_without_its_buffers(tmp_path):
    _, model = _twin_predictors()
    h = torch.randn(20, 6, requires_grad=True)
    model(h, torch.randint(0, 20, (2, 50))).sum().backward()
    twin = copy.deepcopy(model)
    assert twin._workspace.nbytes() == 0 and twin._workspace is not model._workspace
    torch.save(model, tmp_path / "model.pt")
    loaded = torch.load(tmp_path / "model.pt", weights_only=False)  # our own file, just written
    pairs = torch.randint(0, 20, (2, 9))
    torch.testing.assert_close(loaded.eval()(h, pairs), model.eval()(h, pairs))


@pytest.mark.parametrize("conv", ["gcn", "gat"])
def test_equals_ogbs_model_on_pyg_layers_with_the_same_weights(conv, tiny, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO))
    from gnnkit.bench.pyg import PygDDI

    torch.manual_seed(0)
    theirs = PygDDI(tiny.num_nodes, 16, conv=conv, heads=2).eval()  # float32: PyG's adj_t is
    ours = small_model(tiny, conv).eval()
    mapped = {
        key.replace("emb.", "encoder.embedding.").replace("convs.", "encoder.convs."): value
        for key, value in theirs.state_dict().items()
    }
    ours.load_state_dict(mapped)
    h_ours = ours.encode(ours.prepare_graph(tiny.edge_index, tiny.num_nodes))
    h_theirs = theirs.encode(theirs.prepare_graph(tiny.edge_index, tiny.num_nodes))
    torch.testing.assert_close(h_ours, h_theirs)
    pairs = tiny.valid_pos.t()
    # OGB's predictor returns probabilities, ours logits.
    torch.testing.assert_close(
        torch.sigmoid(ours.score(h_ours, pairs)), theirs.score(h_theirs, pairs)
    )
    pos, neg = tiny.test_pos.t(), tiny.test_neg.t()
    torch.testing.assert_close(
        ours.link_loss(h_ours, pos, neg), theirs.link_loss(h_theirs, pos, neg)
    )


def test_model_interface_and_errors(tiny):
    model = LinkGNN.ogb_ddi(tiny.num_nodes, 32)
    assert model.encoder.hidden_channels == 32 and len(model.encoder.convs) == 2
    assert [len(group) for group in model.clip_groups()] == [1, 4, 4]
    assert "conv=gcn" in repr(model) and "input=hadamard" in repr(model)
    assert set(LINK_RECIPES) == {"gcn", "gat"}
    assert isinstance(get_recipe("link", "gat").build(10, 8).encoder.convs[0], torch.nn.Module)
    with pytest.raises(InputError, match="unknown link model 'sage'; known models: gcn, gat"):
        get_recipe("link", "sage")
    with pytest.raises(
        InputError,
        match=r"pairs holds node index 40, out of range for 40 nodes \(valid: 0 \.\. 39\)",
    ):
        model.score(torch.randn(40, 32), torch.tensor([[0, 1], [40, 2]]))
    with pytest.raises(InputError, match=r"pairs holds node index -1, out of range"):
        model.score(torch.randn(40, 32), torch.tensor([[0, 1], [-1, 2]]))
    with pytest.raises(InputError, match=r"pairs must be an integer tensor of shape \(2, B\)"):
        model.score(torch.randn(40, 32), torch.zeros(5, 2, dtype=torch.long))
    with pytest.raises(InputError, match="the graph has 39 nodes but the model embeds 40"):
        model.prepare_graph(tiny.edge_index, 39)
    with pytest.raises(InputError, match="heads=3 must divide hidden_channels=32"):
        EmbeddingGNN(10, 32, conv="gat", heads=3)
    with pytest.raises(InputError, match="num_layers must be an integer >= 2"):
        HadamardMLP(8, num_layers=1)
    with pytest.raises(
        InputError, match="the predictor takes 8 channels but the encoder produces 16"
    ):
        LinkGNN(EmbeddingGNN(10, 16), HadamardMLP(8))


@pytest.mark.parametrize("num_layers", [2, 3])
def test_predictor_names_a_wrong_width_or_dtype_of_h(num_layers):
    # both reached torch's matmul error inside the fused first layer
    predictor, pairs = HadamardMLP(4, 8, num_layers=num_layers), torch.tensor([[0, 1], [2, 0]])
    with pytest.raises(InputError, match=r"h must be \(\|V\|, 4\).*got \(3, 5\)"):
        predictor(torch.randn(3, 5), pairs)
    with pytest.raises(
        InputError, match=r"h is torch\.float64 on cpu but the weights are torch\.float32"
    ):
        predictor(torch.randn(3, 4, dtype=torch.float64), pairs)
    with pytest.raises(InputError, match=r"h must be \(\|V\|, 4\).*got \(3,\)"):
        predictor(torch.randn(3), pairs)
    lin = predictor.lins[0]
    with pytest.raises(InputError, match=r"pairs must be an integer tensor of shape \(2, B\)"):
        hadamard_mlp(torch.randn(3, 4), pairs.float(), lin.weight, lin.bias)
    # what the checks let through is the module's product, float64 once converted
    h = torch.randn(3, 4, dtype=torch.float64)
    predictor.double().eval()
    want = h[pairs[0]] * h[pairs[1]]
    for layer in predictor.lins[:-1]:
        want = torch.relu(layer(want))
    torch.testing.assert_close(predictor(h, pairs), predictor.lins[-1](want).view(-1))


# --------------------------------------------------------------------------- training loop


def test_training_improves_and_reports_test_at_the_best_validation(tiny):
    torch.manual_seed(0)
    config = LinkTrainConfig(epochs=12, lr=0.01, batch_size=64, eval_every=3, seed=0)
    result = fit_link(small_model(tiny), tiny, config)
    history = result.history
    assert history["eval_epoch"] == [3, 6, 9, 12] and len(history["loss"]) == 12
    assert history["loss"][-1] < history["loss"][0]
    best = max(range(4), key=lambda i: (history["valid_hits@20"][i], -i))
    assert result.best_epoch == history["eval_epoch"][best]
    assert result.test_hits == history["test_hits@20"][best]
    assert result.finished == "epochs" and result.epochs_run == 12
    assert set(history) >= {"train_hits@10", "valid_hits@30", "test_hits@20", "eval_time"}


def test_selection_ties_keep_the_earlier_evaluation(tiny, monkeypatch):
    valid = iter([0.2, 0.5, 0.5, 0.4])
    test = iter([0.1, 0.3, 0.9, 0.8])

    def scripted(*args, ks, **kwargs):
        v, t = next(valid), next(test)
        return {
            f"{p}_hits@{k}": x for k in ks for p, x in (("train", 0.0), ("valid", v), ("test", t))
        }

    monkeypatch.setattr(linkpred, "evaluate_link", scripted)
    config = LinkTrainConfig(epochs=4, batch_size=128, eval_every=1, seed=0)
    result = fit_link(small_model(tiny), tiny, config)
    assert (result.best_epoch, result.valid_hits, result.test_hits) == (2, 0.5, 0.3)


def parameters(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("negatives", ["pyg", "device"])
def test_resume_continues_exactly(tiny, tmp_path, negatives):
    config = LinkTrainConfig(epochs=4, batch_size=64, eval_every=2, seed=3, negatives=negatives)
    torch.manual_seed(0)
    straight_model = small_model(tiny)
    straight = fit_link(straight_model, tiny, config)

    path = tmp_path / "run.pt"
    torch.manual_seed(0)
    first = fit_link(
        small_model(tiny),
        tiny,
        LinkTrainConfig(**{**config.__dict__, "epochs": 2}),
        checkpoint=path,
    )
    assert first.epochs_run == 2 and path.exists()
    torch.manual_seed(123)  # whatever happens between the two calls must not matter
    resumed_model = small_model(tiny)
    resumed = fit_link(resumed_model, tiny, config, checkpoint=path, resume=True)
    assert resumed.resumed_from == 2 and resumed.epochs_run == 4
    assert resumed.history["loss"] == straight.history["loss"]
    assert resumed.history["test_hits@20"] == straight.history["test_hits@20"]
    for key, value in parameters(straight_model).items():
        torch.testing.assert_close(resumed_model.state_dict()[key], value, rtol=0, atol=0)
    # A finished run resumed with the same epochs trains nothing more.
    again = fit_link(small_model(tiny), tiny, config, checkpoint=path, resume=True)
    assert again.epochs_run == 4 and again.history["loss"] == straight.history["loss"]


def test_time_budget_stops_with_a_checkpoint_then_resumes(tiny, tmp_path):
    path = tmp_path / "budget.pt"
    config = LinkTrainConfig(epochs=3, batch_size=64, eval_every=2, seed=5)
    torch.manual_seed(0)
    straight_model = small_model(tiny)
    fit_link(straight_model, tiny, config)

    torch.manual_seed(0)
    tight = LinkTrainConfig(**{**config.__dict__, "time_budget_s": 1e-9})
    partial = fit_link(small_model(tiny), tiny, tight, checkpoint=path)
    assert partial.finished == "time-budget" and partial.epochs_run == 1
    assert partial.best_epoch == 0  # no evaluation yet
    model = small_model(tiny)
    done = fit_link(model, tiny, config, checkpoint=path, resume=True)
    assert done.finished == "epochs" and done.epochs_run == 3 and done.resumed_from == 1
    for key, value in parameters(straight_model).items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0)
    assert done.wall_time >= partial.wall_time


def test_foreign_and_corrupt_checkpoints_are_refused(tiny, tmp_path):
    path = tmp_path / "run.pt"
    config = LinkTrainConfig(epochs=2, batch_size=128, seed=0)
    fit_link(small_model(tiny), tiny, config, checkpoint=path)
    other = LinkTrainConfig(epochs=3, batch_size=128, seed=0, lr=0.1)
    with pytest.raises(CheckpointError, match="different model, configuration or dataset"):
        fit_link(small_model(tiny), tiny, other, checkpoint=path, resume=True)
    with pytest.raises(CheckpointError, match="has already trained 2 epochs, more than the 1"):
        fit_link(
            small_model(tiny),
            tiny,
            LinkTrainConfig(**{**config.__dict__, "epochs": 1}),
            checkpoint=path,
            resume=True,
        )
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="is truncated or corrupt"):
        fit_link(small_model(tiny), tiny, config, checkpoint=path, resume=True)


def test_device_negatives_are_non_edges_of_the_batch_size_and_change_the_run(tiny, monkeypatch):
    drawn = []
    original = LinkGNN.link_loss

    def spy(model, h, pos, neg):
        drawn.append(neg)
        return original(model, h, pos, neg)

    monkeypatch.setattr(LinkGNN, "link_loss", spy)
    histories = {}
    for negatives in ("pyg", "device"):
        torch.manual_seed(0)
        config = LinkTrainConfig(epochs=2, batch_size=64, seed=4, negatives=negatives)
        histories[negatives] = fit_link(small_model(tiny), tiny, config).history["loss"]
    device_drawn = drawn[len(drawn) // 2 :]
    edges = set(map(tuple, tiny.edge_index.t().tolist()))
    per_epoch = math.ceil(tiny.train_pos.size(0) / 64)
    assert len(device_drawn) == 2 * per_epoch
    for neg in device_drawn:
        pairs = list(map(tuple, neg.t().tolist()))
        assert len(set(pairs)) == len(pairs) and not set(pairs) & edges
        assert all(i != j for i, j in pairs)
    assert sum(neg.size(1) for neg in device_drawn[:per_epoch]) == tiny.train_pos.size(0)
    assert histories["pyg"] != histories["device"]  # another random stream, another run


def test_negatives_option_in_the_identity_only_when_not_pygs(tiny, tmp_path):
    # Checkpoints written before the option existed keep resuming under the default.
    assert "negatives" not in LinkTrainConfig().identity()
    assert LinkTrainConfig(negatives="device").identity()["negatives"] == "device"
    path = tmp_path / "run.pt"
    fit_link(small_model(tiny), tiny, LinkTrainConfig(epochs=1, batch_size=128), checkpoint=path)
    other = LinkTrainConfig(epochs=2, batch_size=128, negatives="device")
    with pytest.raises(CheckpointError, match="different model, configuration or dataset"):
        fit_link(small_model(tiny), tiny, other, checkpoint=path, resume=True)


def test_interleaved_trainers_draw_their_own_random_numbers(tiny, interleaving_changes_nothing):
    interleaving_changes_nothing(
        lambda seed: link_run(
            small_model(tiny), tiny, LinkTrainConfig(epochs=2, batch_size=64, seed=seed)
        )
    )


def test_loop_input_errors(tiny):
    for kwargs, message in (
        ({"epochs": 0}, "epochs must be an integer >= 1, got 0"),
        ({"lr": -1.0}, "lr must be a finite number > 0, got -1.0"),
        ({"clip_norm": float("inf")}, "clip_norm must be a finite number > 0 or None, got inf"),
        ({"report_ks": [20]}, "report_ks must be a tuple of positive ints"),
        ({"seed": 1.5}, "seed must be an integer or None"),
        ({"negatives": "numpy"}, "negatives must be one of 'pyg', 'device', got 'numpy'"),
    ):
        with pytest.raises(InputError, match=message):
            LinkTrainConfig(**kwargs)
    with pytest.raises(InputError, match="cannot be trained by fit_link: it has no prepare_graph"):
        fit_link(torch.nn.Linear(2, 2), tiny)
    with pytest.raises(InputError, match="resume=True needs a checkpoint path"):
        fit_link(small_model(tiny), tiny, resume=True)
    with pytest.raises(InputError, match="data must be LinkData"):
        fit_link(small_model(tiny), TinyLinkDataset())
