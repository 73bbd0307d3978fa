"""The REST API's request and response bodies (so the OpenAPI document is the documentation).

Call results themselves are :class:`callmood.results.CallResult`, returned as they are.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from callmood.call_metadata import (
    MAX_AGENT_LENGTH,
    MAX_QUEUE_LENGTH,
    CallMetadataFields,
    describe_errors,
)
from callmood.errors import CallmoodError
from callmood.results import SpeakerSegment, WindowResult
from callmood.store import AlertRecord, CallRecord, JobRecord


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid")


def refuse_nul(value: Any) -> Any:
    """A name or tags, unless they hold a NUL character, which PostgreSQL text cannot store
    (the call would be lost at the very end); a pydantic validator."""
    texts = value if isinstance(value, list) else [value]
    if any(isinstance(text, str) and "\x00" in text for text in texts):
        raise ValueError("must not contain NUL characters (\\x00)")
    return value


class UploadOptionsError(CallmoodError):
    """A form field of an upload is unknown or has an invalid value."""

    status_code = 422


class UploadOptions(_Schema, CallMetadataFields):
    """How to analyse an uploaded call (the form fields next to `file`)."""

    name: str | None = Field(None, max_length=300, description="Display name; default: file name.")
    tags: list[str] = Field(
        default_factory=list, description="Labels for search; in the form, comma-separated."
    )
    customer_channel: int | None = Field(
        None, ge=0, description="Customer's channel (0 = left). Default: 0, or 1 if agent is 0."
    )
    agent_channel: int | None = Field(
        None, ge=0, description="Agent's channel. Default: the other of channels 0 and 1."
    )
    mono: bool = Field(
        False, description="Treat the file as one mixed channel (both parties on one track)."
    )
    analyze_agent: bool = Field(
        False,
        description="Also infer the agent's emotions (opt-in: in the EU, inferring employees' "
        "emotions at work is prohibited).",
    )

    @field_validator("tags", mode="before")
    @classmethod
    def _split_tags(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [tag.strip() for tag in value.split(",") if tag.strip()]
        return value

    _no_nul = field_validator("name", "tags")(refuse_nul)

    @property
    def channels_given(self) -> bool:
        """Whether the client named a channel (else a one-channel file is analysed as mono)."""
        return self.customer_channel is not None or self.agent_channel is not None

    def channel_mapping(self) -> dict[str, int]:
        """Speaker -> channel index, filling in the one the client left out."""
        customer = self.customer_channel
        agent = self.agent_channel
        if customer is None:
            customer = 1 if agent == 0 else 0
        if agent is None:
            agent = 0 if customer == 1 else 1
        return {"customer": customer, "agent": agent}

    @classmethod
    def from_form(cls, fields: dict[str, str]) -> UploadOptions:
        """Parse the upload's form fields (strings); raises UploadOptionsError naming the field."""
        try:
            return cls.model_validate(fields)
        except ValidationError as error:
            raise UploadOptionsError(f"invalid upload options: {describe_errors(error)}") from None


class JobAccepted(_Schema):
    """An upload was accepted and queued for analysis."""

    job_id: str
    state: str
    status_url: str = Field(description="Poll this for the job's state.")


class JobStatus(_Schema):
    """Where the analysis of an upload stands."""

    id: str
    state: Literal["queued", "running", "done", "failed"]
    name: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None = Field(description="Why the job failed (for the user).")
    call_id: str | None = Field(description="The stored call, once done.")
    call_url: str | None

    @classmethod
    def from_record(cls, job: JobRecord) -> JobStatus:
        return cls(
            id=job.id,
            state=job.state,  # type: ignore[arg-type]
            name=job.name,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            error=job.error,
            call_id=job.call_id,
            call_url=f"/api/calls/{job.call_id}" if job.call_id else None,
        )


class CallSummary(_Schema):
    """A stored call as the call list shows it."""

    id: str
    name: str
    source: str
    tags: list[str]
    created_at: datetime = Field(description="When the call was stored (UTC).")
    started_at: datetime = Field(
        description="When the call really started (UTC); when it was stored, if unknown."
    )
    agent: str | None = Field(description="The agent who took the call.")
    queue: str | None = Field(description="The queue (team) the call came in on.")
    external_call_id: str | None = Field(description="The phone system's id of the call.")
    duration_seconds: float
    has_speech: bool
    main_speaker: str | None = Field(description="Whose scores these are (customer by default).")
    dominant_emotion: str | None
    negativity: float | None = Field(description="Mean negativity of the main speaker, 0..1.")
    alert_count: int
    model_name: str
    has_audio: bool

    @classmethod
    def from_record(cls, call: CallRecord) -> CallSummary:
        return cls(
            id=call.id,
            name=call.name,
            source=call.source,
            tags=call.tag_names,
            created_at=call.created_at,
            started_at=call.started_at or call.created_at,
            agent=call.agent,
            queue=call.queue,
            external_call_id=call.external_call_id,
            duration_seconds=call.duration_seconds,
            has_speech=call.has_speech,
            main_speaker=call.main_speaker,
            dominant_emotion=call.dominant_emotion,
            negativity=call.negativity,
            alert_count=call.alert_count,
            model_name=call.model_name,
            has_audio=call.audio_path is not None,
        )


