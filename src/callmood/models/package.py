"""The saved-model package: one directory with weights, ONNX graph, metadata and model card.

Loading reads only data (JSON and safetensors), never pickles or code, so a model directory
from anywhere is safe to open. The layout is specified in ``docs/interfaces.md``.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from callmood.errors import CallmoodError
from callmood.features import FeatureConfig, FeatureError
from callmood.models.parallel_cnn_transformer import (
    ModelConfig,
    ModelInputError,
    ParallelCNNTransformer,
)
from callmood.normalization import CallerPrior, NormalizationError

FORMAT_VERSION = 1
WEIGHTS_FILE = "weights.safetensors"
ONNX_FILE = "model.onnx"
METADATA_FILE = "model.json"
MODEL_CARD_FILE = "MODEL_CARD.md"
DEFAULT_MODEL_DIR = Path(__file__).parent / "default"
# Keys of model.json written from the arguments; `extra` may not override them.
RESERVED_KEYS = frozenset(
    {"format_version", "labels", "feature_config", "model_config", "window_seconds", "created"}
)
ONNX_TOLERANCE = 1e-4  # max abs logit difference accepted between ONNX Runtime and torch
# The second ONNX input of a model with ``absolute_statistics``: the windows before caller
# normalisation, same shape as ``features``. Other models keep their one input.
ABSOLUTE_INPUT = "absolute_features"

logger = logging.getLogger(__name__)


class ModelPackageError(CallmoodError):
    """A model directory that is missing, incomplete, corrupt or of an unknown format."""


@dataclass
class ModelPackage:
    """A loaded model package: the torch model in eval mode and what it needs to be used."""

    model: ParallelCNNTransformer
    labels: tuple[str, ...]
    feature_config: FeatureConfig
    window_seconds: float
    metadata: dict[str, Any] = field(repr=False)
    directory: Path

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", self.directory.name))

    @property
    def caller_prior(self) -> CallerPrior | None:
        """The prior of a caller-normalised model (callmood.normalization), else None."""
        return caller_prior_of(self.metadata, self.feature_config, self.directory)

    @property
    def onnx_path(self) -> Path | None:
        """The ONNX graph (input ``features``, and ``absolute_features`` with
        ``absolute_statistics``; output ``logits``), or None if not exported."""
        path = self.directory / ONNX_FILE
        return path if path.is_file() else None


def save_model_package(
    directory: str | Path,
    model: ParallelCNNTransformer,
    *,
    labels: Sequence[str],
    feature_config: FeatureConfig,
    window_seconds: float,
    extra: dict[str, Any] | None = None,
    export_onnx: bool = True,
    model_card: str | None = None,
) -> Path:
    """Write ``model`` as a package directory (created if needed; its package files replaced).

    Parameters
    ----------
    directory
        Target folder.
    model
        The trained network, with its normalisation buffers set. Not modified.
    labels
        Class names in logit order (``len(labels) == model.config.num_classes``).
    feature_config
        The features the model was trained on (``num_features`` must match the model).
    window_seconds
        Analysis window the model was trained on, in seconds.
    extra
        More JSON-serialisable metadata for ``model.json``, e.g. ``name``, ``training``,
        ``metrics``. May not override the keys written from the other arguments.
    export_onnx
        Also write ``model.onnx`` (needs ``onnx`` and ``onnxscript``: ``callmood[train]``) and
        check it against torch with ONNX Runtime.
    model_card
        Markdown for ``MODEL_CARD.md``; by default one is generated from the metadata.

    Returns
    -------
    Path
        The package directory.
    """
    directory = Path(directory)
    labels = _check_labels(labels, model.config.num_classes, str(directory))
    if feature_config.num_features != model.config.num_features:
        raise ModelPackageError(
            f"{directory}: feature config gives {feature_config.num_features} features per frame "
            f"but the model takes {model.config.num_features}"
        )
    if not (isinstance(window_seconds, int | float) and math.isfinite(window_seconds)):
        raise ModelPackageError(
            f"{directory}: window_seconds must be a number, got {window_seconds!r}"
        )
    window_frames = feature_config.frames_for(round(window_seconds * feature_config.sample_rate))
    if window_frames < model.config.min_frames:
        raise ModelPackageError(
            f"{directory}: window_seconds={window_seconds!r} is too short for the model "
            f"(needs >= {model.config.min_frames} frames)"
        )
    extra = dict(extra or {})
    clashes = sorted(RESERVED_KEYS & set(extra))
    if clashes:
        raise ModelPackageError(f"{directory}: extra metadata may not set {', '.join(clashes)}")
    metadata: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "name": extra.pop("name", directory.name),
        "labels": list(labels),
        "feature_config": feature_config.to_dict(),
        "model_config": model.config.to_dict(),
        "window_seconds": float(window_seconds),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "num_parameters": model.num_parameters(),
        **extra,
    }
    try:
        metadata_text = json.dumps(metadata, indent=2, sort_keys=False) + "\n"
    except (TypeError, ValueError) as error:
        raise ModelPackageError(
            f"{directory}: metadata is not JSON-serialisable: {error}"
        ) from None

    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:  # e.g. a file of that name, or no permission
        raise ModelPackageError(
            f"{directory}: cannot create the model directory ({error})"
        ) from None
    # Work on a CPU copy in eval mode so the caller's model (maybe mid-training) is untouched.
    export_model = copy.deepcopy(model).cpu().eval()
    state = {name: tensor.contiguous() for name, tensor in export_model.state_dict().items()}
    from safetensors.torch import save_file

    staged: list[tuple[Path, Path]] = []
    try:
        weights_tmp = _temp_path(directory, WEIGHTS_FILE)
        staged.append((weights_tmp, directory / WEIGHTS_FILE))
        save_file(state, str(weights_tmp), metadata={"format_version": str(FORMAT_VERSION)})
        if export_onnx:
            onnx_tmp = _temp_path(directory, ONNX_FILE)
            staged.append((onnx_tmp, directory / ONNX_FILE))
            export_onnx_model(export_model, onnx_tmp, example_frames=window_frames)
            verify_onnx_model(export_model, onnx_tmp, frames=(window_frames, window_frames + 137))
        card_tmp = _temp_path(directory, MODEL_CARD_FILE)
        staged.append((card_tmp, directory / MODEL_CARD_FILE))
        card_tmp.write_text(model_card or _default_model_card(metadata), encoding="utf-8")
        metadata_tmp = _temp_path(directory, METADATA_FILE)
        staged.append((metadata_tmp, directory / METADATA_FILE))
        metadata_tmp.write_text(metadata_text, encoding="utf-8")
    except BaseException:
        for temporary, _ in staged:
            temporary.unlink(missing_ok=True)
        raise
    # model.json goes in last: a directory with it is complete.
    for temporary, final in staged:
        # Temporary files are private (0600); a model is read by other users and services.
        os.chmod(temporary, 0o644)
        os.replace(temporary, final)
    if not export_onnx:
        # A stale graph from an earlier save would disagree with the new weights.
        (directory / ONNX_FILE).unlink(missing_ok=True)
    return directory


def caller_prior_of(
    metadata: dict[str, Any], feature_config: FeatureConfig, directory: Path
) -> CallerPrior | None:
    """The ``caller_normalization`` block of a package's ``model.json`` as a prior, or None."""
    block = metadata.get("caller_normalization")
    if block is None:
        return None
    try:
        prior = CallerPrior.from_dict(block, feature_config.hop_seconds)
    except NormalizationError as error:
        raise ModelPackageError(f"{directory / METADATA_FILE}: {error}") from None
    if prior.num_features != feature_config.num_features:
        raise ModelPackageError(
            f"{directory / METADATA_FILE}: caller_normalization has {prior.num_features} "
            f"features, the feature_config {feature_config.num_features}"
        )
    return prior


