"""Registered datasets: real data through the mirror, synthetic OGB-format data, safe loading."""

from __future__ import annotations

import logging
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import require_data
from ogb_format import write_ogbg_mol, write_ogbn_arxiv

from gnnkit.data import DATASETS, get_spec, load, resolve, status
from gnnkit.data.loaders import load_ogb_graph, no_prompts
from gnnkit.errors import DatasetError, DataUnavailableError, UnknownDatasetError


@pytest.fixture(scope="module")
def mirror() -> Path:
    path = os.environ.get("GNNKIT_MIRROR")
    if not path or not Path(path).is_dir():
        if require_data():
            pytest.fail("GNNKIT_REQUIRE_DATA=1 but GNNKIT_MIRROR does not name a folder")
        pytest.skip("no local mirror (GNNKIT_MIRROR)")
    return Path(path)


@pytest.fixture(scope="module")
def mirrored_root(tmp_path_factory, mirror) -> Path:
    """A fresh data root filled from the mirror during these tests."""
    return tmp_path_factory.mktemp("data-root")


def test_registry_lists_the_promised_datasets():
    expected = {
        "cora": "node", "citeseer": "node", "pubmed": "node", "karate": "node", "ogbn-arxiv": "node",
        **{f"ogbg-mol{name}": "graph" for name in (
            "bace", "bbbp", "chembl", "clintox", "esol", "freesolv", "hiv", "lipo", "muv", "pcba",
            "sider", "tox21", "toxcast",
        )},
        "ogbl-ddi": "link",
        "bartleby": "text", "pydoc-tutorial": "text", "athar-citations": "citation",
    }  # fmt: skip
    assert {name: spec.kind for name, spec in DATASETS.items()} == expected
    assert get_spec("karate").embedded and not get_spec("cora").embedded


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(
        UnknownDatasetError,
        match=r"unknown dataset 'coraa' \(did you mean 'cora'\?\); known datasets: cora, citeseer",
    ):
        load("coraa")
    with pytest.raises(
        UnknownDatasetError, match=r"unknown dataset 'OGBN-Arxiv' \(did you mean 'ogbn-arxiv'"
    ):
        load("OGBN-Arxiv")
    with pytest.raises(UnknownDatasetError, match=r"unknown dataset 'nosuch'; known datasets"):
        load("nosuch")


def test_cora_through_the_mirror_has_the_public_split(mirrored_root, mirror):
    data = load("cora", root=mirrored_root, mirror=mirror, download=False)
    assert (data.num_nodes, data.num_features, data.num_classes) == (2708, 1433, 7)
    assert [int(data[m].sum()) for m in ("train_mask", "val_mask", "test_mask")] == [140, 500, 1000]
    assert status("cora", root=mirrored_root) == "present"
    # The copy is complete and verified against the manifest.
    assert get_spec("cora").files and all(
        (mirrored_root / f).is_file() for f in get_spec("cora").files
    )


def test_ogbg_molbace_through_the_mirror_loads_with_safe_torch_load(mirrored_root, mirror):
    dataset = load("ogbg-molbace", root=mirrored_root, mirror=mirror, download=False)
    assert len(dataset) == 1513
    split = dataset.get_idx_split()
    assert sum(len(v) for v in split.values()) == 1513
    processed = mirrored_root / "ogb" / "ogbg_molbace" / "processed" / "geometric_data_processed.pt"
    # The processed file really needs the allow-list: a bare weights_only load refuses it.
    with pytest.raises(pickle.UnpicklingError):
        torch.load(processed, weights_only=True)


def test_corrupt_processed_cache_is_rebuilt(mirrored_root, mirror, caplog):
    load("ogbg-molbace", root=mirrored_root, mirror=mirror, download=False)
    processed = mirrored_root / "ogb" / "ogbg_molbace" / "processed" / "geometric_data_processed.pt"
    processed.write_bytes(processed.read_bytes()[:1000])  # truncated
    with caplog.at_level(logging.WARNING, logger="gnnkit"):
        dataset = load("ogbg-molbace", root=mirrored_root, mirror=mirror, download=False)
    assert len(dataset) == 1513
    assert "gnnkit did not write" in caplog.text and "rebuilding" in caplog.text


def test_ogbl_ddi_split_loads_safely(mirrored_root, mirror):
    dataset = load("ogbl-ddi", root=mirrored_root, mirror=mirror, download=False)
    split = dataset.get_edge_split()
    assert split["train"]["edge"].shape == (1067911, 2)
    assert split["valid"]["edge_neg"].shape == (101882, 2)
    assert dataset[0].num_nodes == 4267


def test_text_corpora_through_the_mirror(mirrored_root, mirror):
    bartleby = load("bartleby", root=mirrored_root, mirror=mirror, download=False)
    assert "Bartleby" in bartleby and "\r" not in bartleby
    tutorial = load("pydoc-tutorial", root=mirrored_root, mirror=mirror, download=False)
    names = sorted(Path(f).name for f in get_spec("pydoc-tutorial").files)
    assert len(names) == 17 and [Path(f).name for f in get_spec("pydoc-tutorial").files] == names
    first = (mirror / get_spec("pydoc-tutorial").files[0]).read_text(encoding="utf-8")
    assert tutorial.startswith(first)
    corpus = load("athar-citations", root=mirrored_root, mirror=mirror, download=False)
    assert corpus.is_file() and corpus.read_text(encoding="utf-8").count("\n") > 8000


