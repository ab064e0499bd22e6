"""Model registry: `create_model`, `list_models` (fnmatch wildcards) and `model_info` (params, MACs).

The registry knows the architectures of this package. Two things come from the layer above, through
public calls, so that nothing here imports upward: named models that live outside the code (the
shipped zoo registers a `ModelSource`, read lazily on the first lookup) and how to read weight files
for `pretrained=` (`set_pretrained_loader`). `effzoo.artifacts` makes both calls when imported; the
public `effzoo.create_model` imports it.
"""

from __future__ import annotations

import difflib
import fnmatch
from typing import Any, Callable, Mapping

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .features import FeatureNet

Builder = Callable[..., nn.Module]
# A source returns {name: builder} when first asked (e.g. the shipped zoo's index.json).
ModelSource = Callable[[], Mapping[str, Builder]]
PretrainedLoader = Callable[[nn.Module, "bool | str"], None]

_MODELS: dict[str, Builder] = {}
_SOURCES: list[ModelSource] = []
_SOURCED: dict[str, tuple[ModelSource, Builder]] = {}  # name -> (its source, builder)
_pending_sources: list[ModelSource] = []
_pretrained_loader: PretrainedLoader | None = None

# Keyword arguments every family accepts; anything else is a typo worth a clear error.
MODEL_KWARGS = (
    "num_classes", "in_chans", "drop_rate", "drop_path_rate", "phi", "coefficients",
    "depth_multiplier", "width_multiplier", "resolution", "base_resolution", "small_input", "init",
    "features_only", "out_indices",
)
# Taken by create_model itself (after weights are loaded), not by the family builders.
FEATURE_KWARGS = ("features_only", "out_indices")


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a builder under its function name."""
    if fn.__name__ in _MODELS:
        raise ValueError(f"model {fn.__name__!r} is registered twice")
    _MODELS[fn.__name__] = fn
    return fn


def register_model_source(source: ModelSource) -> None:
    """Add names defined outside the code (a zoo index). Read on the next lookup, not now: importing
    the registry never touches the disk. Names of a source never shadow a built-in architecture; between
    sources, the most recently registered wins (as a re-registered name replaces the old one)."""
    if source in _SOURCES:  # registered again: it becomes the newest, whose names win
        _SOURCES.remove(source)
    _SOURCES.append(source)
    if source in _pending_sources:
        _pending_sources.remove(source)
    _pending_sources.append(source)


def refresh_model_sources() -> None:
    """Read every source again on the next lookup (after a zoo gained a model). Names read before stay
    known, as registered names do, until their source is unregistered."""
    _pending_sources[:] = list(_SOURCES)


def unregister_model_source(source: ModelSource) -> None:
    """Forget a source and the names it gave (a temporary zoo, say)."""
    if source in _SOURCES:
        _SOURCES.remove(source)
    for name in [n for n, (src, _) in _SOURCED.items() if src == source]:
        del _SOURCED[name]
    refresh_model_sources()


def set_pretrained_loader(loader: PretrainedLoader) -> None:
    """How `create_model(..., pretrained=...)` reads weights into a built model (safe loading lives above)."""
    global _pretrained_loader
    _pretrained_loader = loader


def _all_models() -> dict[str, Builder]:
    while _pending_sources:
        source = _pending_sources.pop(0)
        _SOURCED.update({n: (source, b) for n, b in source().items() if n not in _MODELS})
    return {**{n: b for n, (_, b) in _SOURCED.items()}, **_MODELS}


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching an fnmatch pattern, e.g. `list_models("efficientnet_b*")`."""
    return sorted(n for n in _all_models() if fnmatch.fnmatchcase(n, pattern))


def is_model(name: str) -> bool:
    return name in _all_models()


def create_model(name: str, pretrained: bool | str = False, **kwargs: Any) -> nn.Module:
    """Build a registered model.

    `pretrained=True` fetches published weights (needs internet), `pretrained="path"` loads a
    local .safetensors / .pth file; both go through the same safe loader and a strict key check.
    Weights are loaded before `num_classes` takes effect, so a 1000-class checkpoint can seed a
    10-class model (the classifier is then re-initialized).

    `features_only=True` returns the backbone's feature maps at `out_indices` (default: every level)
    instead of logits, with `model.feature_info` (see `features.FeatureNet`).
    """
    models = _all_models()
    if name not in models:
        close = difflib.get_close_matches(name, list(models), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"unknown model {name!r}.{hint} See effzoo.list_models() or `effzoo models`.")
    unknown = sorted(set(kwargs) - set(MODEL_KWARGS))
    if unknown:
        raise ValueError(f"create_model({name!r}) got unknown argument(s) {unknown}; accepted: {', '.join(MODEL_KWARGS)}")
    if "out_indices" in kwargs and not kwargs.get("features_only"):
        raise ValueError("out_indices= selects feature maps: pass features_only=True with it")
    build_kwargs = {k: v for k, v in kwargs.items() if k not in FEATURE_KWARGS}
    if not pretrained:
        model = models[name](**build_kwargs)
    else:
        if _pretrained_loader is None:
            raise ValueError("pretrained= needs effzoo's weight loader: use effzoo.create_model (or import effzoo.artifacts)")
        model = models[name](**{k: v for k, v in build_kwargs.items() if k != "num_classes"})
        _pretrained_loader(model, pretrained)
        if kwargs.get("num_classes", model.num_classes) != model.num_classes:
            model.reset_classifier(kwargs["num_classes"])
    if kwargs.get("features_only"):
        model = FeatureNet(model, kwargs.get("out_indices"))
    return _record(model, name, kwargs)


def _record(model: nn.Module, name: str, kwargs: dict[str, Any]) -> nn.Module:
    # The registry name + arguments rebuild the exact architecture when a checkpoint is loaded.
    # An automatic small_input (None) is recorded as the choice the builder made, so a reload cannot differ.
    args = {k: (list(v) if isinstance(v, tuple) else v) for k, v in kwargs.items()}
    if "small_input" in args and args["small_input"] is None:
        args["small_input"] = bool(model.pretrained_cfg.small_input)
    model.pretrained_cfg.model_name = name
    model.pretrained_cfg.model_args = args
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
