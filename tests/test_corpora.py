"""Corpus loaders on the real RAVDESS and EmoDB (../shared/data), and what all loaders share."""

from __future__ import annotations

import shutil
import warnings
from collections import Counter
from pathlib import Path

import pytest

from callmood.corpora import CORPORA, CorpusError, CorpusWarning, prepare
from callmood.corpora.emodb import prepare_emodb, read_recognition_rates
from callmood.corpora.ravdess import prepare_ravdess
from callmood.labels import EMOTIONS
from callmood.manifest import COLUMNS


@pytest.fixture(scope="module")
def ravdess_rows(ravdess_dir):
    return prepare_ravdess(ravdess_dir)


@pytest.fixture(scope="module")
def emodb_rows(emodb_dir):
    return prepare_emodb(emodb_dir)


# ------------------------------------------------------------------------------- RAVDESS


def test_ravdess_finds_all_1440_speech_clips(ravdess_rows):
    assert len(ravdess_rows) == 1440
    assert len({row.id for row in ravdess_rows}) == 1440


def test_ravdess_has_24_actors_with_60_clips_each(ravdess_rows):
    per_speaker = Counter(row.speaker for row in ravdess_rows)
    assert sorted(per_speaker) == [f"ravdess:{n:02d}" for n in range(1, 25)]
    assert set(per_speaker.values()) == {60}


def test_ravdess_label_counts_neutral_96_and_192_for_each_other_emotion(ravdess_rows):
    counts = Counter(row.label for row in ravdess_rows)
    assert counts == {
        "neutral": 96,
        "calm": 192,
        "happy": 192,
        "sad": 192,
        "angry": 192,
        "fearful": 192,
        "disgust": 192,
        "surprised": 192,
    }


def test_ravdess_odd_actors_are_male_and_groups_are_speakers(ravdess_rows):
    for row in ravdess_rows:
        actor = int(row.speaker.split(":")[1])
        assert row.gender == ("male" if actor % 2 else "female")
        assert row.group == row.speaker


def test_ravdess_label_comes_from_the_emotion_field_of_the_file_name(ravdess_rows):
    row = next(r for r in ravdess_rows if r.id == "ravdess:03-01-05-01-02-01-12")
    assert (row.label, row.original_label, row.speaker) == ("angry", "05", "ravdess:12")
    assert Path(row.path).name == "03-01-05-01-02-01-12.flac"
    assert Path(row.path).is_absolute()


def test_ravdess_rows_carry_real_durations_and_rates(ravdess_rows):
    for row in ravdess_rows:
        assert 2.5 < row.duration_seconds < 6.0
        assert row.sample_rate == 16000
        assert row.language == "en"
        assert row.valence is None


def test_ravdess_skips_song_clips_and_video_files(tmp_path, ravdess_dir):
    actor = tmp_path / "Actor_01"
    actor.mkdir()
    speech = ravdess_dir / "Actor_01" / "03-01-05-01-01-01-01.flac"
    shutil.copy(speech, actor / speech.name)
    shutil.copy(speech, actor / "03-02-05-01-01-01-01.flac")  # song
    shutil.copy(speech, actor / "01-01-05-01-01-01-01.flac")  # audio-visual modality
    rows = prepare_ravdess(tmp_path)
    assert [row.id for row in rows] == ["ravdess:03-01-05-01-01-01-01"]


# --------------------------------------------------------------------------------- EmoDB

EMODB_LETTERS = {
    "W": "angry",
    "L": "bored",
    "E": "disgust",
    "A": "fearful",
    "F": "happy",
    "T": "sad",
    "N": "neutral",
}


def test_emodb_finds_all_535_clips_of_10_speakers(emodb_rows):
    assert len(emodb_rows) == 535
    assert len({row.speaker for row in emodb_rows}) == 10


def test_emodb_label_counts_match_the_file_names(emodb_rows, emodb_dir):
    from_names = Counter(EMODB_LETTERS[p.name[5]] for p in (emodb_dir / "wav").iterdir())
    counts = Counter(row.label for row in emodb_rows)
    assert counts == from_names
    assert counts == {
        "angry": 127,
        "bored": 81,
        "disgust": 46,
        "fearful": 69,
        "happy": 71,
        "sad": 62,
        "neutral": 79,
    }


def test_emodb_speaker_counts_and_genders_match_the_file_names(emodb_rows, emodb_dir):
    from_names = Counter(f"emodb:{p.name[:2]}" for p in (emodb_dir / "wav").iterdir())
    assert Counter(row.speaker for row in emodb_rows) == from_names
    females = {"08", "09", "13", "14", "16"}
    for row in emodb_rows:
        number = row.speaker.split(":")[1]
        assert row.gender == ("female" if number in females else "male")
        assert row.language == "de"


