"""The training step captured as a CUDA graph (gnnkit.train.graphed, TrainConfig.cuda_graph).

Without a GPU: the order of the capture recipe's calls, on a stand-in for ``torch.cuda``, and
the refusals. With one (``cuda``): training with the captured step equals eager training.
"""

from __future__ import annotations

import contextlib

import pytest
import torch

from gnnkit.errors import InputError
from gnnkit.models import GAT, GCN
from gnnkit.train import TrainConfig, fit, node_inputs
from gnnkit.train.graphed import CapturedStep
from gnnkit.train.node import make_optimizer


class FakeCuda:
    """The parts of ``torch.cuda`` that :class:`CapturedStep` uses, logging every call."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.where = "default"
        fake = self

        class Stream:
            def __init__(self) -> None:
                self.name = f"side{sum(e.startswith('new') for e in fake.log)}"
                fake.log.append(f"new {self.name}")

            def wait_stream(self, other) -> None:
                fake.log.append(f"{self.name} waits for {other.name}")

        class Default(Stream):
            def __init__(self) -> None:
                self.name = "default"

        class CUDAGraph:
            def replay(self) -> None:
                fake.log.append("replay")

        self.Stream, self.CUDAGraph, self.default = Stream, CUDAGraph, Default()

    def current_stream(self):
        return self.default

    @contextlib.contextmanager
    def stream(self, stream):
        outer, self.where = self.where, stream.name
        yield
        self.where = outer

    @contextlib.contextmanager
    def device(self, device):
        self.log.append(f"on {device}")
        yield

    @contextlib.contextmanager
    def graph(self, graph, stream):
        outer, self.where = self.where, "capture"
        self.log.append(f"capture on {stream.name} begins")
        yield
        if getattr(self, "fail_capture", False):
            raise RuntimeError("operation not permitted when stream is capturing\nmore")
        self.log.append("capture ends")
        self.where = outer


def test_three_eager_steps_on_one_side_stream_then_one_capture_then_replays():
    cuda = FakeCuda()
    losses = iter(torch.arange(10.0))
    calls = []

    def step():
        cuda.log.append(f"step on {cuda.where}")
        calls.append(cuda.where)
        return next(losses)

    captured = CapturedStep("cuda:1", backend=cuda)
    eager = [captured(step) for _ in range(3)]
    assert [float(v) for v in eager] == [0.0, 1.0, 2.0] and not captured.captured
    warm = ["side0 waits for default", "step on side0", "default waits for side0"]
    assert cuda.log == ["on cuda:1", "new side0", *warm, "on cuda:1", *warm, "on cuda:1", *warm]
    del cuda.log[:]
    loss = captured(step)  # the capture records the step on the same stream, then runs it
    assert captured.captured and float(loss) == 3.0
    assert cuda.log == [
        "on cuda:1", "capture on side0 begins", "step on capture", "capture ends", "replay"
    ]  # fmt: skip
    del cuda.log[:]
    assert captured(step) is loss and captured(step) is loss  # the graph's output, rewritten
    assert cuda.log == ["on cuda:1", "replay", "on cuda:1", "replay"] and len(calls) == 4


def test_warmup_zero_captures_on_the_first_call():
    cuda = FakeCuda()
    CapturedStep("cuda", warmup=0, backend=cuda)(lambda: torch.zeros(()))
    assert cuda.log == ["on cuda", "new side0", "capture on side0 begins", "capture ends", "replay"]


def test_a_step_that_cannot_be_captured_says_so_in_one_line():
    cuda = FakeCuda()
    cuda.fail_capture = True
    captured = CapturedStep("cuda", warmup=0, backend=cuda)
    with pytest.raises(InputError) as error:
        captured(lambda: torch.zeros(()))
    message = str(error.value)
    assert "\n" not in message and not captured.captured
    assert message.startswith("the training step could not be captured as a CUDA graph "
                              "(operation not permitted when stream is capturing)")  # fmt: skip
    assert message.endswith("train with cuda_graph=False")


def test_a_finished_task_is_freed_without_the_garbage_collector():
    import gc
    import weakref

    from gnnkit.train.node import NodeTask

    inputs = node_inputs(cora_like())
    gc.disable()
    try:
        model = GCN(inputs.num_features, inputs.num_classes)
        task = NodeTask(model, inputs, TrainConfig(epochs=1))
        task.train_epoch(1)
        alive = weakref.ref(model)
        del task, model
        assert alive() is None  # no reference cycle through the task's step
    finally:
        gc.enable()


def cora_like(num_nodes=30, num_features=12, num_classes=3):
    from torch_geometric.data import Data

    gen = torch.Generator().manual_seed(0)
    data = Data(
        x=torch.rand(num_nodes, num_features, generator=gen),
        edge_index=torch.randint(0, num_nodes, (2, 90), generator=gen),
        y=torch.randint(0, num_classes, (num_nodes,), generator=gen),
    )
    masks = torch.zeros(3, num_nodes, dtype=torch.bool)
    for k, (lo, hi) in enumerate(((0, 10), (10, 20), (20, 30))):
        masks[k, lo:hi] = True
    data.train_mask, data.val_mask, data.test_mask = masks
    return data


def test_cuda_graph_on_the_cpu_is_refused_with_what_to_do():
    inputs = node_inputs(cora_like())
    model = GCN(inputs.num_features, inputs.num_classes)
    with pytest.raises(InputError, match="cuda_graph=True captures the training step on a CUDA"):
        fit(model, inputs, TrainConfig(epochs=2, cuda_graph=True))


def test_cuda_graph_in_deterministic_mode_is_refused_with_what_to_do():
    from gnnkit import ops

    inputs = node_inputs(cora_like())
    model = GCN(inputs.num_features, inputs.num_classes)
    with ops.deterministic(), pytest.raises(InputError, match="cannot capture deterministic"):
        fit(model, inputs, TrainConfig(epochs=2, cuda_graph=True))


def test_the_benchmark_refuses_cuda_graph_with_mini_batches():
    from gnnkit.bench.node import run_node_benchmark
    from gnnkit.train.minibatch import SamplingConfig

    with pytest.raises(InputError, match="--cuda-graph captures a full-batch step: drop"):
        run_node_benchmark(
            cora_like(), dataset="cora", model="gcn", cuda_graph=True, sampling=SamplingConfig()
        )


def test_the_cli_refuses_cuda_graph_without_a_cuda_device(capsys):
    from gnnkit.cli import main

    assert main(["bench", "node", "--cuda-graph", "--runs", "1"]) != 0
    assert "--cuda-graph captures CUDA work: add --device cuda" in capsys.readouterr().err


def test_the_option_makes_the_optimiser_capturable_and_joins_the_identity():
    model = GCN(12, 3)
    assert not make_optimizer(model, TrainConfig()).param_groups[0]["capturable"]
    assert make_optimizer(model, TrainConfig(cuda_graph=True)).param_groups[0]["capturable"]
    # Checkpoints written before the option existed keep matching eager runs.
    assert "cuda_graph" not in TrainConfig().identity()
    assert TrainConfig(cuda_graph=True).identity()["cuda_graph"] is True


@pytest.mark.cuda
@pytest.mark.data
@pytest.mark.parametrize("cls", [GCN, GAT])
def test_captured_training_equals_eager_training_on_cora(dataset, cls, monkeypatch):
    steps = []

    class Spy(CapturedStep):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            steps.append(self)

    monkeypatch.setattr("gnnkit.train.node.CapturedStep", Spy)
    inputs = node_inputs(dataset("cora"), features="dense").to("cuda")
    histories = []
    for graphed in (False, True):
        torch.manual_seed(0)
        model = cls(inputs.num_features, inputs.num_classes, dropout=0.0).cuda()
        config = TrainConfig(epochs=12, seed=0, cuda_graph=graphed)
        histories.append(fit(model, inputs, config).history)
    eager, graphed = histories
    torch.testing.assert_close(graphed["loss"], eager["loss"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(graphed["val_acc"], eager["val_acc"], rtol=0, atol=0.005)
    assert len(steps) == 1 and steps[0].captured  # epochs 4-12 replayed the graph


@pytest.mark.cuda
@pytest.mark.data
@pytest.mark.parametrize("cls", [GCN, GAT])
def test_captured_training_with_dropout_learns_cora(dataset, cls):
    inputs = node_inputs(dataset("cora")).to("cuda")
    torch.manual_seed(0)
    model = cls(inputs.num_features, inputs.num_classes).cuda()
    result = fit(model, inputs, TrainConfig(epochs=100, seed=0, cuda_graph=True))
    assert result.val_acc > 0.7  # eager training reaches about 0.79 (GCN) and 0.81 (GAT)
