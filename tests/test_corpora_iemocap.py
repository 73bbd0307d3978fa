"""IEMOCAP loader on small trees in the official release layout and the shared CSV layout."""

from __future__ import annotations

from collections import Counter

import pytest
from corpus_fixtures import IEMOCAP_LABELS, build_iemocap_csv, build_iemocap_release, speech_excerpt

from callmood.corpora import CorpusError, CorpusWarning
from callmood.corpora.iemocap import prepare_iemocap
from callmood.manifest import apply_label_set

ALL_UTTERANCES = [u for utterances in IEMOCAP_LABELS.values() for u in utterances]


@pytest.fixture(scope="module")
def excerpt(shared_data):
    return speech_excerpt(shared_data)


@pytest.fixture(scope="module")
def release(tmp_path_factory, excerpt):
    return build_iemocap_release(tmp_path_factory.mktemp("iemocap"), excerpt)


@pytest.fixture(scope="module")
def release_rows(release):
    return {row.id: row for row in prepare_iemocap(release)}


def test_release_gives_one_row_per_labelled_utterance(release_rows):
    assert sorted(release_rows) == sorted(f"iemocap:{u[0]}" for u in ALL_UTTERANCES)


def test_utterance_speaker_is_the_letter_after_the_last_underscore(release_rows):
    # Dialog Ses01F_impro01 is named after the female actor; its M000 turn is the male's.
    male_turn = release_rows["iemocap:Ses01F_impro01_M000"]
    assert (male_turn.speaker, male_turn.gender) == ("iemocap:Ses01M", "male")
    female_turn = release_rows["iemocap:Ses02M_impro02_F000"]
    assert (female_turn.speaker, female_turn.gender) == ("iemocap:Ses02F", "female")
    scripted = release_rows["iemocap:Ses01F_script01_1_M001"]
    assert scripted.speaker == "iemocap:Ses01M"


def test_groups_are_sessions_for_the_standard_leave_one_session_out_protocol(release_rows):
    groups = Counter(row.group for row in release_rows.values())
    assert groups == {"Session1": 7, "Session2": 3}


def test_valence_arousal_dominance_come_from_the_evaluation_line(release_rows):
    row = release_rows["iemocap:Ses01F_script01_1_F000"]
    assert (row.label, row.original_label) == ("angry", "ang")
    assert (row.valence, row.arousal, row.dominance) == (1.5, 4.0, 4.5)


def test_rare_classes_and_no_agreement_are_kept_with_their_codes(release_rows):
    originals = {row.original_label: row.label for row in release_rows.values()}
    assert originals["xxx"] == "unknown"
    assert originals["fru"] == "frustrated"
    assert originals["sur"] == "surprised"
    assert originals["exc"] == "excited"


def test_iemocap4_merges_excited_into_happy_and_drops_the_rest(release_rows):
    four = apply_label_set(release_rows.values(), "iemocap4")
    assert Counter(row.label for row in four) == {"neutral": 2, "happy": 2, "sad": 1, "angry": 2}
    excited = next(row for row in four if row.original_label == "exc")
    assert excited.label == "happy"


def test_rows_point_at_the_sentence_wavs_with_real_durations(release_rows, release):
    for row in release_rows.values():
        assert row.path.startswith(str(release / "Session"))
        assert "/sentences/wav/" in row.path
        assert row.duration_seconds == pytest.approx(0.25, abs=0.01)
        assert row.sample_rate == 16000


def test_corpus_parent_folder_is_accepted(release_rows, release):
    assert len(prepare_iemocap(release.parent)) == len(release_rows)


def test_labelled_utterances_without_audio_are_skipped_with_a_warning(tmp_path, excerpt):
    release = build_iemocap_release(tmp_path, excerpt, missing={"Ses02M_impro02_M001"})
    with pytest.warns(
        CorpusWarning, match="1 labelled utterances have no audio.*Ses02M_impro02_M001"
    ):
        rows = prepare_iemocap(release)
    assert len(rows) == len(ALL_UTTERANCES) - 1


def test_malformed_evaluation_line_is_an_error_naming_file_and_line(tmp_path, excerpt):
    release = build_iemocap_release(tmp_path, excerpt)
    label_file = release / "Session1" / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt"
    label_file.write_text(label_file.read_text() + "[1.0 - 2.0]\tSes01F_impro01_F009\tneu\n")
    with pytest.raises(CorpusError, match=r"Ses01F_impro01.txt line \d+"):
        prepare_iemocap(release)


def test_unknown_emotion_code_is_an_error_listing_the_codes(tmp_path, excerpt):
    release = build_iemocap_release(tmp_path, excerpt)
    label_file = release / "Session2" / "dialog" / "EmoEvaluation" / "Ses02M_impro02.txt"
    label_file.write_text(label_file.read_text().replace("\tsur\t", "\tjoy\t"))
    with pytest.raises(CorpusError, match="unknown emotion code 'joy'.*neu, hap"):
        prepare_iemocap(release)


def test_folder_with_neither_layout_is_a_clear_error(tmp_path):
    with pytest.raises(CorpusError, match="EmoEvaluation.*iemocap_full_dataset.csv"):
        prepare_iemocap(tmp_path)


# ------------------------------------------------------------------------- the CSV variant


@pytest.fixture(scope="module")
def csv_path(tmp_path_factory, excerpt):
    return build_iemocap_csv(tmp_path_factory.mktemp("iemocap_csv"), excerpt)


def test_csv_variant_gives_the_same_rows_without_dimensions(csv_path, release_rows):
    rows = {row.id: row for row in prepare_iemocap(csv_path)}
    assert sorted(rows) == sorted(release_rows)
    for clip_id, row in rows.items():
        expected = release_rows[clip_id]
        assert (row.label, row.speaker, row.group, row.gender) == (
            expected.label,
            expected.speaker,
            expected.group,
            expected.gender,
        )
        assert row.valence is None and row.arousal is None and row.dominance is None


def test_csv_variant_is_found_in_its_folder(csv_path):
    assert len(prepare_iemocap(csv_path.parent)) == len(ALL_UTTERANCES)


def test_csv_with_bad_rows_lists_every_bad_row(tmp_path, excerpt):
    csv_path = build_iemocap_csv(tmp_path, excerpt)
    lines = csv_path.read_text().splitlines()
    lines[1] = lines[1].replace(",neu,", ",joy,")
    lines[2] = lines[2].replace("Ses01F_impro01_M000.wav", "notes.wav")
    csv_path.write_text("\n".join(lines) + "\n")
    with pytest.raises(CorpusError, match="2 bad rows") as caught:
        prepare_iemocap(csv_path)
    assert "line 2: unknown emotion code 'joy'" in str(caught.value)
    assert "line 3: path" in str(caught.value)
