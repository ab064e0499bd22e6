"""Backbones: `create_model(name, features_only=True, out_indices=(1, 2, 3, 4))` returns the maps of the
network's feature levels instead of logits, as timm's `features_only` models do (for detection and
segmentation heads, FPNs, or your own pooling).

A family says where its levels are with `feature_plan()`: one `FeatureStage` per level, naming the
modules that lead from the previous level to it. The levels are timm's: MBConv nets end a level
where the next stage would halve the resolution (and at the last stage), judged from the published
strides, so `small_input` (which removes two stride-2s) changes a level's reduction but never which
module it ends at; ResNet has the stem (before the max-pool) and its four layers.

`FeatureNet` keeps the modules it needs under their original names (`conv_stem`, `blocks.3`, ...), so
its state dict is the backbone's minus the head and any stage after the last requested level.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from .grad_checkpoint import run_stage


@dataclass(frozen=True)
class FeatureStage:
    """One feature level: the modules (dotted names in the model) that run from the previous level to
    this one, and the map they produce."""

    modules: tuple[str, ...]
    num_chs: int
    reduction: int  # input size / map size


class FeatureInfo:
    """Channels, reduction and module of each returned map, in output order (timm's `feature_info`)."""

    def __init__(self, levels: Sequence[FeatureStage], out_indices: Sequence[int]) -> None:
        self.out_indices = tuple(out_indices)
        self.info = [{"num_chs": levels[i].num_chs, "reduction": levels[i].reduction,
                      "module": levels[i].modules[-1], "index": i} for i in self.out_indices]

    def _get(self, key: str, idx: int | None) -> Any:
        return [d[key] for d in self.info] if idx is None else self.info[idx][key]

    def channels(self, idx: int | None = None) -> Any:
        return self._get("num_chs", idx)

    def reduction(self, idx: int | None = None) -> Any:
        return self._get("reduction", idx)

    def module_name(self, idx: int | None = None) -> Any:
        return self._get("module", idx)

    def get_dicts(self) -> list[dict[str, Any]]:
        return [dict(d) for d in self.info]

    def __getitem__(self, idx: int) -> dict[str, Any]:
        return self.info[idx]

    def __len__(self) -> int:
        return len(self.info)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.info)

    def __repr__(self) -> str:
        return f"FeatureInfo({self.info})"


def check_out_indices(out_indices: Sequence[int] | None, levels: Sequence[FeatureStage], model_name: str) -> tuple[int, ...]:
    """Sorted, distinct level indices; negative ones count from the end (-1: the last level)."""
    n = len(levels)
    if out_indices is None:
        return tuple(range(n))
    if isinstance(out_indices, int) or not all(isinstance(i, int) and not isinstance(i, bool) for i in out_indices):
        raise ValueError(f"out_indices must be a sequence of integers, got {out_indices!r}")
    bad = [i for i in out_indices if not -n <= i < n]
    if bad or not out_indices:
        levels_text = ", ".join(f"{i}: {s.modules[-1]} ({s.num_chs} ch, /{s.reduction})" for i, s in enumerate(levels))
        raise ValueError(f"out_indices {tuple(out_indices)} out of range: {model_name} has {n} feature levels "
                         f"(0-{n - 1}; -1 is the last): {levels_text}")
    return tuple(sorted({i % n for i in out_indices}))


def _graft(root: nn.Module, path: str, module: nn.Module) -> None:
    """Register `module` under the dotted `path` of `root`, creating empty containers on the way, so the
    state-dict keys stay those of the full model."""
    *parents, leaf = path.split(".")
    node = root
    for part in parents:
        if part not in node._modules:
            node.add_module(part, nn.Module())
        node = node._modules[part]
    node.add_module(leaf, module)


class FeatureNet(nn.Module):
    """A zoo model cut after its last requested level; `forward` returns the list of maps at `out_indices`.

    Built by `create_model(..., features_only=True)` after any pretrained weights are loaded, so it shares
    the full model's modules (and parameters) rather than copying them.
    """

    def __init__(self, model: nn.Module, out_indices: Sequence[int] | None = None) -> None:
        super().__init__()
        levels = model.feature_plan()
        cfg = model.pretrained_cfg
        name = cfg.get("model_name") or cfg.get("architecture") or type(model).__name__
        self.out_indices = check_out_indices(out_indices, levels, name)
        self._paths = [levels[i].modules for i in range(max(self.out_indices) + 1)]
        for paths in self._paths:
            for path in paths:
                _graft(self, path, model.get_submodule(path))
        self._stages = frozenset(model.stage_names())
        self.feature_info = FeatureInfo(levels, self.out_indices)
        self.pretrained_cfg = model.pretrained_cfg
        self.in_chans = model.in_chans
        self.grad_checkpointing = False

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in backward instead of keeping them (see `grad_checkpoint`)."""
        self.grad_checkpointing = bool(enable)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f"expected a batch of shape (N, {self.in_chans}, H, W), got {tuple(x.shape)}")
        features = []
        for level, paths in enumerate(self._paths):
            for path in paths:
                module = self.get_submodule(path)
                x = run_stage(module, x, self.grad_checkpointing) if path in self._stages else module(x)
            if level in self.out_indices:
                features.append(x)
        return features
