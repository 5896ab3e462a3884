"""Where the body's weights came from, always: the model card, metrics.json, the page header and the terminal say it
(hub name + tag, a file + its sha256, an earlier run's model dir, a source model of this run, random initialisation),
with the feature cache a frozen run trained on; random weights are a warning on the page and the screen."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from tests.requests import fit_request
from tests.synthetic import write_image_folder
from transfer.backbones.factory import create_backbone
from transfer.backbones.provenance import provenance_line, weights_provenance
from transfer.model.classifier import Classifier
from transfer.model.heads import create_head
from transfer.model.model_dir import save_model_dir


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_each_kind_of_weights_is_described_with_what_identifies_it(tmp_path):
    hub = weights_provenance("resnet50", True, None, None, "timm", ("a1_in1k", "tv_in1k"))
    assert hub == {"kind": "hub", "name": "resnet50", "tag": "a1_in1k", "source": "timm"}  # the default tag, named
    assert provenance_line(hub) == "pretrained resnet50.a1_in1k (timm, Hugging Face hub)"
    tv = weights_provenance("alexnet", True, None, "IMAGENET1K_V1", "torchvision")
    assert provenance_line(tv) == "pretrained alexnet.IMAGENET1K_V1 (torchvision, download.pytorch.org)"
    random = weights_provenance("resnet50", False, None, None, "timm")
    assert random["kind"] == "random"
    assert provenance_line(random).startswith("random initialisation of resnet50 (backbone.pretrained=false")
    assert weights_provenance("mine", False, None, None, "library")["kind"] == "module"  # a module's own weights
    assert weights_provenance("plug", True, None, None, "user")["kind"] == "builder"
    assert provenance_line(None).startswith("not recorded")


def test_create_backbone_records_random_a_file_and_an_earlier_model_dir(tmp_path):
    assert create_backbone("lenet5").weights_source["kind"] == "random"
    torch.manual_seed(0)
    body = create_backbone("lenet5")
    mdir = save_model_dir(
        tmp_path / "earlier", Classifier(body, create_head("softmax", 84, 2)), "lenet5", ["x", "y"], {"name": "softmax"}
    )
    from safetensors.torch import save_file

    save_file(body.state_dict(), str(tmp_path / "w.safetensors"))
    from_file = create_backbone("lenet5", weights=str(tmp_path / "w.safetensors")).weights_source
    assert from_file == {
        "kind": "file",
        "path": str(tmp_path / "w.safetensors"),
        "sha256": _sha256(tmp_path / "w.safetensors"),
    }
    assert provenance_line(from_file) == f"weights file {tmp_path / 'w.safetensors'} (sha256 {from_file['sha256']})"
    from_dir = create_backbone("lenet5", weights=str(mdir)).weights_source
    assert from_dir["kind"] == "model_dir" and from_dir["sha256"] == _sha256(mdir / "model.safetensors")
    assert from_dir["classes"] == ["x", "y"]
    assert provenance_line(from_dir).startswith(f"an earlier run's model dir {mdir} (model.safetensors sha256 ")


def _fit(out: Path, root: Path, *more: str):
    from transfer.studies.fit import run_fit

    args = ("data=folder", f"data.root={root}", "data.val_fraction=0.25", "augment=none", "report.cv_folds=0")
    return run_fit(fit_request(out, *args, f"features.cache_dir={out.parent / 'features'}", *more))


def _printed(report: dict, out: Path, capsys) -> str:
    from transfer.app.commands.fit import print_summary

    capsys.readouterr()
    print_summary(report, out)
    return capsys.readouterr().out


def test_random_weights_are_said_everywhere_then_an_earlier_runs_model_dir_is_named(tmp_path, capsys):
    root = write_image_folder(tmp_path / "data", n=6)
    report = _fit(tmp_path / "run", root)  # lenet5 has no public weights: backbone.pretrained=false, no weights
    card = json.loads((tmp_path / "run" / "model" / "card.json").read_text())
    assert card["weights"]["kind"] == "random" and report["weights"] == card["weights"] and report["random_body"]
    fc = card["feature_cache"]  # the frozen run's features: a folder that exists, named in the card
    assert fc["dir"] == str(tmp_path / "features") and (tmp_path / "features" / fc["namespaces"]["center"]).is_dir()
    page = (tmp_path / "run" / "report.html").read_text()
    assert "<h1>Training report: lenet5 from random initialisation (no pretrained weights)</h1>" in page
    warnings = page.split('<section id="warnings"')[1].split("</section>")[0]
    assert warnings.index("<li>random weights: lenet5 was not pretrained") == warnings.index("<li>")  # the first one
    header = page.split('<ul id="provenance" class="provenance">')[1].split("</ul>")[0]
    assert f"<li>weights: {provenance_line(card['weights'])}</li>" in header
    assert f"feature cache: {fc['dir']}: {fc['namespaces']['center']}" in header
    printed = _printed(report, tmp_path / "run", capsys)
    assert f"weights: {provenance_line(card['weights'])}\n" in printed
    assert "\nwarning: random weights: lenet5 was not pretrained" in printed
    assert f"feature cache: {fc['dir']}: {fc['namespaces']['center']}" in printed

    again = _fit(tmp_path / "chain", root, f"backbone.weights={tmp_path / 'run' / 'model'}")
    weights = again["weights"]
    assert weights["kind"] == "model_dir" and weights["path"] == str(tmp_path / "run" / "model")
    assert weights["sha256"] == _sha256(tmp_path / "run" / "model" / "model.safetensors") and not again["random_body"]
    page = (tmp_path / "chain" / "report.html").read_text()
    assert "<h1>Training report: lenet5</h1>" in page and "random weights" not in page
    printed = _printed(again, tmp_path / "chain", capsys)
    assert (
        f"weights: an earlier run's model dir {tmp_path / 'run' / 'model'}" in printed
        and "warning: random" not in printed
    )


@pytest.mark.parametrize("chosen", ["scratch", "frozen"])
def test_a_scratch_model_is_random_by_design_and_the_pretrained_regimes_start_is_named_too(chosen):
    from transfer.eval.report_sections import provenance_lines, weights_warnings
    from transfer.studies.report_data import page_title

    source = {"kind": "source_model", "path": "/r/source_model", "sha256": "ab", "classes": [0, 1], "accuracy": 0.9}
    scratch = {"kind": "random", "name": "lenet5", "reason": "regime=scratch trains the body from scratch"}
    scratch["by_design"] = True
    report = {"best": {"regime": chosen, "seed": 0}, "backbone": "lenet5"}
    report |= {"weights": scratch, "other_weights": source} if chosen == "scratch" else {"weights": source}
    lines = provenance_lines(report)
    if chosen == "scratch":
        assert lines[0] == "weights: random initialisation of lenet5 (regime=scratch trains the body from scratch)"
        assert lines[1].startswith("weights of the pretrained regimes: a source model trained in this run")
        assert weights_warnings(report)[0].startswith("the chosen model (scratch) trained lenet5 from random")
        assert page_title(report) == "Training report: lenet5 trained from scratch (regime scratch)"
    else:
        assert lines == [f"weights: {provenance_line(source)}"] and weights_warnings(report) == []
        assert page_title(report) == "Training report: lenet5"


def test_the_same_weights_saved_by_two_processes_hash_the_same(tmp_path):
    """The sha256 the card and the terminal quote names the weights: safetensors writes its metadata map in a random
    order per process, so a model dir carries a single metadata key (two keys gave one model two hashes)."""
    import subprocess
    import sys

    code = (
        "import sys, torch; from transfer.backbones.factory import create_backbone; "
        "from transfer.model.classifier import Classifier; from transfer.model.heads import create_head; "
        "from transfer.model.model_dir import save_model_dir; torch.manual_seed(0); b = create_backbone('lenet5'); "
        "c = Classifier(b, create_head('softmax', b.num_features, 2)); "
        "[save_model_dir(p, c, 'lenet5', ['a', 'b'], {'name': 'softmax'}) for p in sys.argv[1:]]"
    )
    dirs = [tmp_path / f"m{i}" for i in range(4)]
    for pair in (dirs[:2], dirs[2:]):  # two processes, two saves each
        subprocess.run([sys.executable, "-c", code, *map(str, pair)], check=True, cwd=Path(__file__).parents[1])
    hashes = {_sha256(d / "model.safetensors") for d in dirs}
    assert len(hashes) == 1
    from safetensors import safe_open

    with safe_open(str(dirs[0] / "model.safetensors"), "pt") as f:
        assert list(f.metadata()) == ["format"]
