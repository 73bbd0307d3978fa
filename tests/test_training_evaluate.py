"""`callmood evaluate`: speaker-independent protocols and the "Performance evaluation" report."""

import csv
import json

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from callmood.cli import app
from callmood.corpora import prepare_emodb
from callmood.manifest import write_manifest
from callmood.training.config import parse_training_config
from callmood.training.evaluate import EvaluationError, evaluate_cross_corpus

THREE_SPEAKERS = {"emodb:09", "emodb:10", "emodb:11"}


@pytest.fixture(scope="module")
def three_speaker_manifest(emodb_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("evaluate")
    rows = [r for r in prepare_emodb(emodb_dir) if r.speaker in THREE_SPEAKERS]
    write_manifest(rows, folder / "manifest.csv")
    return folder / "manifest.csv"


@pytest.fixture(scope="module")
def loso_runs(three_speaker_manifest, tmp_path_factory):
    """The same small LOSO recipe evaluated with seeds 0 and 1: (CLI results, report folders)."""
    folder = tmp_path_factory.mktemp("loso")
    config_path = folder / "config.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "manifests": [str(three_speaker_manifest)],
                "label_set": "emodb7",
                "classes": ["neutral", "angry"],
                "model": {
                    "cnn_channels": [4, 8, 16],
                    "transformer_layers": 1,
                    "transformer_feedforward": 64,
                    "transformer_time_pool": 8,
                },
                "epochs": 2,
                "batch_size": 16,
                "validation": {"fraction": 0.0},
            }
        )
    )
    results, outputs = [], []
    for seed in (0, 1):
        output = folder / f"seed{seed}"
        command = ["evaluate", "-c", str(config_path), "-p", "loso", "-o", str(output)]
        results.append(CliRunner().invoke(app, command + ["--seed", str(seed)]))
        outputs.append(output)
    return results, outputs


def read_predictions(folder):
    with open(folder / "predictions.csv", newline="") as file:
        return list(csv.DictReader(file))


def test_loso_report_states_the_protocol_and_tests_every_speaker_once(loso_runs):
    result, output = loso_runs[0][0], loso_runs[1][0]

    assert result.exit_code == 0, result.output
    report = json.loads((output / "report.json").read_text())
    assert report["title"] == "Performance evaluation"
    assert report["protocol"] == "loso"
    assert [fold["test_groups"] for fold in report["folds"]] == [
        ["emodb:09"],
        ["emodb:10"],
        ["emodb:11"],
    ]
    assert report["summary"]["pooled"]["num_examples"] == sum(
        fold["num_test"] for fold in report["folds"]
    )
    markdown = (output / "report.md").read_text()
    assert markdown.startswith("# Performance evaluation")
    assert "leave-one-group-out over 3 groups" in markdown
    assert (output / "confusion_matrix.png").is_file()
    assert (output / "fold_ua.png").is_file()
    # Every test clip once, in the fold that tested its speaker, with its probabilities.
    rows = read_predictions(output)
    assert (
        len(rows)
        == len({row["clip"] for row in rows})
        == report["summary"]["pooled"]["num_examples"]
    )
    for row in rows:
        assert row["fold"] == row["speaker"]
        probabilities = {name: float(row[f"p_{name}"]) for name in ("neutral", "angry")}
        assert sum(probabilities.values()) == pytest.approx(1, abs=1e-4)
        assert row["predicted"] == max(probabilities, key=probabilities.get)
    recalls = [
        np.mean([r["predicted"] == label for r in rows if r["label"] == label])
        for label in ("neutral", "angry")
    ]
    assert report["summary"]["pooled"]["unweighted_average_recall"] == pytest.approx(
        np.mean(recalls)
    )


