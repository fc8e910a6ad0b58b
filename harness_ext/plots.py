"""Figures: sweep curves and layer-knockout heatmaps (matplotlib, written as PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from harness_ext.results.record import count_span  # noqa: E402

if TYPE_CHECKING:
    from harness_ext.layers import KnockoutResult


def sweep_figure(rows: Sequence[tuple[dict[str, Any], Sequence[Any]]], title: str = "sweep"):
    """The sweep's figure: for each swept numeric key, a panel of every task's score and one of every split's
    (perception, reasoning), each point with its interval, n in the legend, the y axis from 0.

    `rows`: per variant its overrides and its scores (harness_ext.results.summary.Score).
    """
    keys = [k for k in rows[0][0] if len({str(r[0][k]) for r in rows}) > 1] or list(rows[0][0])
    numeric = [k for k in keys if all(isinstance(r[0][k], (int, float)) for r in rows)] or keys[:1]
    kinds = [kind for kind in ("task", "split") if any(s.kind == kind for _, scores in rows for s in scores)]
    figure, axes = plt.subplots(len(kinds), len(numeric), figsize=(6.4 * len(numeric), 4.2 * len(kinds)),
                                squeeze=False, layout="constrained")
    top = 0.0
    for column, key in enumerate(numeric):
        others = [k for k in keys if k != key]
        groups: dict[tuple, list[tuple[Any, Sequence[Any]]]] = {}
        for overrides, scores in rows:
            groups.setdefault(tuple(overrides[k] for k in others), []).append((overrides[key], scores))
        for row, kind in enumerate(kinds):
            axis = axes[row][column]
            for group, points in groups.items():
                points.sort(key=lambda p: p[0])
                suffix = ", ".join(f"{k}={v}" for k, v in zip(others, group))
                names = list(dict.fromkeys(s.name for _, scores in points for s in scores if s.kind == kind))
                for name in names:
                    found = [(x, next((s for s in scores if s.name == name and s.kind == kind), None))
                             for x, scores in points]
                    found = [(x, s) for x, s in found if s is not None and s.score is not None]
                    xs = [x for x, _ in found]
                    ys = np.array([100 * s.score for _, s in found])
                    lows = np.array([100 * (s.score - s.low) if s.low is not None else 0.0 for _, s in found])
                    highs = np.array([100 * (s.high - s.score) if s.high is not None else 0.0 for _, s in found])
                    top = max([top, *(ys + highs)])
                    counts = sorted({s.n for _, s in found if s.n is not None})
                    n = "?" if not counts else count_span(counts)
                    axis.errorbar(xs, ys, yerr=[lows, highs], marker="o", capsize=3,
                                  label=f"{name.removeprefix('mvlm_')} (n={n})" + (f", {suffix}" if suffix else ""))
            axis.set_xlabel(key)
            axis.set_ylabel("accuracy (%)")
            axis.grid(alpha=0.3)
            axis.set_title(f"per {kind}: score vs {key}")
            axis.legend(fontsize=8)
    for axis in axes.flat:
        axis.set_ylim(0, min(100.0, max(10.0, 1.15 * top)))
    figure.suptitle(f"{title}\naccuracy with 95% bootstrap intervals; n = documents per task or split", fontsize=10)
    return figure


def plot_sweep(rows: Sequence[tuple[dict[str, Any], Sequence[Any]]], path: Path, title: str = "sweep") -> Path:
    """Write sweep_figure() as a PNG."""
    figure = sweep_figure(rows, title)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def plot_knockouts(result: KnockoutResult, path: Path, title: str) -> Path:
    """Heatmaps of accuracy drop (points) for layer x module, each cell with its 95% paired bootstrap interval:
    rows are models, columns are splits, each panel titled with its n."""
    drops, modules = result.drops, result.modules
    models, splits = list(drops), list(next(iter(drops.values())))
    layers = next(iter(next(iter(drops.values())).values())).shape[0]
    figure, axes = plt.subplots(len(models), len(splits), figsize=(3.4 * len(splits) + 1.2,
                                (0.55 * layers + 1.3) * len(models) + 0.8), squeeze=False, layout="constrained")
    limit = max(1e-9, max(float(np.nanmax(np.abs(d))) for m in drops.values() for d in m.values()))
    for row, model in enumerate(models):
        for column, split in enumerate(splits):
            axis = axes[row][column]
            data = drops[model][split]
            low, high = result.lows[model][split], result.highs[model][split]
            image = axis.imshow(data, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
            axis.set_xticks(range(len(modules)), modules)
            axis.set_yticks(range(data.shape[0]), [str(i) for i in range(data.shape[0])])
            axis.set_ylabel("layer")
            axis.set_title(f"{model}: {split} (n={result.n[model][split]})", fontsize=9)
            for (i, j), value in np.ndenumerate(data):
                axis.text(j, i, f"{value:+.1f}\n[{low[i, j]:+.0f}, {high[i, j]:+.0f}]", ha="center", va="center",
                          fontsize=6.5, color="white" if abs(value) > 0.6 * limit else "black")
    figure.colorbar(image, ax=axes, shrink=0.8, label="accuracy drop (points)")
    figure.suptitle(f"{title}\ndrop in points [95% paired bootstrap interval]; n = documents per split", fontsize=10)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
