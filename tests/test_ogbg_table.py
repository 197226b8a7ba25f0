"""benchmarks/ogbg_table.py: bench graph JSON files merged into one table."""

from __future__ import annotations

import json
import statistics
import sys

import numpy as np
import ogbg_table
import pytest

from gnnkit.bench.graph import GraphBenchResult
from gnnkit.train.graph import GraphTrainResult

ENV = {
    "cpu": "Test CPU",
    "threads": 1,
    "device": "cpu",
    "torch": "2.x",
    "torch_geometric": "2.y",
    "date": "2026-01-01T00:00:00+00:00",
}


def entry(dataset, model, metric, ours, theirs, runs=2, within=True):
    def block(mean, epoch):
        return {"test_mean": mean, "test_std": 0.01, "valid_mean": mean, "epoch_s_median": epoch}

    return {
        "dataset": dataset,
        "model": model,
        "metric": metric,
        "gnnkit": block(ours, 0.5),
        "pyg": block(theirs, 1.0),
        "speedup": 2.0,
        "within_one_std": within,
        "runs": runs,
        "epochs": 100,
        "seeds": list(range(runs)),
        "env": ENV,
    }


def run(monkeypatch, *args):
    monkeypatch.setattr(sys, "argv", ["ogbg_table.py", *map(str, args)])
    ogbg_table.main()


def test_runs_replace_their_entry_and_keep_the_others(tmp_path, monkeypatch):
    collection = tmp_path / "ogbg.json"
    collection.write_text(
        json.dumps(
            {
                "ogbg-molesol/gcn": entry("ogbg-molesol", "gcn", "rmse", 1.3, 1.2),
                "ogbg-molbace/gat": entry("ogbg-molbace", "gat", "rocauc", 0.7, 0.8, within=False),
            }
        )
    )
    new = tmp_path / "esol.json"
    new.write_text(json.dumps(entry("ogbg-molesol", "gcn", "rmse", 1.1, 1.2, runs=10)))
    notes = tmp_path / "notes.md"
    notes.write_text("Some notes.\n")
    markdown = tmp_path / "ogbg.md"
    run(monkeypatch, new, "--json", collection, "--markdown", markdown, "--notes", notes)
    merged = json.loads(collection.read_text())
    assert set(merged) == {"ogbg-molesol/gcn", "ogbg-molbace/gat"}
    assert merged["ogbg-molesol/gcn"]["runs"] == 10
    text = markdown.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ogbg-")]
    assert rows[0].startswith("| ogbg-molesol | GCN | rmse (lower is better) | 10 x 100 | 1.1000")
    assert rows[1].startswith("| ogbg-molbace | GAT | rocauc (higher is better) | 2 x 100")
    assert "| **no** |" in rows[1] and rows[0].endswith("**2.00x** |")
    assert "--model gcn --seed 0 --runs 10 --epochs 100" in text and text.rstrip().endswith(
        "Some notes."
    )


def test_a_run_without_the_pyg_comparison_is_refused(tmp_path, monkeypatch, capsys):
    alone = entry("ogbg-molesol", "gcn", "rmse", 1.1, 1.2)
    del alone["pyg"]
    path = tmp_path / "alone.json"
    path.write_text(json.dumps(alone))
    with pytest.raises(SystemExit):
        run(monkeypatch, path, "--json", tmp_path / "out.json", "--markdown", tmp_path / "o.md")
    assert "has no PyG comparison (run with --compare pyg)" in capsys.readouterr().err
    assert not (tmp_path / "out.json").exists()


# ------------------------------------------------------------------ seeds run apart, joined


def bench_json(seeds, *, metric="rmse", epochs=6, threads=1, date="2026-01-02"):
    """The --json of a bench graph run over ``seeds`` with scores and times drawn per seed.

    Each seed's numbers depend on the seed only, so a run of seeds 0-3 holds the same seed
    results as runs of 0-1 and 2-3.
    """

    def record(seed, impl):
        rng = np.random.default_rng([seed, impl == "pyg"])
        times = rng.uniform(0.5, 1.0, epochs) * (2 if impl == "pyg" else 1)
        return GraphTrainResult(
            metric=metric,
            best_epoch=int(rng.integers(1, epochs + 1)),
            valid=float(rng.uniform(1, 2)),
            test=float(rng.uniform(1, 2)),
            history={"train_time": list(0.8 * times)},
            epoch_times=list(times),
        )

    result = GraphBenchResult(
        dataset="ogbg-molesol",
        model="gat",
        metric=metric,
        epochs=epochs,
        seeds=list(seeds),
        records={impl: [record(s, impl) for s in seeds] for impl in ("gnnkit", "pyg")},
        options={"runs": len(seeds), "epochs": epochs, "seed": seeds[0], "batch_size": 32,
                 "emb_dim": 300, "lr": 0.001, "compare": "pyg", "device": "cpu"},
    )  # fmt: skip
    return result.to_json({**ENV, "threads": threads, "date": date})


