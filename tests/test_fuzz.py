"""Property tests of every parser that takes outside bytes (audio files, the live stream,
manifests, alert rules, training configs, uploads), directly and through the real app.

A short, derandomised run of the targets in fuzz_targets.py; scripts/fuzz.py runs the same
properties for hours. Inputs that once broke a parser are kept below as regression tests.
"""

from __future__ import annotations

import io
import json
import struct

import numpy as np
import pytest
import soundfile
from conftest import require
from fuzz_targets import (
    TARGETS,
    TOKEN,
    UPLOAD_LIMIT_BYTES,
    StreamInput,
    UploadInput,
    check_audio,
    check_config,
    check_stream,
    check_upload,
    service_client,
)
from hypothesis import given, settings

# soundfile reading bytes: libsndfile asks its Python seek callback for offset -1 on some
# damaged files; BytesIO refuses, and cffi reports and swallows that. The property still
# holds (sane audio or an AudioError): the report is noise.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored from cffi callback <function SoundFile._init_virtual_io"
    ":pytest.PytestUnraisableExceptionWarning"
)

# Examples per target in `make test`: the file takes 30-80 s on the shared 2-core machine.
EXAMPLES = {
    "audio": 100,
    "stream": 200,
    "stream-app": 25,
    "twilio": 200,
    "audiosocket": 300,
    "manifest": 150,
    "rules": 100,
    "config": 100,
    "upload": 150,
    "upload-app": 25,
    "audiohook": 200,
}


def _property_test(name: str):
    target = TARGETS[name]

    @settings(settings.get_profile("fuzz-test"), max_examples=EXAMPLES[name])
    @given(value=target.inputs())
    def test(value):
        target.check(value)

    return test


test_audio_decoding_never_crashes = _property_test("audio")
test_stream_parsing_never_crashes = _property_test("stream")
test_twilio_parsing_never_crashes = _property_test("twilio")
test_audiosocket_parsing_never_crashes = _property_test("audiosocket")
test_manifest_reading_never_crashes = _property_test("manifest")
test_rules_reading_never_crashes = _property_test("rules")
test_training_config_reading_never_crashes = _property_test("config")
test_upload_reading_never_crashes = _property_test("upload")
test_audiohook_parsing_never_crashes = _property_test("audiohook")


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from callmood.inference import default_model_dir

    # Valid start messages get a `ready`: the stream loads the model.
    require((default_model_dir() / "model.json").is_file(), "no bundled model")
    with service_client(tmp_path_factory.mktemp("fuzz-service")) as test_client:
        yield test_client


def _app_property_test(name: str):
    target = TARGETS[name]

    def test(client):
        @settings(settings.get_profile("fuzz-test"), max_examples=EXAMPLES[name])
        @given(value=target.inputs())
        def run(value):
            target.check(client, value)

        run()

    return test


test_stream_route_answers_every_input_with_a_protocol_close = _app_property_test("stream-app")
test_upload_route_answers_every_input_with_a_4xx_or_202 = _app_property_test("upload-app")


# ------------------------------------------------------- inputs that once broke a parser


def _wav(*, sample_rate: int = 16000, bits: int = 16, frames: int = 1600) -> bytes:
    """A mono PCM WAV whose header fields may lie (bits 0, absurd rates)."""
    block = max(1, bits // 8)
    fmt = struct.pack("<HHIIHH", 1, 1, sample_rate, sample_rate * block, block, bits)
    data = b"\x00\x01" * frames
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _flac_claiming_frames(total: int) -> bytes:
    """A real 0.1 s FLAC whose STREAMINFO claims `total` frames (36 bits)."""
    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros(1600, np.float32), 16000, format="FLAC")
    data = bytearray(buffer.getvalue())
    fields = int.from_bytes(data[18:26], "big") & ~(2**36 - 1) | total
    data[18:26] = fields.to_bytes(8, "big")
    return bytes(data)


