"""Plots of a run, as PNG files: the confusion matrix, training curves, accuracy per regime."""

from __future__ import annotations

from pathlib import Path

from transfer.atomic import save_figure_atomic


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display on servers), imported on first plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(confusion: list[list[int]], classes: list[str], path: Path, title: str = "") -> Path:
    plt = _pyplot()

    n = len(classes)
    fig, ax = plt.subplots(figsize=(1.2 + 0.6 * n, 1.0 + 0.6 * n))
    ax.imshow(confusion, cmap="Blues")
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    top = max((max(r) for r in confusion), default=0)
    for i, row in enumerate(confusion):
        for j, v in enumerate(row):
            ax.text(j, i, str(v), ha="center", va="center", color="white" if v > top / 2 else "black")
    ax.set_title(title)
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=120)
    plt.close(fig)
    return path


def plot_curves(metrics_csv: Path, path: Path) -> Path | None:
    """Training curves from Lightning's CSVLogger file (train/loss, val/loss, val/acc per epoch)."""
    import csv

    plt = _pyplot()

    if not metrics_csv.is_file():
        return None
    rows = list(csv.DictReader(metrics_csv.open()))
    series: dict[str, dict[int, float]] = {}
    for r in rows:
        for k in ("train/loss", "val/loss", "val/acc", "train/acc"):
            if r.get(k):
                series.setdefault(k, {})[int(r["epoch"])] = float(r[k])
    if not series:
        return None
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.5))
    for k, v in series.items():
        (a1 if k.endswith("loss") else a2).plot(list(v), list(v.values()), label=k)
    a1.set_xlabel("epoch"), a1.set_title("loss"), a1.legend()
    a2.set_xlabel("epoch"), a2.set_title("accuracy"), a2.legend()
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=110)
    plt.close(fig)
    return path


def plot_regimes(table: dict[str, dict], path: Path, metric_name: str = "accuracy") -> Path:
    """Bar chart of mean accuracy per regime with the std over seeds as error bars."""
    plt = _pyplot()

    names = list(table)
    means = [table[n]["accuracy_mean"] for n in names]
    stds = [table[n]["accuracy_std"] for n in names]
    fig, ax = plt.subplots(figsize=(1.5 + 1.1 * len(names), 3.5))
    bars = ax.bar(names, means, yerr=stds, capsize=4, color="#4c72b0")
    for bar, m in zip(bars, means, strict=True):
        ax.text(bar.get_x() + bar.get_width() / 2, m / 2, f"{m:.3f}", ha="center", color="white")
    ax.set_ylim(0, 1)
    ax.set_ylabel(metric_name)
    ax.set_title(f"{metric_name} per regime (mean ± std over {len(table[names[0]]['seeds'])} seeds)")
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=120)
    plt.close(fig)
    return path
