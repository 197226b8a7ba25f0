"""benchmarks/ogbg_table.py: bench graph JSON files merged into one table."""

from __future__ import annotations

import json
import sys

import pytest

from benchmarks import ogbg_table

ENV = {
    "cpu": "Test CPU",
    "threads": 1,
    "device": "cpu",
    "torch": "2.x",
    "torch_geometric": "2.y",
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
    assert "--model gcn --runs 10 --epochs 100" in text and text.rstrip().endswith("Some notes.")


def test_a_run_without_the_pyg_comparison_is_refused(tmp_path, monkeypatch, capsys):
    alone = entry("ogbg-molesol", "gcn", "rmse", 1.1, 1.2)
    del alone["pyg"]
    path = tmp_path / "alone.json"
    path.write_text(json.dumps(alone))
    with pytest.raises(SystemExit):
        run(monkeypatch, path, "--json", tmp_path / "out.json", "--markdown", tmp_path / "o.md")
    assert "has no PyG comparison (run with --compare pyg)" in capsys.readouterr().err
    assert not (tmp_path / "out.json").exists()
