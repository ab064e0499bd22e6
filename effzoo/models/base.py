"""The API every zoo model shares (timm's): forward_features, forward_head, reset_classifier, pretrained_cfg."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .config import ModelConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
AUTO_SMALL_INPUT_BELOW = 128  # px; see auto_small_input


def auto_small_input(resolution: int) -> bool:
    """Small inputs get the stride-8 stem: below 128 px a stride-32 network ends under a 4x4 map. (Measured on
    digits: 32 px at stride 8 reached 97% val where 64 px at stride 32, a 2x2 map, plateaued at 92%.)"""
    return resolution < AUTO_SMALL_INPUT_BELOW


def check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


class ZooModel(nn.Module):
    """Base class: a feature extractor (`forward_features`, subclass) and a pooled linear head.

    The classifier attribute keeps timm's name per family (`classifier` for MBConv nets, `fc`
    for ResNet) so that state_dict keys line up with timm's and its weights load strictly.
    """

    classifier_name = "classifier"
    # The network's parts by name, in forward order (fine-tuning freezes and groups them; see also
    # `stage_names` and `feature_plan`): the stem before the first stage, and the neck between the
    # last stage and pooling (EfficientNet's 1x1 head conv; none in ResNet).
    stem_modules: tuple[str, ...] = ()
    neck_modules: tuple[str, ...] = ()
    frozen_modules: tuple[str, ...] = ()  # kept in eval mode by train(): frozen BN statistics stay as loaded
    grad_checkpointing = False

    def __init__(self, in_chans: int, num_features: int, num_classes: int, drop_rate: float) -> None:
        super().__init__()
        check_positive_int("in_chans", in_chans)
        check_positive_int("num_classes", num_classes, minimum=0)
        if not 0.0 <= drop_rate < 1.0:
            raise ValueError(f"drop_rate must be in [0, 1), got {drop_rate}")
        self.in_chans = in_chans
        self.num_features = num_features
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.head_drop = nn.Dropout(drop_rate)
        self.pretrained_cfg = ModelConfig()

    def _make_classifier(self, num_classes: int) -> nn.Module:
        return nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def get_classifier(self) -> nn.Module:
        return getattr(self, self.classifier_name)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final layer (0 gives an identity head: the model returns pooled features)."""
        check_positive_int("num_classes", num_classes, minimum=0)
        self.num_classes = num_classes
        setattr(self, self.classifier_name, self._make_classifier(num_classes))
        self.pretrained_cfg.num_classes = num_classes

    def check_input(self, x: torch.Tensor) -> None:
        # A clear message here beats torch's conv2d error several frames down.
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(
                f"{type(self).__name__} expects a batch of shape (N, {self.in_chans}, H, W), got "
                f"{tuple(x.shape)}; build the model with in_chans={x.shape[1] if x.ndim == 4 else '?'} "
                f"or convert the images"
            )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def stage_names(self) -> list[str]:  # pragma: no cover - abstract
        """Names of the stages (sequences of blocks), in forward order."""
        raise NotImplementedError

    def feature_plan(self) -> list[Any]:  # pragma: no cover - abstract
        """The feature levels, as `features.FeatureStage` rows (what `features_only=True` returns)."""
        raise NotImplementedError

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in backward instead of storing them: less memory, one more
        forward pass of the blocks (`grad_checkpoint.run_stage`)."""
        self.grad_checkpointing = bool(enable)

    def train(self, mode: bool = True) -> "ZooModel":
        super().train(mode)
        if mode:  # Lightning (and anyone) calls train() every epoch: frozen parts must stay in eval
            for name in self.frozen_modules:
                self.get_submodule(name).eval()
        return self

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean((2, 3))
        x = self.head_drop(x)
        return x if pre_logits else self.get_classifier()(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def make_pretrained_cfg(
    architecture: str,
    *,
    in_chans: int,
    num_classes: int,
    resolution: int,
    scaling: dict[str, Any],
    first_conv: str,
    classifier: str,
    total_stride: int,
    small_input: bool = False,
    crop_pct: float = 0.875,
    interpolation: str = "bicubic",
) -> ModelConfig:
    """timm-style preprocessing config; it travels with the weights so evaluation uses the right crop."""
    if in_chans == 3:
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    else:  # no per-channel statistics exist for other layouts; the data module overrides these
        mean = (sum(IMAGENET_MEAN) / 3,) * in_chans
        std = (sum(IMAGENET_STD) / 3,) * in_chans
    return ModelConfig(
        architecture=architecture, input_size=(in_chans, resolution, resolution),
        test_input_size=(in_chans, resolution, resolution), crop_pct=crop_pct, interpolation=interpolation,
        mean=mean, std=std, num_classes=num_classes, first_conv=first_conv, classifier=classifier,
        total_stride=total_stride, scaling=scaling, small_input=small_input,
    )
