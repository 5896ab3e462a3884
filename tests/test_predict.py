"""predict: model dirs, multi-crop wrappers and ensembles, and unreadable files."""

from __future__ import annotations

import pytest
import torch

from tests.synthetic import write_image_folder
from transfer.backbones import create_backbone
from transfer.errors import UserError
from transfer.inference.predict import predict_files
from transfer.inference.tta import MultiCrop
from transfer.model.classifier import Classifier
from transfer.model.heads import create_head
from transfer.model.model_dir import load_model_dir, save_model_dir


def _model_dir(path, seed: int, classes=("misty", "neither", "tigger")):
    torch.manual_seed(seed)
    backbone = create_backbone("lenet5")
    clf = Classifier(backbone, create_head("softmax", backbone.num_features, len(classes)))
    return save_model_dir(path, clf, "lenet5", list(classes), {"name": "softmax"})


def test_model_dir_round_trip(tmp_path):
    d = _model_dir(tmp_path / "m", 0)
    clf, card = load_model_dir(d)
    torch.manual_seed(0)
    again = Classifier(create_backbone("lenet5"), create_head("softmax", 84, 3))
    x = torch.randn(2, 1, 32, 32)
    assert torch.allclose(clf(x), again.eval()(x))
    assert card["classes"] == ["misty", "neither", "tigger"] and card["num_features"] == 84


def test_ten_crop_views():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).reshape(2, 1, 6, 6)
    views = MultiCrop(torch.nn.Identity(), (4, 4), "10crop").crops(x)
    assert len(views) == 10 and all(v.shape == (2, 1, 4, 4) for v in views)
    assert torch.equal(views[0], x[..., :4, :4])  # top-left corner
    assert torch.equal(views[4], x[..., 1:5, 1:5])  # centre
    assert torch.equal(views[5], views[1].flip(-1))  # then the five crops of the mirrored image
    assert torch.equal(views[9], views[4].flip(-1))
    assert len(MultiCrop(torch.nn.Identity(), (4, 4), "flip").crops(x)) == 2
    with pytest.raises(UserError, match="tta='5crop'"):
        MultiCrop(torch.nn.Identity(), (4, 4), "5crop")


def test_multicrop_averages_softmax_over_views():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    x = torch.randn(3, 1, 6, 6)
    wrapped = MultiCrop(model, (4, 4), "10crop")
    expected = torch.stack([torch.softmax(model(v), 1) for v in wrapped.crops(x)]).mean(0)
    assert torch.allclose(wrapped(x), expected)
    assert torch.allclose(wrapped(x).sum(1), torch.ones(3))


def test_ensemble_is_the_mean_of_its_members(tmp_path):
    images = write_image_folder(tmp_path / "imgs", n=3)
    a, b = _model_dir(tmp_path / "a", 1), _model_dir(tmp_path / "b", 2)
    ra, rb = predict_files(a, images), predict_files(b, images)
    both = predict_files([a, b], images, tta="flip")
    assert len(both) == 9
    single_flip = [predict_files(m, images, tta="flip") for m in (a, b)]
    for i, row in enumerate(both):
        for c in ("misty", "neither", "tigger"):
            mean = (single_flip[0][i][f"p_{c}"] + single_flip[1][i][f"p_{c}"]) / 2
            assert row[f"p_{c}"] == pytest.approx(mean, abs=1e-6)
    assert ra[0]["p_misty"] != pytest.approx(rb[0]["p_misty"])  # two different members


def test_ensemble_of_different_tasks_is_refused(tmp_path):
    a = _model_dir(tmp_path / "a", 1)
    b = _model_dir(tmp_path / "b", 2, classes=("cat", "dog", "fox"))
    with pytest.raises(UserError, match="differ"):
        predict_files([a, b], tmp_path)


def test_an_unreadable_file_gets_a_row_with_its_error(tmp_path):
    images = write_image_folder(tmp_path / "imgs", n=2)
    (images / "misty" / "broken.jpg").write_bytes(b"not a jpeg")
    rows = predict_files(_model_dir(tmp_path / "m", 0), images)
    assert len(rows) == 7
    broken = [r for r in rows if r["file"].endswith("broken.jpg")]
    assert len(broken) == 1 and broken[0]["class"] == ""
    assert broken[0]["error"].startswith("not an image") and "BytesIO" not in broken[0]["error"]
    assert all(r["class"] in ("misty", "neither", "tigger") for r in rows if r is not broken[0])


def test_evaluate_scores_the_held_out_split_and_writes_the_report(tmp_path):
    import json

    from transfer.inference.evaluate import evaluate_folder

    write_image_folder(tmp_path / "data" / "train", n=2)
    write_image_folder(tmp_path / "data" / "val", n=4, seed=1)
    m = evaluate_folder(_model_dir(tmp_path / "m", 0), tmp_path / "data", tmp_path / "out", tta="flip")
    assert (m["split"], m["n"], m["tta"]) == ("val", 12, "flip")
    assert sum(map(sum, m["confusion"])) == 12 and [sum(r) for r in m["confusion"]] == [4, 4, 4]
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["accuracy"] == m["accuracy"]
    assert (tmp_path / "out" / "confusion.png").is_file() and (tmp_path / "out" / "predictions.csv").is_file()
    write_image_folder(tmp_path / "other", classes=("misty", "wolf"), n=2)
    with pytest.raises(UserError, match=r"\['wolf'\] are not classes of the model"):
        evaluate_folder(_model_dir(tmp_path / "m", 0), tmp_path / "other", tmp_path / "out2")
