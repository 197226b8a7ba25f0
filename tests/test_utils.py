"""Atomic writes, safe loading, input checks, random state, plotting helpers and environment
facts."""

from __future__ import annotations

import json
import math
import os
import signal
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from gnnkit.errors import CheckpointError, InputError
from gnnkit.utils.checks import (
    check_choice,
    check_device,
    check_flag,
    check_flags,
    check_int,
    check_ints,
    check_node_features,
    check_number,
    check_probability,
    check_seed,
    check_type,
)
from gnnkit.utils.env import environment
from gnnkit.utils.fields import (
    FLAG,
    OPTIONAL_POSITIVE_NUMBER,
    POSITIVE_INT,
    PROBABILITY,
    SEED,
    one_of,
    rule,
    validate_fields,
)
from gnnkit.utils.io import atomic_open, atomic_torch_save, atomic_write_json, safe_torch_load
from gnnkit.utils.plotting import plot_seed_curves, save_figure, smooth, subplots
from gnnkit.utils.rng import rng_state, seed_everything, set_rng_state
from gnnkit.utils.tensors import MIB, describe_layout, tensor_mib


def test_atomic_write_replaces_only_on_success(tmp_path):
    target = tmp_path / "result.json"
    atomic_write_json(target, {"a": 1})
    with pytest.raises(RuntimeError), atomic_open(target, "w") as handle:
        handle.write('{"half": ')
        raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == {"a": 1}
    assert sorted(os.listdir(tmp_path)) == ["result.json"]  # no temporary file left


def test_atomic_write_gives_normal_permissions(tmp_path):
    fresh = atomic_write_json(tmp_path / "fresh.json", {})
    umask = os.umask(0)
    os.umask(umask)
    assert fresh.stat().st_mode & 0o777 == 0o666 & ~umask
    kept = tmp_path / "kept.json"
    kept.write_text("{}")
    kept.chmod(0o640)
    atomic_write_json(kept, {"a": 1})
    assert kept.stat().st_mode & 0o777 == 0o640


def test_atomic_write_json_refuses_nan(tmp_path):
    with pytest.raises(ValueError):
        atomic_write_json(tmp_path / "x.json", {"loss": float("nan")})
    assert not list(tmp_path.iterdir())


class _Unlisted:
    """Any class outside the allow-list: loading it would execute arbitrary pickle code."""


def test_safe_torch_load_round_trip_and_errors(tmp_path):
    path = tmp_path / "ckpt.pt"
    payload = {"weights": torch.arange(4.0), "step": 3, "name": "model"}
    atomic_torch_save(payload, path)
    loaded = safe_torch_load(path)
    assert torch.equal(loaded["weights"], payload["weights"]) and loaded["step"] == 3

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        safe_torch_load(truncated)
    with pytest.raises(CheckpointError, match="does not exist"):
        safe_torch_load(tmp_path / "missing.pt")

    evil = tmp_path / "evil.pt"
    torch.save({"obj": _Unlisted()}, evil)  # a pickle of an arbitrary class
    with pytest.raises(
        CheckpointError, match=r"holds the global .*_Unlisted, which gnnkit"
    ) as info:
        safe_torch_load(evil)
    # torch's own advice (allow-list it, or load with weights_only=False) is left out
    assert "weights_only" not in str(info.value) and "add_safe_globals" not in str(info.value)

    # Files that are no checkpoint at all: torch's weights-only unpickler fails on them with
    # UnpicklingError or with a bare KeyError/IndexError, depending on the first bytes.
    for name, content in (("notes.txt", b"hello world\n"), ("zeros.bin", b"x" * 100)):
        other = tmp_path / name
        other.write_bytes(content)
        with pytest.raises(CheckpointError, match=r"is not a torch checkpoint, or it is corrupt"):
            safe_torch_load(other)


