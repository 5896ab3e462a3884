"""The linear-probe baseline beside every headline (training/probe_baseline.py), its warning and its cause texts; a
chance-level model warns through the CLI, a learnable one does not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.imagegen import make_image_folder
from tests.requests import fit_request
from transfer.app.commands.fit import chance_warnings, headline_line
from transfer.eval.report_sections import baseline_shortfalls, headline_warnings
from transfer.studies.probe_baseline import out_of_fold_probs, probe_probs
from transfer.studies.report_data import make_headline
from transfer.training.config import TrainConfig

CFG, AB = TrainConfig(seed=0), ["a", "b"]


def _separable(n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """n images per class, 2-d features: class 0 near (-2, 0), class 1 near (2, 0); N x 1 x 2."""
    offsets = torch.linspace(-0.5, 0.5, n)
    x = torch.cat([torch.stack([-2 + offsets, offsets], 1), torch.stack([2 + offsets, -offsets], 1)])
    return x[:, None], torch.tensor([0] * n + [1] * n)


def test_the_probe_scores_the_given_images_with_its_centre_features():
    feats, labels = _separable()
    scored = torch.tensor([[-3.0, 0.0], [-1.5, 0.2], [2.5, 0.0], [1.0, -0.1]])  # the last lies on class 1's side
    probs, l2 = probe_probs(feats, labels, scored, CFG, class_names=AB)
    assert probs.shape == (4, 2) and torch.allclose(probs.sum(1), torch.ones(4))
    assert probs.argmax(1).tolist() == [0, 0, 1, 1] and l2 > 0
    truth = torch.tensor([0, 0, 1, 0])
    assert float((probs.argmax(1) == truth).float().mean()) == 0.75


def test_out_of_fold_probe_predicts_each_image_by_the_folds_that_did_not_train_on_it():
    feats, labels = _separable()
    feats[0, 0] = torch.tensor([2.2, 0.1])  # a class-0 image among class 1: only its own fold can get it right
    fold_of = [i % 3 for i in range(12)]
    probs, l2s = out_of_fold_probs(feats, feats[:, 0], labels, fold_of, CFG, class_names=AB)
    assert len(l2s) == 3
    wrong = (probs.argmax(1) != labels).nonzero().flatten().tolist()
    assert wrong == [0]  # 11 of 12 out of fold
    train = [i for i, f in enumerate(fold_of) if f != 1]
    held = [i for i, f in enumerate(fold_of) if f == 1]
    alone, _ = probe_probs(feats[train], labels[train], feats[held, 0], CFG, class_names=AB)
    assert torch.equal(probs[held], alone)  # fold 1 is exactly the probe fitted on folds 0 and 2


BEST = {"regime": "full", "seed": 0, "accuracy": 0.9, "accuracy_ci95": [0.8, 0.95], "n": 50, "majority_baseline": 0.4}
TEST = {"accuracy": 0.7, "accuracy_ci95": [0.6, 0.8], "n": 20, "majority_baseline": 0.5}


def test_the_headline_carries_the_probe_beside_the_majority_class_with_its_note():
    probe = {"accuracy": 0.65, "same_as_model": False, "note": "L-BFGS linear probe on ..."}
    h = make_headline(BEST, TEST, "val", 4, probe=probe)
    assert h["baselines"] == {"majority class": 0.5, "linear probe": 0.65}
    assert h["baseline_notes"] == {"linear probe": "L-BFGS linear probe on ..."} and h["same_as_model"] == []
    itself = make_headline(BEST, TEST, "val", 4, probe={**probe, "accuracy": 0.7, "same_as_model": True})
    assert itself["baselines"]["linear probe"] == itself["value"] == 0.7 and itself["same_as_model"] == ["linear probe"]
    off = make_headline(BEST, TEST, "val", 4, probe={"accuracy": None, "note": "off (report.probe_baseline=false)"})
    assert off["baselines"] == {"majority class": 0.5}
    assert off["baseline_notes"] == {"linear probe": "off (report.probe_baseline=false)"}
    assert make_headline(BEST, TEST, "val", 4)["baselines"] == {"majority class": 0.5}


def _report(regime: str, baselines: dict, ci=(0.55, 0.75), random_body=False, same=()) -> dict:
    headline = {"name": "test accuracy", "value": 0.65, "ci95": list(ci), "n": 40, "baselines": baselines}
    headline["same_as_model"] = list(same)
    return {"best": {"regime": regime}, "headline": headline, "random_body": random_body}


def test_each_baseline_warns_with_its_own_cause_and_the_model_itself_never_warns():
    r = _report("full", {"majority class": 0.3, "linear probe": 0.6})
    assert [name for name, _ in baseline_shortfalls(r["headline"])] == ["linear probe"]
    (w,) = chance_warnings(r)
    assert w.startswith("the model is not clearly above the linear probe baseline: test accuracy 65.0% (95% CI 55.0-")
    assert "fine-tuning (full) did not beat the linear probe" in w and "consider regime=frozen" in w
    below = chance_warnings(_report("partial", {"linear probe": 0.8}, ci=(0.55, 0.75)))[0]
    assert below.startswith("the model is below the linear probe baseline") and "fine-tuning (partial)" in below
    mlp = chance_warnings(_report("frozen", {"linear probe": 0.6}))[0]
    assert "head=softmax head.solver=lbfgs is that probe" in mlp
    chance = chance_warnings(
        _report("frozen", {"majority class": 0.6, "linear probe": 0.65}, random_body=True, same=["linear probe"])
    )
    assert len(chance) == 1 and chance[0].startswith("the model is not clearly above the majority class baseline")
    assert "backbone.pretrained=false with the frozen regime" in chance[0]
    assert headline_warnings(_report("frozen", {"linear probe": 0.65}, same=["linear probe"])["headline"]) == []


def test_the_headline_line_says_which_baseline_is_the_model_itself():
    h = {"name": "val accuracy", "value": 0.5, "ci95": [0.3, 0.7], "n": 12, "source": "the held-out val split"}
    h |= {"baselines": {"majority class": 1 / 3, "linear probe": 0.5}, "same_as_model": ["linear probe"]}
    assert headline_line(h).endswith("; baseline: majority class 0.333; linear probe 0.500 (the model itself)")
    h["same_as_model"] = []
    assert headline_line(h).endswith("; baseline: majority class 0.333; linear probe 0.500")


def test_report_probe_baseline_is_a_switch(tmp_path):
    assert fit_request(tmp_path).cfg.report.probe_baseline is True
    assert fit_request(tmp_path, "report.probe_baseline=false").cfg.report.probe_baseline is False


def _folder_overrides(root: Path, cache: Path, *more: str) -> list[str]:
    return [
        "data=folder",
        f"data.root={root}",
        "augment=none",
        "backbone.pretrained=false",
        "trainer.max_epochs=2",
        f"features.cache_dir={cache}",
        *more,
    ]


@pytest.mark.parametrize("layout", ["cv", "test"])
def test_a_fine_tune_is_measured_against_the_probe_the_frozen_regime_fits_on_the_same_images(tmp_path, layout):
    """The baseline of a scratch fit equals the headline of a frozen fit on the same images (the same probe: the same
    training images, the same folds or test/), and reads the frozen run's cached features."""
    from transfer.studies.fit import run_fit

    if layout == "cv":
        root = make_image_folder(tmp_path / "data", ("a", "b", "c"), 6, (32, 32), learnable=False)
    else:
        for split, n, seed in (("train", 6, 0), ("val", 2, 1), ("test", 3, 2)):
            make_image_folder(tmp_path / "data" / split, ("a", "b", "c"), n, (32, 32), learnable=False, seed=seed)
        root = tmp_path / "data"
    cache = tmp_path / "features"
    more = ("report.cv_folds=2",)  # two scratch folds keep it quick; the folds are the point, not their number
    frozen = run_fit(fit_request(tmp_path / "frozen", *_folder_overrides(root, cache, "regime=frozen", *more)))
    scratch = run_fit(fit_request(tmp_path / "scratch", *_folder_overrides(root, cache, "regime=scratch", *more)))
    fh, sh = frozen["headline"], scratch["headline"]
    assert fh["same_as_model"] == ["linear probe"] and fh["baselines"]["linear probe"] == fh["value"]
    assert frozen["probe_baseline"]["same_as_model"] and frozen["probe_baseline"]["seconds"] == 0.0
    probe = scratch["probe_baseline"]
    assert not probe["same_as_model"] and sh["same_as_model"] == []
    assert (probe["accuracy"], probe["n"]) == (fh["value"], fh["n"]) and sh["baselines"]["linear probe"] == fh["value"]
    assert probe["accuracy_ci95"] == fh["ci95"] and probe["n"] == sh["n"]
    # the frozen run cached every training and held-out feature; test/ it scored through the model dir, not the cache
    assert probe["extracted"] == (0 if layout == "cv" else 9)
    assert probe["note"].startswith("L-BFGS linear probe on frozen lenet5 features (frozen regime's head), fitted on")
    assert len(probe["l2"]) == (frozen["crossval"]["folds"] if layout == "cv" else 1)
    assert (scratch["best"]["regime"], sh["baselines"]["majority class"]) == (
        "scratch",
        fh["baselines"]["majority class"],
    )
    saved = json.loads((tmp_path / "scratch" / "metrics.json").read_text())
    assert saved["headline"] == sh and saved["probe_baseline"] == probe


