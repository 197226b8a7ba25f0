"""gnnkit's GCNConv and GATConv as drop-ins: PyG's own tests and examples with one import swapped.

Takes PyG's repository (a git directory or a checkout, at the tag of the installed PyG) and,
in a scratch folder, for each of ``test/nn/conv/test_gcn_conv.py``,
``test/nn/conv/test_gat_conv.py``, ``examples/gcn.py`` and ``examples/gat.py``:

1. runs it as PyG ships it, then with only ``from torch_geometric.nn import GCNConv`` (or
   ``GATConv``) replaced by ``from gnnkit.nn import ...``;
2. for the tests: the pass counts (pytest, default and ``FULL_TEST=1`` modes);
3. for the examples: final test accuracy (best validation epoch, as the examples report it)
   and the median epoch time, over ``--seeds`` seeds per implementation, interleaved, one
   thread. Cora's raw files come from ``$GNNKIT_MIRROR/planetoid/Cora/raw`` (no download).

PyG's files are read at run time and never copied into gnnkit. Results go to
``benchmarks/results/pyg_dropin.{json,md}``.

Run:  python benchmarks/pyg_dropin.py --pyg-source PATH/TO/pytorch_geometric [--seeds 5]
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _collect import (
    RESULTS,
    command_line,
    load_average,
    machine_line,
    markdown_report,
    run_environment,
    script_parser,
    write_outputs,
)

TESTS = {"GCNConv": "test/nn/conv/test_gcn_conv.py", "GATConv": "test/nn/conv/test_gat_conv.py"}
EXAMPLES = {"GCNConv": "examples/gcn.py", "GATConv": "examples/gat.py"}


def read_source(source: Path, tag: str, path: str) -> str:
    """``path`` from PyG's repository: a bare git directory (at ``tag``) or a checkout."""
    if (source / path).is_file():
        return (source / path).read_text()
    out = subprocess.run(
        ["git", f"--git-dir={source}", "show", f"{tag}:{path}"],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout


def swap_import(text: str, layer: str) -> str:
    """Replace the one import line of ``layer`` by gnnkit's; refuse if it is not found."""
    line = f"from torch_geometric.nn import {layer}"
    if line not in text:
        raise SystemExit(f"pyg_dropin: {line!r} not found; is this PyG 2.8's file?")
    return text.replace(line, f"from gnnkit.nn import {layer}", 1)


def run_tests(workdir: Path, name: str, full: bool) -> dict[str, int]:
    env = dict(os.environ, FULL_TEST="1" if full else "0")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", name],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
    )
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    counts = {key: int(n) for n, key in re.findall(r"(\d+) (passed|failed|error)", tail)}
    return {"passed": counts.get("passed", 0), "failed": counts.get("failed", 0)}


def run_example(workdir: Path, name: str, seed: int) -> dict[str, float]:
    """One seeded run of an example: its last logged test accuracy and median epoch time."""
    code = (
        "import runpy, sys, torch; torch.set_num_threads(1); "
        f"torch.manual_seed({seed}); sys.argv = [{name!r}]; "
        f"runpy.run_path({name!r}, run_name='__main__')"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=workdir, capture_output=True, text=True, check=False
    )
    if proc.returncode:
        return {"error": proc.stderr.strip().splitlines()[-1]}
    tests = re.findall(r"Test: ([0-9.]+)", proc.stdout)
    median = re.search(r"Median time per epoch: ([0-9.]+)s", proc.stdout)
    return {"test": float(tests[-1]), "epoch_s": float(median.group(1))}


def stage(root: Path, source: Path, tag: str, mirror: Path) -> None:
    """Write the PyG and gnnkit variants of every file, and Cora's raw files, under ``root``."""
    (root / "examples").mkdir(parents=True)
    (root / "tests").mkdir()
    shutil.copytree(mirror / "planetoid" / "Cora" / "raw", root / "data/Planetoid/Cora/raw")
    for layer, path in TESTS.items():
        text = read_source(source, tag, path)
        (root / "tests" / f"pyg_{Path(path).name}").write_text(text)
        (root / "tests" / f"gnnkit_{Path(path).name}").write_text(swap_import(text, layer))
    for layer, path in EXAMPLES.items():
        text = read_source(source, tag, path)
        (root / "examples" / f"pyg_{Path(path).name}").write_text(text)
        (root / "examples" / f"gnnkit_{Path(path).name}").write_text(swap_import(text, layer))


