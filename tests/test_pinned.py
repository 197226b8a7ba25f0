"""Pinned training histories: the same seeds give the same numbers as when they were recorded.

Each case trains a small, fixed piece of every training path (node full-batch and mini-batch,
graph and link prediction, the memory-task RNN, the character LSTM, one citation fold) and
compares what it records epoch by epoch with ``tests/pinned/histories.json``. The file was
written by ``python tests/test_pinned.py --record`` before the training code was reorganised,
so these tests prove that the reorganisation changed no number.

On the machine kind that recorded the file (same torch version, CPU model and instruction
set) the comparison is exact: every float must be bit-identical. Elsewhere floating-point
sums may round differently (another BLAS code path), so the series are compared to a
relative 1e-4 over their first epochs, before rounding differences can grow. Series counted
from argmax predictions (the predicted labels, and the accuracies and scores of them) move
in steps where such a rounding difference flips a prediction near a tie: on another machine
kind they may differ by 1 % of the predictions (measured: 4 of 874 citation predictions of a
text model after two epochs, its losses equal to 1e-4).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
import torch

PINNED = Path(__file__).with_name("pinned") / "histories.json"
#: Entries compared on a machine kind other than the recording one.
PREFIX = 5
#: How much of a series counted from argmax predictions may differ on another machine kind.
FLIPPED = 0.01


def _counted_from_predictions(key: str) -> bool:
    """Predicted labels, or an accuracy or score computed from them."""
    name = key.rsplit(".", 1)[-1]
    return name in ("pred", "scores", "accuracy") or name.endswith("acc")


pytestmark = [pytest.mark.data, pytest.mark.slow]


def machine() -> dict[str, str]:
    """What decides floating-point rounding: torch's version, the CPU and its instructions."""
    model, flags = platform.processor(), ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not model:
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "torch": torch.__version__,
        "cpu": model,
        "flags": hashlib.sha256(flags.encode()).hexdigest()[:16],
    }


def _floats(values: Any) -> list[float]:
    return [float(v) for v in values]


# ------------------------------------------------------------------------------------- cases


def first_run_series(
    result: Any, keys: Callable[[dict[str, Any]], Iterable[str]] = dict.keys
) -> dict[str, list[float]]:
    """``{"<implementation>.<key>": floats}`` from the first run of each implementation in a
    benchmark result; ``keys(history)`` picks the series, in order (default: all, as recorded)."""
    return {
        f"{impl}.{key}": _floats(records[0].history[key])
        for impl, records in result.records.items()
        for key in keys(records[0].history)
    }


def node_cora(
    load: Callable[[str], Any], model: str, epochs: int = 200, sampling: Any = None
) -> dict[str, list[float]]:
    from gnnkit.bench.node import run_node_benchmark

    result = run_node_benchmark(
        load("cora"), dataset="cora", model=model, compare="pyg", runs=1, epochs=epochs,
        warmup_epochs=0, sampling=sampling,
    )  # fmt: skip
    return first_run_series(result)


def node_cora_minibatch(load: Callable[[str], Any]) -> dict[str, list[float]]:
    from gnnkit.train.minibatch import SamplingConfig

    sampling = SamplingConfig(fanouts=(10, 5), batch_size=48, accumulate=2)
    return node_cora(load, "gcn", epochs=3, sampling=sampling)


def graph_molesol(load: Callable[[str], Any]) -> dict[str, list[float]]:
    from gnnkit.bench.graph import run_graph_benchmark

    result = run_graph_benchmark(
        load("ogbg-molesol"), dataset="ogbg-molesol", model="gcn", compare="pyg", runs=1,
        epochs=1,
    )  # fmt: skip
    return first_run_series(result, keys=lambda history: ("loss", "valid", "test"))


def link_ddi(load: Callable[[str], Any]) -> dict[str, list[float]]:
    from gnnkit.bench.link import run_link_benchmark

    result = run_link_benchmark(
        load("ogbl-ddi"), dataset="ogbl-ddi", model="gcn", compare="pyg", runs=1, epochs=1,
        eval_every=1,
    )  # fmt: skip
    return first_run_series(
        result, keys=lambda history: [key for key in history if not key.endswith("_time")]
    )


def seq_memory(load: Callable[[str], Any]) -> dict[str, list[float]]:
    from gnnkit.seq import TrainConfig, run_experiment

    out: dict[str, list[float]] = {}
    for model in ("rnn", "lstm", "bilstm"):
        result = run_experiment(
            "randomcomb", model, 5, seed=0, config=TrainConfig(max_batches=40, val_samples=512)
        )
        out[f"{model}.loss"] = _floats(result.loss)
        out[f"{model}.accuracy"] = _floats(result.accuracy)
        out[f"{model}.val"] = [result.val_loss, result.val_acc]
    return out


