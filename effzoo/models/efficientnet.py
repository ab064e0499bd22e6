"""EfficientNet (Tan & Le, ICML 2019, arXiv:1905.11946): the B0 baseline, the published B1-B8/L2
presets, and `efficientnet` + `phi` scaled exactly by compound scaling.

    >>> create_model("efficientnet_b3")          # the published preset (width 1.2, depth 1.4, 300 px)
    >>> create_model("efficientnet", phi=3)      # the formula: depth 1.2^3, width 1.1^3, 224 * 1.15^3 px
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from ..scaling import check_multipliers, resolve_scaling, round_channels
from .base import make_pretrained_cfg
from .init import init_weights
from .mbconv import MBConvNet, MBConvStage
from .registry import register_model

# Table 1 of the paper, stages 2-8 (stage 1 is the 3x3 stem conv, stage 9 the 1x1 head).
# Resolution in the comment is the stage's input size at 224 px.
EFFICIENTNET_B0_STAGES = (
    #            expand kernel stride out_chs repeats     # Table 1 stage, input resolution
    MBConvStage(1, 3, 1, 16, 1),  # 2  MBConv1, k3x3  112x112
    MBConvStage(6, 3, 2, 24, 2),  # 3  MBConv6, k3x3  112x112
    MBConvStage(6, 5, 2, 40, 2),  # 4  MBConv6, k5x5   56x56
    MBConvStage(6, 3, 2, 80, 3),  # 5  MBConv6, k3x3   28x28
    MBConvStage(6, 5, 1, 112, 3),  # 6  MBConv6, k5x5   14x14
    MBConvStage(6, 5, 2, 192, 4),  # 7  MBConv6, k5x5   14x14
    MBConvStage(6, 3, 1, 320, 1),  # 8  MBConv6, k3x3    7x7
)
STEM_CHS = 32  # stage 1, Conv3x3
HEAD_CHS = 1280  # stage 9, Conv1x1 before pooling


@dataclass(frozen=True)
class EfficientNetPreset:
    """A row of the official `efficientnet_params` table. Hand-set: *not* alpha^phi (see scaling.py)."""

    width: float
    depth: float
    resolution: int
    dropout: float


PRESETS = {
    "efficientnet_b0": EfficientNetPreset(1.0, 1.0, 224, 0.2),
    "efficientnet_b1": EfficientNetPreset(1.0, 1.1, 240, 0.2),
    "efficientnet_b2": EfficientNetPreset(1.1, 1.2, 260, 0.3),
    "efficientnet_b3": EfficientNetPreset(1.2, 1.4, 300, 0.3),
    "efficientnet_b4": EfficientNetPreset(1.4, 1.8, 380, 0.4),
    "efficientnet_b5": EfficientNetPreset(1.6, 2.2, 456, 0.4),
    "efficientnet_b6": EfficientNetPreset(1.8, 2.6, 528, 0.5),
    "efficientnet_b7": EfficientNetPreset(2.0, 3.1, 600, 0.5),
    "efficientnet_b8": EfficientNetPreset(2.2, 3.6, 672, 0.5),
    "efficientnet_l2": EfficientNetPreset(4.3, 5.3, 800, 0.5),
}

# timm's hub ids for the presets it publishes weights for (used by pretrained=True).
HUB_IDS = {
    "efficientnet_b0": "timm/efficientnet_b0.ra_in1k",
    "efficientnet_b1": "timm/efficientnet_b1.ft_in1k",
    "efficientnet_b2": "timm/efficientnet_b2.ra_in1k",
    "efficientnet_b3": "timm/efficientnet_b3.ra2_in1k",
    "efficientnet_b4": "timm/efficientnet_b4.ra2_in1k",
}


def dropout_for_phi(phi: float) -> float:
    """Dropout grows linearly from 0.2 (B0) to 0.5 (B7) with phi, as in the paper (clamped to [0, 0.5])."""
    return min(0.5, max(0.0, 0.2 + 0.3 * phi / 7.0))


def build_efficientnet(
    architecture: str,
    scaling: dict[str, Any],
    *,
    default_drop_rate: float,
    in_chans: int = 3,
    num_classes: int = 1000,
    drop_rate: float | None = None,
    drop_path_rate: float | None = None,
    small_input: bool = False,
    init: str = "efficientnet",
    stages: tuple[MBConvStage, ...] = EFFICIENTNET_B0_STAGES,
    act_layer: type[nn.Module] = nn.SiLU,
    stem_chs: int = STEM_CHS,
    head_chs: int | None = None,
) -> MBConvNet:
    """Scale a B0-like stage table by (width, depth) and build the network with its preprocessing config."""
    width, depth = scaling["width"], scaling["depth"]
    check_multipliers(depth, width, scaling["resolution"], min(s.out_chs for s in stages))
    model = MBConvNet(
        [s.scaled(width, depth) for s in stages],
        stem_chs=round_channels(stem_chs, width),
        head_chs=head_chs if head_chs is not None else round_channels(HEAD_CHS, width),
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
    )
    return model


def _preset(name: str, phi: float | None = None, **kwargs: Any) -> MBConvNet:
    if phi is not None and name != "efficientnet_b0":
        raise ValueError(
            f"{name} is a published preset with hand-set multipliers; phi= applies to the B0 baseline. "
            f"Use create_model('efficientnet', phi=...) (or 'efficientnet_b0', phi=...) instead."
        )
    p = PRESETS[name]
    scale_args = {k: kwargs.pop(k) for k in ("depth_multiplier", "width_multiplier", "resolution", "coefficients") if k in kwargs}
    if phi is not None:
        return efficientnet(phi=phi, **scale_args, **kwargs)
    scale_args.setdefault("depth_multiplier", p.depth)
    scale_args.setdefault("width_multiplier", p.width)
    scale_args.setdefault("resolution", p.resolution)
    scaling = resolve_scaling(**scale_args)
    scaling.update(family="efficientnet", preset=name)
    model = build_efficientnet(name, scaling, default_drop_rate=p.dropout, **kwargs)
    if name in HUB_IDS:
        model.pretrained_cfg["hf_hub_id"] = HUB_IDS[name]
    return model


@register_model
def efficientnet(phi: float = 0.0, coefficients: tuple[float, float, float] | None = None, **kwargs: Any) -> MBConvNet:
    """B0 scaled by compound scaling: depth alpha^phi, width beta^phi, resolution 224 * gamma^phi."""
    scale_args = {k: kwargs.pop(k) for k in ("depth_multiplier", "width_multiplier", "resolution") if k in kwargs}
    scaling = resolve_scaling(phi=phi, coefficients=coefficients, **scale_args)
    scaling["family"] = "efficientnet"
    return build_efficientnet("efficientnet", scaling, default_drop_rate=dropout_for_phi(phi), **kwargs)


def _register_presets() -> None:
    for name in PRESETS:
        def builder(phi: float | None = None, _name: str = name, **kwargs: Any) -> MBConvNet:
            return _preset(_name, phi=phi, **kwargs)

        builder.__name__ = name
        builder.__doc__ = f"EfficientNet preset {name} (official table): {PRESETS[name]}."
        register_model(builder)


_register_presets()
