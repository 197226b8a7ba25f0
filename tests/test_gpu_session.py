"""benchmarks/gpu_session.sh: the one prepared call of a lent GPU machine, checked on the CPU.

A session lent a GPU has 15 minutes of device time; a command line that breaks there costs a
rerun. ``GPU_SESSION_DEVICE=cpu`` runs the script's benchmark steps here with tiny settings,
so a broken step shows up in CI instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO

SCRIPT = REPO / "benchmarks" / "gpu_session.sh"


def session(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """``gpu_session.sh run`` with this interpreter, results under ``tmp_path / "out"``."""
    variables = dict(os.environ, OUT=str(tmp_path / "out"), PYTHON=sys.executable, **env)
    command = ["bash", str(SCRIPT), "run"]
    return subprocess.run(command, env=variables, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
@pytest.mark.data
def test_the_cpu_check_runs_every_benchmark_step_and_writes_its_results(
    tmp_path, dataset, data_root
):
    dataset("cora")  # in the session's data root, where the script's commands find it
    steps = {"GPU_SESSION_DEVICE": "cpu", "GPU_SESSION_STEPS": "layers node"}
    proc = session(tmp_path, GNNKIT_DATA=str(data_root), **steps)
    out = tmp_path / "out"
    log = (out / "session.log").read_text()
    assert proc.returncode == 0, log[-4000:]
    assert "=== every step passed" in log and proc.stdout == log  # the log is all of stdout

    layers = json.loads((out / "gat_cpu.json").read_text())
    assert layers["device"] == "cpu" and layers["sizes"] == ["cora"]
    cora = layers["cora"]
    assert set(cora["median_ms"]) == {"gnnkit", "gnnkit-unfused", "pyg", "pyg-tuned"}
    assert cora["outputs_max_abs_diff"] <= 1e-3
    assert "GATConv on the CPU" in (out / "gat_cpu.md").read_text()
    for model in ("gat", "gcn"):
        node = json.loads((out / f"node_cora_{model}_cpu.json").read_text())
        assert node["model"] == model and node["epochs"] == 3
        assert set(node["speedups"]) == {"pyg", "pyg-tuned"}
        for implementation in ("gnnkit", "pyg", "pyg-tuned"):
            assert 0.0 <= node[implementation]["test_acc_mean"] <= 1.0


@pytest.mark.skipif(torch.cuda.is_available(), reason="the step fails only without a GPU")
def test_a_failing_step_is_named_and_the_run_fails_after_the_others(tmp_path):
    # No GPU here: gpu_gat.py refuses --device cuda, and the run says so at the end.
    proc = session(tmp_path, GPU_SESSION_DEVICE="cuda", GPU_SESSION_STEPS="layers")
    log = (tmp_path / "out" / "session.log").read_text()
    assert proc.returncode == 1
    assert "needs a CUDA GPU" in log
    assert "=== layers: exit 1" in log and "=== failed steps: layers" in log


def test_an_unknown_verb_prints_the_usage():
    proc = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "usage: bash benchmarks/gpu_session.sh prepare|run" in proc.stderr
