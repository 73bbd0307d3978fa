"""The result types of call analysis: windows, segments, scores, alerts and the whole call.

These Pydantic models are the one contract between analysis and everything that
consumes it (exports, store, service, batch); their JSON schema is versioned by
``schema_version`` and published in ``docs/call_result.schema.json``.
All times are seconds from the start of the call.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from callmood.call_metadata import CallMetadata

SCHEMA_VERSION = "1.0"

#: Speakers of a call. ``mixed`` is the one channel of a mono call (both parties).
SPEAKERS = ("customer", "agent", "mixed")
Speaker = Literal["customer", "agent", "mixed"]
Severity = Literal["info", "warning", "critical"]
AlertKind = Literal["sustained", "frequency", "shift", "loudness", "silence"]

#: Emotions that count towards the negativity score, where the model's label set has them.
NEGATIVE_EMOTIONS = ("angry", "sad", "fearful", "disgust", "frustrated")


class _Result(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class SpeechStretch(_Result):
    """A stretch of one speaker's speech found by voice-activity detection."""

    start: float = Field(ge=0, description="Start, seconds from the start of the call.")
    end: float = Field(ge=0, description="End, seconds from the start of the call.")


class WindowResult(_Result):
    """The emotion of one analysis window of one speaker's speech.

    ``probabilities`` are the smoothed class probabilities (they sum to 1);
    ``emotion`` is their arg-max and ``confidence`` its probability.
    """

    speaker: Speaker
    start: float = Field(ge=0, description="Window start, seconds.")
    end: float = Field(ge=0, description="Window end, seconds.")
    emotion: str
    probabilities: dict[str, float]
    confidence: float = Field(ge=0, le=1)
    raw_probabilities: dict[str, float] | None = Field(
        default=None, description="The model's probabilities before smoothing."
    )
    peak_dbfs: float = Field(description="Peak sample level in the window, dBFS (0 = full scale).")
    rms_dbfs: float = Field(description="RMS level of the window, dBFS.")


class SpeakerSegment(_Result):
    """Consecutive windows of one speaker with the same smoothed emotion, merged."""

    speaker: Speaker
    start: float = Field(ge=0, description="Seconds.")
    end: float = Field(ge=0, description="Seconds.")
    emotion: str
    confidence: float = Field(ge=0, le=1, description="Mean confidence of the merged windows.")
    window_count: int = Field(ge=1)


class SpeakerScores(_Result):
    """Call-level numbers for one speaker.

    ``negativity`` of a window is the sum of its smoothed probabilities of the
    negative emotions in the model's label set (angry, sad, fearful, disgust,
    frustrated: whichever the model has), so it lies in [0, 1]; the speaker's
    ``negativity`` is its mean over the speaker's windows.
    ``negativity_by_quarter`` splits the call's duration into four equal parts
    (None where the speaker has no window starting in that part);
    ``negativity_shift`` is the last quarter with speech minus the first one
    (positive = the speaker got more negative as the call went on).
    Emotion fields are None for a speaker whose emotions were not analysed
    (the agent, unless opted in): talk time and silence are still measured.
    """

    speaker: Speaker
    talk_seconds: float = Field(ge=0, description="Seconds of detected speech.")
    silence_share: float = Field(
        ge=0, le=1, description="Share of the call's duration without this speaker's speech."
    )
    emotions_analyzed: bool
    window_count: int = Field(ge=0)
    emotion_shares: dict[str, float] | None = Field(
        default=None, description="Share of windows whose smoothed emotion is each label."
    )
    mean_probabilities: dict[str, float] | None = None
    dominant_emotion: str | None = None
    negativity: float | None = Field(default=None, ge=0, le=1)
    negativity_by_quarter: list[float | None] | None = None
    dominant_emotion_by_quarter: list[str | None] | None = None
    negativity_shift: float | None = Field(default=None, ge=-1, le=1)
    peak_dbfs: float | None = Field(default=None, description="Loudest sample in speech, dBFS.")


class SpeakerResult(_Result):
    """Everything found for one speaker (one channel, or the mix of a mono call)."""

    speaker: Speaker
    channel: int = Field(ge=0, description="Channel index in the source file.")
    speech: list[SpeechStretch]
    windows: list[WindowResult]
    segments: list[SpeakerSegment]
    scores: SpeakerScores


class EvidenceWindow(_Result):
    """A stretch of the call that made a rule fire, with the measured value."""

    start: float = Field(ge=0, description="Seconds.")
    end: float = Field(ge=0, description="Seconds.")
    value: float = Field(
        description="The measured value: a probability, negativity, dBFS or seconds of silence."
    )


