"""Which backbone (issue 23.3): LogME's closed-form evidence, the `backbones` candidates, `command=rank-backbones` and
`transfer.rank_backbones` (cross-validated probe, interval, LogME pre-filter, offline names skipped), and
backbone=auto in a fit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from bench_run import run_bench
from torch import nn

from tests.shared_data import need_shared_data
from tests.synthetic import write_brightness_folder
from transfer.backbones.base import Backbone, Preprocessing, Stage
from transfer.backbones.factory import create_backbone
from transfer.backbones.registry import register_backbone
from transfer.errors import UserError
from transfer.eval.logme import class_evidence, logme

ROOT = Path(__file__).resolve().parents[1]
LENET = {"name": "lenet5", "pretrained": False}


class OnePixel(Backbone):
    """A deliberately weak body: the red value of the top-left pixel (one noisy number per image)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.num_features = 1
        self.preprocessing = Preprocessing(input_size=(3, 32, 32), crop_pct=1.0)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1, 0, 0] * self.scale  # N x 1

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        return features

    def stages(self) -> list[Stage]:
        return [Stage("scale", ("scale",))]


@register_backbone("rank_test_one_pixel", description="tests: one pixel's red value")
def one_pixel(pretrained: bool = False, tag: str | None = None) -> OnePixel:
    return OnePixel()


# ---------------------------------------------------------------- LogME


@pytest.mark.parametrize("n,d", [(200, 30), (50, 120)])  # more images than dimensions, and fewer (as 605 x 1280)
def test_logme_evidence_is_the_bayesian_linear_models_maximised_evidence(n, d):
    from sklearn.linear_model import BayesianRidge

    rng = np.random.default_rng(0)
    f = rng.normal(size=(n, d))
    y = 0.3 * f @ rng.normal(size=d) + rng.normal(size=n)  # a linear target: the evidence peaks inside (alpha, beta)
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    evidence, alpha, beta = class_evidence(u, s, y, d)
    tiny = {k: 1e-12 for k in ("alpha_1", "alpha_2", "lambda_1", "lambda_2")}  # flat hyper-priors: plain evidence
    br = BayesianRidge(fit_intercept=False, compute_score=True, tol=1e-12, max_iter=30_000, **tiny).fit(f, y)
    assert evidence * n == pytest.approx(br.scores_[-1], abs=1e-6)  # scikit-learn maximises the same evidence
    assert beta == pytest.approx(br.alpha_, rel=1e-4) and alpha == pytest.approx(br.lambda_, rel=1e-4)


def test_logme_prefers_features_that_carry_the_labels():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 300)
    noise = rng.normal(size=(300, 20))
    informative = noise + 2.0 * np.eye(3)[y] @ rng.normal(size=(3, 20))
    assert logme(informative, y) > logme(noise, y)
    with pytest.raises(ValueError, match="N x D"):
        logme(noise[:, 0], y)
    with pytest.raises(ValueError, match="NaN"):
        logme(np.full((300, 2), np.nan), y)


# ---------------------------------------------------------------- candidates


def test_candidates_are_names_or_backbone_dicts_and_an_unknown_name_is_named():
    from transfer.studies.config import check_backbones
    from transfer.studies.rank_backbones import candidates_of

    cands = candidates_of(["resnet18", LENET, {"name": "resnet18", "weights": "w/r18.safetensors"}, "resnet18"])
    assert [c.label for c in cands] == [
        "resnet18",
        "lenet5 (random weights)",
        "resnet18 (weights: r18.safetensors)",
        "resnet18 #2",
    ]
    assert cands[0].backbone == {"name": "resnet18", "pretrained": True, "weights": None, "kwargs": {}}
    assert cands[2].backbone["weights"] == "w/r18.safetensors" and not cands[2].backbone["pretrained"]
    with pytest.raises(UserError, match=r"^backbones\[1\]: backbone='resnt18' is not a registered .* resnet18"):
        candidates_of(["resnet18", "resnt18"])
    with pytest.raises(UserError, match=r"^backbones\[0\]=auto: a candidate names a backbone"):
        candidates_of(["auto"])
    with pytest.raises(UserError, match=r"^backbones=\[\]: no candidates"):
        check_backbones([])
    with pytest.raises(UserError, match=r"^backbones\[0\]: unknown key\(s\) weight; a candidate accepts name"):
        check_backbones([{"name": "resnet18", "weight": "x"}])
    with pytest.raises(UserError, match=r"^backbones\[1\]=3: a candidate is a backbone name"):
        check_backbones(["resnet18", 3])


