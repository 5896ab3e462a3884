"""Fine-tuning vs the plain loop (issue 21): the toolkit's regimes, run through its CLI as a user runs them, against a
plain PyTorch loop and scikit-learn's probe on the same images, body, resolution and epochs, over several seeds.

Rows (each on test/, scored once):
  plain full / plain partial  bench/floor_plain.py: ImageFolder + SGD 0.01 momentum 0.9, BN in train mode, all training
                              images, RandomResizedCrop + flip, last epoch; partial freezes the toolkit's partial stages
  sklearn probe               LogisticRegressionCV on the body's frozen centre-view features
  toolkit R [variant]         `python -m transfer ... regime=R` in a subprocess, accuracy from the run dir's
                              predictions.csv; a variant adds overrides (an ablation: one default changed)
`--plain-norm train,eval` adds plain loops with every BN layer in eval mode ("plain full [bn eval]"): a body whose
BatchNorm was folded into its convolutions (the shared MobileNet v2) outputs zeros with BN in train mode. Each row is
compared with its floor (frozen: the probe; partial: the better plain partial; the rest: the better plain full) and with
the better plain full: mean over seeds, a paired t over seeds and an exact McNemar on the pooled per-image predictions.
Progress goes to stderr, a table to stdout, then ONE JSON line. Results are kept per run under --out, so a rerun (or a
second call with more variants) reuses what is done.

    python bench/finetune_floor.py --set weather64 --seeds 0 1 2                 # the 64-px set, every regime
    python bench/finetune_floor.py --set weather64 --regimes full --plain full --no-probe \
        --variant "norm_train=regime.norm=train" --variant "lp_off=regime.lp_init=false"
    python bench/finetune_floor.py --set digits                                   # LeNet-5, the digits recipe
    python bench/finetune_floor.py --data DIR --backbone nin --epochs 1 --tiny    # DIR/train, DIR/test; seconds

The toolkit is driven only through its CLI (its internals are being restructured); the bodies of the plain loop come
from its public library (`transfer.create_backbone`). Why not bench/quality.py: that bench calls the fit pipeline's
internals in-process and compares one seed; this one needs the CLI, many seeds and a loop outside the toolkit.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(REPO), str(BENCH)]  # this checkout's transfer and the bench's helpers

from floor_plain import Body, centre_features, probe_sklearn, row_key, train_plain  # noqa: E402
from floor_stats import mcnemar_exact, paired_t  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
MNV2 = "mobilenet_v2_coral.safetensors"
TOOLKIT_REGIMES = ("frozen", "partial", "full", "auto")


@dataclass
class BenchSet:
    """One bench set: where its images are, the body, epochs, and the CLI overrides that select them."""

    name: str
    root: Path | None  # root/train, root/test (digits: exported per seed from the toolkit's own split)
    body: Body
    epochs: int
    cli: list[str]
    augment: bool = True  # the plain loop's RandomResizedCrop + flip (digits: none, as the recipe)
    plain_lr: float = 0.01  # the plain loop's SGD rate (the loop: 0.01)
    plain_norm: str = "train"  # its BN policy(ies): train (the loop) | eval | train,eval
    needs_shared: bool = False
    plugins: str | None = None
    describe: str = ""
    extra_path: list[str] = field(default_factory=list)


def folder_set(name: str, root: Path, body: Body, epochs: int, what: str, plugins: str | None = None) -> BenchSet:
    cli = ["~recipe", "data=folder", f"data.root={root}", f"backbone.name={body.name}", f"trainer.max_epochs={epochs}"]
    cli += [f"backbone.weights={body.weights}"] if body.weights else ["backbone.pretrained=false"]
    cli += [f"+backbone.kwargs.{k}={v}" for k, v in body.kwargs.items()]
    extra = [str(BENCH), str(SHARED / "backbones")] if plugins else []
    return BenchSet(name, root, body, epochs, cli, plugins=plugins, describe=what, extra_path=extra)


def preset(name: str, epochs: int | None) -> BenchSet:
    weather, weights = SHARED / "weather", str(SHARED / "backbones" / MNV2)
    if name == "weather224":
        body = Body("mobilenet_v2_coral", weights)  # the shared plugin as it is (224 px)
        what = "weather (605 train / 404 test photos, 4 classes), ImageNet MobileNet v2 at 224 px"
        s = folder_set(name, weather, body, epochs or 30, what, "mnv2_coral")
    elif name == "weather64":
        body = Body("mobilenet_v2_coral_px", weights, {"size": 64})
        what = "weather, the same ImageNet MobileNet v2 at 64 px (a resolution shift; bench/floor_plugins.py)"
        s = folder_set(name, weather, body, epochs or 30, what, "floor_plugins")
    elif name == "digits":
        cli = ["recipe=digits", "study.regimes=null", "study.seeds=null", "study.probe_stages=null"]
        cli += [f"trainer.max_epochs={epochs}"] if epochs else []
        what = "digits recipe: LeNet-5 pretrained on digits 0-4 (per seed), 10 images per class of 5-9"
        return BenchSet(name, None, Body("lenet5", None), epochs or 60, cli, augment=False, describe=what)
    else:
        raise SystemExit(f"--set {name}: choose weather224, weather64 or digits (or --data DIR)")
    # The shared MobileNet v2 has its BatchNorm folded into the convolutions (weight 1, mean 0, var 1, the folded bias):
    # in train mode BN renormalises each channel and the folded biases then push every ReLU6 of the last block to 0
    # (pooled features all zero, measured), and SGD 0.01 on the un-normalised body stays at chance loss (ln 4) for
    # 7+ epochs with BN in eval mode too. The loop that works, measured: BN in eval mode, SGD 0.001.
    s.needs_shared, s.plain_lr, s.plain_norm = True, 0.001, "eval"
    return s


def custom_set(args: argparse.Namespace) -> BenchSet:
    kwargs = dict(kv.split("=", 1) for kv in args.kwarg)
    kwargs = {k: int(v) if v.lstrip("-").isdigit() else v for k, v in kwargs.items()}
    body = Body(args.backbone, str(Path(args.weights).resolve()) if args.weights else None, kwargs)
    root = Path(args.data).expanduser().resolve()
    what = f"{root}, {args.backbone}" + (f" weights {args.weights}" if args.weights else " (random weights)")
    plugins = args.plugins or ("floor_plugins" if args.backbone.startswith("mobilenet_v2_coral") else None)
    return folder_set(root.name, root, body, args.epochs or 30, what, plugins)


def limit_folder(root: Path, dest: Path, per_class: int) -> Path:
    """dest/{train,test}/<class>/: links to the first `per_class` files of each class (sorted): a tiny subset."""
    for split in ("train", "test"):
        for cls in sorted(p for p in (root / split).iterdir() if p.is_dir()):
            out = dest / split / cls.name
            out.mkdir(parents=True, exist_ok=True)
            for f in sorted(p for p in cls.iterdir() if p.is_file())[:per_class]:
                if not (out / f.name).exists():
                    (out / f.name).symlink_to(f)
    return dest


def plain_suffix(norm: str, lr: float) -> str:
    """' [bn eval] [lr 0.001]': what differs from the issue's plain loop (BN in train mode, SGD 0.01)."""
    return ("" if norm == "train" else f" [bn {norm}]") + ("" if lr == 0.01 else f" [lr {lr:g}]")


