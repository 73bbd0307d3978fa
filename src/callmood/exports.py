"""Write a :class:`~callmood.results.CallResult` as JSON, CSV, RTTM or W3C EmotionML 1.0.

JSON is the full result (``docs/call_result.schema.json``); CSV lists the emotion
segments, windows CSV every analysis window with its probabilities; RTTM the speaker
turns found by voice-activity detection; EmotionML the emotions with media-fragment
references into the call's audio.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Literal
from xml.etree import ElementTree

from callmood.errors import CallmoodError
from callmood.results import CallResult

FORMATS = ("json", "csv", "windows-csv", "rttm", "emotionml")
ExportFormat = Literal["json", "csv", "windows-csv", "rttm", "emotionml"]
EMOTIONML_NAMESPACE = "http://www.w3.org/2009/10/emotionml"
#: Namespace of callmood's own annotations inside EmotionML ``<info>`` elements.
CALLMOOD_NAMESPACE = "urn:callmood:emotionml:1"
VOCABULARY_ID = "callmood-labels"
CSV_COLUMNS = (
    "call_id",
    "speaker",
    "start",
    "end",
    "duration",
    "emotion",
    "confidence",
    "window_count",
)

#: The windows CSV: these, then one `p_<label>` column per label of the model.
WINDOW_CSV_COLUMNS = (
    "call_id",
    "speaker",
    "start",
    "end",
    "emotion",
    "confidence",
    "rms_dbfs",
    "peak_dbfs",
)


class ExportError(CallmoodError):
    """An unknown export format or an output that cannot be written."""


#: First characters that make a spreadsheet read a cell as a formula (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text: str) -> str:
    """`text` for a CSV cell that a spreadsheet opens as text, never as a formula.

    User-typed text (call names, tags) starting like a formula gets a leading single quote,
    which spreadsheets show as text: ``=HYPERLINK(...)`` becomes ``'=HYPERLINK(...)``.
    """
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def to_json(result: CallResult, *, indent: int | None = 2) -> str:
    """The full result as JSON (schema ``docs/call_result.schema.json``)."""
    return result.model_dump_json(indent=indent)


def to_csv(result: CallResult) -> str:
    """Emotion segments, one row per segment, time order; times in seconds."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for segment in result.segments():
        writer.writerow(
            [
                result.call_id,
                segment.speaker,
                f"{segment.start:.3f}",
                f"{segment.end:.3f}",
                f"{segment.end - segment.start:.3f}",
                segment.emotion,
                f"{segment.confidence:.4f}",
                segment.window_count,
            ]
        )
    return buffer.getvalue()


def to_windows_csv(result: CallResult) -> str:
    """Every analysis window, one row each in time order: its emotion, confidence, level and
    the probability of every label (``p_<label>``); times in seconds."""
    labels = list(result.model.labels)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*WINDOW_CSV_COLUMNS, *(f"p_{label}" for label in labels)])
    for window in result.windows():
        writer.writerow(
            [
                result.call_id,
                window.speaker,
                f"{window.start:.3f}",
                f"{window.end:.3f}",
                window.emotion,
                f"{window.confidence:.4f}",
                f"{window.rms_dbfs:.1f}",
                f"{window.peak_dbfs:.1f}",
                *(f"{window.probabilities.get(label, 0.0):.4f}" for label in labels),
            ]
        )
    return buffer.getvalue()


def to_rttm(result: CallResult) -> str:
    """Speaker turns (voice activity per channel) in NIST RTTM, one ``SPEAKER`` line per turn.

    Fields: ``SPEAKER <file> 1 <start> <duration> <NA> <NA> <speaker> <NA> <NA>``,
    seconds with millisecond precision; ``<file>`` is the call id (spaces removed).
    """
    file_id = "".join(result.call_id.split()) or "call"
    turns = sorted(
        (stretch.start, stretch.end, speaker)
        for speaker, found in result.speakers.items()
        for stretch in found.speech
    )
    lines = [
        f"SPEAKER {file_id} 1 {start:.3f} {end - start:.3f} <NA> <NA> {speaker} <NA> <NA>"
        for start, end, speaker in turns
    ]
    return "".join(line + "\n" for line in lines)


def to_emotionml(
    result: CallResult, *, granularity: Literal["segments", "windows"] = "segments"
) -> str:
    """The call's emotions as a W3C EmotionML 1.0 document.

    The model's labels form an in-document category vocabulary (``#callmood-labels``);
    each ``<emotion>`` holds its category (``value`` = probability, or the segment's
    mean confidence), a ``<reference>`` to the audio as a media fragment
    (``call.flac#t=start,end``, seconds) and the speaker in an ``<info>`` element.
    ``granularity="windows"`` writes every window with all class probabilities.
    """
    if granularity not in ("segments", "windows"):
        raise ExportError(f"granularity must be 'segments' or 'windows', got {granularity!r}")
    ElementTree.register_namespace("", EMOTIONML_NAMESPACE)
    ElementTree.register_namespace("callmood", CALLMOOD_NAMESPACE)

    def tag(name: str) -> str:
        return f"{{{EMOTIONML_NAMESPACE}}}{name}"

    root = ElementTree.Element(
        tag("emotionml"), {"version": "1.0", "category-set": f"#{VOCABULARY_ID}"}
    )
    info = ElementTree.SubElement(root, tag("info"))
    for key, value in (
        ("call-id", result.call_id),
        ("source", result.source),
        ("model", result.model.name),
        ("schema-version", result.schema_version),
    ):
        ElementTree.SubElement(info, f"{{{CALLMOOD_NAMESPACE}}}{key}").text = str(value)
    vocabulary = ElementTree.SubElement(
        root, tag("vocabulary"), {"type": "category", "id": VOCABULARY_ID}
    )
    for label in result.model.labels:
        ElementTree.SubElement(vocabulary, tag("item"), {"name": label})

    media = Path(result.source).name if result.source not in ("", "<stream>") else result.call_id
    if granularity == "segments":
        items = [(g.speaker, g.start, g.end, {g.emotion: g.confidence}) for g in result.segments()]
    else:
        items = [(w.speaker, w.start, w.end, w.probabilities) for w in result.windows()]
    for index, (speaker, start, end, categories) in enumerate(items):
        emotion = ElementTree.SubElement(root, tag("emotion"), {"id": f"{speaker}-{index}"})
        for name, value in categories.items():
            ElementTree.SubElement(
                emotion, tag("category"), {"name": name, "value": f"{min(max(value, 0), 1):.4f}"}
            )
        ElementTree.SubElement(
            emotion, tag("reference"), {"uri": f"{media}#t={start:.3f},{end:.3f}"}
        )
        extra = ElementTree.SubElement(emotion, tag("info"))
        ElementTree.SubElement(extra, f"{{{CALLMOOD_NAMESPACE}}}speaker").text = speaker
    ElementTree.indent(root)
    return ElementTree.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def export(result: CallResult, format: ExportFormat = "json") -> str:
    """The result in one of :data:`FORMATS`."""
    writers = {
        "json": to_json,
        "csv": to_csv,
        "windows-csv": to_windows_csv,
        "rttm": to_rttm,
        "emotionml": to_emotionml,
    }
    if format not in writers:
        raise ExportError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    return writers[format](result)


def write_export(result: CallResult, path: str | Path, format: ExportFormat = "json") -> Path:
    """Write the result to ``path`` in ``format`` (UTF-8); returns the path."""
    text = export(result, format)
    path = Path(path)
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as error:
        raise ExportError(f"cannot write {path}: {error.strerror or error}") from None
    return path
