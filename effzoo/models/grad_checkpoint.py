"""Activation checkpointing: keep only each block's input in the forward pass and recompute the block's
activations during backward (Chen et al. 2016, "Training Deep Nets with Sublinear Memory Cost").

Every family runs its stages through `run_stage`, so `model.set_grad_checkpointing()` works the same
for all of them, per block, as timm does. Two things make the recomputed pass an exact replay:
torch restores the random state (stochastic depth draws the same mask), and `_FrozenBatchNormStats`
keeps batch norm from updating its running statistics a second time (a train-mode BN would
otherwise apply its momentum twice per step, so a checkpointed run would drift from a plain one).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

_BatchNorm = nn.modules.batchnorm._BatchNorm


class _FrozenBatchNormStats:
    """During recomputation: momentum 0 leaves running mean/var exactly as they are, and the batch
    counter is put back on exit. The batch statistics used for normalizing are the same as in the
    first pass, so outputs and gradients are unchanged."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.saved: list[tuple[_BatchNorm, Any, torch.Tensor | None]] = []

    def __enter__(self) -> None:
        for bn in self.module.modules():
            if isinstance(bn, _BatchNorm) and bn.training and bn.track_running_stats:
                count = bn.num_batches_tracked.clone() if bn.num_batches_tracked is not None else None
                self.saved.append((bn, bn.momentum, count))
                bn.momentum = 0.0

    def __exit__(self, *exc: Any) -> None:
        for bn, momentum, count in self.saved:
            bn.momentum = momentum
            if count is not None:
                bn.num_batches_tracked.copy_(count)
        self.saved.clear()


def checkpointed(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`block(x)` whose activations are recomputed in backward (non-reentrant: works with frozen
    parameters and inputs that need no gradient)."""
    return checkpoint(block, x, use_reentrant=False,
                      context_fn=lambda: (contextlib.nullcontext(), _FrozenBatchNormStats(block)))


def run_stage(stage: nn.Module, x: torch.Tensor, enabled: bool) -> torch.Tensor:
    """Run a stage (a sequence of blocks), checkpointing block by block when `enabled` and autograd
    is recording; otherwise (evaluation, no_grad) a plain call."""
    if not (enabled and torch.is_grad_enabled()):
        return stage(x)
    for block in stage:
        x = checkpointed(block, x)
    return x
