"""The database tables: calls, their speakers, windows, segments and alerts, tags, and jobs.

A call's full :class:`callmood.results.CallResult` is kept as JSON (the source of truth
for exports); the rows next to it are what the API filters, sorts and pages on.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Stable constraint names, so that migrations can refer to them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ALERT_STATES = ("open", "acknowledged", "resolved")
JOB_STATES = ("queued", "running", "done", "failed")


def utc_now() -> datetime:
    """The current time, timezone-aware UTC (what every timestamp column holds)."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and read back timezone-aware, also on SQLite."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: store timezone-aware UTC times")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        # SQLite drops the offset; the value was written in UTC.
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[Any]: JSON()}


class CallRecord(Base):
    """One analysed call: the summary the list view needs, and the full result."""

    __tablename__ = "calls"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(300))
    source: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utc_now, index=True)
    # From the phone system (migration 0003).
    agent: Mapped[str | None] = mapped_column(String(200), index=True)
    queue: Mapped[str | None] = mapped_column(String(200), index=True)
    external_call_id: Mapped[str | None] = mapped_column(String(200), index=True)
    # Always set (created_at when unknown). Nullable only because making it NOT NULL would
    # rebuild the table on SQLite, and dropping the old table cascades to every alert.
    started_at: Mapped[datetime | None] = mapped_column(index=True)
    duration_seconds: Mapped[float] = mapped_column(Float)
    has_speech: Mapped[bool] = mapped_column(Boolean)
    # Summary of the main analysed speaker (the customer unless the call is mono).
    main_speaker: Mapped[str | None] = mapped_column(String(20))
    dominant_emotion: Mapped[str | None] = mapped_column(String(40), index=True)
    negativity: Mapped[float | None] = mapped_column(Float, index=True)
    alert_count: Mapped[int] = mapped_column(Integer, default=0)
    model_name: Mapped[str] = mapped_column(String(200))
    audio_path: Mapped[str | None] = mapped_column(
        String(500), doc="Relative to the settings' audio_dir; None when the audio is not kept."
    )
    audio_media_type: Mapped[str | None] = mapped_column(String(100))
    # Deferred: lists and filters never need the full result, which can be large.
    result_json: Mapped[str] = mapped_column(Text, deferred=True)

    speakers: Mapped[list[SpeakerRecord]] = relationship(
        back_populates="call", cascade="all, delete-orphan", passive_deletes=True
    )
    windows: Mapped[list[WindowRecord]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, order_by="WindowRecord.start_seconds"
    )
    segments: Mapped[list[SegmentRecord]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, order_by="SegmentRecord.start_seconds"
    )
    alerts: Mapped[list[AlertRecord]] = relationship(
        back_populates="call", cascade="all, delete-orphan", passive_deletes=True
    )
    tags: Mapped[list[CallTag]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, lazy="selectin"
    )

    @property
    def tag_names(self) -> list[str]:
        return sorted(tag.tag for tag in self.tags)


