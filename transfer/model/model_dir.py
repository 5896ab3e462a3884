"""A model dir: `model.safetensors` (backbone.* + head.*) and `card.json` (backbone, classes, preprocessing, head).

`predict` and `evaluate` load model dirs, never Hydra configs.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file, save_file

from transfer import __version__
from transfer.backbones.base import Preprocessing
from transfer.errors import UserError
from transfer.model.classifier import Classifier
from transfer.model.rebuild import rebuild_info

CARD = "card.json"
WEIGHTS = "model.safetensors"


def save_model_dir(
    path: str | Path,
    classifier: Classifier,
    backbone_name: str,
    classes: list[str],
    head: dict,
    backbone_kwargs: dict | None = None,
    extra: dict | None = None,
) -> Path:
    """Write weights and card; `head` is {"name": ..., **kwargs} as given to `create_head`."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in classifier.state_dict().items()}
    save_file(state, str(path / WEIGHTS), metadata={"format": "transfer.model.model_dir", "version": __version__})
    card = {
        "format": "transfer.model.model_dir/1",
        "transfer_version": __version__,
        "backbone": backbone_name,
        "backbone_kwargs": backbone_kwargs or {},
        "num_features": int(classifier.backbone.num_features),
        "classes": list(classes),
        "preprocessing": classifier.backbone.preprocessing.to_dict(),
        "head": dict(head),
        "rebuild": rebuild_info(classifier.backbone, backbone_name),
        **(extra or {}),
    }
    (path / CARD).write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def read_card(path: str | Path, key: str = "model") -> dict:
    path = Path(path).expanduser()
    card = path / CARD
    if not card.is_file() or not (path / WEIGHTS).is_file():
        raise UserError(
            f"{key}={path}: not a model dir (needs {CARD} and {WEIGHTS}); use <run dir>/model of a fit run."
        )
    try:
        return json.loads(card.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{path / CARD}: unreadable card ({e}).") from None


def load_model_dir(path: str | Path, key: str = "model") -> tuple[Classifier, dict]:
    """Rebuild the classifier from a model dir; returns (classifier in eval mode, card)."""
    from transfer.model.heads import create_head
    from transfer.model.rebuild import rebuild_backbone

    card = read_card(path, key)
    backbone = rebuild_backbone(card, key)
    backbone.reset_aux_heads(len(card["classes"]))  # GoogLeNet / Inception v3 saved their task-sized side heads
    head_cfg = dict(card["head"])
    head = create_head(head_cfg.pop("name"), card["num_features"], len(card["classes"]), **head_cfg)
    classifier = Classifier(backbone, head)
    state = load_file(str(Path(path).expanduser() / WEIGHTS))
    missing, unexpected = classifier.load_state_dict(state, strict=False)
    if missing:
        raise UserError(
            f"{key}={path}: {len(missing)} weights missing from {WEIGHTS} (e.g. {missing[0]}); file damaged?"
        )
    backbone.preprocessing = Preprocessing.from_dict(card["preprocessing"])
    return classifier.eval(), card
