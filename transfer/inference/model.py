"""A trained model as users of timm and fastai expect it: `load(model_dir)` then `.predict(images)`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from transfer.inference.predict import list_images, predict_paths
from transfer.model.model_dir import load_model_dir


class Model:
    """A model dir loaded for inference (its classes, preprocessing and card travel with it)."""

    def __init__(self, model_dir: str | Path) -> None:
        self.model_dir = Path(model_dir).expanduser()
        self.classifier, self.card = load_model_dir(self.model_dir)

    @property
    def classes(self) -> list[str]:
        return list(self.card["classes"])

    def predict(self, images: str | Path | Sequence[str | Path], tta: str = "center") -> list[dict]:
        """One row per image: {file, class, probability, p_<class>...}; a file, a folder, or a list of files."""
        single = isinstance(images, str | Path)
        files = list_images(images) if single else [Path(f).expanduser() for f in images]
        return predict_paths([self.model_dir], files, tta)

    def predict_proba(self, images: str | Path | Sequence[str | Path], tta: str = "center") -> torch.Tensor:
        """N x num_classes probabilities, rows in the order of `predict` (NaN rows for unreadable files)."""
        rows = self.predict(images, tta)
        return torch.tensor([[r.get(f"p_{c}", float("nan")) for c in self.classes] for r in rows])

    def __repr__(self) -> str:
        return f"Model({str(self.model_dir)!r}, backbone={self.card['backbone']!r}, classes={self.classes})"


def load(model_dir: str | Path) -> Model:
    """The model saved in `model_dir` (a fit run's `<run dir>/model`)."""
    return Model(model_dir)
