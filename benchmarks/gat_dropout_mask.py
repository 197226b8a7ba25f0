"""The fused GAT's attention dropout as a product against the choice it replaced, on Cora.

The CPU kernels written out per (heads, channels) (:mod:`gnnkit.ops._gat_feature_sources`)
multiply each attention coefficient by its dropout mask value, ``SCALE`` times the keep flag
read as a byte. They used to choose, ``value * SCALE if keep else ZERO``, which LLVM compiles
to a jump per entry on x86 (no conditional move for a scalar float), taken at random. This
script builds that form again from the current kernel sources (the product replaced by the
choice, the flag read as ``bool``) and times both, interleaved in one process, on one thread:

- ``kernels``: each written-out kernel that applies the mask (the aggregation and the
  backward's sender pass) within a GATConv training step on Cora (2,708 nodes, 13,264 edges
  with self-loops, dropout 0.6): the first layer's 8 heads x 8 channels and the output
  layer's 1 x 7, thread CPU time of the kernel call;
- ``layer step``: that GATConv's forward and backward;
- ``epoch``: gnnkit's Cora GAT trained by :func:`gnnkit.train.fit` with the recipe of
  ``gnnkit bench node`` (training step and evaluation), process CPU time per epoch.

Before timing, one layer step runs with each form from the same seed: the outputs and the
gradients must be equal (a kept entry is ``value * SCALE`` either way; a dropped one is 0).

Run ``GNNKIT_MIRROR=/path/to/datasets python benchmarks/gat_dropout_mask.py``; it writes
``benchmarks/results/gat_dropout_mask.json`` and ``.md`` (``--no-write``: print only).
"""

from __future__ import annotations

import itertools
import re
import statistics
import time
from typing import Any

import _collect as collect
import torch

from gnnkit.data import load
from gnnkit.nn import GATConv
from gnnkit.ops import _gat_rows
from gnnkit.ops._jit import address_pointer, compile_vectorised, generated_kernel
from gnnkit.recipes import get_recipe
from gnnkit.train import TrainConfig, fit, node_inputs, seed_everything

KINDS = ("aggregate", "sender grad")
SHAPES = ((8, 8), (1, 7))  # Cora GAT's layers: (heads, channels)
P = 0.6
PRODUCT = re.compile(r"(\w+) \* \(SCALE \* FLOAT_TYPE\(keep\[([^\]]+)\]\)\)")


def choice_kernel(kind: str, heads: int, channels: int) -> Any:
    """The written-out kernel of ``kind`` with the mask applied as a choice (module
    docstring), compiled as :func:`gnnkit.ops._gat_rows._compiled` compiles the current one."""
    source = _gat_rows._SOURCES[kind](heads, channels, True)
    choice = PRODUCT.sub(r"\1 * SCALE if keep[\2] else ZERO", source)
    choice = choice.replace("carray(BYTE(keep)", "carray(BOOL(keep)")
    assert choice != source, "no mask product found in the kernel source"
    names = _gat_rows.kernel_names(heads, channels, True, "float32")
    names["BOOL"] = address_pointer("bool")
    kernel = generated_kernel(choice, f"<choice {kind}: {heads} x {channels}>", names)
    compile_vectorised(kernel, _gat_rows._signature(kind))
    return kernel


class Timed:
    """A kernel that adds the thread CPU time of each call to ``spent``."""

    def __init__(self, kernel: Any, spent: list[float]) -> None:
        self.kernel, self.spent = kernel, spent

    def __call__(self, *args: Any) -> None:
        tick = time.thread_time()
        self.kernel(*args)
        self.spent.append(time.thread_time() - tick)


def forms() -> dict[str, dict[tuple, Any]]:
    """``{"product": ..., "choice": ...}``: each maps the kernels' keys of
    ``gnnkit.ops._gat_rows._COMPILED`` to that form's kernel."""
    result: dict[str, dict[tuple, Any]] = {"product": {}, "choice": {}}
    for heads, channels in SHAPES:
        for kind in KINDS:
            key = (kind, heads, channels, True, "float32")
            result["product"][key] = _gat_rows._compiled(*key)
            result["choice"][key] = choice_kernel(kind, heads, channels)
    return result


def use(kernels: dict[tuple, Any]) -> None:
    _gat_rows._COMPILED.update(kernels)


def layer_step(conv: GATConv, x: torch.Tensor, edge_index: torch.Tensor) -> list[torch.Tensor]:
    out = conv(x, edge_index)
    grads = torch.autograd.grad(out, [x, *conv.parameters()], torch.ones_like(out))
    return [out.detach(), *grads]


