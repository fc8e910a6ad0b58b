"""The perception-vs-reasoning scatter of a leaderboard, with the Pareto front marked (PNG, Agg backend).

A variant whose averages rest on part of their tasks' documents (--limit) is drawn hollow, each point
carries its averages' 95% bootstrap intervals as error bars, and the caption states how many documents
the scores rest on. Axes start at 0%.
"""

from __future__ import annotations

import io
import textwrap

from harness_ext.results.errors import ResultsError
from harness_ext.results.leaderboard import PARTIAL, Entry, Leaderboard, documents, short
from harness_ext.results.record import SPLITS

COLOURS = {"variant": "#4c72b0", "front": "#dd8452", "baseline": "#222222"}
MAX_LABELS = 25  # more points than this: only the front and the baseline are named
OFFSETS = ((8, 0, "left"), (-8, 0, "right"), (0, 10, "center"), (0, -10, "center"), (7, 9, "left"),
           (7, -9, "left"), (-7, 9, "right"), (-7, -9, "right"))  # label position relative to its point, in points


def scatter_png(board: Leaderboard) -> bytes:
    """The scatter as PNG bytes: one point per variant with both averages."""
    import matplotlib.pyplot as plt

    figure = scatter_figure(board)
    sink = io.BytesIO()
    figure.savefig(sink, format="png")
    plt.close(figure)
    return sink.getvalue()