def charlm(load: Callable[[str], Any]) -> dict[str, list[float]]:
    import dataclasses

    from gnnkit.seq.charlm import CharLSTM, TextDataset, Trainer, get_preset, strip_gutenberg

    preset = get_preset("cpu")
    config = dataclasses.replace(
        preset.train, steps=50, eval_every=25, sample_every=0, eval_windows=64
    )
    data = TextDataset(strip_gutenberg(load("bartleby")), config.seq_length, name="bartleby")
    torch.manual_seed(0)
    model = CharLSTM(data.vocabulary, preset.model)
    history = Trainer(model, data, config, seed=0).run()
    return {
        key: _floats(getattr(history, key))
        for key in ("train_loss", "train_acc", "lr", "val_loss", "val_acc", "train_eval_loss")
    }


def citation_fold(load: Callable[[str], Any]) -> dict[str, list[float]]:
    from gnnkit.citation import fold_view, load_citations, make_model, stratified_folds

    data = load_citations(load("athar-citations"))
    fold = stratified_folds(data.y, 10, seed=0)[0]
    view = fold_view(data, fold, seed=0)
    out: dict[str, list[float]] = {}
    for name in ("svm", "text", "graph", "hybrid", "textgcn"):
        options = {} if name == "svm" else {"epochs": 2}
        model = make_model(name, seed=0, **options).fit(view)
        out[f"{name}.pred"] = _floats(model.predict(view))
        history = getattr(model, "history_", None)
        if history is not None:
            out[f"{name}.scores"] = _floats(history.scores)
            out[f"{name}.losses"] = _floats(history.losses)
    return out


CASES: dict[str, Callable[[Callable[[str], Any]], dict[str, list[float]]]] = {
    "cora-gcn": lambda load: node_cora(load, "gcn"),
    "cora-gat": lambda load: node_cora(load, "gat"),
    "cora-gcn-minibatch": node_cora_minibatch,
    "molesol-gcn": graph_molesol,
    "ddi-gcn": link_ddi,
    "seq-memory": seq_memory,
    "charlm": charlm,
    "citation-fold": citation_fold,
}


# ------------------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def pinned() -> dict[str, Any]:
    return json.loads(PINNED.read_text())


@pytest.fixture
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def compare(case: str, got: dict[str, list[float]], want: dict[str, list[float]], exact: bool):
    assert sorted(got) == sorted(want), f"{case}: series differ"
    for key, expected in want.items():
        values = got[key]
        if exact:
            first = next(
                (i for i, (a, b) in enumerate(zip(values, expected, strict=False)) if a != b),
                min(len(values), len(expected)),
            )
            assert values == expected, f"{case} {key}: first difference at entry {first}"
            continue
        assert len(values) == len(expected), f"{case} {key}: {len(values)} entries"
        if key.endswith(".pred"):  # labels: a few may flip
            flipped = sum(a != b for a, b in zip(values, expected, strict=True))
            assert flipped <= FLIPPED * len(values), f"{case} {key}: {flipped} labels differ"
            continue
        steps = _counted_from_predictions(key)
        for i, (a, b) in enumerate(zip(values[:PREFIX], expected[:PREFIX], strict=True)):
            close = (
                abs(a - b) <= FLIPPED if steps else math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-6)
            )
            assert close, f"{case} {key}[{i}]: {a} != {b}"


@pytest.mark.parametrize("case", sorted(CASES))
def test_history_is_pinned(case, pinned, dataset, single_thread):
    want = pinned["cases"][case]
    got = CASES[case](dataset)
    compare(case, got, want, exact=pinned["machine"] == machine())


def test_exact_comparison_finds_a_one_ulp_change():
    want = {"a": [0.1, 0.2]}
    with pytest.raises(AssertionError, match="first difference at entry 1"):
        compare("demo", {"a": [0.1, math.nextafter(0.2, 1.0)]}, want, exact=True)
    compare("demo", {"a": [0.1, 0.2 * (1 + 1e-6)]}, want, exact=False)


# ------------------------------------------------------------------------------------- record


def main(argv: list[str] | None = None) -> int:
    from gnnkit.data import load

    parser = argparse.ArgumentParser(description="Record the pinned training histories.")
    parser.add_argument("--record", nargs="*", metavar="CASE", help="cases (default: all)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    payload = json.loads(PINNED.read_text()) if PINNED.exists() else {"cases": {}}
    payload["machine"] = machine()
    for case in args.record or sorted(CASES):
        print(f"recording {case}", file=sys.stderr)
        payload["cases"][case] = CASES[case](load)
    PINNED.parent.mkdir(exist_ok=True)
    PINNED.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