def summarise(runs: list[dict[str, float]]) -> dict[str, float | str]:
    ok = [r for r in runs if "error" in r] or runs
    if "error" in ok[0]:
        return {"error": ok[0]["error"]}
    accs = [100 * r["test"] for r in runs]
    return {
        "test_mean": statistics.mean(accs),
        "test_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
        "epoch_s": statistics.median(r["epoch_s"] for r in runs),
        "runs": len(runs),
    }


def main() -> None:
    parser = script_parser(__doc__)
    parser.add_argument("--pyg-source", type=Path, required=True)
    parser.add_argument("--tag", default="2.8.0.post1")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--json", type=Path, default=RESULTS / "pyg_dropin.json")
    parser.add_argument("--markdown", type=Path, default=RESULTS / "pyg_dropin.md")
    args = parser.parse_args()
    mirror = Path(os.environ.get("GNNKIT_MIRROR", "../shared/datasets"))
    start, env = load_average(), run_environment(threads=1)
    payload: dict = {"environment": env, "tag": args.tag, "tests": {}, "examples": {}}
    with tempfile.TemporaryDirectory(prefix="pyg-dropin-") as tmp:
        root = Path(tmp)
        stage(root, args.pyg_source, args.tag, mirror)
        for path in TESTS.values():
            name = Path(path).name
            payload["tests"][name] = {
                f"{impl}{'_full' if full else ''}": run_tests(
                    root / "tests", f"{impl}_{name}", full
                )
                for impl in ("pyg", "gnnkit")
                for full in (False, True)
            }
            print(name, payload["tests"][name], flush=True)
        for path in EXAMPLES.values():
            name = Path(path).name
            runs: dict[str, list] = {"pyg": [], "gnnkit": []}
            for seed in range(args.seeds):  # interleaved: both implementations per seed
                for impl in runs:
                    runs[impl].append(run_example(root / "examples", f"{impl}_{name}", seed))
            payload["examples"][name] = {impl: summarise(r) for impl, r in runs.items()}
            print(name, payload["examples"][name], flush=True)
    machine = machine_line(env, start, load_average(), "1 thread, seeds interleaved")
    write_outputs(
        payload,
        json_path=args.json,
        markdown_path=args.markdown,
        markdown=lambda: report(payload, machine),
    )


def speed(ratio: float) -> str:
    """``ratio`` (reference time over gnnkit's) as "N x faster" or "N x slower"."""
    return f"{ratio:.2f} x faster" if ratio >= 1 else f"{1 / ratio:.2f} x slower"


def report(payload: dict, machine: str) -> str:
    body = ["| PyG test file | PyG | gnnkit | PyG, FULL_TEST=1 | gnnkit, FULL_TEST=1 |"]
    body.append("|---|---:|---:|---:|---:|")
    for name, r in payload["tests"].items():
        cells = [
            f"{r[k]['passed']}/{r[k]['passed'] + r[k]['failed']}"
            for k in ("pyg", "gnnkit", "pyg_full", "gnnkit_full")
        ]
        body.append(f"| `{name}` | " + " | ".join(cells) + " |")
    body += [
        "",
        "| PyG example | PyG test acc. | gnnkit test acc. | PyG s/epoch | gnnkit s/epoch | speed-up |",
    ]
    body.append("|---|---:|---:|---:|---:|---:|")
    for name, r in payload["examples"].items():
        p, g = r["pyg"], r["gnnkit"]
        if "error" in p or "error" in g:
            body.append(f"| `{name}` | {p.get('error', '')} | {g.get('error', '')} | | | |")
            continue
        body.append(
            f"| `{name}` | {p['test_mean']:.1f} ± {p['test_std']:.1f} | "
            f"{g['test_mean']:.1f} ± {g['test_std']:.1f} | {p['epoch_s']:.4f} | "
            f"{g['epoch_s']:.4f} | {speed(p['epoch_s'] / g['epoch_s'])} |"
        )
    intro = (
        f"PyG {payload['tag']}'s own test files and examples, run as shipped and with only the "
        "layer's import line swapped to gnnkit. Accuracy: the examples' reported test accuracy "
        "(at the best validation epoch), mean ± std over seeds; time: median epoch (train + "
        "evaluation), as the examples print it. The examples densify Cora's features and "
        "apply their own dropout to them outside the layer; that dense work is most of their "
        "epoch, so swapping the import alone changes the epoch time little (the layers' own "
        "speed: benchmarks/results/layers.md). With FULL_TEST=1, PyG's GAT test file also "
        "scripts GATConv with TorchScript: that fails for PyG's own layer as well under this "
        "torch, and gnnkit's GATConv does not support TorchScript."
    )
    return markdown_report(
        "PyG's tests and examples with gnnkit's layers",
        intro,
        body,
        machine=machine,
        command=command_line(),
    )


if __name__ == "__main__":
    main()
