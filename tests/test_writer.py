"""The one safe writer (:mod:`gnnkit.utils.io`): what it refuses, how it follows symbolic links,
what an OS error becomes, and that a killed writer leaves nothing for good.

No test touches a real device node: a character device is made in a temporary folder with
``os.mknod`` (root only; skipped otherwise), and a full or read-only disk is simulated by
making the OS call fail with the errno the kernel would give.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from gnnkit.errors import InputError, OutputError
from gnnkit.utils import io
from gnnkit.utils.io import (
    TEMP_SUFFIX,
    atomic_write_json,
    atomic_write_text,
    check_output,
    check_output_dir,
    describe_os_error,
)


def temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(TEMP_SUFFIX))


def test_writes_replace_atomically_with_unique_temporary_names(tmp_path, monkeypatch):
    target = tmp_path / "out.json"
    names = []
    real = tempfile.mkstemp

    def spy(*args, **kwargs):
        fd, name = real(*args, **kwargs)
        names.append(Path(name).name)
        return fd, name

    monkeypatch.setattr(io.tempfile, "mkstemp", spy)
    atomic_write_json(target, {"a": 1})
    atomic_write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert len(set(names)) == 2
    assert all(n.startswith(f".out.json.{os.getpid()}-") and n.endswith(TEMP_SUFFIX) for n in names)
    assert temps(tmp_path) == []


def test_a_folder_is_refused(tmp_path):
    with pytest.raises(OutputError, match=r"--json .* is a folder; give a file name such as"):
        atomic_write_json(tmp_path, {}, option="--json")
    assert tmp_path.is_dir()


def test_an_empty_path_is_refused():
    with pytest.raises(OutputError, match=r"^--json is empty; give a file name"):
        atomic_write_json("", {}, option="--json")
    with pytest.raises(OutputError, match=r"--plot is empty"):
        check_output("  ", "--plot")


def test_a_fifo_is_refused_and_kept(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(OutputError, match=r"pipe is a FIFO, not a regular file"):
        atomic_write_text(fifo, "x", option="--json")
    with pytest.raises(OutputError, match=r"is a FIFO"):
        check_output(fifo, "--json")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_a_device_is_refused_and_kept(tmp_path):
    node = tmp_path / "full"
    try:  # a private copy of /dev/full (char 1, 7): the real one is never touched
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 7))
    except (PermissionError, OSError) as exc:
        pytest.skip(f"cannot make a device node here: {exc}")
    with pytest.raises(OutputError, match=r"full is a device, not a regular file"):
        atomic_write_json(node, {"a": 1}, option="--json")
    assert stat.S_ISCHR(os.lstat(node).st_mode)
    assert temps(tmp_path) == []


def test_a_symlink_is_followed_to_its_target_and_a_dangling_one_refused(tmp_path):
    real = tmp_path / "results" / "real.json"
    real.parent.mkdir()
    real.write_text("{}")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    atomic_write_json(link, {"a": 1})
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert json.loads(real.read_text()) == {"a": 1}  # the target is fresh, not stale
    dangling = tmp_path / "dangling.json"  # a link to nothing: writing would create its target
    dangling.symlink_to(tmp_path / "results" / "new.json")
    with pytest.raises(OutputError, match=r"dangling.json is a link to .*new.json, which does not"):
        atomic_write_json(dangling, {"b": 2})
    assert dangling.is_symlink() and not (tmp_path / "results" / "new.json").exists()


def test_a_symlink_to_a_fifo_is_refused(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    link = tmp_path / "link"
    link.symlink_to(fifo)
    with pytest.raises(OutputError, match=r"is a FIFO"):
        atomic_write_text(link, "x")
    assert link.is_symlink()


def test_a_file_where_a_folder_is_expected(tmp_path):
    blocker = tmp_path / "passwd"
    blocker.write_text("root:x:0:0\n")
    with pytest.raises(
        OutputError, match=r"cannot write --json .*x\.json: .*passwd is a file, not a folder"
    ):
        atomic_write_json(blocker / "x.json", {}, option="--json")
    with pytest.raises(OutputError, match=r"passwd is a file, not a folder"):
        check_output(blocker / "sub" / "x.json", "--json")
    with pytest.raises(OutputError, match=r"--checkpoint-dir .*passwd is a file, not a folder"):
        check_output_dir(blocker, "--checkpoint-dir")
    assert blocker.read_text() == "root:x:0:0\n"


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (errno.EACCES, "permission denied; choose a location you can write to"),
        (errno.EROFS, "the file system is read-only"),
        (errno.ENOSPC, "no space left on the device"),
    ],
)
def test_an_unwritable_folder_is_found_before_work(tmp_path, monkeypatch, code, message):
    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(io.tempfile, "mkstemp", refuse)
    with pytest.raises(OutputError, match=rf"cannot write --json .*out\.json: {message}"):
        check_output(tmp_path / "out.json", "--json")
    with pytest.raises(OutputError, match=rf"cannot write --checkpoint-dir .*ck: {message}"):
        check_output_dir(tmp_path / "ck", "--checkpoint-dir")


def test_a_full_disk_during_the_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "out.json"
    atomic_write_json(target, {"old": True})

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io.os, "fsync", full)
    with pytest.raises(OutputError, match=r"cannot write --json .*out\.json: no space left"):
        atomic_write_json(target, {"new": True}, option="--json")
    assert json.loads(target.read_text()) == {"old": True}
    assert temps(tmp_path) == []


def test_strict_json_names_the_non_finite_value(tmp_path):
    with pytest.raises(InputError, match=r"history\.loss\[1\] is NaN or infinite"):
        atomic_write_json(tmp_path / "x.json", {"history": {"loss": [1.0, float("inf")]}})
    assert not list(tmp_path.iterdir())


def test_describe_os_error_is_one_line_with_path_and_fix():
    exc = PermissionError(errno.EACCES, "Permission denied", "/data/x")
    line = describe_os_error(exc, "cannot write --json")
    assert line == (
        "cannot write --json /data/x: permission denied; choose a location you can write to, "
        "or change its permissions"
    )
    assert "\n" not in describe_os_error(OSError(errno.EIO, "Input/output error"))


def test_kill_9_during_a_save_leaves_a_temporary_file_that_the_next_write_removes(tmp_path):
    target = tmp_path / "checkpoint.pt"
    ready = tmp_path / "ready"
    script = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from gnnkit.utils.io import atomic_open
        with atomic_open({str(target)!r}, "wb") as handle:
            handle.write(b"x" * 1000)
            Path({str(ready)!r}).touch()
            time.sleep(60)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert child.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert not target.exists()
    leftover = [n.removeprefix(".checkpoint.pt.").split("-")[0] for n in temps(tmp_path)]
    assert leftover == [str(child.pid)]
    io.atomic_torch_save({"epoch": 1}, target)
    assert temps(tmp_path) == []  # the killed writer's file is gone, only the target remains
    assert target.is_file()


def test_a_live_writers_temporary_file_is_kept(tmp_path):
    target = tmp_path / "out.json"
    alive = tmp_path / f".out.json.{os.getppid()}-abc{TEMP_SUFFIX}"
    alive.write_text("in progress")
    atomic_write_json(target, {})
    assert alive.exists()


def in_private_mounts(tmp_path, setup: str, python: str) -> subprocess.CompletedProcess:
    """Run ``python`` after the shell ``setup`` in a private mount namespace (``unshare -m``):
    read-only binds and tiny tmpfs mounts there never touch the host's mounts or devices."""
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(python))
    command = f"{setup} && exec {sys.executable} {script}"
    try:
        probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=30)
    except (FileNotFoundError, subprocess.TimeoutExpired):
        pytest.skip("no unshare here")
    if probe.returncode != 0:
        pytest.skip("no private mount namespace here (needs root or user namespaces)")
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", command], capture_output=True, text=True, timeout=120
    )


