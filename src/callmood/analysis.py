"""Call analysis: audio -> speech per channel -> emotion windows -> timeline, scores and alerts.

One incremental engine, :class:`StreamingAnalyzer`, does the work for live
streams (PCM chunks of any size) and for files (:func:`analyze_call` feeds it
blocks decoded with bounded memory), so both give the same windows and alerts.
"""

from __future__ import annotations

import queue
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal, NamedTuple, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from callmood.alerts import DEFAULT_RULES, RuleEngine, RuleSet, load_rules, negativity
from callmood.audio import SAMPLE_RATE, audio_info, iter_audio_blocks
from callmood.errors import CallmoodError
from callmood.inference import EmotionModel, pad_centered
from callmood.normalization import CallerNormalizer
from callmood.results import (
    AlertEvent,
    CallResult,
    ModelInfo,
    SpeakerResult,
    SpeakerScores,
    SpeakerSegment,
    SpeechStretch,
    WindowEvent,
    WindowResult,
)
from callmood.segment import SpeechWindower, VadOptions, VoiceActivityDetector, Window

#: Shorter calls are refused: there is not enough audio to say anything.
MIN_CALL_SECONDS = 1.0
#: Windows of the same emotion closer than this (s) merge into one segment.
SEGMENT_GAP_SECONDS = 1.0
_SILENCE_DBFS = -120.0


class AnalysisError(CallmoodError):
    """A call cannot be analysed as asked (options, channels, too short, ...)."""


class AnalysisOptions(BaseModel):
    """How a call is analysed. Defaults suit a stereo customer-service recording.

    ``channels`` maps speakers to channel indices (0 = left). Only the customer's
    emotions are inferred unless ``analyze_agent`` is set: in the EU, inferring
    employees' emotions at work is prohibited. ``mono`` analyses channel 0 as one
    mixed speaker (``"mixed"``). Window and hop lengths are seconds;
    ``window_seconds=None`` uses the model's own window. ``smoothing_windows`` is
    the width of the centred moving average over the window probabilities of
    each stretch of a speaker's speech (a turn; 1 = none): turns are never
    averaged together.
    """

    model_config = ConfigDict(extra="forbid")

    channels: dict[Literal["customer", "agent"], int] = Field(
        default_factory=lambda: {"customer": 0, "agent": 1}
    )
    mono: bool = False
    analyze_agent: bool = False
    window_seconds: float | None = Field(default=None, gt=0, le=30)
    hop_seconds: float = Field(default=1.0, gt=0, le=30)
    vad: VadOptions = Field(default_factory=VadOptions)
    smoothing_windows: int = Field(default=3, ge=1, le=31)
    backend: Literal["onnx", "torch"] = "onnx"
    batch_size: int = Field(default=64, ge=1, le=4096)
    # Intra-op threads of the model. One: the analysis runs decoding and voice detection on a
    # second thread beside it, and on 2 cores two model threads made a call take ~2x as long.
    num_threads: int | None = Field(default=1, ge=1)
    block_seconds: float = Field(default=60.0, gt=0, description="File decoding block, seconds.")
    keep_raw_probabilities: bool = False

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'options'}: {e['msg']}"
                for e in error.errors()
            )
            raise AnalysisError(f"invalid analysis options: {problems}") from None

    @field_validator("channels")
    @classmethod
    def _check_channels(cls, channels: dict[str, int]) -> dict[str, int]:
        if "customer" not in channels:
            raise ValueError("the customer's channel must be given (e.g. customer=0)")
        if any(index < 0 for index in channels.values()):
            raise ValueError("channel indices start at 0")
        if len(set(channels.values())) != len(channels):
            raise ValueError(f"customer and agent need different channels, got {channels}")
        return channels

    @field_validator("smoothing_windows")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError(f"must be odd (a centred average), got {value}")
        return value

    def speaker_channels(self) -> dict[str, int]:
        """Speaker -> channel index as analysed (``{"mixed": 0}`` for a mono call)."""
        return {"mixed": 0} if self.mono else dict(self.channels)

    def analyzed_speakers(self) -> list[str]:
        """Speakers whose emotions are inferred."""
        if self.mono:
            return ["mixed"]
        return [s for s in self.channels if s == "customer" or self.analyze_agent]


