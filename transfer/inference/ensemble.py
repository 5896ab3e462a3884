"""Ensembles: average the class probabilities of several model dirs (each with its own preprocessing)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from transfer.errors import UserError
from transfer.model.classifier import Classifier
from transfer.model.model_dir import load_model_dir


def load_members(model_dirs: Sequence[str | Path]) -> tuple[list[tuple[Classifier, dict]], list[str]]:
    """Load every model dir; all must predict the same classes in the same order."""
    members = [load_model_dir(d) for d in model_dirs]
    classes = members[0][1]["classes"]
    for d, (_, card) in zip(model_dirs, members, strict=True):
        if card["classes"] != classes:
            raise UserError(
                f"model={d}: its classes {card['classes']} differ from {model_dirs[0]}'s {classes}; "
                "an ensemble needs models of the same task."
            )
    return members, classes
