"""The one range check of integer entries (``gnnkit.utils.checks.check_range``), the device
parsing it shares with ``gnnkit.ops.backend.device_of``, and the shard keys a partition graph
is built from."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_geometric.data import Data

from gnnkit.errors import InputError
from gnnkit.utils import checks
from gnnkit.utils.checks import check_device, check_range

FIX = "fix it"


def _in_range(values, size: int) -> bool:
    """The reference: every entry, one by one, in [0, size)."""
    return all(0 <= int(v) < size for v in np.asarray(values).ravel())


@pytest.mark.parametrize("seed", range(20))
def test_check_range_agrees_with_an_entrywise_reference(seed):
    generator = torch.Generator().manual_seed(seed)
    size = int(torch.randint(1, 8, (1,), generator=generator))
    values = torch.randint(-3, 11, (int(torch.randint(0, 6, (1,), generator=generator)),))
    for given in (values, values.numpy(), values.tolist(), values.int(), values.view(-1, 1)):
        if _in_range(values, size):
            check_range("index", given, size, FIX)
        else:
            with pytest.raises(InputError, match=r"^index holds index -?\d+, out of range for"):
                check_range("index", given, size, FIX)


@pytest.mark.parametrize(
    ("values", "size", "message"),
    [
        (
            [0, 5, 2],
            3,
            r"^y holds class 5, out of range for 3 classes \(valid: 0 \.\. 2\); fix it$",
        ),
        ([0, -4, 9], 3, r"^y holds class -4, out of range for 3 classes"),  # the low end first
        ([0], 0, r"^y holds class 0, out of range for 0 classes \(there are none\); fix it$"),
    ],
)
def test_check_range_names_the_argument_the_bad_value_the_range_and_the_fix(values, size, message):
    for given in (torch.tensor(values), np.array(values), values):
        with pytest.raises(InputError, match=message):
            check_range("y", given, size, FIX, what="class", unit="classes")


def test_check_range_accepts_empty_values_and_the_ends_of_the_range():
    for empty in (torch.zeros(0, dtype=torch.long), np.zeros(0, dtype=np.int64), []):
        check_range("index", empty, 0, FIX)
    check_range("index", torch.tensor([0, 4]), 5, FIX)
    check_range("index", torch.tensor([4], dtype=torch.uint8), 5, FIX)


def test_check_range_reduces_once_and_skips_where_values_cannot_be_read(monkeypatch):
    calls = []
    aminmax = torch.aminmax

    def counted(tensor):
        calls.append(tensor.numel())
        return aminmax(tensor)

    monkeypatch.setattr(torch, "aminmax", counted)
    check_range("index", torch.arange(6), 6, FIX)
    assert calls == [6]
    check_range("index", torch.zeros(0, dtype=torch.long), 6, FIX)
    assert calls == [6]  # nothing to reduce
    monkeypatch.setattr(checks, "values_readable", lambda tensor: False)  # torch.compile traces
    check_range("index", torch.tensor([99]), 6, FIX)
    assert calls == [6]


def test_the_csr_checks_and_every_caller_share_the_one_check_range():
    from gnnkit.citation import metrics
    from gnnkit.distributed import partition
    from gnnkit.ops import _csr_checks
    from gnnkit.seq import memory
    from gnnkit.train import inputs

    for module in (_csr_checks, metrics, partition, memory, inputs):
        assert module.check_range is check_range, module.__name__


def test_node_inputs_refuse_labels_and_splits_out_of_range():
    from gnnkit.train import NodeInputs

    def inputs(**changes):
        fields = {
            "x": torch.ones(4, 2),
            "edge_index": torch.tensor([[0, 1], [1, 2]]),
            "y": torch.tensor([0, 1, 1, 0]),
            "train_idx": torch.tensor([0]),
            "val_idx": torch.tensor([1]),
            "test_idx": torch.tensor([2, 3]),
            "num_classes": 2,
        }
        return NodeInputs(**{**fields, **changes})

    assert inputs().num_nodes == 4
    with pytest.raises(InputError, match=r"^y holds class 3, out of range for 2 classes"):
        inputs(y=torch.tensor([0, 3, 1, 0]))
    with pytest.raises(InputError, match=r"^test_idx holds node index 4, out of range for 4 nodes"):
        inputs(test_idx=torch.tensor([2, 4]))


def test_node_inputs_refuses_features_with_other_rows_than_labels():
    from gnnkit.train import node_inputs

    mask = torch.tensor([True, False, False])
    data = Data(x=torch.eye(2), edge_index=torch.tensor([[0], [1]]), y=torch.tensor([0, 1, 0]))
    data.train_mask, data.val_mask, data.test_mask = mask, mask.roll(1), mask.roll(2)
    with pytest.raises(InputError, match=r"^x has 2 rows but y has 3 labels \(one per node\)$"):
        node_inputs(data)
    data.x = torch.eye(3)
    assert node_inputs(data).num_nodes == 3


def test_memory_evaluate_refuses_labels_beyond_the_models_classes():
    from gnnkit.seq.memory import evaluate

    class Constant(torch.nn.Module):
        def forward(self, tokens):
            return torch.zeros(tokens.size(0), 3)

    tokens = torch.zeros(4, 2, dtype=torch.long)
    loss, accuracy = evaluate(Constant(), tokens, torch.tensor([0, 1, 2, 0]))
    assert loss == pytest.approx(np.log(3)) and accuracy == pytest.approx(0.5)
    with pytest.raises(InputError, match=r"^labels holds class -1, out of range for 3 classes"):
        evaluate(Constant(), tokens, torch.tensor([0, -1, 2, 0]))


def test_check_device_can_take_a_device_this_machine_lacks():
    from gnnkit.ops.backend import device_of

    def lenient(device):
        return check_device("device", device, require_available=False)

    for parse in (lenient, lambda device: device_of("device", device)):
        assert parse("cuda:3") == torch.device("cuda", 3)
        assert parse(torch.device("cpu")) == torch.device("cpu")
        with pytest.raises(InputError, match=r"^device must be cpu, cuda or cuda:N, got 'gpu'$"):
            parse("gpu")
        with pytest.raises(InputError, match=r"^device must be cpu, cuda or cuda:N, got 1\.5$"):
            parse(1.5)
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available on this machine"):
            check_device("device", "cuda:3")


def test_a_partition_graph_is_built_from_the_graph_keys_of_a_shard():
    from gnnkit.distributed import PartitionGraph, build_shards
    from gnnkit.distributed.shards import GRAPH_KEYS, NODE_KEYS, SHARD_KEYS

    assert sorted(SHARD_KEYS) == sorted(set(GRAPH_KEYS) | set(NODE_KEYS))
    assert len(SHARD_KEYS) == len(set(SHARD_KEYS))
    mask = torch.tensor([True, False, True, False])
    data = Data(
        x=torch.ones(4, 2),
        y=torch.tensor([0, 1, 0, 1]),
        edge_index=torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]]),
        train_mask=mask,
        val_mask=~mask,
        test_mask=~mask,
        num_nodes=4,
    )
    shard = build_shards(data, torch.tensor([0, 0, 1, 1]), 2)[0]
    assert set(shard) == set(SHARD_KEYS)  # what build_shards cuts is what the keys name
    graph_only = {key: shard[key] for key in GRAPH_KEYS}
    assert PartitionGraph(graph_only).num_local == 2  # the node data is not needed
    for key in GRAPH_KEYS:
        lacking = {k: v for k, v in graph_only.items() if k != key}
        with pytest.raises(InputError, match=rf"the shard lacks the tensors {key}; load it"):
            PartitionGraph(lacking)
