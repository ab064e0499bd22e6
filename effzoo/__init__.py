"""effzoo: EfficientNet compound scaling as a model zoo."""

from .checkpoints import load_checkpoint
from .models import create_model, list_models, model_info
from .evaluation.inference import optimize_for_inference
from .scaling import CompoundScaling

__all__ = ["CompoundScaling", "create_model", "list_models", "load_checkpoint", "model_info", "optimize_for_inference"]
__version__ = "0.1.0"
