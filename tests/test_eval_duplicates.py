"""Duplicates: exact copies and planted copies of real photos are found, distinct photos are not paired, label conflicts
and leakage come only from real pairs, the search is blocked and bounded, and a page without duplicates says so in one
line."""

from __future__ import annotations

import io
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from transfer.backbones.base import Preprocessing
from transfer.data.labelled import LabelledImages
from transfer.data.pixels import _to_store, store_size
from transfer.eval.duplicates import (
    MIN_IMAGES,
    DuplicatePair,
    aligned_similar_pairs,
    find_duplicates,
    label_conflicts,
    leakage_pairs,
)
from transfer.eval.page import render_report
from transfer.eval.report_sections import duplicates_section

WEATHER = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "weather"
SIDE = store_size(Preprocessing())  # 256: the store size of the 224 px backbones


def _weather_files() -> list[Path]:
    """Real photos of ../shared/data/weather: skipped without it, except under CI (where it must be there)."""
    files = sorted(WEATHER.glob("*/*/*.jpg"))
    if not files:
        if os.environ.get("CI"):
            pytest.fail(f"{WEATHER} is missing under CI: ../shared/data must be beside the checkout")
        pytest.skip(f"real photos not here: {WEATHER} (../shared/data beside the checkout)")
    return files


# photos of the weather set that are one photo twice (bench/duplicates.py KNOWN_PAIRS): kept out of "distinct" sets
_TWICE = {"cloudy32", "cloudy5", "shine16", "shine94", "shine158", "shine218", "shine244", "shine1", "shine29"}
_TWICE |= {"rain28", "rain147", "rain40", "rain59", "rain56", "rain71", "rain127", "rain19", "shine101", "shine195"}
_TWICE |= {"shine21", "shine35", "sunrise269", "sunrise281", "cloudy153", "cloudy174", "shine127", "shine138"}
_TWICE |= {"shine136", "shine229", "shine163", "shine224", "shine188", "shine83", "shine67", "sunrise190"}
_TWICE |= {"sunrise290", "sunrise312", "sunrise313", "sunrise34", "sunrise5"}


def _real_photos(n: int, seed: int = 0) -> tuple[list[Image.Image], list[str]]:
    files = [f for f in _weather_files() if f.stem not in _TWICE]
    pick = np.random.default_rng(seed).choice(len(files), n, replace=False)
    return [Image.open(files[k]).convert("RGB") for k in sorted(pick)], [files[k].parent.name for k in sorted(pick)]


def _store(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(_to_store(img, SIDE, "bilinear").copy())  # as the folder scan keeps it: C x 256 x 256


def _copies(img: Image.Image, rng: np.random.Generator) -> list[Image.Image]:
    """JPEG quality 60, half size, a 5% crop at a random position, and all three (bench/duplicates.py's copies)."""

    def jpeg(im: Image.Image) -> Image.Image:
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=60)
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")

    def half(im: Image.Image) -> Image.Image:
        return im.resize((im.width // 2, im.height // 2), Image.BILINEAR)

    def crop(im: Image.Image) -> Image.Image:
        w, h = im.size
        cw, ch = round(0.95 * w), round(0.95 * h)
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        return im.crop((x, y, x + cw, y + ch))

    return [jpeg(img), half(img), crop(img), jpeg(half(crop(img)))]


# ---------------------------------------------------------------- real photos


def test_planted_copies_of_real_photos_are_found_and_distinct_photos_are_not_paired():
    photos, _ = _real_photos(60)
    rng = np.random.default_rng(0)
    pixels = [_store(p) for p in photos]
    planted = {}  # copy index -> original index
    for k in (3, 17, 31, 44, 58):
        for copy in _copies(photos[k], rng):
            planted[len(pixels)] = k
            pixels.append(_store(copy))
    found = find_duplicates(torch.stack(pixels))
    assert found.near_checked
    pairs = {(p.i, p.j) for p in found.pairs}
    assert {(k, c) for c, k in planted.items()} <= pairs  # every copy pairs with its original
    group = {**{k: k for k in range(60)}, **planted}
    assert all(group[p.i] == group[p.j] for p in found.pairs)  # nothing else: copies only pair with their own photo
    assert not any(p.exact for p in found.pairs)


def test_distinct_real_photos_of_one_kind_are_not_duplicates():
    photos, kinds = _real_photos(120, seed=1)  # skies of four kinds, 30 or so of each
    found = find_duplicates(torch.stack([_store(p) for p in photos]))
    assert found.near_checked and found.pairs == []
    assert len(set(kinds)) == 4


def test_label_conflicts_and_leakage_come_only_from_real_pairs():
    photos, kinds = _real_photos(40, seed=2)
    classes = sorted(set(kinds))
    pixels = [_store(p) for p in photos] + [_store(_copies(photos[5], np.random.default_rng(3))[3])]  # 40: a copy
    labels = [classes.index(c) for c in kinds] + [(classes.index(kinds[5]) + 1) % len(classes)]  # ... mislabelled
    images = LabelledImages(torch.stack(pixels), torch.tensor(labels), classes, [f"img{k}.jpg" for k in range(41)])
    found = find_duplicates(images.pixels)
    assert [(p.i, p.j) for p in found.pairs] == [(5, 40)]
    assert [(p.i, p.j) for p in label_conflicts(found.pairs, images.labels)] == [(5, 40)]
    train, held = list(range(30)), list(range(30, 41))
    assert [(a, b) for a, b, _ in leakage_pairs(found.pairs, train, held)] == [(5, 40)]
    section = duplicates_section(images, train, [("val", held), ("test", None)])
    assert section["counts"] == {"leakage": 1, "label_conflicts": 1}
    assert section["warnings"] == [
        "1 val image(s) duplicate or nearly duplicate the chosen model's training images: the val score is inflated "
        "(see Duplicates)"
    ]
    assert section["leakage"][0]["a_name"] == "img5.jpg" and section["leakage"][0]["b_name"] == "img40.jpg"
    assert section["label_conflicts"][0]["b_label"] == classes[labels[40]]
    page = render_report({"warnings": section["warnings"], "duplicates": section})
    assert "<h2>Duplicates</h2>" in page and "Same photo, different labels (1)" in page
    assert "1 duplicate pair(s) among the 41 images (0 with the same pixels, 1 near copies); 1 shown below." in page


def test_a_page_without_duplicates_shows_one_line_and_no_warning():
    photos, kinds = _real_photos(30, seed=4)
    classes = sorted(set(kinds))
    images = LabelledImages(
        torch.stack([_store(p) for p in photos]), torch.tensor([classes.index(c) for c in kinds]), classes, kinds
    )
    section = duplicates_section(images, list(range(20)), [("test", list(range(20, 30)))])
    assert section["warnings"] == [] and section["leakage"] == [] and section["label_conflicts"] == []
    page = render_report({"warnings": section["warnings"], "duplicates": section})
    assert 'id="warnings"' not in page
    body = page.split('<section id="duplicates">')[1].split("</section>")[0]
    assert body == (
        "<p>No duplicates among the 30 images: no two have the same pixels, and none is a resized, re-encoded or "
        "slightly cropped copy of another.</p>"
    )


# ---------------------------------------------------------------- exact copies (no real photos needed)


def _noise(n: int, side: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, 3, side, side), dtype=np.uint8))


