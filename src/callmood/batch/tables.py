"""The batch's tables (calls, segments, alerts, errors): Arrow schemas and rows from results.

The schemas are fixed here, once, so that every per-call Parquet file of a
table has the same columns and types and the folder reads back as one dataset.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pyarrow as pa

from callmood.results import SPEAKERS, CallResult

TABLES = ("calls", "segments", "alerts", "errors")

#: Per-speaker call scores copied into the calls table as ``<speaker>_<score>`` columns.
SPEAKER_SCORE_COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("channel", pa.int32()),
    ("talk_seconds", pa.float64()),
    ("silence_share", pa.float64()),
    ("window_count", pa.int32()),
    ("dominant_emotion", pa.string()),
    ("negativity", pa.float64()),
    ("negativity_shift", pa.float64()),
    ("peak_dbfs", pa.float64()),
)
_SEVERITY_ORDER = {"info": 0, "warning": 1, "critical": 2}
_TIMESTAMP = pa.timestamp("us", tz="UTC")

CALLS_SCHEMA = pa.schema(
    [
        ("call_hash", pa.string()),
        ("path", pa.string()),
        ("duplicate_paths", pa.list_(pa.string())),
        # From the --metadata sidecar (null when not given; outputs written before: null too).
        ("agent", pa.string()),
        ("queue", pa.string()),
        ("external_call_id", pa.string()),
        ("started_at", _TIMESTAMP),
        ("duration_seconds", pa.float64()),
        ("has_speech", pa.bool_()),
        ("analyzed_speakers", pa.list_(pa.string())),
        *[
            (f"{speaker}_{name}", dtype)
            for speaker in SPEAKERS
            for name, dtype in SPEAKER_SCORE_COLUMNS
        ],
        ("alert_count", pa.int32()),
        ("max_alert_severity", pa.string()),
        ("notes", pa.list_(pa.string())),
        ("model_name", pa.string()),
        ("schema_version", pa.string()),
        ("analyzed_at", _TIMESTAMP),
        # The whole CallResult, so nothing the analysis found is lost to flattening.
        ("result_json", pa.large_string()),
    ]
)
SEGMENTS_SCHEMA = pa.schema(
    [
        ("call_hash", pa.string()),
        ("speaker", pa.string()),
        ("channel", pa.int32()),
        ("start", pa.float64()),
        ("end", pa.float64()),
        ("emotion", pa.string()),
        ("confidence", pa.float64()),
        ("window_count", pa.int32()),
    ]
)
ALERTS_SCHEMA = pa.schema(
    [
        ("call_hash", pa.string()),
        ("alert_id", pa.string()),
        ("rule", pa.string()),
        ("kind", pa.string()),
        ("speaker", pa.string()),
        ("severity", pa.string()),
        ("opened_at", pa.float64()),
        # When the rule was satisfied (opened_at is where its condition began); null in
        # outputs written before 3 December 2026.
        ("confirmed_at", pa.float64()),
        ("closed_at", pa.float64()),
        ("value", pa.float64()),
        ("message", pa.string()),
        (
            "evidence",
            pa.list_(
                pa.struct([("start", pa.float64()), ("end", pa.float64()), ("value", pa.float64())])
            ),
        ),
    ]
)
ERRORS_SCHEMA = pa.schema(
    [
        ("call_hash", pa.string()),
        ("path", pa.string()),
        ("duplicate_paths", pa.list_(pa.string())),
        ("error_type", pa.string()),
        ("message", pa.string()),
        # False: the input is at fault (a rerun skips it); True: retried on the next run.
        ("retryable", pa.bool_()),
        ("failed_at", _TIMESTAMP),
    ]
)
SCHEMAS: dict[str, pa.Schema] = {
    "calls": CALLS_SCHEMA,
    "segments": SEGMENTS_SCHEMA,
    "alerts": ALERTS_SCHEMA,
    "errors": ERRORS_SCHEMA,
}


def result_tables(call_hash: str, paths: Sequence[str], result: CallResult) -> dict[str, pa.Table]:
    """The rows one analysed call adds to the calls, segments and alerts tables.

    Parameters
    ----------
    call_hash
        sha256 of the call's bytes.
    paths
        Files with this content, the analysed one first.
    result
        The call's analysis.
    """
    call_row: dict[str, object] = {
        "call_hash": call_hash,
        "path": paths[0],
        "duplicate_paths": list(paths[1:]),
        "agent": result.metadata.agent if result.metadata else None,
        "queue": result.metadata.queue if result.metadata else None,
        "external_call_id": result.metadata.external_call_id if result.metadata else None,
        "started_at": result.metadata.started_at if result.metadata else None,
        "duration_seconds": result.duration_seconds,
        "has_speech": result.has_speech,
        "analyzed_speakers": list(result.analyzed_speakers),
        "alert_count": len(result.alerts),
        "max_alert_severity": max(
            (a.severity for a in result.alerts), key=_SEVERITY_ORDER.__getitem__, default=None
        ),
        "notes": list(result.notes),
        "model_name": result.model.name,
        "schema_version": result.schema_version,
        "analyzed_at": result.created,
        "result_json": result.model_dump_json(),
    }
    for speaker in SPEAKERS:
        found = result.speakers.get(speaker)
        for name, _ in SPEAKER_SCORE_COLUMNS:
            if found is None:
                value = None
            elif name == "channel":
                value = found.channel
            else:
                value = getattr(found.scores, name)
            call_row[f"{speaker}_{name}"] = value

    segment_rows = [
        {
            "call_hash": call_hash,
            "speaker": segment.speaker,
            "channel": result.speakers[segment.speaker].channel,
            "start": segment.start,
            "end": segment.end,
            "emotion": segment.emotion,
            "confidence": segment.confidence,
            "window_count": segment.window_count,
        }
        for segment in result.segments()
    ]
    alert_rows = [
        {
            "call_hash": call_hash,
            "alert_id": alert.id,
            "rule": alert.rule,
            "kind": alert.kind,
            "speaker": alert.speaker,
            "severity": alert.severity,
            "opened_at": alert.opened_at,
            "confirmed_at": alert.confirmed_at,
            "closed_at": alert.closed_at,
            "value": alert.value,
            "message": alert.message,
            "evidence": [e.model_dump() for e in alert.evidence],
        }
        for alert in result.alerts
    ]
    return {
        "calls": pa.Table.from_pylist([call_row], schema=CALLS_SCHEMA),
        "segments": pa.Table.from_pylist(segment_rows, schema=SEGMENTS_SCHEMA),
        "alerts": pa.Table.from_pylist(alert_rows, schema=ALERTS_SCHEMA),
    }


def error_table(
    call_hash: str,
    paths: Sequence[str],
    error_type: str,
    message: str,
    *,
    retryable: bool,
) -> pa.Table:
    """The one errors-table row of a call that could not be analysed."""
    row = {
        "call_hash": call_hash,
        "path": paths[0],
        "duplicate_paths": list(paths[1:]),
        "error_type": error_type,
        "message": message,
        "retryable": retryable,
        "failed_at": datetime.now(UTC),
    }
    return pa.Table.from_pylist([row], schema=ERRORS_SCHEMA)
