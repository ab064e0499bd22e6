"""Multi-task training: a data module whose batches are (x, {task: y}) and `MultiTaskModule`.

Used by `effzoo train --tasks ...` (see `run.build`); without `tasks` none of this is touched.
The first task is the main one: its validation top-1 is logged as `val_top1` (and test top-1 as
`test_top1`), so checkpoint selection and export work as for single-task runs; a regression or
multi-label task alone (an mtl-report baseline) is selected on its own metric instead
(`mtl.metrics.selection_metric`). Every task also
logs `{stage}_{task}_loss` and its kind's metric `{stage}_{task}_{top1|map|mae}` (`mtl.metrics`);
the weighting logs `weight/{task}`; the gradient cosine between tasks on the shared parameters is
logged once per epoch (`cos/a|b`). An image folder's labels.csv columns feed the tasks that name
them (`data.labels_csv`).
"""

from __future__ import annotations

from typing import Any, Sequence

import pytorch_lightning as pl
import torch
from torch import nn

from ..artifacts.weights import apply_data_config
from ..data import ClassificationDataModule
from ..data.labels_csv import CsvLabels, encode_label_tables
from ..mtl import (
    MultiTaskDataset,
    MultiTaskModel,
    TaskSpec,
    apply_proximal_step,
    create_weighting,
    gradient_cosine,
    head_learning_rate,
    keep_labels,
    label_counts,
    make_task_labels,
    multitask_losses,
    rotate_batch,
    validate_tasks,
)
from ..mtl.metrics import task_metric
from .module import configure_recipe_optimizers, plain_hyperparameters, restore_checkpoint_extras, save_checkpoint_extras


def resolve_tasks(source: Any, tasks: Sequence[TaskSpec]) -> tuple[list[TaskSpec], CsvLabels | None]:
    """`tasks` with their labels.csv columns resolved (class names filled in) and every label source checked
    against the data; the encoded columns, when the data has a labels.csv."""
    csv_labels = None
    if source.label_tables:
        csv_labels = encode_label_tables(source.label_tables, tasks, has_classes=source.num_classes > 0)
        tasks = csv_labels.tasks
    validate_tasks(list(tasks), num_classes=source.num_classes, extra_sources=csv_labels.columns if csv_labels else ())
    return list(tasks), csv_labels