def test_check_node_features():
    check_node_features(torch.zeros(3, 2), 3)
    check_node_features(torch.eye(3).to_sparse(), 3)
    with pytest.raises(InputError, match="3 rows but the graph has 4 nodes"):
        check_node_features(torch.zeros(3, 2), 4)
    with pytest.raises(InputError, match="floating point"):
        check_node_features(torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(InputError, match="NaN"):
        check_node_features(torch.tensor([[float("nan")]]))
    with pytest.raises(InputError, match="NaN"):
        check_node_features(torch.tensor([[0.0, float("inf")]]).to_sparse())


def test_check_int():
    check_int("epochs", 1)
    check_int("eval_every", 0, 0)
    check_int("seed", -5, None)
    check_int("patience", None, optional=True)
    for value in (0, -1):
        with pytest.raises(InputError, match=f"epochs must be an integer >= 1, got {value}$"):
            check_int("epochs", value)
    with pytest.raises(InputError, match=r"epochs must be an integer >= 1, got 2\.5"):
        check_int("epochs", 2.5)
    with pytest.raises(InputError, match="epochs must be an integer >= 1, got True"):
        check_int("epochs", True)  # a bool is no count
    with pytest.raises(InputError, match="num_layers must be an integer >= 2, got 1"):
        check_int("num_layers", 1, 2)
    with pytest.raises(InputError, match="patience must be an integer >= 1 or None, got 0"):
        check_int("patience", 0, optional=True)
    with pytest.raises(InputError, match="epochs must be an integer >= 1, got None"):
        check_int("epochs", None)
    check_ints(in_channels=3, heads=8)
    with pytest.raises(InputError, match="heads must be an integer >= 1, got 0"):
        check_ints(in_channels=3, heads=0)


@pytest.mark.parametrize(
    ("value", "bounds", "message"),
    [
        (0.0, {"low": 0.0, "open_low": True}, "lr must be a finite number > 0, got 0.0"),
        (-1, {"low": 0.0}, "lr must be a finite number >= 0, got -1"),
        (math.nan, {"low": 0.0}, "lr must be a finite number >= 0, got nan"),
        (math.inf, {"low": 0.0}, "lr must be a finite number >= 0, got inf"),
        (math.inf, {}, "lr must be a finite number, got inf"),
        (6, {"high": 5.0, "open_high": True}, "lr must be a finite number < 5, got 6"),
        (True, {"low": 0.0}, "lr must be a finite number >= 0, got True"),
        ("0.1", {"low": 0.0}, "lr must be a finite number >= 0, got '0.1'"),
        (1.0, {"low": 0.0, "high": 1.0, "open_high": True}, r"lr must be a number in \[0, 1\)"),
        (0.0, {"low": 0.0, "high": 1.0, "open_low": True}, r"lr must be a number in \(0, 1\]"),
        (
            1.5,
            {"low": 0.0, "high": 1.0, "open_low": True, "open_high": True},
            r"lr must be a number in \(0, 1\), got 1.5",
        ),
        (-1e-3, {"low": 0.0, "optional": True}, "lr must be a finite number >= 0 or None"),
    ],
)
def test_check_number_rejects(value, bounds, message):
    with pytest.raises(InputError, match=message):
        check_number("lr", value, **bounds)


def test_check_number_accepts_the_range_and_its_closed_ends():
    check_number("lr", 0.0, 0.0)
    check_number("lr", 3, 0.0, open_low=True)  # an int is a number
    check_number("decay", 1.0, 0.0, 1.0, open_low=True)
    check_number("clip", None, 0.0, optional=True)
    check_probability("dropout", 0.0)
    check_probability("dropout", 0.999)
    for value in (1.0, -0.1, math.nan, None):
        with pytest.raises(InputError, match=r"dropout must be a number in \[0, 1\), got"):
            check_probability("dropout", value)


def test_check_flag_choice_seed_and_type():
    check_flag("cached", False)
    check_flags(cached=True, residual=False)
    with pytest.raises(InputError, match="cached must be True or False, got 1"):
        check_flag("cached", 1)
    with pytest.raises(InputError, match="residual must be True or False, got 'yes'"):
        check_flags(cached=True, residual="yes")
    check_choice("conv", "gat", ("gcn", "gat"))
    with pytest.raises(InputError, match="conv must be one of 'gcn', 'gat', got 'sage'"):
        check_choice("conv", "sage", ("gcn", "gat"))
    for seed in (None, 0, -3, 2**40, -(2**63), 2**64 - 1):  # torch.manual_seed's range
        check_seed("seed", seed)
        if seed is not None:
            torch.manual_seed(seed)
    for seed in (1.5, "1", True):
        with pytest.raises(InputError, match="seed must be an integer or None, got"):
            check_seed("seed", seed)
    for seed in (2**64, 2**70, -(2**63) - 1):  # torch refuses these only once training starts
        with pytest.raises(InputError, match=r"seed must be a 64-bit integer \(-9223372036"):
            check_seed("seed", seed)
        with pytest.raises(ValueError, match="Overflow"):
            torch.manual_seed(seed)
    check_type("config", 3, int, "an int")
    with pytest.raises(InputError, match="config must be a TrainConfig, got dict"):
        check_type("config", {}, tuple, "a TrainConfig")


@dataclass(frozen=True)
class _Config:
    epochs: int = field(default=10, metadata=POSITIVE_INT)
    dropout: float = field(default=0.5, metadata=PROBABILITY)
    clip: float | None = field(default=None, metadata=OPTIONAL_POSITIVE_NUMBER)
    mode: str = field(default="a", metadata=one_of("a", "b"))
    decay: float = field(default=1.0, metadata=rule(check_number, low=0.0, high=1.0, open_low=True))
    seed: int | None = field(default=None, metadata=SEED)
    shuffle: bool = field(default=True, metadata=FLAG)
    verbose: bool = False  # annotated bool, no rule: True or False
    note: object = None  # no rule: never checked

    def __post_init__(self) -> None:
        validate_fields(self)


@dataclass(frozen=True)
class _Longer(_Config):
    epochs: int = 100  # a new default keeps the base class's rule
    mode: str = field(default="c", metadata=one_of("c", "d"))  # a new rule replaces it


@dataclass(frozen=True)
class _Qualified:
    size: int = field(default=1, metadata=POSITIVE_INT)

    def __post_init__(self) -> None:
        validate_fields(self, qualified=True)  # messages name "_Qualified.size"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"epochs": 0}, "epochs must be an integer >= 1, got 0"),
        ({"dropout": 1.0}, r"dropout must be a number in \[0, 1\), got 1.0"),
        ({"clip": 0.0}, "clip must be a finite number > 0 or None, got 0.0"),
        ({"mode": "c"}, "mode must be one of 'a', 'b', got 'c'"),
        ({"decay": 0.0}, r"decay must be a number in \(0, 1\], got 0.0"),
        ({"seed": "7"}, "seed must be an integer or None, got '7'"),
        ({"shuffle": None}, "shuffle must be True or False, got None"),
        ({"verbose": "no"}, "verbose must be True or False, got 'no'"),
        ({"epochs": -1, "dropout": 2.0}, "epochs must be"),  # the first field in order
    ],
)
def test_validate_fields_applies_each_fields_rule(changes, message):
    with pytest.raises(InputError, match=message):
        _Config(**changes)


