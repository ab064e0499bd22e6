"""Training: the LightningModule, the optimization recipe, configs and the `effzoo train` run.

The names below are imported on first use (PEP 562), not with the package: importing a submodule
runs this file first, and `effzoo.training.config` (what `effzoo train --help` needs) must not
pull in torch and Lightning through `run` and `module`.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> submodule that defines it
_API = {
    "ClassificationModule": "module",
    "TrainConfig": "config",
    "load_yaml": "config",
    "run_training": "run",
    "train": "run",
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_API[name]}"), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
