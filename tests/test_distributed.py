"""Data-parallel training: two CPU processes (gloo) against one process with accumulation."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch_geometric.data import Data

from gnnkit.errors import InputError
from gnnkit.models import BatchNormGCN
from gnnkit.train import CHECKPOINT_FORMAT, TrainConfig, node_inputs
from gnnkit.train.distributed import (
    DistributedWorld,
    default_backend,
    fit_distributed,
    init_distributed,
    launched_by_torchrun,
    shutdown_distributed,
)
from gnnkit.train.minibatch import SamplingConfig, fit_minibatch
from gnnkit.utils.io import safe_torch_load

EPOCHS = 3
CONFIG = TrainConfig(epochs=EPOCHS, lr=0.02, weight_decay=0.0, seed=7, restore_best=False)
SHARD = dict(fanouts=(4, 3), batch_size=12)  # 2 shards of 12 seeds per step


def synthetic_inputs():
    """300 nodes, 4 classes that the features and the graph both hint at."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (300,), generator=g)
    x = torch.randn(300, 8, generator=g) + torch.nn.functional.one_hot(y, 8).float()
    src = torch.randint(0, 300, (1500,), generator=g)
    # Most edges join nodes of one class: pick a random node of the source's class.
    by_class = [torch.nonzero(y == c).view(-1) for c in range(4)]
    dst = torch.stack(
        [by_class[int(c)][torch.randint(len(by_class[int(c)]), (), generator=g)] for c in y[src]]
    )
    masks = torch.zeros(3, 300, dtype=torch.bool)
    order = torch.randperm(300, generator=g)
    masks[0, order[:100]], masks[1, order[100:200]], masks[2, order[200:]] = True, True, True
    data = Data(x=x, edge_index=torch.stack([src, dst]), y=y, num_classes=4)
    data.train_mask, data.val_mask, data.test_mask = masks
    return node_inputs(data, features="dense")


def build_model(rank: int) -> BatchNormGCN:
    torch.manual_seed(1000 + rank)  # each rank initialises differently; DDP copies rank 0's
    return BatchNormGCN(8, 4, hidden_channels=16, num_layers=2, dropout=0.5)


def worker(rank: int, world_size: int, rendezvous: str, out: str) -> None:
    torch.set_num_threads(1)
    init_distributed("gloo", init_method=rendezvous, rank=rank, world_size=world_size, timeout_s=60)
    try:
        model = build_model(rank)
        result = fit_distributed(
            model,
            synthetic_inputs(),
            CONFIG,
            SamplingConfig(**SHARD),
            checkpoint=Path(out) / "run.pt",
        )
        torch.save(
            {"state": model.state_dict(), "history": result.history, "best": result.best_epoch},
            Path(out) / f"rank{rank}.pt",
        )
    finally:
        shutdown_distributed()


def run_two_ranks(tmp_path: Path, deadline_s: float = 150.0) -> None:
    context = mp.start_processes(
        worker,
        args=(2, f"file://{tmp_path / 'rendezvous'}", str(tmp_path)),
        nprocs=2,
        join=False,
        start_method="spawn",
    )
    started = time.monotonic()
    while not context.join(timeout=1.0):
        if time.monotonic() - started > deadline_s:
            for process in context.processes:
                if process.is_alive():
                    process.kill()
            pytest.fail(f"the two ranks did not finish within {deadline_s:.0f} s")


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    run_two_ranks(out)
    return out


