"""Networks described by a stage table, and the builder that scales the table and builds the net.

A table holds one `BlockStage` row per stage, read like Table 1 of the EfficientNet paper. Each
row names the block class its stage is made of, so a new block kind is a new class plus table
rows: the network calls `stage.block(...)` with one keyword signature (`StageBlock`) and never
asks which kind it got. Module names follow timm (`conv_stem`, `bn1`, `blocks.<stage>.<block>...`,
`conv_head`, `bn2`, `classifier`), so timm state dicts load strictly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Iterator, Protocol, Sequence

import torch
from torch import nn

from ..scaling import check_multipliers, round_channels, round_repeats
from .base import ZooModel, auto_small_input, make_pretrained_cfg
from .features import FeatureStage
from .grad_checkpoint import run_stage
from .init import init_weights
from .layers import drop_path_rates


class StageBlock(Protocol):
    """The constructor every block class offers, so that any of them can stand in a table row."""

    def __call__(self, in_chs: int, out_chs: int, *, kernel: int, stride: int, expand_ratio: int,
                 se_ratio: float, act_layer: type[nn.Module], drop_path: float) -> nn.Module: ...


@dataclass(frozen=True)
class BlockStage:
    """One stage: `repeats` blocks of class `block`; only the first block strides and changes width."""

    block: StageBlock  # block class of every block in the stage (e.g. blocks.InvertedResidual)
    expand_ratio: int  # width of the inverted bottleneck relative to the block input
    kernel: int  # kernel of the block's spatial conv (depthwise in MBConv, full in Fused-MBConv)
    stride: int  # stride of the stage's first block
    out_chs: int  # output channels of every block in the stage
    repeats: int  # number of blocks
    se_ratio: float = 0.25  # SE reduction, relative to the block *input* channels; 0 disables SE

    def scaled(self, width: float, depth: float) -> BlockStage:
        return replace(self, out_chs=round_channels(self.out_chs, width), repeats=round_repeats(self.repeats, depth))


class MBConvNet(ZooModel):
    """Stem conv -> stages of table-chosen blocks -> 1x1 head conv -> pool -> dropout -> linear.

    `stages`, `stem_chs` and `head_chs` are already scaled; `build_stage_net` does the scaling.
    `small_input` removes the stem's and the first strided stage's stride-2 (total stride 32 -> 8)
    so that 32-px images still end at a 4x4 map; the weights keep their shapes.
    """

    stem_modules = ("conv_stem", "bn1", "act1")
    neck_modules = ("conv_head", "bn2", "act2")

    def __init__(self, stages: Sequence[BlockStage], *, stem_chs: int, head_chs: int,
                 act_layer: type[nn.Module] = nn.SiLU, in_chans: int = 3, num_classes: int = 1000,
                 drop_rate: float = 0.2, drop_path_rate: float = 0.2, small_input: bool = False) -> None:
        super().__init__(in_chans, head_chs, num_classes, drop_rate)
        stages = list(stages)
        # timm's feature levels: a stage ends one where the *published* next stage halves the resolution
        # (decided before small_input removes strides, so a level is the same module either way).
        self._level_ends = [i for i in range(len(stages)) if i == len(stages) - 1 or stages[i + 1].stride > 1]
        self._stem_level = stages[0].stride > 1  # the stem's map is a level when the first stage strides
        if small_input:
            first = next(i for i, s in enumerate(stages) if s.stride > 1)
            stages[first] = replace(stages[first], stride=1)
        self.total_stride = (1 if small_input else 2) * math.prod(s.stride for s in stages)
        self._stage_strides = [s.stride for s in stages]
        self._stage_chs = [s.out_chs for s in stages]
        self.conv_stem = nn.Conv2d(in_chans, stem_chs, 3, 1 if small_input else 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_chs)
        self.act1 = act_layer(inplace=True)

        self.drop_path_rate = drop_path_rate  # what progressive learning ramps towards
        rates = iter(drop_path_rates(sum(s.repeats for s in stages), drop_path_rate))
        in_chs, blocks = stem_chs, []
        for stage in stages:
            blocks.append(_make_stage(stage, in_chs, act_layer, rates))
            in_chs = stage.out_chs
        self.blocks = nn.Sequential(*blocks)
        self.conv_head = nn.Conv2d(in_chs, head_chs, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(head_chs)
        self.act2 = act_layer(inplace=True)
        self.classifier = self._make_classifier(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        x = self.act1(self.bn1(self.conv_stem(x)))
        for stage in self.blocks:
            x = run_stage(stage, x, self.grad_checkpointing)
        return self.act2(self.bn2(self.conv_head(x)))

    def stage_names(self) -> list[str]:
        return [f"blocks.{i}" for i in range(len(self.blocks))]

    def feature_plan(self) -> list[FeatureStage]:
        plan, start, reduction = [], 0, self.conv_stem.stride[0]
        stem = self.stem_modules
        if self._stem_level:
            plan.append(FeatureStage(stem, self.conv_stem.out_channels, reduction))
            stem = ()
        for end in self._level_ends:
            reduction *= math.prod(self._stage_strides[start:end + 1])
            names = tuple(f"blocks.{i}" for i in range(start, end + 1))
            plan.append(FeatureStage(stem + names, self._stage_chs[end], reduction))
            start, stem = end + 1, ()
        return plan


def _make_stage(stage: BlockStage, in_chs: int, act_layer: type[nn.Module], rates: Iterator[float]) -> nn.Sequential:
    """The stage's blocks; `rates` yields the next drop-path rate, counted over the whole net."""
    blocks = []
    for i in range(stage.repeats):
        blocks.append(stage.block(
            in_chs if i == 0 else stage.out_chs, stage.out_chs, kernel=stage.kernel,
            stride=stage.stride if i == 0 else 1, expand_ratio=stage.expand_ratio, se_ratio=stage.se_ratio,
            act_layer=act_layer, drop_path=next(rates),
        ))
    return nn.Sequential(*blocks)