def parse_channel_mapping(text: str) -> dict[str, int]:
    """Parse ``"customer=1,agent=0"`` into ``{"customer": 1, "agent": 0}``."""
    mapping: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, index = part.partition("=")
        name = name.strip().lower()
        if name not in ("customer", "agent") or not index.strip().isdigit():
            raise AnalysisError(
                f"--channels: cannot read {part!r}; write e.g. customer=0,agent=1 "
                "(speaker=channel index, 0 = left)"
            )
        mapping[name] = int(index)
    if not mapping:
        raise AnalysisError("--channels is empty; write e.g. customer=0,agent=1")
    return mapping


class _WindowItem(NamedTuple):
    """A window waiting for its prediction."""

    start: int  # samples
    end: int
    peak: float  # dBFS
    rms: float
    stretch: int  # start (samples) of the speech stretch it was laid over


class _Predicted(NamedTuple):
    """A predicted window waiting to be smoothed."""

    window: _WindowItem
    probabilities: np.ndarray


@dataclass
class _Span:
    """Overlapping windows of one speaker, cut from one stretch of audio: features once."""

    speaker: str
    start: int  # sample index of audio[0]
    audio: np.ndarray
    windows: list[_WindowItem] = field(default_factory=list)  # in time order


class _Channel:
    """One speaker's channel in the streaming engine: VAD, windows, audio kept for them."""

    def __init__(self, speaker: str, vad: VadOptions, windower: SpeechWindower | None) -> None:
        self.speaker = speaker
        self.detector = VoiceActivityDetector(vad)
        self.windower = windower
        self.buffer = np.zeros(0, dtype=np.float32)
        self.buffer_start = 0  # sample index of buffer[0]
        self.received = 0  # samples fed so far
        self.speech: list[SpeechStretch] = []
        self.peak_dbfs = _SILENCE_DBFS
        self.reported = 0  # stretches already passed to the rule engine
        # Start (samples) of the last stretch the VAD has closed: every stretch from
        # before it is complete, with all its windows.
        self.closed_stretch = -1


