"""Checkpoints: round trip, refusal of foreign or corrupt files, and resume after a real kill."""

from __future__ import annotations

import collections
import fractions
import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from gnnkit.data import load
from gnnkit.errors import CheckpointError, InputError
from gnnkit.models import GAT, GCN
from gnnkit.train import (
    CHECKPOINT_FORMAT,
    TrainConfig,
    fit,
    load_checkpoint,
    node_inputs,
    save_checkpoint,
    seed_everything,
)
from gnnkit.train.checkpoint import check_loadable

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def karate():
    return node_inputs(load("karate"))


def gcn(inputs, seed=0):
    seed_everything(seed)
    return GCN(inputs.num_features, inputs.num_classes)


def same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_round_trip(karate, tmp_path):
    path = tmp_path / "ckpt" / "run.pt"
    model = gcn(karate)
    config = TrainConfig(epochs=5, seed=0, restore_best=False, checkpoint_every=2)
    result = fit(model, karate, config, checkpoint=path)
    state = load_checkpoint(path)  # weights_only: tensors, numbers, strings, lists, dicts
    assert state["format"] == CHECKPOINT_FORMAT
    assert state["epoch"] == 5 and state["finished"] == "epochs"
    assert same_state(state["model"], model.state_dict())
    assert {key: state["history"][key] for key in result.history} == result.history
    assert state["times"]["epoch"] == result.epoch_times
    assert (
        state["best"]["epoch"] == result.best_epoch and state["best"]["test_acc"] == result.test_acc
    )
    assert state["run"]["model"] == "gnnkit.models.gcn.GCN"
    assert state["run"]["config"]["lr"] == 0.01
    assert not list(path.parent.glob("*.tmp"))  # nothing half-written left behind


def test_resuming_a_finished_run_returns_its_result_without_training(karate, tmp_path):
    path = tmp_path / "run.pt"
    config = TrainConfig(epochs=4, seed=0)
    first = fit(gcn(karate), karate, config, checkpoint=path)
    again_model = gcn(karate, seed=99)  # different initial weights: the checkpoint wins
    again = fit(again_model, karate, config, checkpoint=path, resume=True)
    assert again.resumed_from == 4 and again.history == first.history
    assert (again.best_epoch, again.test_acc) == (first.best_epoch, first.test_acc)


def test_resume_with_more_epochs_equals_one_longer_run(karate, tmp_path):
    path = tmp_path / "run.pt"
    fit(gcn(karate), karate, TrainConfig(epochs=4, seed=0), checkpoint=path)
    extended = fit(gcn(karate), karate, TrainConfig(epochs=7, seed=0), checkpoint=path, resume=True)
    straight = fit(gcn(karate), karate, TrainConfig(epochs=7, seed=0))
    assert extended.resumed_from == 4 and extended.history == straight.history
    with pytest.raises(
        CheckpointError, match="already trained 7 epochs, more than the 5 asked for"
    ):
        fit(gcn(karate), karate, TrainConfig(epochs=5, seed=0), checkpoint=path, resume=True)


def test_resume_without_a_checkpoint_starts_afresh(karate, tmp_path):
    path = tmp_path / "absent.pt"
    result = fit(gcn(karate), karate, TrainConfig(epochs=2, seed=0), checkpoint=path, resume=True)
    assert result.resumed_from == 0 and path.is_file()


def test_foreign_checkpoints_are_refused(karate, tmp_path):
    path = tmp_path / "run.pt"
    fit(gcn(karate), karate, TrainConfig(epochs=2, seed=0), checkpoint=path)
    seed_everything(0)
    gat = GAT(karate.num_features, karate.num_classes)
    with pytest.raises(
        CheckpointError,
        match=r"different model, configuration or dataset \(model: 'gnnkit.models.gcn.GCN' in the checkpoint, 'gnnkit.models.gat.GAT' now",
    ):
        fit(gat, karate, TrainConfig(epochs=4, seed=0), checkpoint=path, resume=True)
    with pytest.raises(CheckpointError, match=r"config.lr: 0.01 in the checkpoint, 0.02 now"):
        fit(
            gcn(karate),
            karate,
            TrainConfig(epochs=4, lr=0.02, seed=0),
            checkpoint=path,
            resume=True,
        )
    wider = GCN(karate.num_features, karate.num_classes, hidden_channels=8)
    with pytest.raises(
        CheckpointError, match=r"parameters.conv1.bias: \[16\] in the checkpoint, \[8\] now"
    ):
        fit(wider, karate, TrainConfig(epochs=4, seed=0), checkpoint=path, resume=True)
    other = node_inputs(load("karate", root=tmp_path), features="dense")
    other.y = other.y.flip(0)
    with pytest.raises(CheckpointError, match=r"data.sha256"):
        fit(gcn(other), other, TrainConfig(epochs=4, seed=0), checkpoint=path, resume=True)


