"""EfficientNet (Tan & Le, ICML 2019, arXiv:1905.11946): the B0 baseline, the published B1-B8/L2
presets, and `efficientnet` + `phi` scaled exactly by compound scaling.

    >>> create_model("efficientnet_b3")          # the published preset (width 1.2, depth 1.4, 300 px)
    >>> create_model("efficientnet", phi=3)      # the formula: depth 1.2^3, width 1.1^3, 224 * 1.15^3 px
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..scaling import resolve_scaling, round_resolution
from .blocks import DepthwiseSeparable, InvertedResidual
from .registry import register_model
from .stage_net import BlockStage, MBConvNet, build_stage_net, dropout_for_phi

# Table 1 of the paper, stages 2-8 (stage 1 is the 3x3 stem conv, stage 9 the 1x1 head).
# Resolution in the comment is the stage's input size at 224 px. MBConv1 has no expand conv,
# hence its own block class (timm's DepthwiseSeparable, with timm's module names).
EFFICIENTNET_B0_STAGES = (
    #          block               expand kernel stride out_chs repeats   # Table 1 stage, input resolution
    BlockStage(DepthwiseSeparable, 1, 3, 1, 16, 1),   # 2  MBConv1, k3x3  112x112
    BlockStage(InvertedResidual,   6, 3, 2, 24, 2),   # 3  MBConv6, k3x3  112x112
    BlockStage(InvertedResidual,   6, 5, 2, 40, 2),   # 4  MBConv6, k5x5   56x56
    BlockStage(InvertedResidual,   6, 3, 2, 80, 3),   # 5  MBConv6, k3x3   28x28
    BlockStage(InvertedResidual,   6, 5, 1, 112, 3),  # 6  MBConv6, k5x5   14x14
    BlockStage(InvertedResidual,   6, 5, 2, 192, 4),  # 7  MBConv6, k5x5   14x14
    BlockStage(InvertedResidual,   6, 3, 1, 320, 1),  # 8  MBConv6, k3x3    7x7
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


def _build_b0(architecture: str, scaling: dict[str, Any], **kwargs: Any) -> MBConvNet:
    """B0's table, stem and head scaled by `scaling`; kwargs go to `stage_net.build_stage_net`."""
    return build_stage_net(architecture, scaling, EFFICIENTNET_B0_STAGES, stem_chs=STEM_CHS, head_chs=HEAD_CHS,
                           **kwargs)


def _preset(name: str, phi: float | None = None, **kwargs: Any) -> MBConvNet:
    if phi is not None and name != "efficientnet_b0":
        raise ValueError(
            f"{name} is a published preset with hand-set multipliers; phi= applies to the B0 baseline. "
            f"Use create_model('efficientnet', phi=...) (or 'efficientnet_b0', phi=...) instead."
        )
    p = PRESETS[name]
    scale_args = {k: kwargs.pop(k) for k in ("depth_multiplier", "width_multiplier", "resolution", "base_resolution", "coefficients") if k in kwargs}
    if phi is not None:
        return efficientnet(phi=phi, **scale_args, **kwargs)
    scale_args.setdefault("depth_multiplier", p.depth)
    scale_args.setdefault("width_multiplier", p.width)
    # The preset's resolution is for 224-px data; other data scale it from their own base resolution.
    base = scale_args.get("base_resolution", 224)
    scale_args.setdefault("resolution", p.resolution if base == 224 else round_resolution(base, p.resolution / 224))
    scaling = resolve_scaling(**scale_args)
    scaling.update(family="efficientnet", preset=name)
    model = _build_b0(name, scaling, default_drop_rate=p.dropout, **kwargs)
    if name in HUB_IDS:
        model.pretrained_cfg["hf_hub_id"] = HUB_IDS[name]
    return model


@register_model
def efficientnet(phi: float = 0.0, coefficients: tuple[float, float, float] | None = None, **kwargs: Any) -> MBConvNet:
    """B0 scaled by compound scaling: depth alpha^phi, width beta^phi, resolution 224 * gamma^phi."""
    scale_args = {k: kwargs.pop(k) for k in ("depth_multiplier", "width_multiplier", "resolution", "base_resolution") if k in kwargs}
    scaling = resolve_scaling(phi=phi, coefficients=coefficients, **scale_args)
    scaling["family"] = "efficientnet"
    return _build_b0("efficientnet", scaling, default_drop_rate=dropout_for_phi(phi), **kwargs)


def _register_presets() -> None:
    for name in PRESETS:
        def builder(phi: float | None = None, _name: str = name, **kwargs: Any) -> MBConvNet:
            return _preset(_name, phi=phi, **kwargs)

        builder.__name__ = name
        builder.__doc__ = f"EfficientNet preset {name} (official table): {PRESETS[name]}."
        register_model(builder)


_register_presets()