@pytest.mark.parametrize(
    ("data", "error", "named"),
    [
        # PyAV opened it with no codec context: AttributeError on None.
        (_wav(bits=0), "CorruptAudioError", "unknown codec"),
        # load_audio allocated the claimed 256 GiB at once: MemoryError.
        (_flac_claiming_frames(2**36 - 1), "CorruptAudioError", "damaged or truncated"),
        # 1 Hz would be resampled 16000-fold (3 MB to 100 GB of samples): MemoryError.
        (_wav(sample_rate=1), "CorruptAudioError", "sample rate of 1 Hz"),
        (_wav(sample_rate=2**31 - 1), "CorruptAudioError", "2147483647 Hz"),
    ],
    ids=["bits-0", "flac-claims-2**36-frames", "rate-1-hz", "rate-2**31-hz"],
)
def test_hostile_audio_headers_are_refused_as_audio_errors(data, error, named):
    from callmood.audio import AudioError, load_audio

    with pytest.raises(AudioError) as refused:
        load_audio(data)
    assert type(refused.value).__name__ == error
    assert named in str(refused.value)
    check_audio(data)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[" * 100_000, "nested too deeply"),  # RecursionError
        ('{"type": "start", "sample_rate": ' + "1" * 5000 + "}", "a number too long"),  # ValueError
    ],
    ids=["nested", "5000-digits"],
)
def test_json_the_parser_refuses_is_a_protocol_error(text, named):
    from callmood.service.routes.stream import StreamProtocolError, parse_start

    with pytest.raises(StreamProtocolError, match=named):
        parse_start(text)
    check_stream(StreamInput(first=text, messages=(), stop=True))
    check_stream(
        StreamInput(
            first=json.dumps({"type": "start", "sample_rate": 16000, "encoding": "pcm16"}),
            messages=(text,),
            stop=True,
        )
    )


def test_stream_route_closes_1008_on_json_it_cannot_read(client):
    # These closed with 1011 "internal error" before.
    for text in ("[" * 100_000, '{"type": "start", "n": ' + "1" * 5000 + "}"):
        TARGETS["stream-app"].check(client, StreamInput(first=text, messages=(), stop=True))


@pytest.mark.parametrize(
    ("document", "named"),
    [(b"[" * 1500, "nests deeper than 64"), (b"- " * 1500 + b"x", "nests deeper than 64")],
    ids=["flow", "block"],
)
def test_deeply_nested_yaml_is_a_rules_and_config_error(tmp_path, document, named):
    from callmood.alerts import RulesError, RuleSet
    from callmood.training.config import TrainingConfigError, load_training_config

    path = tmp_path / "deep.yaml"
    path.write_bytes(document)
    with pytest.raises(RulesError, match=named):
        RuleSet.from_yaml(path)
    with pytest.raises(TrainingConfigError, match=named):
        load_training_config(path)


def test_rules_route_refuses_deeply_nested_json_with_422(client):
    response = client.put(
        "/api/rules",
        content=b"[" * 100_000,
        headers={
            "Authorization": "Bearer fuzz-token-0123456789",
            "content-type": "application/json",
        },
    )
    assert response.status_code == 422
    assert "nested too deeply" in response.json()["detail"]


@pytest.mark.parametrize(
    ("path", "named"),
    [
        ("a\x00b", "embedded null byte"),  # ValueError from Path.resolve
        ("~no-such-user-here/x", "home directory"),  # RuntimeError from expanduser
        ("p" * 5000, "manifest not found"),  # OSError (name too long) from is_file
    ],
    ids=["nul", "unknown-user", "too-long"],
)
def test_unusable_paths_in_a_training_config_are_config_errors(tmp_path, path, named):
    from callmood.training.config import TrainingConfigError, load_training_config

    config = tmp_path / "train.yaml"
    config.write_text(json.dumps({"manifests": [path]}))
    with pytest.raises(TrainingConfigError, match=named):
        load_training_config(config)


