"""MBConv networks: the block of MobileNetV2 and EfficientNet, and the network both families share.

Module names follow timm (`conv_stem`, `bn1`, `blocks.<stage>.<block>.conv_pw` ...), so timm
state dicts load strictly. A network is described by a table of `MBConvStage` rows, one per
stage, read like Table 1 of the EfficientNet paper.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import torch
from torch import nn

from ..scaling import round_channels, round_repeats
from .base import ZooModel
from .layers import DropPath, SqueezeExcite, drop_path_rates


@dataclass(frozen=True)
class MBConvStage:
    """One stage: `repeats` MBConv blocks; only the first block strides and changes width."""

    expand_ratio: int  # width of the inverted bottleneck relative to the block input
    kernel: int  # depthwise kernel size
    stride: int  # stride of the stage's first block
    out_chs: int  # output channels of every block in the stage
    repeats: int  # number of blocks
    se_ratio: float = 0.25  # SE reduction, relative to the block *input* channels; 0 disables SE

    def scaled(self, width: float, depth: float) -> "MBConvStage":
        return replace(self, out_chs=round_channels(self.out_chs, width), repeats=round_repeats(self.repeats, depth))


class DepthwiseSeparable(nn.Module):
    """MBConv with expansion 1: depthwise conv, SE, pointwise projection (no expand conv)."""

    def __init__(self, in_chs: int, out_chs: int, kernel: int, stride: int, se_ratio: float,
                 act_layer: type[nn.Module], drop_path: float) -> None:
        super().__init__()
        self.has_skip = stride == 1 and in_chs == out_chs
        self.conv_dw = nn.Conv2d(in_chs, in_chs, kernel, stride, kernel // 2, groups=in_chs, bias=False)
        self.bn1 = nn.BatchNorm2d(in_chs)
        self.act1 = act_layer(inplace=True)
        self.se = SqueezeExcite(in_chs, max(1, int(in_chs * se_ratio)), act_layer) if se_ratio > 0 else nn.Identity()
        self.conv_pw = nn.Conv2d(in_chs, out_chs, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chs)
        self.drop_path = DropPath(drop_path) if self.has_skip and drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.se(self.act1(self.bn1(self.conv_dw(x))))
        out = self.bn2(self.conv_pw(out))  # linear bottleneck: no activation after the projection
        return x + self.drop_path(out) if self.has_skip else out


class InvertedResidual(nn.Module):
    """MBConv (Sandler et al. 2018; Tan & Le 2019): 1x1 expand, kxk depthwise, SE, 1x1 linear projection."""

    def __init__(self, in_chs: int, out_chs: int, kernel: int, stride: int, expand_ratio: int,
                 se_ratio: float, act_layer: type[nn.Module], drop_path: float) -> None:
        super().__init__()
        mid_chs = in_chs * expand_ratio
        self.has_skip = stride == 1 and in_chs == out_chs
        self.conv_pw = nn.Conv2d(in_chs, mid_chs, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid_chs)
        self.act1 = act_layer(inplace=True)
        self.conv_dw = nn.Conv2d(mid_chs, mid_chs, kernel, stride, kernel // 2, groups=mid_chs, bias=False)
        self.bn2 = nn.BatchNorm2d(mid_chs)
        self.act2 = act_layer(inplace=True)
        # SE width comes from the block input (in_chs * 0.25), as in the official code.
        self.se = SqueezeExcite(mid_chs, max(1, int(in_chs * se_ratio)), act_layer) if se_ratio > 0 else nn.Identity()
        self.conv_pwl = nn.Conv2d(mid_chs, out_chs, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_chs)
        self.drop_path = DropPath(drop_path) if self.has_skip and drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv_pw(x)))
        out = self.se(self.act2(self.bn2(self.conv_dw(out))))
        out = self.bn3(self.conv_pwl(out))
        return x + self.drop_path(out) if self.has_skip else out


class MBConvNet(ZooModel):
    """Stem conv -> stages of MBConv blocks -> 1x1 head conv -> pool -> dropout -> linear.

    `stages`, `stem_chs` and `head_chs` are already scaled; the family modules do the scaling.
    `small_input` removes the stem's and the first strided stage's stride-2 (total stride 32 -> 8)
    so that 32-px images still end at a 4x4 map; the weights keep their shapes.
    """

    def __init__(self, stages: Sequence[MBConvStage], *, stem_chs: int, head_chs: int,
                 act_layer: type[nn.Module] = nn.SiLU, in_chans: int = 3, num_classes: int = 1000,
                 drop_rate: float = 0.2, drop_path_rate: float = 0.2, small_input: bool = False) -> None:
        super().__init__(in_chans, head_chs, num_classes, drop_rate)
        stages = list(stages)
        if small_input:
            first = next(i for i, s in enumerate(stages) if s.stride > 1)
            stages[first] = replace(stages[first], stride=1)
        self.total_stride = (1 if small_input else 2) * _prod(s.stride for s in stages)
        self.conv_stem = nn.Conv2d(in_chans, stem_chs, 3, 1 if small_input else 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_chs)
        self.act1 = act_layer(inplace=True)

        rates = iter(drop_path_rates(sum(s.repeats for s in stages), drop_path_rate))
        in_chs, blocks = stem_chs, []
        for stage in stages:
            stage_blocks = []
            for i in range(stage.repeats):
                stride = stage.stride if i == 0 else 1
                if stage.expand_ratio == 1:
                    block = DepthwiseSeparable(in_chs, stage.out_chs, stage.kernel, stride, stage.se_ratio, act_layer, next(rates))
                else:
                    block = InvertedResidual(in_chs, stage.out_chs, stage.kernel, stride, stage.expand_ratio,
                                             stage.se_ratio, act_layer, next(rates))
                stage_blocks.append(block)
                in_chs = stage.out_chs
            blocks.append(nn.Sequential(*stage_blocks))
        self.blocks = nn.Sequential(*blocks)
        self.conv_head = nn.Conv2d(in_chs, head_chs, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(head_chs)
        self.act2 = act_layer(inplace=True)
        self.classifier = self._make_classifier(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        x = self.act1(self.bn1(self.conv_stem(x)))
        x = self.blocks(x)
        return self.act2(self.bn2(self.conv_head(x)))


def _prod(values) -> int:
    out = 1
    for v in values:
        out *= v
    return out