def test_seed_option_trains_another_run_of_the_same_recipe(loso_runs):
    results, outputs = loso_runs
    assert [r.exit_code for r in results] == [0, 0], [r.output for r in results]
    reports = [json.loads((o / "report.json").read_text()) for o in outputs]
    assert [r["details"]["config"]["seed"] for r in reports] == [0, 1]
    first, second = (read_predictions(o) for o in outputs)
    assert [r["clip"] for r in first] == [r["clip"] for r in second]
    assert [r["p_angry"] for r in first] != [r["p_angry"] for r in second]


def test_ensemble_averages_each_clips_probabilities_over_the_runs(loso_runs, tmp_path):
    outputs = loso_runs[1]

    result = CliRunner().invoke(
        app, ["ensemble", *map(str, outputs), "-o", str(tmp_path / "ensemble")]
    )

    assert result.exit_code == 0, result.output
    members = [{r["clip"]: r for r in read_predictions(o)} for o in outputs]
    rows = read_predictions(tmp_path / "ensemble")
    assert {r["clip"] for r in rows} == set(members[0])
    for row in rows:
        for name in ("neutral", "angry"):
            mean = np.mean([float(m[row["clip"]][f"p_{name}"]) for m in members])
            assert float(row[f"p_{name}"]) == pytest.approx(mean, abs=2e-5)
        assert row["predicted"] == max(("neutral", "angry"), key=lambda n: float(row[f"p_{n}"]))
    report = json.loads((tmp_path / "ensemble" / "report.json").read_text())
    assert report["protocol"] == "loso"
    assert [f["test_groups"] for f in report["folds"]] == [["emodb:09"], ["emodb:10"], ["emodb:11"]]
    recalls = [
        np.mean([r["predicted"] == label for r in rows if r["label"] == label])
        for label in ("neutral", "angry")
    ]
    assert report["summary"]["pooled"]["unweighted_average_recall"] == pytest.approx(
        np.mean(recalls)
    )
    assert report["details"]["ensemble"]["member_seeds"] == [0, 1]
    markdown = (tmp_path / "ensemble" / "report.md").read_text()
    assert "ensemble of 2 runs" in markdown
    assert "## Ensemble members" in markdown


def test_ensemble_refuses_runs_that_are_not_the_same_evaluation(loso_runs, tmp_path):
    import shutil

    first, second = loso_runs[1]
    short = tmp_path / "short"
    shutil.copytree(second, short)
    rows = read_predictions(short)
    with open(short / "predictions.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows[1:])  # one test clip fewer
    no_predictions = tmp_path / "old"
    shutil.copytree(second, no_predictions)
    (no_predictions / "predictions.csv").unlink()
    garbage = tmp_path / "garbage"
    shutil.copytree(second, garbage)
    (garbage / "report.json").write_text('{"folds": [{"name": "emodb:09"}]}')

    for arguments, problem in [
        ([first, short], "differ in 1 test clip"),
        ([first, no_predictions], "no predictions.csv"),
        ([first, garbage], "is not a callmood evaluation report"),
        ([first], "at least two evaluation reports"),
        ([first, first], "the same report is given twice"),
    ]:
        result = CliRunner().invoke(
            app, ["ensemble", *map(str, arguments), "-o", str(tmp_path / "out")]
        )
        assert result.exit_code != 0
        assert problem in str(result.exception) + result.output
    assert not (tmp_path / "out").exists()  # nothing written for a refused ensemble


def test_saved_model_is_tested_on_a_manifest_with_labels_mapped_to_its_classes(
    three_speaker_manifest, tmp_path
):
    # The bundled 4-class model on EmoDB clips: bored, fearful, disgust clips are left out.
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--model",
            "src/callmood/models/default",
            "--manifest",
            str(three_speaker_manifest),
            "-o",
            str(tmp_path),
        ],
    )

    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["protocol"] == "holdout"
    assert report["classes"] == ["neutral", "happy", "sad", "angry"]
    assert 0 < report["summary"]["pooled"]["num_examples"] < 3 * 60


def test_model_without_manifest_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(app, ["evaluate", "--model", str(tmp_path)])
    assert result.exit_code != 0
    assert "--manifest" in str(result.exception) + result.output


