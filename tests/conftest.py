"""Shared fixtures.

Data: tests that need a registered dataset use the ``dataset`` fixture factory. It loads from
the session's data root (``$GNNKIT_DATA`` or the repository's ``datasets/``), the mirror
(``$GNNKIT_MIRROR``) or the network. When the data cannot be obtained the test is skipped,
unless ``GNNKIT_REQUIRE_DATA=1`` (set by ``.ci/run``), which turns the skip into a failure.

CUDA: tests marked ``cuda`` are skipped on machines without a GPU.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def require_data() -> bool:
    return os.environ.get("GNNKIT_REQUIRE_DATA", "").strip() in ("1", "true", "yes")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def kernel_cache(tmp_path_factory):
    """Generated kernels cache their machine code in the session's own private folder
    (:mod:`gnnkit.ops._kernel_cache`), not the user's, unless GNNKIT_KERNEL_CACHE names one."""
    if "GNNKIT_KERNEL_CACHE" not in os.environ:
        folder = tmp_path_factory.mktemp("kernels")
        folder.chmod(0o700)
        os.environ["GNNKIT_KERNEL_CACHE"] = str(folder)
    return Path(os.environ["GNNKIT_KERNEL_CACHE"])


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The data root shared by the whole test session (processed caches are reused)."""
    return Path(os.environ.get("GNNKIT_DATA") or REPO / "datasets").resolve()


@pytest.fixture(scope="session")
def dataset(data_root):
    """``dataset(name)`` loads a registered dataset or skips (fails under GNNKIT_REQUIRE_DATA=1)."""
    from gnnkit.data import load
    from gnnkit.errors import DataUnavailableError

    cache: dict[str, object] = {}

    def get(name: str):
        if name not in cache:
            try:
                cache[name] = load(name, root=data_root)
            except DataUnavailableError as exc:
                if require_data():
                    pytest.fail(f"GNNKIT_REQUIRE_DATA=1 but {name} is unavailable:\n{exc}")
                pytest.skip(f"{name} unavailable: {str(exc).splitlines()[0]}")
        return cache[name]

    return get


@pytest.fixture
def offline(monkeypatch):
    """No mirror, no downloads: only the data root counts."""
    monkeypatch.delenv("GNNKIT_MIRROR", raising=False)
    monkeypatch.setenv("GNNKIT_OFFLINE", "1")


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of tiny graphs (OpenMP stalls on a busy shared machine).

    Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def per_thread_count():
    """``per_thread_count(fn, counts=(1, 2))``: the results of ``fn()`` run with each torch
    thread count in turn; the test's thread count is restored after."""
    previous = torch.get_num_threads()

    def run(fn, counts=(1, 2)):
        results = []
        for count in counts:
            torch.set_num_threads(count)
            results.append(fn())
        return results

    yield run
    torch.set_num_threads(previous)


@pytest.fixture
def cli_fails(capsys):
    """``cli_fails(argv, message)``: ``gnnkit`` exits 2 with ``message`` on one stderr line."""
    from gnnkit.cli import main

    def check(argv: list[str], message: str) -> None:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and err.count("\n") == 1

    return check


@pytest.fixture
def argparse_fails(capsys):
    """``argparse_fails(argv, message)``: argparse refuses ``argv`` (exit 2) with ``message``."""
    from gnnkit.cli import main

    def check(argv: list[str], message: str) -> None:
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2 and message in capsys.readouterr().err

    return check


@pytest.fixture
def sample_table_rows():
    """``sample_table_rows(lines, columns=, greedy=, temperatures=, prompts=)``: the rows of a
    Markdown sample table (:func:`gnnkit.seq.charlm.sample_table`).

    ``columns``: the runs' names; ``greedy``: ``{batch: greedy samples}`` per snapshot;
    ``temperatures``: the labels of the temperature rows, in order (their first row is checked
    at the last snapshot); ``prompts``: prompts that must each have a completion row.
    """

    def check(lines, *, columns, greedy, temperatures, prompts) -> None:
        assert f"| Sampling scheme | Batch | {' | '.join(columns)} |" in lines
        for batch, count in greedy.items():
            assert sum(line.startswith(f"| Greedy | {batch} |") for line in lines) == count
        rows = [line.split(" | ")[0] for line in lines if line.startswith("| T = ")]
        assert rows == [f"| T = {label}" for label in temperatures]
        last = max(greedy)
        assert any(line.startswith(f"| T = {temperatures[0]} | {last} |") for line in lines)
        for prompt in prompts:
            assert any(line.startswith(f"| `{prompt}` |") for line in lines), prompt

    return check


@pytest.fixture
def interleaving_changes_nothing():
    """``interleaving_changes_nothing(make_run)``: a training run's losses are the same whether it
    steps alone or in turn with another one, so each run keeps its own random state.

    ``make_run(seed)`` builds the model and its run (``step()``, ``done``, ``result()``) with
    that seed; the two runs compared are seeded 1 and 2, after ``torch.manual_seed(0)``.
    """

    def check(make_run) -> None:
        def losses(interleave: bool) -> list[float]:
            torch.manual_seed(0)
            a, b = make_run(1), make_run(2)
            while not a.done:
                a.step()
                if interleave:
                    b.step()
            return a.result().history["loss"]

        assert losses(interleave=False) == losses(interleave=True)

    return check


@pytest.fixture
def pyg_comparison():
    """``pyg_comparison(path, dataset=, metric=)``: the JSON that ``gnnkit bench graph|link
    --compare pyg --json PATH`` wrote, once what both commands write is checked: the dataset and
    metric, the summary of both implementations, and the speedup, the ratio of their median
    epoch times. Returns the payload for the command's own checks."""
    import json
    import math

    summary = {"test_mean", "test_std", "valid_mean", "epoch_s_median"}

    def check(path: Path, *, dataset: str, metric: str) -> dict:
        payload = json.loads(Path(path).read_text())
        assert {"dataset", "model", "metric", "gnnkit", "pyg", "speedup"} <= set(payload)
        assert payload["dataset"] == dataset and payload["metric"] == metric
        assert set(payload["gnnkit"]) >= summary and set(payload["pyg"]) >= summary
        times = payload["pyg"]["epoch_s_median"], payload["gnnkit"]["epoch_s_median"]
        assert math.isclose(payload["speedup"], times[0] / times[1])
        return payload

    return check
