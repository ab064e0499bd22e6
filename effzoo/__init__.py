"""effzoo: EfficientNet compound scaling as a model zoo."""

from .models import create_model, list_models, model_info
from .scaling import CompoundScaling

__all__ = ["CompoundScaling", "create_model", "list_models", "model_info"]
__version__ = "0.1.0"
