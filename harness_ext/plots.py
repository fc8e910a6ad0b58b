"""Figures: sweep curves and layer-knockout heatmaps (matplotlib, written as PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_sweep(rows: Sequence[tuple[dict[str, Any], dict[str, float]]], tasks: list[str], path: Path) -> Path:
    """One panel per swept numeric key: each task's score against that key, one line per other setting."""
    keys = [k for k in rows[0][0] if len({str(r[0][k]) for r in rows}) > 1] or list(rows[0][0])
    numeric = [k for k in keys if all(isinstance(r[0][k], (int, float)) for r in rows)] or keys[:1]
    figure, axes = plt.subplots(1, len(numeric), figsize=(6 * len(numeric), 4.2), squeeze=False)
    for axis, key in zip(axes[0], numeric):
        others = [k for k in keys if k != key]
        groups: dict[tuple, list[tuple[Any, dict[str, float]]]] = {}
        for overrides, scores in rows:
            groups.setdefault(tuple(overrides[k] for k in others), []).append((overrides[key], scores))
        for group, points in groups.items():
            points.sort(key=lambda p: p[0])
            suffix = ", ".join(f"{k}={v}" for k, v in zip(others, group))
            for task in tasks:
                values = [100 * p[1].get(task, np.nan) for p in points]
                axis.plot([p[0] for p in points], values, marker="o",
                          label=f"{task.removeprefix('mvlm_')}" + (f" ({suffix})" if suffix else ""))
        axis.set_xlabel(key)
        axis.set_ylabel("accuracy (%)")
        axis.grid(alpha=0.3)
        axis.set_title(f"score vs {key}")
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def plot_knockouts(drops: dict[str, dict[str, np.ndarray]], modules: list[str], path: Path,
                   title: str) -> Path:
    """Heatmaps of accuracy drop (points) for layer x module: rows are models, columns are splits."""
    models, splits = list(drops), list(next(iter(drops.values())))
    figure, axes = plt.subplots(len(models), len(splits), figsize=(3.2 * len(splits) + 1, 0.35 *
                                next(iter(next(iter(drops.values())).values())).shape[0] * len(models) + 2),
                                squeeze=False)
    limit = max(1e-9, max(float(np.nanmax(np.abs(d))) for m in drops.values() for d in m.values()))
    for row, model in enumerate(models):
        for column, split in enumerate(splits):
            axis = axes[row][column]
            data = drops[model][split]
            image = axis.imshow(data, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
            axis.set_xticks(range(len(modules)), modules)
            axis.set_yticks(range(data.shape[0]), [str(i) for i in range(data.shape[0])])
            axis.set_ylabel("layer")
            axis.set_title(f"{model}: {split}")
            for (i, j), value in np.ndenumerate(data):
                axis.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=7)
    figure.colorbar(image, ax=axes, shrink=0.8, label="accuracy drop (points)")
    figure.suptitle(title)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)
    return path