def test_exact_copies_are_found_by_their_pixels_whatever_their_names():
    px = _noise(30)
    px[12] = px[4]
    px[29] = px[4]
    px[20] = px[7]
    found = find_duplicates(px)
    exact = [(p.i, p.j) for p in found.pairs if p.exact]
    assert exact == [(4, 12), (4, 29), (12, 29), (7, 20)]
    assert all(p.similarity == 1.0 for p in found.pairs if p.exact)
    assert not [p for p in found.pairs if not p.exact]  # random noise has no near copies


def test_few_images_are_checked_for_exact_copies_only_and_say_so():
    px = _noise(MIN_IMAGES - 1)
    px[3] = px[0]
    found = find_duplicates(px)
    assert not found.near_checked and [(p.i, p.j, p.exact) for p in found.pairs] == [(0, 3, True)]
    images = LabelledImages(px, torch.zeros(len(px), dtype=torch.long), ["a"], [f"{k}.png" for k in range(len(px))])
    section = duplicates_section(images, [0, 1, 2], [("val", [3, 4])])
    assert section["warnings"] == [
        "1 val image(s) duplicate the chosen model's training images: the val score is inflated (see Duplicates)"
    ]
    assert section["summary"].endswith(f"near copies are looked for from {MIN_IMAGES} distinct images on.")
    assert "same<br><b>pixels</b>" in render_report({"duplicates": section})


# ---------------------------------------------------------------- the search over views (synthetic embeddings)


