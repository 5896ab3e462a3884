"""scan_image_folder on folders as users have them: every bad case refused or ignored with its reason, counted."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest
from imagegen import make_image_folder, photo_jpeg_bytes, write_bad_corpus
from PIL import Image, ImageFile

from transfer.backbones.base import Preprocessing
from transfer.data.scan import scan_image_folder
from transfer.data.task import load_folder_task
from transfer.errors import UserError

PRE = Preprocessing(input_size=(3, 32, 32), crop_pct=1.0)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("corpus")
    return root, write_bad_corpus(root)


def test_every_file_has_its_expected_status(corpus) -> None:
    root, expect = corpus
    m = scan_image_folder(root)
    accepted = {str(Path(s.path).relative_to(root)) for s in m.samples}
    refused = {str(Path(r.path).relative_to(root)): r.reason for r in m.refused}
    for name, status in expect.items():
        kind, _, word = status.partition(":")
        if kind == "ok":
            assert name in accepted, f"{name} should be accepted; refused as {refused.get(name)}"
        elif kind == "refused":
            assert name in refused, f"{name} should be refused"
            assert word in refused[name], f"{name}: {refused[name]!r} lacks {word!r}"
        else:
            assert name not in accepted and name not in refused
            assert any(word in key for key in m.ignored), f"{name}: no ignored key with {word!r} in {m.ignored}"
    assert accepted == {n for n, s in expect.items() if s == "ok"}
    assert set(refused) == {n for n, s in expect.items() if s.startswith("refused")}


def test_counts_classes_and_notes(corpus) -> None:
    root, _ = corpus
    m = scan_image_folder(root)
    assert m.classes == ["cat", "dog"]  # .ipynb_checkpoints is not a class
    assert m.class_counts() == {"cat": 5, "dog": 8}
    assert m.ignored == {
        "AppleDouble sidecar (._*)": 1,
        "hidden folder": 2,
        "system file (.DS_Store, Thumbs.db, ...)": 2,
        "unsupported type .mp4": 2,
        "unsupported type .txt": 1,
    }
    assert m.notes["animated (first frame used)"] == 1
    assert m.notes["CMYK (converted to RGB)"] == 1
    assert m.notes["16-bit or float (scaled to 8-bit)"] == 1
    assert m.notes["EXIF orientation applied"] == 1
    assert m.notes["transparency (composited on white)"] == 1
    assert len(m.refused) == 6
    report = json.loads(m.to_json())
    assert report["refused_count"] == 6 and len(report["refused"]) == 6
    assert {r["path"] for r in report["refused"]} == {r.path for r in m.refused}
    assert all(len(s["digest"]) == 40 for s in report["samples"])


def test_strict_stops_at_first_bad_file_naming_it(corpus) -> None:
    root, _ = corpus
    with pytest.raises(UserError) as e:
        scan_image_folder(root, strict=True)
    msg = str(e.value)
    assert msg.startswith(str(root / "cat" / "crc.png") + ":")  # crc.png sorts first among the bad files
    assert "data.strict=true" in msg and "\n" not in msg


def test_half_written_jpeg_refused_although_verify_passes(tmp_path, monkeypatch) -> None:
    make_image_folder(tmp_path, n_per_class=2)
    jpeg = photo_jpeg_bytes((800, 600))
    half = tmp_path / "a" / "half.jpg"
    half.write_bytes(jpeg[: len(jpeg) // 2])
    with Image.open(half) as img:
        img.verify()  # the trap: Pillow's verify() finds nothing wrong
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # someone flipped the global switch
    m = scan_image_folder(tmp_path)
    assert [Path(r.path).name for r in m.refused] == ["half.jpg"]
    assert "truncated" in m.refused[0].reason
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_decompression_bomb_refused_with_its_path(tmp_path, monkeypatch) -> None:
    make_image_folder(tmp_path, n_per_class=2, size=(20, 20))
    Image.new("RGB", (200, 100), "red").save(tmp_path / "b" / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)  # 200x100 = 20,000 pixels: over the limit
    m = scan_image_folder(tmp_path)
    assert [(Path(r.path).name, r.reason.split(":")[0]) for r in m.refused] == [("huge.png", "decompression bomb")]
    with pytest.raises(UserError, match=r"huge\.png: decompression bomb"):
        scan_image_folder(tmp_path, strict=True)


def test_empty_class_folder_is_an_error_naming_it(tmp_path) -> None:
    make_image_folder(tmp_path, ("a", "b"), n_per_class=2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"\['empty'\] hold no usable image"):
        scan_image_folder(tmp_path)
    (tmp_path / "empty" / ".DS_Store").write_bytes(b"x")  # junk only: still empty
    (tmp_path / "empty" / "zero.jpg").write_bytes(b"")
    with pytest.raises(UserError, match="empty"):
        scan_image_folder(tmp_path)


def test_single_class_is_an_error(tmp_path) -> None:
    make_image_folder(tmp_path, ("only",), n_per_class=2)
    (tmp_path / ".ipynb_checkpoints").mkdir()
    with pytest.raises(UserError, match=r"found 1 class folder\(s\) \['only'\]; need at least 2"):
        scan_image_folder(tmp_path)


def test_numeric_and_unicode_class_names(tmp_path) -> None:
    nfd = unicodedata.normalize("NFD", "café")
    make_image_folder(tmp_path, ("10", "2", "1", nfd), n_per_class=2)
    (tmp_path / "stray.jpg").write_bytes(b"")
    (tmp_path / ".DS_Store").write_bytes(b"")
    m = scan_image_folder(tmp_path)
    assert m.ignored == {"file outside a class folder": 1, "system file (.DS_Store, Thumbs.db, ...)": 1}
    assert m.classes == ["1", "2", "10", "café"]
    assert all(unicodedata.is_normalized("NFC", c) for c in m.classes)
    assert json.loads(m.to_json())["classes"] == ["1", "2", "10", "café"]
    labels = {Path(s.path).parent.name: s.label for s in m.samples}
    assert labels["10"] == 2 and labels["1"] == 0


def test_split_folders_duplicates_and_imbalance(tmp_path) -> None:
    make_image_folder(tmp_path / "train", ("a", "b"), n_per_class=8)
    make_image_folder(tmp_path / "val", ("a", "b"), n_per_class=2, seed=1)
    make_image_folder(tmp_path / "test", ("a", "b"), n_per_class=1, seed=2)
    leaked = tmp_path / "val" / "a" / "copy.png"
    leaked.write_bytes((tmp_path / "train" / "a" / "a_3.png").read_bytes())
    for p in list((tmp_path / "train" / "b").iterdir())[2:]:
        p.unlink()  # train: a 8, b 2 -> 4x imbalance
    m = scan_image_folder(tmp_path)
    assert m.splits() == ["train", "val", "test"]
    assert m.class_counts("train") == {"a": 8, "b": 2}
    assert m.class_counts("val") == {"a": 3, "b": 2}
    assert m.duplicates == [[str(tmp_path / "train" / "a" / "a_3.png"), str(leaked)]]
    assert any("more than one split" in w and str(leaked) in w for w in m.warnings)
    assert any("imbalanced" in w and "4.0x" in w for w in m.warnings)
    assert "train: a 8, b 2" in m.report()


def test_class_missing_from_train_is_an_error(tmp_path) -> None:
    make_image_folder(tmp_path / "train", ("a", "b"), n_per_class=2)
    make_image_folder(tmp_path / "val", ("a", "b", "c"), n_per_class=2)
    with pytest.raises(UserError, match=r"\['c'\] have no training image"):
        scan_image_folder(tmp_path)


def test_load_folder_task_writes_report_and_splits(tmp_path, capsys) -> None:
    root = tmp_path / "data"
    write_bad_corpus(root)
    (root / "dog" / "dup.png").write_bytes((root / "dog" / "dog_1.png").read_bytes())
    task = load_folder_task(str(root), 0.3, False, PRE, tmp_path / "run")
    report = json.loads((tmp_path / "run" / "scan_report.json").read_text(encoding="utf-8"))
    assert len(report["refused"]) == 6 and report["class_counts"]["all"] == {"cat": 5, "dog": 9}
    out = capsys.readouterr().out
    assert "refused 6 files" in out and "half.jpg" in out and "scan_report.json" in out
    assert tuple(task.images.pixels.shape) == (14, 3, 32, 32)
    names = task.images.names
    for seed in (0, 1, 2):
        train, val = task.split(seed)
        assert sorted(train + val) == list(range(14)) and val
        sides = {names[i]: "train" for i in train} | {names[i]: "val" for i in val}
        assert sides[str(root / "dog" / "dup.png")] == sides[str(root / "dog" / "dog_1.png")]
    assert task.split(1) == task.split(1)


def test_strict_task_names_the_file(tmp_path) -> None:
    write_bad_corpus(tmp_path / "data")
    with pytest.raises(UserError, match="crc.png"):
        load_folder_task(str(tmp_path / "data"), 0.2, True, PRE, tmp_path / "run")
