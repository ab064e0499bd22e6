"""Model registry: `create_model`, `list_models` (fnmatch wildcards) and `model_info` (params, MACs)."""

from __future__ import annotations

import difflib
import fnmatch
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

_MODELS: dict[str, Callable[..., nn.Module]] = {}

# Keyword arguments every family accepts; anything else is a typo worth a clear error.
MODEL_KWARGS = (
    "num_classes", "in_chans", "drop_rate", "drop_path_rate", "phi", "coefficients",
    "depth_multiplier", "width_multiplier", "resolution", "small_input", "init",
)


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a builder under its function name."""
    if fn.__name__ in _MODELS:
        raise ValueError(f"model {fn.__name__!r} is registered twice")
    _MODELS[fn.__name__] = fn
    return fn


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching an fnmatch pattern, e.g. `list_models("efficientnet_b*")`."""
    return sorted(n for n in _MODELS if fnmatch.fnmatchcase(n, pattern))


def is_model(name: str) -> bool:
    return name in _MODELS


def create_model(name: str, pretrained: bool | str = False, **kwargs: Any) -> nn.Module:
    """Build a registered model.

    `pretrained=True` fetches published weights (needs internet), `pretrained="path"` loads a
    local .safetensors / .pth file; both go through the same safe loader and a strict key check.
    Weights are loaded before `num_classes` takes effect, so a 1000-class checkpoint can seed a
    10-class model (the classifier is then re-initialized).
    """
    if name not in _MODELS:
        close = difflib.get_close_matches(name, list(_MODELS), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"unknown model {name!r}.{hint} See effzoo.list_models() or `effzoo models`.")
    unknown = sorted(set(kwargs) - set(MODEL_KWARGS))
    if unknown:
        raise ValueError(f"create_model({name!r}) got unknown argument(s) {unknown}; accepted: {', '.join(MODEL_KWARGS)}")
    if not pretrained:
        return _record(_MODELS[name](**kwargs), name, kwargs)

    from ..checkpoints import load_pretrained  # local import: checkpoints imports models

    build_kwargs = {k: v for k, v in kwargs.items() if k != "num_classes"}
    model = _MODELS[name](**build_kwargs)
    load_pretrained(model, pretrained)
    if kwargs.get("num_classes", model.num_classes) != model.num_classes:
        model.reset_classifier(kwargs["num_classes"])
    return _record(model, name, kwargs)


def _record(model: nn.Module, name: str, kwargs: dict[str, Any]) -> nn.Module:
    # The registry name + arguments rebuild the exact architecture when a checkpoint is loaded.
    model.pretrained_cfg["model_name"] = name
    model.pretrained_cfg["model_args"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in kwargs.items()}
    return model


@torch.no_grad()
def model_info(model: nn.Module, input_size: tuple[int, int, int] | None = None) -> dict[str, Any]:
    """Parameter count and multiply-accumulates of one forward pass (FlopCounterMode FLOPs / 2).

    The EfficientNet paper's "FLOPS" are MACs in this sense (B0: 0.39B).
    """
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    if input_size is None:
        if "input_size" not in cfg:
            raise ValueError("model has no pretrained_cfg['input_size']; pass input_size=(C, H, W)")
        input_size = tuple(cfg["input_size"])
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters())
        x = torch.zeros((1, *input_size), dtype=param.dtype, device=param.device)
        counter = FlopCounterMode(display=False)
        with counter:
            model(x)
    finally:
        model.train(was_training)
    flops = counter.get_total_flops()
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "macs": int(flops // 2),
        "gmacs": flops / 2e9,
        "input_size": tuple(input_size),
    }
