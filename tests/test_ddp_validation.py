"""DDP counts every validation image once: Lightning's in-loop val/acc and the report agree on an odd val set."""

from __future__ import annotations

import csv
import json

import pytest

from tests.synthetic import write_image_folder
from transfer.data.samplers import UnpaddedDistributedSampler, unpadded_shard


@pytest.mark.parametrize(("n", "world"), [(5, 2), (7, 3), (4, 2), (1, 1)])
def test_unpadded_shards_cover_every_index_exactly_once(n, world):
    shards = [unpadded_shard(n, r, world) for r in range(world)]
    assert sorted(i for s in shards for i in s) == list(range(n))
    assert [len(UnpaddedDistributedSampler(range(n), world, r)) for r in range(world)] == [len(s) for s in shards]


def test_fewer_items_than_ranks_gives_every_rank_everything():
    """No rank may be empty (it would skip the epoch-end metric sync and hang the others); equal weights stay exact."""
    assert [unpadded_shard(1, r, 2) for r in range(2)] == [[0], [0]]
    assert list(UnpaddedDistributedSampler(range(5), 2, 1)) == [1, 3]


@pytest.mark.slow
def test_ddp_in_loop_val_acc_has_the_true_denominator(run_cli, tmp_path):
    """24 images, 20% val = 5 on 2 ranks: Lightning's padding made 6 (val/acc 1/6 where the truth was 1/5)."""
    write_image_folder(tmp_path / "cats", n=8)
    proc = run_cli(
        "recipe=cat_detector",
        "data.root=cats",
        "backbone=lenet5",
        "regime=scratch",
        "trainer.max_epochs=2",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.strategy=ddp",
        "hydra.run.dir=run",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    best = json.loads((tmp_path / "run" / "metrics.json").read_text())["best"]
    assert best["n"] == 5 and sum(map(sum, best["confusion"])) == 5
    rows = [r for r in csv.DictReader((tmp_path / "run" / "logs" / "metrics.csv").open()) if r["val/acc"]]
    last = float(rows[-1]["val/acc"])
    assert abs(last * 5 - round(last * 5)) < 1e-5, f"val/acc={last} is not k/5: a padded image counted twice"
    assert last == pytest.approx(best["accuracy"], abs=1e-6)  # the last epoch's model is the one scored
