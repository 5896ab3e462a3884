"""`command=lr-find`: a learning-rate range test for fine-tuning (regime=partial or full) on the fit's training
images; writes lr_find.png and lr_find.json in the run dir and prints the `head.lr=` override to fit with."""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path

from transfer.app.commands.fit import fit_request
from transfer.app.dispatch import output_dir, quiet_lightning
from transfer.app.early import check_before_run
from transfer.app.schema import Config
from transfer.errors import UserError

FROZEN = (
    "regime=frozen: the frozen linear head is fit to convergence by L-BFGS on cached features (its L2 strength "
    "chosen by cross-validation), so there is no rate to find; lr-find needs regime=partial or regime=full."
)
DROPPED = ("command=", "head.lr=", "lr_find.", "hydra.")  # overrides that do not belong on the fit command line


def fit_command(overrides: list[str], lr: float) -> str:
    """The fit command line: the user's overrides (but the command, the old rate, lr-find's keys), then head.lr."""
    kept = [o for o in overrides if not o.lstrip("+~").startswith(DROPPED)]
    return " ".join(["python -m transfer", *(shlex.quote(o) for o in kept), f"head.lr={lr:.2g}"])


def _command_line_overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def write_json(result: dict, path: Path) -> Path:
    """lr_find.json; non-finite losses (a diverged step) as null, so the file is strict JSON."""
    clean = dict(result)
    for key in ("losses", "raw_losses"):
        clean[key] = [x if math.isfinite(x) else None for x in result.get(key, [])]
    path.write_text(json.dumps(clean, indent=2) + "\n", encoding="utf-8")
    return path


def run(cfg: Config) -> None:
    regime = cfg.regime
    if regime.body_frozen:  # before torch loads: the frozen regime has no rate to find
        raise UserError(FROZEN.replace("regime=frozen", f"regime={regime.name}", 1))
    check_before_run(cfg)
    out = output_dir()
    request = fit_request(cfg, out, quiet=True)
    quiet_lightning()
    from transfer.studies.lr_find import find_lr_for_request, plot_lr_find

    result = find_lr_for_request(request, regime)
    out.mkdir(parents=True, exist_ok=True)
    png, js = plot_lr_find(result, out / "lr_find.png"), write_json(result, out / "lr_find.json")
    lr = result["suggested_lr"]
    early = " (stopped early: the loss diverged)" if result["stopped_early"] else ""
    print(
        f"lr-find: {result['steps']} steps from {result['min_lr']:g} to {result['max_lr']:g} on "
        f"{result['train_images']} training images, regime {regime.name}{early}"
    )
    print(f"suggested head.lr={lr:.2g} (steepest descent of the smoothed loss); run: "
          f"{fit_command(_command_line_overrides(), lr)}")  # fmt: skip
    print(f"plot: {png}  data: {js}")