def collect(monkeypatch, tmp_path, *runs, extra=()):
    paths = []
    for i, payload in enumerate(runs):
        paths.append(tmp_path / f"run{i}.json")
        paths[-1].write_text(json.dumps(payload))
    out, md = tmp_path / "ogbg.json", tmp_path / "ogbg.md"
    run(monkeypatch, *paths, *extra, "--json", out, "--markdown", md)
    return json.loads(out.read_text())["ogbg-molesol/gat"], md.read_text()


def test_runs_of_other_seeds_join_into_what_one_run_of_all_seeds_gives(tmp_path, monkeypatch):
    whole = bench_json(range(5))
    joined, text = collect(monkeypatch, tmp_path, bench_json(range(2)), bench_json(range(2, 5)))
    for impl in ("gnnkit", "pyg"):
        assert joined[impl] == whole[impl]
        times = [t for seed in whole[impl]["epoch_s"] for t in seed]
        assert joined[impl]["epoch_s_median"] == pytest.approx(np.median(times))
        assert joined[impl]["test_std"] == pytest.approx(np.std(whole[impl]["test"], ddof=1))
    for key in ("speedup", "within_one_std", "runs", "seeds", "epochs", "metric"):
        assert joined[key] == whole[key], key
    assert joined["options"]["runs"] == 5
    assert [(p["seed"], p["runs"]) for p in joined["parts"]] == [(0, 2), (2, 3)]
    assert "--model gat --seed 0 --runs 2 --epochs 6" in text
    assert "--model gat --seed 2 --runs 3 --epochs 6" in text
    assert "| ogbg-molesol | GAT | rmse (lower is better) | 5 x 6 |" in text


def test_a_run_of_all_the_seeds_or_more_replaces_the_entry(tmp_path, monkeypatch, capsys):
    joined, _ = collect(monkeypatch, tmp_path, bench_json(range(2)), bench_json(range(3)))
    assert joined["seeds"] == [0, 1, 2] and "parts" not in joined
    assert "ogbg-molesol/gat: replaced, seeds [0, 1, 2]" in capsys.readouterr().out


@pytest.mark.parametrize(
    "second, message",
    [
        (bench_json([1, 2]), "seeds [1] are in both"),
        (bench_json([2, 3], epochs=7), "they differ in epochs"),
        (bench_json([2, 3], threads=2), "they differ in env.threads"),
    ],
)
def test_runs_that_cannot_join_are_refused_and_nothing_is_written(
    second, message, tmp_path, monkeypatch, capsys
):
    collect(monkeypatch, tmp_path, bench_json(range(2)))
    before = (tmp_path / "ogbg.json").read_text()
    with pytest.raises(SystemExit):
        collect(monkeypatch, tmp_path, second)
    err = capsys.readouterr().err
    assert message in err and "or pass --replace to drop the collected entry" in err
    assert (tmp_path / "ogbg.json").read_text() == before
    replaced, _ = collect(monkeypatch, tmp_path, second, extra=["--replace"])
    assert replaced["seeds"] == second["seeds"]


def test_an_entry_without_per_seed_epoch_times_cannot_take_more_seeds(
    tmp_path, monkeypatch, capsys
):
    old = bench_json(range(2))
    for impl in ("gnnkit", "pyg"):
        del old[impl]["epoch_s"]
    collect(monkeypatch, tmp_path, old)
    with pytest.raises(SystemExit):
        collect(monkeypatch, tmp_path, bench_json([2, 3]))
    assert "the collected entry has no per-seed epoch times" in capsys.readouterr().err


def test_joining_summary_blocks_needs_their_per_seed_lists():
    from gnnkit.bench.graph import GRAPH_SEED_KEYS, join_graph_summaries
    from gnnkit.errors import InputError

    first, second = bench_json(range(2))["gnnkit"], bench_json(range(2, 4))["gnnkit"]
    assert join_graph_summaries(first, second) == bench_json(range(4))["gnnkit"]
    assert set(GRAPH_SEED_KEYS) <= set(first)
    del second["train_s"]
    with pytest.raises(InputError, match="a summary block has no per-seed train_s"):
        join_graph_summaries(first, second)


def test_the_summary_block_is_computed_from_the_per_seed_lists():
    payload = bench_json(range(3))
    block = payload["gnnkit"]
    assert block["test_mean"] == pytest.approx(statistics.fmean(block["test"]))
    assert block["valid_mean"] == pytest.approx(statistics.fmean(block["valid"]))
    assert block["train_s_median"] == pytest.approx(np.median(block["train_s"]))
    assert payload["speedup"] == pytest.approx(
        payload["pyg"]["epoch_s_median"] / block["epoch_s_median"]
    )
