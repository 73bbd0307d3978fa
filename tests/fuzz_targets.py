"""Fuzz targets: hostile inputs and a property for every parser that takes outside bytes.

Each target is a hypothesis strategy of inputs and a `check` function. The property is the
same everywhere: an input parses (and the result is sane), or the parser raises its own
documented CallmoodError subclass; through the app, a 2xx or a 4xx with a JSON `detail`, or
a WebSocket close with a protocol code and a reason. Anything else (another exception, a
5xx, a 1011 close) fails the check; a hang is caught by the caller's time limit.

Shared by tests/test_fuzz.py (a short, derandomised run in `make test`) and scripts/fuzz.py
(long campaigns). It lives in tests/, not in the package, because it needs hypothesis and
Starlette's TestClient, which are test dependencies: the package must not import them.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
import random
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
import yaml
from fixtures_audio import encode_with_ffmpeg, g711_wav_bytes, tone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from service_support import request_from_chunks

from callmood.alerts import RulesError, RuleSet
from callmood.audio import SAMPLE_RATE, AudioError, audio_info, iter_audio_blocks, load_audio
from callmood.labels import EMOTIONS
from callmood.manifest import COLUMNS, ManifestError, read_manifest
from callmood.service.audiosocket import (
    AUDIO_KINDS,
    AsteriskError,
    Audio,
    AudioSocketParser,
    AudioSocketProtocolError,
    Hangup,
    Identified,
)
from callmood.service.routes.stream import (
    BYTES_PER_SAMPLE,
    CLOSE_POLICY_VIOLATION,
    CLOSE_TOO_BIG,
    CLOSE_UNSUPPORTED_DATA,
    MAX_CLOSE_REASON_BYTES,
    MAX_FRAME_BYTES,
    SUPPORTED_SAMPLE_RATES,
    StreamDecoder,
    StreamProtocolError,
    StreamStart,
    _parse_json,
    parse_start,
)
from callmood.service.uploads import UploadError, receive_upload
from callmood.training.config import TrainingConfigError, load_training_config

# A test run: fixed examples (derandomised), so `make test` is stable; campaigns draw freely.
settings.register_profile(
    "fuzz-test",
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

TOKEN = "fuzz-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
#: Close codes a client may get for its own mistakes (1000 is a normal end).
CLIENT_CLOSE_CODES = {1000, CLOSE_UNSUPPORTED_DATA, CLOSE_POLICY_VIOLATION, CLOSE_TOO_BIG}
UPLOAD_LIMIT_BYTES = 64 * 1024


# ------------------------------------------------------------------ generic byte mutation

_INTERESTING_INTS = (0, 1, 2, 7, 255, 1000, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF)


@st.composite
def mutated(draw: st.DrawFn, seeds: st.SearchStrategy[bytes], max_mutations: int = 4) -> bytes:
    """A seed with a few of a fuzzer's usual edits: bit flips, overwritten header fields
    (little- and big-endian 16/32-bit integers), random runs, cuts and insertions."""
    data = bytearray(draw(seeds))
    for _ in range(draw(st.integers(1, max_mutations))):
        if not data:
            data += draw(st.binary(min_size=1, max_size=16))
            continue
        # Headers hold the interesting fields: favour the first 64 bytes.
        limit = min(len(data), draw(st.sampled_from([64, 64, len(data)])))
        at = draw(st.integers(0, limit - 1))
        edit = draw(st.sampled_from(["flip", "int", "bytes", "cut", "insert", "truncate"]))
        if edit == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif edit == "int":
            width, order = draw(st.sampled_from([(2, "little"), (4, "little"), (4, "big")]))
            value = draw(st.sampled_from(_INTERESTING_INTS)) % (1 << (8 * width))
            data[at : at + width] = value.to_bytes(width, order)
        elif edit == "bytes":
            run = draw(st.binary(min_size=1, max_size=32))
            data[at : at + len(run)] = run
        elif edit == "cut":
            del data[at : at + draw(st.integers(1, 256))]
        elif edit == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        else:
            del data[draw(st.integers(0, len(data) - 1)) :]
    return bytes(data)


def _scratch_file(suffix: str) -> Path:
    """One file per target and process, rewritten for each input (parsers read paths)."""
    return Path(_scratch_dir()) / f"input{suffix}"


@cache
def _scratch_dir() -> str:
    return tempfile.mkdtemp(prefix="callmood-fuzz-")


# ----------------------------------------------------------------------------- audio


@cache
def audio_seeds() -> tuple[bytes, ...]:
    """Small real files in every format the decoder knows (each well under 64 KiB)."""
    speech_like = tone(440, 0.25, 16000) + tone(1250, 0.25, 16000, amplitude=0.2)
    stereo = np.stack([speech_like, speech_like[::-1]], axis=1)
    seeds = []
    for data, rate, fmt, subtype in [
        (speech_like, 16000, "WAV", "PCM_16"),
        (stereo, 16000, "WAV", "PCM_16"),
        (speech_like[:2000], 8000, "WAV", "FLOAT"),
        (speech_like, 16000, "AIFF", "PCM_24"),
        (stereo, 16000, "FLAC", "PCM_16"),
        (speech_like, 16000, "OGG", "VORBIS"),
        (speech_like, 16000, "MP3", "MPEG_LAYER_III"),
        (speech_like[:2000], 8000, "WAV", "IMA_ADPCM"),
    ]:
        buffer = io.BytesIO()
        soundfile.write(buffer, data, rate, format=fmt, subtype=subtype)
        seeds.append(buffer.getvalue())
    codes = bytes(range(256)) * 8
    seeds += [g711_wav_bytes(codes, "mulaw"), g711_wav_bytes(codes, "alaw")]
    for container, codec in [("ipod", "aac"), ("webm", "libopus")]:
        path = _scratch_file(f".{container}")
        encode_with_ffmpeg(path, speech_like[None, :], 16000, container=container, codec=codec)
        seeds.append(path.read_bytes())
    return tuple(seeds)


def audio_inputs() -> st.SearchStrategy[bytes]:
    """Garbage, and real files of every format with a fuzzer's edits."""
    seeds = st.sampled_from(audio_seeds())
    return st.one_of(
        st.binary(max_size=512),
        seeds,
        mutated(seeds, max_mutations=1),
        mutated(seeds),
        mutated(seeds, max_mutations=12),
    )


