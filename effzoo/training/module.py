"""`ClassificationModule`: a zoo model, its loss, metrics and optimization recipe as a LightningModule.

The module takes a built model (built once by `run.build`). Only plain data goes into the
hyperparameters (the registry name and arguments that rebuild the model, the recipe, the data's
preprocessing), so a `.ckpt` loads with `weights_only=True` and `effzoo.load_checkpoint` can
rebuild the model from it without Lightning.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from ..artifacts.weights import apply_data_config
from .recipe import create_optimizer, create_scheduler, scaled_lr

CKPT_KEY = "effzoo"  # our extra state in Lightning checkpoints: val metrics of that epoch, RNG states


class ClassificationModule(pl.LightningModule):
    def __init__(self, model: nn.Module, recipe: dict[str, Any] | None = None, data_config: dict[str, Any] | None = None,
                 channels_last: bool = True, compile: bool = False) -> None:
        super().__init__()
        if data_config:
            apply_data_config(model, data_config)
        self.save_hyperparameters(plain_hyperparameters(model, recipe, data_config, channels_last=channels_last,
                                                        compile=compile))
        self.recipe = dict(recipe or {})
        self.model = model
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        n = self.model.num_classes
        k = min(5, n)  # "top-5" is top-num_classes (trivially 1.0) when there are 5 classes or fewer
        self.train_top1 = MulticlassAccuracy(n, top_k=1, average="micro")
        self.val_top1 = MulticlassAccuracy(n, top_k=1, average="micro")
        self.val_top5 = MulticlassAccuracy(n, top_k=k, average="micro")
        self.test_top1 = MulticlassAccuracy(n, top_k=1, average="micro")
        self.test_top5 = MulticlassAccuracy(n, top_k=k, average="micro")
        self._compiled = False

    # -- model ---------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        # After the EMA callback has copied the module (callbacks set up first), and in each process.
        if self.hparams.compile and not self._compiled:
            self.model.compile()
            self._compiled = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.hparams.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)

    # -- steps ---------------------------------------------------------------------------------
    def _mixup(self):
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        return getattr(dm, "mixup_fn", None)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        mixup = self._mixup()
        if mixup is not None:
            x, soft = mixup(x, y)  # label smoothing is folded into the soft targets
            logits = self(x)
            loss = torch.sum(-soft * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()
        else:
            logits = self(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=self.recipe.get("label_smoothing", 0.0))
            self.train_top1(logits, y)
            self.log("train_top1", self.train_top1, on_step=False, on_epoch=True)
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True, sync_dist=True)
        return loss

    def _eval_step(self, batch: Any, stage: str) -> None:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits.float(), y)
        top1, top5 = getattr(self, f"{stage}_top1"), getattr(self, f"{stage}_top5")
        top1(logits, y)
        top5(logits, y)
        self.log(f"{stage}_loss", loss, on_epoch=True, prog_bar=stage == "val", sync_dist=True)
        self.log(f"{stage}_top1", top1, on_epoch=True, prog_bar=stage == "val")
        self.log(f"{stage}_top5", top5, on_epoch=True)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        return self(x).softmax(-1)

    # -- optimization --------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        return configure_recipe_optimizers(self)

    # -- checkpoint extras ---------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        save_checkpoint_extras(self, checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        restore_checkpoint_extras(checkpoint)


def plain_hyperparameters(model: nn.Module, recipe: dict[str, Any] | None, data_config: dict[str, Any] | None,
                          **extra: Any) -> dict[str, Any]:
    """What a Lightning checkpoint stores to rebuild the model: names, arguments and numbers, no objects."""
    cfg = model.pretrained_cfg
    return {"model_name": cfg.model_name, "model_args": dict(cfg.model_args or {}), "recipe": recipe,
            "data_config": data_config, **extra}


def get_rng_states() -> dict[str, Any]:
    """torch/numpy/python RNG states as tensors and plain containers (loadable with weights_only=True)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def configure_recipe_optimizers(module: pl.LightningModule, extra_groups: list[dict[str, Any]] = ()) -> dict[str, Any]:
    """The recipe's optimizer (lr scaled by the global batch) and per-step schedule for `module.model`;
    `extra_groups` adds parameter groups outside the model (e.g. learned loss weights)."""
    trainer = module.trainer
    global_batch = module.recipe.get("batch_size", 64) * trainer.world_size * trainer.accumulate_grad_batches
    lr = scaled_lr(module.recipe, global_batch)
    optimizer = create_optimizer(module.model, module.recipe, lr)
    for group in extra_groups:
        optimizer.add_param_group(group)
    total = int(trainer.estimated_stepping_batches)
    epochs = max(1, trainer.max_epochs or 1)
    scheduler = create_scheduler(optimizer, module.recipe, lr=lr, steps_per_epoch=total / epochs, total_steps=total)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def save_checkpoint_extras(module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
    """Store the metrics of the epoch this checkpoint ends (so the best checkpoint knows its own
    scores) and the RNG states, so that a resumed run draws the same augmentations, shuffles and
    dropout masks as an uninterrupted one."""
    metrics = {k: float(v) for k, v in module.trainer.callback_metrics.items()
               if k.startswith("val_") and torch.is_tensor(v) and v.numel() == 1}
    checkpoint[CKPT_KEY] = {"val_metrics": metrics, "epoch": int(module.current_epoch), "rng_states": get_rng_states()}


def restore_checkpoint_extras(checkpoint: dict[str, Any]) -> None:
    """Put back the RNG states `save_checkpoint_extras` stored (older checkpoints have none)."""
    states = checkpoint.get(CKPT_KEY, {}).get("rng_states")
    if states:
        set_rng_states(states)
