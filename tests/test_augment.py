"""Augmentation presets, AlexNet's PCA colour noise fitted on the user's pixels, and the augment-preview grid."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from imagegen import make_image_folder
from PIL import Image

from transfer.app.commands.augment_preview import grid_size, pick_rows, render_preview
from transfer.backbones.base import Preprocessing
from transfer.data.augment import ColourShift, build_eval_transform, build_train_transform, fit_pca_colour
from transfer.data.config import AugmentConfig
from transfer.data.labelled import LabelledImages
from transfer.errors import UserError

PRE = Preprocessing(input_size=(3, 24, 24), crop_pct=0.75)  # store side 32
ROOT = Path(__file__).resolve().parents[1]


def load_preset(name: str) -> AugmentConfig:
    """conf/augment/<name>.yaml merged on the dataclass, as Hydra does: the AugmentConfig that fit receives."""
    from omegaconf import OmegaConf

    preset = OmegaConf.load(ROOT / "conf" / "augment" / f"{name}.yaml")
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(AugmentConfig), preset))


def _pixels(n: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 32, 32), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


@pytest.mark.parametrize("name", ["none", "light", "standard", "strong"])
def test_presets_build_and_give_input_size(name) -> None:
    cfg = load_preset(name)
    px = _pixels()
    tf = build_train_transform(PRE, cfg, fit_pca_colour(px))
    out = tf(px[0])
    assert out.dtype == torch.float32 and tuple(out.shape) == (3, 24, 24)
    assert tuple(build_eval_transform(PRE)(px[0]).shape) == (3, 24, 24)


def test_none_is_the_eval_view_and_presets_differ() -> None:
    px = _pixels()[0]
    assert torch.equal(build_train_transform(PRE, load_preset("none"))(px), build_eval_transform(PRE)(px))
    strong = load_preset("strong")
    assert strong.rotation > 0 and strong.shear > 0 and strong.pca_noise == 0.1 and strong.crop == "resized"
    assert load_preset("light").crop == "random" and load_preset("light").mirror


def test_mirror_gives_exact_flips() -> None:
    px = _pixels()[0]
    tf = build_train_transform(PRE, AugmentConfig(mirror=True, crop="none", crop_scale=(1.0, 1.0)))
    plain = build_eval_transform(PRE)(px)
    torch.manual_seed(0)
    outs = [tf(px) for _ in range(20)]
    flips = sum(torch.equal(o, plain.flip(-1)) for o in outs)
    same = sum(torch.equal(o, plain) for o in outs)
    assert flips + same == 20 and 0 < flips < 20


def test_random_crop_is_a_window_of_the_stored_square() -> None:
    px = _pixels()[0]
    tf = build_train_transform(PRE, AugmentConfig(mirror=False, crop="random", crop_scale=(1.0, 1.0)))
    norm = build_eval_transform(Preprocessing(input_size=(3, 24, 24), crop_pct=1.0))  # normalise a 24 x 24 tile
    torch.manual_seed(1)
    for _ in range(3):
        out = tf(px)
        assert any(torch.equal(out, norm(px[:, t : t + 24, x : x + 24])) for t in range(9) for x in range(9))


def test_pca_fitted_on_own_pixels_finds_the_colour_axis() -> None:
    gen = torch.Generator().manual_seed(0)
    t = torch.rand(8, 1, 16, 16, generator=gen) * 200  # variation along yellow (1, 1, 0)
    noise = torch.randn(8, 3, 16, 16, generator=gen) * 3
    px = (torch.cat([t, t, torch.zeros_like(t)], 1) + 20 + noise).clamp(0, 255).to(torch.uint8)
    eigval, eigvec = fit_pca_colour(px, max_pixels=1000)
    top = eigvec[:, -1] * eigvec[:, -1].sign()[0]
    assert torch.allclose(top, torch.tensor([0.7071, 0.7071, 0.0]), atol=0.02)
    assert eigval[-1] > 50 * eigval[:-1].max()
    light = ColourShift(pca_std=1.0, pca=(eigval, eigvec))  # PCA lighting alone, inside the fused colour shift
    img = torch.full((3, 4, 4), 0.5)
    torch.manual_seed(3)
    shift = light(img.clone()) - img  # the same colour shift at every pixel, along the fitted axis
    assert torch.allclose(shift, shift[:, :1, :1].expand_as(shift), atol=1e-6)
    s = shift[:, 0, 0]
    assert abs(float(s[0])) > 1e-3
    assert abs(float(s[0] - s[1])) < 0.05 * abs(float(s[0])) and abs(float(s[2])) < 0.05 * abs(float(s[0]))


def test_bad_augment_values_are_user_errors() -> None:
    from transfer.app.compose import compose

    with pytest.raises(UserError, match=r"augment.flip: unknown key; augment.\* accepts .*mirror"):
        compose(["~recipe", "+augment.flip=true"])
    with pytest.raises(UserError, match="augment.crop='zoom'"):
        AugmentConfig(crop="zoom")
    with pytest.raises(UserError, match="augment.crop_scale"):
        AugmentConfig(crop_scale=[0.9, 0.2])


def test_preview_grid_size_and_rows() -> None:
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    assert pick_rows(labels, 4) == [0, 3, 5, 1]
    images = LabelledImages(_pixels(6), labels, ["a", "b", "c"], [str(i) for i in range(6)])
    grid = render_preview(images, PRE, load_preset("strong"), rows=4, views=3)
    assert grid.size == grid_size(4, 4, PRE) == (4 * 24 + 5 * 2, 4 * 24 + 5 * 2)


def test_augment_preview_command_writes_png(tmp_path) -> None:
    make_image_folder(tmp_path / "data", ("red", "green", "blue"), n_per_class=4, size=(64, 48))
    run_dir = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "transfer",
        "command=augment-preview",
        "data=folder",
        f"data.root={tmp_path / 'data'}",
        "backbone=resnet18",
        "backbone.pretrained=false",
        "augment=strong",
        "preview.rows=2",
        "preview.views=3",
        f"hydra.run.dir={run_dir}",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    png = run_dir / "augment_preview.png"
    assert f"augment preview: {png}" in proc.stdout
    assert (run_dir / "scan_report.json").is_file()
    with Image.open(png) as img:
        assert img.size == (4 * 224 + 5 * 2, 2 * 224 + 3 * 2) and img.mode == "RGB"


def test_colour_shift_matches_torchvision_jitter() -> None:
    from torchvision.transforms.v2 import functional as F

    from transfer.data.augment import ColourShift, jitter_matrix

    x = 0.3 + 0.3 * torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))  # no clamping in play
    for b, c, s in [(1.1, 0.9, 1.2), (0.8, 1.2, 0.8)]:
        ref = F.adjust_saturation(F.adjust_contrast(F.adjust_brightness(x, b), c), s)
        mat, off = jitter_matrix(b, c, s, x.mean(dim=(1, 2)))
        assert torch.allclose(torch.einsum("ij,jhw->ihw", mat, x) + off.view(3, 1, 1), ref, atol=1e-5)
    out = ColourShift(0.3, 0.05, 0.1, (torch.ones(3) * 0.1, torch.eye(3)))(torch.rand(3, 8, 8))
    assert out.shape == (3, 8, 8) and float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    grey = ColourShift(0.3)(torch.full((1, 4, 4), 0.5))
    assert grey.shape == (1, 4, 4)
