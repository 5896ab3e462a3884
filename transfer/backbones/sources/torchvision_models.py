"""AlexNet and GoogLeNet (Inception v1) from torchvision, behind the backbone contract.

timm has neither, so these two wrap torchvision's modules (kept under `.model`, so a state dict saved by
torchvision loads with a `model.` prefix) and take preprocessing from the weights' `transforms()`.
"""

from __future__ import annotations

import logging
import pickle
import warnings

import torch
from torch import nn

from transfer.backbones.base import AuxHead, Backbone, Preprocessing, Stage
from transfer.errors import UserError

log = logging.getLogger(__name__)
GOOGLENET_AUX_WEIGHT = 0.3  # Szegedy et al. 2014, sec. 5: "their loss is added to the total loss ... weight 0.3"


def weights_enum(enum_cls, tag: str | None):
    """torchvision's weights entry for `tag` (None/'DEFAULT': the default), or a UserError listing the valid ones."""
    names = [w.name for w in enum_cls]
    try:
        return enum_cls[tag or "DEFAULT"]
    except KeyError:
        raise UserError(
            f"backbone weights {tag!r}: not a file or folder here, and torchvision has no such weights for this "
            f"architecture; give a weights file, or a tag: {', '.join(names)}."
        ) from None


def preprocessing_from_weights(weights, input_size: int | None = None) -> Preprocessing:
    """Crop size, resize size (-> crop fraction), mean/std and interpolation from `weights.transforms()`."""
    tf = weights.transforms()
    crop = int(tf.crop_size[0])
    resize = int(tf.resize_size[0])
    return Preprocessing(
        input_size=(3, input_size or crop, input_size or crop),
        mean=tuple(float(m) for m in tf.mean),
        std=tuple(float(s) for s in tf.std),
        interpolation=str(tf.interpolation.value),
        crop_pct=crop / resize,
    )


