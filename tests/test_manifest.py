"""The manifest CSV: round trip, portable paths, one-hot export, validation in one report."""

from __future__ import annotations

import csv
import dataclasses

import pytest

from callmood.errors import CallmoodError
from callmood.manifest import (
    COLUMNS,
    ManifestError,
    ManifestRow,
    apply_label_set,
    read_manifest,
    rows_to_dataframe,
    write_manifest,
)


def make_row(path, clip_id="iemocap:Ses01F_impro01_M000", **changes) -> ManifestRow:
    row = ManifestRow(
        id=clip_id,
        corpus="iemocap",
        path=str(path),
        speaker="iemocap:Ses01M",
        gender="male",
        group="Session1",
        label="excited",
        original_label="exc",
        valence=3.5,
        arousal=4.0,
        dominance=2.5,
        duration_seconds=2.3456,
        sample_rate=16000,
        language="en",
    )
    return dataclasses.replace(row, **changes)


@pytest.fixture
def audio_files(tmp_path):
    folder = tmp_path / "audio"
    folder.mkdir()
    paths = [folder / f"clip{n}.wav" for n in range(3)]
    for path in paths:
        path.write_bytes(b"RIFF")  # existence is all the manifest checks
    return paths


def test_round_trip_keeps_every_field(tmp_path, audio_files):
    rows = [
        make_row(audio_files[0]),
        make_row(audio_files[1], "ravdess:x", corpus="ravdess", gender=None, valence=None,
                 arousal=None, dominance=None, label="calm", original_label="02"),
    ]  # fmt: skip
    manifest = tmp_path / "manifest.csv"
    write_manifest(rows, manifest)
    assert read_manifest(manifest) == rows


def test_paths_under_the_manifest_folder_are_written_relative_and_read_back_absolute(
    tmp_path, audio_files
):
    manifest = tmp_path / "manifest.csv"
    write_manifest([make_row(audio_files[0])], manifest)
    with manifest.open() as handle:
        assert next(csv.DictReader(handle))["path"] == "audio/clip0.wav"
    moved = tmp_path.parent / (tmp_path.name + "_moved")
    tmp_path.rename(moved)  # the folder moves as a whole: the manifest still works
    (row,) = read_manifest(moved / "manifest.csv")
    assert row.path == str(moved / "audio" / "clip0.wav")


def test_paths_outside_the_manifest_folder_are_written_absolute(tmp_path, audio_files):
    manifest = tmp_path / "out" / "deep" / "manifest.csv"
    write_manifest([make_row(audio_files[0])], manifest)
    with manifest.open() as handle:
        assert next(csv.DictReader(handle))["path"] == str(audio_files[0])


def test_one_hot_export_adds_one_column_per_label(tmp_path, audio_files):
    rows = [
        make_row(audio_files[0], "a", label="sad"),
        make_row(audio_files[1], "b", label="neutral"),
        make_row(audio_files[2], "c", label="sad"),
    ]
    manifest = tmp_path / "manifest.csv"
    write_manifest(rows, manifest, one_hot=True)
    with manifest.open() as handle:
        records = list(csv.DictReader(handle))
    assert list(records[0])[len(COLUMNS) :] == ["neutral", "sad"]
    assert [(r["neutral"], r["sad"]) for r in records] == [("0", "1"), ("1", "0"), ("0", "1")]
    assert read_manifest(manifest) == rows  # the extra columns do not disturb reading


def test_one_hot_columns_can_follow_a_label_set(tmp_path, audio_files):
    manifest = tmp_path / "manifest.csv"
    write_manifest([make_row(audio_files[0], label="sad")], manifest, one_hot=True,
                   labels=["neutral", "happy", "sad", "angry"])  # fmt: skip
    header = manifest.read_text().splitlines()[0].split(",")
    assert header[len(COLUMNS) :] == ["neutral", "happy", "sad", "angry"]


