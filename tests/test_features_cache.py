"""The feature cache: hits, misses and invalidation for every part of the key, and faults on disk."""

from __future__ import annotations

import errno
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from features_helpers import images, lenet

from transfer.data.augment import AugmentConfig, build_eval_transform
from transfer.data.digests import pixel_digests
from transfer.data.labelled import LabelledImages
from transfer.errors import UserError
from transfer.features import FeatureCache, FeatureConfig
from transfer.features import key as keymod
from transfer.features import store as storemod
from transfer.features.key import set_digest


def cache(backbone, tmp_path, **kw) -> FeatureCache:
    cfg = FeatureConfig(cache_dir=str(tmp_path / "cache"), views=kw.pop("views", 1), progress=False, **kw)
    return FeatureCache(backbone, cfg, augment=AugmentConfig(mirror=False))


def test_miss_then_hit_returns_identical_features(tmp_path):
    imgs = images(24)
    first = cache(lenet(), tmp_path)
    a = first.features(imgs)
    assert a.shape == (24, 1, 84)
    assert (first.last.extracted, first.last.hits) == (24, 0)
    second = cache(lenet(), tmp_path)  # a new process would build a new cache object like this
    b = second.features(imgs)
    assert (second.last.extracted, second.last.hits) == (0, 24)
    assert torch.equal(a, b)


def test_cached_features_equal_in_memory_features(tmp_path):
    bb, imgs = lenet(), images(20)
    cached = cache(bb, tmp_path).features(imgs)[:, 0]
    off = FeatureConfig(enabled=False, cache_dir=str(tmp_path / "nowhere"), views=1, progress=False)
    memory = FeatureCache(bb, off).features(imgs)[:, 0]
    with torch.inference_mode():  # the plain frozen loop: the eval transform, the body in eval mode
        reference = bb.eval()(build_eval_transform(bb.preprocessing)(imgs.pixels)).float()
    assert torch.equal(cached, memory)
    torch.testing.assert_close(cached, reference, rtol=0, atol=1e-6)
    assert not (tmp_path / "nowhere").exists()  # a disabled cache writes nothing


