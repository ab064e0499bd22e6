"""Seeded, stratified index splits shared by every dataset source.

Written with numpy rather than scikit-learn's ``train_test_split`` because that one refuses
sizes smaller than the number of classes, which is exactly what tiny test subsets need, and
because we want *one* rounding rule (largest remainder) for validation carving and
``train_limit`` alike.
"""

from __future__ import annotations

import numpy as np


def _allocate(counts: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` over classes proportionally to ``counts`` (largest-remainder rounding)."""
    exact = counts * (total / counts.sum())
    alloc = np.floor(exact).astype(np.int64)
    remainder = total - int(alloc.sum())
    # Hand the leftover units to the classes with the largest fractional parts; ties go to the
    # lower class index (stable sort) so the result never depends on anything but the inputs.
    order = np.argsort(-(exact - alloc), kind="stable")
    alloc[order[:remainder]] += 1
    return np.minimum(alloc, counts)


def stratified_split(
    labels: np.ndarray, held_out: int | float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(kept, held)`` index arrays; ``held`` has ``held_out`` samples per class share.

    ``held_out`` is a fraction in (0, 1) or an absolute count. Both outputs are sorted, disjoint
    and together cover ``range(len(labels))``. The same ``(labels, held_out, seed)`` always
    gives the same split.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if isinstance(held_out, float):
        if not 0.0 < held_out < 1.0:
            raise ValueError(f"held-out fraction must be in (0, 1), got {held_out}")
        n_held = int(round(n * held_out))
    else:
        n_held = int(held_out)
    if not 0 <= n_held <= n:
        raise ValueError(f"cannot hold out {n_held} of {n} samples")

    classes, inverse = np.unique(labels, return_inverse=True)
    counts = np.bincount(inverse, minlength=len(classes))
    per_class = _allocate(counts, n_held)
    rng = np.random.default_rng(seed)
    held_parts = []
    for c in range(len(classes)):
        idx = np.flatnonzero(inverse == c)
        held_parts.append(rng.permutation(idx)[: per_class[c]])
    held = np.sort(np.concatenate(held_parts)) if held_parts else np.empty(0, np.int64)
    mask = np.ones(n, dtype=bool)
    mask[held] = False
    return np.flatnonzero(mask), held


def stratified_subset(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded, class-balanced subset of ``size`` samples."""
    if size >= len(labels):
        return np.arange(len(labels))
    _, subset = stratified_split(labels, int(size), seed)
    return subset
