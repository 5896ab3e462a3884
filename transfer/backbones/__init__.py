"""Backbones: a registry of named bodies behind one contract (see `base.Backbone`)."""

from transfer.backbones.base import AuxHead, Backbone, Preprocessing, Stage
from transfer.backbones.factory import create_backbone
from transfer.backbones.registry import get_spec, list_backbones, register_backbone

__all__ = [
    "AuxHead",
    "Backbone",
    "Preprocessing",
    "Stage",
    "create_backbone",
    "get_spec",
    "list_backbones",
    "register_backbone",
]
