"""Cached views, stage taps and the DDP sharding of extraction."""

from __future__ import annotations

import pytest
import torch
from features_helpers import images, lenet

from transfer.backbones.base import Preprocessing
from transfer.data.config import AugmentConfig
from transfer.data.digests import pixel_digests
from transfer.distributed import shard_for_rank
from transfer.errors import UserError
from transfer.features import CacheStats, FeatureCache, FeatureConfig
from transfer.features.dataset import SampledViews
from transfer.features.tap import FeatureTap
from transfer.features.views import resolve_views, view_transform


def test_resolve_views():
    assert resolve_views("auto", AugmentConfig(mirror=True)) == ["center", "center_flip"]
    assert resolve_views("auto", AugmentConfig(mirror=False)) == ["center"]
    assert resolve_views(1, AugmentConfig()) == ["center"]
    assert len(set(resolve_views("10crop", AugmentConfig()))) == 10
    assert resolve_views(3, AugmentConfig()) == ["random0", "random1", "random2"]
    with pytest.raises(UserError, match="features.views='sideways'"):
        resolve_views("sideways", AugmentConfig())


def test_ten_crop_views_are_distinct_crops_and_mirrors():
    pre = Preprocessing(input_size=(1, 6, 6), mean=(0.0,), std=(1.0,), crop_pct=0.75)  # store side 8
    img = torch.arange(64, dtype=torch.uint8).view(1, 8, 8)
    outs = {v: view_transform(v, pre, AugmentConfig())(img, 0) for v in resolve_views("10crop", AugmentConfig())}
    assert all(o.shape == (1, 6, 6) for o in outs.values())
    assert len({tuple(o.flatten().tolist()) for o in outs.values()}) == 10
    assert torch.equal(outs["tl"][0, 0, 0], img[0, 0, 0].float() / 255)
    assert torch.equal(outs["br_flip"], outs["br"].flip(-1))


def test_random_views_are_seeded_per_image():
    pre = Preprocessing(input_size=(1, 16, 16), mean=(0.0,), std=(1.0,), crop_pct=0.5)
    img = torch.randint(0, 256, (1, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    aug = AugmentConfig(crop="resized", crop_scale=[0.35, 1.0], mirror=True)
    v0, v1 = view_transform("random0", pre, aug), view_transform("random1", pre, aug)
    assert torch.equal(v0(img, 7), v0(img, 7))
    assert not torch.equal(v0(img, 7), v1(img, 7))
    assert not torch.equal(v0(img, 7), v0(img, 8))


def test_random_views_extract_k_per_image_and_hit_again(tmp_path):
    cfg = FeatureConfig(cache_dir=str(tmp_path), views=3, progress=False)
    imgs = images(6)
    c = FeatureCache(lenet(), cfg, augment=AugmentConfig(crop="resized", mirror=True))
    a = c.features(imgs)
    assert a.shape == (6, 3, 84) and c.last.extracted == 18
    assert not torch.equal(a[:, 0], a[:, 1])
    c2 = FeatureCache(lenet(), cfg, augment=AugmentConfig(crop="resized", mirror=True))
    assert torch.equal(c2.features(imgs), a) and c2.last.hits == 18
    c3 = FeatureCache(lenet(), cfg, augment=AugmentConfig(crop="resized", mirror=True, rotation=10))
    c3.features(imgs)
    assert c3.last.extracted == 18  # the augmentation is part of a random view's key


def test_sampled_views_draw_every_view():
    feats = torch.stack([torch.zeros(5, 2), torch.ones(5, 2)], dim=1)  # N x K=2 x D
    ds = SampledViews(feats, torch.zeros(5, dtype=torch.long))
    torch.manual_seed(0)
    drawn = {float(ds[i % 5][0][0]) for i in range(40)}
    assert drawn == {0.0, 1.0}
    assert SampledViews(torch.zeros(5, 3), torch.zeros(5)).views == 1


def test_stage_tap_lenet_shapes_and_values():
    bb = lenet()
    x = torch.randn(4, 1, 32, 32)
    with torch.no_grad():
        c5 = FeatureTap(bb, "c5")(x)
        expected = bb.c5(bb.s4(torch.tanh(bb.c3(bb.s2(torch.tanh(bb.c1(x))))))).flatten(1)
        assert c5.shape == (4, 120)
        torch.testing.assert_close(c5, expected)
        c3 = FeatureTap(bb, "c3")(x)  # 16 x 10 x 10, global-average pooled
        torch.testing.assert_close(c3, bb.c3(bb.s2(torch.tanh(bb.c1(x)))).mean((2, 3)))
        assert torch.equal(FeatureTap(bb, None)(x), bb(x))
        torch.testing.assert_close(FeatureTap(bb, "features")(x), torch.tanh(expected))


def test_stage_tap_stops_the_forward_early_on_a_timm_resnet():
    from transfer.backbones.factory import create_backbone

    bb = create_backbone("resnet18").eval()
    ran = []
    bb.model.layer4.register_forward_hook(lambda *a: ran.append("layer4"))
    tap = FeatureTap(bb, "layer2")
    ran.clear()
    with torch.no_grad():
        out = tap(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 128)
    assert ran == []  # the layers above the tap never ran


def test_unknown_stage_lists_the_choices():
    with pytest.raises(UserError, match=r"features.stage='c9'.*c1, c3, c5, f6"):
        FeatureTap(lenet(), "c9")


@pytest.mark.parametrize("n,world", [(0, 1), (7, 1), (7, 2), (10, 3), (2, 4)])
def test_shards_are_disjoint_and_cover(n, world):
    items = list(range(n))
    shards = [shard_for_rank(items, r, world) for r in range(world)]
    assert sorted(sum(shards, [])) == items
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    with pytest.raises(ValueError):
        shard_for_rank(items, world, world)


def test_ranks_extract_their_shards_and_read_the_union(tmp_path):
    cfg = FeatureConfig(cache_dir=str(tmp_path), views=1, progress=False, chunk=4)
    imgs = images(9)
    rank1 = FeatureCache(lenet(), cfg)
    partial = rank1.store("center")
    rank1.extract_share(partial, "center", imgs, pixel_digests(imgs.pixels), 1, 2, CacheStats())
    assert len(partial.index()) == 4  # rank 1 of 2: images 1, 3, 5, 7
    rank0 = FeatureCache(lenet(), cfg)
    out = rank0.features(imgs, rank=0, world_size=2)
    assert rank0.last.extracted == 5 and out.shape  # its share (3), then what rank 1 never did (2) == (9, 1, 84)
    single = FeatureCache(lenet(), FeatureConfig(enabled=False, views=1, progress=False)).features(imgs)
    torch.testing.assert_close(out, single, rtol=0, atol=1e-6)
