"""FixRes (Touvron et al., NeurIPS 2019): test at a higher resolution, then repair the statistics.

RandomResizedCrop makes objects look larger at train time than a center crop does at test time,
so a model is best *tested* at a higher resolution than it was trained at; but the pooled features
then have other statistics than the classifier saw. The repair is cheap: fine-tune at the test
resolution on training images passed through the *test-time* preprocessing (never RRC), with the
classifier trainable and the last batch norm before pooling re-estimating its statistics, the rest
frozen in eval mode (what facebookresearch/FixRes's fine-tuning code does).
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from .config import ADAPT_CHOICES

_BatchNorm = nn.modules.batchnorm._BatchNorm


def last_batchnorm(model: nn.Module) -> _BatchNorm:
    """The batch norm nearest to the global pooling (the head's bn2 in MBConv nets, layer4[-1].bn3 in ResNet)."""
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    if not bns:
        raise ValueError(f"{type(model).__name__} has no batch norm to re-estimate")
    return bns[-1]


def _to_model(x: torch.Tensor, model: nn.Module, channels_last: bool) -> torch.Tensor:
    device = next(model.parameters()).device
    return x.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)


@torch.no_grad()
def recalibrate_bn(model: nn.Module, loader: Iterable, which: str = "last", max_batches: int | None = None,
                   channels_last: bool = True) -> nn.Module:
    """Re-estimate batch-norm running statistics at the loader's resolution; no gradient step, nothing else changes.

    The chosen BNs restart from zero and average over all batches (momentum=None): with every layer
    before them fixed, their inputs are stationary and the cumulative mean is the exact statistic.
    """
    if which not in ("last", "all"):
        raise ValueError(f"which must be 'last' or 'all', got {which!r}")
    bns = [last_batchnorm(model)] if which == "last" else [m for m in model.modules() if isinstance(m, _BatchNorm)]
    model.eval()
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    try:
        for i, (x, _) in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            model(_to_model(x, model, channels_last))
    finally:
        for bn, momentum in zip(bns, saved):
            bn.momentum = momentum
        model.eval()
    return model


def set_trainable(model: nn.Module, adapt: str, bn_affine: bool = False) -> list[nn.Parameter]:
    """Freeze everything except the parts `adapt` names; returns the trainable parameters.

    classifier+bn: the classifier (and the last BN's affine weights with bn_affine);
    bn: the last BN's affine weights; all: everything.
    """
    if adapt not in ADAPT_CHOICES:
        raise ValueError(f"unknown adapt {adapt!r}; choose one of {', '.join(ADAPT_CHOICES)}")
    for p in model.parameters():
        p.requires_grad_(adapt == "all")
    if adapt != "all":
        if adapt == "classifier+bn":
            for p in model.get_classifier().parameters():
                p.requires_grad_(True)
        if adapt == "bn" or bn_affine:
            for p in last_batchnorm(model).parameters():
                p.requires_grad_(True)
    return [p for p in model.parameters() if p.requires_grad]


def _set_modes(model: nn.Module, adapt: str) -> None:
    # Frozen parts stay in eval mode (fixed BN statistics, no dropout); only the last BN re-estimates.
    if adapt == "all":
        model.train()
    else:
        model.eval()
        last_batchnorm(model).train()


def fixres_finetune(model: nn.Module, train_loader: Iterable, *, adapt: str = "classifier+bn", epochs: int = 2,
                    lr: float = 1e-3, weight_decay: float = 1e-4, label_smoothing: float = 0.1,
                    bn_affine: bool = False, channels_last: bool = True, progress: bool = False) -> dict[str, list[float]]:
    """Fine-tune `model` in place on `train_loader` (training images, *test-time* preprocessing at the test resolution).

    SGD (momentum 0.9) with a cosine schedule over all steps, short and gentle as in the FixRes
    recipe. The last BN's statistics restart from zero and average over the whole run (see
    `recalibrate_bn` for why). Returns the per-epoch mean training loss.
    """
    if not isinstance(epochs, int) or epochs < 1 or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"epochs must be an integer >= 1 and lr > 0, got epochs={epochs}, lr={lr}")
    params = set_trainable(model, adapt, bn_affine)
    optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * max(1, len(train_loader)))  # type: ignore[arg-type]
    bn = last_batchnorm(model)
    saved_momentum = bn.momentum
    if adapt != "all":
        bn.reset_running_stats()
        bn.momentum = None
    device = next(model.parameters()).device
    history: list[float] = []
    try:
        for epoch in range(epochs):
            _set_modes(model, adapt)
            total, count = 0.0, 0
            for x, y in train_loader:
                loss = F.cross_entropy(model(_to_model(x, model, channels_last)), y.to(device), label_smoothing=label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                total, count = total + loss.item() * len(y), count + len(y)
            history.append(total / max(count, 1))
            if progress:
                print(f"fixres fine-tune epoch {epoch + 1}/{epochs}: train loss {history[-1]:.4f}")
    finally:
        bn.momentum = saved_momentum
        for p in model.parameters():
            p.requires_grad_(True)
        model.eval()
    return {"train_loss": history}


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor, max_iter: int = 100) -> float:
    """The temperature T > 0 that minimises the NLL of softmax(logits / T) (Guo et al., ICML 2017).

    Why FixRes needs it (measured on Fashion-MNIST): with the last BN re-estimated at the test
    resolution the pooled features shrink back to their train-mode scale, which the label-smoothed
    classifier maps to under-confident logits; top-1 holds but the loss doubles and ECE grows
    several-fold. One scalar fitted on validation logits repairs that without changing any argmax.
    """
    if logits.ndim != 2 or len(logits) != len(targets) or len(targets) == 0:
        raise ValueError(f"need (N, classes) logits and N targets, got {tuple(logits.shape)} and {tuple(targets.shape)}")
    logits, targets = logits.detach().float(), targets.long()
    log_t = torch.zeros((), requires_grad=True)  # optimise log T: T stays positive
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), targets)
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return float(log_t.detach().exp())


@torch.no_grad()
def fold_temperature(model: nn.Module, temperature: float) -> nn.Module:
    """Divide the linear classifier by `temperature`, so the saved model needs no extra step at load time."""
    if not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
    head = model.get_classifier()
    if not isinstance(head, nn.Linear):
        raise ValueError(f"temperature scaling folds into a linear classifier; this model's is {type(head).__name__}")
    head.weight.div_(temperature)
    if head.bias is not None:
        head.bias.div_(temperature)
    return model
