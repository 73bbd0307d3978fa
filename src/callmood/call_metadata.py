"""Who handled a call and when it really started: agent, queue, external call id, start time.

These come from the phone system (upload form, a live stream's start message, a batch
sidecar file, CLI flags), so they are checked here once, the same way for every entry:
text is trimmed, without control characters and length-limited; the start time is ISO 8601
with a time zone and plausible.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from callmood.errors import CallmoodError

#: Longest agent, queue and external call id (the database columns' sizes).
MAX_AGENT_LENGTH = 200
MAX_QUEUE_LENGTH = 200
MAX_EXTERNAL_ID_LENGTH = 200
#: Start times before this are typing or clock errors, not calls.
EARLIEST_START = datetime(2000, 1, 1, tzinfo=UTC)
#: How far ahead of this machine's clock a start time may be (the phone system's clock
#: can be off a little; a day more is a wrong date).
MAX_FUTURE_START = timedelta(days=1)
METADATA_FIELDS = ("agent", "queue", "external_call_id", "started_at")


class CallMetadataError(CallmoodError):
    """An agent, queue, external call id or start time is invalid."""

    status_code = 422


def clean_label(value: Any, field: str, max_length: int) -> str | None:
    """A text field as stored: trimmed, None when blank.

    Raises
    ------
    ValueError
        Not a string, holds a control character (NUL, newline, ...), or is too long.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{field} must be text, not {type(value).__name__}")
    text = value.strip()
    if not text:
        return None
    # NUL cannot be stored in PostgreSQL text; newlines and the like only break lists and CSV.
    if any(unicodedata.category(char) == "Cc" for char in text):
        raise ValueError(f"{field} must not contain control characters (NUL, newline, tab)")
    if len(text) > max_length:
        raise ValueError(f"{field} is longer than {max_length} characters")
    return text


def parse_started_at(value: Any, *, now: datetime | None = None) -> datetime | None:
    """A call's start time as stored: timezone-aware UTC, None when blank.

    Accepts an ISO 8601 string with a zone ("2026-12-03T09:15:00+01:00", "...Z") or an
    aware datetime.

    Raises
    ------
    ValueError
        Not ISO 8601, without a time zone, before 2000 or more than a day in the future.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(
                f"started_at {value[:40]!r} is not an ISO 8601 time "
                "(e.g. 2026-12-03T09:15:00+01:00)"
            ) from None
    elif isinstance(value, datetime):
        moment = value
    else:
        # Not a number: a Unix time's unit (s or ms) and its zone would be guesses.
        raise ValueError(f"started_at must be an ISO 8601 string, not {type(value).__name__}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(
            f"started_at {value!s:.40} has no time zone: add one (Z for UTC, or +01:00)"
        )
    moment = moment.astimezone(UTC)
    latest = (now or datetime.now(UTC)) + MAX_FUTURE_START
    if moment < EARLIEST_START or moment > latest:
        raise ValueError(
            f"started_at {moment.isoformat()} is implausible (before 2000 or more than "
            "a day in the future)"
        )
    return moment


class CallMetadataFields(BaseModel):
    """The four metadata fields with their checks, for every model that takes them (upload
    options, a stream's start message, :class:`CallMetadata` itself)."""

    agent: str | None = Field(
        None, max_length=MAX_AGENT_LENGTH, description="The agent who took the call."
    )
    queue: str | None = Field(
        None, max_length=MAX_QUEUE_LENGTH, description="The queue (team) the call came in on."
    )
    external_call_id: str | None = Field(
        None, max_length=MAX_EXTERNAL_ID_LENGTH, description="The phone system's id of the call."
    )
    started_at: datetime | None = Field(
        None,
        description="When the call really started, ISO 8601 with a time zone "
        "(2026-12-03T09:15:00+01:00); a stored call falls back to when it was received.",
    )

    @field_validator("agent", "queue", "external_call_id", mode="before")
    @classmethod
    def _clean_text(cls, value: Any, info: ValidationInfo) -> str | None:
        limits = {
            "agent": MAX_AGENT_LENGTH,
            "queue": MAX_QUEUE_LENGTH,
            "external_call_id": MAX_EXTERNAL_ID_LENGTH,
        }
        name = str(info.field_name)
        return clean_label(value, name, limits[name])

    @field_validator("started_at", mode="before")
    @classmethod
    def _parse_started_at(cls, value: Any) -> datetime | None:
        return parse_started_at(value)

    def call_metadata(self) -> CallMetadata:
        """Just the metadata fields (already checked)."""
        return CallMetadata.model_construct(
            **{name: getattr(self, name) for name in METADATA_FIELDS}
        )


class CallMetadata(CallMetadataFields):
    """Who handled a call and when it started, as the phone system knows it (all optional)."""

    model_config = ConfigDict(extra="forbid")

    @property
    def is_empty(self) -> bool:
        """Whether nothing at all is known."""
        return all(getattr(self, name) is None for name in METADATA_FIELDS)

    @classmethod
    def parse(cls, fields: dict[str, Any]) -> CallMetadata:
        """Metadata from loose input (form fields, a CSV row); keys other than the four
        metadata fields are ignored.

        Raises
        ------
        CallMetadataError
            A value is invalid; the message names the field.
        """
        try:
            return cls.model_validate(
                {name: fields[name] for name in METADATA_FIELDS if name in fields}
            )
        except ValidationError as error:
            raise CallMetadataError(describe_errors(error)) from None


def describe_errors(error: ValidationError) -> str:
    """A pydantic error as one line naming each field ("agent: too long; ...")."""
    problems = []
    for item in error.errors():
        place = ".".join(str(part) for part in item["loc"])
        message = str(item["msg"]).removeprefix("Value error, ")
        problems.append(f"{place}: {message}" if place else message)
    return "; ".join(problems)
