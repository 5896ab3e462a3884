"""The evidence tables (regimes x seeds, regime=auto's measurements) as text cells, formatted once: the terminal
summary and the report page print the same strings ('0.715 ± 0.018', '58,709', '1.2'), never raw floats."""

from __future__ import annotations

REGIME_COLUMNS = ("regime", "accuracy ± std", "macro F1", "seeds", "trainable", "s/run")
AUTO_COLUMNS = ("evidence", "regime", "accuracy (95% CI)", "CV accuracy", "s", "note")


def regime_rows(table: dict[str, dict]) -> list[list[str]]:
    """One row per regime of a study's table (StudyResult.table): mean ± std over seeds and the rest, as text."""
    return [
        [
            regime,
            f"{row['accuracy_mean']:.3f} ± {row['accuracy_std']:.3f}",
            f"{row['f1_macro_mean']:.3f}",
            str(len(row["seeds"])),
            f"{row['trainable_params']:,}",
            f"{row['seconds_per_run']:.1f}",
        ]
        for regime, row in table.items()
    ]


def auto_rows(auto: dict, note=lambda s: s) -> list[list[str]]:
    """One row per regime=auto measurement (AutoResult.to_dict()['evidence']); `note` shortens the note (the
    terminal's one-line table) or keeps it whole (the page)."""
    rows = []
    for r in auto["evidence"]:
        acc = ""
        if "accuracy" in r:
            ci = r.get("accuracy_ci95")
            acc = f"{r['accuracy']:.3f}" + (f" ({ci[0]:.3f}-{ci[1]:.3f})" if ci else "")
        cv = f"{r['cv_accuracy']:.3f} ({r['folds']}-fold)" if r.get("cv_accuracy") is not None else ""
        rows.append([r["evidence"], r["regime"] or "", acc, cv, f"{r['seconds']:.1f}", note(r.get("note", ""))])
    return rows


def auto_scope(auto: dict) -> str:
    """'605 images, 5-fold cross-validation, 2 repeats': what regime=auto's evidence covers."""
    repeats = int(auto.get("repeats") or 1)
    again = f", {repeats} repeats" if repeats > 1 else ""
    return f"{auto.get('images', 0)} images, {auto.get('folds', 0)}-fold cross-validation{again}"


def budget_text(auto: dict) -> str:
    """'41 s of a 60 s budget', or the overrun stated: '72 s, over its 60 s budget by 12 s'."""
    spent, budget = float(auto["seconds"]), float(auto["budget_s"])
    if spent > budget * 1.1:
        return f"{spent:.0f} s, over its {budget:.0f} s budget by {spent - budget:.0f} s"
    return f"{spent:.0f} s of a {budget:.0f} s budget"