def test_corrupt_and_alien_files_are_refused(karate, tmp_path):
    path = tmp_path / "run.pt"
    fit(gcn(karate), karate, TrainConfig(epochs=2, seed=0), checkpoint=path)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        fit(gcn(karate), karate, TrainConfig(epochs=2, seed=0), checkpoint=truncated, resume=True)
    empty = tmp_path / "empty.pt"
    empty.touch()
    with pytest.raises(CheckpointError, match=r"empty.pt is empty \(0 bytes\) \(EOFError"):
        load_checkpoint(empty)
    alien = tmp_path / "alien.pt"
    torch.save({"weights": torch.zeros(2)}, alien)
    with pytest.raises(CheckpointError, match="not a gnnkit training checkpoint"):
        load_checkpoint(alien)
    incomplete = tmp_path / "incomplete.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "run": {}}, incomplete)
    with pytest.raises(CheckpointError, match="is incomplete: no epoch, model"):
        load_checkpoint(incomplete)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nothing.pt")


def test_a_flipped_bit_in_a_weight_is_refused_not_loaded(karate, tmp_path):
    """torch loads a zip checkpoint without checking its records' CRC-32: one flipped low bit
    of a weight loads as a slightly different number. gnnkit checks them first."""
    import struct
    import zipfile

    path = tmp_path / "run.pt"
    fit(gcn(karate), karate, TrainConfig(epochs=2, seed=0), checkpoint=path)
    weight = load_checkpoint(path)["model"]["conv1.lin.weight"]
    value = float(weight.reshape(-1)[7])
    data = bytearray(path.read_bytes())
    at = data.find(struct.pack("<f", value))
    assert at > 0
    data[at] ^= 1  # the lowest bit of the mantissa
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(bytes(data))
    silently = torch.load(damaged, weights_only=True)["model"]["conv1.lin.weight"]
    assert 0 < abs(float(silently.reshape(-1)[7]) - value) < 1e-6 * abs(value)
    with zipfile.ZipFile(damaged) as archive:
        record = archive.testzip()
    with pytest.raises(CheckpointError, match=rf"is corrupt: its record {record} does not match"):
        load_checkpoint(damaged)
    with pytest.raises(CheckpointError, match="does not match the checksum"):
        fit(gcn(karate), karate, TrainConfig(epochs=3, seed=0), checkpoint=damaged, resume=True)
    assert load_checkpoint(path)["epoch"] == 2  # the intact file still loads
    header = bytearray(path.read_bytes())  # the first record's "encrypted" flag, in its header
    header[header.find(b"PK\x01\x02") + 8] ^= 1
    damaged.write_bytes(bytes(header))
    with pytest.raises(CheckpointError, match=r"is truncated or corrupt \(RuntimeError: .*encr"):
        load_checkpoint(damaged)


def test_a_checkpoint_saved_without_crcs_loads(karate, tmp_path):
    """torch writes a CRC of 0 when told not to compute them: nothing to check, not damage."""
    import zipfile

    from torch.utils.serialization import config

    path = tmp_path / "run.pt"
    before = config.save.compute_crc32  # (torch's config objects refuse monkeypatch's delattr)
    config.save.compute_crc32 = False
    try:
        fit(gcn(karate), karate, TrainConfig(epochs=2, seed=0), checkpoint=path)
    finally:
        config.save.compute_crc32 = before

    with zipfile.ZipFile(path) as archive:
        assert {info.CRC for info in archive.infolist()} == {0}
    assert load_checkpoint(path)["epoch"] == 2