def test_a_real_read_only_folder_and_a_real_full_disk(tmp_path):
    readonly, tiny = tmp_path / "readonly", tmp_path / "tiny"
    readonly.mkdir()
    tiny.mkdir()
    (readonly / "kept.json").write_text("{}")
    setup = (
        f"mount --bind {readonly} {readonly} && mount -o remount,bind,ro {readonly} && "
        f"mount -t tmpfs -o size=64k tmpfs {tiny}"
    )
    result = in_private_mounts(
        tmp_path,
        setup,
        f"""
        from gnnkit.errors import OutputError
        from gnnkit.utils.io import atomic_write_text, check_output
        for call in (
            lambda: check_output({str(readonly / "out.json")!r}, "--json"),
            lambda: atomic_write_text({str(readonly / "kept.json")!r}, "new", option="--json"),
            lambda: atomic_write_text({str(tiny / "big.json")!r}, "x" * 10**6, option="--json"),
        ):
            try:
                call()
            except OutputError as exc:
                print(exc)
        import os
        print(sorted(os.listdir({str(tiny)!r})))
        """,
    )
    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stderr
    assert lines[0] == f"cannot write --json {readonly / 'out.json'}: " + (
        "the file system is read-only; choose a location on a writable disk"
    )
    assert lines[1].startswith(f"cannot write --json {readonly / 'kept.json'}: the file system")
    assert lines[2] == f"cannot write --json {tiny / 'big.json'}: " + (
        "no space left on the device; free some space or choose another disk"
    )
    assert lines[3] == "[]"  # no temporary file left on the full disk
    assert (readonly / "kept.json").read_text() == "{}"
