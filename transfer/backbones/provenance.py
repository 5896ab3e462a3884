"""Where a body's weights came from, as plain data: the page, the model card and the terminal say it from this.

A reader of "accuracy 66%" must know whether that is what pretrained ResNet-50 weights give or what a random body
gives. `weights_provenance` describes one resolution of (name, pretrained, weights) as a small JSON-able dict; the
`kind` is one of:

- ``hub``: pretrained weights from timm's (Hugging Face) or torchvision's hub: ``name``, ``tag``, ``source``
- ``file``: a local weights file: ``path``, ``sha256`` (of the file's bytes)
- ``model_dir``: an earlier run's model dir (chain transfer): ``path``, ``sha256`` (of its model.safetensors)
- ``source_model``: a source model trained in this run, or reused from the cache (``reused``: where), by the digits
  recipe: ``path``, ``sha256``, ``classes``,
  ``accuracy`` (set by the study's start-up, which trained it)
- ``module``: a module object handed to `transfer.fit`, used with the weights it holds: ``name``
- ``builder``: a registered builder asked for its own pretrained weights (a plugin's): ``name``
- ``random``: random initialisation: ``name``, ``reason``

`provenance_line` turns one into the sentence every output prints.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

RANDOM = "random"
_DIGESTS: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256: each file is hashed once


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, remembered per (path, size, mtime) so that building many bodies hashes it once."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def _model_dir_facts(path: Path) -> dict:
    """An earlier run's model dir: its weights' digest and, when its card says, the classes it was trained on."""
    weights = path / "model.safetensors"
    facts: dict = {
        "kind": "model_dir",
        "path": str(path),
        "sha256": file_sha256(weights) if weights.is_file() else None,
    }
    try:
        card = json.loads((path / "card.json").read_text(encoding="utf-8"))
        facts["classes"] = list(card.get("classes") or [])
    except (OSError, ValueError):
        pass
    return facts


def weights_provenance(
    name: str, pretrained: bool, weights: str | None, tag: str | None, source: str, default_tags: tuple[str, ...] = ()
) -> dict:
    """The provenance of a body built as `create_backbone` builds it: `weights` (a resolved local path) wins over
    `pretrained`; `tag` is the hub tag asked for (None: the architecture's default, the first of `default_tags`);
    `source` is the registry's (timm, torchvision, transfer, user, library)."""
    arch = name.partition(".")[0]
    if weights:
        path = Path(str(weights)).expanduser().absolute()
        if path.is_dir():
            return _model_dir_facts(path)
        return {"kind": "file", "path": str(path), "sha256": file_sha256(path)}
    if source == "library":
        return {"kind": "module", "name": arch}
    if not pretrained:
        return {"kind": RANDOM, "name": arch, "reason": "backbone.pretrained=false and no backbone.weights"}
    if source in ("timm", "torchvision"):
        return {
            "kind": "hub",
            "name": arch,
            "tag": tag or (default_tags[0] if default_tags else None),
            "source": source,
        }
    return {"kind": "builder", "name": arch}


def is_random(provenance: dict | None) -> bool:
    return bool(provenance) and provenance.get("kind") == RANDOM


def provenance_line(p: dict | None) -> str:
    """One sentence: where the weights came from, with what identifies them (tag, path and sha256)."""
    if not p:
        return "not recorded (a model dir written before transfer recorded it)"
    kind = p.get("kind")
    if kind == "hub":
        hub = "torchvision, download.pytorch.org" if p.get("source") == "torchvision" else "timm, Hugging Face hub"
        full = f"{p['name']}.{p['tag']}" if p.get("tag") else p["name"]
        return f"pretrained {full} ({hub})"
    if kind == "file":
        return f"weights file {p['path']} (sha256 {p['sha256']})"
    if kind == "model_dir":
        trained = f", trained on {len(p['classes'])} classes" if p.get("classes") else ""
        return f"an earlier run's model dir {p['path']} (model.safetensors sha256 {p.get('sha256')}{trained})"
    if kind == "source_model":
        acc = f", held-out accuracy {p['accuracy']:.3f}" if isinstance(p.get("accuracy"), int | float) else ""
        classes = ", ".join(str(c) for c in p.get("classes") or [])
        task = f"{p.get('data', 'the source task')} [{classes}]"
        when = (
            f"trained on {task} by an earlier run with the same settings (reused from the cache {p['reused']})"
            if p.get("reused")
            else f"trained in this run on {task}"
        )
        return f"a source model {when}{acc}: {p['path']} (model.safetensors sha256 {p.get('sha256')})"
    if kind == "module":
        return f"the {p['name']} module object passed to transfer.fit, with the weights it held"
    if kind == "builder":
        return f"the weights backbone {p['name']}'s registered builder loads itself (backbone.pretrained=true)"
    if kind == RANDOM:
        return f"random initialisation of {p.get('name', 'the body')} ({p.get('reason', 'no pretrained weights')})"
    return str(p)
