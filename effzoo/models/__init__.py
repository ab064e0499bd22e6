"""Model families, blocks and the registry. Importing this package registers every model."""

from . import efficientnet, mobilenet, resnet  # noqa: F401  (registration side effects)
from .base import ZooModel
from .registry import create_model, is_model, list_models, model_info

__all__ = ["ZooModel", "create_model", "is_model", "list_models", "model_info"]

# Shipped checkpoints (checkpoints/index.json, or $EFFZOO_CHECKPOINTS) register under their own names.
from ..zoo import register_shipped_models  # noqa: E402

register_shipped_models()
