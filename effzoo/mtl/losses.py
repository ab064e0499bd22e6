"""Per-task losses that ignore missing labels.

PyTorch's mean cross-entropy over an all-ignored batch is 0/0 = NaN (by design since PR #64572),
which then poisons every parameter through the summed loss. Here each loss is computed on all
samples against a placeholder target, multiplied by the validity mask, and divided by
max(count, 1): a batch without labels for a task gives exactly 0 with exactly zero gradient,
without a data-dependent branch (no host sync, same graph on every DDP rank).

Encoding of a missing label: -1 (any negative) for class indices; NaN for multi-label entries
(a negative entry also counts as missing) and for regression values.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F

from ..tasks import TaskSpec


def valid_mask(target: torch.Tensor, spec: TaskSpec) -> torch.Tensor:
    """True where `target` holds a real label (per sample for classification, per entry else)."""
    if spec.kind == "classification":
        return target >= 0
    if spec.kind == "multilabel":
        return torch.isfinite(target) & (target >= 0)
    return torch.isfinite(target)


def _check(output: torch.Tensor, target: torch.Tensor, spec: TaskSpec) -> torch.Tensor:
    n, k = output.shape[0], spec.num_outputs
    if output.ndim != 2 or output.shape[1] != k:
        raise ValueError(f"task {spec.name!r}: head output {tuple(output.shape)} does not match num_outputs={k}")
    if spec.kind == "classification":
        if target.shape != (n,) or target.is_floating_point():
            raise ValueError(f"task {spec.name!r}: expected integer class labels of shape ({n},), "
                             f"got {target.dtype} {tuple(target.shape)}")
        if target.numel() and int(target.max()) >= k:
            raise ValueError(f"task {spec.name!r}: label {int(target.max())} is out of range for a "
                             f"{k}-way head (head size mismatch?)")
        return target
    if spec.kind == "regression" and k == 1 and target.shape == (n,):
        target = target.unsqueeze(1)
    if target.shape != (n, k):
        raise ValueError(f"task {spec.name!r}: expected {spec.kind} targets of shape ({n}, {k}), "
                         f"got {tuple(target.shape)}")
    if spec.kind == "multilabel":
        vals = target[valid_mask(target, spec)]
        if vals.numel() and bool((vals > 1).any()):
            raise ValueError(f"task {spec.name!r}: multi-label targets must lie in [0, 1] (NaN = missing)")
    return target


def task_loss(output: torch.Tensor, target: torch.Tensor, spec: TaskSpec, check: bool = True) -> torch.Tensor:
    """Masked mean loss of one task: cross-entropy, BCE-with-logits or MSE by `spec.kind`.

    `check=False` skips the shape/range checks (they cost a device sync); the masking is
    identical either way.
    """
    target = target.to(output.device)
    if check:
        target = _check(output, target, spec)
    elif spec.kind == "regression" and target.ndim == 1:
        target = target.unsqueeze(1)
    mask = valid_mask(target, spec)
    count = mask.sum().clamp(min=1).to(output.dtype)
    if spec.kind == "classification":
        per = F.cross_entropy(output, target.clamp(min=0), reduction="none")
    elif spec.kind == "multilabel":
        safe = torch.where(mask, target, torch.zeros_like(target)).to(output.dtype)
        per = F.binary_cross_entropy_with_logits(output, safe, reduction="none")
    else:
        safe = torch.where(mask, target, torch.zeros_like(target)).to(output.dtype)
        per = (output - safe).pow(2)
    # where, not multiply: a masked entry's value never reaches the sum (and nor does its grad).
    return torch.where(mask, per, torch.zeros_like(per)).sum() / count


def label_counts(targets: Mapping[str, torch.Tensor], tasks: Sequence[TaskSpec]) -> dict[str, torch.Tensor]:
    """Number of labelled samples per task in a batch (a sample counts if any entry is labelled)."""
    out = {}
    for t in tasks:
        m = valid_mask(targets[t.name], t)
        out[t.name] = (m if m.ndim == 1 else m.reshape(m.shape[0], -1).any(1)).sum()
    return out


def multitask_losses(
    outputs: Mapping[str, torch.Tensor],
    targets: Mapping[str, torch.Tensor],
    tasks: Sequence[TaskSpec],
    check: bool = True,
) -> dict[str, torch.Tensor]:
    """{task: masked loss} for every task; a task absent from `targets` is an error, not a skip."""
    missing = [t.name for t in tasks if t.name not in targets or t.name not in outputs]
    if missing:
        raise ValueError(f"no targets/outputs for task(s) {missing}; batch has {sorted(targets)}")
    return {t.name: task_loss(outputs[t.name], targets[t.name], t, check=check) for t in tasks}