@pytest.mark.timeout(240)
def test_ranks_end_identical_and_match_one_process_with_accumulation(two_ranks):
    rank0 = torch.load(two_ranks / "rank0.pt", weights_only=True)
    rank1 = torch.load(two_ranks / "rank1.pt", weights_only=True)
    # Every parameter and buffer (batch-norm statistics included) is identical on both ranks.
    assert rank0["state"].keys() == rank1["state"].keys()
    for key, value in rank0["state"].items():
        assert torch.equal(value, rank1["state"][key]), key
    assert rank0["history"] == rank1["history"]

    # One process, same seeds, the two ranks' shards accumulated into each step.
    torch.set_num_threads(1)
    single = build_model(0)
    fit_minibatch(single, synthetic_inputs(), CONFIG, SamplingConfig(**SHARD, accumulate=2))
    distributed = dict(build_model(0).named_parameters())
    for name, _ in distributed.items():
        got = rank0["state"][name]
        want = dict(single.named_parameters())[name].detach()
        assert torch.allclose(got, want, atol=1e-5, rtol=1e-4), name
    # Training moved the parameters (the comparison is not between two untouched models).
    start = build_model(0).state_dict()["convs.0.lin.weight"]
    assert not torch.allclose(rank0["state"]["convs.0.lin.weight"], start, atol=1e-3)

    # The comparison can fail: one process taking the same seeds in one shard samples other
    # neighbourhoods and ends elsewhere.
    other = build_model(0)
    fit_minibatch(other, synthetic_inputs(), CONFIG, SamplingConfig(fanouts=(4, 3), batch_size=24))
    assert not torch.allclose(
        rank0["state"]["convs.0.lin.weight"], other.state_dict()["convs.0.lin.weight"], atol=1e-5
    )


@pytest.mark.timeout(240)
def test_rank_zero_wrote_one_complete_checkpoint(two_ranks):
    files = sorted(p.name for p in two_ranks.iterdir() if p.suffix == ".pt")
    assert files == ["rank0.pt", "rank1.pt", "run.pt"]  # no partial or per-rank copies
    saved = safe_torch_load(two_ranks / "run.pt", what="checkpoint")
    assert saved["format"] == CHECKPOINT_FORMAT and saved["epoch"] == EPOCHS
    assert saved["run"]["config"]["sampling"]["shards"] == 2
    final = torch.load(two_ranks / "rank0.pt", weights_only=True)["state"]
    for key, value in saved["model"].items():
        assert torch.equal(value, final[key]), key


@pytest.mark.timeout(240)
def test_two_rank_checkpoint_resumes_in_one_process(two_ranks, tmp_path):
    # 2 ranks x 1 shard and 1 process x 2 shards run the same steps: the checkpoint carries over.
    torch.set_num_threads(1)
    path = tmp_path / "run.pt"
    path.write_bytes((two_ranks / "run.pt").read_bytes())
    longer = TrainConfig(**{**CONFIG.__dict__, "epochs": EPOCHS + 1})
    resumed = build_model(5)
    result = fit_minibatch(
        resumed,
        synthetic_inputs(),
        longer,
        SamplingConfig(**SHARD, accumulate=2),
        checkpoint=path,
        resume=True,
    )
    assert result.resumed_from == EPOCHS and result.epochs_run == EPOCHS + 1
    straight = build_model(0)
    fit_minibatch(straight, synthetic_inputs(), longer, SamplingConfig(**SHARD, accumulate=2))
    for name, value in straight.named_parameters():
        got = dict(resumed.named_parameters())[name]
        assert torch.allclose(got, value, atol=1e-5, rtol=1e-4), name
    with pytest.raises(Exception, match=r"different model, configuration.*shards"):
        fit_minibatch(
            build_model(0),
            synthetic_inputs(),
            longer,
            SamplingConfig(**SHARD),  # one shard per step: another trajectory
            checkpoint=path,
            resume=True,
        )


def test_helpers_and_errors(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert not launched_by_torchrun()
    assert default_backend("cpu") == "gloo" and default_backend("cuda") == "nccl"
    with pytest.raises(InputError, match=r"torchrun --nproc_per_node=N"):
        init_distributed()
    with pytest.raises(InputError, match="no process group"):
        DistributedWorld()
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="nccl backend needs CUDA"):
            init_distributed("nccl", init_method="file:///nonexistent", rank=0, world_size=1)
    for name, value in (("RANK", "0"), ("WORLD_SIZE", "2"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29500")
    assert launched_by_torchrun()
