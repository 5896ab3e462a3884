"""`command=backbones`: every registered backbone with its size, input, feature width, stages and weights."""

from __future__ import annotations

import torch

from transfer.backbones.factory import create_backbone
from transfer.backbones.registry import get_spec, list_backbones


def backbone_rows() -> list[dict]:
    rows = []
    for name in list_backbones():
        spec = get_spec(name)
        with torch.device("meta"):
            b = create_backbone(name, pretrained=False)
        rows.append(
            {
                "name": name,
                "source": spec.source,
                "params_m": sum(p.numel() for p in b.parameters()) / 1e6,
                "input": "x".join(str(s) for s in b.preprocessing.input_size),
                "features": b.num_features,
                "stages": len(b.stages()),
                "aux": len(b.aux_heads()),
                "weights": ", ".join(spec.pretrained_tags) or "none public",
            }
        )
    return rows


def print_backbone_table() -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="registered backbones (any other timm model works by name too: backbone.name=<timm name>)")
    for col in ("name", "source", "params (M)", "input", "features", "stages", "aux heads", "pretrained tags"):
        table.add_column(col)
    for r in backbone_rows():
        table.add_row(
            r["name"],
            r["source"],
            f"{r['params_m']:.1f}",
            r["input"],
            str(r["features"]),
            str(r["stages"]),
            str(r["aux"]),
            r["weights"],
        )
    Console().print(table)