def tv_pretrained_state(weights, arch: str) -> dict[str, torch.Tensor]:
    """The state dict behind a torchvision weights entry, from torch.hub's cache or a (checked-first) download."""
    from transfer.backbones.sources.hub import ensure_url_weights_reachable, torch_hub_checkpoints_dir

    fetch = f"import torchvision; torchvision.models.{arch}(weights='{weights.name}')"
    ensure_url_weights_reachable(f"{arch}.{weights.name}", weights.url, fetch)
    log.info("backbone %s: pretrained weights %s (torch.hub cache %s)", arch, weights.name, torch_hub_checkpoints_dir())
    try:  # weights_only=True: torch.hub's default (False) would run whatever code a tampered cache file carries
        return weights.get_state_dict(progress=True, check_hash=True, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as e:
        raise UserError(
            f"pretrained weights {arch}.{weights.name}: the cached file in {torch_hub_checkpoints_dir()} is unreadable "
            f"or not plain tensors ({str(e).splitlines()[0]}); delete it to download again."
        ) from None


class AlexNetBackbone(Backbone):
    """AlexNet (Krizhevsky et al. 2012, torchvision's one-GPU variant); features are fc7's 4096 activations."""

    def __init__(self, weights=None) -> None:
        super().__init__()
        from torchvision.models import AlexNet_Weights, alexnet

        self.name = "alexnet"
        self.model = alexnet(weights=None)
        if weights is not None:
            self.model.load_state_dict(tv_pretrained_state(weights, "alexnet"))
        self.model.classifier[6] = nn.Identity()  # the 1000-way fc8 goes; the task's head replaces it
        self.num_features = 4096
        self.preprocessing = preprocessing_from_weights(weights or AlexNet_Weights.DEFAULT)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.avgpool(self.model.features(x))  # N x 256 x 6 x 6

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.classifier(features.flatten(1))  # N x 4096 (fc7, after ReLU)

    def classifier_prefixes(self) -> tuple[str, ...]:
        return ("model.classifier.6.",)

    def stages(self) -> list[Stage]:
        layers = {"conv1": "features.0", "conv2": "features.3", "conv3": "features.6", "conv4": "features.8"}
        layers |= {"conv5": "features.10", "fc6": "classifier.1", "fc7": "classifier.4"}
        return [Stage(name, (f"model.{m}.weight", f"model.{m}.bias")) for name, m in layers.items()]


def init_googlenet(model: nn.Module) -> None:
    """torchvision's GoogLeNet initialisation, fast: its trunc_normal_(std=0.01, a=-2, b=2) truncates at 200 std,
    which is plain normal_(std=0.01) in distribution, and trunc_normal_'s erfinv costs seconds on 12 M weights."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=0.01)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class GoogLeNetBackbone(Backbone):
    """GoogLeNet / Inception v1 (Szegedy et al. 2014) with both auxiliary classifiers (after 4a and 4d).

    The auxiliary logits join the loss at weight 0.3 each while training and are never computed at inference.
    `transform_input=True` as for torchvision's ImageNet weights: inputs normalised with ImageNet mean/std.
    """

    def __init__(self, weights=None) -> None:
        super().__init__()
        from torchvision.models import GoogLeNet, GoogLeNet_Weights

        self.name = "googlenet"
        self.model = GoogLeNet(num_classes=1000, aux_logits=True, transform_input=True, init_weights=False)
        if weights is None:
            init_googlenet(self.model)
        else:
            self.model.load_state_dict(tv_pretrained_state(weights, "googlenet"))
        self.model.fc = nn.Identity()  # the 1000-way classifier goes; the task's head replaces it
        self.model.dropout = nn.Identity()
        self.num_features = 1024
        self.preprocessing = preprocessing_from_weights(weights or GoogLeNet_Weights.DEFAULT)

    def _body(self, x: torch.Tensor, with_aux: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        m = self.model
        x = m._transform_input(x)
        x = m.maxpool1(m.conv1(x))  # N x 64 x 56 x 56
        x = m.maxpool2(m.conv3(m.conv2(x)))  # N x 192 x 28 x 28
        x = m.maxpool3(m.inception3b(m.inception3a(x)))  # N x 480 x 14 x 14
        x = m.inception4a(x)  # N x 512 x 14 x 14
        aux = [m.aux1(x)] if with_aux else []  # N x num_classes
        x = m.inception4d(m.inception4c(m.inception4b(x)))  # N x 528 x 14 x 14
        if with_aux:
            aux.append(m.aux2(x))  # N x num_classes
        x = m.maxpool4(m.inception4e(x))  # N x 832 x 7 x 7
        return m.inception5b(m.inception5a(x)), aux  # N x 1024 x 7 x 7

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._body(x, with_aux=False)[0]

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.avgpool(features).flatten(1)  # N x 1024

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats, aux = self._body(x, with_aux=self.training)
        return self.pool(feats), aux

    def classifier_prefixes(self) -> tuple[str, ...]:
        return ("model.fc.",)

    def aux_heads(self) -> list[AuxHead]:
        return [
            AuxHead(self.model.aux1, GOOGLENET_AUX_WEIGHT, "aux1"),
            AuxHead(self.model.aux2, GOOGLENET_AUX_WEIGHT, "aux2"),
        ]

    def reset_aux_heads(self, num_classes: int) -> None:
        for aux in (self.model.aux1, self.model.aux2):
            old = aux.fc2
            if old.out_features != num_classes:
                aux.fc2 = nn.Linear(old.in_features, num_classes, device=old.weight.device, dtype=old.weight.dtype)

    def stages(self) -> list[Stage]:
        """stem, inception3, inception4 (with both auxiliary heads, which tap it), inception5."""
        groups = {
            "stem": ("conv1", "conv2", "conv3"),
            "inception3": ("inception3a", "inception3b"),
            "inception4": ("inception4a", "inception4b", "inception4c", "inception4d", "inception4e", "aux1", "aux2"),
            "inception5": ("inception5a", "inception5b"),
        }
        named = [n for n, _ in self.named_parameters()]
        return [
            Stage(stage, tuple(n for n in named if n.split(".")[1] in modules)) for stage, modules in groups.items()
        ]


def build_alexnet(pretrained: bool = False, tag: str | None = None) -> AlexNetBackbone:
    from torchvision.models import AlexNet_Weights

    return AlexNetBackbone(weights_enum(AlexNet_Weights, tag) if pretrained else None)


def build_googlenet(pretrained: bool = False, tag: str | None = None) -> GoogLeNetBackbone:
    from torchvision.models import GoogLeNet_Weights

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*auxiliary heads in the pretrained googlenet.*")
        return GoogLeNetBackbone(weights_enum(GoogLeNet_Weights, tag) if pretrained else None)