class Alert(_Result):
    """One alert raised by a rule: when it opened, when it closed, and why.

    ``closed_at`` is None only while a streamed call is still running; in a
    finished :class:`CallResult` every alert is closed (at the latest, at the end
    of the call).
    """

    id: str = Field(description="Unique within the call: '<rule>:<speaker>:<confirmed_at ms>'.")
    rule: str
    kind: AlertKind
    speaker: Speaker | Literal["any"]
    severity: Severity
    opened_at: float = Field(
        ge=0, description="Seconds: where the condition began (e.g. the first angry window)."
    )
    confirmed_at: float | None = Field(
        default=None,
        ge=0,
        description="Seconds: when the rule was met and the alert raised (a live stream "
        "sends it then); None in results stored before 2 December 2026.",
    )
    closed_at: float | None = Field(default=None, ge=0, description="Seconds.")
    value: float = Field(description="The strongest measured value while open.")
    evidence: list[EvidenceWindow]
    message: str


class AlertEvent(_Result):
    """An alert opening or closing, as the streaming analyser emits it."""

    event: Literal["alert_open", "alert_close"]
    at: float = Field(ge=0, description="Call time of the event, seconds.")
    alert: Alert


class WindowEvent(_Result):
    """A window result, emitted by the streaming analyser as soon as it is final."""

    event: Literal["window"] = "window"
    at: float = Field(ge=0, description="Call time of the window's end, seconds.")
    window: WindowResult


Event = Annotated[WindowEvent | AlertEvent, Field(discriminator="event")]


class ModelInfo(_Result):
    """Which model produced the result."""

    name: str
    labels: list[str]
    backend: Literal["onnx", "torch"]
    window_seconds: float


class CallResult(_Result):
    """The analysis of one call: per-speaker timelines and scores, and the alerts."""

    schema_version: Literal["1.0"] = SCHEMA_VERSION
    call_id: str
    source: str = Field(description="File name the call came from, or '<stream>'.")
    duration_seconds: float = Field(ge=0)
    channels: dict[str, int] = Field(description="Speaker -> channel index in the source.")
    analyzed_speakers: list[Speaker] = Field(
        description="Speakers whose emotions were inferred (the agent only on opt-in)."
    )
    speakers: dict[str, SpeakerResult]
    has_speech: bool = Field(description="False when no speech was found in any channel.")
    notes: list[str] = Field(
        default_factory=list, description="Plain-language remarks, e.g. 'no speech detected'."
    )
    alerts: list[Alert]
    model: ModelInfo
    options: dict[str, Any] = Field(description="The AnalysisOptions used, as a dict.")
    created: datetime = Field(default_factory=lambda: datetime.now(UTC))
    # Optional and last, so that results written before it existed still read (schema 1.0).
    metadata: CallMetadata | None = Field(
        None, description="Agent, queue, external call id and start time, when known."
    )

    def windows(self, speaker: str | None = None) -> list[WindowResult]:
        """All windows (of one speaker, or of every analysed speaker in time order)."""
        if speaker is not None:
            return list(self.speakers[speaker].windows) if speaker in self.speakers else []
        merged = [w for s in self.speakers.values() for w in s.windows]
        return sorted(merged, key=lambda w: (w.start, w.speaker))

    def overtalk_seconds(self) -> float | None:
        """Seconds in which the customer and the agent speak at the same time (from their
        speech stretches); None unless the call has both (a mono call has one mix)."""
        if "customer" not in self.speakers or "agent" not in self.speakers:
            return None
        customer = sorted((s.start, s.end) for s in self.speakers["customer"].speech)
        agent = sorted((s.start, s.end) for s in self.speakers["agent"].speech)
        overlap, i, j = 0.0, 0, 0
        while i < len(customer) and j < len(agent):
            start = max(customer[i][0], agent[j][0])
            end = min(customer[i][1], agent[j][1])
            overlap += max(0.0, end - start)
            # Move past whichever stretch ends first; the other may overlap the next one.
            if customer[i][1] < agent[j][1]:
                i += 1
            else:
                j += 1
        return round(overlap, 3)

    def segments(self, speaker: str | None = None) -> list[SpeakerSegment]:
        """All emotion segments (of one speaker, or of everyone in time order)."""
        if speaker is not None:
            return list(self.speakers[speaker].segments) if speaker in self.speakers else []
        merged = [g for s in self.speakers.values() for g in s.segments]
        return sorted(merged, key=lambda g: (g.start, g.speaker))


def call_result_json_schema() -> dict[str, Any]:
    """The JSON schema of :class:`CallResult` (what ``docs/call_result.schema.json`` holds)."""
    schema = CallResult.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
