"""Exports of a call result: JSON, CSV of segments, RTTM speaker turns, W3C EmotionML."""

from __future__ import annotations

import csv
import io
from xml.etree import ElementTree

import pytest

from callmood.alerts import RuleSet, evaluate_rules
from callmood.analysis import merge_segments, speaker_scores
from callmood.exports import (
    CSV_COLUMNS,
    EMOTIONML_NAMESPACE,
    ExportError,
    export,
    to_csv,
    to_emotionml,
    to_json,
    to_rttm,
    write_export,
)
from callmood.results import CallResult, ModelInfo, SpeakerResult, SpeechStretch, WindowResult

LABELS = ["neutral", "happy", "sad", "angry"]
NS = {"e": EMOTIONML_NAMESPACE}


def window(speaker, start, emotion, p=0.8):
    others = (1 - p) / 3
    probabilities = {label: (p if label == emotion else others) for label in LABELS}
    return WindowResult(
        speaker=speaker,
        start=start,
        end=start + 3,
        emotion=emotion,
        probabilities=probabilities,
        confidence=p,
        peak_dbfs=-6.0,
        rms_dbfs=-20.0,
    )


@pytest.fixture
def result():
    speech = {
        "customer": [SpeechStretch(start=0.5, end=8.0), SpeechStretch(start=20.0, end=30.0)],
        "agent": [SpeechStretch(start=9.0, end=18.5)],
    }
    windows = [window("customer", t, "neutral") for t in (0.5, 1.5, 2.5, 3.5, 4.5, 5.0)]
    windows += [window("customer", t, "angry", 0.9) for t in range(20, 28)]
    speakers = {}
    for speaker, channel in (("customer", 0), ("agent", 1)):
        own = [w for w in windows if w.speaker == speaker]
        speakers[speaker] = SpeakerResult(
            speaker=speaker,
            channel=channel,
            speech=speech[speaker],
            windows=own,
            segments=merge_segments(own),
            scores=speaker_scores(
                speaker, speech[speaker], own, 30.0, analyzed=bool(own), labels=LABELS
            ),
        )
    result = CallResult(
        call_id="call 42",
        source="/calls/call42.flac",
        duration_seconds=30.0,
        channels={"customer": 0, "agent": 1},
        analyzed_speakers=["customer"],
        speakers=speakers,
        has_speech=True,
        alerts=[],
        model=ModelInfo(name="test", labels=LABELS, backend="onnx", window_seconds=3.0),
        options={},
    )
    rules = RuleSet.from_dict(
        [{"name": "angry", "kind": "sustained", "emotion": "angry", "min_seconds": 5}]
    )
    result.alerts = evaluate_rules(result, rules)
    return result


def test_segments_merge_windows_of_the_same_emotion_without_overlap(result):
    segments = result.segments("customer")
    assert [s.emotion for s in segments] == ["neutral", "angry"]
    assert segments[0].window_count == 6 and segments[1].window_count == 8
    assert segments[0].end <= segments[1].start
    assert len(result.alerts) == 1 and result.alerts[0].rule == "angry"


def test_json_export_round_trips(result):
    assert CallResult.model_validate_json(to_json(result)) == result


def test_csv_lists_segments_with_the_documented_columns(result):
    rows = list(csv.DictReader(io.StringIO(to_csv(result))))
    assert tuple(rows[0].keys()) == CSV_COLUMNS
    assert len(rows) == len(result.segments())
    angry = rows[-1]
    assert angry["emotion"] == "angry" and angry["speaker"] == "customer"
    assert float(angry["duration"]) == pytest.approx(float(angry["end"]) - float(angry["start"]))


def test_rttm_has_one_speaker_turn_per_speech_stretch(result):
    lines = to_rttm(result).splitlines()
    assert len(lines) == 3
    for line in lines:
        fields = line.split()
        assert len(fields) == 10
        assert fields[0] == "SPEAKER" and fields[1] == "call42" and fields[2] == "1"
        assert float(fields[4]) > 0
        assert fields[5:7] == ["<NA>", "<NA>"] and fields[8:] == ["<NA>", "<NA>"]
    assert [line.split()[7] for line in lines] == ["customer", "agent", "customer"]
    assert lines[1].split()[3:5] == ["9.000", "9.500"]


@pytest.mark.parametrize("granularity", ["segments", "windows"])
def test_emotionml_is_well_formed_with_a_declared_category_vocabulary(result, granularity):
    root = ElementTree.fromstring(to_emotionml(result, granularity=granularity))
    assert root.tag == f"{{{EMOTIONML_NAMESPACE}}}emotionml"
    assert root.get("version") == "1.0"
    vocabulary_id = root.get("category-set").removeprefix("#")
    vocabulary = root.find(f"e:vocabulary[@id='{vocabulary_id}']", NS)
    assert vocabulary.get("type") == "category"
    names = {item.get("name") for item in vocabulary.findall("e:item", NS)}
    assert names == set(LABELS)
    emotions = root.findall("e:emotion", NS)
    expected = len(result.segments()) if granularity == "segments" else len(result.windows())
    assert len(emotions) == expected
    for emotion in emotions:
        categories = emotion.findall("e:category", NS)
        assert categories and all(c.get("name") in names for c in categories)
        assert all(0 <= float(c.get("value")) <= 1 for c in categories)
        uri = emotion.find("e:reference", NS).get("uri")
        assert uri.startswith("call42.flac#t=")
        start, end = map(float, uri.split("#t=")[1].split(","))
        assert 0 <= start < end <= result.duration_seconds + 3


def test_unknown_format_and_unwritable_path_are_clear_errors(result, tmp_path):
    with pytest.raises(ExportError, match="unknown export format"):
        export(result, "xlsx")
    with pytest.raises(ExportError, match="cannot write"):
        write_export(result, tmp_path / "missing-dir" / "out.json")
    written = write_export(result, tmp_path / "out.rttm", "rttm")
    assert written.read_text().startswith("SPEAKER")
