"""Which-backbone bench (issue 23.3): does `rank-backbones` pick the stronger body on real photos?

Three real bodies of different strength on weather/ (cloudy, rain, shine, sunrise), all the same MobileNet v2
architecture, so that "stronger" is not a matter of taste:

    imagenet_224   the real ImageNet MobileNet v2 (../shared/data/backbones) at its own 224 x 224 input
    imagenet_64    the same weights fed 64 x 64 images (a variant registered here whose preprocessing says 64 px;
                   nothing else differs): the same body seeing 1/12 of the pixels, the size ImageNet features were
                   not trained for
    random_224     the same architecture with random weights (seeded as the start-up seeds it), 224 px: no transfer

The ranking is what a user runs, `transfer.rank_backbones(weather/train, [...])`: each body's cached features, the
frozen L-BFGS probe cross-validated over the 605 training photos (pooled out-of-fold accuracy, bootstrap 95% CI),
LogME beside it. The truth it is checked against: each body's probe fitted on all of train/ and scored once on the
404 photos of weather/test, which the ranking never saw, with exact McNemar tests between the bodies on those photos.

    python bench/rank_backbones.py             # ~6 minutes on 2 shared CPU cores (features cached in /tmp)
    python bench/rank_backbones.py --tiny      # 12 photos per class and split: a smoke run
    python bench/rank_backbones.py features.views=flip   # the ranking (and the truth) on centre + mirrored views

Prints one line per body, the verdicts, then ONE JSON line.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's transfer, not an installed one
sys.path.insert(0, str(Path(__file__).resolve().parent))

from weather_features import BACKBONE, PLUGIN, SHARED, missing_reason  # noqa: E402

VARIANT = "mobilenet_v2_coral_64px"


def register_variant(backbones: Path) -> None:
    """The plugin (as TRANSFER_PLUGINS=mnv2_coral would load it) and its 64 px variant: same class, same weights,
    preprocessing at 64 x 64."""
    sys.path.insert(0, str(backbones))
    plugin = importlib.import_module(PLUGIN)
    from transfer import Preprocessing, register_backbone

    class MobileNetV2Coral64(plugin.MobileNetV2Coral):
        def __init__(self) -> None:
            super().__init__()
            self.name = VARIANT
            self.preprocessing = Preprocessing(input_size=(3, 64, 64), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))

    @register_backbone(VARIANT, description="MobileNet v2 (Coral weights) fed 64 x 64 images: bench only")
    def build(pretrained: bool = False, tag: str | None = None, **kwargs) -> MobileNetV2Coral64:
        return MobileNetV2Coral64()


def candidates(weights: Path) -> dict[str, dict]:
    return {
        "imagenet_224": {"name": BACKBONE, "weights": str(weights)},
        "imagenet_64": {"name": VARIANT, "weights": str(weights)},
        "random_224": {"name": BACKBONE, "pretrained": False},
    }


def tiny_copy(data: Path, per_class: int, out: Path) -> Path:
    """The first `per_class` photos of each class and split, copied (a smoke run's folder)."""
    for split in ("train", "test"):
        for cls in sorted(p for p in (data / split).iterdir() if p.is_dir()):
            (out / split / cls.name).mkdir(parents=True)
            for f in sorted(cls.iterdir())[:per_class]:
                shutil.copy(f, out / split / cls.name / f.name)
    return out


def test_scores(data: Path, spec: dict, cfg, decoded: dict) -> dict:
    """The truth for one body: its probe fitted on all train/ photos (the views the ranking cached: `cfg` is the
    ranking's config), scored on test/."""
    from transfer.backbones.factory import create_backbone
    from transfer.data.labelled import LabelledImages
    from transfer.data.pixels import scan_and_decode
    from transfer.eval.scoring import scored_metrics
    from transfer.features import FeatureCache
    from transfer.studies.probe_baseline import probe_probs

    torch.manual_seed(0)  # the start-up seeds the first body with the first seed: the same random weights
    body = create_backbone(spec["name"], pretrained=False, weights=spec.get("weights"))
    key = (body.preprocessing.input_size, body.preprocessing.crop_pct)
    if key not in decoded:
        decoded[key] = scan_and_decode(data, body.preprocessing, workers=1)
    manifest, pixels = decoded[key]
    cache = FeatureCache(body, cfg.features, "cpu", cfg.augment)
    parts = {}
    for split in ("train", "test"):
        idx = [i for i, s in enumerate(manifest.samples) if s.split == split]
        labels = torch.tensor([manifest.samples[i].label for i in idx])
        names = [manifest.samples[i].path for i in idx]
        parts[split] = LabelledImages(pixels[idx], labels, list(manifest.classes), names)
    train = cache.features(parts["train"], cache.views())  # N x K x D: found in the ranking's cache
    reused = cache.last.extracted == 0
    test = cache.features(parts["test"], ["center"])[:, 0]
    classes = list(manifest.classes)
    probs, l2 = probe_probs(train, parts["train"].labels, test, cfg, "cpu", classes)
    m = scored_metrics(probs, parts["test"].labels, classes)
    correct = (probs.argmax(1) == parts["test"].labels).tolist()
    return {"accuracy": m["accuracy"], "ci95": m["accuracy_ci95"], "l2": l2, "correct": correct, "same_body": reused}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=SHARED / "weather")
    ap.add_argument("--backbones", type=Path, default=SHARED / "backbones")
    ap.add_argument("--cache-dir", type=Path, default=Path("/tmp/transfer-bench-features"))
    ap.add_argument("--tiny", action="store_true", help="12 photos per class and split")
    ap.add_argument("overrides", nargs="*", help="key=value settings for the ranking, e.g. features.views=flip")
    args = ap.parse_args()
    reason = missing_reason(args.data, args.backbones)
    if reason:
        sys.exit(f"bench/rank_backbones.py: {reason}")
    torch.set_num_threads(1)
    began = time.perf_counter()
    register_variant(args.backbones)
    import transfer
    from transfer.app.api import library_config
    from transfer.eval.stats import compare_models
    from transfer.studies.rank_backbones import candidates_of

    work = Path(tempfile.mkdtemp(prefix="rank-bench-"))
    data = tiny_copy(args.data, 12, work / "weather") if args.tiny else args.data
    specs = candidates(args.backbones / f"{BACKBONE}.safetensors")
    overrides = [f"features.cache_dir={args.cache_dir}", "features.progress=false", "trainer.accelerator=cpu"]
    overrides += args.overrides
    cfg = library_config(data / "train", "resnet18", "frozen", "softmax", overrides)  # what the ranking reads
    t = time.perf_counter()
    ranking = transfer.rank_backbones(data / "train", list(specs.values()), work / "run", overrides)
    rank_seconds = time.perf_counter() - t
    by_label = {c.label: c for c in ranking.candidates}
    keys = {c.label: k for k, c in zip(specs, candidates_of(list(specs.values())), strict=True)}  # label -> key
    decoded: dict = {}
    rows = {}
    for label, key in keys.items():
        c = by_label[label]
        truth = test_scores(data, specs[key], cfg, decoded)
        rows[key] = {
            "label": label,
            "cv_accuracy": c.accuracy,
            "cv_ci95": c.accuracy_ci95,
            "logme": c.logme,
            "feature_seconds": c.feature_seconds,
            "extracted": c.extracted,
            "params": c.params,
            "test_accuracy": truth["accuracy"],
            "test_ci95": truth["ci95"],
            "test_l2": truth["l2"],
            "same_body_as_ranked": truth["same_body"],
            "correct": truth.pop("correct"),
        }
    ranked = [keys[c.label] for c in ranking.candidates if c.status == "ranked"]
    by_test = sorted(rows, key=lambda k: -rows[k]["test_accuracy"])
    by_logme = sorted(rows, key=lambda k: -(rows[k]["logme"] or 0.0))
    for i, key in enumerate(ranked, 1):
        r = rows[key]
        print(
            f"rank {i}: {key:<13} CV probe {r['cv_accuracy']:.3f} ({r['cv_ci95'][0]:.3f}-{r['cv_ci95'][1]:.3f}), "
            f"LogME {r['logme']:.3f}, features {r['feature_seconds']:.1f}s; test/ {r['test_accuracy']:.3f} "
            f"({r['test_ci95'][0]:.3f}-{r['test_ci95'][1]:.3f})"
        )
    verdicts = [
        compare_models(a, torch.tensor(rows[a]["correct"]), b, torch.tensor(rows[b]["correct"]))
        for i, a in enumerate(by_test)
        for b in by_test[i + 1 :]
    ]
    for v in verdicts:
        print(f"test/: {v}")
    print(
        f"picked {ranked[0]}; best on test/ {by_test[0]}; ranking order {' > '.join(ranked)}; test order "
        f"{' > '.join(by_test)}; LogME order {' > '.join(by_logme)}"
    )
    for r in rows.values():
        r.pop("correct")
    out = {
        "bench": "rank_backbones",
        "data": str(data),
        "train_images": ranking.n_images,
        "test_images": len(next(iter(decoded.values()))[0].paths("test")),
        "candidates": rows,
        "winner": ranked[0],
        "test_winner": by_test[0],
        "ranking_order": ranked,
        "test_order": by_test,
        "logme_order": by_logme,
        "picks_the_stronger": ranked[0] == by_test[0],
        "same_order": ranked == by_test,
        "verdict": ranking.verdict,
        "test_verdicts": verdicts,
        "rank_seconds": rank_seconds,
        "seconds": time.perf_counter() - began,
    }
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
