"""Import weights from torchvision's EfficientNet-B0..B7, EfficientNetV2-S/M/L and ResNet models.

torchvision and effzoo (= timm) store the same tensors in the same order with different names
(`features.1.0.block.0.0.weight` vs `blocks.0.0.conv_dw.weight`), so conversion is a zip over
the two orders with a shape check at every step rather than a hand-written name table.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

# torchvision's B5-B7 and V2-S/M/L were ported from TF and keep its batch-norm epsilon (B0-B4 came from timm).
TF_BN_EPS_MODELS = ("efficientnet_b5", "efficientnet_b6", "efficientnet_b7",
                    "efficientnetv2_s", "efficientnetv2_m", "efficientnetv2_l")


def convert_torchvision_state_dict(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Rename a torchvision state dict to `model`'s names; raises ValueError at the first disagreement."""
    own = model.state_dict()
    if len(own) != len(state_dict):
        raise ValueError(
            f"the torchvision state dict has {len(state_dict)} tensors, "
            f"{model.pretrained_cfg.get('model_name', type(model).__name__)} has {len(own)}: "
            f"not the same architecture (pick the effzoo model of the same name)"
        )
    out = {}
    for (src, tensor), (dst, ref) in zip(state_dict.items(), own.items()):
        if tuple(tensor.shape) != tuple(ref.shape):
            raise ValueError(f"torchvision tensor {src} {tuple(tensor.shape)} does not fit {dst} {tuple(ref.shape)}")
        out[dst] = tensor
    return out


def load_torchvision_weights(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    """Load torchvision weights into an effzoo model, matching batch-norm epsilon so outputs agree."""
    model.load_state_dict(convert_torchvision_state_dict(state_dict, model), strict=True)
    if model.pretrained_cfg.get("model_name") in TF_BN_EPS_MODELS:
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eps = 1e-3
    return model