def test_karate_is_embedded_with_three_masks(tmp_path, offline):
    data = load("karate", root=tmp_path)
    masks = [data.train_mask, data.val_mask, data.test_mask]
    assert [int(m.sum()) for m in masks] == [4, 15, 15]
    assert int(sum(m.long() for m in masks).max()) == 1  # disjoint
    assert data.num_classes == 4 and not any(tmp_path.iterdir())


def test_ogbn_arxiv_loader_on_synthetic_ogb_files(tmp_path, offline):
    written = write_ogbn_arxiv(tmp_path)
    data = load("ogbn-arxiv", root=tmp_path)
    assert data.num_nodes == 60 and data.num_classes == 40
    assert torch.equal(data.edge_index, torch.from_numpy(written["edges"].T))
    assert np.allclose(data.x.numpy(), written["features"], atol=1e-4)
    assert data.y.tolist() == written["labels"].tolist()
    for key, part in (("train_mask", "train"), ("val_mask", "valid"), ("test_mask", "test")):
        assert data[key].nonzero().view(-1).tolist() == written["split"][part].tolist()
    # No checksum is known for ogbn-arxiv: the first use records them (trust on first use).
    assert (tmp_path / ".gnnkit-checksums.json").is_file()


def test_ogbg_molhiv_loader_on_synthetic_ogb_files(tmp_path, offline):
    written = write_ogbg_mol(tmp_path, "ogbg-molhiv")
    dataset = load("ogbg-molhiv", root=tmp_path)
    assert len(dataset) == 12
    for i in range(12):
        graph = dataset[i]
        assert graph.num_nodes == written["node_counts"][i]
        assert graph.edge_index.size(1) == 2 * written["edge_counts"][i]  # ogb adds inverse edges
        assert graph.x.shape[1] == 9 and graph.edge_attr.shape[1] == 3
        assert int(graph.y) == written["labels"][i]
    split = dataset.get_idx_split()
    assert split["test"].tolist() == written["split"]["test"].tolist()


def test_missing_split_file_is_named(tmp_path, offline):
    write_ogbn_arxiv(tmp_path)
    (tmp_path / "ogb" / "ogbn_arxiv" / "split" / "time" / "valid.csv.gz").unlink()
    with pytest.raises(
        DataUnavailableError, match=r"first: ogb/ogbn_arxiv/split/time/valid\.csv\.gz"
    ):
        load("ogbn-arxiv", root=tmp_path)


def test_ogb_prompt_raises_instead_of_hanging(tmp_path):
    write_ogbg_mol(tmp_path, "ogbg-molhiv")
    (tmp_path / "ogb" / "ogbg_molhiv" / "RELEASE_v1.txt").unlink()  # ogb then asks "update now?"
    with pytest.raises(DatasetError, match="asked an interactive question"):
        load_ogb_graph(tmp_path, "ogbg-molhiv")
    with pytest.raises(DatasetError, match="never answers"), no_prompts("test"):
        input("Proceed? (y/N)")


def test_no_mirror_no_network_is_a_clear_error(tmp_path, offline):
    with pytest.raises(DataUnavailableError, match=r"cannot obtain dataset 'cora'.*\n.*data root"):
        resolve("cora", root=tmp_path)
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.name != ".gnnkit.lock"]


def test_copy_from_a_partial_mirror_is_refused_cleanly(tmp_path, mirror, offline):
    partial = tmp_path / "partial"
    for relpath in get_spec("cora").files:
        if not relpath.endswith("ind.cora.graph"):
            (partial / relpath).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(
                mirror / relpath, partial / relpath
            )  # contents only, not read-only modes
    with pytest.raises(DataUnavailableError, match=r"local mirror .*partial: 1 file\(s\) absent"):
        resolve("cora", root=tmp_path / "root", mirror=partial)


def test_failed_ogb_download_leaves_no_folder_that_makes_ogb_prompt(tmp_path, monkeypatch):
    """A download that fails before its first file (no network) leaves OGB's empty dataset
    folder, which OGB would later take for an outdated release and ask about on stdin:
    gnnkit removes such a folder, before the download and after a failure, and never one
    that holds a file."""
    import ogb.graphproppred

    from gnnkit.data.loaders import download_ogb, drop_empty_tree

    folder = tmp_path / "ogb" / "ogbg_molbace"
    (folder / "raw").mkdir(parents=True)  # the trace of an earlier failed attempt
    seen = []

    class Offline:
        def __init__(self, name, root):
            seen.append((tmp_path / "ogb" / "ogbg_molbace").exists())
            (folder / "raw").mkdir(parents=True)  # OGB creates the folder, then fails
            raise OSError("network unreachable")

    monkeypatch.setattr(ogb.graphproppred, "PygGraphPropPredDataset", Offline)
    with pytest.raises(OSError, match="unreachable"):
        download_ogb(tmp_path, "ogbg-molbace", "graph")
    assert seen == [False] and not folder.exists()

    kept = tmp_path / "kept" / "raw"
    kept.mkdir(parents=True)
    (kept / "edge.csv.gz").write_bytes(b"data")
    drop_empty_tree(kept.parent)
    assert (kept / "edge.csv.gz").read_bytes() == b"data"
