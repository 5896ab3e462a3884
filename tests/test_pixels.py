"""The decode-once pixel store: shapes, threads vs serial, memmap above the RAM budget, errors that name files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from imagegen import make_image_folder
from torch.utils.data import DataLoader

from transfer.backbones.base import Preprocessing
from transfer.data.datamodule import ImageDataModule, TransformDataset
from transfer.data.labelled import LabelledImages
from transfer.data.pixels import PixelStore, scan_and_decode, store_size
from transfer.data.scan import scan_image_folder

PRE = Preprocessing(input_size=(3, 28, 28), crop_pct=0.875)  # store side 32


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("px")
    make_image_folder(root, ("a", "b", "c"), n_per_class=6, size=(96, 64), fmt="jpg")
    return root


def test_store_size_and_shapes(folder) -> None:
    assert store_size(PRE) == 32
    _, px = scan_and_decode(folder, PRE)
    assert px.dtype == torch.uint8 and tuple(px.shape) == (18, 3, 32, 32)
    _, grey = scan_and_decode(folder, Preprocessing(input_size=(1, 28, 28), crop_pct=0.875))
    assert tuple(grey.shape) == (18, 1, 32, 32)


def test_threads_memmap_and_single_pass_agree(folder) -> None:
    paths = scan_image_folder(folder).paths()
    manifest, serial = scan_and_decode(folder, PRE, workers=1)
    _, threaded = scan_and_decode(folder, PRE, workers=3)
    _, mapped = scan_and_decode(folder, PRE, ram_budget_mb=0)  # over budget: memory-mapped temp file
    assert manifest.paths() == paths
    assert torch.equal(serial, threaded) and torch.equal(serial, mapped)


def test_memmap_store_leaves_no_file(tmp_path) -> None:
    store = PixelStore(4, 3, 8, ram_budget_mb=0, cache_dir=tmp_path)
    store.put(2, np.full((3, 8, 8), 7, np.uint8))
    t = store.tensor()
    assert isinstance(store.array, np.memmap) and int(t[2].sum()) == 7 * 192
    assert list(tmp_path.iterdir()) == []  # unlinked at once on POSIX; the mapping keeps the data


def test_subset_above_budget_stays_mapped(monkeypatch) -> None:
    import transfer.data.pixels as pixels

    images = LabelledImages(
        torch.arange(6 * 3 * 4 * 4, dtype=torch.int64).remainder(251).to(torch.uint8).view(6, 3, 4, 4),
        torch.tensor([0, 1, 0, 1, 0, 1]),
        ["x", "y"],
        [f"f{i}" for i in range(6)],
    )
    monkeypatch.setattr(pixels, "DEFAULT_RAM_BUDGET_MB", 0.0)
    sub = images.subset([5, 1, 3])
    assert torch.equal(sub.pixels, images.pixels[[5, 1, 3]]) and sub.names == ["f5", "f1", "f3"]


def _explode(x: torch.Tensor) -> torch.Tensor:
    if int(x[0, 0, 0]) == 42:
        raise ValueError("boom")
    return x.float()


def test_error_inside_a_dataloader_worker_names_the_file() -> None:
    pixels = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
    pixels[2, 0, 0, 0] = 42
    images = LabelledImages(pixels, torch.tensor([0, 1, 0, 1]), ["a", "b"], [f"/data/img_{i}.jpg" for i in range(4)])
    loader = DataLoader(TransformDataset(images, _explode), batch_size=1, num_workers=1)
    with pytest.raises(RuntimeError, match=r"/data/img_2\.jpg: ValueError: boom"):
        list(loader)


def test_datamodule_batches(folder) -> None:
    manifest, px = scan_and_decode(folder, PRE)
    labels = torch.tensor([s.label for s in manifest.samples])
    images = LabelledImages(px, labels, manifest.classes, manifest.paths())
    dm = ImageDataModule(images, images.subset([0, 7, 13]), _explode, _explode, batch_size=5, num_workers=0)
    x, y = next(iter(dm.train_dataloader()))
    assert tuple(x.shape) == (5, 3, 32, 32) and y.dtype == torch.long
    assert dm.num_classes == 3 and len(dm.val_dataloader().dataset) == 3


def test_memmapped_store_feeds_persistent_workers(folder) -> None:
    manifest, px = scan_and_decode(folder, PRE, ram_budget_mb=0)  # memory-mapped, shared with the forked worker
    labels = torch.tensor([s.label for s in manifest.samples])
    images = LabelledImages(px, labels, manifest.classes, manifest.paths())
    loader = DataLoader(TransformDataset(images, torch.clone), batch_size=6, num_workers=1, persistent_workers=True)
    for _ in range(2):
        got = torch.cat([x for x, _ in loader])
        assert torch.equal(got, px)


def test_bench_data_pipeline_prints_one_json_line(capsys) -> None:
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "data_pipeline.py"
    spec = importlib.util.spec_from_file_location("bench_data_pipeline", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.main(["--images", "12", "--epochs", "2", "--workers", "0", "--batch-size", "4"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert json.loads(lines[-1]) == result and "ratio" in " ".join(result)
    assert result["images"] == 12 and len(result["ours_epoch_s"]) == len(result["baseline_epoch_s"]) == 2
