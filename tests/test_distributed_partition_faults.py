"""Faults of a partitioned job: every rank stops with one clear line, none hangs (issue 20).

Each test starts the ranks as forked processes running ``python -m gnnkit.distributed``'s
:func:`main` with torchrun's environment variables, and waits for all of them with a deadline.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import sys
import time
from pathlib import Path

import pytest
import torch

from gnnkit.distributed import partition_dataset
from gnnkit.distributed.synthetic import power_law_graph
from gnnkit.errors import InputError

DEADLINE_S = 60.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, world: int, port: int, argv: list[str], out: str, sabotage: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    err = os.open(Path(out) / f"rank{rank}.err", os.O_WRONLY | os.O_CREAT)
    os.dup2(err, 2)
    sys.stderr = os.fdopen(2, "w", buffering=1)
    from gnnkit.distributed import __main__ as entry
    from gnnkit.distributed import train

    if sabotage == "version" and rank == 1:
        train.version_hash = lambda: "0" * 16  # type: ignore[assignment]
    if sabotage == "die" and rank == 1:
        original = train.PartitionTask.train_epoch

        def train_epoch(self, epoch):
            if epoch == 2:
                os._exit(17)  # a crash: no clean-up, no goodbye to the other ranks
            return original(self, epoch)

        train.PartitionTask.train_epoch = train_epoch  # type: ignore[method-assign]
    if sabotage == "hang" and rank == 1:
        original = train.PartitionTask.train_epoch

        def train_epoch(self, epoch):
            if epoch == 2:  # alive but stuck, until rank 0 has given up (or a minute passed)
                stop = time.monotonic() + DEADLINE_S
                while not (Path(out) / "rank0.code").exists() and time.monotonic() < stop:
                    time.sleep(0.05)
            return original(self, epoch)

        train.PartitionTask.train_epoch = train_epoch  # type: ignore[method-assign]
    code = entry.main(argv)
    (Path(out) / f"rank{rank}.code").write_text(str(code))
    (Path(out) / f"rank{rank}.time").write_text(str(time.monotonic()))
    os._exit(0)


def launch(tmp_path: Path, world: int, argv: list[str], sabotage: str = "") -> list[str]:
    """Run ``world`` ranks; returns each rank's stderr, with its exit code appended."""
    ctx = multiprocessing.get_context("fork")
    port = _free_port()
    procs = [
        ctx.Process(target=_rank, args=(r, world, port, argv, str(tmp_path), sabotage))
        for r in range(world)
    ]
    start = time.monotonic()
    for p in procs:
        p.start()
    for p in procs:
        p.join(max(1.0, DEADLINE_S - (time.monotonic() - start)))
    hung = [r for r, p in enumerate(procs) if p.is_alive()]
    for p in procs:
        if p.is_alive():
            p.kill()
    assert hung == [], f"ranks {hung} hung"
    out = []
    for r in range(world):
        code = tmp_path / f"rank{r}.code"
        text = (tmp_path / f"rank{r}.err").read_text()
        out.append(text + f"\nexit={code.read_text() if code.exists() else 'died'}")
    return out


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shards") / "syn-2"
    data = power_law_graph(200, avg_degree=5, num_features=8, num_classes=3, seed=1)
    partition_dataset(data, folder, 2, dataset="syn", method="random")
    return folder


ARGS = ["--epochs", "3", "--timeout", "10"]


def test_a_clean_run_exits_zero(tmp_path, shards):
    result = tmp_path / "result.json"
    logs = launch(tmp_path, 2, ["--shards", str(shards), *ARGS, "--json", str(result)])
    assert all(log.endswith("exit=0") for log in logs), logs
    assert result.exists()


def test_a_world_size_that_differs_from_the_parts_is_one_line_on_every_rank(tmp_path, shards):
    logs = launch(tmp_path, 3, ["--shards", str(shards), *ARGS])
    for log in logs:
        assert "holds 2 parts but the job has 3 ranks" in log
        assert log.endswith("exit=2")


def test_shards_of_another_dataset_are_refused(tmp_path, shards):
    logs = launch(tmp_path, 2, ["--shards", str(shards), "--dataset", "cora", *ARGS])
    for log in logs:
        assert "holds shards of 'syn', not 'cora'" in log
        assert log.endswith("exit=2")


def test_mismatched_gnnkit_versions_are_one_line_on_every_rank(tmp_path, shards):
    logs = launch(tmp_path, 2, ["--shards", str(shards), *ARGS], sabotage="version")
    for log in logs:
        assert "the ranks run different gnnkit versions" in log
        assert "rank 1: 0000000000000000" in log
        assert log.endswith("exit=2")


def test_a_rank_that_dies_stops_the_others_within_the_timeout(tmp_path, shards):
    tick = time.monotonic()
    logs = launch(tmp_path, 2, ["--shards", str(shards), *ARGS], sabotage="die")
    assert time.monotonic() - tick < DEADLINE_S
    assert logs[1].endswith("exit=died")
    assert "rank 0 lost contact with another rank" in logs[0], logs[0]
    assert logs[0].endswith("exit=1")


def test_a_rank_that_hangs_stops_the_others_after_the_timeout(tmp_path, shards):
    tick = time.monotonic()
    logs = launch(tmp_path, 2, ["--shards", str(shards), "--epochs", "3", "--timeout", "3"], "hang")
    waited = float((tmp_path / "rank0.time").read_text()) - tick
    assert "rank 0 lost contact with another rank" in logs[0], logs[0]
    assert "timed out" in logs[0].lower() and "--timeout 3 s" in logs[0]
    assert logs[0].endswith("exit=1")
    assert 3 <= waited < 40, waited  # the timeout, not the deadline, ended the wait
    # the stuck rank, once it moves again, finds its peer gone and stops with a line too
    assert "lost contact" in logs[1] and logs[1].endswith("exit=1"), logs[1]


