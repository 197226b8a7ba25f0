"""Atomic writes, safe loading, input checks, plotting helpers and environment facts."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from gnnkit.errors import CheckpointError, InputError
from gnnkit.utils.checks import check_node_features
from gnnkit.utils.env import environment
from gnnkit.utils.io import atomic_open, atomic_torch_save, atomic_write_json, safe_torch_load
from gnnkit.utils.plotting import plot_seed_curves, save_figure, smooth, subplots


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
    with pytest.raises(CheckpointError, match="not allowed to load safely"):
        safe_torch_load(evil)

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