def test_validate_fields_accepts_valid_values_and_follows_subclasses():
    config = _Config(clip=2.0, mode="b", decay=0.5, seed=-1, shuffle=False, note=object())
    assert (config.epochs, config.clip, config.mode) == (10, 2.0, "b")
    assert _Longer().epochs == 100 and _Longer(mode="d").mode == "d"
    with pytest.raises(InputError, match="epochs must be an integer >= 1, got 0"):
        _Longer(epochs=0)
    with pytest.raises(InputError, match="mode must be one of 'c', 'd', got 'a'"):
        _Longer(mode="a")
    with pytest.raises(InputError, match=r"_Qualified\.size must be an integer >= 1, got 0"):
        _Qualified(size=0)


def test_rng_state_restores_what_torch_python_and_numpy_seeding_drew():
    import random

    seed_everything(7)
    state = rng_state(cuda=False)
    assert set(state) == {"torch", "python"}  # no CUDA state unless asked for
    first = (torch.rand(3), random.random())
    set_rng_state(state)
    assert torch.equal(torch.rand(3), first[0]) and random.random() == first[1]
    set_rng_state({"torch": state["torch"]})  # Python's generator is left where it was
    assert torch.equal(torch.rand(3), first[0]) and random.random() != first[1]
    seed_everything(7)
    assert torch.equal(torch.rand(3), first[0])
    seed_everything(2**32 + 7)  # NumPy takes the seed modulo 2**32
    numpy_draw = np.random.rand()
    seed_everything(7)
    assert np.random.rand() == numpy_draw


def test_smooth_is_a_trailing_moving_average():
    values = [1.0, 3.0, 5.0, 7.0]
    assert smooth(values, 2).tolist() == [1.0, 2.0, 4.0, 6.0]
    assert smooth(values, 1).tolist() == values
    expected = [np.mean(values[max(0, i - 2) : i + 1]) for i in range(4)]
    assert np.allclose(smooth(values, 3), expected)


