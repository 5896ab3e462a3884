"""Under DDP, rank 0 scans the folder once; the other ranks read its manifest and decode exactly those files.

Why files in the run dir, not a broadcast: Lightning starts the other ranks (as fresh processes) only inside
`trainer.fit`, long after the data is loaded, and torchrun starts them all at once with no process group yet; a
file written atomically (transfer.atomic) into the shared run dir works for both and needs no group. Rank 0 writes
scan_report.json (for people) and split_manifest.json (for ranks): the samples in order with their labels, folder
splits and digests, which fix every seeded split (splits.stratified_split is a pure function of them). A token
(inherited by Lightning's children through the environment, or the launcher's job id) keeps a rank from trusting
a manifest left by an earlier run in the same dir. The wait is bounded: a rank 0 that died is an error, not a hang.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from transfer.atomic import write_text_atomic
from transfer.backbones.base import Preprocessing
from transfer.data.images import open_image
from transfer.data.pixels import PixelStore, resize_center, scan_and_decode, store_size
from transfer.data.scan import Manifest, Refused, Sample
from transfer.distributed import dist_info
from transfer.errors import UserError

SPLIT_MANIFEST = "split_manifest.json"
TOKEN_ENV = "TRANSFER_RUN_TOKEN"
WAIT_ENV = "TRANSFER_SCAN_WAIT_S"
DEFAULT_WAIT_S = 1800.0


def run_token(create: bool) -> str | None:
    """This launch's id: ours (set by rank 0, inherited by the ranks Lightning starts), else the launcher's."""
    for var in (TOKEN_ENV, "TORCHELASTIC_RUN_ID", "SLURM_JOB_ID"):
        if os.environ.get(var) and os.environ[var] != "none":
            return f"{var}={os.environ[var]}"
    if create:
        os.environ[TOKEN_ENV] = uuid.uuid4().hex
        return f"{TOKEN_ENV}={os.environ[TOKEN_ENV]}"
    return None


def scan_once(
    root: str, pre: Preprocessing, strict: bool, out_dir: Path, ram_budget_mb: float | None = None
) -> tuple[Manifest, torch.Tensor, bool]:
    """(manifest, N x C x S x S uint8 pixels, scanned here): rank 0 scans and shares, other ranks read and decode."""
    rank, _ = dist_info()
    out_dir = Path(out_dir)
    if rank == 0:
        manifest, pixels = scan_and_decode(root, pre, strict=strict, ram_budget_mb=ram_budget_mb)
        write_text_atomic(out_dir / "scan_report.json", manifest.to_json() + "\n")
        shared = {"format": "transfer.split_manifest/1", "token": run_token(create=True), "manifest": asdict(manifest)}
        write_text_atomic(out_dir / SPLIT_MANIFEST, json.dumps(shared, ensure_ascii=False) + "\n")
        return manifest, pixels, True
    manifest = wait_for_manifest(out_dir, root, rank)
    return manifest, decode_listed(manifest, pre, ram_budget_mb), False


def wait_for_manifest(out_dir: Path, root: str, rank: int, timeout_s: float | None = None) -> Manifest:
    """Rank 0's manifest of this launch, once it is there; UserError after `timeout_s` (TRANSFER_SCAN_WAIT_S)."""
    timeout_s = float(os.environ.get(WAIT_ENV, DEFAULT_WAIT_S)) if timeout_s is None else timeout_s
    path, token = Path(out_dir) / SPLIT_MANIFEST, run_token(create=False)
    deadline = time.monotonic() + timeout_s
    while True:
        if path.is_file():
            data = json.loads(path.read_text(encoding="utf-8"))  # written whole (atomic rename)
            if token is None or data.get("token") == token:
                m = data["manifest"]
                return Manifest(
                    **{
                        **m,
                        "samples": [Sample(**s) for s in m["samples"]],
                        "refused": [Refused(**r) for r in m["refused"]],
                    }
                )
        if time.monotonic() >= deadline:
            raise UserError(
                f"{path}: rank {rank} waited {timeout_s:.0f} s for rank 0's scan of data.root={root}; did rank 0 "
                f"fail? Every rank needs the same hydra.run.dir; a slower scan: raise {WAIT_ENV}."
            )
        time.sleep(0.5)


def decode_listed(manifest: Manifest, pre: Preprocessing, ram_budget_mb: float | None = None) -> torch.Tensor:
    """The manifest's files decoded to store size exactly as rank 0's scan did (same decoder, same resize)."""
    side = store_size(pre)
    store = PixelStore(max(len(manifest.samples), 1), pre.channels, side, ram_budget_mb)
    for i, s in enumerate(manifest.samples):
        try:
            img, _ = open_image(Path(s.path).read_bytes(), pre.channels, (side, side))
        except Exception as e:  # noqa: BLE001  -- rank 0 decoded it: the file changed under the run
            raise UserError(f"{s.path}: rank 0 read it but this rank cannot ({e}); was data.root changed?") from None
        arr = np.asarray(resize_center(img, side, pre.interpolation), dtype=np.uint8)
        store.put(i, arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))
    return store.tensor(len(manifest.samples))
