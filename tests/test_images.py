"""One decoder for scan, training and prediction: EXIF orientation, 16-bit scaling, alpha, CMYK, GIF, draft mode."""

from __future__ import annotations

import numpy as np
import pytest
from imagegen import class_image, with_orientation, write_png16
from PIL import Image

from transfer.backbones.base import Preprocessing
from transfer.data.images import BACKGROUND, load_image, open_image
from transfer.data.pixels import image_to_tensor, resize_center, store_size


def _halves(w: int = 40, h: int = 20) -> Image.Image:
    """Top half red, bottom half blue: orientation mistakes show in every pixel."""
    arr = np.zeros((h, w, 3), np.uint8)
    arr[: h // 2] = (255, 0, 0)
    arr[h // 2 :] = (0, 0, 255)
    return Image.fromarray(arr)


@pytest.mark.parametrize(
    "orientation, expected",
    [(1, lambda a: a), (3, lambda a: np.rot90(a, 2)), (6, lambda a: np.rot90(a, -1)), (8, lambda a: np.rot90(a, 1))],
)
def test_exif_orientation_applied_pixelwise(tmp_path, orientation, expected) -> None:
    img = class_image(2, 0, (40, 24))
    path = tmp_path / "phone.png"
    with_orientation(img, path, orientation)
    got = np.asarray(load_image(path))
    np.testing.assert_array_equal(got, expected(np.asarray(img)))


def test_exif_orientation_in_training_pixels(tmp_path) -> None:
    path = tmp_path / "phone.jpg"
    with_orientation(_halves(80, 40), path, 6, quality=95)  # stored landscape, shown portrait (rotate clockwise)
    pre = Preprocessing(input_size=(3, 32, 32), crop_pct=1.0)
    side = store_size(pre)  # the decode the pixel store and predict use: load, centre square, tensor
    px = image_to_tensor(resize_center(load_image(path, 3, (side, side)), side, pre.interpolation)).int()  # 3 x 32 x 32
    # clockwise: the red top becomes the right side, the blue bottom the left
    assert px[0, :, -4:].float().mean() > 230 and px[2, :, -4:].float().mean() < 30
    assert px[2, :, :4].float().mean() > 230 and px[0, :, :4].float().mean() < 30


def test_sixteen_bit_is_scaled_not_clamped(tmp_path) -> None:
    grey = np.array([[0, 1000, 32768, 65535]], dtype=np.uint16)
    write_png16(tmp_path / "g.png", grey)
    rgb = np.zeros((1, 2, 3), np.uint16)
    rgb[0, 0] = (65535, 32768, 0)
    rgb[0, 1] = (1000, 4000, 60000)
    write_png16(tmp_path / "rgb.png", rgb)
    Image.fromarray(grey).save(tmp_path / "g.tif")
    expected = np.round(grey.astype(np.float64) / 65535 * 255).astype(np.uint8)  # 0, 4, 128, 255
    for name in ("g.png", "g.tif"):
        got = np.asarray(load_image(tmp_path / name, channels=1))
        np.testing.assert_array_equal(got, expected)
        got3 = np.asarray(load_image(tmp_path / name))
        np.testing.assert_array_equal(got3, np.repeat(expected[..., None], 3, axis=2))
    got = np.asarray(load_image(tmp_path / "rgb.png")).astype(int)
    want = np.round(rgb.astype(np.float64) / 65535 * 255)
    assert np.abs(got - want).max() <= 1  # Pillow reduces 16-bit RGB by its high byte: within one level


def test_modes_to_rgb(tmp_path) -> None:
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=100)
    Image.new("L", (8, 8), 90).save(tmp_path / "grey.png")
    Image.new("RGBA", (8, 8), (255, 0, 0, 0)).save(tmp_path / "clear.png")
    Image.new("RGBA", (8, 8), (255, 0, 0, 128)).save(tmp_path / "half.png")
    Image.new("LA", (8, 8), (0, 0)).save(tmp_path / "la.png")
    pal = Image.new("P", (8, 8), 1)
    pal.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    pal.save(tmp_path / "pal.png")
    pal.save(tmp_path / "pal_t.png", transparency=1)
    px = {p.name: np.asarray(load_image(p)).astype(int)[0, 0] for p in tmp_path.iterdir()}
    assert np.abs(px["cmyk.jpg"] - (255, 0, 0)).max() <= 2
    assert list(px["grey.png"]) == [90, 90, 90]
    assert list(px["clear.png"]) == list(BACKGROUND)
    assert np.abs(px["half.png"] - (255, 127, 127)).max() <= 1
    assert list(px["la.png"]) == list(BACKGROUND)
    assert list(px["pal.png"]) == [10, 200, 30]
    assert list(px["pal_t.png"]) == list(BACKGROUND)
    assert all(load_image(p).mode == "RGB" for p in tmp_path.iterdir())
    assert all(load_image(p, channels=1).mode == "L" for p in tmp_path.iterdir())


def test_animated_gif_first_frame(tmp_path) -> None:
    frames = [Image.new("RGB", (10, 10), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    img, notes = open_image(tmp_path / "a.gif")
    assert list(np.asarray(img)[5, 5]) == [255, 0, 0]
    assert "animated (first frame used)" in notes


def test_jpeg_draft_decodes_at_reduced_scale(tmp_path) -> None:
    class_image(0, 0, (1600, 1200)).save(tmp_path / "big.jpg", quality=90)
    assert load_image(tmp_path / "big.jpg").size == (1600, 1200)
    assert load_image(tmp_path / "big.jpg", draft_size=(256, 256)).size == (400, 300)  # 1/4: still >= 256


def test_open_image_accepts_bytes_and_raises_on_garbage(tmp_path) -> None:
    class_image(1, 0, (16, 12)).save(tmp_path / "x.png")
    img, _ = open_image((tmp_path / "x.png").read_bytes())
    assert img.size == (16, 12)
    with pytest.raises(Exception, match="cannot identify"):
        open_image(b"not an image at all")
