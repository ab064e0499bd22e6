"""EfficientNetV2 (Tan & Le, ICML 2021, arXiv:2104.00298): the S/M/L presets, timm's `efficientnetv2_rw_s`,
and `efficientnetv2` + `phi`, the V2-S table scaled by the same compound rule as every other family.

    >>> create_model("efficientnetv2_s")             # paper Table 4; trained at 288 px, tested at 384 (timm)
    >>> create_model("efficientnetv2", phi=-2)       # V2-S with depth 1.2^-2, width 1.1^-2, 288 * 1.15^-2 px

The early stages are Fused-MBConv (`blocks.FusedMBConv`), the later ones MBConv with SE; the network is
the same `MBConvNet` as EfficientNet's, so small_input, features_only and grad checkpointing come with it.
Names and shapes are those of timm's models of the same name (non-`tf_`: symmetric padding, BN eps 1e-5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..scaling import resolve_scaling, round_resolution
from .blocks import EdgeResidual, FusedMBConv, InvertedResidual
from .registry import register_model
from .stage_net import BlockStage, MBConvNet, build_stage_net, dropout_for_phi

# The paper's stage tables (Table 4 for S; M and L as released in google/automl effnetv2_configs.py);
# stage 0 is the 3x3 stride-2 stem, the last the 1x1 head conv to 1280. Fused stages have no SE.
EFFICIENTNETV2_S_STAGES = (
    #          block             expand kernel stride out_chs repeats se
    BlockStage(FusedMBConv,      1, 3, 1, 24, 2, 0.0),    # Fused-MBConv1, k3x3
    BlockStage(FusedMBConv,      4, 3, 2, 48, 4, 0.0),    # Fused-MBConv4, k3x3
    BlockStage(FusedMBConv,      4, 3, 2, 64, 4, 0.0),    # Fused-MBConv4, k3x3
    BlockStage(InvertedResidual, 4, 3, 2, 128, 6),        # MBConv4, k3x3, SE0.25
    BlockStage(InvertedResidual, 6, 3, 1, 160, 9),        # MBConv6, k3x3, SE0.25
    BlockStage(InvertedResidual, 6, 3, 2, 256, 15),       # MBConv6, k3x3, SE0.25
)
EFFICIENTNETV2_M_STAGES = (
    BlockStage(FusedMBConv,      1, 3, 1, 24, 3, 0.0),
    BlockStage(FusedMBConv,      4, 3, 2, 48, 5, 0.0),
    BlockStage(FusedMBConv,      4, 3, 2, 80, 5, 0.0),
    BlockStage(InvertedResidual, 4, 3, 2, 160, 7),
    BlockStage(InvertedResidual, 6, 3, 1, 176, 14),
    BlockStage(InvertedResidual, 6, 3, 2, 304, 18),
    BlockStage(InvertedResidual, 6, 3, 1, 512, 5),
)
EFFICIENTNETV2_L_STAGES = (
    BlockStage(FusedMBConv,      1, 3, 1, 32, 4, 0.0),
    BlockStage(FusedMBConv,      4, 3, 2, 64, 7, 0.0),
    BlockStage(FusedMBConv,      4, 3, 2, 96, 7, 0.0),
    BlockStage(InvertedResidual, 4, 3, 2, 192, 10),
    BlockStage(InvertedResidual, 6, 3, 1, 224, 19),
    BlockStage(InvertedResidual, 6, 3, 2, 384, 25),
    BlockStage(InvertedResidual, 6, 3, 1, 640, 7),
)
# timm's own V2-S, built from the paper's figure before the official code: its first stage keeps the
# 1x1 projection at expansion 1 (EdgeResidual), its last stage is 272 wide and its head 1792.
EFFICIENTNETV2_RW_S_STAGES = (
    BlockStage(EdgeResidual,     1, 3, 1, 24, 2, 0.0),
    *EFFICIENTNETV2_S_STAGES[1:-1],
    BlockStage(InvertedResidual, 6, 3, 2, 272, 15),
)


@dataclass(frozen=True)
class EfficientNetV2Preset:
    """One published model: its table, stem and head widths, dropout, and timm's train / test sizes."""

    stages: tuple[BlockStage, ...]
    stem_chs: int
    head_chs: int
    dropout: float
    train_size: int  # px on ImageNet (timm's pretrained cfg `input_size`)
    test_size: int  # px (timm's `test_input_size`): V2 evaluates larger than it trains


