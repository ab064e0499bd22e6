"""The optimization recipe: optimizer (timm's factory), learning-rate scaling and a per-step schedule.

EfficientNet's published recipe (Tan & Le 2019, Section 5.2; timm's reproduction): RMSProp
TF-style with decay 0.9, momentum 0.9, epsilon 1e-3; weight decay 1e-5; learning rate 0.016 per
256 images, scaled linearly with the global batch; linear warm-up, then multiply by 0.97 every
2.4 epochs. The schedule is a `LambdaLR` stepped every optimizer step, with its factor a plain
object so that its state is plain numbers (checkpoints load with `weights_only=True`).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch
from torch import nn

from .config import DEFAULT_LR_BASE
from .finetune import param_groups

REFERENCE_BATCH = 256


def scaled_lr(recipe: Mapping[str, Any], global_batch: int) -> float:
    """`lr` if given, else `lr_base` (per 256 images) x global batch / 256."""
    if recipe.get("lr") is not None:
        return float(recipe["lr"])
    base = recipe.get("lr_base")
    base = DEFAULT_LR_BASE[recipe["opt"]] if base is None else base
    return float(base) * global_batch / REFERENCE_BATCH


def create_optimizer(model: nn.Module, recipe: Mapping[str, Any], lr: float) -> torch.optim.Optimizer:
    """timm's `create_optimizer_v2`; weight decay skips biases and normalization parameters. With
    `layer_decay` or `head_lr_mult` the groups (and their rates) come from `finetune.param_groups`."""
    from timm.optim import create_optimizer_v2  # deferred: timm takes seconds to import

    name = recipe["opt"]
    kwargs: dict[str, Any] = {}
    if name.startswith("rmsprop"):
        kwargs["alpha"] = recipe.get("rms_decay", 0.9)
        kwargs["eps"] = 1e-3 if recipe.get("opt_eps") is None else recipe["opt_eps"]
    elif recipe.get("opt_eps") is not None:
        kwargs["eps"] = recipe["opt_eps"]
    if name != "adamw":
        kwargs["momentum"] = recipe.get("momentum", 0.9)
    groups = param_groups(model, recipe, lr)
    return create_optimizer_v2(model if groups is None else groups, opt=name, lr=lr,
                               weight_decay=recipe.get("weight_decay", 0.0), **kwargs)


class LRFactor:
    """Multiplier of the peak learning rate at an optimizer step: warm-up, then step decay or cosine.

    Warm-up rises linearly from `warmup_lr` to the peak over `warmup_epochs`. The step schedule
    counts epochs from the start of training (as timm's), so `decay_rate ** floor(epoch / decay_epochs)`;
    cosine goes from the peak at the end of warm-up to `min_lr` at the last step.
    """

    def __init__(self, *, sched: str, lr: float, steps_per_epoch: float, total_steps: int,
                 warmup_epochs: float = 0.0, warmup_lr: float = 0.0, decay_epochs: float = 2.4,
                 decay_rate: float = 0.97, min_lr: float = 0.0) -> None:
        self.sched = sched
        self.steps_per_epoch = float(max(steps_per_epoch, 1e-9))
        self.total_steps = int(total_steps)
        self.warmup_steps = float(warmup_epochs) * self.steps_per_epoch
        self.warmup_start = min(1.0, float(warmup_lr) / lr) if lr > 0 else 0.0
        self.decay_epochs = float(decay_epochs)
        self.decay_rate = float(decay_rate)
        self.min_ratio = min(1.0, float(min_lr) / lr) if lr > 0 else 0.0

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.warmup_start + (1.0 - self.warmup_start) * step / self.warmup_steps
        if self.sched == "step":
            return self.decay_rate ** math.floor(step / self.steps_per_epoch / self.decay_epochs)
        if self.sched == "cosine":
            span = max(1.0, self.total_steps - self.warmup_steps)
            progress = min(1.0, (step - self.warmup_steps) / span)
            return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0  # constant


def create_scheduler(optimizer: torch.optim.Optimizer, recipe: Mapping[str, Any], *, lr: float,
                     steps_per_epoch: float, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    factor = LRFactor(
        sched=recipe.get("sched", "step"), lr=lr, steps_per_epoch=steps_per_epoch, total_steps=total_steps,
        warmup_epochs=recipe.get("warmup_epochs", 0.0), warmup_lr=recipe.get("warmup_lr", 0.0),
        decay_epochs=recipe.get("decay_epochs", 2.4), decay_rate=recipe.get("decay_rate", 0.97),
        min_lr=recipe.get("min_lr", 0.0),
    )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
