"""The converged linear probe vs scikit-learn's LogisticRegressionCV on the same split, folds and lambda grid.

Prints ONE JSON line: held-out accuracy of both, the difference in points, both wall times and the ratio.
Both standardise the features, see the same cross-validation folds, and search the same grid (C = 1 / (lambda * n),
n = the rows one CV fit sees); scikit-learn runs with its defaults otherwise (lbfgs, tol 1e-4).

    python bench/probe_vs_sklearn.py                          # scikit-learn's digits, raw 64 pixels
    python bench/probe_vs_sklearn.py --width 2048             # digits through a random ReLU projection to 2048-D
    python bench/probe_vs_sklearn.py --features feats.pt      # {"features": N x D or N x K x D, "labels": N}
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegressionCV
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from transfer.training.probe import DEFAULT_L2_GRID, fit_linear_probe, probe_predict_proba, split_rows


def load(features: str | None, width: int, images: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """N x K x D features, N labels, and a name for the data."""
    if features:
        blob = torch.load(features, map_location="cpu", weights_only=True)
        x, y = torch.as_tensor(blob["features"]).float(), torch.as_tensor(blob["labels"]).long()
        name = features
    else:
        xd, yd = load_digits(return_X_y=True)
        x, y, name = torch.tensor(xd, dtype=torch.float32), torch.tensor(yd), "digits"
        if width:
            proj = torch.randn(x.shape[1], width, generator=torch.Generator().manual_seed(seed)) / x.shape[1] ** 0.5
            x, name = torch.relu(x @ proj), f"digits, random ReLU projection to {width}"
    if images:
        x, y = x[:images], y[:images]
    return (x[:, None] if x.dim() == 2 else x), y, name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--features", help="a .pt file holding {'features': N x [K x] D, 'labels': N}")
    ap.add_argument("--width", type=int, default=0, help="digits only: random ReLU projection to this many features")
    ap.add_argument("--images", type=int, default=None, help="use the first N images only")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    x, y, name = load(args.features, args.width, args.images, args.seed)
    n, k, d = x.shape
    num_classes = int(y.max()) + 1
    idx_tr, idx_te = train_test_split(np.arange(n), test_size=0.25, stratify=y.numpy(), random_state=args.seed)
    x_tr, y_tr, x_te, y_te = x[idx_tr], y[idx_tr], x[idx_te], y[idx_te].numpy()
    grid = list(DEFAULT_L2_GRID)

    start = time.perf_counter()
    probe = fit_linear_probe(x_tr, y_tr, num_classes, folds=args.folds, seed=args.seed, device=args.device)
    probe_seconds = time.perf_counter() - start
    probe_acc = float((probe_predict_proba(probe.linear, x_te).argmax(1).numpy() == y_te).mean())

    rows_tr = x_tr.reshape(-1, d).double().numpy()
    y_rows = y_tr.repeat_interleave(k).numpy()
    folds = probe.folds or 2
    splits = split_rows(y_tr.numpy(), np.arange(len(y_tr)), k, folds, args.seed)  # the probe's folds
    n_fit = len(rows_tr) * (folds - 1) / folds
    start = time.perf_counter()
    scaler = StandardScaler().fit(rows_tr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # version-to-version FutureWarnings about defaults
        sk = LogisticRegressionCV(
            Cs=[1 / (lam * n_fit) for lam in grid], cv=splits, max_iter=5000, scoring="accuracy"
        ).fit(scaler.transform(rows_tr), y_rows)
    sk_seconds = time.perf_counter() - start
    sk_probs = sk.predict_proba(scaler.transform(x_te.reshape(-1, d).double().numpy())).reshape(len(y_te), k, -1)
    sk_acc = float((sk_probs.mean(1).argmax(1) == y_te).mean())
    sk_c = float(np.ravel(sk.C_)[0])

    print(
        json.dumps(
            {
                "data": name,
                "train_images": len(idx_tr),
                "test_images": len(idx_te),
                "views": k,
                "features": d,
                "folds": probe.folds,
                "probe_accuracy": round(probe_acc, 4),
                "sklearn_accuracy": round(sk_acc, 4),
                "difference_points": round(100 * (probe_acc - sk_acc), 2),
                "probe_seconds": round(probe_seconds, 3),
                "sklearn_seconds": round(sk_seconds, 3),
                "sklearn_over_probe_time": round(sk_seconds / probe_seconds, 2),
                "probe_l2": probe.l2,
                "sklearn_l2": 1 / (sk_c * n_fit),
                "probe_grad_norm": probe.grad_norm,
                "probe_notes": probe.notes,
                "device": args.device,
                "torch_threads": torch.get_num_threads(),
            }
        )
    )


if __name__ == "__main__":
    main()
