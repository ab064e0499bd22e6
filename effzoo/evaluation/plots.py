"""PNG plots for people: accuracy vs test resolution, the confusion matrix, and the candidates of a
coefficient search (accuracy vs MACs)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..artifacts.atomic import atomic_write


def evaluation_folder_name(data: str, split: str, resolutions: Sequence[int],
                           options: Mapping[str, Any] | None = None) -> str:
    """The folder of one evaluation's plots, e.g. "digits_test_res16-24": one per dataset, split, resolution
    set (and explicit data options), so evaluations on other data or resolutions never overwrite each other."""
    name = Path(str(data).rstrip("/\\")).name or str(data)  # a dataset folder path: its basename
    parts = [name, *(f"{k}-{v}" for k, v in sorted((options or {}).items())), split,
             "res" + "-".join(str(r) for r in sorted(set(resolutions)))]
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "_".join(parts))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    return plt


def plot_accuracy_vs_resolution(rows: Sequence[dict[str, Any]], path: str | Path, title: str = "",
                                train_resolution: int | None = None) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    ax.plot([r["resolution"] for r in rows], [r["top1"] for r in rows], "o-", label="top-1")
    if train_resolution is not None:
        ax.axvline(train_resolution, color="gray", ls="--", lw=1, label=f"train {train_resolution} px")
    ax.set_xlabel("test resolution (px)")
    ax.set_ylabel("top-1 (%)")
    ax.set_title(title or "accuracy vs test resolution")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return _save(fig, path)


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], class_names: Sequence[str], path: str | Path, title: str = "") -> Path:
    plt = _pyplot()
    n = len(matrix)
    fig, ax = plt.subplots(figsize=(1.0 + 0.5 * n, 0.8 + 0.5 * n), dpi=120)
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n), [str(c)[:12] for c in class_names], rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(n), [str(c)[:12] for c in class_names], fontsize=7)
    peak = max(max(row) for row in matrix) or 1
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(matrix[i][j]), ha="center", va="center", fontsize=6,
                    color="white" if matrix[i][j] > peak / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion matrix")
    fig.tight_layout()
    return _save(fig, path)


def plot_search_candidates(rows: Sequence[dict[str, Any]], path: str | Path, annotate: int = 5,
                           title: str = "grid search candidates") -> Path:
    """Validation top-1 vs MACs of `effzoo search` candidates (`search.candidate_row` dicts: `macs`,
    `best_accuracy`, `coefficients_arg`), best first; the first `annotate` are labelled alpha,beta,gamma."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    ax.scatter([r["macs"] / 1e6 for r in rows], [r["best_accuracy"] for r in rows])
    for r in rows[:annotate]:
        ax.annotate(r["coefficients_arg"], (r["macs"] / 1e6, r["best_accuracy"]), fontsize=6)
    ax.set_xlabel("MMACs at phi = 1")
    ax.set_ylabel("val top-1 (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig: Any, path: str | Path) -> Path:
    plt = _pyplot()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        plt.close(fig)
