"""Inception v3 (Szegedy et al. 2015) from timm, with its auxiliary classifier used while training."""

from __future__ import annotations

import torch
from torch import nn

from transfer.backbones.base import AuxHead
from transfer.backbones.sources.timm_models import TimmBackbone, create_timm_model

# Weight of the auxiliary loss: the paper only says the side head acts as a regulariser; 0.4 is the weight used
# by torchvision's fine-tuning tutorial for Inception v3 (loss = loss + 0.4 * aux_loss).
INCEPTION_V3_AUX_WEIGHT = 0.4


class InceptionV3Backbone(TimmBackbone):
    """timm's InceptionV3 built with `aux_logits=True`; the side head taps Mixed_6e (N x 768 x 17 x 17 at 299)."""

    def __init__(self, model: nn.Module, name: str) -> None:
        aux_fc = model.AuxLogits.fc  # reset_classifier(0) would swap it for Identity: keep the side classifier
        super().__init__(model, name)
        self.model.AuxLogits.fc = aux_fc
        self.model.aux_logits = False  # the model's own forward no longer returns a tuple; we call the side head

    def _body(self, x: torch.Tensor, with_aux: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.model.forward_preaux(x)  # N x 768 x 17 x 17
        aux = [self.model.AuxLogits(x)] if with_aux else []  # N x num_classes
        return self.model.forward_postaux(x), aux  # N x 2048 x 8 x 8

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._body(x, with_aux=False)[0]

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats, aux = self._body(x, with_aux=self.training)
        return self.pool(feats), aux

    def aux_heads(self) -> list[AuxHead]:
        return [AuxHead(self.model.AuxLogits, INCEPTION_V3_AUX_WEIGHT, "AuxLogits")]

    def reset_aux_heads(self, num_classes: int) -> None:
        old = self.model.AuxLogits.fc
        if old.out_features != num_classes:
            self.model.AuxLogits.fc = nn.Linear(
                old.in_features, num_classes, device=old.weight.device, dtype=old.weight.dtype
            )


def build_inception_v3(pretrained: bool = False, tag: str | None = None, **kwargs) -> InceptionV3Backbone:
    model = create_timm_model("inception_v3", pretrained, tag, aux_logits=True, **kwargs)
    return InceptionV3Backbone(model, f"inception_v3.{tag}" if tag else "inception_v3")
