"""Training and honest evaluation of the emotion model: config, data, augmentation, loop,
speaker-grouped folds, metrics and reports.
"""

from callmood.training.config import TrainingConfig, TrainingConfigError, load_training_config
from callmood.training.metrics import ClassificationMetrics, classification_metrics

__all__ = [
    "ClassificationMetrics",
    "TrainingConfig",
    "TrainingConfigError",
    "classification_metrics",
    "load_training_config",
]