def test_manifest_audio_path_too_long_for_the_file_system_is_a_missing_file(tmp_path):
    from callmood.manifest import COLUMNS, ManifestError, read_manifest

    values = {column: "1" for column in COLUMNS}
    values.update(label="angry", gender="", path="c" * 5000, language="en")
    manifest = tmp_path / "m.csv"
    manifest.write_text(",".join(COLUMNS) + "\n" + ",".join(values[c] for c in COLUMNS) + "\n")
    with pytest.raises(ManifestError, match="not found"):  # OSError before
        read_manifest(manifest)


def test_oversized_upload_through_the_app_is_413_and_leaves_nothing(client):
    body = (
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n\r\n'
        + b"\x00" * (UPLOAD_LIMIT_BYTES + 1)
        + b"\r\n--b--\r\n"
    )
    upload = UploadInput(content_type="multipart/form-data; boundary=b", body=body, chunk_size=1)
    TARGETS["upload-app"].check(client, upload)


def test_close_reason_fits_a_close_frame_on_a_real_server(tmp_path):
    # 100 accented characters in an unknown key: the reason was 240 bytes, and uvicorn
    # dropped the connection without a close frame (the client saw 1006, no reason).
    import asyncio

    import websockets
    from service_support import serving

    from callmood.service.app import create_app
    from callmood.settings import load_settings

    start = {"type": "start", "sample_rate": 16000, "encoding": "pcm16", "é" * 100: 1}
    app = create_app(load_settings(data_dir=tmp_path, auth_token=TOKEN, workers=1))

    async def close_frame(port: int):
        url = f"ws://127.0.0.1:{port}/api/stream?token={TOKEN}"
        async with websockets.connect(url) as websocket:
            await websocket.send(json.dumps(start, ensure_ascii=False))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    await websocket.recv()
        return closed.value.rcvd

    with serving(app) as port:
        frame = asyncio.run(close_frame(port))
    assert frame is not None and frame.code == 1008
    assert frame.reason.startswith("invalid start message: éé")
    assert len(frame.reason.encode("utf-8")) <= 123


def test_content_length_of_a_non_ascii_digit_is_not_a_crash(tmp_path):
    # "²" is a digit to str.isdigit but not to int(): ValueError (a 500) before.
    check_upload(
        UploadInput(
            content_type="multipart/form-data; boundary=b",
            body=b'--b\r\nContent-Disposition: form-data; name="file"\r\n\r\nx\r\n--b--\r\n',
            chunk_size=7,
            content_length="\N{SUPERSCRIPT TWO}",
        )
    )


def test_cookie_stream_from_an_unreadable_origin_is_refused_1008(client):
    # urlsplit("http://[") raises ValueError: the stream closed 1011 before.
    from starlette.websockets import WebSocketDisconnect

    assert client.post("/api/auth/login", json={"token": TOKEN}).status_code == 200
    try:
        with client.websocket_connect("/api/stream", headers={"origin": "http://["}) as ws:
            assert ws.receive_json()["type"] == "error"
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
    finally:
        client.post("/api/auth/logout")
        client.cookies.clear()
    assert closed.value.code == 1008
    assert "only accepted from this server's pages" in closed.value.reason


def test_hop_longer_than_any_number_of_samples_is_a_config_error(tmp_path):
    # Found by scripts/fuzz.py config: 1e308 s times 16000 Hz is inf, and round() raised
    # OverflowError out of TrainingConfig.feature_config().
    from callmood.training.config import TrainingConfigError, load_training_config

    document = b"features:\n  hop_seconds: 1.0170942553011735e+308\nmanifests:\n- manifest.csv\n"
    path = tmp_path / "train.yaml"
    path.write_bytes(document)
    config = load_training_config(path, check_paths=False)
    with pytest.raises(TrainingConfigError, match="must be finite"):
        config.feature_config()
    check_config(document)


