"""ResNet (He et al., CVPR 2016, arXiv:1512.03385), scaled by the same compound rule as EfficientNet.

Depth scales blocks per stage (ceil), width scales every stage's channels (rounded to 8),
resolution scales the default input size. Module names are timm's/torchvision's (`conv1`,
`layer1.0.conv1`, `downsample.0`, `fc`), so their weights load as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..scaling import check_multipliers, resolve_scaling, round_channels, round_repeats
from .base import ZooModel, auto_small_input, make_pretrained_cfg
from .features import FeatureStage
from .grad_checkpoint import run_stage
from .init import init_weights
from .layers import DropPath, drop_path_rates
from .registry import register_model


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_chs: int, chs: int, stride: int, drop_path: float) -> None:
        super().__init__()
        out_chs = chs * self.expansion
        self.conv1 = nn.Conv2d(in_chs, chs, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(chs)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(chs, out_chs, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chs)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.act2 = nn.ReLU(inplace=True)
        self.downsample = _downsample(in_chs, out_chs, stride)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        return self.act2(shortcut + self.drop_path(out))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_chs: int, chs: int, stride: int, drop_path: float) -> None:
        super().__init__()
        out_chs = chs * self.expansion
        self.conv1 = nn.Conv2d(in_chs, chs, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(chs)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(chs, chs, 3, stride, 1, bias=False)  # stride on the 3x3 ("ResNet v1.5")
        self.bn2 = nn.BatchNorm2d(chs)
        self.act2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(chs, out_chs, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_chs)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.act3 = nn.ReLU(inplace=True)
        self.downsample = _downsample(in_chs, out_chs, stride)

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.act2(self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x))))))
        out = self.bn3(self.conv3(out))
        return self.act3(shortcut + self.drop_path(out))


def _downsample(in_chs: int, out_chs: int, stride: int) -> nn.Module | None:
    if stride == 1 and in_chs == out_chs:
        return None
    return nn.Sequential(nn.Conv2d(in_chs, out_chs, 1, stride, bias=False), nn.BatchNorm2d(out_chs))


@dataclass(frozen=True)
class ResNetStage:
    chs: int  # bottleneck width (output is chs * expansion)
    repeats: int
    stride: int


STAGE_CHANNELS = (64, 128, 256, 512)
STAGE_STRIDES = (1, 2, 2, 2)
LAYOUTS = {  # blocks per stage and block type, Table 1 of the ResNet paper
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
    "resnet101": (Bottleneck, (3, 4, 23, 3)),
    "resnet152": (Bottleneck, (3, 8, 36, 3)),
}
HUB_IDS = {name: f"timm/{name}.a1_in1k" for name in LAYOUTS}


class ResNet(ZooModel):
    """7x7 stem conv + max-pool, four stages of residual blocks, pool, dropout, linear `fc`.

    `small_input` drops the stem's stride and the max-pool (total stride 32 -> 8) for small images.
    """

    classifier_name = "fc"
    stem_modules = ("conv1", "bn1", "act1", "maxpool")

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], stages: list[ResNetStage], *, stem_chs: int = 64,
                 in_chans: int = 3, num_classes: int = 1000, drop_rate: float = 0.0, drop_path_rate: float = 0.0,
                 small_input: bool = False, zero_init_last: bool = True) -> None:
        super().__init__(in_chans, stages[-1].chs * block.expansion, num_classes, drop_rate)
        self.conv1 = nn.Conv2d(in_chans, stem_chs, 7, 1 if small_input else 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_chs)
        self.act1 = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity() if small_input else nn.MaxPool2d(3, 2, 1)
        self.total_stride = (1 if small_input else 4) * 8
        self.drop_path_rate = drop_path_rate  # what progressive learning ramps towards
        rates = iter(drop_path_rates(sum(s.repeats for s in stages), drop_path_rate))
        in_chs = stem_chs
        for i, stage in enumerate(stages):
            blocks = []
            for j in range(stage.repeats):
                blocks.append(block(in_chs, stage.chs, stage.stride if j == 0 else 1, next(rates)))
                in_chs = stage.chs * block.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.fc = self._make_classifier(num_classes)
        self.zero_init_last = zero_init_last

    def init_weights(self, scheme: str) -> None:
        init_weights(self, scheme)
        if self.zero_init_last:  # each residual branch starts as zero: the net starts shallow (Goyal et al. 2017)
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(m.last_bn().weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        for name in self.stage_names():
            x = run_stage(getattr(self, name), x, self.grad_checkpointing)
        return x

    def stage_names(self) -> list[str]:
        return ["layer1", "layer2", "layer3", "layer4"]

    def feature_plan(self) -> list[FeatureStage]:
        # timm's levels: the stem's activation (before the max-pool), then each layer's output.
        reduction = self.conv1.stride[0]
        plan = [FeatureStage(("conv1", "bn1", "act1"), self.conv1.out_channels, reduction)]
        reduction *= 1 if isinstance(self.maxpool, nn.Identity) else 2
        for i, name in enumerate(self.stage_names()):
            first, last = getattr(self, name)[0], getattr(self, name)[-1]
            reduction *= 1 if first.downsample is None else first.downsample[0].stride[0]  # a strided block has one
            modules = (("maxpool",) if i == 0 else ()) + (name,)
            plan.append(FeatureStage(modules, last.last_bn().num_features, reduction))
        return plan


def _resnet(name: str, phi: float | None = None, coefficients: tuple[float, float, float] | None = None, *,
            in_chans: int = 3, num_classes: int = 1000, drop_rate: float | None = None,
            drop_path_rate: float | None = None, small_input: bool | None = None, init: str = "efficientnet",
            **scale_args: Any) -> ResNet:
    block, repeats = LAYOUTS[name]
    scaling = resolve_scaling(phi=phi, coefficients=coefficients, **scale_args)
    scaling.update(family="resnet", preset=name)
    depth, width = scaling["depth"], scaling["width"]
    check_multipliers(depth, width, scaling["resolution"], min(STAGE_CHANNELS))
    if small_input is None:  # auto: decided by the resolution the scaling rule gives
        small_input = auto_small_input(scaling["input_resolution"])
    stages = [ResNetStage(round_channels(c, width), round_repeats(n, depth), s)
              for c, n, s in zip(STAGE_CHANNELS, repeats, STAGE_STRIDES)]
    model = ResNet(block, stages, stem_chs=round_channels(64, width), in_chans=in_chans, num_classes=num_classes,
                   drop_rate=0.0 if drop_rate is None else drop_rate,
                   drop_path_rate=0.0 if drop_path_rate is None else drop_path_rate, small_input=small_input)
    model.init_weights(init)
    model.pretrained_cfg = make_pretrained_cfg(
        name, in_chans=in_chans, num_classes=num_classes, resolution=scaling["input_resolution"], scaling=scaling,
        first_conv="conv1", classifier="fc", total_stride=model.total_stride, small_input=small_input,
    )
    if phi is None and not scale_args:
        model.pretrained_cfg.hf_hub_id = HUB_IDS[name]
    return model


def _register() -> None:
    for name in LAYOUTS:
        def builder(phi: float | None = None, _name: str = name, **kwargs: Any) -> ResNet:
            return _resnet(_name, phi=phi, **kwargs)

        builder.__name__ = name
        builder.__doc__ = f"{name}; phi= applies compound scaling (blocks, channels, resolution)."
        register_model(builder)


_register()


@register_model
def resnet(phi: float = 0.0, **kwargs: Any) -> ResNet:
    """The ResNet family for `--model resnet --phi N`: ResNet-50 scaled by phi."""
    return _resnet("resnet50", phi=phi, **kwargs)
