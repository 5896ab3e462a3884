"""Read the snippets out of README.md and docs/*.md, for tests/test_readme.py.

Conventions the pages follow (and the tests hold them to):
- ```python blocks run, in order, one namespace per page, in a folder holding `cats/<class>/` images; a block whose
  first line is `# NAME.py` is that file ("save this as NAME.py") and is written, not run.
- ```py blocks are files of docs/snippets/, quoted verbatim (tests/test_export.py runs them).
- ```bash blocks are command lines; `<...>` is a placeholder the reader fills in: inside an argument it becomes a dummy
  value, standing alone (`<overrides>`) it is dropped. `~/cats` and `outputs/DATE/TIME/` are example paths.
- a fence without a language is printed output, not checked.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
PLACEHOLDER = re.compile(r"<[^<>\n]+>")
SENTINEL = "PLACEHOLDER"
DUMMY = "placeholder"


@dataclass(frozen=True)
class Snippet:
    page: Path
    line: int  # 1-based line of the snippet's first line in the page
    text: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path, lang: str) -> list[Snippet]:
    """The fenced blocks of `lang` in `page`, in order."""
    text = page.read_text(encoding="utf-8")
    return [
        Snippet(page, text.count("\n", 0, m.start(2)) + 1, m.group(2))
        for m in FENCE.finditer(text)
        if m.group(1) == lang
    ]


def fence_languages(page: Path) -> set[str]:
    return {m.group(1) for m in FENCE.finditer(page.read_text(encoding="utf-8"))}


def prose(page: Path) -> str:
    """The page without its fenced blocks."""
    return FENCE.sub("", page.read_text(encoding="utf-8"))


def shell_lines(page: Path) -> list[Snippet]:
    """Every command line of the page's ```bash blocks (continuations joined, comment-only lines dropped), then every
    inline `python ...` span of its prose."""
    out = []
    for block in blocks(page, "bash"):
        pending, start = "", 0
        for i, raw in enumerate(block.text.splitlines()):
            if not pending:
                start = i
            if raw.rstrip().endswith("\\"):
                pending += raw.rstrip()[:-1] + " "
                continue
            line, pending = (pending + raw).strip(), ""
            if line and not line.startswith("#"):
                out.append(Snippet(page, block.line + start, line))
    text = page.read_text(encoding="utf-8")
    for m in re.finditer(r"`(python [^`]+)`", prose(page)):
        out.append(Snippet(page, _line_of(text, m.group(1)), m.group(1)))
    return out


def _line_of(text: str, fragment: str) -> int:
    return text.count("\n", 0, max(text.find(fragment), 0)) + 1


def argv(line: str) -> tuple[dict[str, str], list[str]]:
    """(environment assignments, argv) of one command line, comments dropped and placeholders filled in."""
    tokens = shlex.split(PLACEHOLDER.sub(SENTINEL, line), comments=True)
    tokens = [t.replace(SENTINEL, DUMMY) for t in tokens if t != SENTINEL]
    env = {}
    while tokens and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", tokens[0]):
        key, _, value = tokens.pop(0).partition("=")
        env[key] = value
    return env, tokens


HYDRA_FLAGS_WITH_VALUE = ("--cfg", "-c", "--package", "-p", "--config-name", "-cn", "--config-dir", "-cd")
HYDRA_FLAGS = ("--help", "-h", "--hydra-help", "--info", "-i", "--resolve", "-m", "--multirun")


def transfer_overrides(args: list[str]) -> tuple[list[str], bool]:
    """The config overrides of `python -m transfer ARGS` (Hydra's flags and `hydra.*` keys dropped), and whether it
    is a `-m` sweep. An unknown flag is an error: the page would teach it."""
    overrides, multirun, skip = [], False, False
    for a in args:
        if skip:
            skip = False
        elif a in HYDRA_FLAGS_WITH_VALUE:
            skip = True
        elif a in HYDRA_FLAGS:
            multirun = multirun or a in ("-m", "--multirun")
        elif a.startswith("-"):
            raise ValueError(f"unknown flag {a!r} for python -m transfer")
        elif not a.startswith(("hydra.", "hydra/")):
            overrides.append(a)
    return overrides, multirun


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {github_anchor(m.group(1)) for m in re.finditer(r"^#+ (.+)$", prose(page), flags=re.M)}


def code_spans(page: Path) -> list[str]:
    """Inline `code` of the page's prose."""
    return re.findall(r"`([^`\n]+)`", prose(page))