# -- running and caching -----------------------------------------------------------------------------------------


class Runner:
    """Runs (or reuses) one result per (row, seed): {accuracy, correct {key: bool}, seconds, ...} in --out."""

    def __init__(self, bench: BenchSet, out: Path, threads: int, cache_dir: Path, common: list[str]) -> None:
        self.bench, self.out, self.threads, self.cache_dir, self.common = bench, out, threads, cache_dir, common
        self.digits_sources: dict[int, str] = {}

    def _cached(self, slug: str, seed: int, spec: dict, make) -> dict:
        path = self.out / slug / f"seed{seed}.json"
        if path.exists():
            saved = json.loads(path.read_text())
            if saved.get("spec") == spec:
                return saved
        result = make() | {"spec": spec}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(result))
        tmp.replace(path)
        return result

    def env(self) -> dict:
        paths = [str(REPO), *self.bench.extra_path, os.environ.get("PYTHONPATH", "")]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p), "HF_HUB_OFFLINE": "1"}
        env |= {v: str(self.threads) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
        if self.bench.plugins:
            env["TRANSFER_PLUGINS"] = self.bench.plugins
        return env

    def toolkit(self, regime: str, variant: str, overrides: list[str], seed: int) -> dict:
        """`python -m transfer ... regime=R seed=S hydra.run.dir=...`; test accuracy from predictions.csv."""
        slug = f"toolkit_{regime}" + (f"_{variant}" if variant else "")
        args = [*self.bench.cli, f"regime={regime}", f"seed={seed}", *self.common, *overrides]
        args += [f"features.cache_dir={self.cache_dir}", "features.progress=false"]
        if self.bench.name == "digits" and regime != "frozen":  # the frozen run of this seed pretrained the source
            args += ["source=null", f"backbone.weights={self.digits_source(seed)}"]
        spec = {"kind": "toolkit", "args": args}
        return self._cached(slug, seed, spec, lambda: self._run_cli(args, self.out / slug / f"seed{seed}"))

    def _run_cli(self, args: list[str], run_dir: Path) -> dict:
        if run_dir.exists():
            shutil.rmtree(run_dir)  # an unfinished earlier try: start clean
        cmd = [sys.executable, "-m", "transfer", *args, f"hydra.run.dir={run_dir}"]
        print(f"  $ {' '.join(cmd[1:])}", file=sys.stderr)
        start = time.perf_counter()
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        with open(run_dir.with_suffix(".log"), "w", encoding="utf-8") as log:
            done = subprocess.run(cmd, env=self.env(), cwd=REPO, stdout=log, stderr=subprocess.STDOUT, check=False)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            tail = run_dir.with_suffix(".log").read_text(encoding="utf-8", errors="replace")[-2000:]
            raise SystemExit(f"the CLI failed (exit {done.returncode}): {' '.join(cmd)}\n{tail}")
        metrics = json.loads((run_dir / "metrics.json").read_text())
        split = metrics.get("eval_split", "test")
        with open(run_dir / "predictions.csv", newline="", encoding="utf-8") as f:
            rows = [r for r in csv.DictReader(f) if r["split"] == split]
        correct = {row_key(r["path"], r["label"]): r["label"] == r["prediction"] for r in rows}
        best = metrics.get("best", {})
        card_path = run_dir / "model" / "card.json"
        card = json.loads(card_path.read_text()) if card_path.exists() else {}
        result = {
            "accuracy": sum(correct.values()) / max(1, len(correct)),
            "reported_accuracy": best.get("accuracy"),
            "correct": correct,
            "seconds": seconds,
            "chosen": best.get("regime"),
            "epoch_kept": card.get("epoch"),
            "selected_by": card.get("selected_by"),
            "source_model": (metrics.get("source") or {}).get("model_dir"),
        }
        self._drop_weights(run_dir)
        return result

    @staticmethod
    def _drop_weights(run_dir: Path) -> None:
        """Checkpoints are not needed once scored (dozens of runs); keep the logs, metrics and card."""
        for p in run_dir.rglob("*.ckpt"):
            p.unlink()

    def digits_source(self, seed: int) -> str:
        """The source model that seed's frozen run pretrained (the other regimes and the plain loop start from it)."""
        if seed not in self.digits_sources:
            src = self.toolkit("frozen", "", [], seed)["source_model"]
            self.digits_sources[seed] = src
        return self.digits_sources[seed]

    def root_for(self, seed: int) -> Path:
        return self.bench.root if self.bench.root is not None else export_digits(self, seed)

    def body_for(self, seed: int) -> Body:
        if self.bench.name == "digits":
            return Body("lenet5", self.digits_source(seed))
        return self.bench.body

    def plain(self, frozen_stages: int, seed: int, lr: float, norm: str) -> dict:
        name = ("plain_full" if frozen_stages == 0 else "plain_partial") + plain_suffix(norm, lr)
        name = name.replace(" [", "_").replace("]", "").replace(" ", "_")
        body = self.body_for(seed)
        spec = {"kind": "plain", "body": [body.name, body.weights, body.kwargs], "epochs": self.bench.epochs}
        spec |= {"frozen_stages": frozen_stages, "lr": lr, "augment": self.bench.augment, "norm": norm}
        if self.bench.name == "digits":
            spec["root"] = str(self.root_for(seed))

        def make() -> dict:
            print(f"  plain loop {name} seed {seed}", file=sys.stderr)
            root = self.root_for(seed)
            kw = {"frozen_stages": frozen_stages, "lr": lr, "augment": self.bench.augment, "norm": norm, "label": name}
            return train_plain(root, body, epochs=self.bench.epochs, seed=seed, **kw)

        return self._cached(name, seed, spec, make)

    def probe(self, seed: int, features: dict) -> dict:
        body = self.body_for(seed)
        spec = {"kind": "probe", "body": [body.name, body.weights, body.kwargs], "root": str(self.root_for(seed))}
        return self._cached("sklearn_probe", seed, spec, lambda: probe_sklearn(features(seed), seed))


def export_digits(runner: Runner, seed: int) -> Path:
    """The digits recipe's split for `seed` as an image folder: test/ = the images its predictions.csv scored (keys
    'digits[i]'), train/ = the other images of those classes; 8x8 grey PNGs (0..16 scaled to 0..255, as the toolkit)."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    dest = runner.out / "digits_folders" / f"seed{seed}"
    if (dest / "done").exists():
        return dest
    run_dir = runner.out / "toolkit_frozen" / f"seed{seed}"
    runner.toolkit("frozen", "", [], seed)
    with open(run_dir / "predictions.csv", newline="", encoding="utf-8") as f:
        test = {int(r["path"][len("digits[") : -1]) for r in csv.DictReader(f) if r["split"] == "test"}
        f.seek(0)
        classes = sorted({r["label"] for r in csv.DictReader(f)})
    d = load_digits()
    for i, target in enumerate(d.target):
        if str(int(target)) not in classes:
            continue
        out = dest / ("test" if i in test else "train") / str(int(target))
        out.mkdir(parents=True, exist_ok=True)
        pixels = np.round(d.images[i] * (255.0 / 16.0)).astype(np.uint8)  # 8 x 8
        Image.fromarray(pixels, mode="L").save(out / f"digits[{i}].png")
    (dest / "done").write_text("")
    return dest


# -- comparing ----------------------------------------------------------------------------------------------------


def compare(row: dict, ref: dict) -> dict:
    """Row vs reference over their common seeds: mean difference (points), paired t over seeds, pooled McNemar."""
    seeds = sorted(set(row["runs"]) & set(ref["runs"]))
    a = [row["runs"][s]["accuracy"] for s in seeds]
    b = [ref["runs"][s]["accuracy"] for s in seeds]
    ca, cb = [], []
    for s in seeds:
        keys = sorted(set(row["runs"][s]["correct"]) & set(ref["runs"][s]["correct"]))
        ca += [row["runs"][s]["correct"][k] for k in keys]
        cb += [ref["runs"][s]["correct"][k] for k in keys]
    t = paired_t(a, b)
    m = mcnemar_exact(ca, cb)
    return {
        "vs": ref["label"],
        "seeds": seeds,
        "diff_points": 100 * t["mean_diff"] if seeds else None,
        "t_p": t["p_value"],
        "mcnemar_p": m["p_value"],
        "only_row_right": m["b"],
        "only_ref_right": m["c"],
        "pairs": m["n"],
    }


def summarise(label: str, runs: dict[int, dict]) -> dict:
    accs = [r["accuracy"] for r in runs.values()]
    mean = sum(accs) / len(accs)
    sd = (sum((x - mean) ** 2 for x in accs) / (len(accs) - 1)) ** 0.5 if len(accs) > 1 else 0.0
    return {"label": label, "runs": runs, "mean": mean, "std": sd, "accs": accs}


def best_plain(rows: list[dict], regime: str) -> dict | None:
    """The plain loop of `regime` (full/partial) with the higher mean over its BN policies: the harder floor."""
    plain = [r for r in rows if r["label"].split(" [")[0] == f"plain {regime}"]
    return max(plain, key=lambda r: r["mean"]) if plain else None


def floor_of(label: str, rows: list[dict]) -> dict | None:
    if label.startswith("toolkit frozen"):
        return next((r for r in rows if r["label"] == "sklearn probe"), None)
    if label.startswith("plain"):
        return None
    return best_plain(rows, "partial" if "partial" in label else "full") or best_plain(rows, "full")


def _p(p: float | None) -> str:
    return "-" if p is None else ("<0.001" if p < 0.001 else f"{p:.3f}")


def table_lines(rows: list[dict]) -> list[str]:
    head = (
        "| row | seeds | test acc (mean ± sd) | per seed | vs floor | Δ points | p (t, seeds) | p (McNemar, pooled) |"
    )
    head += " vs best plain full | epoch kept / chosen | s/run |"
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        floor, full = r.get("vs_floor"), r.get("vs_plain_full")
        extra = [
            "/".join(str(x["epoch_kept"]) for x in r["runs"].values() if x.get("epoch_kept") is not None),
            "/".join(str(x["chosen"]) for x in r["runs"].values() if r["label"].startswith("toolkit auto")),
        ]
        cells = [
            r["label"],
            str(len(r["runs"])),
            f"{r['mean']:.3f} ± {r['std']:.3f}",
            " ".join(f"{a:.3f}" for a in r["accs"]),
            floor["vs"] if floor else "-",
            f"{floor['diff_points']:+.1f}" if floor else "-",
            _p(floor["t_p"]) if floor else "-",
            _p(floor["mcnemar_p"]) if floor else "-",
            f"{full['diff_points']:+.1f} (p {_p(full['mcnemar_p'])})" if full else "-",
            " ".join(x for x in extra if x) or "-",
            f"{sum(x['seconds'] for x in r['runs'].values()) / len(r['runs']):.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def load_plugins(bench: BenchSet) -> None:
    """The set's backbone plugins in this process too (the plain loop builds the body through the library)."""
    import importlib

    sys.path.extend(p for p in bench.extra_path if p not in sys.path)
    for name in filter(None, (bench.plugins or "").split(",")):
        importlib.import_module(name)


def partial_stages() -> int:
    """`frozen_stages` of the toolkit's partial regime: conf/regime/partial.yaml is its one definition."""
    from omegaconf import OmegaConf

    return int(OmegaConf.load(REPO / "conf" / "regime" / "partial.yaml").frozen_stages)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", help="weather224 | weather64 | digits (../shared/data); or --data DIR")
    ap.add_argument("--data", help="an image folder with train/<class>/ and test/<class>/")
    ap.add_argument("--backbone", default="nin", help="--data: a registered backbone")
    ap.add_argument("--weights", help="--data: a weights file (none: random weights)")
    ap.add_argument("--kwarg", action="append", default=[], help="--data: a backbone kwarg k=v (repeatable)")
    ap.add_argument("--plugins", help="--data: TRANSFER_PLUGINS for the CLI runs")
    ap.add_argument("--epochs", type=int, help="epochs of every run (default: 30; digits: the recipe's 60)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--regimes", default=",".join(TOOLKIT_REGIMES), help="toolkit regimes (comma list, or 'none')")
    ap.add_argument("--plain", default="full,partial", help="plain loops: full,partial (or 'none')")
    ap.add_argument("--plain-lr", type=float, help="the plain loop's SGD rate (default 0.01; weather sets: 0.001)")
    ap.add_argument("--plain-norm", help="its BN: train (the default), eval, or train,eval (weather sets: eval)")
    ap.add_argument("--no-probe", action="store_true", help="skip scikit-learn's probe")
    ap.add_argument("--variant", action="append", default=[], help="NAME=OVERRIDE [OVERRIDE ...]: an ablation row")
    ap.add_argument("--variant-regimes", default="full,partial", help="the regimes each variant runs")
    ap.add_argument("--override", action="append", default=[], help="an override for every toolkit run")
    ap.add_argument("--limit-per-class", type=int, help="a subset: the first N files per class of train/ and test/")
    ap.add_argument("--tiny", action="store_true", help="smoke mode: 1 epoch, seed 0, auto.budget_s=5")
    ap.add_argument("--out", default="/tmp/transfer_floor", help="work folder; results kept per run and reused")
    ap.add_argument("--cache-dir", help="features.cache_dir (default: OUT/features)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads here and in the CLI runs")
    ap.add_argument("--markdown", help="also write the table(s) to this file")
    args = ap.parse_args(argv)
    if args.tiny:
        args.epochs, args.seeds = args.epochs or 1, args.seeds[:1]
        args.override = ["auto.budget_s=5", *args.override]
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if args.data:
        bench = custom_set(args)
    elif args.set:
        bench = preset(args.set, args.epochs)
        if bench.needs_shared and not SHARED.exists():
            raise SystemExit(f"--set {args.set} needs {SHARED} (the shared real data); it is missing")
    else:
        raise SystemExit("give --set NAME or --data DIR")
    out = Path(args.out).resolve() / bench.name
    if args.limit_per_class and bench.root is not None:
        bench.root = limit_folder(bench.root, out / f"subset{args.limit_per_class}", args.limit_per_class)
        bench.cli = [f"data.root={bench.root}" if c.startswith("data.root=") else c for c in bench.cli]
    bench.plain_lr = args.plain_lr if args.plain_lr is not None else bench.plain_lr
    bench.plain_norm = args.plain_norm or bench.plain_norm
    cache = Path(args.cache_dir) if args.cache_dir else out / "features"
    runner = Runner(bench, out, args.threads, cache, args.override)
    load_plugins(bench)
    started = time.perf_counter()
    print(f"set {bench.name}: {bench.describe}; {bench.epochs} epochs; seeds {args.seeds}", file=sys.stderr)

    results: dict[str, dict[int, dict]] = {}
    k = partial_stages()
    plains = [] if args.plain == "none" else args.plain.split(",")
    feats: dict[int, dict] = {}

    def features(seed: int) -> dict:
        key = 0 if bench.name != "digits" else seed  # one body for every seed, except digits (a source per seed)
        if key not in feats:
            feats[key] = centre_features(runner.root_for(seed), runner.body_for(seed))
        return feats[key]

    regimes = [] if args.regimes == "none" else args.regimes.split(",")
    variants = [v.partition("=") for v in args.variant]
    for seed in args.seeds:
        print(f"seed {seed}", file=sys.stderr)
        for regime in regimes:
            results.setdefault(f"toolkit {regime}", {})[seed] = runner.toolkit(regime, "", [], seed)
        for name in plains:
            for norm in bench.plain_norm.split(","):
                label = f"plain {name}" + plain_suffix(norm, bench.plain_lr)
                stages = 0 if name == "full" else k
                results.setdefault(label, {})[seed] = runner.plain(stages, seed, bench.plain_lr, norm)
        if not args.no_probe:
            results.setdefault("sklearn probe", {})[seed] = runner.probe(seed, features)
        for vname, _, overrides in variants:
            for regime in args.variant_regimes.split(","):
                row = runner.toolkit(regime, vname, overrides.split(), seed)
                results.setdefault(f"toolkit {regime} [{vname}]", {})[seed] = row
        done = {label: f"{runs[seed]['accuracy']:.3f}" for label, runs in results.items() if seed in runs}
        print(f"  seed {seed} done: {done}", file=sys.stderr)

    rows = [summarise(label, runs) for label, runs in results.items()]
    full = best_plain(rows, "full")
    for r in rows:
        floor = floor_of(r["label"], rows)
        if floor is not None and floor is not r:
            r["vs_floor"] = compare(r, floor)
        if full is not None and r is not full:
            r["vs_plain_full"] = compare(r, full)
    title = f"{bench.name}: {bench.describe}; {bench.epochs} epochs; seeds {' '.join(map(str, args.seeds))}"
    lines = [f"### {title}", "", *table_lines(rows), ""]
    print("\n".join(lines))
    if args.markdown:
        with open(args.markdown, "a", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    result = {
        "set": bench.name,
        "describe": bench.describe,
        "epochs": bench.epochs,
        "seeds": args.seeds,
        "partial_frozen_stages": k,
        "toolkit_args": bench.cli + args.override,
        "rows": [
            {key: v for key, v in r.items() if key != "runs"}
            | {
                "per_seed": {
                    s: {f: x.get(f) for f in ("accuracy", "seconds", "epoch_kept", "chosen")}
                    for s, x in r["runs"].items()
                }
            }
            for r in rows
        ],
        "wall_s": time.perf_counter() - started,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
