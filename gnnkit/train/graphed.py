"""A full-batch training step recorded once as a CUDA graph and replayed every epoch.

On a graph as small as Cora a training step on a GPU is a few hundred kernels of a few
microseconds each, and the CPU that launches them one by one sets the epoch's time, not the
GPU (``benchmarks/results/gpu_h200.md``: gnnkit's Cora GAT epoch 6.5 ms on an H200, launch
bound). A CUDA graph (``torch.cuda.CUDAGraph``) records the step's kernels once and launches
all of them with one call. This follows PyTorch's recipe for capturing a whole network
("CUDA Graphs", whole-network capture, in the CUDA semantics notes):

- a few eager steps first, on a side stream, so that lazy state (the optimiser's moments,
  the layers' cached graph structures, cuBLAS workspaces) exists before the capture;
- the capture of one step: forward, loss, backward and the optimiser's update, with the
  gradients set to ``None`` before it, so the captured backward writes them afresh (a replay
  does not add to the previous step's);
- every later step replays the graph: the same kernels on the same memory. The inputs must
  stay where they are (full-batch training reads the same feature and graph tensors every
  epoch), the optimiser must be ``capturable`` (its step count lives on the GPU), and the
  step must not synchronise with the host. Dropout draws new numbers on each replay (PyTorch
  registers the default CUDA generator with the graph and advances its offset per replay).

The returned loss is the graph's own output tensor, overwritten by each replay. The warm-up
and the capture run on one side stream of the model's device (warming up on another stream
than the capture's can create library handles during the capture). A step that cannot be
captured (one that reads values on the host, as deterministic mode's row-blocked SpMM does)
raises :class:`~gnnkit.errors.InputError` naming the cause.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from gnnkit.errors import InputError

__all__ = ["CapturedStep"]

#: Eager steps before the capture (PyTorch's recipe uses 3; DistributedDataParallel needs 11).
WARMUP_STEPS = 3


class CapturedStep:
    """A training step run eagerly ``warmup`` times, then captured as a CUDA graph and replayed.

    Each call takes the step (a callable that returns the loss tensor) rather than keeping
    it, so that a task holding this object and passing its own method holds no reference
    cycle: its model, optimiser and graph are freed as soon as the task is.

    Args:
        device (torch.device): the CUDA device the step's tensors live on.
        warmup (int, optional): eager steps before the capture. (default: ``3``)
        backend (object, optional): what makes graphs and streams; the default is
            ``torch.cuda`` (tests replace it to check the order of calls without a GPU).
    """

    def __init__(self, device: Any, warmup: int = WARMUP_STEPS, backend: Any = None) -> None:
        self.device, self.warmup = device, warmup
        self.backend = torch.cuda if backend is None else backend
        self.eager_steps = 0
        self.stream: Any = None
        self.graph: Any = None
        self.loss: Tensor | None = None

    @property
    def captured(self) -> bool:
        """Whether the step has been captured (every call now replays it)."""
        return self.graph is not None

    def __call__(self, step: Callable[[], Tensor]) -> Tensor:
        """Run ``step`` (one optimiser step that starts from ``None`` gradients, reads only
        tensors that stay in place and does not synchronise with the host), or replay it."""
        backend = self.backend
        with backend.device(self.device):
            if self.graph is not None:
                self.graph.replay()
                assert self.loss is not None
                return self.loss
            if self.stream is None:
                self.stream = backend.Stream()
            if self.eager_steps < self.warmup:
                self.eager_steps += 1
                with self._on_side_stream(), warnings.catch_warnings():
                    # (the capturable optimiser warns that it runs uncaptured: on purpose here)
                    warnings.filterwarnings("ignore", message=".*capturable=True.*")
                    return step()
            return self._capture(step)

    def _capture(self, step: Callable[[], Tensor]) -> Tensor:
        graph = self.backend.CUDAGraph()
        try:
            with self.backend.graph(graph, stream=self.stream):
                loss = step()
        except RuntimeError as exc:
            cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(
                f"the training step could not be captured as a CUDA graph ({cause}); it must "
                "not read values on the host (deterministic mode, data-dependent shapes); "
                "train with cuda_graph=False"
            ) from exc
        self.graph, self.loss = graph, loss
        graph.replay()  # the capture only recorded this epoch's step: run it
        return loss

    @contextlib.contextmanager
    def _on_side_stream(self) -> Any:
        """Run on the side stream after the current stream's work, and make the current
        stream wait for it (the recipe's warm-up)."""
        current = self.backend.current_stream()
        self.stream.wait_stream(current)
        with self.backend.stream(self.stream):
            yield
        current.wait_stream(self.stream)
