"""One evaluation metric per task, by kind (`tasks.TASK_METRICS`), blind to missing labels.

Classification: top-1 accuracy. Multi-label: average precision, micro-averaged over every labelled
(image, label) pair -- threshold-free, and above 0 whenever a positive exists, so the transfer
report's relative differences stay defined. Regression: mean absolute error over labelled entries.
Each is a torchmetrics `Metric`, so Lightning accumulates it over an epoch and syncs it under DDP;
missing labels (-1 / NaN, as the losses encode them) never reach it. `selection_metric` names the one
that selects a run's checkpoint.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy, MultilabelAveragePrecision

from ..tasks import TASK_METRICS, TaskSpec


class MaskedMultilabelAP(MultilabelAveragePrecision):
    """Micro average precision; NaN (missing) entries become torchmetrics' ignore index."""

    def __init__(self, num_labels: int) -> None:
        super().__init__(num_labels, average="micro", thresholds=None, ignore_index=-1)

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:  # type: ignore[override]
        ok = torch.isfinite(target) & (target >= 0)
        super().update(preds, torch.where(ok, target, torch.full_like(target, -1)).long())


class MaskedMAE(Metric):
    """Mean absolute error over the finite entries of the target."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:  # type: ignore[override]
        target = target.reshape(preds.shape).to(preds.dtype)
        ok = torch.isfinite(target)
        err = torch.where(ok, (preds - target).abs(), torch.zeros_like(preds))
        self.total += err.sum().double()
        self.count += ok.sum()

    def compute(self) -> torch.Tensor:
        return (self.total / self.count.clamp(min=1)).float()


def task_metric(spec: TaskSpec) -> Metric:
    """A fresh metric for `spec` (update with the head's raw output and the batch's targets)."""
    if spec.kind == "classification":
        return MulticlassAccuracy(spec.num_outputs, top_k=1, average="micro", ignore_index=-1)
    if spec.kind == "multilabel":
        return MaskedMultilabelAP(spec.num_outputs)
    return MaskedMAE()



def selection_metric(tasks: Sequence[TaskSpec] | None) -> tuple[str, str]:
    """The logged validation metric that selects a run's checkpoint and its ModelCheckpoint mode. A
    classification main task (and a run without tasks) is selected on `val_top1`, as always; a run whose
    main task is a regression or multi-label head (a single-task baseline of one) on that task's own
    metric, `val_{task}_{mae|map}`, in its direction."""
    if not tasks or tasks[0].kind == "classification":
        return "val_top1", "max"
    main = tasks[0]
    return f"val_{main.name}_{main.metric}", "max" if TASK_METRICS[main.kind][1] > 0 else "min"
