"""Every Python snippet in README.md runs, in order, as a user would paste it (in a folder holding `cats/`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_the_readme_has_the_library_snippets():
    blocks = python_blocks()
    assert len(blocks) >= 4
    assert any("transfer.fit(" in b for b in blocks) and any("Backbone.from_module(" in b for b in blocks)


@pytest.mark.slow
def test_every_python_snippet_in_the_readme_runs(tmp_path, monkeypatch, capsys):
    from tests.synthetic import write_image_folder

    write_image_folder(tmp_path / "cats", n=8)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    blocks = python_blocks()
    (tmp_path / "my_backbones.py").write_text(blocks[0], encoding="utf-8")  # "Save this as my_backbones.py"
    namespace: dict = {"__name__": "readme"}
    for i, block in enumerate(blocks[1:], start=1):
        try:
            exec(compile(block, f"README.md python block {i}", "exec"), namespace)
        except Exception as e:  # noqa: BLE001 -- name the failing block
            pytest.fail(f"README python block {i} failed: {type(e).__name__}: {e}\n{block}")
    out = capsys.readouterr().out
    assert "['misty', 'neither', 'tigger']" in out  # model.classes
    assert "torch.Size([2, 8])" in out
    assert "512 ['layer1', 'layer2', 'layer3', 'layer4'] module" in out


def test_the_onnx_snippet_in_the_readme_is_the_file_the_export_test_runs():
    snippet = (README.parent / "docs" / "snippets" / "onnx_predict.py").read_text(encoding="utf-8")
    assert f"```py\n{snippet}```" in README.read_text(encoding="utf-8")
