"""CREMA-D, TESS, SAVEE and users' own recordings, on small trees with the real naming."""

from __future__ import annotations

from collections import Counter

import pytest
from corpus_fixtures import (
    CREMAD_CLIPS,
    SAVEE_CLIPS,
    SAVEE_SAMPLE_RATE,
    TESS_CLIPS,
    build_cremad,
    build_savee,
    build_tess,
    speech_excerpt,
    write_clip,
)

from callmood.corpora import CorpusError, CorpusWarning
from callmood.corpora.cremad import prepare_cremad
from callmood.corpora.custom import prepare_custom
from callmood.corpora.savee import prepare_savee
from callmood.corpora.tess import prepare_tess


@pytest.fixture(scope="module")
def excerpt(shared_data):
    return speech_excerpt(shared_data)


# ------------------------------------------------------------------------------- CREMA-D


def test_cremad_reads_audiowav_once_with_labels_and_genders(tmp_path, excerpt):
    rows = {row.id: row for row in prepare_cremad(build_cremad(tmp_path, excerpt))}
    assert sorted(rows) == sorted(f"cremad:{name}" for name in CREMAD_CLIPS)
    first = rows["cremad:1001_DFA_ANG_XX"]
    assert (first.label, first.original_label, first.speaker, first.gender) == (
        "angry",
        "ANG",
        "cremad:1001",
        "male",
    )
    assert rows["cremad:1002_TIE_FEA_MD"].gender == "female"
    assert Counter(row.label for row in rows.values()) == {
        "angry": 1,
        "happy": 1,
        "sad": 1,
        "neutral": 1,
        "fearful": 1,
        "disgust": 1,
    }


def test_cremad_without_demographics_leaves_gender_unknown(tmp_path, excerpt):
    build_cremad(tmp_path, excerpt)
    (tmp_path / "VideoDemographics.csv").unlink()
    assert {row.gender for row in prepare_cremad(tmp_path / "AudioWAV")} == {None}


def test_cremad_ignores_names_outside_the_corpus(tmp_path, excerpt):
    write_clip(tmp_path / "1001_DFA_ANG_XX.wav", excerpt)
    write_clip(tmp_path / "0999_DFA_ANG_XX.wav", excerpt)  # no such actor
    write_clip(tmp_path / "1001_DFA_CAL_XX.wav", excerpt)  # no such emotion
    assert [row.id for row in prepare_cremad(tmp_path)] == ["cremad:1001_DFA_ANG_XX"]


# ---------------------------------------------------------------------------------- TESS


@pytest.mark.parametrize("flat", [False, True], ids=["emotion-folders", "flat"])
def test_tess_reads_both_layouts_with_pleasant_surprise_as_surprised(tmp_path, excerpt, flat):
    rows = {row.id: row for row in prepare_tess(build_tess(tmp_path, excerpt, flat=flat))}
    assert len(rows) == len(TESS_CLIPS)
    surprise = rows["tess:OAF_back_ps"]
    assert (surprise.label, surprise.original_label) == ("surprised", "ps")
    assert rows["tess:OAF_bite_fear"].label == "fearful"
    assert Counter(row.speaker for row in rows.values()) == {"tess:OAF": 3, "tess:YAF": 4}
    assert {row.gender for row in rows.values()} == {"female"}


def test_tess_tolerates_inconsistent_capitals_in_file_names(tmp_path, excerpt):
    write_clip(tmp_path / "YAF_Fear" / "YAF_germ_Fear.wav", excerpt)
    rows = prepare_tess(tmp_path)
    assert [(row.id, row.label) for row in rows] == [("tess:YAF_germ_fear", "fearful")]


# --------------------------------------------------------------------------------- SAVEE


@pytest.mark.parametrize("flat", [False, True], ids=["speaker-folders", "flat"])
def test_savee_reads_both_layouts_with_two_letter_codes(tmp_path, excerpt, flat):
    rows = {row.id: row for row in prepare_savee(build_savee(tmp_path, excerpt, flat=flat))}
    assert sorted(rows) == sorted(f"savee:{speaker}_{name}" for speaker, name in SAVEE_CLIPS)
    assert rows["savee:DC_sa02"].label == "sad"
    assert rows["savee:DC_su03"].label == "surprised"
    assert rows["savee:DC_a01"].label == "angry"
    assert Counter(row.speaker for row in rows.values()) == {
        "savee:DC": 3,
        "savee:JE": 1,
        "savee:JK": 1,
        "savee:KL": 2,
    }


