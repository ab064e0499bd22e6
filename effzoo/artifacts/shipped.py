"""The shipped zoo's names in the model registry: `create_model("effzoo_...")` builds the architecture a
zoo folder's `model.json` records, with its preprocessing; `pretrained=True` then loads its verified weights.

The names come from a registry *source*, read on the first lookup: importing effzoo never reads
index.json, and an index that is missing or broken costs a warning, not an import error.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Callable

from torch import nn

from ..models import registry
from .weights import apply_data_config, load_checkpoint
from .zoo_index import ENV_VAR, INDEX_NAME, META, checkpoints_dir, model_folder, read_index, verify


def load_shipped(name: str, root: str | os.PathLike | None = None) -> nn.Module:
    """The shipped model `name`, verified and ready for inference (same as `effzoo.load_checkpoint(folder)`)."""
    return load_checkpoint(verify(name, root))


def _builder(name: str, root: Path | None) -> Callable[..., nn.Module]:
    def build(**kwargs: Any) -> nn.Module:
        meta = json.loads((model_folder(name, root) / META).read_text())
        model = registry.create_model(meta["model_name"], **{**meta.get("model_args", {}), **kwargs})
        apply_data_config(model, meta.get("pretrained_cfg", {}))
        model.pretrained_cfg.update(zoo_name=name, hf_hub_id=None)
        if root is not None:
            model.pretrained_cfg["zoo_root"] = str(root)
        return model

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"Shipped effzoo checkpoint {name} (see checkpoints/{name}/model_card.md)."
    return build


class ShippedModels:
    """A registry source: {name: builder} of the zoo at `root` (default: `$EFFZOO_CHECKPOINTS`, else the
    repository's checkpoints/, looked up when read)."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root) if root is not None else None

    def names(self) -> list[str]:
        base = self.root if self.root is not None else checkpoints_dir()
        if base is None:
            return []
        if not (base / INDEX_NAME).is_file():
            raise FileNotFoundError(f"{base / INDEX_NAME} does not exist (check ${ENV_VAR})")
        return list(read_index(base)["models"])

    def __call__(self) -> dict[str, Callable[..., nn.Module]]:
        try:
            names = self.names()
        except (OSError, ValueError) as e:
            warnings.warn(f"effzoo: shipped checkpoints not registered ({e})", stacklevel=2)
            return {}
        return {name: _builder(name, self.root) for name in names}

    def __eq__(self, other: object) -> bool:  # one source per zoo folder, however often it is registered
        return isinstance(other, ShippedModels) and other.root == self.root

    def __hash__(self) -> int:
        return hash(self.root)


def register_shipped_models(root: str | os.PathLike | None = None) -> list[str]:
    """Register (or re-read, after the zoo changed) the models of the zoo at `root`; returns their names."""
    source = ShippedModels(root)
    registry.register_model_source(source)
    registry.refresh_model_sources()
    return sorted(source())


def unregister_shipped_models(root: str | os.PathLike | None = None) -> None:
    """Forget the zoo at `root` (a temporary one, say); the others are read again on the next lookup."""
    registry.unregister_model_source(ShippedModels(root))


# The default zoo ($EFFZOO_CHECKPOINTS or the repository's checkpoints/), read on the first lookup.
registry.register_model_source(ShippedModels())
