"""Network definitions and the saved-model package format."""

from callmood.models.package import (
    DEFAULT_MODEL_DIR,
    ModelPackage,
    ModelPackageError,
    load_model_package,
    save_model_package,
)
from callmood.models.parallel_cnn_transformer import (
    ModelConfig,
    ModelInputError,
    ParallelCNNTransformer,
)

__all__ = [
    "DEFAULT_MODEL_DIR",
    "ModelConfig",
    "ModelInputError",
    "ModelPackage",
    "ModelPackageError",
    "ParallelCNNTransformer",
    "load_model_package",
    "save_model_package",
]
