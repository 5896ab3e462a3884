"""BatchNorm statistics chosen from evidence (regime.norm=auto): kept when the images match them, re-estimated
(AdaBN) when they are shifted, and the decision said."""

from __future__ import annotations

import torch
from torch import nn

from transfer.data.labelled import LabelledImages
from transfer.training import norm_policy


def _images(mean: float, n: int = 16) -> LabelledImages:
    gen = torch.Generator().manual_seed(0)
    pixels = (torch.randn(n, 3, 8, 8, generator=gen) * 20 + mean).clamp(0, 255).to(torch.uint8)
    return LabelledImages(pixels, torch.arange(n) % 2, ["a", "b"], [f"i{i}" for i in range(n)])


def _to_float(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 255.0  # B x 3 x 8 x 8 in [0, 1]


def _body(running_mean: float) -> nn.Module:
    body = nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 3))
    body[0].running_mean.fill_(running_mean)
    body[0].running_var.fill_(0.01)  # running std 0.1
    return body


def test_matching_statistics_are_kept():
    body = _body(128 / 255)
    decision = norm_policy.decide("auto", body, _images(128), _to_float)
    assert decision.policy == "eval" and "within 0.5" in decision.reason
    assert norm_policy.input_shift(body, _images(128), _to_float) < 0.1


def test_shifted_statistics_are_re_estimated_on_the_images():
    body = _body(0.0)  # pretrained on dark images; these are mid-grey: (0.5 - 0) / 0.1 = 5 running stds
    images = _images(128)
    decision = norm_policy.decide("auto", body, images, _to_float)
    assert decision.policy == "adapt" and decision.describe().startswith("norm adapt: median input shift 5.")
    norm_policy.adapt(body, images, _to_float)
    expect = _to_float(images.pixels).mean(dim=(0, 2, 3))
    torch.testing.assert_close(body[0].running_mean, expect, atol=1e-4, rtol=0)
    assert norm_policy.input_shift(body, images, _to_float) < 0.01
    assert body[0].momentum == 0.1 and body.training  # the momentum and the module's mode put back


def test_a_setting_is_obeyed_and_a_body_without_batchnorm_has_nothing_to_decide():
    assert (
        norm_policy.decide("train", _body(0.0), _images(128), _to_float).describe() == "norm train: regime.norm=train"
    )
    plain = nn.Sequential(nn.Conv2d(3, 4, 3))
    assert norm_policy.decide("auto", plain, _images(128), _to_float).policy == "none"


def test_identity_statistics_folded_into_the_convolutions_are_kept_not_re_estimated():
    """Quantisation-ready weights (the shared MobileNet v2) fold BatchNorm into the convolutions and leave each layer
    at mean 0, variance 1 - eps; a 'shift' against those is meaningless and AdaBN would undo the folded scales (it
    took the 64-px full fine-tune on the weather photos from 0.96 to 0.33, the majority class)."""
    body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4))
    body[1].running_var.fill_(1 - body[1].eps)  # as stored by the folding tool
    images = _images(200)  # far from mean 0 in any unit
    decision = norm_policy.decide("auto", body, images, _to_float)
    assert decision.policy == "eval" and "identity statistics" in decision.reason
    body[3].running_mean.fill_(0.3)  # one layer with real statistics: there is something to measure
    assert norm_policy.decide("auto", body, images, _to_float).policy in ("eval", "adapt")
    assert "identity" not in norm_policy.decide("auto", body, images, _to_float).reason