def test_float16_is_its_own_namespace_and_close(tmp_path):
    imgs = images(12)
    full = cache(lenet(), tmp_path).features(imgs)
    half = cache(lenet(), tmp_path, dtype="float16")
    h = half.features(imgs)
    assert half.last.extracted == 12 and h.dtype == torch.float32
    torch.testing.assert_close(h, full, rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize(
    "change",
    ["weights", "name", "preprocessing", "stage", "versions"],
)
def test_each_model_part_of_the_key_invalidates(tmp_path, monkeypatch, change):
    imgs = images(10)
    cache(lenet(), tmp_path).features(imgs)
    bb, kw = lenet(), {}
    if change == "weights":
        with torch.no_grad():
            bb.c1.bias[0] += 1e-3
    elif change == "name":
        bb.name = "lenet5-other"
    elif change == "preprocessing":
        bb.preprocessing = replace(bb.preprocessing, mean=(0.4,))
    elif change == "stage":
        kw["stage"] = "c5"
    elif change == "versions":
        monkeypatch.setattr(keymod, "library_versions", lambda: {"torch": "0", "timm": "0", "transfer": "9.9"})
        import transfer.features.cache as cachemod

        monkeypatch.setattr(cachemod, "library_versions", keymod.library_versions)
    again = cache(bb, tmp_path, **kw)
    again.features(imgs)
    assert (again.last.extracted, again.last.hits) == (10, 0)


def test_changed_image_extracts_only_that_image(tmp_path):
    imgs = images(16)
    cache(lenet(), tmp_path).features(imgs)
    pixels = imgs.pixels.clone()
    pixels[3, 0, 0, 0] ^= 1  # one grey level in one pixel
    changed = LabelledImages(pixels, imgs.labels, imgs.classes, imgs.names)
    c = cache(lenet(), tmp_path)
    out = c.features(changed)
    assert (c.last.extracted, c.last.hits) == (1, 15)
    torch.testing.assert_close(out, cache(lenet(), tmp_path / "fresh").features(changed), rtol=0, atol=1e-6)


def test_added_image_extracts_only_that_image(tmp_path):
    imgs = images(16)
    cache(lenet(), tmp_path).features(imgs)
    more = images(17)  # same generator: the first 16 are the same images
    assert torch.equal(more.pixels[:16], imgs.pixels)
    c = cache(lenet(), tmp_path)
    c.features(more)
    assert (c.last.extracted, c.last.hits) == (1, 16)


def test_renamed_or_relabelled_files_hit_but_the_set_digest_changes(tmp_path):
    imgs = images(12)
    cache(lenet(), tmp_path).features(imgs)
    relabelled = LabelledImages(imgs.pixels, (imgs.labels + 1) % 3, ["x", "y", "z"], [f"new{i}" for i in range(12)])
    c = cache(lenet(), tmp_path)
    c.features(relabelled)
    assert c.last.extracted == 0
    d = pixel_digests(imgs.pixels)
    assert set_digest(d, imgs.labels.tolist(), imgs.classes) != set_digest(d, relabelled.labels.tolist(), imgs.classes)
    assert set_digest(d, imgs.labels.tolist(), imgs.classes) != set_digest(d, imgs.labels.tolist(), ["x", "y", "z"])


def test_views_share_the_centre_namespace(tmp_path):
    imgs = images(8)
    cache(lenet(), tmp_path).features(imgs)  # centre only
    flip = cache(lenet(), tmp_path, views="flip")
    out = flip.features(imgs)
    assert out.shape == (8, 2, 84)
    assert (flip.last.extracted, flip.last.hits) == (8, 8)  # only the mirrored view was extracted


def test_a_killed_build_leaves_nothing_served(tmp_path):
    imgs = images(8)
    c = cache(lenet(), tmp_path)
    ns_dir = c.store("center").dir
    ns_dir.mkdir(parents=True)
    # what a kill can leave: an array without its manifest, a half-written temp file of a dead process
    np.save(ns_dir / "shard-deadbeefdeadbeef.npy", np.zeros((8, 84), np.float32))
    (ns_dir / ".shard-0000.json.999999999.abcd1234.tmp").write_bytes(b'{"format": "transfer.feat')
    out = c.features(imgs)
    assert c.last.extracted == 8
    assert torch.equal(out, cache(lenet(), tmp_path / "fresh").features(imgs))
    assert not list(ns_dir.glob(".*.tmp"))  # the dead process's temp file was swept under the lock


@pytest.mark.parametrize("damage", ["other_format", "garbage", "short_array"])
def test_cache_from_another_version_or_damaged_is_rebuilt(tmp_path, damage):
    imgs = images(8)
    c = cache(lenet(), tmp_path)
    expected = c.features(imgs)
    (manifest,) = c.store("center").dir.glob("shard-*.json")
    m = json.loads(manifest.read_text())
    if damage == "other_format":
        manifest.write_text(json.dumps({**m, "format": "transfer.features/0"}))
    elif damage == "garbage":
        manifest.write_text("{not json")
    else:
        np.save(c.store("center").dir / m["file"], np.zeros((3, 84), np.float32))
    again = cache(lenet(), tmp_path)
    assert torch.equal(again.features(imgs), expected)
    assert again.last.extracted == 8


@pytest.mark.parametrize("err", [errno.EROFS, errno.ENOSPC, errno.EACCES])
def test_unwritable_cache_dir_is_a_user_error_naming_the_key(tmp_path, monkeypatch, err):
    def refuse(path, write):
        raise OSError(err, __import__("os").strerror(err), str(path))

    monkeypatch.setattr(storemod, "atomic_write", refuse)
    with pytest.raises(UserError) as info:
        cache(lenet(), tmp_path).features(images(4))
    msg = str(info.value)
    assert f"features.cache_dir={tmp_path / 'cache'}" in msg and "features.cache_dir=<a writable" in msg
    assert __import__("os").strerror(err) in msg


def test_cache_dir_under_a_file_is_a_user_error(tmp_path):
    (tmp_path / "afile").write_text("x")
    cfg = FeatureConfig(cache_dir=str(tmp_path / "afile" / "cache"), views=1, progress=False)
    with pytest.raises(UserError, match=r"features.cache_dir=.*afile/cache: cannot create"):
        FeatureCache(lenet(), cfg).features(images(4))


def test_default_cache_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert FeatureConfig().directory() == tmp_path / "transfer" / "features"
    assert FeatureConfig(cache_dir="~/x").directory() == __import__("pathlib").Path("~/x").expanduser()


def test_config_rejects_unknown_keys_and_dtypes():
    from transfer.app.compose import compose

    with pytest.raises(UserError, match=r"features.cachedir: unknown key; features.\* accepts .*cache_dir"):
        compose(["~recipe", "+features.cachedir=/tmp"])
    with pytest.raises(UserError, match="features.dtype='int8'"):
        FeatureConfig(dtype="int8")


def test_penultimate_and_an_earlier_stage_in_one_pass_equal_two_separate_passes(tmp_path):
    """regime=auto's stage hint beside the frozen candidate: one forward pass fills both caches (it was a second
    extraction pass: 24 of the 37 s auto added to a 48-s frozen run on the weather photos at 224 px), and what it
    stores is what each tap alone computes; a second call extracts nothing."""
    bb, imgs = lenet(), images(20)
    both = cache(bb, tmp_path / "pair")
    calls = []
    handle = bb.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))  # (a tap's set-up runs 1 image)
    top, c5 = both.with_stage(imgs, "c5")
    handle.remove()
    assert top.shape == (20, 84) and c5.shape == (20, 120) and [n for n in calls if n > 1] == [20]  # one pass
    alone_top = cache(bb, tmp_path / "alone").features(imgs, ["center"])[:, 0]
    alone_c5 = cache(bb, tmp_path / "alone", stage="c5").features(imgs, ["center"])[:, 0]
    torch.testing.assert_close(top, alone_top, rtol=0, atol=1e-6)
    torch.testing.assert_close(c5, alone_c5, rtol=0, atol=1e-6)
    again = cache(bb, tmp_path / "pair")
    torch.testing.assert_close(again.with_stage(imgs, "c5")[1], c5, rtol=0, atol=0)
    assert again.last.extracted == 0


