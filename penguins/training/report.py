"""What a training run shows people: the comparison table, the decision, the confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import ConfusionMatrixDisplay

from penguins.features import SPECIES
from penguins.training.evaluation import Result
from penguins.training.promotion import Promotion

TABLE_COLUMNS = ("accuracy", "f1_macro", "precision_macro", "recall_macro", "cv_accuracy_mean")


def comparison_table(results: Sequence[Result], best: Result) -> str:
    """Format the candidates' scores as a fixed-width table, best marked with *."""
    header = f"  {'model':<20}" + "".join(f"{c:>17}" for c in TABLE_COLUMNS) + f"{'fit_s':>8}"
    lines = [header, "  " + "-" * (len(header) - 2)]
    for r in results:
        mark = "*" if r is best else " "
        cells = "".join(f"{r.metrics[c]:>17.4f}" for c in TABLE_COLUMNS)
        lines.append(f"{mark} {r.candidate.name:<20}{cells}{r.metrics['fit_time_seconds']:>8.3f}")
    return "\n".join(lines)


def promotion_summary(outcome: Promotion, model_name: str, alias: str) -> str:
    """Say which version was registered and whether the alias moved to it, and why."""
    verb = "moved to" if outcome.moved else "stays off"
    return (
        f"registered {model_name} version {outcome.version}; "
        f"alias {alias!r} {verb} it: {outcome.reason}"
    )


def confusion_png(model, x: pd.DataFrame, y: pd.Series, title: str, out: Path) -> Path:
    """Draw a model's confusion matrix on one set to a PNG file.

    A bare Figure renders itself on savefig, so no pyplot state and no global
    backend are involved: training runs the same headless or not.
    """
    fig = Figure(figsize=(5, 4.5))
    ax = fig.subplots()
    ConfusionMatrixDisplay.from_estimator(model, x, y, labels=list(SPECIES), ax=ax, colorbar=False)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    return out
