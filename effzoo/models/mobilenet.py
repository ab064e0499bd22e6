"""MobileNetV2 (Sandler et al., CVPR 2018, arXiv:1801.04381) built from the same MBConv blocks,
scaled by the same compound rule as EfficientNet (paper Table 3 scales it too).

    >>> create_model("mobilenetv2_100", phi=1)                       # d=1.2, w=1.1, 256 px
    >>> create_model("mobilenetv2_100", depth_multiplier=4.0)        # the paper's depth-only row
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..scaling import resolve_scaling, round_channels
from .efficientnet import build_efficientnet, dropout_for_phi
from .mbconv import MBConvNet, MBConvStage
from .registry import register_model

# MobileNetV2 Table 2 (t = expand, c = out channels, n = repeats, s = stride); no squeeze-excite.
MOBILENETV2_STAGES = (
    #            expand kernel stride out_chs repeats se
    MBConvStage(1, 3, 1, 16, 1, 0.0),
    MBConvStage(6, 3, 2, 24, 2, 0.0),
    MBConvStage(6, 3, 2, 32, 3, 0.0),
    MBConvStage(6, 3, 2, 64, 4, 0.0),
    MBConvStage(6, 3, 1, 96, 3, 0.0),
    MBConvStage(6, 3, 2, 160, 3, 0.0),
    MBConvStage(6, 3, 1, 320, 1, 0.0),
)
WIDTHS = {"mobilenetv2_035": 0.35, "mobilenetv2_050": 0.5, "mobilenetv2_075": 0.75, "mobilenetv2_100": 1.0, "mobilenetv2_140": 1.4}
HUB_IDS = {
    "mobilenetv2_050": "timm/mobilenetv2_050.lamb_in1k",
    "mobilenetv2_100": "timm/mobilenetv2_100.ra_in1k",
    "mobilenetv2_140": "timm/mobilenetv2_140.ra_in1k",
}


def _mobilenetv2(name: str, base_width: float, phi: float | None = None,
                 coefficients: tuple[float, float, float] | None = None, **kwargs: Any) -> MBConvNet:
    scale_args = {k: kwargs.pop(k) for k in ("depth_multiplier", "width_multiplier", "resolution") if k in kwargs}
    scaling = resolve_scaling(phi=phi, coefficients=coefficients, **scale_args)
    scaling["width"] *= base_width  # the variant's own width is the starting point of the scaling
    scaling.update(family="mobilenetv2", preset=name)
    width = scaling["width"]
    model = build_efficientnet(
        name, scaling, default_drop_rate=dropout_for_phi(phi or 0.0), stages=MOBILENETV2_STAGES,
        act_layer=nn.ReLU6, head_chs=max(1280, round_channels(1280, width)), **kwargs,
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