class MultiTaskDataModule(ClassificationDataModule):
    """`ClassificationDataModule` whose datasets carry one label per task (missing: -1 / NaN).

    Labels come from the dataset's own targets (`make_task_labels`: label, coarse, random@seed)
    and from its labels.csv columns, all read here, before training; `self.tasks` are the tasks
    with their columns resolved and class names filled in (what the model should be built with).
    `main_label_limit` keeps the main task's label on only that many training images, the other
    tasks keep theirs on all (mixed batches with missing labels). Rotation labels are made per
    batch by the module.
    """

    def __init__(self, source: Any, *, tasks: Sequence[TaskSpec], main_label_limit: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(source, **kwargs)
        self.tasks, self.csv_labels = resolve_tasks(source, tasks)
        self.main_label_limit = main_label_limit

    def _wrap(self, ds: Any, split: str) -> MultiTaskDataset:
        from_csv = self.csv_labels.task_names if self.csv_labels else set()
        labels = make_task_labels([t for t in self.tasks if t.name not in from_csv], torch.as_tensor(ds.labels))
        if self.csv_labels:
            labels.update(self.csv_labels.lookup(split, ds.paths))
        main = self.tasks[0]
        if split == "train" and self.main_label_limit is not None and main.name in labels:
            n = len(labels[main.name])
            if self.main_label_limit > n:
                raise ValueError(f"main_label_limit {self.main_label_limit} exceeds the {n} training images")
            labels[main.name] = keep_labels(labels[main.name], self.main_label_limit, seed=self.seed)
        return MultiTaskDataset(ds, self.tasks, labels)

    def train_dataloader(self):
        ds = self._wrap(self._split("train").with_transform(self.train_tf), "train")
        return self._loader(ds, shuffle=True, drop_last=len(ds) >= self.batch_size)

    def eval_dataloader(self, split: str, image_size: int, crop_pct: float | None = None, *, shuffle: bool = False,
                        batch_size: int | None = None):
        loader = super().eval_dataloader(split, image_size, crop_pct, shuffle=shuffle, batch_size=batch_size)
        return self._loader(self._wrap(loader.dataset, split), shuffle=shuffle, drop_last=False,
                            batch_size=batch_size)


class MultiTaskModule(pl.LightningModule):
    """A zoo backbone with one head per task, trained on the weighted sum of masked task losses.

    Loss-level weightings use automatic optimization; PCGrad (gradient level) switches to manual
    optimization (one device, no 16-bit GradScaler; `TrainConfig` refuses the rest). A structural
    head regularizer is applied as a proximal step after each optimizer step.
    """

    def __init__(self, backbone: nn.Module, tasks: Sequence[TaskSpec],
                 recipe: dict[str, Any] | None = None, data_config: dict[str, Any] | None = None,
                 channels_last: bool = True, compile: bool = False, weighting: str = "fixed",
                 weighting_options: dict[str, Any] | None = None, head_reg: str | None = None,
                 head_reg_strength: float = 0.0, feature_norm: str = "none") -> None:
        super().__init__()
        if data_config:
            apply_data_config(backbone, data_config)
        self.tasks = list(tasks)
        self.save_hyperparameters(plain_hyperparameters(
            backbone, recipe, data_config, tasks=[t.to_dict() for t in self.tasks], channels_last=channels_last,
            compile=compile, weighting=weighting, weighting_options=dict(weighting_options or {}), head_reg=head_reg,
            head_reg_strength=head_reg_strength, feature_norm=feature_norm))
        self.recipe = dict(recipe or {})
        if channels_last:
            backbone = backbone.to(memory_format=torch.channels_last)
        self.model = MultiTaskModel(backbone, self.tasks, feature_norm=feature_norm)
        self.weighting = create_weighting(weighting, self.tasks, **dict(weighting_options or {}))
        self.automatic_optimization = not self.weighting.gradient_level
        self.rotation = next((t.name for t in self.tasks if t.source == "rotation"), None)
        self.metrics = torch.nn.ModuleDict({
            f"{stage}_{t.name}": task_metric(t) for stage in ("train", "val", "test") for t in self.tasks})
        self._epoch_losses: dict[str, list[float]] = {}
        self._last_batch: Any = None
        self._compiled = False

    @property
    def main(self) -> TaskSpec:
        return self.tasks[0]

    def setup(self, stage: str) -> None:
        if self.hparams.compile and not self._compiled:
            self.model.backbone.compile()
            self._compiled = True

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.hparams.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)

    def _prepare(self, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x, y = batch
        if self.rotation is not None:
            x, y = rotate_batch(x, y, task=self.rotation)
        return x, y

    # -- steps ---------------------------------------------------------------------------------
    def _losses(self, x, y):
        out = self(x)
        losses = multitask_losses(out, y, self.tasks)
        counts = label_counts(y, self.tasks)
        return out, losses, counts

    def _log_task_metrics(self, stage: str, out, y, losses, counts) -> None:
        for t in self.tasks:
            n = int(counts[t.name])
            if n == 0:
                continue  # nothing labelled for this task in the batch: no loss, no accuracy
            self.log(f"{stage}_{t.name}_loss", losses[t.name].detach(), on_step=False, on_epoch=True,
                     batch_size=n, sync_dist=stage != "train")
            m = self.metrics[f"{stage}_{t.name}"]
            m.update(out[t.name].detach(), y[t.name])
            self.log(f"{stage}_{t.name}_{t.metric}", m, on_step=False, on_epoch=True)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = self._prepare(batch)
        out, losses, counts = self._losses(x, y)
        present = {k: c > 0 for k, c in counts.items()}
        if self.weighting.gradient_level:
            opt = self.optimizers()
            opt.zero_grad()
            total = self.weighting.backward(losses, self.model.shared_parameters(), present,
                                            backward_fn=self.manual_backward)
            opt.step()
            sched = self.lr_schedulers()
            if sched is not None:
                sched.step()
            self._proximal_step()
        else:
            total = self.weighting.combine(losses, self.model.last_shared_parameters(), present)
        if not torch.isfinite(total):
            raise FloatingPointError(f"non-finite multi-task loss {float(total)}; task losses "
                                     f"{ {k: float(v) for k, v in losses.items()} }")
        for k, v in losses.items():
            if int(counts[k]) > 0:
                self._epoch_losses.setdefault(k, []).append(float(v.detach()))
        self._last_batch = (batch[0][:64].detach(), {k: v[:64].detach() for k, v in batch[1].items()})
        self.log("train_loss", total.detach(), on_step=True, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log_dict({f"weight/{k}": v for k, v in self.weighting.task_weights().items()}, on_step=False,
                      on_epoch=True)
        self._log_task_metrics("train", out, y, losses, counts)
        return total

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.automatic_optimization:
            self._proximal_step()

    def _proximal_step(self) -> None:
        reg, strength = self.hparams.head_reg, float(self.hparams.head_reg_strength)
        if reg is None or strength <= 0:
            return
        opt = self.optimizers()
        lr = head_learning_rate(getattr(opt, "optimizer", opt), self.model)
        apply_proximal_step(self.model, reg, strength, lr)

    def on_train_epoch_end(self) -> None:
        means = {k: sum(v) / len(v) for k, v in self._epoch_losses.items() if v}
        self._epoch_losses = {}
        self.weighting.epoch_end(means if self.trainer.world_size == 1 else None)
        if len(self.tasks) > 1 and self._last_batch is not None:
            self.log_dict({f"cos/{k}": v for k, v in self.gradient_cosine(self._last_batch).items()})

    def gradient_cosine(self, batch: Any) -> dict[str, float]:
        """Diagnostic: pairwise cosine of task gradients on the shared parameters for one batch."""
        was_training = self.training
        with torch.enable_grad():
            x, y = self._prepare(batch)
            _, losses, counts = self._losses(x, y)
            losses = {k: v for k, v in losses.items() if int(counts[k]) > 0}
            out = gradient_cosine(losses, self.model.shared_parameters()) if len(losses) > 1 else {}
        self.model.zero_grad(set_to_none=True)
        self.train(was_training)
        return out

    def _eval_step(self, batch: Any, stage: str, batch_idx: int) -> None:
        x, y = batch
        if self.rotation is not None:
            # The same rotated copies every epoch (seeded by batch), so the rotation task has a
            # validation and test accuracy like any other; the other tasks still see only originals.
            x, y = rotate_batch(x, y, task=self.rotation, generator=torch.Generator().manual_seed(batch_idx))
        out, losses, counts = self._losses(x, y)
        self._log_task_metrics(stage, out, y, losses, counts)
        main = self.main.name
        if int(counts[main]) > 0:
            self.log(f"{stage}_loss", losses[main], on_epoch=True, prog_bar=stage == "val", sync_dist=True,
                     batch_size=int(counts[main]))
        if self.main.kind == "classification":
            self.log(f"{stage}_top1", self.metrics[f"{stage}_{main}"], on_epoch=True, prog_bar=stage == "val")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "val", batch_idx)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "test", batch_idx)

    def predict_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        return self.model.predict(x)

    # -- optimization --------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        learned = [p for p in self.weighting.parameters() if p.requires_grad]
        # uncertainty weighting's log-variances join the main optimizer, without weight decay
        return configure_recipe_optimizers(self, [{"params": learned, "weight_decay": 0.0}] if learned else [])

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        save_checkpoint_extras(self, checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        restore_checkpoint_extras(checkpoint)