# ---------------------------------------------------------------- ranking


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_brightness_folder(tmp_path_factory.mktemp("rank") / "grey", n=20)


def _config(folder: Path, cache: Path, *more: str):
    from transfer.app.compose import compose

    return compose(
        ["command=rank-backbones", "data=folder", f"data.root={folder}", "trainer.accelerator=cpu"]
        + [f"features.cache_dir={cache}", "features.progress=false", *more]
    )


def test_rank_backbones_ranks_the_stronger_first_skips_what_cannot_be_built_and_says_why(
    folder, tmp_path, capsys, monkeypatch
):
    from transfer.app.commands.rank_backbones import print_ranking, rank_config

    monkeypatch.setenv("TRANSFER_OFFLINE", "1")  # the hub is never asked, whatever the machine's network
    backbones = "backbones=[rank_test_one_pixel,resnet18,{name:lenet5,pretrained:false},lenet5]"
    ranking = rank_config(_config(folder, tmp_path / "cache", backbones), tmp_path, quiet=True)
    print_ranking(ranking, tmp_path)
    out = capsys.readouterr().out
    saved = json.loads((tmp_path / "rank_backbones.json").read_text())
    assert saved | {"candidates": None} == {
        "winner": "lenet5 (random weights)",
        "winner_backbone": {**LENET, "weights": None, "kwargs": {}},
        "verdict": saved["verdict"],
        "n_images": 60,
        "classes": ["dark", "grey", "light"],
        "data": str(folder),
        "prefiltered_by_logme": False,
        "candidates": None,
    }
    rows = {c["label"]: c for c in saved["candidates"]}
    assert [c["label"] for c in saved["candidates"]] == [
        "lenet5 (random weights)", "rank_test_one_pixel", "resnet18", "lenet5",
    ]  # fmt: skip
    strong, weak = rows["lenet5 (random weights)"], rows["rank_test_one_pixel"]
    assert strong["accuracy"] > weak["accuracy"] and strong["logme"] > weak["logme"]
    assert strong["accuracy_ci95"][0] <= strong["accuracy"] <= strong["accuracy_ci95"][1] + 1e-9
    lenet_params = sum(p.numel() for p in create_backbone("lenet5").parameters())
    assert (strong["params"], strong["dim"], strong["folds"]) == (lenet_params, 84, 5)
    assert rows["resnet18"]["status"] == "skipped" and rows["resnet18"]["reason"].startswith("cannot download")
    assert rows["lenet5"]["status"] == "skipped" and "no public pretrained weights" in rows["lenet5"]["reason"]
    assert saved["verdict"].endswith("(McNemar, 60 images)") or "no detectable difference" in saved["verdict"]
    lines = out.splitlines()
    assert "candidate 2/4: resnet18" in lines and any(ln.startswith("  skipped: cannot download") for ln in lines)
    assert f"best: lenet5 (random weights) - {saved['verdict']}" in lines
    assert any(ln.startswith("skipped: resnet18: cannot download pretrained weights") for ln in lines)
    assert any(ln.startswith("skipped: lenet5: backbone=lenet5 has no public pretrained weights") for ln in lines)
    assert f"fit it:  python -m transfer backbone.name=lenet5 backbone.pretrained=false data.root={folder} ..." in lines
    assert lines[-1] == f"ranking: {tmp_path / 'rank_backbones.json'}"
    assert out.count("scan of ") == 1  # the folder's scan report once, not once per candidate


