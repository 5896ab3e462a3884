"""The shared ImageNet MobileNet v2 (../shared/data/backbones/mnv2_coral.py) at another input size, as a user would add
it: the plugin's builder takes no size argument and the toolkit has no config key that overrides a backbone's input
size (preprocessing comes from the weights), so this registers `mobilenet_v2_coral_px` with `backbone.kwargs.size`.

    PYTHONPATH=<repo>:<repo>/bench:../shared/data/backbones TRANSFER_PLUGINS=floor_plugins python -m transfer \
        backbone.name=mobilenet_v2_coral_px backbone.kwargs.size=64 backbone.weights=.../mobilenet_v2_coral.safetensors
"""

from __future__ import annotations

from mnv2_coral import MobileNetV2Coral  # the shared plugin (also registers mobilenet_v2_coral at 224 px)

from transfer import Preprocessing, UserError, register_backbone


class MobileNetV2CoralPx(MobileNetV2Coral):
    """The same body and weights; images enter at `size` x `size` (resized from the same stored square)."""

    def __init__(self, size: int = 224) -> None:
        super().__init__()
        self.name = "mobilenet_v2_coral_px"
        self.preprocessing = Preprocessing(input_size=(3, size, size), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


@register_backbone("mobilenet_v2_coral_px", description="MobileNet v2 1.0 (Coral weights) at backbone.kwargs.size px")
def mobilenet_v2_coral_px(
    pretrained: bool = False, tag: str | None = None, size: int = 224, **kwargs: object
) -> MobileNetV2CoralPx:
    if pretrained:
        raise UserError("backbone=mobilenet_v2_coral_px: give backbone.weights=<mobilenet_v2_coral.safetensors>.")
    return MobileNetV2CoralPx(int(size))
