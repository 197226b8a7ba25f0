"""What the benchmark scripts share: their parser, the machine they ran on, their outputs.

- every script: :func:`script_parser`, :func:`command_line`, :func:`load_average`,
  :func:`run_environment`, its report (:func:`machine_line`, :func:`markdown_report`) and
  :func:`write_outputs`;
- the scripts that time gnnkit against PyG in fresh processes (``layers.py``, ``scale.py``):
  :func:`with_pyg_weights`;
- the result collectors (``ogbg_table.py``, ``ddi_table.py``): :func:`collection_parser`,
  :func:`read_collection`.

Scripts import them as ``from _collect import ...`` (``python benchmarks/SCRIPT.py`` puts this
folder on ``sys.path``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def script_parser(doc: str | None) -> argparse.ArgumentParser:
    """A script's parser, its module docstring (``doc``) the description, kept as written."""
    return argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )


# Environment variables that change how the measured processes get memory (and so the timings
# of layers that allocate large outputs: gnnkit.ops._memory); reports name them.
MEMORY_VARIABLES = ("GLIBC_TUNABLES", "LD_PRELOAD", "GNNKIT_HUGE_PAGES")


def command_line(prefix: str = "python") -> str:
    """The command that ran this script: ``[VAR=VALUE ...] PREFIX benchmarks/SCRIPT.py ARGS``,
    with the memory settings of :data:`MEMORY_VARIABLES` that were set."""
    script = f"benchmarks/{Path(sys.argv[0]).name}"
    settings = [f"{name}={os.environ[name]}" for name in MEMORY_VARIABLES if name in os.environ]
    return " ".join([*settings, prefix, script, *sys.argv[1:]])


def allocator_line() -> str:
    """How this process (and the ones it starts) gets large outputs' memory."""
    from gnnkit.utils.env import switched_off

    tunables = os.environ.get("GLIBC_TUNABLES")
    malloc = f"`GLIBC_TUNABLES={tunables}`" if tunables else "glibc's default malloc"
    if os.environ.get("LD_PRELOAD"):
        malloc += f", `LD_PRELOAD={os.environ['LD_PRELOAD']}`"
    huge = "off" if switched_off("GNNKIT_HUGE_PAGES") else "on"
    return f"{malloc}; gnnkit's huge-page advice {huge}"


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages, rounded: how busy the (shared) machine was."""
    return [round(v, 2) for v in os.getloadavg()]


def run_environment(device: str = "cpu", threads: int | None = None) -> dict[str, Any]:
    """:func:`gnnkit.utils.env.environment`, with ``threads`` when the script was given it
    (the thread count that the measuring processes set)."""
    from gnnkit.utils.env import environment

    env = environment(device)
    if threads:
        env["threads"] = threads
    env["allocator"] = allocator_line()
    return env


def machine_line(env: dict[str, Any], start: list[float], end: list[float], note: str) -> str:
    """The report's machine: CPU, threads, device, library versions and date (what ``env``
    has of them), the load averages at ``start`` and ``end``, then ``note`` (how to read the
    numbers of a shared machine)."""
    where = f"{env['cpu']}, {env['threads']} thread(s)"
    if "device" in env:
        where += f", device {env['device']}"
    versions = f"torch {env['torch']}, PyG {env['torch_geometric']}"
    if "torch_scatter" in env:
        versions += f", torch-scatter {env['torch_scatter']}"
    memory = f" Memory: {env['allocator']}." if "allocator" in env else ""
    return (
        f"Machine: {where}; {versions}; {env['date']}. Load average at start / end: {start} / "
        f"{end} ({note}).{memory}"
    )


def markdown_report(title: str, intro: str, body: list[str], *, machine: str, command: str) -> str:
    """A benchmark's Markdown report: ``# title``, the ``intro`` paragraph, the ``body`` lines
    (tables, notes), then the ``machine`` line (:func:`machine_line`) and the ``command``."""
    lines = [f"# {title}", "", intro, "", *body, "", machine, "", f"Command: `{command}`", ""]
    return "\n".join(lines)


def write_outputs(
    payload: dict[str, Any],
    *,
    json_path: Path | None,
    markdown_path: Path | None,
    markdown: Callable[[], str],
) -> None:
    """Write the Markdown report (``markdown()``) and the JSON payload, each when its path is
    given, and say so."""
    from gnnkit.utils.io import atomic_write_json, atomic_write_text

    if markdown_path is not None:
        atomic_write_text(markdown_path, markdown())
        print(f"wrote {markdown_path}")
    if json_path is not None:
        atomic_write_json(json_path, payload)
        print(f"wrote {json_path}")


def write_report(
    stem: Path, payload: dict[str, Any], title: str, intro: str, body: list[str], machine: str
) -> None:
    """Write ``stem``.json (the ``payload``) and ``stem``.md (:func:`markdown_report` of
    ``title``, ``intro``, ``body`` and ``machine``, with this process's command line)."""
    command = command_line()
    write_outputs(
        payload,
        json_path=stem.with_suffix(".json"),
        markdown_path=stem.with_suffix(".md"),
        markdown=lambda: markdown_report(title, intro, body, machine=machine, command=command),
    )


def with_pyg_weights(impl: str, pyg: Callable[[], Any], gnnkit: Callable[[], Any]) -> Any:
    """PyG's module ``pyg()`` built with seed-0 weights, or for ``impl="gnnkit"`` gnnkit's
    ``gnnkit()`` with those weights loaded: both libraries start from the same parameters."""
    import torch

    torch.manual_seed(0)
    reference = pyg()
    if impl == "pyg":
        return reference
    ours = gnnkit()
    ours.load_state_dict(reference.state_dict())
    return ours


def collection_parser(doc: str | None, command: str, stem: str) -> argparse.ArgumentParser:
    """Positional run files (``gnnkit bench COMMAND --json``), ``--json`` and ``--markdown``.

    The collection defaults to ``benchmarks/results/STEM.json`` and ``STEM.md``.
    """
    parser = script_parser(doc)
    parser.add_argument("runs", nargs="*", type=Path, help=f"bench {command} --json files")
    parser.add_argument("--json", type=Path, default=RESULTS / f"{stem}.json")
    parser.add_argument("--markdown", type=Path, default=RESULTS / f"{stem}.md")
    return parser


def read_collection(path: Path) -> dict[str, Any]:
    """The collection in ``path`` (empty when the file does not exist yet)."""
    return json.loads(path.read_text()) if path.exists() else {}


def interleaved_times(
    candidates: dict[str, Callable[[], Any]], reps: int
) -> dict[str, list[float]]:
    """Thread CPU seconds of each candidate's calls after one warm-up call each (which also
    compiles), one call of each per repetition: a busy machine slows them alike."""
    import time

    for fn in candidates.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(reps):
        for name, fn in candidates.items():
            tick = time.thread_time()
            fn()
            times[name].append(time.thread_time() - tick)
    return times