def test_a_restarted_job_resumes_from_the_checkpoint_to_the_uninterrupted_result(tmp_path, shards):
    import json

    def losses(folder: Path, argv: list[str]) -> list[float]:
        folder.mkdir()
        result = folder / "result.json"
        logs = launch(folder, 2, ["--shards", str(shards), *argv, "--json", str(result)])
        assert all(log.endswith("exit=0") for log in logs), logs
        return json.loads(result.read_text())["history"]["loss"]

    straight = losses(tmp_path / "a", ["--epochs", "4"])
    checkpoint = str(tmp_path / "ckpt.pt")
    first = losses(tmp_path / "b", ["--epochs", "2", "--checkpoint", checkpoint])
    resumed = losses(tmp_path / "c", ["--epochs", "4", "--checkpoint", checkpoint, "--resume"])
    assert first == straight[:2]
    assert resumed == straight  # the history comes back with the checkpoint


@pytest.mark.parametrize("timeout", ["0", "-1", "nan", "inf", "1e300"])
def test_a_timeout_that_is_not_a_positive_number_of_seconds_is_one_line(capsys, timeout):
    from gnnkit.distributed.__main__ import main

    assert main(["--shards", "anywhere", "--timeout", timeout]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert (
        f"--timeout must be a positive number of seconds, at most 1e+09, got {float(timeout)}"
        in err
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--threads", "0"], "--threads must be at least 1, got 0"),
        (["--threads", "-2"], "--threads must be at least 1, got -2"),
        (["--epochs", "0"], "epochs must be an integer >= 1, got 0"),
        (["--hidden", "0"], "hidden must be an integer >= 1 or None, got 0"),
        (["--model", "gat", "--heads", "0"], "heads must be an integer >= 1, got 0"),
        (["--eval-every", "-1"], "eval_every must be an integer >= 0, got -1"),
        (["--patience", "-1"], "patience must be an integer >= 1 or None, got -1"),
        (["--dropout", "1"], "dropout must be a number in [0, 1), got 1.0"),
        (["--lr", "nan"], "lr must be a finite number > 0 or None, got nan"),
        (["--lr", "0"], "lr must be a finite number > 0 or None, got 0.0"),
        (["--weight-decay", "-1"], "weight_decay must be a finite number >= 0, got -1.0"),
    ],
)
def test_bad_settings_are_refused_before_the_process_group(capsys, argv, message):
    """Each is one line on every rank, before any rank joins the job (so outside torchrun
    too), instead of a traceback from the optimiser or a model that trains nothing."""
    from gnnkit.distributed.__main__ import main

    assert main(["--shards", "anywhere", *argv]) == 2
    err = capsys.readouterr().err
    assert err == f"gnnkit.distributed: error on rank 0: {message}\n"


def test_partition_config_checks_every_field():
    from gnnkit.distributed import PartitionConfig

    with pytest.raises(InputError, match=r"seed must be an integer, got None"):
        PartitionConfig(seed=None)  # type: ignore[arg-type]  # each rank would draw its own
    with pytest.raises(InputError, match=r"attention_dropout must be a number in \[0, 1\)"):
        PartitionConfig(model="gat", attention_dropout=-0.1)
    with pytest.raises(InputError, match=r"model must be one of 'gcn', 'gat', got 'sage'"):
        PartitionConfig(model="sage")
    assert PartitionConfig(model="gat").attention_dropout == 0.6  # the paper's: = dropout


def test_init_distributed_refuses_a_timeout_the_process_group_cannot_hold():
    from gnnkit.train.distributed import init_distributed

    with pytest.raises(InputError, match=r"timeout_s must be a number in \(0, 1e\+09\]"):
        init_distributed(timeout_s=float("inf"))


def test_earlier_results_and_checkpoints_are_refused_before_the_job_starts(
    tmp_path, capsys, monkeypatch
):
    """An existing ``--json`` or ``--checkpoint`` is another run's work: refused on every rank
    before any rank joins the job, unless ``--overwrite`` (or ``--resume``)."""
    from gnnkit.distributed.__main__ import main

    result, checkpoint = tmp_path / "result.json", tmp_path / "ckpt.pt"
    result.write_text("{}")
    checkpoint.write_bytes(b"earlier")
    base = ["--shards", "anywhere", "--timeout", "0"]  # a bad timeout stops it after the checks
    assert main([*base, "--json", str(result)]) == 2
    assert f"--json {result} already exists; pass --overwrite" in capsys.readouterr().err
    assert main([*base, "--checkpoint", str(checkpoint)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ckpt.pt already holds a checkpoint; pass --resume" in err
    assert main([*base, "--checkpoint", str(checkpoint), "--resume", "--overwrite"]) == 2
    assert "contradict each other" in capsys.readouterr().err
    for flag in ("--overwrite", "--resume"):
        argv = [*base, "--json", str(result), "--checkpoint", str(checkpoint), flag]
        assert main(argv) == 2
        assert "--timeout must be a positive number" in capsys.readouterr().err, flag
    # --resume with no checkpoint to continue starts afresh: the --json there is not its own
    for argv in ([], ["--checkpoint", str(tmp_path / "none.pt")]):
        assert main([*base, "--json", str(result), "--resume", *argv]) == 2
        err = capsys.readouterr().err
        assert f"--json {result} already exists and --resume finds no checkpoint" in err
    assert result.read_text() == "{}" and checkpoint.read_bytes() == b"earlier"
    monkeypatch.setenv("RANK", "1")  # refused before the process group: torchrun's rank
    assert main([*base, "--json", str(result)]) == 2
    assert "gnnkit.distributed: error on rank 1: --json" in capsys.readouterr().err