def test_a_set_hashes_its_pixels_once_and_a_subset_takes_its_share(monkeypatch):
    """The feature cache, the duplicate finder and the CV groups all address images by `pixel_digests`: one pass
    over the whole set serves them and every subset of it."""
    import transfer.data.labelled as labelled

    g = torch.Generator().manual_seed(0)
    whole = labelled.LabelledImages(
        torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8, generator=g), torch.arange(6) % 2, ["a", "b"],
        [f"i{k}" for k in range(6)],
    )  # fmt: skip
    calls = []
    monkeypatch.setattr(labelled, "pixel_digests", lambda p: calls.append(len(p)) or pixel_digests(p))
    part = whole.subset([4, 1]).subset([1])  # a subset of a subset
    assert part.digests() == pixel_digests(whole.pixels[[1]])
    assert whole.digests() == pixel_digests(whole.pixels) and whole.subset([5, 0]).digests() == [
        whole.digests()[5], whole.digests()[0]]  # fmt: skip
    assert calls == [6]  # the whole set, once
    import pickle

    alone = pickle.loads(pickle.dumps(whole.subset([2, 3])))  # a spawned worker's copy: not the whole set's pixels
    assert alone._parent is None and alone.digests() == whole.digests()[2:4] and calls == [6, 2]
