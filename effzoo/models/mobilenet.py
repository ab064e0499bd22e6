"""MobileNetV2 (Sandler et al., CVPR 2018, arXiv:1801.04381) built from the same MBConv blocks,
scaled by the same compound rule as EfficientNet (paper Table 3 scales it too).

    >>> create_model("mobilenetv2_100", phi=1)                       # d=1.2, w=1.1, 256 px
    >>> create_model("mobilenetv2_100", depth_multiplier=4.0)        # the paper's depth-only row
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..scaling import resolve_scaling
from .blocks import DepthwiseSeparable, InvertedResidual
from .registry import register_model
from .stage_net import BlockStage, MBConvNet, build_stage_net, dropout_for_phi

# MobileNetV2 Table 2 (t = expand, c = out channels, n = repeats, s = stride); no squeeze-excite.
# The t=1 bottleneck has no expand conv, hence its own block class (timm's DepthwiseSeparable).
MOBILENETV2_STAGES = (
    #          block               t  k  s  c    n  se
    BlockStage(DepthwiseSeparable, 1, 3, 1, 16, 1, 0.0),
    BlockStage(InvertedResidual,   6, 3, 2, 24, 2, 0.0),
    BlockStage(InvertedResidual,   6, 3, 2, 32, 3, 0.0),
    BlockStage(InvertedResidual,   6, 3, 2, 64, 4, 0.0),
    BlockStage(InvertedResidual,   6, 3, 1, 96, 3, 0.0),
    BlockStage(InvertedResidual,   6, 3, 2, 160, 3, 0.0),
    BlockStage(InvertedResidual,   6, 3, 1, 320, 1, 0.0),
)
STEM_CHS = 32  # Table 2's first conv2d
HEAD_CHS = 1280  # Table 2's last conv2d 1x1; the paper never narrows it when width < 1
WIDTHS = {"mobilenetv2_035": 0.35, "mobilenetv2_050": 0.5, "mobilenetv2_075": 0.75, "mobilenetv2_100": 1.0, "mobilenetv2_140": 1.4}
HUB_IDS = {
    "mobilenetv2_050": "timm/mobilenetv2_050.lamb_in1k",
    "mobilenetv2_100": "timm/mobilenetv2_100.ra_in1k",
    "mobilenetv2_140": "timm/mobilenetv2_140.ra_in1k",
}


def _mobilenetv2(name: str, base_width: float, phi: float | None = None,
                 coefficients: tuple[float, float, float] | None = None, **kwargs: Any) -> MBConvNet:
    scale_args = {k: kwargs.pop(k) for k in ("depth_multiplier", "width_multiplier", "resolution", "base_resolution") if k in kwargs}
    scaling = resolve_scaling(phi=phi, coefficients=coefficients, **scale_args)
    scaling["width"] *= base_width  # the variant's own width is the starting point of the scaling
    scaling.update(family="mobilenetv2", preset=name)
    model = build_stage_net(
        name, scaling, MOBILENETV2_STAGES, stem_chs=STEM_CHS, head_chs=HEAD_CHS, shrink_head=False,
        default_drop_rate=dropout_for_phi(phi or 0.0), act_layer=nn.ReLU6, **kwargs,
    )
    if name in HUB_IDS and phi is None and not scale_args:
        model.pretrained_cfg["hf_hub_id"] = HUB_IDS[name]
    return model


def _register() -> None:
    for name, width in WIDTHS.items():
        def builder(phi: float | None = None, _name: str = name, _width: float = width, **kwargs: Any) -> MBConvNet:
            return _mobilenetv2(_name, _width, phi=phi, **kwargs)

        builder.__name__ = name
        builder.__doc__ = f"MobileNetV2 at width {width}; phi= applies compound scaling on top."
        register_model(builder)


_register()


@register_model
def mobilenetv2(phi: float = 0.0, **kwargs: Any) -> MBConvNet:
    """The MobileNetV2 family for `--model mobilenetv2 --phi N`: mobilenetv2_100 scaled by phi."""
    return _mobilenetv2("mobilenetv2", 1.0, phi=phi, **kwargs)
