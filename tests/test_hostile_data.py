"""Hostile image folders: damaged JPEG scan data, pixel strips, symbolic links (loops, broken, class folders),
and val/ lacking a class. Each must end in a refusal or warning that says why, never a crash, hang or silence."""

from __future__ import annotations

import io
import os
import resource
from pathlib import Path

import numpy as np
from imagegen import make_image_folder, photo_jpeg_bytes
from PIL import Image

from transfer.backbones.base import Preprocessing
from transfer.data.pixels import resize_center, scan_and_decode
from transfer.data.scan import scan_image_folder
from transfer.inference.predict import list_images

PRE = Preprocessing(input_size=(3, 32, 32), crop_pct=1.0)


def _corrupt_scan_data(data: bytes) -> bytes:
    """Overwrite 64 bytes in the middle of the entropy-coded data; the length (and the EOI marker) stay.

    The bytes 0..63 hold no 0xFF, so no marker appears: only the Huffman stream is damaged (libjpeg then reports
    'extraneous bytes before marker'). Some overwrites, e.g. all zeros, resynchronise; no decoder notices those.
    """
    sos = data.index(b"\xff\xda")
    mid = (sos + len(data)) // 2
    return data[:mid] + bytes(range(64)) + data[mid + 64 :]


def test_jpeg_with_overwritten_scan_data_is_refused_and_a_good_one_kept(tmp_path):
    root = make_image_folder(tmp_path / "d", n_per_class=3, fmt="png")
    good = photo_jpeg_bytes((320, 240), seed=1)
    (root / "a" / "good.jpg").write_bytes(good)
    bad = _corrupt_scan_data(photo_jpeg_bytes((320, 240), seed=2))
    assert len(bad) == len(photo_jpeg_bytes((320, 240), seed=2))
    Image.open(io.BytesIO(bad)).load()  # Pillow alone decodes it without a word: that is the hole
    (root / "a" / "bad.jpg").write_bytes(bad)
    m = scan_image_folder(root)
    assert [Path(r.path).name for r in m.refused] == ["bad.jpg"]
    assert m.refused[0].reason.startswith("corrupt JPEG data (libjpeg: Corrupt JPEG data:")
    assert str(root / "a" / "good.jpg") in m.paths()
    assert len(m.samples) == 7


def test_a_20000_x_1_strip_resizes_without_a_gigapixel_intermediate():
    strip = Image.fromarray(np.tile(np.arange(250, dtype=np.uint8), 80)[None, :20000, None].repeat(3, 2))
    assert strip.size == (20000, 1)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    out = resize_center(strip, 256)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert out.size == (256, 256)
    assert grown_mb < 200, f"peak memory grew by {grown_mb:.0f} MB"  # resize-then-crop grew it by ~5200 MB


def test_resize_center_matches_resize_then_crop_on_an_ordinary_photo():
    img = Image.open(io.BytesIO(photo_jpeg_bytes((160, 120)))).convert("RGB")
    full = img.resize((43, 32), Image.BILINEAR, reducing_gap=3.0).crop((5, 0, 37, 32))
    diff = np.abs(np.asarray(resize_center(img, 32), dtype=int) - np.asarray(full, dtype=int))
    assert diff.max() <= 2


def test_a_class_folder_that_is_a_symlink_is_scanned_and_stored(tmp_path):
    src = make_image_folder(tmp_path / "src", classes=("a", "b"), n_per_class=4)
    root = tmp_path / "d"
    root.mkdir()
    (root / "a").symlink_to(src / "a", target_is_directory=True)
    (root / "b").symlink_to(src / "b", target_is_directory=True)
    manifest, pixels = scan_and_decode(root, PRE)  # was IndexError: the store was sized by a rglob that skips links
    assert manifest.class_counts() == {"a": 4, "b": 4}
    assert tuple(pixels.shape) == (8, 3, 32, 32)


def test_a_symlinked_subfolder_is_followed_and_a_loop_is_refused_once(tmp_path):
    root = make_image_folder(tmp_path / "d", classes=("a", "b"), n_per_class=2)
    extra = make_image_folder(tmp_path / "extra", classes=("x", "y"), n_per_class=3)
    (root / "a" / "more").symlink_to(extra / "x", target_is_directory=True)
    (root / "b" / "loop").symlink_to(root / "b", target_is_directory=True)  # b/loop/loop/loop/...
    m = scan_image_folder(root)
    assert m.class_counts() == {"a": 5, "b": 2}
    assert [(Path(r.path).name, r.reason.split(" (")[0]) for r in m.refused] == [("loop", "symbolic link loop")]
    assert m.refused[0].reason == f"symbolic link loop (points to {root / 'b'}; its files are counted once)"


def test_broken_symlinks_are_refused_with_their_target(tmp_path):
    root = make_image_folder(tmp_path / "d", classes=("a", "b"), n_per_class=2)
    (root / "a" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    (root / "c").symlink_to(tmp_path / "no_such_class", target_is_directory=True)
    m = scan_image_folder(root)
    reasons = {Path(r.path).name: r.reason for r in m.refused}
    assert reasons == {
        "c": f"broken symbolic link (points to {tmp_path / 'no_such_class'}, which cannot be opened)",
        "gone.png": f"broken symbolic link (points to {tmp_path / 'nowhere.png'}, which cannot be opened)",
    }
    assert m.classes == ["a", "b"]


def test_predict_list_images_follows_links_and_stops_at_a_loop(tmp_path, caplog):
    root = make_image_folder(tmp_path / "d", classes=("a", "b"), n_per_class=2)
    os.symlink(root, root / "a" / "up", target_is_directory=True)  # a loop through the top folder
    files = list_images(root)
    assert sorted(f.name for f in files) == ["a_0.png", "a_1.png", "b_0.png", "b_1.png"]
    assert "symbolic link loop" in caplog.text and str(root / "a" / "up") in caplog.text


def test_val_folder_lacking_a_train_class_is_warned(tmp_path):
    make_image_folder(tmp_path / "d" / "train", classes=("a", "b", "c"), n_per_class=2)
    make_image_folder(tmp_path / "d" / "val", classes=("a", "b"), n_per_class=2, seed=1)
    m = scan_image_folder(tmp_path / "d")
    assert m.warnings == [
        f"{tmp_path / 'd' / 'val'}: no image of class(es) ['c'] that train/ holds; val metrics say nothing "
        "about them (add val/<class>/ images)"
    ]
    assert "warning: " + m.warnings[0] in m.report()


def test_two_links_to_one_folder_in_a_class_keep_its_files_once(tmp_path):
    root = make_image_folder(tmp_path / "d", classes=("a", "b"), n_per_class=2)
    extra = make_image_folder(tmp_path / "extra", classes=("x",), n_per_class=3, seed=5)
    (root / "a" / "one").symlink_to(extra / "x", target_is_directory=True)
    (root / "a" / "two").symlink_to(extra / "x", target_is_directory=True)
    m = scan_image_folder(root)
    assert m.class_counts() == {"a": 5, "b": 2} and m.duplicates == []
    assert [(r.path, r.reason) for r in m.refused] == [
        (
            str(root / "a" / "two"),
            f"symbolic link to a folder already scanned (points to {extra / 'x'}; its files are counted once)",
        )
    ]
