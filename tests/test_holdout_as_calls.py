"""`callmood evaluate --model --manifest` judges a caller-normalised model as calls too."""

import json

import numpy as np
import pytest
from analysis_fixtures import make_random_package
from typer.testing import CliRunner

from callmood.cli import app
from callmood.corpora import prepare_emodb
from callmood.inference import EmotionModel
from callmood.manifest import write_manifest
from callmood.normalization import CallerNormalizer
from callmood.training.data import decode_clip, trim_silence

BUNDLED = "src/callmood/models/default"
SPEAKERS = ("emodb:03", "emodb:08")
CLASSES = ("neutral", "happy", "sad", "angry")


@pytest.fixture(scope="module")
def manifest(emodb_dir, tmp_path_factory):
    # Six clips of each of two speakers, in id order (the order of a speaker's call).
    rows = sorted(prepare_emodb(emodb_dir), key=lambda row: row.id)
    chosen = []
    for speaker in SPEAKERS:
        chosen += [r for r in rows if r.speaker == speaker and r.label in CLASSES][:6]
    path = tmp_path_factory.mktemp("holdout") / "test.csv"
    write_manifest(chosen, path)
    return path, chosen


def hand_as_calls(rows) -> tuple[float, float]:
    """UA and WA when each speaker's clips go in order through one running normaliser."""
    model = EmotionModel.load(BUNDLED, backend="torch")
    assert model.caller_prior is not None
    trim_db = json.loads((model.directory / "model.json").read_text())["trim_silence_db"]
    normalizers = {}
    truth, guesses = [], []
    for row in rows:
        audio = trim_silence(decode_clip(row.path), model.sample_rate, trim_db)
        features = model.window_features(audio, [0], len(audio))[0]
        normalizer = normalizers.setdefault(row.speaker, CallerNormalizer(model.caller_prior))
        normalized = normalizer.normalize(features)
        # The bundled model also takes each clip as it is (absolute_statistics).
        absolute = features[None] if model.absolute_statistics else None
        probabilities = model.predict_features(
            normalized[None], normalized=True, absolute=absolute
        )[0]
        truth.append(row.label)
        guesses.append(model.labels[int(np.argmax(probabilities))])
    recalls = [
        np.mean([g == label for t, g in zip(truth, guesses, strict=True) if t == label])
        for label in sorted(set(truth))
    ]
    correct = sum(t == g for t, g in zip(truth, guesses, strict=True))
    return float(np.mean(recalls)), correct / len(truth)


def test_held_out_report_has_the_as_calls_numbers_of_a_hand_computation(manifest, tmp_path):
    path, rows = manifest
    result = CliRunner().invoke(
        app, ["evaluate", "--model", BUNDLED, "--manifest", str(path), "-o", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output

    report = json.loads((tmp_path / "report.json").read_text())
    (fold,) = report["folds"]
    assert fold["metrics"]["num_examples"] == len(rows)  # the plain numbers are still there
    assert "unweighted_average_recall" in report["summary"]["pooled"]
    ua, wa = hand_as_calls(rows)
    assert fold["call_metrics"]["unweighted_average_recall"] == pytest.approx(ua, abs=1e-9)
    assert fold["call_metrics"]["weighted_accuracy"] == pytest.approx(wa, abs=1e-9)
    markdown = (tmp_path / "report.md").read_text()
    assert "## As calls" in markdown
    assert f"| mean | {100 * ua:.1f} | {100 * wa:.1f} |" in markdown


def test_a_model_without_caller_normalisation_reports_the_plain_numbers_only(manifest, tmp_path):
    # As the corpus protocols: no running normaliser, so no "as calls" numbers.
    path, rows = manifest
    model = make_random_package(tmp_path / "model")
    result = CliRunner().invoke(
        app,
        ["evaluate", "--model", str(model), "--manifest", str(path), "-o", str(tmp_path / "out")],
    )
    assert result.exit_code == 0, result.output
    (fold,) = json.loads((tmp_path / "out" / "report.json").read_text())["folds"]
    assert fold["metrics"]["num_examples"] == len(rows)
    assert "call_metrics" not in fold
    assert "As calls" not in (tmp_path / "out" / "report.md").read_text()
