"""`callmood data prepare`: several corpora into one manifest, label sets, clear errors."""

from __future__ import annotations

import csv
from collections import Counter

import pytest
from corpus_fixtures import build_iemocap_release, build_savee, speech_excerpt
from typer.testing import CliRunner

from callmood.cli import app
from callmood.errors import CallmoodError
from callmood.manifest import COLUMNS, read_manifest

runner = CliRunner()


def invoke(*arguments):
    return runner.invoke(app, [str(a) for a in arguments], catch_exceptions=True)


def test_prepare_merges_ravdess_and_emodb_into_one_manifest(tmp_path, ravdess_dir, emodb_dir):
    manifest = tmp_path / "manifest.csv"
    result = invoke("data", "prepare", "ravdess", ravdess_dir, "emodb", emodb_dir, "-o", manifest)
    assert result.exit_code == 0, result.output
    rows = read_manifest(manifest)
    assert Counter(row.corpus for row in rows) == {"ravdess": 1440, "emodb": 535}
    assert "1975" in result.output  # the printed total
    assert "bored" in result.output


def test_prepare_with_label_set_and_one_hot(tmp_path, shared_data):
    excerpt = speech_excerpt(shared_data)
    release = build_iemocap_release(tmp_path / "iemocap", excerpt)
    manifest = tmp_path / "four.csv"
    result = invoke(
        "data", "prepare", "iemocap", release, "ravdess", shared_data / "ravdess",
        "--label-set", "iemocap4", "--one-hot", "-o", manifest,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = read_manifest(manifest)
    # RAVDESS: 96 neutral + 192 calm -> 288 neutral; IEMOCAP fixture: 7 of 10 in the 4 classes.
    counts = Counter((row.corpus, row.label) for row in rows)
    assert counts[("ravdess", "neutral")] == 288
    assert counts[("ravdess", "happy")] == 192
    assert sum(n for (corpus, _), n in counts.items() if corpus == "iemocap") == 7
    with manifest.open() as handle:
        header = next(csv.reader(handle))
    assert header == list(COLUMNS) + ["neutral", "happy", "sad", "angry"]


def test_prepare_applies_min_recognition_to_emodb(tmp_path, emodb_dir):
    manifest = tmp_path / "emodb.csv"
    result = invoke("data", "prepare", "emodb", emodb_dir, "--min-recognition", 95, "-o", manifest)
    assert result.exit_code == 0, result.output
    assert 0 < len(read_manifest(manifest)) < 535


def test_prepare_prints_warnings_for_skipped_clips(tmp_path, shared_data):
    savee = build_savee(tmp_path / "savee", speech_excerpt(shared_data))
    (savee / "AudioData" / "DC" / "h01.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt ")
    result = invoke("data", "prepare", "savee", savee, "-o", tmp_path / "m.csv")
    assert result.exit_code == 0, result.output
    assert "warning:" in result.output and "h01.wav" in result.output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["ravdess"], "CORPUS PATH pairs"),
        (["voxceleb", "."], "unknown corpus 'voxceleb'"),
        (["ravdess", ".", "--label-set", "iemocap9"], "unknown label set 'iemocap9'"),
        (["ravdess", ".", "--min-recognition", "80"], "emodb only"),
        (["ravdess", "/no/such/folder"], "does not exist"),
    ],
)
def test_prepare_user_errors_are_callmood_errors_with_clear_messages(tmp_path, arguments, message):
    result = invoke("data", "prepare", *arguments, "-o", tmp_path / "m.csv")
    assert isinstance(result.exception, CallmoodError)
    assert message in str(result.exception)
    assert not (tmp_path / "m.csv").exists()


def test_prepare_refuses_the_same_corpus_twice_instead_of_duplicating_clips(tmp_path, emodb_dir):
    result = invoke(
        "data", "prepare", "emodb", emodb_dir, "emodb", emodb_dir, "-o", tmp_path / "m.csv"
    )
    assert isinstance(result.exception, CallmoodError)
    assert "duplicate ids" in str(result.exception)


def test_data_help_explains_the_options():
    result = invoke("data", "prepare", "--help")
    assert result.exit_code == 0
    for option in ("--label-set", "--min-recognition", "--one-hot", "--output"):
        assert option in result.output