def dropout_for_phi(phi: float) -> float:
    """Dropout grows linearly from 0.2 (B0) to 0.5 (B7) with phi, as in the paper (clamped to [0, 0.5])."""
    return min(0.5, max(0.0, 0.2 + 0.3 * phi / 7.0))


def build_stage_net(
    architecture: str,
    scaling: dict[str, Any],
    stages: Sequence[BlockStage],
    *,
    stem_chs: int,
    head_chs: int,
    default_drop_rate: float,
    shrink_head: bool = True,
    act_layer: type[nn.Module] = nn.SiLU,
    in_chans: int = 3,
    num_classes: int = 1000,
    drop_rate: float | None = None,
    drop_path_rate: float | None = None,
    small_input: bool | None = None,
    init: str = "efficientnet",
) -> MBConvNet:
    """Scale an unscaled stage table, stem and head by `scaling` (width, depth) and build the network
    with its init and preprocessing config. `shrink_head=False` keeps the head at least `head_chs`
    wide when width < 1 (MobileNetV2 does; EfficientNet scales its head like every other layer)."""
    width, depth = scaling["width"], scaling["depth"]
    # Checked before any rounding, so bad multipliers get this message rather than int()'s.
    check_multipliers(depth, width, scaling["resolution"], min(s.out_chs for s in stages))
    scaled_head = round_channels(head_chs, width)
    if small_input is None:  # auto: decided by the resolution the scaling rule gives
        small_input = auto_small_input(scaling["input_resolution"])
    model = MBConvNet(
        [s.scaled(width, depth) for s in stages],
        stem_chs=round_channels(stem_chs, width),
        head_chs=scaled_head if shrink_head else max(head_chs, scaled_head),
        act_layer=act_layer,
        in_chans=in_chans,
        num_classes=num_classes,
        drop_rate=default_drop_rate if drop_rate is None else drop_rate,
        drop_path_rate=0.2 if drop_path_rate is None else drop_path_rate,
        small_input=small_input,
    )
    init_weights(model, init)
    model.pretrained_cfg = make_pretrained_cfg(
        architecture, in_chans=in_chans, num_classes=num_classes, resolution=scaling["input_resolution"],
        scaling=scaling, first_conv="conv_stem", classifier="classifier", total_stride=model.total_stride,
        small_input=small_input,
    )
    return model
