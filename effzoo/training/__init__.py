"""Training: the LightningModule, the optimization recipe, configs and the `effzoo train` run."""

from .config import TrainConfig, load_yaml
from .module import ClassificationModule
from .run import run_training, train

__all__ = ["ClassificationModule", "TrainConfig", "load_yaml", "run_training", "train"]
