"""`callmood evaluate --protocol leave-corpus-out` with the bundled recipe's caller
normalisation: a short run learns something that carries to a corpus it never heard."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import REPO_ROOT
from typer.testing import CliRunner

from callmood.cli import app
from callmood.corpora import prepare_emodb, prepare_ravdess
from callmood.manifest import write_manifest
from callmood.training.config import load_training_config


@pytest.fixture(scope="module")
def loco_report(ravdess_dir, emodb_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("loco")
    ravdess = [r for r in prepare_ravdess(ravdess_dir) if int(r.speaker.split(":")[1]) <= 12]
    speakers = {"emodb:03", "emodb:09", "emodb:11", "emodb:16"}
    emodb = [r for r in prepare_emodb(emodb_dir) if r.speaker in speakers]
    write_manifest(ravdess, folder / "ravdess.csv")
    write_manifest(emodb, folder / "emodb.csv")
    recipe = load_training_config(REPO_ROOT / "configs" / "default.yaml", check_paths=False)
    assert recipe.caller_normalization.enabled, "the bundled recipe normalises per caller"
    config = {
        "manifests": [str(folder / "ravdess.csv"), str(folder / "emodb.csv")],
        "label_set": "iemocap4",
        "classes": ["neutral", "angry"],
        "features": recipe.features,
        "model": {**recipe.model, "cnn_channels": [4, 8, 16], "transformer_layers": 1},
        "trim_silence_db": recipe.trim_silence_db,
        "crop_seconds": recipe.crop_seconds,
        "caller_normalization": recipe.caller_normalization.model_dump(),
        "epochs": 10,
        "batch_size": 16,
        "validation": {"fraction": 0.0},
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    command = ["evaluate", "-c", str(folder / "config.yaml"), "-p", "leave-corpus-out"]
    result = CliRunner().invoke(app, command + ["-o", str(folder / "report")])
    assert result.exit_code == 0, result.output
    return json.loads((folder / "report" / "report.json").read_text())


@pytest.mark.slow
def test_a_short_run_lands_above_chance_on_each_left_out_corpus(loco_report):
    assert loco_report["protocol"] == "leave-corpus-out"
    folds = {fold["name"]: fold for fold in loco_report["folds"]}
    assert set(folds) == {"emodb -> ravdess", "ravdess -> emodb"}
    for name, fold in folds.items():
        tested = {group.split(":")[0] for group in fold["test_groups"]}
        assert tested == {name.split(" -> ")[1]}
        # Two classes: chance is 50 % UA.
        assert fold["metrics"]["unweighted_average_recall"] > 0.6, name
        # The same test clips as calls of their speakers, through the running normaliser.
        assert fold["call_metrics"]["num_examples"] == fold["num_test"]