def test_cross_corpus_needs_both_corpora_in_the_data(three_speaker_manifest):
    config = parse_training_config({"manifests": [str(three_speaker_manifest)]})
    with pytest.raises(EvaluationError, match="'ravdess' is not in the config's data"):
        evaluate_cross_corpus(config, "ravdess", "emodb")


@pytest.mark.parametrize(
    "model_options",
    [
        {},
        {"statistics_branch": True, "statistics_deltas": True, "statistics_per_speaker": True},
    ],
    ids=["frames", "and-statistics"],
)
def test_held_out_test_prepares_clips_as_a_speaker_normalised_model_was_trained(
    three_speaker_manifest, tmp_path, model_options
):
    import torch

    from callmood.features import FeatureExtractor
    from callmood.manifest import read_manifest
    from callmood.models.package import load_model_package
    from callmood.training.data import decode_clip, frame_statistics, trim_silence
    from callmood.training.loop import predict_clips

    rows = read_manifest(three_speaker_manifest)
    write_manifest([r for r in rows if r.speaker != "emodb:11"], tmp_path / "train.csv")
    test_rows = [r for r in rows if r.speaker == "emodb:11" and r.label in ("neutral", "angry")]
    write_manifest(test_rows, tmp_path / "test.csv")
    config = {
        "manifests": [str(tmp_path / "train.csv")],
        "label_set": "emodb7",
        "classes": ["neutral", "angry"],
        "model": {
            "cnn_channels": [4, 8, 16],
            "transformer_layers": 1,
            "transformer_time_pool": 8,
            **model_options,
        },
        "epochs": 2,
        "validation": {"fraction": 0.0},
        "speaker_normalization": True,
        "trim_silence_db": 35,
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    trained = CliRunner().invoke(
        app, ["train", "-c", str(tmp_path / "config.yaml"), "-o", str(tmp_path / "model")]
    )
    assert trained.exit_code == 0, trained.output

    result = CliRunner().invoke(
        app,
        ["evaluate", "--model", str(tmp_path / "model"), "--manifest", str(tmp_path / "test.csv")]
        + ["-o", str(tmp_path / "report")],
    )

    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert "standardised per speaker" in report["description"]
    # The same predictions by hand: trim, features, the test speaker's own statistics.
    package = load_model_package(tmp_path / "model")
    assert package.metadata["speaker_normalization"] is True
    assert not (tmp_path / "model" / "model.onnx").exists()  # analysis refuses it anyway
    extractor = FeatureExtractor(package.feature_config)
    with torch.no_grad():
        features = [
            extractor(torch.from_numpy(trim_silence(decode_clip(r.path), 16000, 35))[None])[0]
            for r in test_rows
        ]
    mean, std = frame_statistics(features)
    normalised = [(f - mean[:, None]) / std[:, None] for f in features]
    statistics = None
    if model_options:  # and each clip's statistics against the test speaker's usual
        from callmood.models.parallel_cnn_transformer import time_statistics

        values = torch.cat([time_statistics(f[None], deltas=True) for f in normalised])
        usual = torch.stack([values.mean(0), values.std(0, unbiased=False)])
        statistics = usual[None].expand(len(normalised), 2, values.shape[1])
    logits = predict_clips(package.model, normalised, statistics)
    classes = package.labels
    targets = np.array([classes.index(r.label) for r in test_rows])
    expected_ua = np.mean(
        [np.mean(logits.argmax(1)[targets == c] == c) for c in range(len(classes))]
    )
    assert report["summary"]["pooled"]["unweighted_average_recall"] == pytest.approx(expected_ua)
    with open(tmp_path / "report" / "predictions.csv", newline="") as file:
        written = {row["clip"]: row["predicted"] for row in csv.DictReader(file)}
    assert written == {r.id: classes[i] for r, i in zip(test_rows, logits.argmax(1), strict=True)}
