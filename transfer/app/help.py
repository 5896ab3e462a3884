"""`python -m transfer --help`: the commands, the recipes with one line each, the config groups with their choices,
and example command lines. Hydra's own help stays at `--hydra-help`."""

from __future__ import annotations

from transfer.app.config_source import conf_dir, list_recipes, recipes_dir
from transfer.app.schema import COMMANDS

COMMAND_HELP = {
    "fit": "train (and compare regimes); writes the model dir, metrics.json and report.html (default)",
    "predict": "classify images with model=<model dir> (or a list: an ensemble), images=<file or folder>",
    "evaluate": "score model=<model dir> on a labelled folder (data=folder data.root=...)",
    "export": "write model.onnx (format=onnx) or model.pt (format=torchscript) into model=<model dir>",
    "backbones": "list the registered backbones, their sizes, stages and pretrained tags",
    "features": "extract (or find) the cached features; features.probe=true trains a head on them",
    "augment-preview": "a PNG grid of augmented training images",
    "learning-curve": "train on 10/25/50/100% of the training images: would more images help? (learning_curve.png)",
    "lr-find": "learning-rate range test for regime=partial|full: lr_find.png and the head.lr= to fit with",
    "label-issues": "images of data.root=<labelled folder> probably filed under the wrong class (label_issues.csv)",
    "suggest": "which unlabelled images to label next: model=<model dir> images=<folder> n=50 (suggest.csv, page)",
    "rank-backbones": "rank backbones=[a,b,...] on data.root=<labelled folder> by a cross-validated probe (table)",
}
EXAMPLES = (
    "python -m transfer                                            # the offline digits study (no data, no network)",
    "python -m transfer recipe=cat_detector data.root=~/cats         # your own folder of class sub-folders",
    "python -m transfer command=predict model=outputs/DATE/TIME/model images=~/new_photos",
)


def recipe_line(name: str) -> str:
    """The first comment line of recipes/<name>.yaml after its `# @package` header."""
    for line in (recipes_dir() / f"{name}.yaml").read_text(encoding="utf-8").splitlines():
        text = line.lstrip("# ").strip()
        if line.startswith("#") and text and not text.startswith("@package"):
            return text
    return ""


def groups() -> dict[str, list[str]]:
    return {d.name: sorted(p.stem for p in d.glob("*.yaml")) for d in sorted(conf_dir().iterdir()) if d.is_dir()}


def help_text() -> str:
    lines = ["usage: python -m transfer [command=NAME] [recipe=NAME] [group=option] [key=value ...] [-m]", ""]
    lines.append("commands (command=NAME):")
    lines += [f"  {c:<16} {COMMAND_HELP.get(c, '')}" for c in COMMANDS]
    lines += ["", "recipes (recipe=NAME):"]
    lines += [f"  {r:<16} {recipe_line(r)}" for r in list_recipes()]
    lines += ["", "config groups (group=option; any key can be set too, e.g. head.lr=0.01 trainer.max_epochs=5):"]
    for group, options in groups().items():
        lines.append(f"  {group:<16} {', '.join(options)}")
    lines += ["", "examples:", *(f"  {e}" for e in EXAMPLES), ""]
    lines.append("Sweeps: add -m and comma-separated values (head.lr=0.001,0.01). Hydra's own help: --hydra-help.")
    lines.append("Every value a recipe sets: python -m transfer recipe=NAME --cfg job")
    return "\n".join(lines)


def print_help() -> None:
    print(help_text())