class CallUpdate(_Schema):
    """A new name, tags, agent or queue for a stored call (what is left out stays)."""

    name: str | None = Field(None, min_length=1, max_length=300, description="Display name.")
    tags: list[Annotated[str, Field(max_length=100)]] | None = Field(
        None, max_length=50, description="Replace the tags (an empty list removes them all)."
    )
    agent: str | None = Field(
        None, max_length=MAX_AGENT_LENGTH, description="The agent; an empty string clears it."
    )
    queue: str | None = Field(
        None, max_length=MAX_QUEUE_LENGTH, description="The queue; an empty string clears it."
    )

    _no_nul = field_validator("name", "tags", "agent", "queue")(refuse_nul)

    @field_validator("name")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be blank")
        return value.strip() if value is not None else None


class CallPage(_Schema):
    """One page of the call list (newest first); follow `next` for older calls."""

    items: list[CallSummary]
    total: int = Field(description="Calls matching the filters, on all pages.")
    offset: int = Field(description="Position of the first item in the whole list.")
    limit: int = Field(description="Most items on a page.")
    next_offset: int | None = Field(
        description="`offset` of the next (older) page; null on the last page."
    )
    next: str | None = Field(
        description="Path and query of the next page, with the same filters; null on the last."
    )
    previous: str | None = Field(
        description="Path and query of the previous (newer) page; null on the first."
    )


class SpeakerTimeline(_Schema):
    """One speaker's windows and merged segments."""

    speaker: str
    channel: int
    emotions_analyzed: bool
    windows: list[WindowResult]
    segments: list[SpeakerSegment]


class Timeline(_Schema):
    """The per-speaker emotion timeline of a call (seconds from the start)."""

    call_id: str
    duration_seconds: float
    speakers: list[SpeakerTimeline]


class StoredAlert(_Schema):
    """An alert of a stored call, with its handling state."""

    id: int = Field(description="Use this id to acknowledge or resolve the alert.")
    call_id: str
    call_name: str
    alert_key: str = Field(description="The alert's id within its call result.")
    rule: str
    kind: str
    speaker: str
    severity: str
    opened_at: float = Field(description="Seconds into the call: where the condition began.")
    confirmed_at: float | None = Field(
        description="Seconds into the call when the rule fired; null for alerts stored "
        "before this field existed."
    )
    closed_at: float | None = Field(description="Seconds into the call.")
    value: float
    message: str
    evidence: list[dict[str, float]]
    created_at: datetime
    state: Literal["open", "acknowledged", "resolved"]
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    acknowledged_by: str | None = Field(
        None, description="Who acknowledged it (user or token name); null before 0005."
    )
    resolved_by: str | None = Field(None, description="Who resolved it.")

    @classmethod
    def from_record(cls, alert: AlertRecord) -> StoredAlert:
        return cls(
            id=alert.id,
            call_id=alert.call_id,
            call_name=alert.call.name,
            alert_key=alert.alert_key,
            rule=alert.rule,
            kind=alert.kind,
            speaker=alert.speaker,
            severity=alert.severity,
            opened_at=alert.opened_at,
            confirmed_at=alert.confirmed_at,
            closed_at=alert.closed_at,
            value=alert.value,
            message=alert.message,
            evidence=alert.evidence,
            created_at=alert.created_at,
            state=alert.state,  # type: ignore[arg-type]
            acknowledged_at=alert.acknowledged_at,
            resolved_at=alert.resolved_at,
            acknowledged_by=alert.acknowledged_by,
            resolved_by=alert.resolved_by,
        )


class AlertSelection(_Schema):
    """Alerts to handle at once (the alerts page's "Acknowledge selected")."""

    ids: list[Annotated[int, Field(ge=0, le=2**63 - 1)]] = Field(
        min_length=1, max_length=500, description="Alert ids, at most 500."
    )


class AlertPage(_Schema):
    """One page of alerts, newest first."""

    items: list[StoredAlert]
    total: int
    offset: int
    limit: int


class LoginRequest(_Schema):
    """Log a browser in with the API token."""

    token: str = Field(min_length=1, max_length=1000)


class UserLoginRequest(_Schema):
    """Log a browser in with a user account (docs/access.md)."""

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1000)


class LoginStatus(_Schema):
    """Whether the caller is authenticated, and as whom."""

    authenticated: bool
    auth_disabled: bool
    user: str | None = Field(None, description="The user name, or 'shared token'.")
    role: str | None = Field(None, description="viewer, supervisor or admin.")


class ModelDescription(_Schema):
    """The model the service analyses calls with."""

    name: str
    labels: list[str]
    backend: str
    window_seconds: float
    directory: str | None
    metadata: dict[str, Any] = Field(description="The package's model.json.")
    card: str | None = Field(description="MODEL_CARD.md, Markdown.")
