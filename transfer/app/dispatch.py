"""The Hydra side: turn the composed config into plain arguments, call the parts, print a short summary."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from transfer.errors import UserError

log = logging.getLogger("transfer")
COMMANDS = ("fit", "predict", "evaluate", "backbones", "features", "augment-preview")


def plain(node) -> dict | list | None:
    return OmegaConf.to_container(node, resolve=True) if node is not None else None


def output_dir() -> Path:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def dispatch(cfg: DictConfig) -> None:
    command = cfg.get("command")
    if command not in COMMANDS:
        raise UserError(f"command={command!r}: choose one of {', '.join(COMMANDS)}.")
    handlers = {
        "fit": fit,
        "predict": predict,
        "evaluate": evaluate,
        "backbones": backbones,
        "features": features,
        "augment-preview": augment_preview,
    }
    handlers[command](cfg)


def _quiet_lightning() -> None:
    import warnings

    for name in (
        "pytorch_lightning",
        "pytorch_lightning.utilities.rank_zero",
        "lightning.pytorch",
        "lightning.pytorch.utilities.rank_zero",
        "lightning_fabric",
        "lightning",
    ):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*The number of training batches.*")
    warnings.filterwarnings("ignore", ".*treespec, LeafSpec.*")
    warnings.filterwarnings("ignore", ".*defined a `validation_step` but have no `val_dataloader`.*")
    warnings.filterwarnings("ignore", r".*module\(s\) in eval mode at the start of training.*")


def _check_data_early(data: dict) -> None:
    """Cheap checks before torch loads: a missing folder is reported in well under a second."""
    if data.get("kind") == "folder":
        root = data.get("root")
        if root in (None, "???") or not Path(str(root)).expanduser().is_dir():
            raise UserError(
                f"data.root={root}: no such folder. Put one sub-folder of images per class there "
                "(e.g. tigger/ misty/ neither/) and pass data.root=/path/to/folder."
            )
    elif data.get("kind") != "digits":
        raise UserError(f"data.kind={data.get('kind')!r}: choose folder or digits.")


def _check_weights_early(bb: dict, first_regime: dict) -> None:
    w = bb.get("weights")
    if w and ("/" in str(w) or Path(str(w)).suffix) and not Path(str(w)).expanduser().exists():
        raise UserError(f"backbone.weights={w}: no such file or directory.")
    if not w and bb.get("pretrained") and first_regime.get("pretrained", True):
        from transfer.backbones.sources.offline import early_offline_check

        early_offline_check(str(bb["name"]))


def fit(cfg: DictConfig) -> None:
    started = time.perf_counter()
    data, bb, head, trainer_cfg = plain(cfg.data), plain(cfg.backbone), plain(cfg.head), plain(cfg.trainer)
    seeds = list(cfg.study.seeds) if cfg.study.seeds else [int(cfg.seed)]
    if cfg.study.regimes and not _regime_chosen_on_command_line():
        regimes = [_regime_cfg(cfg, n) for n in cfg.study.regimes]
    else:  # `regime=partial` on the command line (or in a sweep) means that regime alone
        regimes = [plain(cfg.regime)]
    _check_data_early(data)
    _check_weights_early(bb, regimes[0])
    _quiet_lightning()
    from transfer.training.pipeline import FitRequest, run_fit

    request = FitRequest(
        backbone=bb,
        data=data,
        head=head,
        trainer=trainer_cfg,
        augment=plain(cfg.augment),
        regimes=regimes,
        seeds=seeds,
        source=plain(cfg.source),
        out_dir=output_dir(),
        features=plain(cfg.get("features")),
        probe_stages=plain(cfg.study.get("probe_stages")),
    )
    run_fit(request, started)


def _regime_chosen_on_command_line() -> bool:
    from hydra.core.hydra_config import HydraConfig

    return any(o.lstrip("+~").startswith("regime=") for o in HydraConfig.get().overrides.task)


def _regime_cfg(cfg: DictConfig, name: str) -> dict:
    """A regime named in study.regimes: the current `regime` if it has that name (with overrides), else its preset."""
    if cfg.regime.name == name:
        return plain(cfg.regime)
    from transfer.app.config_source import conf_dir

    f = conf_dir() / "regime" / f"{name}.yaml"
    if not f.is_file():
        options = sorted(p.stem for p in (conf_dir() / "regime").glob("*.yaml"))
        raise UserError(f"study.regimes: unknown regime {name!r}; choose from {', '.join(options)}.")
    return plain(OmegaConf.load(f))


def predict(cfg: DictConfig) -> None:
    if not cfg.get("model") or not cfg.get("images"):
        raise UserError(
            "command=predict needs model=<run dir>/model (or a list, an ensemble) and images=<file or folder>."
        )
    from transfer.inference.predict import predict_files, write_csv

    model = plain(cfg.model) if OmegaConf.is_list(cfg.model) else str(cfg.model)
    rows = predict_files(model, str(cfg.images), tta=str(cfg.get("tta", "center")))
    out = write_csv(rows, output_dir() / "predictions.csv")
    root = Path(str(cfg.images)).expanduser()
    names = [str(Path(r["file"]).relative_to(root)) if root.is_dir() else Path(r["file"]).name for r in rows]
    width = max(len(n) for n in names)
    for name, r in zip(names, rows, strict=True):
        what = f"{r['class']:<12} {r['probability']:.3f}" if not r.get("error") else f"unreadable: {r['error']}"
        print(f"{name:<{width}}  {what}")
    members = f"an ensemble of {len(model)} models" if isinstance(model, list) else "1 model"
    print(f"\n{len(rows)} images, {members}, tta={cfg.get('tta', 'center')}: predictions written to {out}")


def evaluate(cfg: DictConfig) -> None:
    if not cfg.get("model") or cfg.data.get("kind") != "folder" or cfg.data.get("root") in (None, "???"):
        raise UserError(
            "command=evaluate needs model=<model dir> (or a list) and data=folder data.root=<labelled folder>."
        )
    _check_data_early(plain(cfg.data))
    from transfer.inference.evaluate import evaluate_folder

    model = plain(cfg.model) if OmegaConf.is_list(cfg.model) else str(cfg.model)
    m = evaluate_folder(model, Path(str(cfg.data.root)).expanduser(), output_dir(), str(cfg.get("tta", "center")))
    print(
        f"{m['n']} images ({m['split']}), tta={m['tta']}: accuracy {m['accuracy']:.3f}, "
        f"balanced accuracy {m['balanced_accuracy']:.3f}, macro F1 {m['f1_macro']:.3f}"
    )
    for c, pr in m["per_class"].items():
        print(f"  {c:<16} precision {pr['precision']:.3f}  recall {pr['recall']:.3f}")
    print(f"report: {output_dir() / 'metrics.json'} (confusion.png, predictions.csv beside it)")


def backbones(cfg: DictConfig) -> None:
    from transfer.app.commands.backbones import print_backbone_table

    print_backbone_table()


def features(cfg: DictConfig) -> None:
    _quiet_lightning()
    from transfer.app.commands.features import features_command

    features_command(plain(cfg), output_dir())


def augment_preview(cfg: DictConfig) -> None:
    """A PNG grid of augmented training samples (data, backbone and augment as for fit; preview.rows/views)."""
    from transfer.app.commands.augment_preview import write_augment_preview

    opts = plain(cfg.get("preview")) or {}
    data = plain(cfg.data)
    _check_data_early(data)
    path = write_augment_preview(
        data, plain(cfg.backbone), plain(cfg.augment), output_dir(), seed=int(cfg.seed), **opts
    )
    print(f"augment preview: {path}")
