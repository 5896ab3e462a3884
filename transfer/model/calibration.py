"""A model dir's temperature (Guo et al. 2017): fitted on the validation split only, saved as calibration.json beside
the weights, applied by `predict` when asked (`calibrate=true`): it changes confidences, never the predicted class."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from transfer.atomic import write_text_atomic

CALIBRATION = "calibration.json"


def save_temperature(model_dir: str | Path, temperature: float, fitted_on: str, ece_before: float, ece_after: float):
    body = {"temperature": float(temperature), "fitted_on": fitted_on, "ece_before": ece_before, "ece_after": ece_after}
    return write_text_atomic(Path(model_dir) / CALIBRATION, json.dumps(body, indent=2) + "\n")


def read_temperature(model_dir: str | Path) -> float | None:
    path = Path(model_dir).expanduser() / CALIBRATION
    return float(json.loads(path.read_text(encoding="utf-8"))["temperature"]) if path.is_file() else None


class Tempered(nn.Module):
    """logits / T: softmax of it is the calibrated probability."""

    def __init__(self, model: nn.Module, temperature: float) -> None:
        super().__init__()
        self.model, self.temperature = model, float(temperature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) / self.temperature
