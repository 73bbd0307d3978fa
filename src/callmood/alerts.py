"""Alert rules (read from YAML, validated) and the incremental engine that raises and closes alerts.

The engine consumes a call's smoothed windows and speech stretches in time order,
so the streaming analyser and a finished :class:`~callmood.results.CallResult`
(:func:`evaluate_rules`) give the same alerts. Rule kinds: ``sustained``,
``frequency``, ``shift``, ``loudness`` and ``silence`` (see ``docs/alerts.md``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from callmood.errors import CallmoodError
from callmood.results import (
    NEGATIVE_EMOTIONS,
    Alert,
    AlertEvent,
    CallResult,
    EvidenceWindow,
    Severity,
    WindowResult,
)
from callmood.safe_yaml import load_yaml

DEFAULT_RULES_PATH = Path(__file__).with_name("default_rules.yaml")
#: Evidence kept per alert (the first ones): bounds memory on hours-long calls.
MAX_EVIDENCE = 20
#: Pseudo-emotion a rule may name: the window's negativity (see SpeakerScores).
NEGATIVITY = "negativity"


class RulesError(CallmoodError):
    """An alert-rules file or rule is invalid."""


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="Unique name, used in alert ids.")
    speaker: Literal["customer", "agent", "any"] = "customer"
    severity: Severity = "warning"
    cooldown_seconds: float = Field(
        default=60.0, ge=0, description="After an alert closes, the same rule stays quiet (s)."
    )
    message: str | None = Field(default=None, description="Text of the alert; generated if unset.")


class SustainedRule(_Rule):
    """P(emotion) >= threshold in consecutive windows covering >= min_seconds of speech."""

    kind: Literal["sustained"]
    emotion: str
    threshold: float = Field(default=0.5, ge=0, le=1)
    min_seconds: float = Field(gt=0, description="Seconds of the speaker's speech.")


class FrequencyRule(_Rule):
    """At least min_windows windows with P(emotion) >= threshold within within_seconds."""

    kind: Literal["frequency"]
    emotion: str
    threshold: float = Field(default=0.5, ge=0, le=1)
    min_windows: int = Field(ge=1)
    within_seconds: float = Field(gt=0)


class ShiftRule(_Rule):
    """Negativity of the latest part_seconds exceeds that of the first part_seconds by > rise."""

    kind: Literal["shift"]
    rise: float = Field(gt=0, le=1, description="Negativity increase (0..1).")
    part_seconds: float = Field(default=20.0, gt=0)
    min_windows: int = Field(default=3, ge=1, description="Windows needed in each part.")


class LoudnessRule(_Rule):
    """A window's peak level reaches peak_dbfs."""

    kind: Literal["loudness"]
    peak_dbfs: float = Field(le=0, description="dBFS; 0 is full scale.")


class SilenceRule(_Rule):
    """Nobody (speaker 'any') or the given speaker silent for >= min_seconds after speech began."""

    kind: Literal["silence"]
    min_seconds: float = Field(gt=0)


Rule = Annotated[
    SustainedRule | FrequencyRule | ShiftRule | LoudnessRule | SilenceRule,
    Field(discriminator="kind"),
]


