"""Fine-tuning controls: which parts train (`--freeze`), and at which learning rate (`--layer-decay`,
`--head-lr-mult`); `--grad-checkpointing` is switched on here too.

The parts are the model's own, in forward order: the stem, its stages (`stage_names()`), the neck
(EfficientNet's 1x1 head conv) and the classifier; a multi-task model's heads count as classifier.

- Freezing turns off the parameters' gradients *and* keeps the frozen modules in eval mode for the
  whole run (`ZooModel.frozen_modules`): their batch-norm statistics stay as loaded and their dropout
  and stochastic depth are off, so a frozen part computes exactly what it computed before.
- Layer-wise learning-rate decay (as timm's `param_groups_layer_decay`, per stage rather than per
  block): with L layers numbered stem = 0, stages 1..S, neck, classifier = L-1, layer i trains at
  lr x D^(L-1-i); the classifier's rate is also multiplied by `--head-lr-mult`. Weight decay
  skips biases and other 1-D parameters, as timm's optimizer factory does.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from torch import nn

from ..models.base import ZooModel
from ..wording import setting

FREEZE_FORMAT = re.compile(r"none|backbone|stages:(\d+)")


def zoo_backbone(model: nn.Module) -> tuple[str, ZooModel]:
    """The zoo network inside `model` (itself, or a multi-task model's backbone) and its name prefix."""
    for name, module in model.named_modules():
        if isinstance(module, ZooModel):
            return (name + "." if name else ""), module
    raise ValueError(f"{type(model).__name__} holds no effzoo network: freezing and layer decay need one")


def layer_modules(zoo: ZooModel) -> list[tuple[str, ...]]:
    """Module names per layer, in forward order: stem, each stage, and the neck when there is one."""
    layers = [tuple(zoo.stem_modules), *((name,) for name in zoo.stage_names())]
    return layers + [tuple(zoo.neck_modules)] if zoo.neck_modules else layers


def parse_freeze(spec: str, zoo: ZooModel) -> int:
    """How many layers `spec` freezes, from the stem on: none 0, backbone all of them, stages:K the stem
    and the first K stages."""
    found = FREEZE_FORMAT.fullmatch(str(spec))
    if not found:
        raise ValueError(f"{setting('freeze', spec)}: expected none, backbone or stages:K (K = stages after the stem)")
    layers = layer_modules(zoo)
    if spec == "none":
        return 0
    if spec == "backbone":
        return len(layers)
    k, stages = int(found.group(1)), len(zoo.stage_names())
    if k > stages:
        name = zoo.pretrained_cfg.get("model_name") or type(zoo).__name__
        raise ValueError(f"{setting('freeze', spec)}: {name} has {stages} stages ({', '.join(zoo.stage_names())}); K may "
                         f"be 0-{stages} (the stem and the first K stages), or use {setting('freeze', 'backbone')}")
    return 1 + k


def freeze(model: nn.Module, spec: str) -> list[str]:
    """Freeze the layers `spec` names (see `parse_freeze`); returns the frozen module names."""
    _, zoo = zoo_backbone(model)
    names = [n for layer in layer_modules(zoo)[:parse_freeze(spec, zoo)] for n in layer]
    for name in names:
        for p in zoo.get_submodule(name).parameters():
            p.requires_grad_(False)
    zoo.frozen_modules = tuple(names)
    zoo.train(zoo.training)  # apply eval mode now, not only at the next train()
    return names


def prepare_model(model: nn.Module, cfg: Any) -> nn.Module:
    """Apply the run's `freeze` and `grad_checkpointing` options to a freshly built model."""
    freeze(model, cfg.freeze)
    if cfg.grad_checkpointing:
        model.set_grad_checkpointing(True)
    return model


def _layer_of(name: str, prefix: str, layers: list[tuple[str, ...]]) -> int:
    """Layer index of a parameter name; anything outside stem, stages and neck is classifier (the last)."""
    for i, modules in enumerate(layers):
        if any(name.startswith(f"{prefix}{m}.") for m in modules):
            return i
    return len(layers)


def param_groups(model: nn.Module, recipe: Mapping[str, Any], lr: float) -> list[dict[str, Any]] | None:
    """Optimizer groups with per-layer learning rates, or None when neither `layer_decay` nor
    `head_lr_mult` changes them (the optimizer factory then groups by weight decay alone).

    Each group carries its absolute `lr` (the schedule multiplies every group's starting rate by the
    same factor, so the ratios hold all run long) and its `layer` index."""
    decay, head_mult = recipe.get("layer_decay"), float(recipe.get("head_lr_mult", 1.0) or 1.0)
    if decay is None and head_mult == 1.0:
        return None
    prefix, zoo = zoo_backbone(model)
    layers = layer_modules(zoo)
    head = len(layers)
    weight_decay = float(recipe.get("weight_decay", 0.0))
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        layer = _layer_of(name, prefix, layers)
        scale = (decay ** (head - layer) if decay is not None else 1.0) * (head_mult if layer == head else 1.0)
        no_decay = p.ndim <= 1 or name.endswith(".bias")
        group = groups.setdefault((layer, no_decay), {
            "params": [], "lr": lr * scale, "weight_decay": 0.0 if no_decay else weight_decay, "layer": layer})
        group["params"].append(p)
    return [groups[k] for k in sorted(groups)]
