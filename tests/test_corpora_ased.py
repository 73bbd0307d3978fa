"""The ASED loader on the real corpus (../shared/data/ased): names, speakers, genders, labels."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from callmood.cli import app
from callmood.corpora import CorpusError, prepare
from callmood.corpora.ased import prepare_ased
from callmood.manifest import apply_label_set, read_manifest


@pytest.fixture(scope="module")
def ased_rows(ased_dir):
    return prepare_ased(ased_dir)


def test_ased_finds_all_2474_clips(ased_rows):
    assert len(ased_rows) == 2474
    assert len({row.id for row in ased_rows}) == 2474
    assert {row.language for row in ased_rows} == {"am"}


def test_ased_has_65_globally_unique_speakers_as_groups(ased_rows):
    speakers = {row.speaker for row in ased_rows}
    assert speakers == {f"ased:{n:02d}" for n in range(1, 66)}
    assert all(row.group == row.speaker for row in ased_rows)


def test_ased_each_speaker_has_one_gender_the_majority_of_their_clips(ased_rows):
    genders: dict[str, set[str]] = {}
    for row in ased_rows:
        genders.setdefault(row.speaker, set()).add(row.gender)
    assert all(len(found) == 1 for found in genders.values())
    assert Counter(found.pop() for found in genders.values()) == {"female": 25, "male": 40}
    # The five mislabelled clips: their file name says the other gender than their row.
    slips = [row for row in ased_rows if _name_gender(row) != row.gender]
    assert sorted(row.speaker for row in slips) == [
        f"ased:{n}" for n in ("09", "15", "21", "23", "25")
    ]


def _name_gender(row) -> str:
    return {"01": "female", "02": "male"}[Path(row.path).name.split("-")[3]]


def test_ased_upper_case_file_name_is_parsed(ased_rows):
    row = next(r for r in ased_rows if Path(r.path).name == "S4-04-02-01-29.flac")
    assert (row.label, row.original_label, row.speaker) == ("sad", "s4", "ased:29")


def test_ased_labels_and_label_sets(ased_rows):
    counts = Counter(row.label for row in ased_rows)
    assert counts == {"neutral": 522, "fearful": 510, "happy": 486, "sad": 470, "angry": 486}
    four = apply_label_set(ased_rows, "iemocap4")
    assert Counter(row.label for row in four) == counts - Counter({"fearful": 510})
    five = apply_label_set(ased_rows, "ased5")
    assert Counter(row.label for row in five) == counts


def test_ased_real_durations_and_rates(ased_rows):
    assert all(1.5 < row.duration_seconds < 5.0 for row in ased_rows)
    assert {row.sample_rate for row in ased_rows} == {16000}


def test_ased_ignores_bad_names_and_a_folder_of_only_bad_names_is_a_clear_error(tmp_path, ased_dir):
    source = ased_dir / "05Angry" / "a5-03-01-02-50.flac"
    for bad in ("a5-03-01-02.flac", "x9-03-01-02-50.flac", "a5-03-01-03-50.flac"):
        shutil.copy(source, tmp_path / bad)
    with pytest.raises(CorpusError, match="ASED: no clips found"):
        prepare_ased(tmp_path)
    shutil.copy(source, tmp_path / source.name)
    rows = prepare("ased", tmp_path)
    assert [row.id for row in rows] == ["ased:a5-03-01-02-50"]


def test_cli_prepares_ased(tmp_path, ased_dir):
    manifest = tmp_path / "ased.csv"
    result = CliRunner().invoke(
        app, ["data", "prepare", "ased", str(ased_dir), "-o", str(manifest)]
    )
    assert result.exit_code == 0, result.output
    assert len(read_manifest(manifest)) == 2474
    assert "2474" in result.output
