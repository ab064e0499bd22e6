"""The MBConv family of blocks: MobileNetV2's inverted residual, its expansion-1 form, and
EfficientNetV2's Fused-MBConv.

Every block class takes the same keyword constructor (`stage_net.StageBlock`), so a stage table
row can name any of them and the network builder never branches on the block kind. Module names
follow timm (`conv_dw`, `conv_pw`, `conv_pwl`, `conv_exp`, `conv`, `bn1`..`bn3`, `se`) so timm
state dicts load strictly.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import DropPath, SqueezeExcite


def _squeeze_excite(chs: int, in_chs: int, se_ratio: float, act_layer: type[nn.Module]) -> nn.Module:
    # SE width comes from the block *input* (in_chs * 0.25), not the expanded width, as in the official code.
    return SqueezeExcite(chs, max(1, int(in_chs * se_ratio)), act_layer) if se_ratio > 0 else nn.Identity()


class DepthwiseSeparable(nn.Module):
    """MBConv with expansion 1: depthwise conv, SE, pointwise projection (no expand conv)."""

    def __init__(self, in_chs: int, out_chs: int, *, kernel: int, stride: int, expand_ratio: int,
                 se_ratio: float, act_layer: type[nn.Module], drop_path: float) -> None:
        super().__init__()
        if expand_ratio != 1:  # a row asking for expansion here would silently build a different net
            raise ValueError(f"DepthwiseSeparable has no expansion; got expand_ratio={expand_ratio}")
        self.has_skip = stride == 1 and in_chs == out_chs
        self.conv_dw = nn.Conv2d(in_chs, in_chs, kernel, stride, kernel // 2, groups=in_chs, bias=False)
        self.bn1 = nn.BatchNorm2d(in_chs)
        self.act1 = act_layer(inplace=True)
        self.se = _squeeze_excite(in_chs, in_chs, se_ratio, act_layer)
        self.conv_pw = nn.Conv2d(in_chs, out_chs, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chs)
        self.drop_path = DropPath(drop_path) if self.has_skip and drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.se(self.act1(self.bn1(self.conv_dw(x))))
        out = self.bn2(self.conv_pw(out))  # linear bottleneck: no activation after the projection
        return x + self.drop_path(out) if self.has_skip else out


class InvertedResidual(nn.Module):
    """MBConv (Sandler et al. 2018; Tan & Le 2019): 1x1 expand, kxk depthwise, SE, 1x1 linear projection."""

    def __init__(self, in_chs: int, out_chs: int, *, kernel: int, stride: int, expand_ratio: int,
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
        self.se = _squeeze_excite(mid_chs, in_chs, se_ratio, act_layer)
        self.conv_pwl = nn.Conv2d(mid_chs, out_chs, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_chs)
        self.drop_path = DropPath(drop_path) if self.has_skip and drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv_pw(x)))
        out = self.se(self.act2(self.bn2(self.conv_dw(out))))
        out = self.bn3(self.conv_pwl(out))
        return x + self.drop_path(out) if self.has_skip else out


class FusedMBConv(nn.Module):
    """Fused-MBConv (Tan & Le 2021, EfficientNetV2): one regular kxk conv does the expansion and the
    stride, then a 1x1 linear projection; no depthwise conv (slow in early, wide-map layers) and no SE.

    At expansion 1 the paper's block is a single kxk conv + BN + act (timm's `ConvBnAct`: `conv`,
    `bn1`); otherwise timm's `EdgeResidual` names (`conv_exp`, `bn1`, `conv_pwl`, `bn2`).
    """

    # timm's pre-release efficientnetv2_rw_s keeps the 1x1 projection at expansion 1 (see EdgeResidual).
    single_conv_at_expand1 = True

    def __init__(self, in_chs: int, out_chs: int, *, kernel: int, stride: int, expand_ratio: int,
                 se_ratio: float, act_layer: type[nn.Module], drop_path: float) -> None:
        super().__init__()
        if se_ratio > 0:  # V2 puts SE only in the MBConv stages; a row asking for it here is a typo
            raise ValueError(f"{type(self).__name__} has no squeeze-excite; got se_ratio={se_ratio}")
        self.has_skip = stride == 1 and in_chs == out_chs
        self.project = expand_ratio != 1 or not self.single_conv_at_expand1
        if self.project:  # timm's EdgeResidual
            mid_chs = in_chs * expand_ratio
            self.conv_exp = nn.Conv2d(in_chs, mid_chs, kernel, stride, kernel // 2, bias=False)
            self.bn1 = nn.BatchNorm2d(mid_chs)
            self.act1 = act_layer(inplace=True)
            self.conv_pwl = nn.Conv2d(mid_chs, out_chs, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(out_chs)
        else:  # timm's ConvBnAct
            self.conv = nn.Conv2d(in_chs, out_chs, kernel, stride, kernel // 2, bias=False)
            self.bn1 = nn.BatchNorm2d(out_chs)
            self.act1 = act_layer(inplace=True)
        self.drop_path = DropPath(drop_path) if self.has_skip and drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.project:
            out = self.bn2(self.conv_pwl(self.act1(self.bn1(self.conv_exp(x)))))  # linear projection
        else:
            out = self.act1(self.bn1(self.conv(x)))
        return x + self.drop_path(out) if self.has_skip else out


class EdgeResidual(FusedMBConv):
    """Fused-MBConv that keeps its 1x1 projection even at expansion 1 (timm's `EdgeResidual`), as in
    timm's `efficientnetv2_rw_s`, designed from the paper's figure before the official code appeared."""

    single_conv_at_expand1 = False