def test_savee_records_the_files_own_sample_rate(tmp_path, excerpt):
    rows = prepare_savee(build_savee(tmp_path, excerpt))
    assert {row.sample_rate for row in rows} == {SAVEE_SAMPLE_RATE}
    assert rows[0].duration_seconds == pytest.approx(0.25, abs=0.01)


def test_savee_clip_outside_a_speaker_folder_is_not_guessed(tmp_path, excerpt):
    write_clip(tmp_path / "misc" / "a01.wav", excerpt)
    with pytest.raises(CorpusError, match="no clips found"):
        prepare_savee(tmp_path)


# ----------------------------------------------------------------------- own recordings


def test_custom_folder_per_label_with_optional_speaker_folders(tmp_path, excerpt):
    root = tmp_path / "calls"
    write_clip(root / "angry" / "agent7" / "c1.wav", excerpt)
    write_clip(root / "Anger" / "c2.flac", excerpt)  # a synonym, any audio extension
    write_clip(root / "neutral" / "agent7" / "c3.wav", excerpt)
    (root / "neutral" / "notes.txt").write_text("recorded on the 3rd")  # not audio: ignored
    rows = {row.id: row for row in prepare_custom(root, language="en")}
    assert sorted(rows) == [
        "custom:calls/Anger/c2",
        "custom:calls/angry/agent7/c1",
        "custom:calls/neutral/agent7/c3",
    ]
    assert rows["custom:calls/angry/agent7/c1"].speaker == "custom:agent7"
    assert rows["custom:calls/Anger/c2"].speaker == "custom:unknown"
    assert rows["custom:calls/Anger/c2"].label == "angry"
    assert {row.language for row in rows.values()} == {"en"}


def test_custom_unknown_label_folder_lists_the_allowed_labels(tmp_path, excerpt):
    write_clip(tmp_path / "angry" / "a.wav", excerpt)
    write_clip(tmp_path / "grumpy" / "b.wav", excerpt)
    with pytest.raises(CorpusError, match=r"'grumpy'.*allowed labels: neutral, calm"):
        prepare_custom(tmp_path)


def test_custom_csv_with_speakers_and_languages(tmp_path, excerpt):
    write_clip(tmp_path / "audio" / "one.wav", excerpt)
    write_clip(tmp_path / "audio" / "two.wav", excerpt)
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text(
        "path,label,speaker,gender,language\naudio/one.wav,sad,anna,f,de\naudio/two.wav,happy,,,\n"
    )
    rows = {row.id: row for row in prepare_custom(csv_path)}
    one = rows["custom:" + tmp_path.name + "/audio/one"]
    assert (one.label, one.speaker, one.gender, one.language) == (
        "sad",
        "custom:anna",
        "female",
        "de",
    )
    two = rows["custom:" + tmp_path.name + "/audio/two"]
    assert (two.speaker, two.gender, two.language) == ("custom:unknown", None, "und")


def test_custom_csv_lists_every_bad_row(tmp_path, excerpt):
    write_clip(tmp_path / "one.wav", excerpt)
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("path,label\none.wav,sad\none.wav,sorrowful\n,happy\n")
    with pytest.raises(CorpusError, match="2 bad rows") as caught:
        prepare_custom(csv_path)
    assert "line 3: unknown label 'sorrowful'" in str(caught.value)
    assert "line 4: empty path" in str(caught.value)


def test_custom_csv_missing_files_are_skipped_with_a_warning(tmp_path, excerpt):
    write_clip(tmp_path / "one.wav", excerpt)
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("path,label\none.wav,sad\ngone.wav,happy\n")
    with pytest.warns(CorpusWarning, match="gone.wav"):
        rows = prepare_custom(csv_path)
    assert [row.label for row in rows] == ["sad"]


def test_custom_csv_without_label_column_is_a_clear_error(tmp_path):
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("file,emotion\na.wav,sad\n")
    with pytest.raises(CorpusError, match="needs the columns path and label"):
        prepare_custom(csv_path)


def test_custom_accepts_compressed_audio_by_content(tmp_path, excerpt):
    import soundfile

    (tmp_path / "happy").mkdir()
    soundfile.write(
        tmp_path / "happy" / "voice_memo", excerpt, 16000, format="OGG", subtype="VORBIS"
    )
    (row,) = prepare_custom(tmp_path)
    assert row.label == "happy"
    assert row.duration_seconds == pytest.approx(0.25, abs=0.02)