CHILD = """
import sys, time
import torch
torch.set_num_threads(1)
from gnnkit.data import load
from gnnkit.models import GCN
from gnnkit.train import TrainConfig, fit, node_inputs, seed_everything

inputs = node_inputs(load("karate"))
seed_everything(0)
model = GCN(inputs.num_features, inputs.num_classes)
config = TrainConfig(epochs={epochs}, seed=0, checkpoint_every=1)
fit(model, inputs, config, checkpoint=sys.argv[1], resume=True, callback=lambda r: time.sleep(0.02))
print("finished")
"""


@pytest.mark.timeout(180)
def test_resume_after_sigkill_equals_an_uninterrupted_run(karate, tmp_path):
    epochs, kill_after = 150, 12
    path = tmp_path / "killed.pt"
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(CHILD.format(epochs=epochs)))
    env = {**os.environ, "PYTHONPATH": str(REPO), "GNNKIT_OFFLINE": "1"}
    child = subprocess.Popen([sys.executable, str(script), str(path)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and child.poll() is None:
            if path.exists() and load_checkpoint(path)["epoch"] >= kill_after:
                break
            time.sleep(0.01)
        assert child.poll() is None, f"the child ended before it was killed: {child.communicate()}"
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    killed_at = load_checkpoint(path)["epoch"]
    assert kill_after <= killed_at < epochs

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config = TrainConfig(epochs=epochs, seed=0, checkpoint_every=1)
        resumed_model = gcn(karate, seed=123)  # any weights: the checkpoint restores them
        resumed = fit(resumed_model, karate, config, checkpoint=path, resume=True)
        straight_model = gcn(karate)
        straight = fit(straight_model, karate, config)
    finally:
        torch.set_num_threads(threads)
    assert resumed.resumed_from == killed_at
    assert resumed.history == straight.history  # bit for bit, every epoch
    assert (resumed.best_epoch, resumed.val_acc, resumed.test_acc) == (
        straight.best_epoch,
        straight.val_acc,
        straight.test_acc,
    )
    assert same_state(resumed_model.state_dict(), straight_model.state_dict())


def test_save_checkpoint_refuses_a_bad_state_or_path_and_writes_nothing(tmp_path):
    path = tmp_path / "run.pt"
    # each used to escape as a TypeError or AttributeError from torch's or os's internals
    with pytest.raises(InputError, match=r"state must be a dict, got list"):
        save_checkpoint([1, 2], path)
    with pytest.raises(InputError, match=r"path must be a str or os\.PathLike .* got None"):
        save_checkpoint({"epoch": 1}, None)
    with pytest.raises(
        InputError,
        match=r"run\.pt: entry callback has type function, which cannot be pickled \(.*pickle",
    ):
        save_checkpoint({"callback": lambda: 1}, path)
    assert list(tmp_path.iterdir()) == []  # no checkpoint, no temporary file left behind
    assert save_checkpoint({"epoch": 1}, path) == path
    assert torch.load(path, weights_only=True) == {"format": CHECKPOINT_FORMAT, "epoch": 1}


class _Settings:
    """A user's own class, which torch's weights-only unpickler refuses."""

    def __init__(self, rate: float) -> None:
        self.rate = rate


def _loads_back(obj):
    """The independent reference: torch.save, then torch.load(weights_only=True)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    try:
        torch.load(buffer, weights_only=True)
    except Exception:
        return False
    return True


@pytest.mark.parametrize(
    ("state", "where", "kind"),
    [
        ({"task": {"ratio": fractions.Fraction(1, 3)}}, "entry task.ratio", "fractions.Fraction"),
        ({"history": {"loss": [0.5, np.float64(0.4)]}}, r"entry history.loss\[1\]", "numpy"),
        ({"task": {"settings": _Settings(0.1)}}, "entry task.settings", r"test_train_\w+._Set"),
        ({"task": {fractions.Fraction(1, 2): 1}}, "a key of entry task", "fractions.Fraction"),
        ({"task": collections.deque([1, 2])}, "entry task", "collections.deque"),
        ({"task": [(1, frozenset({2}))]}, r"entry task\[0\]\[1\]", "frozenset"),
    ],
)
def test_save_checkpoint_refuses_state_that_would_not_load_back(tmp_path, state, where, kind):
    assert not _loads_back(state)  # torch would refuse it when the run resumes
    path = tmp_path / "run.pt"
    earlier = save_checkpoint({"epoch": 1, "model": {"w": torch.ones(3)}}, path)
    written = earlier.read_bytes()
    with pytest.raises(
        InputError,
        match=rf"^cannot save checkpoint {path}: {where} has type {kind}.*, which torch\.load\("
        r"weights_only=True\) refuses \(.*\), so the run could not resume from it; store it "
        r"as tensors, numbers, strings, lists, tuples or dicts instead .*; nothing was written$",
    ):
        save_checkpoint({"epoch": 2, **state}, path)
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]  # no temporary file left
    assert path.read_bytes() == written  # the earlier checkpoint is untouched


def test_save_checkpoint_refuses_an_int_beyond_the_loader_and_says_to_store_a_str(tmp_path):
    state = {"big": 1 << 3000}
    assert not _loads_back(state)
    with pytest.raises(
        InputError,
        match=r"^cannot save the checkpoint: entry big has type int, which torch\.load\("
        r"weights_only=True\) refuses .*; store so large an int as a str \(str\(x\)\); nothing "
        r"was written$",
    ):
        check_loadable(state)


def test_save_checkpoint_keeps_tensors_the_meta_device_cannot_hold(tmp_path):
    # judged on the CPU instead: quantized and nested tensors load back with weights_only
    quantized = torch.quantize_per_tensor(torch.arange(4.0), 0.5, 0, torch.qint8)
    nested = torch.nested.nested_tensor([torch.ones(2), torch.ones(3)])
    # inside sets, so torch judges them (neither loads onto the meta device)
    state = {"task": {"kept": {quantized}, "ragged": {nested}}}
    assert _loads_back(state)
    path = save_checkpoint(state, tmp_path / "run.pt")
    back = torch.load(path, weights_only=True)["task"]
    assert torch.equal(next(iter(back["kept"])).dequantize(), quantized.dequantize())
    assert next(iter(back["ragged"])).is_nested


def test_save_checkpoint_keeps_what_torch_loads_back(tmp_path):
    # torch's allow-list, beyond plain data: each must be written and read back unchanged
    tagged = torch.arange(3.0)
    tagged.note = "kept"  # a tensor's Python attributes are pickled with it
    ordered = collections.OrderedDict(w=torch.ones(2))
    ordered._metadata = {"": {"version": 1}}  # as in a module's state_dict
    extra = {
        "size": torch.Size([2, 3]),
        "device": torch.device("cpu"),
        "dtype": torch.bfloat16,
        "tags": {"a", "b"},
        "counts": collections.Counter("abca"),
        "blob": bytearray(b"xy"),
        "z": 1 + 2j,
        "tagged": tagged,
        "ordered": ordered,
    }
    shared = [1, 2]
    cyclic: list = [shared, shared]
    cyclic.append(cyclic)  # pickle keeps shared and cyclic references
    assert _loads_back(extra) and _loads_back(cyclic)
    path = save_checkpoint({"task": extra, "cyclic": cyclic}, tmp_path / "run.pt")
    back = torch.load(path, weights_only=True)
    assert back["task"]["size"] == torch.Size([2, 3]) and back["task"]["dtype"] is torch.bfloat16
    assert back["task"]["counts"] == collections.Counter("abca")
    assert back["task"]["tagged"].note == "kept"
    assert back["task"]["ordered"]._metadata == {"": {"version": 1}}
    assert back["cyclic"][2] is back["cyclic"] and back["cyclic"][0] is back["cyclic"][1]


def test_save_checkpoint_accepts_a_class_the_user_allows(tmp_path):
    state = {"task": {"settings": _Settings(0.1)}}
    with pytest.raises(InputError, match=r"entry task\.settings has type"):
        save_checkpoint(state, tmp_path / "refused.pt")
    with torch.serialization.safe_globals([_Settings]):  # torch's own allow-list decides
        path = save_checkpoint(state, tmp_path / "run.pt")
        assert torch.load(path, weights_only=True)["task"]["settings"].rate == 0.1