class StreamingAnalyzer:
    """Analyse a call incrementally: feed PCM chunks, get window results and alert events.

    Parameters
    ----------
    options
        Analysis options (channel mapping, windows, VAD, smoothing ...).
    model
        The emotion model; None loads the bundled default.
    rules
        Alert rules (a :class:`RuleSet`, a YAML path, or None for the defaults).
    call_id, source
        Identify the call in the result.

    ``feed({"customer": chunk, "agent": chunk})`` takes float32 16 kHz mono
    chunks (any length, the same length for every speaker of the call) and
    returns the events now determined; ``close()`` ends the call and returns the
    rest; ``result()`` then gives the :class:`CallResult`. Memory stays bounded
    by the window length, not the call length (apart from the results).
    """

    def __init__(
        self,
        options: AnalysisOptions | None = None,
        model: EmotionModel | None = None,
        rules: RuleSet | str | Path | None = None,
        *,
        call_id: str | None = None,
        source: str = "<stream>",
    ) -> None:
        self.options = options or AnalysisOptions()
        self.model = model or EmotionModel.load(
            backend=self.options.backend, num_threads=self.options.num_threads
        )
        if self.model.sample_rate != SAMPLE_RATE:
            raise AnalysisError(f"model expects {self.model.sample_rate} Hz; callmood uses 16 kHz")
        self.call_id = call_id or uuid.uuid4().hex[:12]
        self.source = source
        self.window_seconds = self.options.window_seconds or self.model.window_seconds
        if self.options.hop_seconds > self.window_seconds:
            raise AnalysisError(
                f"hop_seconds ({self.options.hop_seconds}) must not exceed "
                f"window_seconds ({self.window_seconds})"
            )
        self.window_samples = int(round(self.window_seconds * SAMPLE_RATE))
        self.speaker_channels = self.options.speaker_channels()
        self.analyzed = self.options.analyzed_speakers()
        self.channels = {
            speaker: _Channel(
                speaker,
                self.options.vad,
                SpeechWindower(self.window_seconds, self.options.hop_seconds)
                if speaker in self.analyzed
                else None,
            )
            for speaker in self.speaker_channels
        }
        rule_set = load_rules(rules)
        self.engine = RuleEngine(
            rule_set,
            labels=self.model.labels,
            speakers=list(self.speaker_channels),
            analyzed_speakers=self.analyzed,
            strict=rule_set is not DEFAULT_RULES,
        )
        self._queue: list[_Span] = []
        # A caller-normalised model: each analysed speaker's running feature statistics.
        self._callers: dict[str, CallerNormalizer] = {}
        if self.model.caller_prior is not None:
            self._callers = {s: CallerNormalizer(self.model.caller_prior) for s in self.analyzed}
        self._raw: dict[str, list[_Predicted]] = {s: [] for s in self.analyzed}
        self._raw_emitted = dict.fromkeys(self.analyzed, 0)
        self.windows: dict[str, list[WindowResult]] = {s: [] for s in self.analyzed}
        self.closed = False

    # ----------------------------------------------------------------- feeding

    def feed(self, chunks: Mapping[str, np.ndarray]) -> list[WindowEvent | AlertEvent]:
        """Add the next samples of each speaker's channel; return the events now determined."""
        if self.closed:
            raise AnalysisError("this stream is closed; start a new StreamingAnalyzer")
        return self._feed(self._check_chunks(chunks))

    def _feed(
        self,
        arrays: Mapping[str, np.ndarray],
        labels: Mapping[str, np.ndarray] | None = None,
    ) -> list[WindowEvent | AlertEvent]:
        # Chunks already checked: 1-D float32, finite, in [-1, 1], equally long.
        # `labels`: each channel's VAD frame labels of these chunks, when another
        # thread has already computed them (see analyze_call).
        events: list[WindowEvent | AlertEvent] = []
        for speaker, samples in arrays.items():
            channel = self.channels[speaker]
            if labels is None:
                finished = channel.detector.push(samples)
            else:
                finished = channel.detector.track(labels[speaker])
            self._push(channel, samples, finished)
        events += self._predict_queue()
        for channel in self.channels.values():
            events += self._report_speech(channel)
        return events

    def close(self) -> list[WindowEvent | AlertEvent]:
        """End of the call: finish open speech, smooth the last windows, close alerts."""
        if self.closed:
            return []
        events: list[WindowEvent | AlertEvent] = []
        for channel in self.channels.values():
            self._push(channel, np.zeros(0, dtype=np.float32), channel.detector.flush(), final=True)
        events += self._predict_queue()
        for speaker in self.analyzed:
            events += self._smooth(speaker, final=True)
        for channel in self.channels.values():
            events += self._report_speech(channel, final=True)
        events += self.engine.finish(self.duration_seconds)
        self.closed = True
        return events

    @property
    def duration_seconds(self) -> float:
        """Seconds of audio fed so far."""
        return max((c.received for c in self.channels.values()), default=0) / SAMPLE_RATE

    def _check_chunks(self, chunks: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not isinstance(chunks, Mapping):
            raise AnalysisError(
                "feed() takes a mapping speaker -> samples, e.g. {'customer': chunk}"
            )
        expected = set(self.speaker_channels)
        if set(chunks) != expected:
            raise AnalysisError(
                f"feed() needs chunks for exactly {sorted(expected)}, got {sorted(chunks)}"
            )
        arrays = {}
        for speaker, chunk in chunks.items():
            array = np.asarray(chunk)
            if array.ndim != 1 or not np.issubdtype(array.dtype, np.floating):
                raise AnalysisError(
                    f"feed(): {speaker!r} chunk must be 1-D float samples at 16 kHz, "
                    f"got shape {array.shape} dtype {array.dtype}"
                )
            if not np.isfinite(array).all():
                raise AnalysisError(f"feed(): {speaker!r} chunk holds NaN or infinite samples")
            arrays[speaker] = np.clip(array.astype(np.float32, copy=False), -1.0, 1.0)
        if len({len(a) for a in arrays.values()}) > 1:
            lengths = {s: len(a) for s, a in arrays.items()}
            raise AnalysisError(f"feed(): chunks of one call must be equally long, got {lengths}")
        return arrays

    def _push(
        self,
        channel: _Channel,
        samples: np.ndarray,
        finished: list[tuple[int, int]],
        *,
        final: bool = False,
    ) -> None:
        # `finished`: the stretches the VAD closed with these samples.
        if len(samples):
            channel.received += len(samples)
            if channel.windower is not None:  # no window will ever need the others' audio
                channel.buffer = (
                    np.concatenate([channel.buffer, samples]) if len(channel.buffer) else samples
                )
        detector = channel.detector
        windows: list[tuple[Window, int]] = []  # with the start of their stretch
        for start, end in finished:
            channel.speech.append(SpeechStretch(start=start / SAMPLE_RATE, end=end / SAMPLE_RATE))
            channel.closed_stretch = start
            if channel.windower is not None:
                reach = min(end + detector.trailing_samples, detector.labelled_samples)
                windows += [(w, start) for w in channel.windower.finish(start, end, reach)]
        open_stretch = detector.open_stretch
        if open_stretch is not None and channel.windower is not None and not final:
            # Windows as soon as their audio is labelled (the stretch is open, so that
            # audio is speech or a pause that may yet be bridged), not when speech resumes.
            grown = channel.windower.grow(open_stretch[0], detector.labelled_samples)
            windows += [(w, open_stretch[0]) for w in grown]
        spans: list[_Span] = []
        for window, stretch in windows:
            audio = channel.buffer[
                window.start - channel.buffer_start : window.end - channel.buffer_start
            ]
            peak, rms = _levels(audio)
            channel.peak_dbfs = max(channel.peak_dbfs, peak)
            item = _WindowItem(window.start, window.end, peak, rms, stretch)
            if len(audio) < self.window_samples:  # a short stretch: centred in zeros, alone
                spans.append(_Span(channel.speaker, window.start, audio, [item]))
            elif (
                spans
                and len(spans[-1].audio) >= self.window_samples
                and window.start < spans[-1].start + len(spans[-1].audio)
            ):  # overlaps the previous window: one spectrogram for both
                span = spans[-1]
                span.audio = channel.buffer[
                    span.start - channel.buffer_start : window.end - channel.buffer_start
                ]
                span.windows.append(item)
            else:
                spans.append(_Span(channel.speaker, window.start, audio, [item]))
        # The spans are views of the buffer: it is only ever replaced, never written to,
        # and they are predicted before this feed returns. (The buffer may itself be the
        # chunk fed in: feed() passes its own clipped copy, analyze_call a decoded block.)
        self._queue += spans
        self._trim(channel)

    def _trim(self, channel: _Channel) -> None:
        # Keep only audio a future window can still need: from the open speech
        # candidate (or the next window of a long stretch) on.
        keep_from = channel.detector.labelled_samples
        candidate = channel.detector.candidate_start
        if channel.windower is None:  # not analysed: no window will ever need its audio
            keep_from = channel.received
        elif candidate is not None:
            keep_from = channel.windower.needed_from(candidate)
        drop = keep_from - channel.buffer_start
        if drop > 0:
            channel.buffer = channel.buffer[drop:]
            channel.buffer_start = keep_from

    def _report_speech(
        self, channel: _Channel, final: bool = False
    ) -> list[WindowEvent | AlertEvent]:
        stretches = [(s.start, s.end) for s in channel.speech[channel.reported :]]
        channel.reported = len(channel.speech)
        settled = (channel.received if final else channel.detector.settled_samples) / SAMPLE_RATE
        return list(self.engine.on_speech(channel.speaker, stretches, settled))

    # --------------------------------------------------------------- inference

    def _predict_queue(self) -> list[WindowEvent | AlertEvent]:
        # Every window determined by this feed is predicted now (none waits for a
        # fuller batch): the batch size only bounds the model's input.
        events: list[WindowEvent | AlertEvent] = []
        pending, self._queue = self._queue, []
        if pending:
            # All spans end to end, one spectrogram: window_features recomputes each
            # window's edge frames from its own samples, so neighbours never leak in.
            length, parts, starts, position = self.window_samples, [], [], 0
            real_frames: list[slice | None] = []  # per window: the frames that hear audio
            for span in pending:
                audio = (
                    span.audio if len(span.audio) >= length else pad_centered(span.audio, length)
                )
                starts += [position + window[0] - span.start for window in span.windows]
                real_frames += [self._real_frames(len(span.audio))] * len(span.windows)
                parts.append(audio)
                position += len(audio)
            features = self.model.window_features(np.concatenate(parts), starts, length)
            windows = [(span.speaker, item) for span in pending for item in span.windows]
            # Each window's own frames before normalisation: what a model with
            # absolute_statistics summarises (nothing of other windows or callers).
            absolute = features.copy() if self.model.absolute_statistics else None
            for speaker, normalizer in self._callers.items():
                # Each speaker's windows in time order: every window is normalised with
                # that caller's speech up to its own end, never with later audio.
                mine = [k for k, (owner, _) in enumerate(windows) if owner == speaker]
                if mine:
                    features[mine] = normalizer.normalize_windows(
                        features[mine], [real_frames[k] for k in mine]
                    )
            size = self.options.batch_size
            probabilities = np.concatenate(
                [
                    self.model.predict_features(
                        features[first : first + size],
                        normalized=bool(self._callers),
                        absolute=None if absolute is None else absolute[first : first + size],
                    )
                    for first in range(0, len(features), size)
                ]
            )
            for (speaker, item), probs in zip(windows, probabilities, strict=True):
                self._raw[speaker].append(_Predicted(item, probs))
        for speaker in self.analyzed:
            events += self._smooth(speaker, final=False)
        return events

    def _real_frames(self, samples: int) -> slice | None:
        # A window shorter than the model's is centred in zeros (pad_centered): only the
        # frames centred on its audio count towards the caller's statistics.
        if samples >= self.window_samples:
            return None
        hop = self.model.feature_config.hop_length
        offset = (self.window_samples - samples) // 2
        return slice(-(-offset // hop), -(-(offset + samples) // hop))

    def _smooth(self, speaker: str, *, final: bool) -> list[WindowEvent | AlertEvent]:
        # Centred moving average over the speaker's windows of one speech stretch (a
        # turn), never across a pause the VAD did not bridge: window i is final once
        # window i + half of its stretch exists, or once the VAD has closed the stretch
        # (then, as at the end of the call, with the neighbours it has). So the last
        # window of a turn goes out when the turn ends, not when the speaker's next
        # turn starts, which in a live call can be many seconds later.
        half = self.options.smoothing_windows // 2
        raw = self._raw[speaker]
        emitted = self._raw_emitted[speaker]  # index in `raw` of the next window to emit
        closed = self.channels[speaker].closed_stretch
        events: list[WindowEvent | AlertEvent] = []
        while emitted < len(raw):
            item, probabilities = raw[emitted]
            stretch = item.stretch
            ahead = emitted + half < len(raw) and raw[emitted + half].window.stretch == stretch
            if not (final or ahead or stretch <= closed):
                break
            neighbours = [
                other.probabilities
                for other in raw[max(0, emitted - half) : emitted + half + 1]
                if other.window.stretch == stretch
            ]
            smoothed = np.mean(neighbours, axis=0)
            window = self._window_result(
                speaker, item.start, item.end, smoothed, probabilities, item.peak, item.rms
            )
            self.windows[speaker].append(window)
            events.append(WindowEvent(at=window.end, window=window))
            events += self.engine.on_window(window)
            emitted += 1
        # Forget windows no longer needed by any future average.
        forget = max(0, emitted - half)
        if forget:
            del raw[:forget]
            emitted -= forget
        self._raw_emitted[speaker] = emitted
        return events

    def _window_result(
        self,
        speaker: str,
        start: int,
        end: int,
        smoothed: np.ndarray,
        raw: np.ndarray,
        peak: float,
        rms: float,
    ) -> WindowResult:
        labels = self.model.labels
        probabilities = {
            label: round(float(p), 6) for label, p in zip(labels, smoothed, strict=True)
        }
        best = int(np.argmax(smoothed))
        return WindowResult(
            speaker=speaker,
            start=start / SAMPLE_RATE,
            end=end / SAMPLE_RATE,
            emotion=labels[best],
            probabilities=probabilities,
            confidence=probabilities[labels[best]],
            raw_probabilities=(
                {label: round(float(p), 6) for label, p in zip(labels, raw, strict=True)}
                if self.options.keep_raw_probabilities
                else None
            ),
            peak_dbfs=round(peak, 2),
            rms_dbfs=round(rms, 2),
        )

    # ------------------------------------------------------------------ result

    def result(self) -> CallResult:
        """The :class:`CallResult` of the call; call after :meth:`close`."""
        if not self.closed:
            raise AnalysisError("result() needs the call to be closed first (call close())")
        duration = self.duration_seconds
        speakers = {}
        for speaker, channel in self.channels.items():
            windows = self.windows.get(speaker, [])
            speakers[speaker] = SpeakerResult(
                speaker=speaker,
                channel=self.speaker_channels[speaker],
                speech=channel.speech,
                windows=windows,
                segments=merge_segments(windows),
                scores=speaker_scores(
                    speaker,
                    channel.speech,
                    windows,
                    duration,
                    analyzed=speaker in self.analyzed,
                    labels=self.model.labels,
                    peak_dbfs=channel.peak_dbfs if windows else None,
                ),
            )
        has_speech = any(s.speech for s in speakers.values())
        notes = []
        if not has_speech:
            notes.append("no speech detected in any channel: no emotions, scores or alerts")
        for speaker in self.analyzed:
            if has_speech and not speakers[speaker].speech:
                notes.append(f"no speech detected for the {speaker}")
        if self.options.mono:
            notes.append("mono call: both parties are in one channel, analysed as 'mixed'")
        elif not self.options.analyze_agent and "agent" in speakers:
            notes.append("agent emotions not analysed (opt in with analyze_agent)")
        notes += self.engine.skipped
        alerts = sorted(self.engine.alerts, key=lambda a: (a.opened_at, a.rule, a.speaker))
        return CallResult(
            call_id=self.call_id,
            source=self.source,
            duration_seconds=round(duration, 6),
            channels=self.speaker_channels,
            analyzed_speakers=self.analyzed,
            speakers=speakers,
            has_speech=has_speech,
            notes=notes,
            alerts=alerts,
            model=ModelInfo(
                name=self.model.name,
                labels=list(self.model.labels),
                backend=self.model.backend,
                window_seconds=self.window_seconds,
            ),
            options=self.options.model_dump(mode="json"),
        )


def _levels(audio: np.ndarray) -> tuple[float, float]:
    """Peak and RMS level of ``audio`` in dBFS."""
    if len(audio) == 0:
        return _SILENCE_DBFS, _SILENCE_DBFS
    # No abs() or float64 copies: a float32 dot product is exact enough for a level
    # reported to 0.01 dB, and this runs for every window.
    peak = max(float(audio.max()), -float(audio.min()))
    rms = float(np.sqrt(float(np.dot(audio, audio)) / len(audio)))
    return _dbfs(peak), _dbfs(rms)


def _dbfs(amplitude: float) -> float:
    return max(20 * float(np.log10(amplitude)), _SILENCE_DBFS) if amplitude > 0 else _SILENCE_DBFS


def merge_segments(windows: list[WindowResult]) -> list[SpeakerSegment]:
    """Merge consecutive windows of one speaker with the same emotion into segments.

    Overlapping windows of different emotions are split halfway through their
    overlap, so segments of one speaker never overlap.
    """
    segments: list[SpeakerSegment] = []
    confidences: list[float] = []
    for window in windows:
        last = segments[-1] if segments else None
        if (
            last is not None
            and last.emotion == window.emotion
            and window.start <= last.end + SEGMENT_GAP_SECONDS
        ):
            confidences.append(window.confidence)
            last.end = max(last.end, window.end)
            last.window_count += 1
            last.confidence = float(np.mean(confidences))
            continue
        start = window.start
        if last is not None and window.start < last.end:
            boundary = (window.start + last.end) / 2
            last.end, start = boundary, boundary
        confidences = [window.confidence]
        segments.append(
            SpeakerSegment(
                speaker=window.speaker,
                start=start,
                end=window.end,
                emotion=window.emotion,
                confidence=window.confidence,
                window_count=1,
            )
        )
    return segments


def speaker_scores(
    speaker: str,
    speech: list[SpeechStretch],
    windows: list[WindowResult],
    duration_seconds: float,
    *,
    analyzed: bool,
    labels: tuple[str, ...] | list[str],
    peak_dbfs: float | None = None,
) -> SpeakerScores:
    """Call-level scores of one speaker (see :class:`~callmood.results.SpeakerScores`)."""
    talk = sum(s.end - s.start for s in speech)
    silence_share = 1.0 - talk / duration_seconds if duration_seconds > 0 else 1.0
    scores = dict(
        speaker=speaker,
        talk_seconds=round(talk, 3),
        silence_share=min(1.0, max(0.0, silence_share)),
        emotions_analyzed=analyzed,
        window_count=len(windows),
    )
    if not analyzed or not windows:
        return SpeakerScores(**scores)
    matrix = np.array([[w.probabilities[label] for label in labels] for w in windows])
    emotions = [w.emotion for w in windows]
    shares = {label: emotions.count(label) / len(emotions) for label in labels}
    window_negativity = np.array([negativity(w.probabilities) for w in windows])
    quarter_length = duration_seconds / 4 if duration_seconds > 0 else 1.0
    quarter_of = np.minimum((np.array([w.start for w in windows]) // quarter_length), 3).astype(int)
    by_quarter: list[float | None] = []
    dominant_by_quarter: list[str | None] = []
    for quarter in range(4):
        inside = quarter_of == quarter
        if not inside.any():
            by_quarter.append(None)
            dominant_by_quarter.append(None)
            continue
        by_quarter.append(round(float(window_negativity[inside].mean()), 4))
        dominant_by_quarter.append(labels[int(np.argmax(matrix[inside].mean(axis=0)))])
    present = [v for v in by_quarter if v is not None]
    shift = round(present[-1] - present[0], 4) if len(present) >= 2 else None
    mean = matrix.mean(axis=0)
    return SpeakerScores(
        **scores,
        emotion_shares={k: round(v, 4) for k, v in shares.items()},
        mean_probabilities={
            label: round(float(p), 4) for label, p in zip(labels, mean, strict=True)
        },
        dominant_emotion=max(shares, key=lambda k: shares[k]),
        negativity=round(float(min(1.0, window_negativity.mean())), 4),
        negativity_by_quarter=by_quarter,
        dominant_emotion_by_quarter=dominant_by_quarter,
        negativity_shift=shift,
        peak_dbfs=peak_dbfs,
    )


def _source_name(source: object) -> str:
    if isinstance(source, str | Path):
        return str(source)
    return getattr(source, "name", None) or "<bytes>"


def analyze_call(
    source: str | Path | bytes | BinaryIO,
    options: AnalysisOptions | None = None,
    model: EmotionModel | None = None,
    rules: RuleSet | str | Path | None = None,
    *,
    call_id: str | None = None,
    progress: Callable[[float, float], None] | None = None,
) -> CallResult:
    """Analyse one recorded call.

    Parameters
    ----------
    source
        Audio file path, bytes or binary file object (any format callmood.audio reads;
        8 kHz telephone audio is resampled).
    options
        :class:`AnalysisOptions`; defaults: stereo, customer = channel 0, agent = 1,
        customer emotions only. A one-channel file is analysed as mono.
    model
        A loaded :class:`~callmood.inference.EmotionModel`; None loads the bundled one.
    rules
        Alert rules: a :class:`~callmood.alerts.RuleSet`, a YAML path, or None (defaults).
    call_id
        Id for the result (default: random).
    progress
        Called as ``progress(seconds_done, total_seconds)`` after each decoded block.

    Returns
    -------
    CallResult
    """
    options = options or AnalysisOptions()
    name = _source_name(source)
    info = audio_info(source)
    if hasattr(source, "seek"):
        source.seek(0)
    if info.frames and info.duration_seconds < MIN_CALL_SECONDS:
        raise AnalysisError(
            f"{name}: only {info.duration_seconds:.2f} s of audio; a call needs at least "
            f"{MIN_CALL_SECONDS:g} s"
        )
    options = _fit_channels(options, info.channels, name)
    mapping = options.speaker_channels()
    analyzer = StreamingAnalyzer(
        options,
        model or EmotionModel.load(backend=options.backend, num_threads=options.num_threads),
        rules,
        call_id=call_id or Path(name).stem or None,
        source=name,
    )
    speakers = list(mapping)
    # A mono analysis of a multi-channel file hears the mix of all its channels.
    channels = None if options.mono else [mapping[s] for s in speakers]
    blocks = iter_audio_blocks(source, block_seconds=options.block_seconds, channels=channels)

    def prepare(block: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        # On the decode thread: each channel's samples and their VAD labels, so that
        # voice-activity detection runs beside the features and the model of the
        # block before instead of in turn with them.
        if options.mono:
            arrays = {"mixed": block.mean(axis=0)}
        else:
            arrays = {speaker: block[row] for row, speaker in enumerate(speakers)}
        labels = {s: analyzer.channels[s].detector.label(a) for s, a in arrays.items()}
        return arrays, labels

    # Blocks are finite, float32 and clipped to [-1, 1] by the decoder: no second check.
    for arrays, labels in _prefetched(blocks, prepare):
        analyzer._feed(arrays, labels)
        if progress is not None:
            progress(analyzer.duration_seconds, info.duration_seconds)
    if analyzer.duration_seconds < MIN_CALL_SECONDS:
        raise AnalysisError(
            f"{name}: only {analyzer.duration_seconds:.2f} s of audio; a call needs at least "
            f"{MIN_CALL_SECONDS:g} s"
        )
    analyzer.close()
    return analyzer.result()


_Prepared = TypeVar("_Prepared")


def _prefetched(
    blocks: Iterator[np.ndarray], prepare: Callable[[np.ndarray], _Prepared]
) -> Iterator[_Prepared]:
    """``prepare(block)`` of each block, decoded and prepared on a background thread while
    the caller analyses the one before.

    The decoders (libsndfile, FFmpeg) and most of the VAD's numpy work run without
    holding the GIL, so they take a second core instead of adding to the analysis
    time. One prepared block waits at most.
    """
    handoff: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def put(item: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def decode() -> None:
        try:
            for block in blocks:
                if not put(("block", prepare(block))):
                    return
            put(("end", None))
        except BaseException as error:  # handed to the caller, raised there
            put(("error", error))
        finally:
            close = getattr(blocks, "close", None)
            if close is not None:
                close()  # the decoder's file, when the caller stopped early

    thread = threading.Thread(target=decode, name="callmood-decode", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = handoff.get()
            if kind == "error":
                raise value
            if kind == "end":
                return
            yield value
    finally:
        stop.set()
        thread.join()


def _fit_channels(options: AnalysisOptions, channels: int, name: str) -> AnalysisOptions:
    """Check the channel mapping against the file; a one-channel file becomes a mono call."""
    if options.mono:
        return options
    explicit = "channels" in options.model_fields_set
    if channels == 1 and not explicit:
        return options.model_copy(update={"mono": True})
    if channels > 2 and not explicit:
        raise AnalysisError(
            f"{name}: has {channels} channels; say which is which, e.g. --channels "
            "customer=0,agent=1 (channel indices from 0), or --mono to analyse channel 0"
        )
    missing = {s: i for s, i in options.channels.items() if i >= channels}
    if missing:
        which = ", ".join(f"{s}={i}" for s, i in missing.items())
        raise AnalysisError(
            f"{name}: has {channels} channel(s) (indices 0..{channels - 1}); no channel for {which}"
        )
    return options
