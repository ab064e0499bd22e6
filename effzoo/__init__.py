"""effzoo: EfficientNet compound scaling as a model zoo.

The public API is imported on first use (PEP 562), not with the package: `effzoo --help` and
argument errors must not wait seconds for torch. `effzoo.create_model` & co. come from the
artifacts layer, which also registers the shipped zoo's names with the model registry.
"""

from __future__ import annotations

import importlib
from typing import Any

from .version import __version__

# public name -> module that defines it
_API = {
    "CompoundScaling": "effzoo.scaling",
    "create_model": "effzoo.models.registry",
    "list_models": "effzoo.models.registry",
    "model_info": "effzoo.models.registry",
    "load_checkpoint": "effzoo.artifacts.weights",
    "optimize_for_inference": "effzoo.evaluation.inference",
    "Predictor": "effzoo.evaluation.predict",
}

__all__ = sorted(_API)


_SUBPACKAGES = ("artifacts", "cli", "data", "evaluation", "export", "models", "mtl", "scaling", "search", "training")


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:  # `effzoo.models.…` after a bare `import effzoo`
        return importlib.import_module(f"effzoo.{name}")
    if name not in _API:
        raise AttributeError(f"module 'effzoo' has no attribute {name!r}")
    # The artifacts layer wires the zoo's names and the weight loader into the registry; every public
    # entry point goes through it so that `effzoo.create_model("effzoo_...", pretrained=True)` works.
    importlib.import_module("effzoo.artifacts.shipped")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