def test_writing_duplicate_ids_is_refused_and_leaves_no_file(tmp_path, audio_files):
    manifest = tmp_path / "manifest.csv"
    with pytest.raises(ManifestError, match="1 duplicate ids, e.g. a"):
        write_manifest([make_row(audio_files[0], "a"), make_row(audio_files[1], "a")], manifest)
    assert list(tmp_path.glob("*manifest.csv*")) == []


def test_validation_reports_every_problem_with_its_line(tmp_path, audio_files):
    manifest = tmp_path / "manifest.csv"
    write_manifest([make_row(audio_files[n], f"id{n}") for n in range(3)], manifest)
    lines = manifest.read_text().splitlines()
    lines[1] = lines[1].replace(",excited,", ",exited,")
    lines[2] = lines[2].replace(",16000,", ",16k,").replace("audio/clip1.wav", "audio/gone.wav")
    lines[3] = lines[3].replace("id2,", "id0,").replace(",2.3456,", ",-1,")
    lines.append(lines[1].replace("id0,", "id9,").replace(",3.5,", ",high,"))
    manifest.write_text("\n".join(lines) + "\n")
    with pytest.raises(ManifestError) as caught:
        read_manifest(manifest)
    message = str(caught.value)
    assert "has 7 problems" in message
    assert "line 2: unknown label 'exited' (allowed: neutral, calm" in message
    assert "line 3: sample_rate '16k' is not a whole number" in message
    assert "line 4: duplicate id 'id0' (first on line 2)" in message
    assert "line 4: duration_seconds must be positive, got -1" in message
    assert "line 5: valence 'high' is not a number" in message
    assert "line 5: unknown label 'exited'" in message
    assert f"line 3: audio file {audio_files[1].parent / 'gone.wav'} not found" in message


def test_missing_audio_files_are_reported_unless_file_checks_are_off(tmp_path, audio_files):
    manifest = tmp_path / "manifest.csv"
    write_manifest([make_row(audio_files[0])], manifest)
    audio_files[0].unlink()
    with pytest.raises(ManifestError, match=r"line 2: audio file .*clip0.wav not found"):
        read_manifest(manifest)
    assert len(read_manifest(manifest, check_files=False)) == 1


def test_manifest_errors_are_callmood_errors_naming_the_file(tmp_path):
    with pytest.raises(CallmoodError, match="nowhere.csv not found"):
        read_manifest(tmp_path / "nowhere.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("id,label\nx,sad\n")
    with pytest.raises(ManifestError, match="bad.csv lacks columns corpus, path"):
        read_manifest(bad)
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00\x01garbage")
    with pytest.raises(ManifestError, match="binary.csv"):
        read_manifest(binary)


def test_nan_and_empty_required_fields_are_problems(tmp_path, audio_files):
    manifest = tmp_path / "manifest.csv"
    write_manifest([make_row(audio_files[0], speaker="", duration_seconds=float("nan"))], manifest)
    with pytest.raises(ManifestError) as caught:
        read_manifest(manifest)
    assert "empty speaker" in str(caught.value)
    assert "duration_seconds 'nan' is not a finite number" in str(caught.value)


def test_apply_label_set_maps_and_drops_keeping_the_original_code(tmp_path, audio_files):
    rows = [
        make_row(audio_files[0], "a", label="excited", original_label="exc"),
        make_row(audio_files[1], "b", label="frustrated", original_label="fru"),
    ]
    (mapped,) = apply_label_set(rows, "iemocap4")
    assert (mapped.id, mapped.label, mapped.original_label) == ("a", "happy", "exc")
    assert rows[0].label == "excited"  # the input rows are not changed


def test_rows_to_dataframe_has_the_manifest_columns(audio_files):
    frame = rows_to_dataframe([make_row(audio_files[0])])
    assert list(frame.columns) == list(COLUMNS)
    assert frame.loc[0, "speaker"] == "iemocap:Ses01M"
