"""FitRequests for tests, built the way the CLI builds them: compose the config with overrides into the typed
dataclasses, then the fit command's `fit_request` (so tests exercise the one path from config to training)."""

from __future__ import annotations

from pathlib import Path


def fit_request(out_dir: Path, *overrides: str, recipe: str | None = None):
    from transfer.app.commands.fit import fit_request as build
    from transfer.app.compose import compose

    base = [f"recipe={recipe}"] if recipe else ["~recipe"]
    cfg = compose([*base, "trainer.accelerator=cpu", "features.progress=false", *overrides])
    return build(cfg, Path(out_dir), quiet=True)
