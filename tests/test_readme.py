"""README.md and docs/*.md say only what is true today: every `python -m transfer` line composes, every other shell line
names a script, file or option that exists, every Python block runs (slow), every file, module and link they name
exists, and the README stays a short guide that quotes no time. The conventions are in tests/markdown_snippets.py."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys

import pytest

from tests.markdown_snippets import (
    PAGES,
    ROOT,
    Snippet,
    anchors,
    argv,
    blocks,
    code_spans,
    fence_languages,
    prose,
    shell_lines,
    transfer_overrides,
)

README = ROOT / "README.md"
PYPROJECT = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
EXTRAS = set(re.findall(r"^(\w+) = \[", PYPROJECT.split("[project.optional-dependencies]")[1].split("\n[")[0], re.M))
MARKERS = set(re.findall(r'^    "(\w+): ', PYPROJECT, re.M))  # [tool.pytest.ini_options] markers
SHELL = [s for page in PAGES for s in shell_lines(page)]
TRANSFER_LINES = [s for s in SHELL if argv(s.text)[1][:3] == ["python", "-m", "transfer"]]
OTHER_LINES = [s for s in SHELL if s not in TRANSFER_LINES]
PYTHON = [b for page in PAGES for b in blocks(page, "python")]
# names that are gone from the code: a page naming them points a reader at nothing
GONE = ("build_request", "schema.validate", "training/pipeline", "training.pipeline", "score_model_dir", "grid.py")
NOT_MODULES = {"transfer.plugins"}  # the entry-point group a package declares its plugins in


def test_the_pages_are_found_and_hold_the_snippets():
    assert README in PAGES and len(PAGES) >= 8
    assert len(TRANSFER_LINES) >= 40 and len(OTHER_LINES) >= 10
    assert any("transfer.fit(" in b.text for b in PYTHON) and any("Backbone.from_module(" in b.text for b in PYTHON)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_fences_name_a_known_language(page):
    assert fence_languages(page) <= {"", "bash", "python", "py"}, "python, py (a docs/snippets file), bash or output"


# -- the README is a short guide ---------------------------------------------------------------------------------------

TIME = re.compile(
    r"\b\d+(?:[.,]\d+)?\s?(?:ms|s|sec|secs|seconds?|min|mins|minutes?|h|hours?)\b|\b(?:seconds?|minutes?|hours?)\b"
)


def test_the_readme_is_short():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= 300, f"README.md has {lines} lines; move detail to docs/"


def test_the_readme_quotes_no_time():
    """A time is quoted once, in docs/benchmarks.md (or docs/results.md), beside the command and machine that measured
    it; the README points there."""
    found = [m.group(0) for m in TIME.finditer(README.read_text(encoding="utf-8"))]
    assert not found, f"README.md quotes times {found}: move them to docs/benchmarks.md"
    assert "docs/benchmarks.md" in README.read_text(encoding="utf-8")


def test_the_readme_lists_every_command():
    from transfer.app.schema import COMMANDS

    rows = re.findall(r"^\| `([\w-]+)` \|", README.read_text(encoding="utf-8"), flags=re.M)
    missing = [c for c in COMMANDS if c not in rows]
    assert not missing, f"README.md's command table lacks {missing} (see its COMMANDS marker)"
    assert all(f"command={c}" in README.read_text(encoding="utf-8") for c in COMMANDS if c != "fit")


def test_the_configuration_page_lists_every_group():
    from transfer.app.help import groups

    rows = re.findall(r"^\| `(\w+)` \|", (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8"), flags=re.M)
    assert set(groups()) <= set(rows)


# -- command lines ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("line", TRANSFER_LINES, ids=lambda s: s.where)
def test_every_transfer_command_line_composes(line: Snippet):
    """`compose` is what `python -m transfer` runs before anything else: every key, option and value checked by the
    config's dataclasses. Paths are not looked at (they are examples)."""
    from transfer.app.cli import expand_home
    from transfer.app.compose import compose, sweep_variants
    from transfer.errors import UserError

    env, args = argv(line.text)
    assert set(env) <= {"TRANSFER_PLUGINS", "TRANSFER_DEBUG", "OMP_NUM_THREADS", "PYTHONPATH"}, f"{line.where}: {env}"
    overrides, multirun = transfer_overrides(expand_home(args[3:]))
    for variant in sweep_variants(overrides) if multirun else [overrides]:
        try:
            compose(variant)
        except UserError as e:
            pytest.fail(f"{line.where}: {line.text}\n  error: {e}")


def _check_pip(args: list[str]) -> None:
    assert args[:4] == ["python", "-m", "pip", "install"], args
    for spec in args[4:]:
        for extra in re.findall(r"\[([\w,]+)\]", spec):
            assert set(extra.split(",")) <= EXTRAS, spec


def _check_pytest(args: list[str]) -> None:
    it = iter(args[3:])
    for a in it:
        if a == "-m":
            assert set(re.findall(r"\w+", next(it))) - {"not", "and", "or"} <= MARKERS, args
        elif a == "-k":
            next(it)
        elif not a.startswith("-"):
            assert (ROOT / a.split("::")[0]).exists(), f"{a}: no such test file"


def _check_script(path: str, args: list[str]) -> None:
    script = ROOT / path
    assert script.is_file(), f"{path}: no such file"
    source = script.read_text(encoding="utf-8")
    for flag in (a for a in args if a.startswith("--")):
        assert f'"{flag}"' in source, f"{path} has no option {flag}"


