"""Accuracy vs multiply-accumulates for the zoo's checkpoints, in the style of EfficientNet's Figure 1.

Left panel: the shipped checkpoints (test top-1 from checkpoints/index.json against their MACs at the
test resolution, the cost of inference), one line per dataset and family, with the Pareto-optimal
points ringed. Right panel (optional): the paper's Table 2, EfficientNet-B0..B7 on
ImageNet, as the reference the zoo's small models scale down from. Numbers are never re-measured
here; they come from the index, which is checked against the models by tests/test_zoo.py.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from ..artifacts.zoo_index import read_index

# Tan & Le, ICML 2019, Table 2: (params M, FLOPs B, ImageNet top-1 %); the paper's FLOPs are multiply-adds.
PAPER_TABLE2 = {
    "B0": (5.3, 0.39, 76.3), "B1": (7.8, 0.70, 78.8), "B2": (9.2, 1.0, 79.8), "B3": (12, 1.8, 81.1),
    "B4": (19, 4.2, 82.6), "B5": (30, 9.9, 83.3), "B6": (43, 19, 84.0), "B7": (66, 37, 84.4),
}


def zoo_points(root: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """One point per indexed checkpoint that has a test top-1 and a MAC count."""
    points = []
    for name, e in read_index(root)["models"].items():
        top1, macs = e.get("metrics", {}).get("test_top1"), e.get("test_macs") or e.get("macs")
        if top1 is None or not macs:
            continue
        points.append({"name": name, "dataset": e.get("dataset"), "family": e.get("model_name"), "phi": e.get("phi"),
                       "macs": int(macs), "params": e.get("params"), "top1": 100 * float(top1),
                       "test_resolution": e.get("test_resolution"), "fixres": "fixres" in name})
    return sorted(points, key=lambda p: p["macs"])


def pareto_front(points: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Points no other point beats on both fewer MACs and higher top-1 (within one dataset)."""
    front = []
    for p in sorted(points, key=lambda p: (p["macs"], -p["top1"])):
        if not front or p["top1"] > front[-1]["top1"]:
            front.append(p)
    return front


def _label(p: dict[str, Any]) -> str:
    """φ and what tells runs of one φ apart ("φ=-4 28px 16ep"), taken from the name after the dataset."""
    name = p["name"].removeprefix("effzoo_")
    if p.get("phi") is None:
        return name
    rest = name.partition(f"_{p['dataset']}")[2].strip("_").replace("_", " ") if p.get("dataset") else ""
    return f"φ={p['phi']:g}" + (f" {rest}" if rest else "")


# Label positions tried in turn (points right/left and below/above the marker) until one is free.
_OFFSETS = [(6, -12, "left"), (6, 5, "left"), (-6, 5, "right"), (-6, -12, "right"),
            (6, -24, "left"), (6, 17, "left"), (-6, -24, "right"), (-6, 17, "right")]


def _place_labels(ax: Any, labels: Sequence[tuple[str, float, float]]) -> None:
    """Annotate each (text, x, y) at the first offset whose box overlaps no marker and no label placed before it."""
    from matplotlib.transforms import Bbox

    renderer = ax.figure.canvas.get_renderer()
    centers = ax.transData.transform([(x, y) for _, x, y in labels])
    placed: list[Any] = [Bbox.from_extents(cx - 6, cy - 6, cx + 6, cy + 6) for cx, cy in centers]  # the markers
    for text, x, y in labels:
        for dx, dy, ha in _OFFSETS:
            ann = ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy), ha=ha, fontsize=9)
            box = ann.get_window_extent(renderer)
            if not any(box.overlaps(b) for b in placed):
                break
            ann.remove()
        else:  # crowded everywhere: keep the first position rather than drop the label
            ann = ax.annotate(text, (x, y), textcoords="offset points", xytext=_OFFSETS[0][:2], fontsize=9)
            box = ann.get_window_extent(renderer)
        placed.append(box)


def _plain_ticks(ax: Any, minor: bool = True) -> None:
    from matplotlib.ticker import FuncFormatter, NullFormatter

    fmt = FuncFormatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_major_formatter(fmt)
    ax.xaxis.set_minor_formatter(fmt if minor else NullFormatter())  # minor labels only within one decade


def pareto_plot(points: Sequence[dict[str, Any]], path: str | os.PathLike, reference: bool = True) -> Path:
    """Write the PNG; returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not points and not reference:
        raise ValueError("no checkpoint in the zoo index has a test top-1 and MACs to plot")
    ncols = 2 if reference else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6.5 * ncols, 5), squeeze=False)
    ax = axes[0][0]
    groups: dict[tuple, list] = {}
    for p in points:
        groups.setdefault((p["dataset"], p["family"], p["fixres"]), []).append(p)
    for (dataset, family, fixres), pts in sorted(groups.items(), key=lambda kv: str(kv[0])):
        xs, ys = [p["macs"] / 1e6 for p in pts], [p["top1"] for p in pts]
        ax.plot(xs, ys, marker="s" if fixres else "o", linestyle="--" if fixres else "-", linewidth=2, markersize=7,
                label=f"effzoo {family} on {dataset}{' + FixRes' if fixres else ''}")
    for dataset in {p["dataset"] for p in points}:
        front = pareto_front([p for p in points if p["dataset"] == dataset])
        ax.scatter([p["macs"] / 1e6 for p in front], [p["top1"] for p in front], s=180, facecolors="none",
                   edgecolors="black", linewidths=1.2, label="Pareto-optimal" if dataset == points[0]["dataset"] else None)
    ax.set_xscale("log")
    _plain_ticks(ax)
    ax.margins(x=0.12, y=0.15)
    ax.set_xlabel("MACs per image at the test resolution (millions, log scale)")
    ax.set_ylabel("test top-1 accuracy (%)")
    ax.set_title("effzoo shipped checkpoints")
    ax.grid(True, which="both", alpha=0.3)
    if points:
        # below the axes: inside, "best" avoids the lines but not the labels placed next
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, fontsize=8)
        fig.tight_layout()  # the final axes size first: label boxes are compared in display units
        _place_labels(ax, [(_label(p), p["macs"] / 1e6, p["top1"]) for p in points])
    else:
        ax.text(0.5, 0.5, "no checkpoints in the index", ha="center", va="center", transform=ax.transAxes)
    if reference:
        ref = axes[0][1]
        xs = [v[1] for v in PAPER_TABLE2.values()]
        ys = [v[2] for v in PAPER_TABLE2.values()]
        ref.plot(xs, ys, marker="o", color="tab:red", linewidth=2, label="EfficientNet B0-B7 (paper, Table 2)")
        for name, x, y in zip(PAPER_TABLE2, xs, ys):
            ref.annotate(name, (x, y), textcoords="offset points", xytext=(5, -12), fontsize=9)
        ref.set_xscale("log")
        _plain_ticks(ref, minor=False)
        ref.set_xlabel("FLOPs = multiply-adds (billions, log scale)")
        ref.set_ylabel("ImageNet top-1 accuracy (%)")
        ref.set_title("Reference: Tan & Le, ICML 2019, Table 2")
        ref.grid(True, which="both", alpha=0.3)
        ref.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
