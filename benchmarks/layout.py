"""The library's shape, measured: CLI start-up, the files one benchmark runs through, sizes.

Three numbers the architecture is held to (ARCHITECTURE.md):

- **Start-up**: wall time of ``gnnkit --help`` against ``python -c "import torch_geometric"``
  (gnnkit is built on PyG; the limit is 0.5 s beyond it), and of ``import gnnkit`` and of
  ``import torch`` beside them (``import gnnkit`` imports neither until a name is used), each
  run in a fresh process, all interleaved, median of ``--repeat`` runs.
- **One benchmark's path**: the gnnkit source files that run during
  ``gnnkit bench node --dataset karate --compare pyg --runs 1 --epochs 2``, recorded by a
  ``sys.setprofile`` hook in a fresh process. A file is *called* when one of its functions ran,
  *imported* when only its module body did. The harness path (``cli``, ``bench``, ``recipes``,
  ``models``, ``train``) is counted apart from the core (``ops``, ``nn``, ``data``, ``graph``,
  ``utils``, ``errors``), which every command needs.
- **Sizes**: the longest library file and function (the limits are 500 and 80 lines).

Run::

    python benchmarks/layout.py [--repeat 5] [--json benchmarks/results/layout.json]
"""

from __future__ import annotations

import argparse
import ast
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from gnnkit.utils.env import environment
from gnnkit.utils.io import atomic_write_json, atomic_write_text

REPO = Path(__file__).resolve().parents[1]
LIBRARY = REPO / "gnnkit"
RESULTS = REPO / "benchmarks" / "results"
HARNESS = ("cli", "bench", "recipes", "models", "train")
BENCH_ARGV = ["bench", "node", "--dataset", "karate", "--compare", "pyg", "--runs", "1"]
BENCH_ARGV += ["--epochs", "2", "--no-progress"]

#: Run in a fresh interpreter: the files whose code runs during one benchmark, as JSON.
_TRACER = """
import contextlib, inspect, io, json, sys
root, argv = sys.argv[1], json.loads(sys.argv[2])
seen = {}
def profile(frame, event, arg):
    if event == "call" and frame.f_code.co_filename.startswith(root):
        name = frame.f_code.co_filename[len(root):]
        called = bool(frame.f_code.co_flags & inspect.CO_OPTIMIZED)  # a function, not a body
        seen[name] = seen.get(name, False) or called
sys.setprofile(profile)
from gnnkit.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    code = main(argv)
sys.setprofile(None)
print(json.dumps({"code": code, "files": seen}))
"""


def startup(repeat: int) -> dict[str, Any]:
    """Medians of ``gnnkit --help`` and of importing PyG, interleaved, fresh processes."""
    commands = {
        "import_torch_geometric": [sys.executable, "-c", "import torch_geometric"],
        "gnnkit_help": [sys.executable, "-m", "gnnkit", "--help"],
        "import_torch": [sys.executable, "-c", "import torch"],
        "import_gnnkit": [sys.executable, "-c", "import gnnkit"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeat):
        for name, command in commands.items():
            tick = time.perf_counter()
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=REPO)
            times[name].append(time.perf_counter() - tick)
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {
        "runs_s": times,
        "median_s": medians,
        "help_beyond_pyg_s": medians["gnnkit_help"] - medians["import_torch_geometric"],
    }


def bench_path() -> dict[str, Any]:
    """The gnnkit files one ``bench node --compare pyg`` runs through."""
    done = subprocess.run(
        [sys.executable, "-c", _TRACER, f"{LIBRARY}/", json.dumps(BENCH_ARGV)],
        capture_output=True, text=True, check=True, cwd=REPO,
    )  # fmt: skip
    traced = json.loads(done.stdout.strip().splitlines()[-1])
    if traced["code"] != 0:
        raise SystemExit(f"gnnkit {' '.join(BENCH_ARGV)} failed:\n{done.stderr}")
    files = traced["files"]

    def part(name: str) -> str:
        return "harness" if name.split("/")[0].removesuffix(".py") in HARNESS else "core"

    out: dict[str, Any] = {"argv": ["gnnkit", *BENCH_ARGV]}
    for group in ("harness", "core"):
        mine = {name: called for name, called in files.items() if part(name) == group}
        out[group] = {
            "called": sorted(name for name, called in mine.items() if called),
            "imported_only": sorted(name for name, called in mine.items() if not called),
        }
    return out


def sizes() -> dict[str, Any]:
    """The longest library file and function."""
    files, functions = [], []
    for path in sorted(LIBRARY.rglob("*.py")):
        source = path.read_text()
        name = str(path.relative_to(LIBRARY))
        files.append((source.count("\n"), name))
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                functions.append((node.end_lineno - node.lineno + 1, f"{name}:{node.name}"))
    return {
        "library_files": len(files),
        "library_lines": sum(n for n, _ in files),
        "longest_file": max(files),
        "longest_function": max(functions),
    }


def markdown(payload: dict[str, Any], command: str) -> str:
    start, path, size = payload["startup"], payload["bench_path"], payload["sizes"]
    med = start["median_s"]
    harness, core = path["harness"], path["core"]
    lines = [
        "# gnnkit's layout, measured",
        "",
        f"Command: `{command}`; {payload['env'].get('cpu', 'cpu')}, torch "
        f"{payload['env'].get('torch')}, {payload['env'].get('date', '')}.",
        "",
        "## Start-up (fresh processes, interleaved, medians)",
        "",
        "| command | median |",
        "|---|---:|",
        f'| `python -c "import torch_geometric"` | {med["import_torch_geometric"]:.2f} s |',
        f"| `gnnkit --help` | {med['gnnkit_help']:.2f} s |",
        f"| difference | **{start['help_beyond_pyg_s']:+.2f} s** (limit +0.5 s) |",
        f'| `python -c "import torch"` | {med["import_torch"]:.2f} s |',
        f'| `python -c "import gnnkit"` | {med["import_gnnkit"]:.2f} s |',
        "",
        f"## Files that `{' '.join(path['argv'])}` runs through",
        "",
        f"- harness path (cli, bench, recipes, models, train): **{len(harness['called'])}** "
        f"with a function called ({', '.join(harness['called'])}); imported only: "
        f"{', '.join(harness['imported_only']) or 'none'}",
        f"- core (ops, nn, data, graph, utils, errors): {len(core['called'])} called, "
        f"{len(core['imported_only'])} imported only",
        "",
        "## Sizes",
        "",
        f"- {size['library_files']} library files, {size['library_lines']:,} lines",
        f"- longest file: {size['longest_file'][1]} ({size['longest_file'][0]} lines; limit 500)",
        f"- longest function: {size['longest_function'][1]} ({size['longest_function'][0]} "
        "lines; limit 80)",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="start-up runs per command")
    parser.add_argument("--json", metavar="PATH", default=str(RESULTS / "layout.json"))
    parser.add_argument("--markdown", metavar="PATH", default=str(RESULTS / "layout.md"))
    args = parser.parse_args()
    payload = {
        "startup": startup(args.repeat),
        "bench_path": bench_path(),
        "sizes": sizes(),
        "env": environment("cpu"),
    }
    command = ("python benchmarks/layout.py " + " ".join(sys.argv[1:])).strip()
    atomic_write_json(args.json, payload)
    atomic_write_text(args.markdown, markdown(payload, command))
    print(markdown(payload, command))


if __name__ == "__main__":
    main()