def _views(n: int, v: int = 4, d: int = 32, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, v, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_a_copy_matching_a_crop_view_is_found_and_nothing_else():
    emb = _views(200)
    emb[150, 0] = _unit(emb[3, 2] + 0.05 * _views(1, 1, seed=1)[0, 0])  # the whole of 150 is a crop of 3
    emb[77] = emb[10]  # identical views
    pairs = aligned_similar_pairs(emb)
    assert [(i, j) for i, j, _ in pairs] == [(10, 77), (3, 150)]
    assert pairs[0][2] == pytest.approx(1.0, abs=1e-5) and 0.99 < pairs[1][2] < 1.0


def test_a_crowd_of_look_alikes_is_not_paired_but_a_copy_standing_out_is():
    emb = _views(300)
    centre = _views(1, seed=9)[0]
    for k in range(20):  # 20 images all close to one another (one digit, one grey sky): cosine about 0.95
        emb[k] = _unit(centre + 0.23 * _views(1, seed=100 + k)[0])
    assert min(float(emb[a, 0] @ emb[b, 0]) for a in range(20) for b in range(a)) > 0.9
    emb[299] = emb[150]
    assert [(i, j) for i, j, _ in aligned_similar_pairs(emb)] == [(150, 299)]
    assert len(aligned_similar_pairs(emb, margin=0.0)) > 20  # without the margin the crowd pairs up


def test_blocks_do_not_change_the_answer():
    emb = _views(150, d=8)
    for k in range(10):
        emb[100 + k] = _unit(emb[k] + 0.1 * _views(1, d=8, seed=20 + k)[0])
    whole = aligned_similar_pairs(emb, similar=0.8, margin=0.1, block_mb=64)
    tiny = aligned_similar_pairs(torch.from_numpy(emb), similar=0.8, margin=0.1, block_mb=1e-6)  # 1 row a block
    assert len(whole) >= 10 and [p[:2] for p in tiny] == [p[:2] for p in whole]
    assert [p[2] for p in tiny] == pytest.approx([p[2] for p in whole], abs=1e-5)  # float sums in another order
    assert all(a[2] >= b[2] for a, b in zip(whole, whole[1:], strict=False))


def test_leakage_pairs_index_train_then_held_out():
    pairs = [DuplicatePair(2, 40, 0.97, False), DuplicatePair(7, 9, 1.0, True), DuplicatePair(31, 35, 0.95, False)]
    assert [(a, b) for a, b, _ in leakage_pairs(pairs, range(30), range(30, 50))] == [(2, 40)]
    assert [(a, b) for a, b, _ in leakage_pairs(pairs, [9, 35], [7, 31])] == [(9, 7), (35, 31)]
    assert [(p.i, p.j) for p in label_conflicts(pairs, np.r_[np.zeros(40), 1, np.zeros(9)])] == [(2, 40)]


def test_bad_shapes():
    with pytest.raises(ValueError, match="N x V x D"):
        aligned_similar_pairs(np.zeros((5, 4)))
    with pytest.raises(ValueError, match="N x C x H x W"):
        find_duplicates(torch.zeros(3, 8, 8, dtype=torch.uint8))


def test_5000_images_stay_under_40_mb():
    emb = _views(5000, v=10, d=64)
    emb[4999] = emb[0]
    tracemalloc.start()
    pairs = aligned_similar_pairs(emb)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert [(i, j) for i, j, _ in pairs] == [(0, 4999)]
    assert peak < 40 * 2**20  # one 5,000 x 5,000 float32 matrix alone is 100 MB, and there are 10 views


def test_pairs_on_one_side_under_one_label_are_counted_in_the_one_line_not_warned_about():
    px = _noise(30)
    px[9] = px[2]  # both training images, one label
    images = LabelledImages(px, torch.zeros(30, dtype=torch.long), ["a"], [f"{k}.png" for k in range(30)])
    section = duplicates_section(images, list(range(20)), [("val", list(range(20, 30)))])
    assert section["warnings"] == [] and section["counts"] == {"leakage": 0, "label_conflicts": 0}
    assert section["summary"] == (
        "1 duplicate pair(s) among the 30 images (1 with the same pixels, 0 near copies), each between two images of "
        "one label on the same side of the split: no held-out image copies a training image, no photo has two labels."
    )
    page = render_report({"duplicates": section})
    assert f'<section id="duplicates"><p>{section["summary"]}</p></section>' in page


def test_pairs_found_once_are_read_back_for_the_same_images_and_found_again_for_others(tmp_path, monkeypatch):
    """stored_duplicates keeps find_duplicates' answer under the images' digests: the same images (a rerun) read it
    back without searching, other images (one changed pixel) or a corrupt entry are searched again."""
    import transfer.eval.duplicates as dup
    from transfer.data.digests import pixel_digests

    px = _noise(30)
    px[12] = px[4]
    searched = []
    real = dup.find_duplicates
    monkeypatch.setattr(dup, "find_duplicates", lambda p, **k: searched.append(len(p)) or real(p, **k))
    first = dup.stored_duplicates(px, pixel_digests(px), tmp_path)
    again = dup.stored_duplicates(px.clone(), pixel_digests(px), tmp_path)
    assert searched == [30] and again == first and [(p.i, p.j, p.exact) for p in again.pairs] == [(4, 12, True)]
    assert isinstance(again.pairs[0], DuplicatePair) and again.near_checked
    other = px.clone()
    other[0, 0, 0, 0] ^= 1
    dup.stored_duplicates(other, pixel_digests(other), tmp_path)
    assert searched == [30, 30] and len(list(tmp_path.glob("*.json"))) == 2
    for f in tmp_path.glob("*.json"):
        f.write_text("{not json")
    assert dup.stored_duplicates(px, pixel_digests(px), tmp_path) == first and searched == [30, 30, 30]
    assert dup.stored_duplicates(px, pixel_digests(px), None) == first and searched == [30, 30, 30, 30]