PRESETS = {
    "efficientnetv2_s": EfficientNetV2Preset(EFFICIENTNETV2_S_STAGES, 24, 1280, 0.2, 288, 384),
    "efficientnetv2_m": EfficientNetV2Preset(EFFICIENTNETV2_M_STAGES, 24, 1280, 0.3, 320, 416),
    "efficientnetv2_l": EfficientNetV2Preset(EFFICIENTNETV2_L_STAGES, 32, 1280, 0.4, 384, 480),
    "efficientnetv2_rw_s": EfficientNetV2Preset(EFFICIENTNETV2_RW_S_STAGES, 24, 1792, 0.2, 288, 384),
}
# Only the rw variant has timm-trained weights under its non-tf_ name (used by pretrained=True).
HUB_IDS = {"efficientnetv2_rw_s": "timm/efficientnetv2_rw_s.ra2_in1k"}
V2_CROP_PCT = 1.0  # timm evaluates V2 on the full image, not an 87.5% center crop
SCALE_KEYS = ("depth_multiplier", "width_multiplier", "resolution", "base_resolution")


def _build(name: str, preset: EfficientNetV2Preset, scaling: dict[str, Any], **kwargs: Any) -> MBConvNet:
    return build_stage_net(name, scaling, preset.stages, stem_chs=preset.stem_chs, head_chs=preset.head_chs, **kwargs)


@register_model
def efficientnetv2(phi: float = 0.0, coefficients: tuple[float, float, float] | None = None, **kwargs: Any) -> MBConvNet:
    """V2-S scaled by compound scaling: depth alpha^phi, width beta^phi, resolution base * gamma^phi, where
    the base is V2-S's own train size (288 px), so phi=0 is efficientnetv2_s (tested at its train size)."""
    scale_args = {k: kwargs.pop(k) for k in SCALE_KEYS if k in kwargs}
    scale_args.setdefault("base_resolution", PRESETS["efficientnetv2_s"].train_size)
    scaling = resolve_scaling(phi=phi, coefficients=coefficients, **scale_args)
    scaling["family"] = "efficientnetv2"
    return _build("efficientnetv2", PRESETS["efficientnetv2_s"], scaling, default_drop_rate=dropout_for_phi(phi), **kwargs)


def _preset(name: str, phi: float | None = None, **kwargs: Any) -> MBConvNet:
    if phi is not None:
        if name != "efficientnetv2_s":
            raise ValueError(f"{name} is a published preset; phi= scales the V2-S baseline. "
                             f"Use create_model('efficientnetv2', phi=...) (or 'efficientnetv2_s', phi=...) instead.")
        return efficientnetv2(phi=phi, **kwargs)
    p = PRESETS[name]
    scale_args = {k: kwargs.pop(k) for k in SCALE_KEYS if k in kwargs}
    native = "resolution" not in scale_args and scale_args.get("base_resolution", 224) == 224
    # timm's sizes are for 224-px ImageNet; other data scale them from their own base resolution.
    base = scale_args.get("base_resolution", 224)
    scale_args.setdefault("resolution", round_resolution(base, p.train_size / 224))
    scaling = resolve_scaling(**scale_args)
    scaling.update(family="efficientnetv2", preset=name)
    model = _build(name, p, scaling, default_drop_rate=p.dropout, **kwargs)
    cfg = model.pretrained_cfg
    cfg.crop_pct = V2_CROP_PCT
    if native:  # a size chosen for other data is tested at that size until FixRes picks another
        cfg.test_input_size = (cfg.input_size[0], p.test_size, p.test_size)
    if name in HUB_IDS and not {"depth_multiplier", "width_multiplier"} & scale_args.keys():
        cfg.hf_hub_id = HUB_IDS[name]  # the weights fit at any resolution, not at other widths or depths
    return model


def _register_presets() -> None:
    for name in PRESETS:
        def builder(phi: float | None = None, _name: str = name, **kwargs: Any) -> MBConvNet:
            return _preset(_name, phi=phi, **kwargs)

        builder.__name__ = name
        p = PRESETS[name]
        builder.__doc__ = f"EfficientNetV2 preset {name} (timm's layout; train / test {p.train_size} / {p.test_size} px)."
        register_model(builder)


_register_presets()
