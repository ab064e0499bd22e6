"""Model families, blocks and the registry. Importing this package registers every architecture
(the family modules' `@register_model`); it reads no file and knows no shipped checkpoint: the
artifacts layer adds those names through `registry.register_model_source`."""

from . import efficientnet, efficientnetv2, mobilenet, resnet  # noqa: F401  (registers the families' builders)
from .base import ZooModel
from .registry import create_model, is_model, list_models, model_info

__all__ = ["ZooModel", "create_model", "is_model", "list_models", "model_info"]