def test_emodb_recognition_file_is_parsed_despite_latin1_and_padding(emodb_dir):
    rates = read_recognition_rates(emodb_dir / "erkennung.txt")
    assert rates["03a01Ab"] == 65.0
    assert rates["03a01Nc"] == 100.0
    assert len(rates) > 535  # the listening test rated clips that did not make the corpus


def test_emodb_min_recognition_keeps_clips_at_or_above_the_threshold(emodb_dir, emodb_rows):
    rates = read_recognition_rates(emodb_dir / "erkennung.txt")
    expected = {row.id for row in emodb_rows if rates[row.id.split(":")[1]] >= 95}
    kept = prepare_emodb(emodb_dir, min_recognition=95)
    assert {row.id for row in kept} == expected
    assert 0 < len(kept) < 535


def test_emodb_min_recognition_without_the_listening_test_file_is_a_clear_error(
    tmp_path, emodb_dir
):
    shutil.copytree(emodb_dir / "wav", tmp_path / "wav")
    with pytest.raises(CorpusError, match="erkennung.txt not found"):
        prepare_emodb(tmp_path, min_recognition=80)


def test_emodb_min_recognition_must_be_a_percentage(emodb_dir):
    with pytest.raises(CorpusError, match="0-100"):
        prepare_emodb(emodb_dir, min_recognition=180)


# ------------------------------------------------------------------------ shared behaviour


def test_registry_lists_every_corpus_module():
    assert set(CORPORA) == {
        "iemocap",
        "ravdess",
        "cremad",
        "tess",
        "savee",
        "emodb",
        "ased",
        "custom",
    }


def test_prepare_by_name_passes_corpus_options(emodb_dir):
    rows = prepare("emodb", emodb_dir, min_recognition=100)
    assert rows and all(row.corpus == "emodb" for row in rows)


def test_prepare_rejects_unknown_corpus_and_misplaced_options(ravdess_dir):
    with pytest.raises(CorpusError, match="known corpora: iemocap"):
        prepare("ravdes", ravdess_dir)
    with pytest.raises(CorpusError, match="min_recognition"):
        prepare("ravdess", ravdess_dir, min_recognition=80)


def test_missing_folder_and_empty_folder_are_clear_errors(tmp_path):
    with pytest.raises(CorpusError, match="does not exist"):
        prepare_ravdess(tmp_path / "nowhere")
    with pytest.raises(CorpusError, match="no clips found"):
        prepare_ravdess(tmp_path)


def test_clips_are_found_by_content_whatever_their_extension(tmp_path, ravdess_dir):
    source = ravdess_dir / "Actor_02" / "03-01-03-02-01-01-02.flac"
    shutil.copy(source, tmp_path / "03-01-03-02-01-01-02.wav")  # FLAC bytes, .wav name
    shutil.copy(source, tmp_path / "03-01-04-01-01-01-02")  # no extension at all
    (tmp_path / "03-01-05-01-01-01-02.txt").write_text("not audio")  # a clip name, no audio
    rows = prepare_ravdess(tmp_path)
    assert sorted(row.label for row in rows) == ["happy", "sad"]


def test_unreadable_audio_is_skipped_with_a_warning_naming_the_file(tmp_path, ravdess_dir):
    source = ravdess_dir / "Actor_02" / "03-01-03-02-01-01-02.flac"
    shutil.copy(source, tmp_path / source.name)
    broken = tmp_path / "03-01-04-01-01-01-02.flac"
    broken.write_bytes(source.read_bytes()[:200])  # a header and nothing more
    (tmp_path / "03-01-06-01-01-01-02.wav").write_bytes(b"")
    with pytest.warns(CorpusWarning, match="skipped 2 unreadable") as caught:
        rows = prepare_ravdess(tmp_path)
    assert "03-01-04-01-01-01-02.flac" in str(caught[0].message)
    assert [row.label for row in rows] == ["happy"]


def test_the_same_clip_in_two_formats_is_kept_once(tmp_path, ravdess_dir):
    source = ravdess_dir / "Actor_02" / "03-01-03-02-01-01-02.flac"
    shutil.copy(source, tmp_path / source.name)
    (tmp_path / "wav").mkdir()
    shutil.copy(source, tmp_path / "wav" / "03-01-03-02-01-01-02.wav")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = prepare_ravdess(tmp_path)
    assert len(rows) == 1
    assert any("second copies" in str(w.message) for w in caught)


def test_rows_hold_every_manifest_field_with_canonical_labels(ravdess_rows, emodb_rows):
    for row in ravdess_rows[:5] + emodb_rows[:5]:
        assert row.label in EMOTIONS
        assert all(hasattr(row, column) for column in COLUMNS)