def load_model_package(directory: str | Path | None = None) -> ModelPackage:
    """Load a package directory (``None``: the bundled default model) as a torch model in eval mode.

    Raises
    ------
    ModelPackageError
        The directory or a file is missing or corrupt, or the format version is unknown.
    """
    directory = DEFAULT_MODEL_DIR if directory is None else Path(directory)
    if not directory.is_dir():
        hint = ""
        if directory == DEFAULT_MODEL_DIR:
            hint = " (no default model is bundled; train one with `callmood train`)"
        raise ModelPackageError(f"{directory}: model directory not found{hint}")
    metadata = read_model_metadata(directory)
    try:
        feature_config = FeatureConfig.from_dict(metadata["feature_config"])
        model_config = ModelConfig.from_dict(metadata["model_config"])
    except (FeatureError, ModelInputError, TypeError) as error:
        raise ModelPackageError(f"{directory / METADATA_FILE}: {error}") from None
    labels = _check_labels(
        metadata["labels"], model_config.num_classes, str(directory / METADATA_FILE)
    )
    window_seconds = metadata["window_seconds"]
    if not isinstance(window_seconds, int | float) or not window_seconds > 0:
        raise ModelPackageError(
            f"{directory / METADATA_FILE}: window_seconds must be a positive number, "
            f"got {window_seconds!r}"
        )
    if feature_config.num_features != model_config.num_features:
        raise ModelPackageError(
            f"{directory / METADATA_FILE}: feature_config gives {feature_config.num_features} "
            f"features but model_config expects {model_config.num_features}"
        )

    weights_path = directory / WEIGHTS_FILE
    if not weights_path.is_file():
        raise ModelPackageError(f"{weights_path}: weights file missing")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as error:
        raise ModelPackageError(
            f"{weights_path}: not a readable safetensors file ({error})"
        ) from None
    model = ParallelCNNTransformer(model_config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[0]
        raise ModelPackageError(
            f"{weights_path}: weights do not fit the model_config in {METADATA_FILE} ({first_line})"
        ) from None
    if not all(
        torch.isfinite(tensor).all() for tensor in state.values() if tensor.is_floating_point()
    ):
        raise ModelPackageError(f"{weights_path}: weights contain NaN or infinite values")
    return ModelPackage(
        model=model.eval(),
        labels=labels,
        feature_config=feature_config,
        window_seconds=float(window_seconds),
        metadata=metadata,
        directory=directory,
    )


def read_model_metadata(directory: str | Path) -> dict[str, Any]:
    """Read and check ``model.json`` (format version and required keys) without loading weights."""
    path = Path(directory) / METADATA_FILE
    if not path.is_file():
        raise ModelPackageError(f"{path}: missing; {Path(directory)} is not a model package")
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelPackageError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(metadata, dict):
        raise ModelPackageError(f"{path}: must hold a JSON object, got {type(metadata).__name__}")
    version = metadata.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelPackageError(
            f"{path}: unknown format_version {version!r} (this callmood reads {FORMAT_VERSION}); "
            "a newer callmood may be needed"
        )
    missing = sorted({"labels", "feature_config", "model_config", "window_seconds"} - set(metadata))
    if missing:
        raise ModelPackageError(f"{path}: missing keys: {', '.join(missing)}")
    return metadata


class _WithAbsoluteFeatures(torch.nn.Module):
    """The network with ``absolute_features`` as its second positional input, for the export."""

    def __init__(self, model: ParallelCNNTransformer) -> None:
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor, absolute_features: torch.Tensor) -> torch.Tensor:
        return self.model(features, absolute_features=absolute_features)