def test_probe_baseline_off_fits_nothing_and_says_so(tmp_path):
    from transfer.studies.fit import run_fit

    root = make_image_folder(tmp_path / "data", ("a", "b"), 5, (32, 32))
    report = run_fit(
        fit_request(
            tmp_path / "run",
            *_folder_overrides(
                root, tmp_path / "f", "regime=scratch", "report.cv_folds=2", "report.probe_baseline=false"
            ),
        )
    )
    assert report["probe_baseline"]["accuracy"] is None
    h = report["headline"]
    assert list(h["baselines"]) == ["majority class"]
    assert h["baseline_notes"] == {"linear probe": "off (report.probe_baseline=false)"}


def _cli(root: Path, tmp_path: Path, *more: str) -> list[str]:
    return [
        "~recipe",
        "data=folder",
        f"data.root={root}",
        "augment=none",
        "trainer.accelerator=cpu",
        "features.progress=false",
        f"features.cache_dir={tmp_path / 'features'}",
        "hydra.run.dir=run",
        *more,
    ]


def _warnings(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("warning: the model is")]


@pytest.mark.slow
def test_a_chance_level_model_prints_the_warning_naming_the_cause(run_cli, tmp_path):
    """Same-distribution noise images split into classes at random: the labels carry no signal."""
    root = make_image_folder(tmp_path / "noise", ("a", "b", "c"), 12, (32, 32), learnable=False)
    proc = run_cli(*_cli(root, tmp_path, "backbone.pretrained=false", "regime=frozen"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    (warning,) = _warnings(proc.stdout)
    assert warning.startswith(
        (
            "warning: the model is not clearly above the majority class baseline",
            "warning: the model is below the majority class baseline",
        )
    )
    assert "backbone.pretrained=false" in warning
    h = json.loads((tmp_path / "run" / "metrics.json").read_text())["headline"]
    assert set(h["baselines"]) == {"majority class", "linear probe"} and h["same_as_model"] == ["linear probe"]
    assert "linear probe " + f"{h['value']:.3f} (the model itself)" in proc.stdout


@pytest.mark.slow
def test_a_learnable_task_prints_no_majority_warning_and_the_probe_warning_follows_its_rule(run_cli, tmp_path):
    root = make_image_folder(tmp_path / "colours", ("a", "b", "c"), 12, (32, 32))
    more = ("backbone.pretrained=false", "regime=full", "trainer.max_epochs=15", "report.cv_folds=0", "head.lr=0.01")
    proc = run_cli(*_cli(root, tmp_path, *more))
    assert proc.returncode == 0, proc.stderr[-3000:]
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    h, probe = saved["headline"], saved["probe_baseline"]
    assert h["ci95"][0] > h["baselines"]["majority class"] + 0.02  # clearly above chance
    assert not any("majority class" in w for w in _warnings(proc.stdout))
    assert not probe["same_as_model"] and probe["n"] == h["n"] and h["baselines"]["linear probe"] == probe["accuracy"]
    probe_warned = [w for w in _warnings(proc.stdout) if "linear probe baseline" in w]
    assert len(probe_warned) == int(h["ci95"][0] <= probe["accuracy"] + 0.02)
    assert all("consider regime=frozen" in w for w in probe_warned)


def test_a_baseline_scored_on_the_same_images_is_decided_by_the_paired_test():
    """The 64-px weather full fine-tune scored 96.3% (95% CI 94.3-98.0) against the probe's 93.6% on the same 404
    photos, and the page said 'not clearly above' from the unpaired interval; on the same images the paired test
    decides: clearly above (no warning) at p < 0.05, 'not clearly above' or 'below' otherwise, with the counts."""
    headline = {"name": "test accuracy", "value": 0.963, "ci95": [0.943, 0.980], "n": 404}
    headline |= {"baselines": {"majority class": 0.329, "linear probe": 0.936}, "same_as_model": []}
    assert [n for n, _ in baseline_shortfalls(headline)] == ["linear probe"]  # the interval alone: near it
    headline["baseline_paired"] = {"linear probe": {"b": 15, "c": 4, "n": 404, "p_value": 0.019}}
    assert baseline_shortfalls(headline) == []
    headline["baseline_paired"] = {"linear probe": {"b": 9, "c": 5, "n": 404, "p_value": 0.42}}
    ((name, text),) = baseline_shortfalls(headline)
    assert name == "linear probe" and text == (
        "the model is not clearly above the linear probe baseline: test accuracy 96.3% vs 93.6% on the same 404 "
        "images (the model alone right on 9, the linear probe alone on 5; exact McNemar p = 0.42)"
    )
    headline |= {"value": 0.90, "baseline_paired": {"linear probe": {"b": 2, "c": 16, "n": 404, "p_value": 0.0007}}}
    assert baseline_shortfalls(headline)[0][1].startswith("the model is below the linear probe baseline")
    assert "exact McNemar p < 0.001" in baseline_shortfalls(headline)[0][1]
    probe = {"accuracy": 0.936, "same_as_model": False, "note": "n", "paired": {"b": 1, "c": 1, "n": 4, "p_value": 1}}
    assert make_headline(BEST, TEST, "val", 4, probe=probe)["baseline_paired"] == {"linear probe": probe["paired"]}
