"""Multi-task learning: task specs, a shared-backbone model, masked losses, loss weighting,
structural head regularizers and the transfer report. See each module's docstring."""

from .data import MultiTaskDataset, missing_label, mix_datasets
from .labels import (
    FASHION_MNIST_COARSE,
    RotationTransform,
    coarse_labels,
    keep_labels,
    make_task_labels,
    random_labels,
    rotate_batch,
)
from .losses import label_counts, multitask_losses, task_loss, valid_mask
from ..models.multitask import MultiTaskModel
from .regularizers import (
    REGULARIZERS,
    Regularizer,
    apply_proximal_step,
    head_learning_rate,
    make_regularizer,
    penalty_loss,
)
from .report import TaskTransfer, TransferReport, print_report, render_table, transfer_report, write_json
from ..tasks import TaskSpec, load_tasks_yaml, main_task, parse_tasks, validate_tasks
from .gradients import gradient_cosine, pcgrad_project, task_gradients
from .weighting import WEIGHTINGS, Weighting, create_weighting

__all__ = [
    "FASHION_MNIST_COARSE", "MultiTaskDataset", "MultiTaskModel", "REGULARIZERS", "Regularizer",
    "RotationTransform", "TaskSpec", "TaskTransfer", "TransferReport", "WEIGHTINGS", "Weighting",
    "apply_proximal_step", "coarse_labels", "create_weighting", "gradient_cosine", "head_learning_rate",
    "keep_labels", "label_counts", "load_tasks_yaml", "main_task", "make_regularizer", "make_task_labels",
    "missing_label", "mix_datasets", "multitask_losses", "parse_tasks", "pcgrad_project", "penalty_loss",
    "print_report", "random_labels", "render_table", "rotate_batch", "task_gradients", "task_loss",
    "transfer_report", "valid_mask", "validate_tasks", "write_json",
]  # fmt: skip
