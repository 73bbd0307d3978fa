"""model.statistics_hidden: a hidden layer between the statistics and the decision, inside
the exported network; off (0), every model is exactly as before."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import TINY_MODEL as TINY
from conftest import emodb_clips

from callmood.inference import EmotionModel
from callmood.models.package import load_model_package
from callmood.models.parallel_cnn_transformer import (
    ModelConfig,
    ModelInputError,
    ParallelCNNTransformer,
)
from callmood.training.config import parse_training_config

TINY_MODEL = {
    **TINY,
    "statistics_branch": True,
    "statistics_deltas": True,
    "absolute_statistics": True,
    "statistics_hidden": 16,
}


def test_the_option_is_checked_by_name():
    with pytest.raises(ModelInputError, match="statistics_hidden needs statistics_branch"):
        ModelConfig(statistics_hidden=32)
    for bad in (-1, 2.5, True, "64"):
        with pytest.raises(ModelInputError, match="statistics_hidden must be an integer >= 0"):
            ModelConfig(statistics_branch=True, statistics_hidden=bad)


def test_off_the_model_and_its_metadata_are_as_before():
    torch.manual_seed(0)
    plain = ParallelCNNTransformer(ModelConfig(num_classes=4, statistics_branch=True))
    # No new weights and no new model.json key: the bundled model and older packages load.
    assert "statistics_hidden" not in plain.config.to_dict()
    assert not any("statistics_head" in name for name in plain.state_dict())
    assert "statistics_hidden" not in load_model_package().metadata["model_config"]


def test_the_statistics_reach_the_decision_through_one_hidden_part():
    torch.manual_seed(0)
    config = ModelConfig(
        num_classes=4, statistics_branch=True, statistics_deltas=True, statistics_hidden=24
    )
    assert config.to_dict()["statistics_hidden"] == 24
    model = ParallelCNNTransformer(ModelConfig.from_dict(config.to_dict())).eval()
    features = torch.randn(3, 40, 200)
    with torch.no_grad():
        parts = model.branches(features)
        # Three branches and the hidden layer's output: branch_loss treats it as one branch.
        assert len(parts) == 4 and parts[-1].shape[1] == 24
        joined = model.joined_logits(parts)
        each = model.branch_logits(parts)
        bias = model.classifier.bias
        torch.testing.assert_close(sum(each) - (len(each) - 1) * bias, joined)
        # A louder, faster-moving copy changes the statistics, and so the answer.
        other = model(features * 3.0)
    assert not torch.allclose(joined, other, atol=1e-4)


def test_a_trained_model_exports_and_onnx_agrees_with_torch(emodb_dir, tmp_path):
    from callmood.training.loop import train_model
    from callmood.training.run import save_package

    config = parse_training_config(
        {
            "name": "statistics-hidden-test",
            "corpora": [{"name": "emodb", "path": str(emodb_dir)}],
            "label_set": "emodb7",
            "classes": ["neutral", "angry"],
            "model": TINY_MODEL,
            "epochs": 1,
            "batch_size": 16,
            "crop_seconds": 1.5,
            "validation": {"fraction": 0.0},
            "caller_normalization": {"enabled": True, "prior_seconds": 3.0},
            "branch_loss": 1,
            "num_threads": 1,
            "seed": 0,
        }
    )
    clips = emodb_clips(emodb_dir, config, speakers={"emodb:09", "emodb:10"})
    result = train_model(config, clips, np.arange(len(clips.rows)), np.array([], dtype=np.int64))
    directory = save_package(config, clips, result, tmp_path / "model", {})
    assert (
        json.loads((directory / "model.json").read_text())["model_config"]["statistics_hidden"]
        == 16
    )
    onnx = EmotionModel.load(directory, backend="onnx", num_threads=1)
    by_torch = EmotionModel.load(directory, backend="torch")
    for clip in clips.features[:4]:
        window = np.asarray(clip)[None, :, :300]  # caller-normalised inside, as a call alone
        a = onnx.predict_features(window)
        b = by_torch.predict_features(window)
        np.testing.assert_allclose(a, b, atol=1e-4)