def layer_rows(cora: Any, kernels: dict[str, dict[tuple, Any]], reps: int) -> list[dict]:
    rows = []
    for heads, channels in SHAPES:
        torch.manual_seed(0)
        conv = GATConv(64, channels, heads=heads, dropout=P, concat=heads > 1).train()
        x = torch.randn(cora.num_nodes, 64, requires_grad=True)
        results = {}
        for form, chosen in kernels.items():  # the same seed: the same masks
            use(chosen)
            torch.manual_seed(1)
            results[form] = layer_step(conv, x, cora.edge_index)
        for a, b in zip(*results.values(), strict=True):
            assert torch.equal(a, b), "the two forms differ"
        spent = {(f, k): [] for f in kernels for k in KINDS}
        steps: dict[str, list[float]] = {f: [] for f in kernels}
        for _ in range(reps):
            for form, chosen in kernels.items():
                use({key: Timed(k, spent[form, key[0]]) for key, k in chosen.items()})
                tick = time.thread_time()
                layer_step(conv, x, cora.edge_index)
                steps[form].append(time.thread_time() - tick)
        shape = f"{heads} x {channels}"
        for kind in KINDS:
            rows.append(_row("kernel", f"{kind}, {shape}", spent, kind))
        rows.append(
            _row("layer step", f"GATConv 64 -> {shape}", {(f, ""): steps[f] for f in steps}, "")
        )
        print(rows[-3:], flush=True)
    use(kernels["product"])
    return rows


def _row(what: str, label: str, spent: dict, kind: str) -> dict[str, Any]:
    choice, product = spent["choice", kind], spent["product", kind]
    return {
        "what": what,
        "label": label,
        "choice_us": 1e6 * statistics.median(choice),
        "product_us": 1e6 * statistics.median(product),
        "ratio": statistics.median(choice) / statistics.median(product),
    }


def epoch_times(model: Any, inputs: Any, config: TrainConfig) -> list[float]:
    """Process CPU time of each epoch of ``fit`` (from one callback to the next)."""
    ticks = [time.process_time()]
    fit(model, inputs, config, callback=lambda _: ticks.append(time.process_time()))
    return [b - a for a, b in itertools.pairwise(ticks)]


def epoch_row(cora: Any, kernels: dict[str, dict[tuple, Any]], rounds: int, epochs: int) -> dict:
    recipe = get_recipe("node", "gat")
    inputs = node_inputs(cora, features=recipe.features)
    times: dict[str, list[float]] = {form: [] for form in kernels}
    for r in range(rounds):
        order = list(kernels) if r % 2 == 0 else list(kernels)[::-1]
        for form in order:
            use(kernels[form])
            seed_everything(r)
            model = recipe.build(inputs.num_features, inputs.num_classes)
            config = TrainConfig(epochs=epochs, lr=recipe.lr, weight_decay=recipe.weight_decay)
            times[form] += epoch_times(model, inputs, config)[1:]
        print(f"epoch round {r}: done", flush=True)
    use(kernels["product"])
    return _row("epoch", "Cora GAT (gnnkit's recipe)", {(f, ""): t for f, t in times.items()}, "")


def main() -> None:
    parser = collect.script_parser(__doc__)
    parser.add_argument("--reps", type=int, default=200, help="layer steps per form")
    parser.add_argument("--rounds", type=int, default=6, help="training runs per form")
    parser.add_argument("--epochs", type=int, default=60, help="epochs per training run")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = collect.load_average()
    cora = load("cora")
    kernels = forms()
    rows = layer_rows(cora, kernels, args.reps)
    rows.append(epoch_row(cora, kernels, args.rounds, args.epochs))
    print(rows[-1], flush=True)
    env = collect.run_environment(threads=1)
    end = collect.load_average()
    lines = [
        "| what | | choice (us) | product (us) | choice / product |",
        "|---|---|---:|---:|---:|",
    ]
    lines += [
        f"| {r['what']} | {r['label']} | {r['choice_us']:.0f} | {r['product_us']:.0f} | "
        f"**{r['ratio']:.2f}x** |"
        for r in rows
    ]
    if args.no_write:
        return
    intro = (
        "The fused GAT's attention dropout in the CPU kernels written out per shape: the mask "
        "applied as a product (current) against a choice (`value * SCALE if keep else ZERO`, "
        "a mispredicted jump per entry), interleaved in one process on one thread. Medians of "
        f"thread CPU time: {args.reps} layer steps per form (the kernels timed within them), "
        f"and {args.rounds} training runs of {args.epochs} epochs per form (process CPU time "
        "per epoch, the first of each run left out). Both forms give equal outputs and "
        "gradients (checked before timing). See the script's docstring."
    )
    machine = collect.machine_line(env, start, end, "a shared machine: compare within a row")
    payload = {"rows": rows, "environment": env, "command": collect.command_line()}
    collect.write_report(
        collect.RESULTS / "gat_dropout_mask",
        payload,
        "GAT attention dropout: a product, not a choice",
        intro,
        lines,
        machine,
    )


if __name__ == "__main__":
    main()