def export_onnx_model(
    model: ParallelCNNTransformer, path: str | Path, *, example_frames: int = 301
) -> Path:
    """Export ``model`` (eval mode) to ONNX: input ``features`` (B, F, frames), output ``logits``.

    A model with ``absolute_statistics`` has a second input, ``absolute_features``, of the
    same shape. Batch and frames are dynamic axes (frames >= ``model.config.min_frames``).
    """
    try:
        import onnxscript  # noqa: F401  (the torch exporter needs it)
    except ImportError:
        raise ModelPackageError(
            "ONNX export needs the onnx and onnxscript packages: pip install 'callmood[train]' "
            "(or save with export_onnx=False)"
        ) from None
    model = copy.deepcopy(model).cpu().eval()
    example = torch.zeros(
        2, model.config.num_features, max(example_frames, model.config.min_frames)
    )
    batch = torch.export.Dim("batch", min=1)
    frames = torch.export.Dim("frames", min=model.config.min_frames)
    exported: torch.nn.Module = model
    inputs: tuple[torch.Tensor, ...] = (example,)
    input_names = ["features"]
    dynamic_shapes = {"features": {0: batch, 2: frames}}
    if model.config.absolute_statistics:
        # A second input rather than a wider first one: the graph's `features` stay what
        # every other model takes, and the statistics are computed inside the graph, where
        # the parity check below covers them.
        exported = _WithAbsoluteFeatures(model).eval()
        inputs = (example, example.clone())
        input_names.append(ABSOLUTE_INPUT)
        dynamic_shapes[ABSOLUTE_INPUT] = {0: batch, 2: frames}
    exporter_logger = logging.getLogger("torch.onnx")
    previous_level = exporter_logger.level
    exporter_logger.setLevel(logging.ERROR)  # it warns about torchvision ops we never use
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # deprecations inside torch.export
            # Two inputs share the batch and frames axes; the exporter says so for each.
            warnings.filterwarnings("ignore", "# The axis name", UserWarning)
            torch.onnx.export(
                exported,
                inputs,
                str(path),
                input_names=input_names,
                output_names=["logits"],
                dynamic_shapes=dynamic_shapes,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
    finally:
        exporter_logger.setLevel(previous_level)
    return Path(path)


def verify_onnx_model(
    model: ParallelCNNTransformer, path: str | Path, *, frames: Sequence[int] = (301, 438)
) -> float:
    """Run the ONNX graph with ONNX Runtime and torch on random features of several lengths.

    Returns the largest absolute logit difference; raises :class:`ModelPackageError` above
    ``ONNX_TOLERANCE``.
    """
    import onnxruntime

    model = copy.deepcopy(model).cpu().eval()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    for batch_size, length in zip((1, 3), frames, strict=False):
        features = torch.randn(batch_size, model.config.num_features, length, generator=generator)
        # Scale into the model's input range so the check exercises the normalisation too.
        features = features * model.feature_std[:, None] + model.feature_mean[:, None]
        absolute = None
        feed = {"features": features.numpy()}
        if model.config.absolute_statistics:
            # Another level and spread than `features`, as a caller's absolute frames have.
            absolute = features * 1.5 + 2.0
            feed[ABSOLUTE_INPUT] = absolute.numpy()
        with torch.no_grad():
            expected = model(features, absolute_features=absolute).numpy()
        (actual,) = session.run(["logits"], feed)
        worst = max(worst, float(np.abs(actual - expected).max()))
    if not worst <= ONNX_TOLERANCE:
        raise ModelPackageError(
            f"{path}: ONNX Runtime output differs from torch by {worst:.2e} (> {ONNX_TOLERANCE})"
        )
    return worst


def _check_labels(labels: Any, num_classes: int, where: str) -> tuple[str, ...]:
    if isinstance(labels, str) or not isinstance(labels, Sequence):
        raise ModelPackageError(f"{where}: labels must be a list of class names, got {labels!r}")
    if not all(isinstance(label, str) and label for label in labels):
        raise ModelPackageError(f"{where}: labels must be non-empty strings, got {list(labels)}")
    if len(set(labels)) != len(labels):
        raise ModelPackageError(f"{where}: labels repeat: {list(labels)}")
    if len(labels) != num_classes:
        raise ModelPackageError(
            f"{where}: {len(labels)} labels for a model with {num_classes} classes"
        )
    return tuple(labels)


def _temp_path(directory: Path, final_name: str) -> Path:
    handle, name = tempfile.mkstemp(dir=directory, prefix=f".{final_name}.", suffix=".tmp")
    os.close(handle)
    return Path(name)


def _default_model_card(metadata: dict[str, Any]) -> str:
    features = metadata["feature_config"]
    lines = [
        f"# Model card: {metadata['name']}",
        "",
        "Parallel CNN + transformer speech-emotion classifier (callmood).",
        "",
        f"- Created: {metadata['created']}",
        f"- Classes: {', '.join(metadata['labels'])}",
        f"- Input: {metadata['window_seconds']} s windows of mono float32 audio at "
        f"{features['sample_rate']} Hz, {features['kind']} features "
        f"({features['n_mfcc'] if features['kind'] == 'mfcc' else features['n_mels']} per frame, "
        f"{features['hop_seconds'] * 1000:g} ms hop)",
        f"- Parameters: {metadata['num_parameters']:,}",
    ]
    for section in ("training", "metrics"):
        if section in metadata:
            lines += ["", f"## {section.capitalize()}", "", "```json"]
            lines += [json.dumps(metadata[section], indent=2), "```"]
    lines += [
        "",
        "## Limits",
        "",
        "Trained on acted emotional speech; accuracy on spontaneous call-centre speech is lower "
        "than on the training corpora. Weights inherit the licence of their training data.",
        "",
    ]
    return "\n".join(lines)