def test_plot_seed_curves_draws_runs_and_mean(tmp_path):
    fig, ax = subplots()
    plot_seed_curves(ax, [[1, 2, 3], [2, 3]], label="mean", window=1)
    lines = ax.get_lines()
    assert len(lines) == 3  # two light runs + one dark mean
    assert lines[-1].get_ydata().tolist() == [1.5, 2.5, 3.0]  # mean over the runs still going
    path = save_figure(fig, tmp_path / "curves.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_environment_reports_versions():
    env = environment()
    assert env["torch"] == torch.__version__ and env["device"] == "cpu"
    assert env["threads"] == torch.get_num_threads() and env["cpu"]


def test_tensor_mib_counts_values_and_sparse_indices():
    dense = torch.zeros(4, 8)  # 32 float32 values
    assert tensor_mib(dense) == pytest.approx(32 * 4 / MIB)
    index = torch.tensor([[0, 1, 1], [2, 0, 2]])
    coo = torch.sparse_coo_tensor(torch.cat([index, index], 1), torch.ones(6), (2, 3))
    # coalesced: 3 positions, two int64 indices and one float32 value each
    assert tensor_mib(coo) == pytest.approx(3 * (2 * 8 + 4) / MIB)
    csr = coo.coalesce().to_sparse_csr()  # 3 row pointers, 3 columns, 3 values
    assert tensor_mib(csr) == pytest.approx((3 * 8 + 3 * 8 + 3 * 4) / MIB)


def test_describe_layout_names_the_layout_shape_and_non_zeros():
    dense = torch.eye(3)
    assert describe_layout(dense) == "dense (3, 3)"
    assert describe_layout(dense.to_sparse()) == "sparse coo (3, 3), 3 non-zeros"
    assert describe_layout(dense.to_sparse_csr()) == "sparse csr (3, 3), 3 non-zeros"


def test_the_trainers_flags_refuse_strings_that_would_read_as_true():
    from gnnkit.graph import from_edge_list
    from gnnkit.ops import CSRGraph, spmm
    from gnnkit.train import TrainConfig

    for name in ("restore_best", "cuda_graph"):
        with pytest.raises(InputError, match=f"{name} must be True or False, got 'False'"):
            TrainConfig(**{name: "False"})
    with pytest.raises(InputError, match="directed must be True or False, got 'no'"):
        from_edge_list(["a-b"], directed="no")
    graph = CSRGraph.from_edge_index(torch.tensor([[0], [1]]), 2)
    with pytest.raises(InputError, match="deterministic must be True, False or None, got 'yes'"):
        spmm(graph, torch.ones(1), torch.ones(2, 3), deterministic="yes")
    assert from_edge_list(["a-b"], directed=True)[0].tolist() == [[0], [1]]


def test_check_device_names_a_bad_or_missing_device():
    assert check_device("device", "cpu") == torch.device("cpu")
    with pytest.raises(InputError, match="device must be cpu, cuda or cuda:N, got 'gpu'"):
        check_device("device", "gpu")
    if not torch.cuda.is_available():  # torch itself raises an AssertionError from deep inside
        with pytest.raises(InputError, match="'cuda:1': CUDA is not available on this machine"):
            check_device("device", "cuda:1")
        from torch_geometric.data import Data

        from gnnkit.ops import CSRGraph
        from gnnkit.train import node_inputs

        graph = CSRGraph.from_edge_index(torch.tensor([[0], [1]]), 2)
        with pytest.raises(InputError, match="CUDA is not available"):
            graph.to("cuda")
        data = Data(x=torch.eye(2), edge_index=torch.tensor([[0], [1]]), y=torch.tensor([0, 1]))
        with pytest.raises(InputError, match="CUDA is not available"):
            node_inputs(data, device="cuda")


def test_refused_global_keeps_the_name_and_drops_torchs_advice():
    from gnnkit.utils.io import refused_global

    message = (
        "Weights only load failed. ... Re-running `torch.load` with `weights_only` set to "
        "`False` will likely succeed ... Unsupported global: GLOBAL os.system was not an "
        "allowed global by default. Please use `torch.serialization.add_safe_globals([system])`"
    )
    assert refused_global(message) == "the global os.system"
    assert refused_global("Weights only load failed.") == "objects outside the allow-list"


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="no signal masks here")
def test_signals_held_delivers_held_signals_once_when_the_block_ends():
    # With another thread running (torch starts some), the kernel may hand a process signal
    # to that thread; Python still runs the handler in the main thread, at its next bytecode.
    # The sleeps inside the block give it every chance to: a held signal must wait anyway.
    import threading
    import time

    from gnnkit.utils.signals import signals_held

    stop = threading.Event()
    other = threading.Thread(target=stop.wait, daemon=True)
    other.start()
    terms: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda number, _: terms.append(number))
    steps = []
    try:
        with pytest.raises(KeyboardInterrupt):
            with signals_held(signal.SIGINT, signal.SIGTERM):
                os.kill(os.getpid(), signal.SIGINT)
                os.kill(os.getpid(), signal.SIGTERM)
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(5):
                    time.sleep(0.01)
                steps.append("inside, after the signals")
                assert terms == []
            steps.append("after the block")  # not reached: raised as the block ends
        assert steps == ["inside, after the signals"] and terms == [signal.SIGTERM]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGTERM, previous)
        stop.set()
