"""What more than one benchmark script needs (the scripts import it as a sibling module)."""

from __future__ import annotations

import random
import socket
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from callmood import store
from callmood.call_metadata import CallMetadata
from callmood.results import (
    Alert,
    CallResult,
    EvidenceWindow,
    ModelInfo,
    SpeakerResult,
    SpeakerScores,
    SpeakerSegment,
    SpeechStretch,
    WindowResult,
)
from callmood.store.models import AlertRecord, CallRecord, CallTag

#: Seeded calls start over the DAYS days up to and including LAST_DAY (UTC).
LAST_DAY = date(2026, 11, 30)
DAYS = 90
AGENTS = [f"agent{number}" for number in range(40)]
QUEUES = ["sales", "billing", "support", None]
TAGS = ["vip", "complaint", "renewal", "campaign-a", "campaign-b", "callback"]
RULES = ["angry_customer", "loud_customer", "silence"]
LABELS = ["neutral", "happy", "sad", "angry"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def seed_calls(
    session_factory: sessionmaker[Session], calls: int, *, detailed: int = 0
) -> list[str]:
    """Store `calls` calls started over the 90 days up to LAST_DAY, with 5 alerts per call
    on average (0, 5 or 10), agents, queues and tags, and return the ids of the detailed ones.

    The first `detailed` calls go through :func:`callmood.store.save_call_result` with a
    10-minute result (customer windows, segments, speakers, alerts), so that their call page
    renders; the rest are bulk inserts of the rows the list, trends and alert views read
    (their result JSON is empty: nothing should open them).
    """
    rng = random.Random(7)
    start = datetime.combine(LAST_DAY - timedelta(days=DAYS - 1), datetime.min.time(), UTC)
    call_rows, alert_rows, tag_rows, detailed_ids = [], [], [], []
    with store.session_scope(session_factory) as session:
        for number in range(calls):
            call_id = f"call{number:06d}"
            started = start + timedelta(seconds=rng.uniform(0, DAYS * 86400))
            alerts = rng.choice([0, 0, 5, 5, 10, 10])
            agent, queue = rng.choice(AGENTS), rng.choice(QUEUES)
            tags = rng.sample(TAGS, rng.choice([0, 0, 1, 1, 2]))
            if number < detailed:
                result = detailed_result(call_id, rng, alerts)
                metadata = CallMetadata(agent=agent, queue=queue, started_at=started)
                store.save_call_result(
                    session, result, tags=tags, created_at=started, metadata=metadata
                )
                detailed_ids.append(call_id)
                continue
            call_rows.append(
                {
                    "id": call_id,
                    "name": f"Call {number}",
                    "source": "bench",
                    "created_at": started,
                    "started_at": started,
                    "agent": agent,
                    "queue": queue,
                    "duration_seconds": rng.uniform(30, 900),
                    "has_speech": True,
                    "main_speaker": "customer",
                    "dominant_emotion": rng.choice(LABELS),
                    "negativity": rng.random(),
                    "alert_count": alerts,
                    "model_name": "bench",
                    "result_json": "{}",
                }
            )
            tag_rows.extend({"call_id": call_id, "tag": tag} for tag in tags)
            for index in range(alerts):
                alert_rows.append(
                    {
                        "call_id": call_id,
                        "alert_key": f"a{index}",
                        "rule": rng.choice(RULES),
                        "kind": "sustained",
                        "speaker": "customer",
                        "severity": rng.choice(["info", "warning", "critical"]),
                        "opened_at": 1.0,
                        "value": 0.5,
                        "message": "bench",
                        "evidence": [],
                        "created_at": started,
                        "state": rng.choice(["open", "acknowledged", "resolved"]),
                    }
                )
        if call_rows:
            session.execute(insert(CallRecord), call_rows)
        if tag_rows:
            session.execute(insert(CallTag), tag_rows)
        if alert_rows:
            session.execute(insert(AlertRecord), alert_rows)
    return detailed_ids


def detailed_result(call_id: str, rng: random.Random, alerts: int) -> CallResult:
    """A 10-minute analysed call: a customer window every 1.5 s, merged into segments, and
    `alerts` sustained alerts."""
    duration = 600.0
    windows = []
    for index in range(int((duration - 3.0) / 1.5)):
        emotion = rng.choice(LABELS)
        rest = 0.3 / (len(LABELS) - 1)
        windows.append(
            WindowResult(
                speaker="customer",
                start=1.5 * index,
                end=1.5 * index + 3.0,
                emotion=emotion,
                probabilities={label: 0.7 if label == emotion else rest for label in LABELS},
                confidence=0.7,
                peak_dbfs=-6.0,
                rms_dbfs=-20.0,
            )
        )
    segments: list[SpeakerSegment] = []
    for window in windows:
        if segments and segments[-1].emotion == window.emotion:
            last = segments[-1]
            segments[-1] = last.model_copy(
                update={"end": window.end, "window_count": last.window_count + 1}
            )
        else:
            segments.append(
                SpeakerSegment(
                    speaker="customer",
                    start=window.start,
                    end=window.end,
                    emotion=window.emotion,
                    confidence=0.7,
                    window_count=1,
                )
            )
    negativity = sum(w.probabilities["angry"] + w.probabilities["sad"] for w in windows)
    customer = SpeakerResult(
        speaker="customer",
        channel=0,
        speech=[SpeechStretch(start=0.0, end=duration)],
        windows=windows,
        segments=segments,
        scores=SpeakerScores(
            speaker="customer",
            talk_seconds=duration * 0.6,
            silence_share=0.4,
            emotions_analyzed=True,
            window_count=len(windows),
            dominant_emotion="neutral",
            negativity=negativity / len(windows),
        ),
    )
    agent = SpeakerResult(
        speaker="agent",
        channel=1,
        speech=[SpeechStretch(start=10.0, end=200.0)],
        windows=[],
        segments=[],
        scores=SpeakerScores(
            speaker="agent",
            talk_seconds=190.0,
            silence_share=0.68,
            emotions_analyzed=False,
            window_count=0,
        ),
    )
    found = [
        Alert(
            id=f"angry_customer:customer:{index * 30_000}",
            rule=rng.choice(RULES),
            kind="sustained",
            speaker="customer",
            severity=rng.choice(["info", "warning", "critical"]),
            opened_at=30.0 * index,
            confirmed_at=30.0 * index + 6.0,
            closed_at=30.0 * index + 12.0,
            value=0.7,
            evidence=[EvidenceWindow(start=30.0 * index, end=30.0 * index + 3.0, value=0.7)],
            message="the customer sounds angry for at least 6 s",
        )
        for index in range(alerts)
    ]
    return CallResult(
        call_id=call_id,
        source=f"{call_id}.flac",
        duration_seconds=duration,
        channels={"customer": 0, "agent": 1},
        analyzed_speakers=["customer"],
        speakers={"customer": customer, "agent": agent},
        has_speech=True,
        alerts=found,
        model=ModelInfo(name="bench", labels=LABELS, backend="onnx", window_seconds=3.0),
        options={"customer_channel": 0, "agent_channel": 1},
    )