@pytest.mark.parametrize("line", OTHER_LINES, ids=lambda s: s.where)
def test_every_other_shell_line_names_what_exists(line: Snippet):
    env, args = argv(line.text)
    assert set(env) <= {"OMP_NUM_THREADS"}, f"{line.where}: {env}"
    if args[:3] == ["python", "-m", "pip"]:
        _check_pip(args)
    elif args[:3] == ["python", "-m", "pytest"]:
        _check_pytest(args)
    elif args[0] == "python":
        _check_script(args[1], args[2:])
    elif args[0] == "bash":
        assert (ROOT / args[1]).is_file(), line.text
    elif args[0] == "ruff":
        assert args[1] in ("check", "format") and all((ROOT / p).exists() for p in args[2:] if not p.startswith("-"))
    else:
        assert args == ["lint-imports"], f"{line.where}: teach tests/test_readme.py what {args[0]!r} is"


# -- names and links ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_page_names_what_is_gone(page):
    text = page.read_text(encoding="utf-8")
    assert not [g for g in GONE if g in text]


def _repo_path(span: str) -> str | None:
    """A span that names a file of the repo (`transfer/app/schema.py`, `app/early.py`, `tests/test_x.py::test_y`)."""
    if " " in span or "=" in span or "/" not in span or not re.search(r"\.(py|yaml|toml|md)(::\w+)?$|^\.ci/", span):
        return None
    return span


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_file_a_page_names_exists(page):
    missing = []
    for span in filter(None, map(_repo_path, code_spans(page))):
        path, _, test = span.partition("::")
        found = [p for base in (ROOT, ROOT / "transfer") for p in base.glob(path)]
        if not found or (test and f"def {test}(" not in found[0].read_text(encoding="utf-8")):
            missing.append(span)
    assert not missing, f"{page.name} names files that do not exist: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_module_and_function_a_page_names_exists(page):
    missing = []
    for span in code_spans(page):
        name = span.split("(")[0]
        if not re.fullmatch(r"transfer(\.\w+)+", name) or name in NOT_MODULES:
            continue
        parts = name.split(".")
        for i in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:i]))
                break
            except ModuleNotFoundError:
                continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            missing.append(span)
    assert not missing, f"{page.name} names modules or functions that do not exist: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_and_anchor_resolves(page):
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", prose(page)):
        if re.match(r"https?://", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists() or (anchor and anchor not in anchors(dest)):
            broken.append(target)
    assert not broken, f"{page.name}: broken links {broken}"


# -- Python ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("block", PYTHON, ids=lambda b: b.where)
def test_every_python_block_compiles(block: Snippet):
    """A block with a syntax error fails here (compile raises SyntaxError); an empty block fails too."""
    try:
        code = compile(block.text, block.where, "exec")
    except SyntaxError as e:
        pytest.fail(f"{block.where}: {e.msg} at line {e.lineno}")
    assert block.text.strip() and code.co_filename == block.where


def test_every_py_block_is_a_snippet_file():
    """```py blocks quote docs/snippets/ verbatim; tests/test_export.py runs those files."""
    snippets = {p.read_text(encoding="utf-8") for p in (ROOT / "docs" / "snippets").glob("*.py")}
    quoted = [b for page in PAGES for b in blocks(page, "py")]
    assert quoted and all(b.text in snippets for b in quoted), [b.where for b in quoted if b.text not in snippets]


EXPECTED = {  # what a page's Python blocks print, as the comments beside them say
    "README.md": ["['misty', 'neither', 'tigger']", "512 ['layer1', 'layer2', 'layer3', 'layer4'] module"],
    "backbones.md": ["torch.Size([2, 8])"],
}


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p, "python")], ids=lambda p: p.name)
def test_every_python_block_runs(page, tmp_path, monkeypatch, capsys):
    """A page's Python blocks, in order and in one namespace, as a user pastes them in a folder holding `cats/`."""
    from tests.synthetic import write_image_folder

    write_image_folder(tmp_path / "cats", n=8)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "readme"}
    for block in blocks(page, "python"):
        first = block.text.splitlines()[0]
        if m := re.fullmatch(r"# ([\w/]+\.py)", first):  # "save this as NAME.py": a file, not run here
            (tmp_path / m.group(1)).write_text(block.text, encoding="utf-8")
            continue
        try:
            exec(compile(block.text, block.where, "exec"), namespace)
        except Exception as e:  # noqa: BLE001 -- name the failing block
            pytest.fail(f"{block.where} failed: {type(e).__name__}: {e}\n{block.text}")
    out = capsys.readouterr().out
    for expected in EXPECTED.get(page.name, []):
        assert expected in out, f"{page.name}: {expected!r} not printed"


@pytest.mark.slow
def test_the_readme_plugin_registers_from_the_command_line(tmp_path):
    """The README's `my_backbones.py`, saved as it says, then its first command line: tinynet is listed."""
    (plugin,) = [b for b in blocks(README, "python") if b.text.startswith("# my_backbones.py\n")]
    (tmp_path / "my_backbones.py").write_text(plugin.text, encoding="utf-8")
    env = {**os.environ, "TRANSFER_PLUGINS": "my_backbones", "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    proc = subprocess.run(
        [sys.executable, "-m", "transfer", "command=backbones", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "tinynet" in proc.stdout


def test_the_onnx_snippet_is_quoted_where_the_export_page_says():
    snippet = (ROOT / "docs" / "snippets" / "onnx_predict.py").read_text(encoding="utf-8")
    assert f"```py\n{snippet}```" in (ROOT / "docs" / "export.md").read_text(encoding="utf-8")


def test_every_docs_page_is_linked_from_the_readme():
    linked = set(re.findall(r"\]\((docs/[\w.-]+\.md)", README.read_text(encoding="utf-8")))
    assert {f"docs/{p.name}" for p in PAGES if p != README} <= linked
