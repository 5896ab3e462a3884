"""`command=backbones`: every registered backbone with its size, cost, input, feature width, stages and weights.

Models are built on the meta device (shapes, no memory, no initialisation cost) and their FLOPs counted with
`torch.utils.flop_counter.FlopCounterMode` at the default input size, so the whole table takes seconds.
"""

from __future__ import annotations

import logging

import torch

from transfer.backbones.catalog import get_spec, list_backbones
from transfer.backbones.factory import create_backbone

log = logging.getLogger(__name__)


def count_gflops(backbone: torch.nn.Module, input_size: tuple[int, ...]) -> float:
    """Forward FLOPs (a multiply-add counts 2) of one image at `input_size`, in the backbone's eval mode."""
    from torch.utils.flop_counter import FlopCounterMode

    device = next(backbone.parameters()).device
    x = torch.zeros(1, *input_size, device=device)  # 1 x C x H x W
    was_training = backbone.training
    backbone.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        backbone(x)
    backbone.train(was_training)
    return counter.get_total_flops() / 1e9


def body_params(backbone) -> int:
    """Parameters used at inference: auxiliary heads (training only) are not counted."""
    aux = {id(p) for h in backbone.aux_heads() for p in h.module.parameters()}
    return sum(p.numel() for p in backbone.parameters() if id(p) not in aux)


def backbone_row(name: str) -> dict:
    """One row of the table; the backbone is built on the meta device without weights."""
    spec = get_spec(name)
    try:
        with torch.device("meta"):
            b = create_backbone(name, pretrained=False)
    except Exception as e:  # a user's builder may not run on the meta device (e.g. it reads a file): build for real
        log.debug("backbone %s: not buildable on the meta device (%s); building on CPU", name, e)
        b = create_backbone(name, pretrained=False)
    pre = b.preprocessing
    try:
        gflops: float | None = count_gflops(b, pre.input_size)
    except Exception as e:  # a user's backbone may not run on meta tensors; the rest of the row still holds
        log.debug("backbone %s: FLOPs not counted on the meta device (%s)", name, e)
        gflops = None
    return {
        "name": name,
        "source": spec.source,
        "params_m": body_params(b) / 1e6,
        "gflops": gflops,
        "input": "x".join(str(s) for s in pre.input_size),
        "features": b.num_features,
        "stages": len(b.stages()),
        "aux": len(b.aux_heads()),
        "weights": list(spec.pretrained_tags),
        "description": spec.description,
    }


def backbone_rows() -> list[dict]:
    return [backbone_row(name) for name in list_backbones()]


def hub_caches() -> str:
    from transfer.backbones.sources.hub import hf_cache_dir, torch_hub_checkpoints_dir

    return f"timm (Hugging Face) {hf_cache_dir()}, torchvision (torch.hub) {torch_hub_checkpoints_dir()}"


def print_backbone_table() -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title="registered backbones (any other timm model works by name too: backbone.name=<timm name>)",
        caption="* without auxiliary heads and classifier. GFLOPs: one image at the input size, "
        "a multiply-add counted as 2 (torchvision's 'GOPS' x 2). "
        "Pick weights with backbone.weights=<tag>; the first tag is the default. "
        f"Hub caches: {hub_caches()}.",
    )
    for col in ("name", "source", "params (M)*", "GFLOPs", "input", "features", "stages", "aux heads"):
        table.add_column(col, justify="left" if col in ("name", "source", "input") else "right")
    table.add_column("pretrained tags", overflow="fold")
    for r in backbone_rows():
        table.add_row(
            r["name"],
            r["source"],
            f"{r['params_m']:.1f}",
            "?" if r["gflops"] is None else f"{r['gflops']:.2f}" if r["gflops"] >= 0.1 else f"{r['gflops']:.4f}",
            r["input"],
            str(r["features"]),
            str(r["stages"]),
            str(r["aux"]),
            tags_cell(r["weights"]),
        )
    console = Console()
    if not console.is_terminal:  # piped into a file or a pager: do not squeeze the table into 80 columns
        console = Console(width=160)
    console.print(table)


def tags_cell(tags: list[str], shown: int = 4) -> str:
    if not tags:
        return "none public"
    more = len(tags) - shown
    return ", ".join(tags[:shown]) + (f" (+{more} more)" if more > 0 else "")


def run(cfg) -> None:
    print_backbone_table()
