"""The saved-model package: round trip, ONNX agreement with torch, clear errors on bad packages."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import require

from callmood.features import FeatureConfig
from callmood.models import package as package_module
from callmood.models.package import (
    MODEL_CARD_FILE,
    ModelPackageError,
    export_onnx_model,
    load_model_package,
    save_model_package,
    verify_onnx_model,
)
from callmood.models.parallel_cnn_transformer import ModelConfig, ParallelCNNTransformer

torch.set_num_threads(1)
LABELS = ("neutral", "happy", "sad", "angry")


def _trained_looking_model(**config) -> ParallelCNNTransformer:
    """A model whose every parameter and buffer differs from a fresh one (as after training)."""
    torch.manual_seed(1)
    model = ParallelCNNTransformer(ModelConfig(num_classes=4, **config))
    model.set_normalization(torch.randn(40) * 10, torch.rand(40) * 5 + 0.5)
    model.train()
    with torch.no_grad():
        for _ in range(3):  # move the batch-norm running statistics off their defaults
            model(torch.randn(4, 40, 301) * 10)
    return model


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Path, ParallelCNNTransformer]:
    require_onnx_export()
    model = _trained_looking_model()
    directory = tmp_path_factory.mktemp("packages") / "iemocap4-test"
    save_model_package(
        directory,
        model,
        labels=LABELS,
        feature_config=FeatureConfig(),
        window_seconds=3.0,
        extra={"training": {"corpora": ["ravdess"], "folds": 5}, "metrics": {"ua": 0.61}},
    )
    return directory, model


def require_onnx_export() -> None:
    try:
        import onnxscript  # noqa: F401
    except ImportError:
        require(False, "onnxscript is not installed (pip install 'callmood[train]')")


def test_package_directory_holds_the_documented_files(saved):
    directory, _ = saved
    names = {path.name for path in directory.iterdir()}
    assert names == {"weights.safetensors", "model.onnx", "model.json", MODEL_CARD_FILE}
    metadata = json.loads((directory / "model.json").read_text())
    assert metadata["format_version"] == 1
    assert metadata["name"] == "iemocap4-test"
    assert metadata["labels"] == list(LABELS)
    assert metadata["window_seconds"] == 3.0
    assert metadata["feature_config"] == FeatureConfig().to_dict()
    assert metadata["model_config"]["num_classes"] == 4
    assert metadata["metrics"] == {"ua": 0.61}
    assert "created" in metadata
    assert "neutral, happy, sad, angry" in (directory / MODEL_CARD_FILE).read_text()


def test_round_trip_restores_the_same_network_and_metadata(saved):
    directory, model = saved
    loaded = load_model_package(directory)
    assert loaded.labels == LABELS
    assert loaded.feature_config == FeatureConfig()
    assert loaded.window_seconds == 3.0
    assert loaded.metadata["training"] == {"corpora": ["ravdess"], "folds": 5}
    assert not loaded.model.training
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], tensor), name
    assert torch.equal(loaded.model.feature_mean, model.feature_mean)
    assert torch.equal(loaded.model.feature_std, model.feature_std)
    features = torch.randn(2, 40, 301) * 10
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(features), model.eval()(features))


def test_onnx_graph_agrees_with_torch_for_any_batch_and_length(saved):
    import onnxruntime

    directory, model = saved
    model.eval()
    session = onnxruntime.InferenceSession(
        str(directory / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    assert [i.name for i in session.get_inputs()] == ["features"]
    assert [o.name for o in session.get_outputs()] == ["logits"]
    generator = torch.Generator().manual_seed(3)
    for batch_size, frames in [(1, 101), (5, 301), (2, 701)]:
        features = torch.randn(batch_size, 40, frames, generator=generator) * 10
        (logits,) = session.run(["logits"], {"features": features.numpy()})
        with torch.no_grad():
            expected = model(features).numpy()
        assert logits.shape == (batch_size, 4)
        assert np.abs(logits - expected).max() < 1e-4


def test_onnx_export_carries_the_optional_layers(tmp_path):
    require_onnx_export()
    model = _trained_looking_model(
        attention_pooling=True,
        positional_encoding="sinusoidal",
        cnn_time_pool="max",
        statistics_branch=True,
        statistics_deltas=True,
    ).eval()
    path = export_onnx_model(model, tmp_path / "options.onnx")
    assert verify_onnx_model(model, path, frames=(301, 57)) < 1e-4


def test_package_without_onnx_loads_and_reports_no_graph(tmp_path):
    model = _trained_looking_model(attention_pooling=True)
    directory = save_model_package(
        tmp_path / "plain",
        model,
        labels=LABELS,
        feature_config=FeatureConfig(),
        window_seconds=2.5,
        export_onnx=False,
        model_card="# My model\n",
    )
    assert model.training  # the caller's model is not switched to eval mode
    loaded = load_model_package(directory)
    assert loaded.onnx_path is None
    assert loaded.model.config.attention_pooling
    assert (directory / MODEL_CARD_FILE).read_text() == "# My model\n"
    assert not list(directory.glob(".*.tmp"))
    assert all(path.stat().st_mode & 0o044 == 0o044 for path in directory.iterdir())  # readable


def test_saving_again_replaces_the_package(tmp_path):
    first = _trained_looking_model()
    directory = tmp_path / "model"
    save_model_package(
        directory, first, labels=LABELS, feature_config=FeatureConfig(), window_seconds=3.0,
        export_onnx=False,
    )  # fmt: skip
    second = ParallelCNNTransformer(ModelConfig(num_classes=2))
    save_model_package(
        directory, second, labels=("calm", "angry"), feature_config=FeatureConfig(),
        window_seconds=3.0, export_onnx=False,
    )  # fmt: skip
    assert load_model_package(directory).labels == ("calm", "angry")


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({"labels": ("neutral", "happy")}, "2 labels for a model with 4 classes"),
        ({"labels": ("neutral", "happy", "sad", "sad")}, "repeat"),
        ({"labels": "neutral,happy,sad,angry"}, "list of class names"),
        ({"feature_config": FeatureConfig(kind="logmel")}, "64 features"),
        ({"window_seconds": 0.1}, "too short"),
        ({"extra": {"labels": ["x"]}}, "may not set labels"),
        ({"extra": {"training": {"started": object()}}}, "JSON"),
    ],
)
def test_saving_inconsistent_metadata_is_a_clear_error(tmp_path, arguments, problem):
    values = {
        "labels": LABELS,
        "feature_config": FeatureConfig(),
        "window_seconds": 3.0,
        "export_onnx": False,
    }
    values.update(arguments)
    with pytest.raises(ModelPackageError, match=problem):
        save_model_package(tmp_path / "bad", _trained_looking_model(), **values)


def test_saving_onto_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "taken").write_text("not a folder")
    with pytest.raises(ModelPackageError, match="taken: cannot create the model directory"):
        save_model_package(
            tmp_path / "taken", _trained_looking_model(), labels=LABELS,
            feature_config=FeatureConfig(), window_seconds=3.0, export_onnx=False,
        )  # fmt: skip


# ------------------------------------------------------------------------- corrupt packages


@pytest.fixture()
def copy_of_package(saved, tmp_path) -> Path:
    directory, _ = saved
    target = tmp_path / "copy"
    shutil.copytree(directory, target)
    return target


def _edit_metadata(directory: Path, **changes) -> None:
    path = directory / "model.json"
    metadata = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            metadata.pop(key)
        else:
            metadata[key] = value
    path.write_text(json.dumps(metadata))


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(ModelPackageError, match="model directory not found"):
        load_model_package(tmp_path / "nowhere")


def test_missing_default_model_says_how_to_get_one(tmp_path, monkeypatch):
    monkeypatch.setattr(package_module, "DEFAULT_MODEL_DIR", tmp_path / "default")
    with pytest.raises(ModelPackageError, match="callmood train"):
        load_model_package()


def test_folder_without_model_json_is_not_a_package(tmp_path):
    (tmp_path / "photos").mkdir()
    with pytest.raises(ModelPackageError, match="model.json: missing"):
        load_model_package(tmp_path / "photos")


def test_unknown_format_version_is_refused(copy_of_package):
    _edit_metadata(copy_of_package, format_version=2)
    with pytest.raises(ModelPackageError, match="unknown format_version 2"):
        load_model_package(copy_of_package)


def test_invalid_json_is_a_clear_error(copy_of_package):
    (copy_of_package / "model.json").write_text('{"format_version": 1, "labels": [')
    with pytest.raises(ModelPackageError, match="model.json: not valid JSON"):
        load_model_package(copy_of_package)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"labels": None}, "missing keys: labels"),
        ({"labels": ["neutral", "happy"]}, "2 labels for a model with 4 classes"),
        ({"window_seconds": "three"}, "window_seconds"),
        ({"feature_config": {"kind": "wavelets"}}, "kind"),
        ({"model_config": {"num_classes": 4, "depth": 9}}, "unknown model config keys: depth"),
    ],
)
def test_inconsistent_metadata_is_a_clear_error(copy_of_package, changes, problem):
    _edit_metadata(copy_of_package, **changes)
    with pytest.raises(ModelPackageError, match=problem):
        load_model_package(copy_of_package)


def test_truncated_weights_are_a_clear_error(copy_of_package):
    weights = copy_of_package / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])
    with pytest.raises(ModelPackageError, match="weights.safetensors: not a readable safetensors"):
        load_model_package(copy_of_package)


def test_missing_weights_are_a_clear_error(copy_of_package):
    (copy_of_package / "weights.safetensors").unlink()
    with pytest.raises(ModelPackageError, match="weights file missing"):
        load_model_package(copy_of_package)


def test_pickled_weights_are_refused_not_executed(copy_of_package, saved):
    _, model = saved
    torch.save(model.state_dict(), copy_of_package / "weights.safetensors")
    with pytest.raises(ModelPackageError, match="not a readable safetensors"):
        load_model_package(copy_of_package)


def test_weights_of_another_architecture_are_a_clear_error(copy_of_package):
    _edit_metadata(copy_of_package, model_config={"num_classes": 4, "cnn_channels": [8, 16, 32]})
    with pytest.raises(ModelPackageError, match="do not fit the model_config"):
        load_model_package(copy_of_package)