def test_a_long_list_is_pre_filtered_by_logme(folder, tmp_path):
    import transfer

    overrides = [f"features.cache_dir={tmp_path / 'cache'}", "features.progress=false"]
    overrides += ["rank.prefilter_above=1", "rank.keep=1"]
    ranking = transfer.rank_backbones(folder, [LENET, "rank_test_one_pixel"], tmp_path, overrides)
    assert ranking.prefiltered and [c.status for c in ranking.candidates] == ["ranked", "pre-filtered"]
    kept, dropped = ranking.candidates
    assert kept.label == "lenet5 (random weights)" and kept.logme > dropped.logme
    assert dropped.accuracy is None and ranking.verdict == ""


def test_when_nothing_can_be_built_it_is_one_error_with_each_reason(folder, tmp_path, monkeypatch):
    from transfer.app.commands.rank_backbones import rank_config

    monkeypatch.setenv("TRANSFER_OFFLINE", "1")
    with pytest.raises(UserError, match=r"^backbones: none of the 2 candidates could be built \(resnet18: cannot"):
        rank_config(_config(folder, tmp_path, "backbones=[resnet18,lenet5]"), tmp_path, quiet=True)


def test_a_fit_with_backbone_auto_ranks_then_trains_the_winner(folder, tmp_path):
    from tests.requests import fit_request
    from transfer.studies.fit import run_fit

    overrides = ["data=folder", f"data.root={folder}", "augment=none", f"features.cache_dir={tmp_path / 'cache'}"]
    auto = ["backbone=auto", "backbones=[rank_test_one_pixel,{name:lenet5,pretrained:false}]", "report.cv_folds=0"]
    report = run_fit(fit_request(tmp_path / "run", *overrides, *auto))
    assert report["backbone"] == "lenet5" and report["backbone_auto"]["winner"] == "lenet5 (random weights)"
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["backbone_auto"] == report["backbone_auto"]
    assert (tmp_path / "run" / "rank_backbones.json").is_file()
    with pytest.raises(UserError, match=r"^backbone.name=auto: list the candidates"):
        run_fit(fit_request(tmp_path / "run2", *overrides, "backbone=auto"))


@pytest.mark.slow  # a python -m transfer process: ~15 s on 2 busy cores
def test_rank_backbones_cli_prints_the_table(folder, run_cli, tmp_path):
    proc = run_cli(
        "command=rank-backbones", "backbones=[{name:lenet5,pretrained:false},resnet18]", "data=folder",
        f"data.root={folder}", "hydra.run.dir=run", f"features.cache_dir={tmp_path / 'cache'}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "backbones ranked by a cross-validated linear probe on 60 images (3 classes)" in out
    assert "│ 1 │ lenet5 (random weights)" in out and "best: lenet5 (random weights)" in out
    assert "skipped: resnet18: cannot download pretrained weights" in out
    assert f"ranking: {tmp_path / 'run' / 'rank_backbones.json'}" in out


@pytest.mark.slow  # decodes the weather photos at two sizes and extracts 3 x 48 of them: ~1 minute on 2 cores
def test_rank_backbones_bench_tiny(tmp_path):
    need_shared_data()
    lines, out = run_bench("rank_backbones.py", "--tiny", "--cache-dir", str(tmp_path / "c"), cwd=tmp_path)
    assert out["bench"] == "rank_backbones" and out["train_images"] == 48
    assert set(out["candidates"]) == {"imagenet_224", "imagenet_64", "random_224"}
    for row in out["candidates"].values():
        assert 0 <= row["cv_accuracy"] <= 1 and 0 <= row["test_accuracy"] <= 1
    assert out["winner"] in out["candidates"] and any(ln.startswith("rank ") for ln in lines)


def test_help_lists_the_three_commands():
    from transfer.app.help import help_text
    from transfer.app.schema import COMMANDS

    text = help_text()
    assert {"label-issues", "suggest", "rank-backbones"} <= set(COMMANDS)
    for line in (
        "  label-issues     images of data.root=",
        "  suggest          which unlabelled images",
        "  rank-backbones   rank backbones=[a,b,...]",
    ):
        assert line in text