def check_audio(data: bytes) -> None:
    """Header, whole decode and block decode: each gives sane audio or an AudioError."""
    try:
        info = audio_info(data)
        assert info.channels >= 1 and info.sample_rate > 0, info
    except AudioError:
        pass
    try:
        whole = load_audio(data, max_seconds=600)
    except AudioError:
        whole = None
    else:
        _check_samples(whole.samples)
        assert whole.sample_rate == SAMPLE_RATE
    try:
        blocks = list(iter_audio_blocks(data, block_seconds=0.5))
    except AudioError:
        return
    for block in blocks:
        _check_samples(block)


def _check_samples(samples: np.ndarray) -> None:
    assert samples.dtype == np.float32 and samples.ndim == 2, (samples.dtype, samples.shape)
    assert np.isfinite(samples).all(), "NaN or infinite samples returned"
    assert samples.size == 0 or float(np.abs(samples).max()) <= 1.0, "samples beyond [-1, 1]"


# ---------------------------------------------------------------------------- stream

_JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
_JSON_VALUES = st.recursive(
    _JSON_LEAVES,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


def _start_fields() -> st.SearchStrategy[dict[str, Any]]:
    """Start messages near the valid ones: every field right, wrong, missing or extra."""
    rates = st.sampled_from(SUPPORTED_SAMPLE_RATES) | st.sampled_from(
        [0, -16000, 7999, 10**30, "16000", 16000.0, 16000.5, True, None]
    )
    encodings = st.sampled_from(sorted(BYTES_PER_SAMPLE)) | st.sampled_from(["opus", "", None, 7])
    speakers = st.sampled_from(["customer", "agent", "caller", ""])
    # Unknown keys, named in the error (and so in the close reason), in any script.
    extra = st.dictionaries(st.text(max_size=80), _JSON_VALUES, max_size=2)
    known = st.fixed_dictionaries(
        {"type": st.sampled_from(["start", "start", "stop", "START", None])},
        optional={
            "sample_rate": rates,
            "encoding": encodings,
            "channels": st.lists(speakers, max_size=3) | _JSON_VALUES,
            "name": st.text(max_size=40) | _JSON_VALUES,
            "tags": st.lists(st.text(max_size=10), max_size=25) | _JSON_VALUES,
            "analyze_agent": st.booleans() | _JSON_VALUES,
            "smoothing_windows": st.integers(-3, 12) | _JSON_VALUES,
            "volume": _JSON_VALUES,
        },
    )
    return st.tuples(extra, known).map(lambda parts: {**parts[0], **parts[1]})


def _valid_start() -> st.SearchStrategy[dict[str, Any]]:
    """Start messages the server accepts, so that the frames after them get decoded."""
    return st.fixed_dictionaries(
        {
            "type": st.just("start"),
            "sample_rate": st.sampled_from(SUPPORTED_SAMPLE_RATES),
            "encoding": st.sampled_from(sorted(BYTES_PER_SAMPLE)),
        },
        optional={
            "channels": st.sampled_from(
                [["customer"], ["customer", "agent"], ["agent", "customer"]]
            ),
            "smoothing_windows": st.sampled_from([1, 3, 9]),
            "analyze_agent": st.booleans(),
        },
    )


def _json_text(values: st.SearchStrategy[Any]) -> st.SearchStrategy[str]:
    return values.map(lambda value: json.dumps(value))


_DEEP_JSON = st.integers(1, 100_000).map(lambda depth: "[" * depth + "]" * (depth % 3))
_TEXT_MESSAGES = st.one_of(
    _json_text(_start_fields()),
    _json_text(st.fixed_dictionaries({"type": st.sampled_from(["stop", "pause", "start"])})),
    _json_text(_JSON_VALUES),
    _DEEP_JSON,
    st.integers(4000, 6000).map(lambda digits: '{"type": "stop", "n": ' + "7" * digits + "}"),
    st.text(max_size=64),
)


@st.composite
def _frame(draw: st.DrawFn) -> bytes:
    # Mostly audio-like lengths (whole sample frames or one byte off), some anything.
    frames = draw(st.integers(0, 2000))
    sizes = [frames * 2, frames * 4, frames, frames * 2 + 1, frames * 4 + 2]
    size = draw(st.sampled_from([*sizes * 4, MAX_FRAME_BYTES + 1]))
    return (
        draw(st.binary(min_size=size, max_size=size))
        if size <= 64
        else bytes(draw(st.binary(min_size=16, max_size=16)) * (size // 16 + 1))[:size]
    )


@dataclass(frozen=True)
class StreamInput:
    """What a client sends: a first message (text or bytes), then frames (bytes or text)."""

    first: str | bytes
    messages: tuple[str | bytes, ...]
    stop: bool


def stream_inputs() -> st.SearchStrategy[StreamInput]:
    first = st.one_of(
        _json_text(_valid_start()),
        _json_text(_start_fields()),
        _TEXT_MESSAGES,
        st.binary(max_size=64),
    )
    messages = st.lists(st.one_of(_frame(), _frame(), _TEXT_MESSAGES), max_size=6)
    return st.builds(StreamInput, first, messages.map(tuple), st.booleans())


def check_stream(message: StreamInput) -> None:
    """The stream's parsers: start message, audio frames and control messages."""
    if isinstance(message.first, bytes):
        return  # the route refuses binary before start without parsing it
    try:
        start = parse_start(message.first)
    except StreamProtocolError as error:
        assert error.close_code in CLIENT_CLOSE_CODES, error.close_code
        return
    decoder = StreamDecoder(start)
    for item in message.messages:
        try:
            if isinstance(item, str):
                _parse_json(item).get("type")
                continue
            audio = decoder.decode(item)
        except StreamProtocolError:
            return  # the server closes the stream here
        assert set(audio) == set(start.channels), audio.keys()
        for samples in audio.values():
            assert samples.dtype == np.float32 and np.isfinite(samples).all()
    decoder.flush()


# ------------------------------------------------------------ Twilio Media Streams


def _twilio_media(track: str, chunk: Any, timestamp: Any, payload: Any) -> dict[str, Any]:
    return {
        "event": "media",
        "streamSid": "MZ1",
        "media": {"track": track, "chunk": chunk, "timestamp": timestamp, "payload": payload},
    }


_SEEDS = st.integers(0, 2**32)
# Hostile values and texts picked by the seeded generator: hypothesis' own recursive
# strategies cost most of an input's time, and the parser's type checks care about kinds.
_HOSTILE_VALUES = (
    None, True, False, 0, -1, 1, 10**20, 1.5, float("inf"), "", "1", "-1", "1e3", "٣",
    "9" * 40, "x" * 300, "\u0000", [], [1], ["inbound"], {}, {"a": {"b": [None]}},
    "audio/x-mulaw", "inbound", "outbound", "MZ1", "CA1", "==", "AAA",
)  # fmt: skip
_HOSTILE_TEXTS = (
    "", "null", "[]", "1", '"media"', "{", '{"event": null}', '{"event": "media"}',
    '{"event": "connected"}', "[" * 5000, '{"event": "stop", "n": ' + "7" * 5000 + "}",
    "x" * 70_000, '{"event": "media", "media": ' * 50, "\ud800", "é" * 40_000,
)  # fmt: skip


@st.composite
def _twilio_stream(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A stream as Twilio sends it: connected, start, media of one or both tracks with
    jittered, gapped or stalled timestamps, marks and DTMF, stop. The details come from a
    seeded random generator: a few draws per input keep the campaign fast."""
    tracks = draw(st.sampled_from([["inbound"], ["inbound", "outbound"], ["outbound", "inbound"]]))
    chosen = random.Random(draw(_SEEDS))
    parameters = {
        key: chosen.choice(["", "x", "a,b, c", "é" * 50, "t" * 150, ",".join("t" * 30), "\x00"])
        for key in chosen.sample(["token", "name", "tags", "agent", "queue"], chosen.randrange(4))
    }
    messages: list[dict[str, Any]] = [
        {"event": "connected", "protocol": "Call", "version": "1.0.0"},
        {
            "event": "start",
            "streamSid": "MZ1",
            "start": {
                "accountSid": "AC1",
                "streamSid": "MZ1",
                "callSid": "CA1",
                "tracks": tracks,
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                "customParameters": parameters,
            },
        },
    ]
    chunks = dict.fromkeys(tracks, 0)
    clocks = dict.fromkeys(tracks, 0)
    for _ in range(chosen.randrange(61)):
        track = chosen.choice(tracks)
        kind = chosen.choice(["media"] * 8 + ["mark", "dtmf"])
        if kind == "mark":
            messages.append({"event": "mark", "streamSid": "MZ1", "mark": {"name": "m"}})
            continue
        if kind == "dtmf":
            messages.append({"event": "dtmf", "streamSid": "MZ1",
                             "dtmf": {"track": "inbound_track", "digit": "5"}})  # fmt: skip
            continue
        chunks[track] += 1
        # 20 ms steps with jitter, gaps (lost audio, hold) and the odd jump of minutes.
        clocks[track] += chosen.choice([20, 20, 20, 19, 21, 0, 60, 400, 2500, 10**6])
        size = chosen.choice([160, 160, 0, 1, 80, 320, 4000])
        payload = base64.b64encode(bytes([chosen.randrange(256)]) * size).decode()
        messages.append(_twilio_media(track, str(chunks[track]), str(clocks[track]), payload))
    messages.append({"event": "stop", "streamSid": "MZ1",
                     "stop": {"accountSid": "AC1", "callSid": "CA1"}})  # fmt: skip
    for number, message in enumerate(messages[1:], start=1):
        message["sequenceNumber"] = str(number)
    return messages


@st.composite
def _twilio_edit(draw: st.DrawFn, messages: list[dict[str, Any]]) -> list[str]:
    """The stream as texts, with a few edits: a message dropped, repeated or moved, a field
    replaced by any JSON value, bad base64, garbage or an oversized message."""
    texts: list[Any] = list(messages)
    chosen = random.Random(draw(_SEEDS))
    for _ in range(chosen.randrange(4)):
        if not texts:
            break
        at = chosen.randrange(len(texts))
        edit = chosen.choice(["drop", "repeat", "move", "field", "inner", "base64", "text"])
        target = texts[at]
        if edit == "drop":
            del texts[at]
        elif edit == "repeat":
            texts.insert(at, target)
        elif edit == "move":
            texts.insert(chosen.randrange(len(texts)), texts.pop(at))
        elif edit == "text":
            texts[at] = chosen.choice(_HOSTILE_TEXTS)
        elif isinstance(target, dict):
            target = texts[at] = json.loads(json.dumps(target))
            inner = next((value for value in target.values() if isinstance(value, dict)), None)
            where = inner if edit in ("inner", "base64") and inner is not None else target
            key = chosen.choice(sorted(where) + ["extra"])
            where[key] = "no+base64!" if edit == "base64" else chosen.choice(_HOSTILE_VALUES)
    return [text if isinstance(text, str) else json.dumps(text) for text in texts]


def twilio_inputs() -> st.SearchStrategy[list[str]]:
    return _twilio_stream().flatmap(_twilio_edit)


def check_twilio(texts: list[str]) -> None:
    """Each message is taken or refused with a protocol close code; released audio is whole
    interleaved frames, and what is held back for alignment stays within its bound."""
    from callmood.service.routes.twilio import (
        MAX_SKEW_SECONDS,
        TIMESTAMP_TOLERANCE_MS,
        TwilioProtocol,
        stream_start,
    )

    protocol = TwilioProtocol()
    released = bytearray()
    bound = (MAX_SKEW_SECONDS * 8000 + 4000 + TIMESTAMP_TOLERANCE_MS * 8) * 2
    for text in texts:
        try:
            step = protocol.handle(text)
            if step.start is not None:
                stream_start(step.start)
        except StreamProtocolError as error:
            assert error.close_code in CLIENT_CLOSE_CODES, error.close_code
            assert str(error).startswith("Twilio stream: "), error
            break
        released += step.audio
        assert protocol.held_samples <= bound, protocol.held_samples
        if step.event == "stop":
            break
    released += protocol.finish()
    channels = max(1, len(protocol.tracks))
    assert len(released) % channels == 0, (len(released), channels)
    assert len(released) // channels == protocol.released, (len(released), protocol.released)
    assert protocol.held_samples == 0


# --------------------------------------------------------------------------- manifest

_CELL_VALUES = st.one_of(
    st.sampled_from(EMOTIONS),
    st.sampled_from(["", " ", "female", "male", "en", "nan", "inf", "-1", "0", "1e400", "3.5"]),
    st.sampled_from(["../../etc/passwd", "/dev/null", "a" * 300, "é/ü.wav", "x\x00y", "16000"]),
    st.integers().map(str),
    st.text(max_size=12),
)


_GOOD_CELLS = {
    "id": st.text(min_size=1, max_size=8),
    "corpus": st.sampled_from(["ravdess", "emodb"]),
    "path": st.sampled_from(["a.wav", "sub/b.flac", "/abs/c.wav", "../up.wav"]),
    "speaker": st.sampled_from(["ravdess:1", "emodb:03"]),
    "gender": st.sampled_from(["", "female", "male"]),
    "group": st.sampled_from(["g1", "g2"]),
    "label": st.sampled_from(EMOTIONS),
    "original_label": st.sampled_from(["05", "W"]),
    "valence": st.sampled_from(["", "2.5", "-0"]),
    "arousal": st.sampled_from(["", "1", "5.0"]),
    "dominance": st.sampled_from(["", "3"]),
    "duration_seconds": st.sampled_from(["1.5", "0.001", "3600"]),
    "sample_rate": st.sampled_from(["16000", "8000", " 44100 "]),
    "language": st.sampled_from(["en", "de", "und"]),
}


@st.composite
def _manifest_csv(draw: st.DrawFn) -> bytes:
    columns = list(COLUMNS)
    header = draw(
        st.one_of(
            st.just(columns),
            st.permutations(columns),
            st.lists(st.sampled_from(columns) | st.text(max_size=8), max_size=16),
        )
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for _ in range(draw(st.integers(0, 4))):
        width = draw(st.sampled_from([len(header)] * 4 + [len(header) + 1, 1]))
        # Right rows, rows with one bad cell, and rows of anything: a file of right rows
        # parses, and one bad cell is then what is tested.
        cells = [_GOOD_CELLS.get(column, _CELL_VALUES) for column in header]
        cells += [_CELL_VALUES] * (width - len(cells))
        mode = draw(st.sampled_from(["right", "right", "right", "one bad cell", "anything"]))
        if mode == "anything":
            cells = [st.one_of(cell, _CELL_VALUES) for cell in cells]
        elif mode == "one bad cell" and cells:
            cells[draw(st.integers(0, len(cells) - 1))] = _CELL_VALUES
        writer.writerow([draw(cell) for cell in cells[:width]])
    return buffer.getvalue().encode("utf-8", "surrogatepass")


def manifest_inputs() -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=256), _manifest_csv(), mutated(_manifest_csv()))


def check_manifest(data: bytes) -> None:
    path = _scratch_file(".csv")
    path.write_bytes(data)
    for check_files in (False, True):
        try:
            rows = read_manifest(path, check_files=check_files)
        except ManifestError:
            continue
        for row in rows:
            assert row.label in EMOTIONS and row.duration_seconds > 0 and row.sample_rate > 0
            assert Path(row.path).is_absolute(), row.path


# ---------------------------------------------------------------------- YAML documents


def _yaml_text(values: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    return values.map(lambda value: yaml.safe_dump(value, allow_unicode=True).encode())


_TRICKY_YAML = (
    st.sampled_from(
        [
            b"rules: !!python/object/apply:os.system [echo]\n",
            b"a: &a [x, x, x, x]\nb: &b [*a, *a, *a, *a]\nrules: [*b, *b, *b, *b]\n",
            b"rules:\n\t- kind: silence\n",
            b"? [1]\n: 2\n",
            b"\xef\xbb\xbfrules: []\n",
            b"\xff\xfe\x00\x00",
            b"%YAML 9.9\n---\nrules: []\n",
            b"rules: *undefined\n",
            b"--- a\n--- b\n",
        ]
    )
    | st.integers(1, 600).map(lambda depth: b"[" * depth)
    | st.integers(1, 600).map(lambda depth: b"- " * depth + b"x")
)


def _rule_dicts() -> st.SearchStrategy[dict[str, Any]]:
    numbers = st.one_of(
        st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 100), _JSON_VALUES
    )
    return st.fixed_dictionaries(
        {},
        optional={
            "name": st.text(max_size=10) | _JSON_VALUES,
            "kind": st.sampled_from(["sustained", "frequency", "shift", "loudness", "silence"])
            | _JSON_VALUES,
            "speaker": st.sampled_from(["customer", "agent", "any", "mixed"]) | _JSON_VALUES,
            "severity": st.sampled_from(["info", "warning", "critical", "fatal"]),
            "emotion": st.sampled_from([*EMOTIONS, "negativity", "joy"]) | _JSON_VALUES,
            "threshold": numbers,
            "min_seconds": numbers,
            "min_windows": numbers,
            "within_seconds": numbers,
            "rise": numbers,
            "part_seconds": numbers,
            "peak_dbfs": numbers,
            "cooldown_seconds": numbers,
            "message": st.text(max_size=20) | _JSON_VALUES,
        },
    )


def _valid_rule() -> st.SearchStrategy[dict[str, Any]]:
    """Rules the validator accepts, with extreme but legal values (for the round trip)."""
    positive = st.floats(min_value=1e-300, max_value=1e300) | st.integers(1, 10**6)
    fraction = st.floats(min_value=0.0, max_value=1.0)
    name = st.text(min_size=1, max_size=12)
    common = {
        "speaker": st.sampled_from(["customer", "agent", "any"]),
        "severity": st.sampled_from(["info", "warning", "critical"]),
        "cooldown_seconds": st.floats(min_value=0, max_value=1e300),
        "message": st.none() | st.text(max_size=30),
    }
    emotion = st.sampled_from([*EMOTIONS, "negativity"])
    kinds = {
        "sustained": {"emotion": emotion, "threshold": fraction, "min_seconds": positive},
        "frequency": {
            "emotion": emotion,
            "threshold": fraction,
            "min_windows": st.integers(1, 10**9),
            "within_seconds": positive,
        },
        "shift": {
            "rise": st.floats(min_value=1e-9, max_value=1.0),
            "part_seconds": positive,
            "min_windows": st.integers(1, 100),
        },
        "loudness": {"peak_dbfs": st.floats(max_value=0.0, allow_infinity=False)},
        "silence": {"min_seconds": positive},
    }
    return st.one_of(
        st.fixed_dictionaries({"kind": st.just(kind), "name": name, **fields}, optional=common)
        for kind, fields in kinds.items()
    )


def rules_inputs() -> st.SearchStrategy[bytes]:
    documents = st.one_of(
        st.fixed_dictionaries({"rules": st.lists(_valid_rule(), max_size=4)}),
        st.fixed_dictionaries({"rules": st.lists(_valid_rule() | _rule_dicts(), max_size=4)}),
        st.lists(_rule_dicts(), max_size=3),
        _JSON_VALUES,
    )
    return st.one_of(
        _yaml_text(documents), mutated(_yaml_text(documents)), _TRICKY_YAML, st.binary(max_size=64)
    )


def check_rules(data: bytes) -> None:
    """A rules file reads as a RuleSet or a RulesError; a RuleSet survives the service's
    own round trip (it stores replaced rules with `to_yaml` and reads them back)."""
    from callmood.service.rules_store import to_yaml

    path = _scratch_file(".yaml")
    path.write_bytes(data)
    try:
        rules = RuleSet.from_yaml(path)
    except RulesError:
        return
    path.write_text(to_yaml(rules), encoding="utf-8")
    again = RuleSet.from_yaml(path)
    assert again.model_dump() == rules.model_dump(), "rules change on a round trip"


def _config_dicts() -> st.SearchStrategy[dict[str, Any]]:
    section = st.dictionaries(
        st.sampled_from(["learning_rate", "kind", "patience", "fraction", "probability", "x"]),
        _JSON_VALUES,
        max_size=3,
    )
    paths = st.sampled_from(["", "~nosuchuser/x", "$HOME/x", "a\x00b", "../../etc", "p" * 5000])
    return st.fixed_dictionaries(
        {},
        optional={
            "manifests": st.lists(paths | st.text(max_size=10), max_size=2) | _JSON_VALUES,
            "corpora": st.lists(
                st.fixed_dictionaries(
                    {"name": st.sampled_from(["ravdess", "emodb", "nope"]), "path": paths}
                ),
                max_size=2,
            )
            | _JSON_VALUES,
            "label_set": st.sampled_from(["iemocap4", "ekman6", "none"]) | _JSON_VALUES,
            "classes": st.lists(st.sampled_from([*EMOTIONS, "x"]), max_size=4) | _JSON_VALUES,
            "features": st.dictionaries(
                st.sampled_from(["n_mels", "n_mfcc", "kind", "hop_ms", "sample_rate", "x"]),
                _JSON_VALUES,
                max_size=3,
            ),
            "model": st.dictionaries(st.text(max_size=8), _JSON_VALUES, max_size=3),
            "optimizer": section | _JSON_VALUES,
            "schedule": section,
            "early_stopping": section,
            "validation": section,
            "augmentation": st.dictionaries(
                st.sampled_from(["noise", "gain", "speed", "mixup_alpha", "waveform_fraction"]),
                section | _JSON_VALUES,
                max_size=3,
            ),
            "epochs": _JSON_VALUES,
            "batch_size": _JSON_VALUES,
            "crop_seconds": _JSON_VALUES,
            "num_threads": _JSON_VALUES,
            "model_card": paths | _JSON_VALUES,
        },
    )


def _valid_config() -> st.SearchStrategy[dict[str, Any]]:
    """Configs the validator accepts, with feature settings that may or may not fit."""
    return st.fixed_dictionaries(
        {"manifests": st.just(["manifest.csv"])},
        optional={
            "label_set": st.sampled_from(["iemocap4", "ravdess8", "emodb7"]),
            "features": st.fixed_dictionaries(
                {},
                optional={
                    "kind": st.sampled_from(["mfcc", "logmel", "spectrogram"]),
                    "n_mels": st.integers(-1, 300),
                    "n_mfcc": st.integers(-1, 300),
                    "sample_rate": st.sampled_from([8000, 16000, 0]),
                    "fmax": st.none() | st.floats(allow_nan=True),
                    "hop_seconds": st.floats(allow_nan=True, allow_infinity=True),
                },
            ),
            "epochs": st.integers(1, 10**12),
            "batch_size": st.integers(2, 512),
            "crop_seconds": st.floats(min_value=1e-6, max_value=1e6),
            "trim_silence_db": st.none() | st.floats(min_value=1e-3, max_value=200),
            "num_threads": st.none() | st.integers(1, 64),
        },
    )


def config_inputs() -> st.SearchStrategy[bytes]:
    documents = _valid_config() | _config_dicts() | _JSON_VALUES
    return st.one_of(
        _yaml_text(documents), mutated(_yaml_text(documents)), _TRICKY_YAML, st.binary(max_size=64)
    )


def check_config(data: bytes) -> None:
    path = _scratch_file(".yaml")
    path.write_bytes(data)
    for check_paths in (False, True):
        try:
            config = load_training_config(path, check_paths=check_paths)
            config.feature_config()
        except TrainingConfigError:
            continue


# ---------------------------------------------------------------------------- uploads

BOUNDARY = b"fuzz-boundary-7f3a"


@st.composite
def _multipart_body(draw: st.DrawFn) -> bytes:
    parts = []
    names = st.sampled_from(["file", "name", "tags", "customer_channel", "mono", "x", ""])
    for _ in range(draw(st.integers(0, 4))):
        name = draw(names | st.text(max_size=8))
        filename = draw(
            st.none()
            | st.sampled_from(["call.wav", "../../etc/passwd", "..", "", "a/b\\c.flac", "é.mp3"])
            | st.text(max_size=12)
        )
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        headers = f"Content-Disposition: {disposition}\r\n"
        if draw(st.booleans()):
            headers += "Content-Type: audio/wav\r\n"
        payload = draw(
            st.sampled_from(audio_seeds()[:2])
            | st.sampled_from(["0", "1", "true", "left", "a,b", "-1", "99"]).map(str.encode)
            | st.binary(max_size=64)
        )
        part = b"--" + BOUNDARY + b"\r\n" + headers.encode("utf-8", "surrogatepass")
        parts.append(part + b"\r\n" + payload + b"\r\n")
    return b"".join(parts) + b"--" + BOUNDARY + b"--\r\n"


@dataclass(frozen=True)
class UploadInput:
    """An HTTP upload: its Content-Type header, its body, and the chunks it arrives in."""

    content_type: str
    body: bytes
    chunk_size: int
    content_length: str | None = None


def upload_inputs() -> st.SearchStrategy[UploadInput]:
    boundary = BOUNDARY.decode()
    content_types = st.sampled_from(
        [
            f"multipart/form-data; boundary={boundary}",
            f"multipart/form-data; boundary={boundary}",
            f'multipart/form-data; boundary="{boundary}"',
            "multipart/form-data",
            "multipart/form-data; boundary=other",
            "application/json",
            "",
        ]
    ) | st.text(st.characters(codec="ascii", exclude_categories=["Cc"]), max_size=40)
    bodies = st.one_of(_multipart_body(), mutated(_multipart_body()), st.binary(max_size=128))
    # A Content-Length only where the parser reads the raw header (through the app, the
    # HTTP client writes the true one).
    lengths = st.none() | st.sampled_from(["0", "-1", "²", "99999999999999", "1e9", " 7"])
    return st.builds(UploadInput, content_types, bodies, st.integers(1, 4096), lengths)


def check_upload(upload: UploadInput) -> None:
    """The streaming multipart reader: a saved file or an UploadError, and never a file
    left behind when it refuses."""
    directory = Path(_scratch_dir()) / "uploads"
    chunks = [
        upload.body[start : start + upload.chunk_size]
        for start in range(0, len(upload.body), upload.chunk_size)
    ] or [b""]
    headers = {"content-type": upload.content_type}
    if upload.content_length is not None:
        headers["content-length"] = upload.content_length
    request, _ = request_from_chunks(chunks, headers=headers)
    try:
        received = asyncio.run(receive_upload(request, directory, UPLOAD_LIMIT_BYTES))
    except UploadError as error:
        assert 400 <= error.status_code < 500, error.status_code
        assert not any(directory.glob(".upload-*")), "a refused upload left its file"
        return
    assert received.path.stat().st_size == received.size_bytes > 0
    assert isinstance(received.filename, str) and "/" not in received.filename
    received.discard()


# ------------------------------------------------------------------- Asterisk AudioSocket


def _audiosocket_message(kind: int, payload: bytes) -> bytes:
    return bytes([kind]) + len(payload).to_bytes(2, "big") + payload


@st.composite
def _audiosocket_messages(draw: st.DrawFn) -> bytes:
    # Mostly what Asterisk sends (the UUID, 20 ms slin packets, DTMF, the end), with
    # every kind, odd and extreme lengths and wrong orders mixed in.
    samples = draw(st.sampled_from([0, 1, 80, 160, 320, 8000, 8001, 32767]))
    audio = bytes(draw(st.binary(min_size=2, max_size=2)) * samples)
    pieces = [
        _audiosocket_message(0x01, draw(st.binary(min_size=16, max_size=16))),
        _audiosocket_message(draw(st.sampled_from(sorted(AUDIO_KINDS))), audio),
        _audiosocket_message(0x10, audio + draw(st.binary(max_size=1))),
        _audiosocket_message(0x03, draw(st.binary(min_size=1, max_size=2))),
        _audiosocket_message(0xFF, draw(st.binary(max_size=3))),
        _audiosocket_message(0x00, b""),
        _audiosocket_message(draw(st.integers(0, 255)), draw(st.binary(max_size=32))),
        draw(st.binary(max_size=5)),
    ]
    body = draw(st.lists(st.sampled_from(pieces[1:]), max_size=8))
    first = pieces[0] if draw(st.integers(0, 9)) else draw(st.sampled_from(pieces))
    return first + b"".join(body)


@dataclass(frozen=True)
class AudioSocketInput:
    """The bytes a client sends, and where TCP splits them into reads."""

    data: bytes
    cuts: tuple[int, ...]


def audiosocket_inputs() -> st.SearchStrategy[AudioSocketInput]:
    streams = _audiosocket_messages()
    data = st.one_of(streams, mutated(streams), st.binary(max_size=64))
    cuts = st.lists(st.integers(0, 70_000), max_size=6).map(lambda cuts: tuple(sorted(cuts)))
    return st.builds(AudioSocketInput, data, cuts)


def check_audiosocket(value: AudioSocketInput) -> None:
    """The AudioSocket parser: messages the live session takes, or its own error."""
    parser = AudioSocketParser()
    bounds = [0, *[cut for cut in value.cuts if cut < len(value.data)], len(value.data)]
    decoder = None
    messages = []
    try:
        for start, end in zip(bounds, bounds[1:], strict=False):
            for message in parser.feed(value.data[start:end]):
                messages.append(message)
                if isinstance(message, Audio):
                    # What the listener feeds the session: it must decode, never raise.
                    if decoder is None:
                        decoder = StreamDecoder(
                            StreamStart(type="start", sample_rate=message.sample_rate,
                                        encoding="pcm16")
                        )  # fmt: skip
                    assert message.sample_rate == decoder.start.sample_rate
                    audio = decoder.decode(message.payload)["customer"]
                    assert audio.dtype == np.float32 and np.isfinite(audio).all()
        parser.end_of_stream()
    except AudioSocketProtocolError as error:
        assert str(error)
        return
    if messages:
        assert isinstance(messages[0], Identified), messages[0]
        assert sum(isinstance(message, Identified) for message in messages) == 1
        assert all(not isinstance(m, Hangup | AsteriskError) for m in messages[:-1])


# ----------------------------------------------------------------- through the real app


@contextmanager
def service_client(data_dir: Path) -> Iterator[Any]:
    """The real app (SQLite, the bundled model, job workers running) behind a TestClient."""
    from fastapi.testclient import TestClient

    from callmood.service.app import create_app
    from callmood.settings import load_settings

    settings = load_settings(
        data_dir=data_dir, auth_token=TOKEN, workers=1, max_upload_mb=UPLOAD_LIMIT_BYTES / 1e6
    )
    with TestClient(create_app(settings)) as client:
        yield client


def check_upload_app(client: Any, upload: UploadInput) -> None:
    """POST /api/calls: 202 with a job, or a 4xx with a JSON detail; nothing left over."""
    response = client.post(
        "/api/calls", content=upload.body, headers={**AUTH, "content-type": upload.content_type}
    )
    assert response.status_code < 500, (response.status_code, response.text[:300])
    body = response.json()
    if response.status_code == 202:
        assert body["state"] == "queued", body
        client.app.state.jobs.wait(body["job_id"], timeout_seconds=120)
    else:
        assert 400 <= response.status_code < 500 and isinstance(body["detail"], str), body
    incoming = client.app.state.settings.resolved_audio_dir / "incoming"
    assert not any(incoming.glob(".upload-*")), "an upload left its temporary file"


def check_stream_app(client: Any, message: StreamInput) -> None:
    """/api/stream: every answer is a protocol message; it ends normally or with a close
    code for the client's mistake (1003, 1008, 1009) and a reason, never 1011."""
    from starlette.websockets import WebSocketDisconnect

    received: list[dict[str, Any]] = []
    with client.websocket_connect(f"/api/stream?token={TOKEN}") as websocket:
        sends: list[str | bytes] = [message.first, *message.messages]
        if message.stop:
            sends.append('{"type": "stop"}')
        for item in sends:
            if isinstance(item, bytes):
                websocket.send_bytes(item)
            else:
                websocket.send_text(item)
        if not message.stop:
            return  # the client hangs up: the server stores what it got, marked partial
        try:
            while True:
                received.append(websocket.receive_json())
        except WebSocketDisconnect as closed:
            code, reason = closed.code, closed.reason
    kinds = [item.get("type") for item in received]
    assert set(kinds) <= {"ready", "window", "alert", "summary", "error"}, kinds
    assert code != 1011, f"server error: {received[-1:]}"
    assert code in CLIENT_CLOSE_CODES, code
    if code != 1000:
        assert reason and kinds[-1] == "error", (code, reason, kinds)
        # A longer reason does not fit a close frame: a real server drops the connection.
        assert len(reason.encode("utf-8")) <= MAX_CLOSE_REASON_BYTES, reason
    else:
        assert kinds[-1] == "summary", kinds


# -------------------------------------------------------------------------- audiohook

_SESSION_ID = "30b0e395-84d3-4570-ac13-9a62d8f514c0"
_DOC_SIGNATURE_INPUT = (
    'sig1=("@request-target" "@authority" "audiohook-organization-id" "audiohook-session-id" '
    '"audiohook-correlation-id" "x-api-key");keyid="SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh";'
    'nonce="VGhpc0lzQVVuaXF1ZU5vbmNl";alg="hmac-sha256";created=1641013200;expires=3282026430'
)
_DOC_SIGNATURE = "sig1=:NZBwyBHRRyRoeLqy1IzOa9VYBuI8TgMFt2GRDkDuJh4=:"
_DURATIONS = st.sampled_from(
    ["PT0S", "PT1.5S", "PT.5S", "PT12.340S", "PT1e9S", "P1S", "PT-1S", "PT" + "9" * 39 + "S", ""]
) | st.floats(0, 1e6).map(lambda seconds: f"PT{seconds}S")
_MEDIA = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["audio", "video"]),
        "format": st.sampled_from(["PCMU", "L16", "opus"]),
        "channels": st.lists(st.sampled_from(["external", "internal", "both"]), max_size=3),
        "rate": st.sampled_from([8000, 16000, "8000", 8000.0]),
    },
)
_PARAMETERS = {
    "open": st.fixed_dictionaries(
        {
            "organizationId": st.sampled_from([_SESSION_ID, "not-a-uuid"]),
            "conversationId": st.sampled_from([_SESSION_ID, "not-a-uuid"]),
            "participant": st.fixed_dictionaries(
                {"id": st.just(_SESSION_ID), "ani": st.text(max_size=8)},
                optional={"aniName": st.text(max_size=8), "dnis": _JSON_LEAVES},
            ),
            "media": st.lists(_MEDIA, max_size=4) | _JSON_VALUES,
        },
        optional={"language": st.sampled_from(["en-US", "EN", 3]), "customConfig": _JSON_VALUES},
    ),
    "close": st.fixed_dictionaries({"reason": st.sampled_from(["end", "error", "bored", None])}),
    "ping": st.fixed_dictionaries({}, optional={"rtt": _DURATIONS}),
    "resumed": st.fixed_dictionaries({"start": _DURATIONS, "discarded": _DURATIONS}),
    "discarded": st.fixed_dictionaries({"start": _DURATIONS, "discarded": _DURATIONS}),
    "update": st.fixed_dictionaries({"language": st.sampled_from(["fr-FR", "x", None])}),
    "error": st.fixed_dictionaries({"code": st.integers(0, 20000), "message": _JSON_LEAVES}),
    "dtmf": st.fixed_dictionaries({"digit": st.sampled_from(["1", "#", "A", "12", 1])}),
}


_AUDIOHOOK_KINDS = st.sampled_from([*_PARAMETERS, "paused", "bogus", 7])
_ANY_PARAMETERS = {kind: values | _JSON_VALUES for kind, values in _PARAMETERS.items()}
# Mostly the next seq (the offset 0), sometimes a gap, a repeat or a wrong type.
_SEQ_OFFSETS = st.sampled_from([0] * 6 + [1, -1, 2**60, 1.0, True, "1"])
_ENVELOPE = {
    "version": st.sampled_from(["2"] * 6 + ["1", 2]),
    "id": st.sampled_from([_SESSION_ID] * 6 + ["nope"]),
    "serverseq": st.sampled_from([0] * 6 + [-1, 3]),
    "position": _DURATIONS,
}
_PRESENT = st.integers(0, 15)  # each envelope field present 15 times in 16


@st.composite
def _audiohook_messages(draw: st.DrawFn) -> tuple[str, ...]:
    # Mostly well-formed envelopes with the next seq, so that the parameters and the
    # session's order get exercised; sometimes any field wrong or missing. The strategies
    # are built once: building them per draw costs hypothesis most of its time.
    messages = []
    for index in range(draw(st.integers(0, 8))):
        if not draw(st.integers(0, 7)):
            messages.append(draw(_TEXT_MESSAGES))
            continue
        kind = draw(_AUDIOHOOK_KINDS)
        message: dict[str, Any] = {"type": kind}
        for field, values in _ENVELOPE.items():
            if draw(_PRESENT):
                message[field] = draw(values)
        if draw(_PRESENT):
            offset = draw(_SEQ_OFFSETS)
            message["seq"] = index + 1 + offset if type(offset) is int else offset
        if draw(_PRESENT):
            message["parameters"] = draw(_ANY_PARAMETERS.get(kind, _JSON_VALUES))
        messages.append(json.dumps(message))
    return tuple(messages)


@dataclass(frozen=True)
class AudioHookInput:
    """Client text messages in order, and the two signature headers of the request."""

    messages: tuple[str, ...]
    signature_input: str
    signature: str


def _header_text(seed: str) -> st.SearchStrategy[str]:
    return st.one_of(
        st.just(seed),
        mutated(st.just(seed.encode()), max_mutations=3).map(lambda data: data.decode("latin-1")),
        st.text(max_size=80),
    )


def audiohook_inputs() -> st.SearchStrategy[AudioHookInput]:
    return st.builds(
        AudioHookInput,
        _audiohook_messages(),
        _header_text(_DOC_SIGNATURE_INPUT),
        _header_text(_DOC_SIGNATURE),
    )


def check_audiohook(value: AudioHookInput) -> None:
    """The AudioHook parsers: client messages with the sequence and position checks, the
    media choice, and the signature headers. Each accepts or raises its own error."""
    from types import SimpleNamespace

    from callmood.service.routes.audiohook import (
        AudioHookConnection,
        AudioHookProtocolError,
        AudioHookUnauthorized,
        choose_media,
        verify_signature,
    )

    connection = AudioHookConnection(SimpleNamespace(headers={}))
    for text in value.messages:
        try:
            message = connection.accept_message(text)
        except AudioHookProtocolError:
            break  # the server disconnects here
        assert message.position >= 0 and message.seq == connection.clientseq
        if message.type == "open":
            chosen = choose_media(message.parameters["media"])
            assert chosen is None or chosen in message.parameters["media"]
    headers = {
        "host": "audiohook.example.com",
        "audiohook-organization-id": "d7934305-0972-4844-938e-9060eef73d05",
        "audiohook-session-id": _SESSION_ID,
        "audiohook-correlation-id": "e160e428-53e2-487c-977d-96989bf5c99d",
        "x-api-key": "SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh",
        "signature-input": value.signature_input,
        "signature": value.signature,
    }
    try:
        verify_signature(
            headers, request_target="/api/v1/voicebiometrics/ws", client_secret=b"k", now=1641013201
        )
    except AudioHookUnauthorized:
        return
    raise AssertionError("a signature verified with the wrong client secret")


# ------------------------------------------------------------------------- the targets


@dataclass(frozen=True)
class Target:
    """A strategy of inputs and the property they must satisfy."""

    name: str
    inputs: Callable[[], st.SearchStrategy[Any]]
    check: Callable[..., None]
    needs_app: bool = False


TARGETS: dict[str, Target] = {
    target.name: target
    for target in [
        Target("audio", audio_inputs, check_audio),
        Target("stream", stream_inputs, check_stream),
        Target("stream-app", stream_inputs, check_stream_app, needs_app=True),
        Target("twilio", twilio_inputs, check_twilio),
        Target("audiosocket", audiosocket_inputs, check_audiosocket),
        Target("manifest", manifest_inputs, check_manifest),
        Target("rules", rules_inputs, check_rules),
        Target("config", config_inputs, check_config),
        Target("upload", upload_inputs, check_upload),
        Target("upload-app", upload_inputs, check_upload_app, needs_app=True),
        Target("audiohook", audiohook_inputs, check_audiohook),
    ]
}
