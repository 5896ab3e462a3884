"""Classifier heads on pooled features; a user's own head plugs in with `@register_head`."""

from __future__ import annotations

import difflib
from collections.abc import Callable

from torch import nn

from transfer.errors import UserError

_HEADS: dict[str, Callable[..., nn.Module]] = {}


def register_head(name: str) -> Callable:
    """Decorator: `factory(in_features, num_classes, **kwargs) -> nn.Module` becomes `head.name=<name>`."""

    def wrap(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _HEADS[name] = factory
        return factory

    return wrap


def list_heads() -> list[str]:
    return sorted(_HEADS)


def head_factory(name: str) -> Callable[..., nn.Module]:
    """The registered factory of head `name` (a UserError naming the choices otherwise)."""
    if name not in _HEADS:
        close = difflib.get_close_matches(name, list_heads(), n=3)
        raise UserError(
            f"head.name={name!r} is not a registered head; choose one of {', '.join(list_heads())}"
            + (f" (did you mean {close[0]}?)" if close else "")
        )
    return _HEADS[name]


def create_head(name: str, in_features: int, num_classes: int, **kwargs) -> nn.Module:
    return head_factory(name)(in_features, num_classes, **kwargs)


@register_head("softmax")
def softmax_head(in_features: int, num_classes: int, dropout: float = 0.0) -> nn.Module:
    """The seeds' head: one linear layer; softmax lives in the loss (cross-entropy) and in predict."""
    return (
        nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, num_classes))
        if dropout
        else nn.Linear(in_features, num_classes)
    )


@register_head("mlp")
def mlp_head(in_features: int, num_classes: int, hidden: int = 256, dropout: float = 0.2) -> nn.Module:
    """A shallow model on top of frozen features: Linear-ReLU-Dropout-Linear."""
    return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, num_classes))