class CallTag(Base):
    """A free-form label on a call (campaign, team, queue), for search."""

    __tablename__ = "call_tags"

    call_id: Mapped[str] = mapped_column(
        ForeignKey("calls.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(100), primary_key=True, index=True)


class SpeakerRecord(Base):
    """Call-level scores of one speaker (customer, agent, or the mix of a mono call)."""

    __tablename__ = "speakers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    speaker: Mapped[str] = mapped_column(String(20))
    channel: Mapped[int] = mapped_column(Integer)
    emotions_analyzed: Mapped[bool] = mapped_column(Boolean)
    talk_seconds: Mapped[float] = mapped_column(Float)
    silence_share: Mapped[float] = mapped_column(Float)
    window_count: Mapped[int] = mapped_column(Integer)
    dominant_emotion: Mapped[str | None] = mapped_column(String(40))
    negativity: Mapped[float | None] = mapped_column(Float)
    negativity_shift: Mapped[float | None] = mapped_column(Float)

    call: Mapped[CallRecord] = relationship(back_populates="speakers")


class WindowRecord(Base):
    """The emotion of one analysis window of one speaker."""

    __tablename__ = "windows"
    __table_args__ = (
        Index("ix_windows_call_speaker_start", "call_id", "speaker", "start_seconds"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"))
    speaker: Mapped[str] = mapped_column(String(20))
    start_seconds: Mapped[float] = mapped_column(Float)
    end_seconds: Mapped[float] = mapped_column(Float)
    emotion: Mapped[str] = mapped_column(String(40))
    confidence: Mapped[float] = mapped_column(Float)
    probabilities: Mapped[dict[str, Any]] = mapped_column(JSON)
    rms_dbfs: Mapped[float] = mapped_column(Float)
    peak_dbfs: Mapped[float] = mapped_column(Float)


class SegmentRecord(Base):
    """Consecutive windows of one speaker with the same emotion, merged."""

    __tablename__ = "segments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    speaker: Mapped[str] = mapped_column(String(20))
    start_seconds: Mapped[float] = mapped_column(Float)
    end_seconds: Mapped[float] = mapped_column(Float)
    emotion: Mapped[str] = mapped_column(String(40))
    confidence: Mapped[float] = mapped_column(Float)
    window_count: Mapped[int] = mapped_column(Integer)


class AlertRecord(Base):
    """An alert raised on a call, with its handling state (open, acknowledged, resolved)."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    alert_key: Mapped[str] = mapped_column(String(200), doc="Alert.id: unique within the call.")
    rule: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(40))
    speaker: Mapped[str] = mapped_column(String(20))
    severity: Mapped[str] = mapped_column(String(20), index=True)
    opened_at: Mapped[float] = mapped_column(Float, doc="Seconds into the call.")
    confirmed_at: Mapped[float | None] = mapped_column(
        Float, doc="Seconds into the call when the rule fired; NULL for alerts stored before 0002."
    )
    closed_at: Mapped[float | None] = mapped_column(Float, doc="Seconds into the call.")
    value: Mapped[float] = mapped_column(Float)
    message: Mapped[str] = mapped_column(Text)
    evidence: Mapped[list[Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utc_now, index=True)
    state: Mapped[str] = mapped_column(String(20), default="open", index=True)
    acknowledged_at: Mapped[datetime | None] = mapped_column()
    resolved_at: Mapped[datetime | None] = mapped_column()
    # Who did it, as the audit trail names them (user name or token name); NULL before 0005.
    acknowledged_by: Mapped[str | None] = mapped_column(String(200))
    resolved_by: Mapped[str | None] = mapped_column(String(200))

    call: Mapped[CallRecord] = relationship(back_populates="alerts")


class JobRecord(Base):
    """The analysis of one uploaded call, from queued to done or failed."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(20), default="queued", index=True)
    name: Mapped[str] = mapped_column(String(300))
    tags: Mapped[list[Any]] = mapped_column(JSON, default=list)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    upload_path: Mapped[str | None] = mapped_column(String(500), doc="Relative to audio_dir.")
    audio_media_type: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    error: Mapped[str | None] = mapped_column(Text)
    call_id: Mapped[str | None] = mapped_column(ForeignKey("calls.id", ondelete="SET NULL"))


#: Roles of dashboard users, least privileged first (each may do what the ones before may).
USER_ROLES = ("viewer", "supervisor", "admin")


class UserRecord(Base):
    """A person who logs in to the dashboard (docs/access.md); the password only as a hash."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # Kept lower-case, so that unique means unique whatever the case typed.
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    password_hash: Mapped[str] = mapped_column(String(200), doc="argon2id, PHC string format.")
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    last_login_at: Mapped[datetime | None] = mapped_column()
    password_changed_at: Mapped[datetime] = mapped_column(default=utc_now)


#: What an integration token may be allowed to do (docs/access.md); `admin` includes all.
TOKEN_SCOPES = (
    "calls:read",
    "calls:write",
    "alerts:write",
    "stream:write",
    "rules:write",
    "admin",
)


class ApiTokenRecord(Base):
    """A named integration token with scopes (docs/access.md); the secret only as a hash."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[Any]] = mapped_column(JSON, doc="Names from TOKEN_SCOPES.")
    secret_hash: Mapped[str] = mapped_column(
        String(71), unique=True, doc="sha256: and the secret's hex SHA-256 digest."
    )
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    created_by: Mapped[str] = mapped_column(String(200))
    last_used_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()


class AuditEventRecord(Base):
    """One thing someone did (docs/access.md): append-only, kept apart from call retention."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utc_now, index=True)
    actor_kind: Mapped[str] = mapped_column(String(20), doc="user, token, anonymous or cli.")
    actor_name: Mapped[str] = mapped_column(String(200), index=True)
    actor_id: Mapped[int | None] = mapped_column(Integer, doc="The user's or token's id.")
    action: Mapped[str] = mapped_column(String(40), index=True)
    target: Mapped[str | None] = mapped_column(String(300))
    client: Mapped[str | None] = mapped_column(String(100), doc="The client's address.")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