def scatter_figure(board: Leaderboard):
    """The scatter as a matplotlib figure (see scatter_png)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [e for e in board.entries if None not in (e.averages["perception"], e.averages["reasoning"])]
    if not points:
        raise ResultsError("no variant has both a perception and a reasoning average; nothing to plot (check "
                           "--tasks: each split needs a task every variant was evaluated on)")
    figure, axes = plt.subplots(figsize=(9, 5.6), dpi=130, layout="constrained")
    front = sorted((e for e in points if e.pareto), key=lambda e: _xy(e)[0])
    if len(front) > 1:
        xs, ys = zip(*(_xy(e) for e in front))
        axes.plot(xs, ys, color=COLOURS["front"], linestyle="--", linewidth=1.2, zorder=1,
                  label="Pareto front")
    for kind, chosen, marker, size in (("variant", [e for e in points if not e.pareto and not e.is_baseline], "o", 45),
                                       ("front", [e for e in points if e.pareto and not e.is_baseline], "o", 70),
                                       ("baseline", [e for e in points if e.is_baseline], "D", 60)):
        label = {"variant": "merged variant", "front": "on the front", "baseline": "unmerged VLM (baseline)"}[kind]
        for partial in (False, True):
            group = [e for e in chosen if _partial(e) == partial]
            if not group:
                continue
            xs, ys = zip(*(_xy(e) for e in group))
            axes.scatter(xs, ys, s=size, marker=marker, zorder=3, linewidth=1.2 if partial else 0.8,
                         color="white" if partial else COLOURS[kind],
                         edgecolor=COLOURS[kind] if partial else "white",
                         label=f"{label}, part of the documents {PARTIAL}" if partial else label)
    for entry in points:
        x, y = _xy(entry)
        (x_low, x_high), (y_low, y_high) = _interval(entry, "perception"), _interval(entry, "reasoning")
        axes.errorbar([x], [y], xerr=[[x - x_low], [x_high - x]], yerr=[[y - y_low], [y_high - y]], fmt="none",
                      ecolor="#9aa4ae", elinewidth=0.9, capsize=2.5, zorder=2)
    _limits(axes, points)
    axes.set_xlabel("perception average (%)")
    axes.set_ylabel("reasoning average (%)")
    figure.suptitle("Perception vs reasoning of merged variants")
    axes.grid(True, color="#e5e5e5", linewidth=0.8)
    axes.set_axisbelow(True)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    figure.legend(loc="outside right upper", frameon=False, fontsize=8)
    over = "; ".join(f"{split} average over {', '.join(map(short, tasks))}" for split, tasks in board.averaged.items())
    counts = sorted({documents(e, board.tasks) for e in points})
    note = (f"{over}; documents per task (n): {', '.join(counts)}; error bars: 95% bootstrap intervals; "
            f"protocol {board.protocol}")
    figure.supxlabel(textwrap.fill(note, 120), fontsize=7, color="#59636e")
    _label_points(figure, axes, points, front)
    return figure


def _partial(entry: Entry) -> bool:
    return any(entry.partial(split) for split in SPLITS)


def _xy(entry: Entry) -> tuple[float, float]:
    return 100 * entry.averages["perception"], 100 * entry.averages["reasoning"]


def _label_points(figure, axes, points: list[Entry], front: list[Entry]) -> None:
    """Names beside the points, each where it overlaps no marker, the front's line or a label placed before it;
    points at one place share a label. With many points only the front and the baseline are named."""
    import numpy as np
    from matplotlib.transforms import Bbox

    named = points if len(points) <= MAX_LABELS else [e for e in points if e.pareto or e.is_baseline]
    at: dict[tuple[float, float], list[str]] = {}
    for entry in sorted(named, key=lambda e: (not e.pareto, not e.is_baseline)):
        x, y = _xy(entry)
        at.setdefault((round(x, 1), round(y, 1)), []).append(entry.name)
    figure.draw_without_rendering()  # settle the layout first; labels stay out of it
    renderer = figure.canvas.get_renderer()
    frame = axes.get_window_extent(renderer)
    radius = 4 * figure.dpi / 72  # a marker, in pixels
    line = [np.linspace(a, b, 12) for a, b in zip([_xy(e) for e in front], [_xy(e) for e in front][1:])]
    obstacles = [(p, radius) for p in axes.transData.transform([_xy(e) for e in points])]
    obstacles += [(p, radius / 3) for p in axes.transData.transform(np.concatenate(line))] if line else []
    taken = [Bbox.from_extents(px - r, py - r, px + r, py + r) for (px, py), r in obstacles]
    for (x, y), names in at.items():
        text = ", ".join(names) if len(names) <= 3 else f"{', '.join(names[:3])} +{len(names) - 3}"
        for offset in OFFSETS:
            label = _annotate(axes, text, (x, y), offset)
            box = label.get_window_extent(renderer)
            if not any(box.overlaps(other) for other in taken) and _inside(box, frame):
                break
            label.remove()
        else:  # no free place: the first one
            box = _annotate(axes, text, (x, y), OFFSETS[0]).get_window_extent(renderer)
        taken.append(box)


def _annotate(axes, text: str, xy: tuple[float, float], offset: tuple[float, float, str]):
    dx, dy, align = offset
    label = axes.annotate(text, xy, xytext=(dx, dy), textcoords="offset points", fontsize=8, color="#333333",
                          ha=align, va="center", zorder=4)
    label.set_in_layout(False)
    return label


def _inside(box, frame) -> bool:
    return box.x0 >= frame.x0 and box.x1 <= frame.x1 and box.y0 >= frame.y0 and box.y1 <= frame.y1


def _interval(entry: Entry, split: str) -> tuple[float, float]:
    """A split average's interval in %, the point itself when there is none."""
    low, high = entry.intervals.get(split, (entry.averages[split], entry.averages[split]))
    return 100 * low, 100 * high


def _limits(axes, points: list[Entry]) -> None:
    """Padded limits around the points and their error bars, at least 10 points wide so single or tied points
    do not sit on an edge; never below 0% and a little room beyond 100 so points there stay whole."""
    for split, setter in (("perception", axes.set_xlim), ("reasoning", axes.set_ylim)):
        ends = sorted(end for e in points for end in _interval(e, split))
        low, high = ends[0], ends[-1]
        pad = max((high - low) * 0.15, (10 - (high - low)) / 2, 1.0)
        setter(max(low - pad, 0.0), min(high + pad, 102.0))