@pytest.mark.parametrize(
    "document",
    [b'rules:\n- "\\U100667E1"\n', b'rules:\n- "\\U8010A5A8"\n', b"rules: " + b"1" * 5000 + b"\n"],
    ids=["escape-past-U+10FFFF", "escape-past-C-int", "5000-digit-integer"],
)
def test_yaml_that_pyyaml_fails_on_with_valueerror_is_a_rules_and_config_error(tmp_path, document):
    # Found by scripts/fuzz.py rules: PyYAML's scanner calls chr(0x100667E1) and raises
    # ValueError (chr(0x8010A5A8): OverflowError), which escaped RuleSet.from_yaml.
    from callmood.alerts import RulesError, RuleSet
    from callmood.settings import SettingsError, load_settings
    from callmood.training.config import TrainingConfigError, load_training_config

    path = tmp_path / "document.yaml"
    path.write_bytes(document)
    with pytest.raises(RulesError, match="not valid YAML"):
        RuleSet.from_yaml(path)
    with pytest.raises(TrainingConfigError, match="not valid YAML"):
        load_training_config(path)
    with pytest.raises(SettingsError, match="invalid config file"):
        load_settings(config_file=path)


def test_float_samples_near_the_float32_limit_resample_to_finite_audio():
    # Found by scripts/fuzz.py audio: a float WAV at 8 kHz with samples of 1.3e38 passed
    # the NaN check, overflowed soxr on the way to 16 kHz, and came back as NaN.
    from callmood.audio import iter_audio_blocks, load_audio

    samples = np.zeros(2000, np.float32)
    samples[100:200] = 3e38
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, 8000, format="WAV", subtype="FLOAT")
    data = buffer.getvalue()
    whole = load_audio(data).samples
    blocks = np.concatenate(list(iter_audio_blocks(data, block_seconds=0.5)), axis=1)
    for decoded in (whole, blocks):
        assert np.isfinite(decoded).all() and 0.5 < np.abs(decoded).max() <= 1.0
    check_audio(data)


def test_float_wav_claiming_17_channels_is_refused_not_a_segfault():
    # Found by scripts/fuzz.py audio: libsndfile refuses it, FFmpeg opens it, and PyAV's
    # to_ndarray crashed the whole process. In a subprocess, so a regression fails the
    # test instead of killing pytest.
    import subprocess
    import sys

    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros(2000, np.float32), 8000, format="WAV", subtype="FLOAT")
    data = bytearray(buffer.getvalue())
    data[22:24] = (17).to_bytes(2, "little")
    code = (
        "import sys; from callmood.audio import AudioError, load_audio\n"
        "try: load_audio(sys.stdin.buffer.read())\n"
        "except AudioError as error: print(type(error).__name__, error)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], input=bytes(data), capture_output=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-500:]
    assert b"CorruptAudioError" in run.stdout and b"17 channels" in run.stdout


@pytest.mark.parametrize(
    "tracks_or_track",
    [("start", [{"a": 1}]), ("media", {"a": 1}), ("media", ["inbound"])],
    ids=["object-in-start-tracks", "object-as-media-track", "list-as-media-track"],
)
def test_twilio_track_that_is_not_a_string_is_a_protocol_error(tracks_or_track):
    # Found by scripts/fuzz.py twilio: `track not in self.tracks` raised TypeError
    # (unhashable dict) instead of refusing the message.
    from fuzz_targets import check_twilio

    where, value = tracks_or_track
    start = {
        "event": "start", "sequenceNumber": "1", "streamSid": "MZ1",
        "start": {"accountSid": "AC1", "streamSid": "MZ1", "callSid": "CA1",
                  "tracks": value if where == "start" else ["inbound"],
                  "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}},
    }  # fmt: skip
    media = {"event": "media", "sequenceNumber": "2", "streamSid": "MZ1",
             "media": {"track": value, "chunk": "1", "timestamp": "0", "payload": ""}}  # fmt: skip
    texts = [json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})]
    check_twilio([*texts, json.dumps(start), json.dumps(media)])