class RuleSet(BaseModel):
    """A named set of alert rules, as read from a YAML file (``rules: [...]``)."""

    model_config = ConfigDict(extra="forbid")

    rules: list[Rule] = Field(default_factory=list)
    source: str = Field(default="<rules>", exclude=True)

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, rules: list) -> list:
        names = [rule.name for rule in rules]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"rule names must be unique; repeated: {', '.join(duplicates)}")
        return rules

    @classmethod
    def from_dict(cls, data: object, *, source: str = "<rules>") -> RuleSet:
        """Validate rules given as ``{"rules": [...]}`` (or a bare list of rules)."""
        if isinstance(data, list):
            data = {"rules": data}
        if not isinstance(data, dict):
            raise RulesError(f"{source}: expected a mapping with a 'rules' list at the top")
        try:
            return cls.model_validate({**data, "source": source})
        except ValidationError as error:
            raise RulesError(_describe(error, data, source)) from None

    def check_labels(self, labels: Sequence[str]) -> None:
        """Raise RulesError if a rule names an emotion that is not one of ``labels``."""
        problems = [_unknown_emotion(rule, labels, self.source) for rule in self.rules]
        if any(problems):
            raise RulesError("; ".join(problem for problem in problems if problem))

    @classmethod
    def from_yaml(cls, path: str | Path) -> RuleSet:
        """Read and validate a rules file; errors name the file, the rule and the field."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise RulesError(f"rules file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as error:
            raise RulesError(f"rules file {path} cannot be read: {error}") from None
        try:
            data = load_yaml(text)
        except yaml.YAMLError as error:
            raise RulesError(f"rules file {path} is not valid YAML: {error}") from None
        except RecursionError:
            raise RulesError(f"rules file {path}: the YAML is nested too deeply") from None
        return cls.from_dict(data, source=str(path))


def _unknown_emotion(rule: Rule, labels: Sequence[str], source: str) -> str | None:
    """The problem with a rule naming an emotion the model lacks, or None."""
    emotion = getattr(rule, "emotion", None)
    if emotion is None or emotion == NEGATIVITY or emotion in labels:
        return None
    return (
        f"{source}: rule {rule.name!r}, field emotion: {emotion!r} is not a "
        f"label of the model (labels: {', '.join(labels)}, or {NEGATIVITY!r})"
    )


def _describe(error: ValidationError, data: dict, source: str) -> str:
    problems = []
    rules = data.get("rules") if isinstance(data, dict) else None
    for item in error.errors():
        location = list(item["loc"])
        where = ".".join(str(part) for part in location)
        if len(location) >= 2 and location[0] == "rules" and isinstance(location[1], int):
            index = location[1]
            rule = rules[index] if isinstance(rules, list) and index < len(rules) else None
            name = rule.get("name") if isinstance(rule, dict) else None
            # Drop the discriminator tag pydantic inserts ("sustained") from the field path.
            fields = [str(p) for p in location[2:] if not (rule and p == rule.get("kind"))]
            label = f"rule {name!r}" if name else f"rule #{index + 1}"
            where = f"{label}, field {'.'.join(fields) or 'kind'}"
        problems.append(f"{where}: {item['msg']}")
    return f"{source}: invalid rules: " + "; ".join(problems)


def load_rules(rules: RuleSet | str | Path | None) -> RuleSet:
    """A :class:`RuleSet` from a rule set, a YAML path, or None (the default rules)."""
    if rules is None:
        return DEFAULT_RULES
    if isinstance(rules, RuleSet):
        return rules
    return RuleSet.from_yaml(rules)


DEFAULT_RULES = RuleSet.from_yaml(DEFAULT_RULES_PATH)


def negativity(probabilities: dict[str, float]) -> float:
    """Sum of the probabilities of the negative emotions present (0..1)."""
    return min(1.0, sum(probabilities.get(label, 0.0) for label in NEGATIVE_EMOTIONS))


def _value(window: WindowResult, emotion: str) -> float:
    if emotion == NEGATIVITY:
        return negativity(window.probabilities)
    return window.probabilities.get(emotion, 0.0)


def _applies(rule_speaker: str, speaker: str) -> bool:
    # A mono call's one channel carries the customer too, so customer rules watch it.
    return rule_speaker in ("any", speaker) or (rule_speaker == "customer" and speaker == "mixed")


class _Tracker:
    """State of one rule for one speaker: at most one open alert, a cool-down after it."""

    def __init__(self, rule: _Rule, speaker: str) -> None:
        self.rule = rule
        self.speaker = speaker
        self.alert: Alert | None = None
        self.quiet_until = 0.0

    def _open(
        self, at: float, value: float, evidence: list[EvidenceWindow], *, began: float
    ) -> AlertEvent:
        """Open an alert confirmed at `at` whose condition began at `began` (<= at).

        The alert spans the condition (a sustained rule's alert covers the whole angry
        stretch, not only what follows it); the event is sent, and the id made, at `at`.
        """
        rule = self.rule
        at = round(at, 3)
        self.alert = Alert(
            id=f"{rule.name}:{self.speaker}:{int(round(at * 1000))}",
            rule=rule.name,
            kind=rule.kind,
            speaker=self.speaker,
            severity=rule.severity,
            opened_at=min(round(began, 3), at),
            confirmed_at=at,
            value=value,
            evidence=evidence[:MAX_EVIDENCE],
            message=rule.message or self.describe(value),
        )
        return AlertEvent(event="alert_open", at=at, alert=self.alert.model_copy(deep=True))

    def _extend(self, value: float, evidence: EvidenceWindow | None = None) -> None:
        assert self.alert is not None
        self.alert.value = max(self.alert.value, value)
        if evidence is not None and len(self.alert.evidence) < MAX_EVIDENCE:
            self.alert.evidence.append(evidence)

    def _close(self, at: float) -> AlertEvent:
        assert self.alert is not None
        alert, self.alert = self.alert, None
        alert.closed_at = max(round(at, 3), alert.opened_at)
        if self.rule.message is None:
            alert.message = self.describe(alert.value)
        self.quiet_until = alert.closed_at + self.rule.cooldown_seconds
        return AlertEvent(event="alert_close", at=alert.closed_at, alert=alert)

    def describe(self, value: float) -> str:
        raise NotImplementedError

    def on_window(self, window: WindowResult) -> list[AlertEvent]:
        return []

    def finish(self, end: float) -> list[AlertEvent]:
        return [self._close(end)] if self.alert is not None else []


class _Sustained(_Tracker):
    rule: SustainedRule

    def __init__(self, rule: SustainedRule, speaker: str) -> None:
        super().__init__(rule, speaker)
        self.run: list[EvidenceWindow] = []
        self.covered = 0.0  # seconds of speech under the run's windows (union)
        self.run_end = 0.0

    def describe(self, value: float) -> str:
        rule = self.rule
        return (
            f"{self.speaker} {rule.emotion} (p >= {rule.threshold:g}) for at least "
            f"{rule.min_seconds:g} s of speech; peak p = {value:.2f}"
        )

    def on_window(self, window: WindowResult) -> list[AlertEvent]:
        value = _value(window, self.rule.emotion)
        if value < self.rule.threshold:
            events = [self._close(self.run_end)] if self.alert is not None else []
            self.run, self.covered = [], 0.0
            return events
        if not self.run:
            self.run_end = window.start
        self.covered += max(0.0, window.end - max(window.start, self.run_end))
        self.run_end = max(self.run_end, window.end)
        evidence = EvidenceWindow(start=window.start, end=window.end, value=value)
        if self.alert is not None:
            self._extend(value, evidence)
            return []
        if len(self.run) < MAX_EVIDENCE:
            self.run.append(evidence)
        if self.covered >= self.rule.min_seconds and window.end >= self.quiet_until:
            return [
                self._open(
                    window.end,
                    max(e.value for e in self.run),
                    list(self.run),
                    began=self.run[0].start,
                )
            ]
        return []

    def finish(self, end: float) -> list[AlertEvent]:
        return [self._close(self.run_end)] if self.alert is not None else []


class _Frequency(_Tracker):
    rule: FrequencyRule

    def __init__(self, rule: FrequencyRule, speaker: str) -> None:
        super().__init__(rule, speaker)
        self.hits: deque[EvidenceWindow] = deque()
        self.last_hit_end = 0.0

    def describe(self, value: float) -> str:
        rule = self.rule
        return (
            f"{self.speaker} {rule.emotion} (p >= {rule.threshold:g}) in at least "
            f"{rule.min_windows} windows within {rule.within_seconds:g} s; peak p = {value:.2f}"
        )

    def on_window(self, window: WindowResult) -> list[AlertEvent]:
        rule = self.rule
        while self.hits and self.hits[0].end < window.end - rule.within_seconds:
            self.hits.popleft()
        value = _value(window, rule.emotion)
        hit = value >= rule.threshold
        if hit:
            evidence = EvidenceWindow(start=window.start, end=window.end, value=value)
            self.hits.append(evidence)
            self.last_hit_end = window.end
        if self.alert is not None:
            if len(self.hits) < rule.min_windows:
                return [self._close(window.end)]
            if hit:
                self._extend(value, evidence)
            return []
        if len(self.hits) >= rule.min_windows and window.end >= self.quiet_until:
            hits = list(self.hits)
            return [self._open(window.end, max(h.value for h in hits), hits, began=hits[0].start)]
        return []

    def finish(self, end: float) -> list[AlertEvent]:
        return [self._close(self.last_hit_end)] if self.alert is not None else []


class _Shift(_Tracker):
    rule: ShiftRule

    def __init__(self, rule: ShiftRule, speaker: str) -> None:
        super().__init__(rule, speaker)
        self.first_start: float | None = None
        self.baseline: list[float] = []
        self.baseline_end = 0.0
        self.baseline_done = False
        self.recent: deque[tuple[float, float, float]] = deque()  # (start, end, negativity)
        self.last_end = 0.0

    def describe(self, value: float) -> str:
        return (
            f"{self.speaker} negativity rose by {value:.2f} (more than {self.rule.rise:g}) "
            f"from the first {self.rule.part_seconds:g} s of speech to the latest"
        )

    def on_window(self, window: WindowResult) -> list[AlertEvent]:
        rule = self.rule
        value = negativity(window.probabilities)
        self.last_end = window.end
        if self.first_start is None:
            self.first_start = window.start
        if not self.baseline_done:
            if window.start < self.first_start + rule.part_seconds:
                self.baseline.append(value)
                self.baseline_end = window.end
                return []
            self.baseline_done = True
        self.recent.append((window.start, window.end, value))
        while self.recent and self.recent[0][1] <= window.end - rule.part_seconds:
            self.recent.popleft()
        if len(self.baseline) < rule.min_windows or len(self.recent) < rule.min_windows:
            return []
        base = sum(self.baseline) / len(self.baseline)
        latest = sum(v for _, _, v in self.recent) / len(self.recent)
        rise = latest - base
        if self.alert is not None:
            if rise <= rule.rise:
                return [self._close(window.end)]
            self._extend(rise)
            return []
        if rise > rule.rise and window.end >= self.quiet_until:
            evidence = [
                EvidenceWindow(start=self.first_start, end=self.baseline_end, value=base),
                EvidenceWindow(start=self.recent[0][0], end=window.end, value=latest),
            ]
            return [self._open(window.end, rise, evidence, began=self.recent[0][0])]
        return []

    def finish(self, end: float) -> list[AlertEvent]:
        return [self._close(self.last_end)] if self.alert is not None else []


class _Loudness(_Tracker):
    rule: LoudnessRule

    def __init__(self, rule: LoudnessRule, speaker: str) -> None:
        super().__init__(rule, speaker)
        self.loud_end = 0.0

    def describe(self, value: float) -> str:
        return f"{self.speaker} peak level {value:.1f} dBFS (>= {self.rule.peak_dbfs:g} dBFS)"

    def on_window(self, window: WindowResult) -> list[AlertEvent]:
        if window.peak_dbfs < self.rule.peak_dbfs:
            return [self._close(self.loud_end)] if self.alert is not None else []
        self.loud_end = window.end
        evidence = EvidenceWindow(start=window.start, end=window.end, value=window.peak_dbfs)
        if self.alert is not None:
            self._extend(window.peak_dbfs, evidence)
            return []
        if window.start >= self.quiet_until:
            return [self._open(window.start, window.peak_dbfs, [evidence], began=window.start)]
        return []

    def finish(self, end: float) -> list[AlertEvent]:
        return [self._close(self.loud_end)] if self.alert is not None else []


class _Silence(_Tracker):
    """Silence across a set of channels, from finished speech stretches and settled time.

    Speech before ``min(settled)`` over the watched channels is final, so gaps are
    decided on it alone and the result does not depend on how audio was chunked.
    """

    rule: SilenceRule

    def __init__(self, rule: SilenceRule, speaker: str, channels: Sequence[str]) -> None:
        super().__init__(rule, speaker)
        self.channels = tuple(channels)
        self.settled = dict.fromkeys(self.channels, 0.0)
        self.pending: list[tuple[float, float]] = []
        self.covered_until: float | None = None  # end of speech so far (None: none yet)

    def describe(self, value: float) -> str:
        who = "nobody spoke" if self.speaker == "any" else f"{self.speaker} silent"
        return f"{who} for {value:.1f} s (limit {self.rule.min_seconds:g} s)"

    def on_speech(
        self, channel: str, stretches: Iterable[tuple[float, float]], settled: float
    ) -> list[AlertEvent]:
        if channel not in self.settled:
            return []
        self.pending.extend(stretches)
        self.settled[channel] = max(self.settled[channel], settled)
        return self._advance(min(self.settled.values()))

    def _advance(self, known_until: float) -> list[AlertEvent]:
        events: list[AlertEvent] = []
        self.pending.sort()
        ready = [s for s in self.pending if s[0] < known_until]
        self.pending = [s for s in self.pending if s[0] >= known_until]
        for start, end in ready:
            if self.covered_until is not None and start > self.covered_until:
                events += self._gap(self.covered_until, start, closed=True)
            self.covered_until = end if self.covered_until is None else max(self.covered_until, end)
        if self.covered_until is not None and known_until > self.covered_until:
            events += self._gap(self.covered_until, known_until, closed=False)
        return events

    def _gap(self, start: float, until: float, *, closed: bool) -> list[AlertEvent]:
        events: list[AlertEvent] = []
        length = until - start
        opens_at = start + self.rule.min_seconds
        if self.alert is None and length >= self.rule.min_seconds and opens_at >= self.quiet_until:
            evidence = EvidenceWindow(start=start, end=opens_at, value=self.rule.min_seconds)
            events.append(self._open(opens_at, self.rule.min_seconds, [evidence], began=start))
        if self.alert is not None and self.alert.opened_at >= start:
            self.alert.value = length
            self.alert.evidence[0] = EvidenceWindow(start=start, end=until, value=length)
            if closed:
                events.append(self._close(until))
        return events

    def finish(self, end: float) -> list[AlertEvent]:
        events = self._advance(end)
        if self.covered_until is not None and end > self.covered_until:
            events += self._gap(self.covered_until, end, closed=True)
        if self.alert is not None:
            events.append(self._close(end))
        return events


class RuleEngine:
    """Incremental evaluation of a rule set over one call.

    Parameters
    ----------
    rules
        The rules.
    labels
        The model's labels; a rule naming an emotion the model lacks is an error
        (``strict``) or skipped (the default rules, which must suit any model).
    speakers
        Every speaker with a channel in the call (silence is watched over these).
    analyzed_speakers
        Speakers whose emotion windows will be fed.
    """

    def __init__(
        self,
        rules: RuleSet,
        *,
        labels: Sequence[str],
        speakers: Sequence[str],
        analyzed_speakers: Sequence[str],
        strict: bool = True,
    ) -> None:
        self.skipped: list[str] = []
        self._window_trackers: dict[str, list[_Tracker]] = {s: [] for s in analyzed_speakers}
        self._silence: list[_Silence] = []
        for rule in rules.rules:
            problem = _unknown_emotion(rule, labels, rules.source)
            if problem is not None:
                if strict:
                    raise RulesError(problem)
                self.skipped.append(problem)
                continue
            if isinstance(rule, SilenceRule):
                watched = list(speakers) if rule.speaker == "any" else [rule.speaker]
                if rule.speaker == "customer" and "mixed" in speakers:
                    watched = ["mixed"]
                if all(s in speakers for s in watched):
                    self._silence.append(_Silence(rule, rule.speaker, watched))
                continue
            tracker_class = {
                "sustained": _Sustained,
                "frequency": _Frequency,
                "shift": _Shift,
                "loudness": _Loudness,
            }[rule.kind]
            for speaker in analyzed_speakers:
                if _applies(rule.speaker, speaker):
                    self._window_trackers[speaker].append(tracker_class(rule, speaker))
        self.alerts: list[Alert] = []

    def _record(self, events: list[AlertEvent]) -> list[AlertEvent]:
        self.alerts.extend(e.alert for e in events if e.event == "alert_close")
        return events

    def on_window(self, window: WindowResult) -> list[AlertEvent]:
        """A smoothed window of an analysed speaker (each speaker's in time order)."""
        events = []
        for tracker in self._window_trackers.get(window.speaker, ()):
            events += tracker.on_window(window)
        return self._record(events)

    def on_speech(
        self, speaker: str, stretches: Iterable[tuple[float, float]], settled_seconds: float
    ) -> list[AlertEvent]:
        """Finished speech stretches (s) of a speaker, and the time up to which it is final."""
        stretches = list(stretches)
        events = []
        for tracker in self._silence:
            events += tracker.on_speech(speaker, stretches, settled_seconds)
        return self._record(events)

    def finish(self, end_seconds: float) -> list[AlertEvent]:
        """The call ended at ``end_seconds``: close every open alert."""
        events = []
        for trackers in self._window_trackers.values():
            for tracker in trackers:
                events += tracker.finish(end_seconds)
        for tracker in self._silence:
            events += tracker.finish(end_seconds)
        return self._record(events)


def evaluate_rules(result: CallResult, rules: RuleSet | str | Path | None = None) -> list[Alert]:
    """The alerts a rule set raises on a finished call (the same as during its analysis)."""
    rule_set = load_rules(rules)
    engine = RuleEngine(
        rule_set,
        labels=result.model.labels,
        speakers=list(result.speakers),
        analyzed_speakers=list(result.analyzed_speakers),
        strict=rule_set is not DEFAULT_RULES,
    )
    for speaker in result.analyzed_speakers:
        for window in result.speakers[speaker].windows:
            engine.on_window(window)
    for speaker, found in result.speakers.items():
        engine.on_speech(speaker, [(s.start, s.end) for s in found.speech], result.duration_seconds)
    engine.finish(result.duration_seconds)
    return sorted(engine.alerts, key=lambda a: (a.opened_at, a.rule, a.speaker))
