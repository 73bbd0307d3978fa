"""The catalogue of bad inputs (docs/robustness.md): each kind through its real entry point.

Audio files, CLI arguments, configs and rules files go through `callmood.cli.main`
(the console script's own function) and, for usage errors, the console script in a
subprocess; uploads and live streams through the real app (Starlette's TestClient, or
a uvicorn server on 127.0.0.1 where the network matters). Every case checks that the
user gets a message naming the problem, and that no traceback appears anywhere.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from analysis_fixtures import make_random_package, write_audio
from conftest import REPO_ROOT
from fixtures_audio import forged_wav_bytes
from service_support import database_url, expect_error, make_call_result, serving  # noqa: F401

from callmood import store
from callmood.audio import SAMPLE_RATE
from callmood.cli import main

TOKEN = "robustness-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# Nine levels of nine aliases: under 1 kB of YAML, 9**9 values once expanded.
BILLION_LAUGHS = "".join(
    f"l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * 9 if level else ['lol'] * 9)}]\n"
    for level in range(9)
)
DEEP_NESTING = "[" * 5000 + "]" * 5000


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A small random model package: the plumbing under test does not need a trained one."""
    return make_random_package(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def good_call(tmp_path_factory) -> Path:
    """A valid 4 s stereo call (noise on both channels), for cases where an option is bad."""
    samples = 0.1 * np.random.default_rng(0).standard_normal((2, 4 * SAMPLE_RATE))
    return write_audio(tmp_path_factory.mktemp("call") / "call.flac", samples.astype(np.float32))


def by_kind(rows: list[tuple]) -> list:
    """Parametrised cases named by their first value, the kind (as docs/robustness.md does)."""
    return [pytest.param(*row, id=row[0]) for row in rows]


def run_cli(monkeypatch, capsys, *args: object) -> tuple[int, str, str]:
    """Run `callmood ARGS` in this process; its exit code, stdout and stderr."""
    monkeypatch.setattr(sys, "argv", ["callmood", *map(str, args)])
    try:
        main()
        code = 0
    except SystemExit as done:
        code = done.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_clear_error(code: int, err: str, named: str) -> None:
    assert code == 2, err
    assert named in err, err
    assert "Traceback" not in err


def float_wav(path: Path, value: float) -> Path:
    samples = np.full((SAMPLE_RATE, 1), value, np.float32)
    sf.write(path, samples, SAMPLE_RATE, subtype="FLOAT")
    return path


def first_half_of(path: Path, file_format: str, subtype: str | None = None) -> Path:
    """The first half of a 3 s stereo noise recording in ``file_format``, written at ``path``."""
    buffer = io.BytesIO()
    noise = 0.1 * np.random.default_rng(1).standard_normal((3 * SAMPLE_RATE, 2))
    sf.write(buffer, noise.astype(np.float32), SAMPLE_RATE, format=file_format, subtype=subtype)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return path


# ------------------------------------------------------------------ audio files (CLI analyze)

# kind -> (file name, how to build it in a folder, what the error says)
BAD_AUDIO_FILES = {
    "empty": ("empty.wav", lambda p: p.write_bytes(b""), "the file is empty (0 bytes)"),
    "truncated_wav": (
        "cut.wav",
        lambda p: p.write_bytes(forged_wav_bytes(declared_data_bytes=64_000)),
        "truncated audio file: the header declares 64000 bytes",
    ),
    "truncated_flac": ("cut.flac", lambda p: first_half_of(p, "FLAC"), "truncated"),
    "truncated_ogg": (
        "cut.ogg",
        lambda p: first_half_of(p, "OGG", "VORBIS"),
        "truncated Ogg file: its last page is cut off",
    ),
    "truncated_mp3": (
        "cut.mp3",
        lambda p: first_half_of(p, "MP3", "MPEG_LAYER_III"),
        "truncated or damaged audio: the header declares",
    ),
    "no_data_chunk": (
        "header.wav",
        lambda p: p.write_bytes(forged_wav_bytes()[:36]),
        "damaged audio file, cannot be decoded",
    ),
    "text_behind_wav": (
        "notes.wav",
        lambda p: p.write_text("Meeting notes, not a recording.\n" * 40),
        "not an audio file (the content looks like text",
    ),
    "image_behind_mp3": (
        "photo.mp3",
        lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(600)),
        "not an audio file",
    ),
    "header_claims_4_gb": (
        "huge.wav",
        lambda p: p.write_bytes(forged_wav_bytes(declared_data_bytes=0xFFFF_FFF0)),
        "declares 4294967280 bytes",
    ),
    "header_claims_8_hours": (
        "eight_hours.wav",
        lambda p: p.write_bytes(forged_wav_bytes(declared_data_bytes=8 * 3600 * 16000 * 2)),
        "declares 921600000 bytes",
    ),
    "1000_channels": (
        "conference.wav",
        lambda p: p.write_bytes(
            forged_wav_bytes(channels=1000, sample_rate=4000, data=bytes(1000 * 2 * 4400))
        ),
        "1000 channels",
    ),
    "0_hz": (
        "zero.wav",
        lambda p: p.write_bytes(forged_wav_bytes(sample_rate=0)),
        "damaged audio file",
    ),
    "1_hz": (
        "one.wav",
        lambda p: p.write_bytes(forged_wav_bytes(sample_rate=1)),
        "sample rate of 1 Hz",
    ),
    "2_mhz": (
        "fast.wav",
        lambda p: p.write_bytes(forged_wav_bytes(sample_rate=2_000_000)),
        "sample rate of 2000000 Hz",
    ),
    "unknown_codec": (
        "odd.wav",
        lambda p: p.write_bytes(forged_wav_bytes(format_tag=0x1234)),
        "unknown codec",
    ),
    "nan_samples": ("nan.wav", lambda p: float_wav(p, np.nan), "NaN or infinite"),
    "infinite_samples": ("inf.wav", lambda p: float_wav(p, np.inf), "NaN or infinite"),
    "directory": ("folder.wav", lambda p: p.mkdir(), "is a directory, not an audio file"),
    "missing": ("missing.wav", lambda p: None, "no such file"),
}


@pytest.mark.parametrize("kind", BAD_AUDIO_FILES)
def test_bad_audio_file_is_one_clear_line(kind, monkeypatch, capsys, model_dir, tmp_path):
    name, build, named = BAD_AUDIO_FILES[kind]
    path = tmp_path / name
    build(path)
    code, _, err = run_cli(monkeypatch, capsys, "analyze", path, "--model", model_dir)
    assert_one_clear_error(code, err, named)
    assert name in err  # the message names the file


def test_silence_only_and_clipped_calls_are_analysed_not_refused(
    monkeypatch, capsys, model_dir, tmp_path
):
    silent = write_audio(tmp_path / "silent.flac", np.zeros((2, 5 * SAMPLE_RATE), np.float32))
    code, out, err = run_cli(monkeypatch, capsys, "analyze", silent, "--model", model_dir)
    assert code == 0, err
    assert "No speech detected" in out
    # Far beyond full scale (a float file): clipped to [-1, 1], analysed, shouting noticed.
    square = np.sign(np.sin(2 * np.pi * 200 * np.arange(4 * SAMPLE_RATE) / SAMPLE_RATE))
    clipped = tmp_path / "clipped.wav"
    sf.write(clipped, np.stack([square * 1e30] * 2, axis=1).astype(np.float32), SAMPLE_RATE)
    output = tmp_path / "clipped.json"
    code, out, err = run_cli(
        monkeypatch, capsys, "analyze", clipped, "--model", model_dir, "-o", output
    )
    assert code == 0, err
    result = json.loads(output.read_text())
    windows = result["speakers"]["customer"]["windows"]
    assert windows and all(w["peak_dbfs"] <= 0.0 for w in windows)
    assert "Traceback" not in out + err


def test_unicode_file_name_is_analysed_and_named(
    monkeypatch, capsys, model_dir, good_call, tmp_path
):
    path = tmp_path / "Beschwerde Müller 😡 ü.flac"
    path.write_bytes(good_call.read_bytes())
    code, out, err = run_cli(monkeypatch, capsys, "analyze", path, "--model", model_dir)
    assert code == 0, err
    assert "Müller" in out and "😡" in out


# ------------------------------------------------------------------ CLI arguments


@pytest.mark.parametrize(
    ("kind", "args", "named"),
    by_kind(
        [
            ("channel_not_a_number", ["--channels", "customer=x"], "--channels: cannot read"),
            ("channel_negative", ["--channels", "customer=-1"], "--channels: cannot read"),
            ("channels_empty", ["--channels", ""], "--channels is empty"),
            ("one_channel_for_both", ["--channels", "customer=0,agent=0"], "different channels"),
            ("hop_not_a_number", ["--hop-seconds", "nan"], "hop_seconds"),
            ("output_is_a_directory", ["-o", "{tmp}"], "Is a directory"),
            ("output_folder_missing", ["-o", "{tmp}/no/such/folder/r.json"], "No such file"),
            ("model_not_a_package", ["--model", "{tmp}"], "is not a model package"),
            ("model_missing", ["--model", "{tmp}/none"], "not found"),
            ("rules_is_a_directory", ["--rules", "{tmp}"], "cannot be read"),
        ]
    ),
)
def test_bad_analyze_argument_is_one_clear_line(
    kind, args, named, monkeypatch, capsys, model_dir, good_call, tmp_path
):
    args = [str(arg).replace("{tmp}", str(tmp_path)) for arg in args]
    model = [] if "--model" in args else ["--model", model_dir]
    code, _, err = run_cli(monkeypatch, capsys, "analyze", good_call, *model, *args)
    assert_one_clear_error(code, err, named)


@pytest.mark.parametrize(
    ("kind", "args", "named"),
    by_kind(
        [
            (
                "unknown_option",
                ["analyze", "call.wav", "--frobnicate"],
                "No such option: --frobnicate",
            ),
            ("missing_argument", ["analyze"], "Missing argument"),
            (
                "integer_option_not_a_number",
                ["batch", ".", "--out", "x", "--workers", "many"],
                "--workers",
            ),
            (
                "zero_workers",
                ["batch", "{tmp}", "--out", "{tmp}/out", "--workers", "0"],
                "--workers",
            ),
            ("batch_source_missing", ["batch", "{tmp}/none", "--out", "{tmp}/out"], "no such file"),
            ("port_out_of_range", ["serve", "--port", "99999", "--data-dir", "{tmp}"], "port"),
            ("unknown_command", ["analyse", "call.wav"], "No such command"),
        ]
    ),
)
def test_bad_command_line_is_one_clear_line(kind, args, named, monkeypatch, capsys, tmp_path):
    args = [str(arg).replace("{tmp}", str(tmp_path)) for arg in args]
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert_one_clear_error(code, err, named)


def test_console_script_usage_error_is_one_line_without_traceback():
    # The real executable path: typer's own copy of click raised past main() before.
    completed = subprocess.run(
        [sys.executable, "-c", "from callmood.cli import main; main()", "analyze", "--frobnicate"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")},
    )
    assert completed.returncode == 2
    assert "No such option: --frobnicate" in completed.stderr
    assert "Traceback" not in completed.stderr


# ------------------------------------------------------------------ configs and rules files

BAD_TRAINING_CONFIGS = {
    "wrong_type": ("epochs: many\n", "`epochs`: Input should be a valid integer"),
    "unknown_key": ("epoch: 3\ncorpora: [{name: ravdess, path: .}]\n", "unknown key `epoch`"),
    "billion_laughs": (BILLION_LAUGHS + "epochs: *l8\n", "billion laughs"),
    "deep_nesting": (DEEP_NESTING, "nests deeper than"),
    "not_a_mapping": ("- one\n- two\n", "expected a mapping of options"),
    "not_utf8": (b"\xff\xfe\x00\x81 binary", "not valid YAML"),
}


@pytest.mark.parametrize("kind", BAD_TRAINING_CONFIGS)
def test_bad_training_config_is_one_clear_line(kind, monkeypatch, capsys, tmp_path):
    text, named = BAD_TRAINING_CONFIGS[kind]
    config = tmp_path / "train.yaml"
    config.write_bytes(text if isinstance(text, bytes) else text.encode())
    code, _, err = run_cli(monkeypatch, capsys, "train", "--config", config, "-o", tmp_path / "o")
    assert_one_clear_error(code, err, named)
    assert "train.yaml" in err


BAD_SETTINGS_FILES = {
    "wrong_type": ("max_upload_mb: lots\n", "max_upload_mb: Input should be a valid number"),
    "unknown_key": ("max_upload: 10\n", "max_upload: Extra inputs are not permitted"),
    "billion_laughs": (BILLION_LAUGHS, "billion laughs"),
    "deep_nesting": ("port: " + DEEP_NESTING, "nests deeper than"),
    "python_object_tag": ("port: !!python/object/apply:os.getpid []\n", "python/object"),
}


@pytest.mark.parametrize("kind", BAD_SETTINGS_FILES)
def test_bad_settings_file_is_one_clear_line(kind, monkeypatch, capsys, tmp_path):
    text, named = BAD_SETTINGS_FILES[kind]
    config = tmp_path / "callmood.yaml"
    config.write_text(text)
    code, _, err = run_cli(monkeypatch, capsys, "serve", "--config", config)
    assert_one_clear_error(code, err, named)
    assert "callmood.yaml" in err


BAD_RULES = {
    "unknown_kind": ("rules:\n  - {name: x, kind: telepathy}\n", "does not match any of the"),
    "threshold_out_of_range": (
        "rules:\n  - {name: sure, kind: sustained, emotion: angry, threshold: 2, min_seconds: 3}\n",
        "rule 'sure', field threshold",
    ),
    "unknown_label": (
        "rules:\n  - {name: fury, kind: sustained, emotion: furious, min_seconds: 3}\n",
        "'furious' is not a label of the model",
    ),
    "duplicate_names": (
        "rules:\n  - {name: a, kind: silence, min_seconds: 5}\n"
        "  - {name: a, kind: silence, min_seconds: 9}\n",
        "rule names must be unique",
    ),
    "billion_laughs": (BILLION_LAUGHS + "rules: *l8\n", "billion laughs"),
    "deep_nesting": (DEEP_NESTING, "nests deeper than"),
    "python_object_tag": ("rules: !!python/object/apply:os.system ['true']\n", "python/object"),
}


@pytest.mark.parametrize("kind", BAD_RULES)
def test_bad_rules_file_is_one_clear_line(
    kind, monkeypatch, capsys, model_dir, good_call, tmp_path
):
    text, named = BAD_RULES[kind]
    rules = tmp_path / "my_rules.yaml"
    rules.write_text(text)
    code, _, err = run_cli(
        monkeypatch, capsys, "analyze", good_call, "--model", model_dir, "--rules", rules
    )
    assert_one_clear_error(code, err, named)
    assert "my_rules.yaml" in err


# ------------------------------------------------------------------ the service


@pytest.fixture
def service_settings(tmp_path, model_dir):
    from callmood.settings import load_settings

    def settings(**overrides):
        return load_settings(
            data_dir=tmp_path / "data", auth_token=TOKEN, model_dir=model_dir, **overrides
        )

    return settings


@contextmanager
def service_with_a_kept_call(settings, caplog) -> Iterator:
    """A TestClient of the service with one call already stored, which no bad input may
    disturb: on exit, the call must still be listed and whole, and the log hold no traceback."""
    from fastapi.testclient import TestClient

    from callmood.service.app import create_app

    caplog.set_level(logging.INFO)
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        with store.session_scope(app.state.session_factory) as session:
            store.save_call_result(session, make_call_result("kept-call"), name="Kept call")
        yield test_client
        listed = test_client.get("/api/calls", headers=AUTH).json()
        assert "kept-call" in [call["id"] for call in listed["items"]]
        assert test_client.get("/api/calls/kept-call", headers=AUTH).status_code == 200
    assert "Traceback" not in caplog.text
    assert not [record for record in caplog.records if record.exc_info]


@pytest.fixture
def client(service_settings, caplog):
    with service_with_a_kept_call(service_settings(max_upload_mb=20), caplog) as test_client:
        yield test_client


@pytest.fixture
def client_on_each_database(database_url, service_settings, caplog):  # noqa: F811
    """`client` on SQLite and on PostgreSQL, whose text cannot hold a NUL character."""
    settings = service_settings(database_url=database_url)
    with service_with_a_kept_call(settings, caplog) as test_client:
        yield test_client


def incoming_files(client) -> list[Path]:
    from callmood.service.jobs import INCOMING_SUBDIR

    return list((client.app.state.settings.resolved_audio_dir / INCOMING_SUBDIR).glob("*"))


def post_call(client, data: bytes, filename: str = "call.wav", **fields: str):
    return client.post(
        "/api/calls", headers=AUTH, files={"file": (filename, data, "audio/wav")}, data=fields
    )


def wav_bytes(samples: np.ndarray, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, SAMPLE_RATE, format="WAV", subtype=subtype)
    return buffer.getvalue()


BAD_UPLOADS = {
    "empty_file": ("empty.wav", b"", 400, "the file is empty"),
    "text_behind_wav": ("notes.wav", b"not a call\n" * 100, 415, "not an audio file"),
    "truncated": ("cut.wav", forged_wav_bytes(declared_data_bytes=64_000), 422, "truncated"),
    "header_claims_8_hours": (
        "long.wav",
        forged_wav_bytes(declared_data_bytes=8 * 3600 * 16000 * 2),
        422,
        "declares 921600000 bytes",
    ),
    "1000_channels": (
        "conference.wav",
        forged_wav_bytes(channels=1000, sample_rate=4000, data=bytes(1000 * 2 * 4400)),
        422,
        "has 1000 channels",
    ),
    "1_hz": ("one.wav", forged_wav_bytes(sample_rate=1), 422, "sample rate of 1 Hz"),
    "unknown_codec": ("odd.wav", forged_wav_bytes(format_tag=0x1234), 422, "unknown codec"),
    "under_1_second": ("blip.wav", wav_bytes(np.zeros(1600, np.float32)), 422, "at least 1 s"),
}


@pytest.mark.parametrize("kind", BAD_UPLOADS)
def test_bad_upload_is_refused_naming_the_problem(kind, client):
    filename, data, status, named = BAD_UPLOADS[kind]
    response = post_call(client, data, filename)
    assert response.status_code == status, response.text
    assert named in response.json()["detail"]
    assert filename in response.json()["detail"] or status == 400
    assert incoming_files(client) == []


@pytest.mark.parametrize(
    ("kind", "request_kwargs", "status", "named"),
    by_kind(
        [
            (
                "not_multipart",
                {"content": b"RIFF", "headers": {"content-type": "audio/wav"}},
                415,
                "multipart",
            ),
            (
                "malformed_multipart",
                {
                    "content": b"garbage",
                    "headers": {"content-type": "multipart/form-data; boundary=b"},
                },
                400,
                "malformed multipart",
            ),
            (
                "no_file_part",
                {"files": {"notes": ("", b"")}, "data": {"name": "x"}},
                400,
                "no 'file' part",
            ),
            (
                "bad_option_type",
                {"files": {"file": ("c.wav", b"x")}, "data": {"mono": "perhaps"}},
                422,
                "mono",
            ),
            (
                "unknown_option",
                {"files": {"file": ("c.wav", b"x")}, "data": {"colour": "blue"}},
                422,
                "colour",
            ),
            (
                "content_length_claims_8_hours",
                {
                    "content": b"x",
                    "headers": {
                        "content-type": "multipart/form-data; boundary=b",
                        "content-length": str(8 * 3600 * 16000 * 2),
                    },
                },
                413,
                "upload of 921.6 MB: larger than the limit of 20 MB",
            ),
        ]
    ),
)
def test_malformed_upload_request_is_refused(kind, request_kwargs, status, named, client):
    headers = {**AUTH, **request_kwargs.pop("headers", {})}
    response = client.post("/api/calls", headers=headers, **request_kwargs)
    assert response.status_code == status, response.text
    assert named in response.json()["detail"]
    assert incoming_files(client) == []


def test_nan_upload_fails_its_job_with_the_reason(client):
    response = post_call(client, wav_bytes(np.full(2 * SAMPLE_RATE, np.nan, np.float32), "FLOAT"))
    assert response.status_code == 202
    job_id = response.json()["job_id"]
    client.app.state.jobs.wait(job_id, timeout_seconds=60)
    job = client.get(f"/api/jobs/{job_id}", headers=AUTH).json()
    assert job["state"] == "failed"
    assert "call.wav" in job["error"] and "NaN or infinite" in job["error"]


@pytest.mark.parametrize(
    ("filename", "stored_name"),
    [
        pytest.param("../../../etc/cron.d/evil.wav", "evil.wav", id="dot_dot_slash"),
        pytest.param("..\\..\\windows\\evil.wav", "evil.wav", id="dot_dot_backslash"),
        pytest.param("Beschwerde Müller 😡.wav", "Beschwerde Müller 😡.wav", id="unicode"),
    ],
)
def test_path_traversal_and_unicode_file_names_stay_names(filename, stored_name, client):
    silence = wav_bytes(np.zeros(2 * SAMPLE_RATE, np.float32))
    response = post_call(client, silence, filename)
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    client.app.state.jobs.wait(job_id, timeout_seconds=60)
    call = client.get(f"/api/calls/{job_id}/summary", headers=AUTH).json()
    assert call["name"] == stored_name
    # The file is kept under the job id inside the audio folder, never where the name points.
    data_dir = client.app.state.settings.data_dir
    kept = [p for p in data_dir.rglob("*") if p.is_file() and p.suffix == ".wav"]
    assert [p.relative_to(data_dir).as_posix() for p in kept] == [f"audio/calls/{job_id}.wav"]


@pytest.mark.parametrize(
    ("kind", "send", "named"),
    by_kind(
        [
            ("search_with_nul", lambda c: c.get("/api/calls", params={"q": "a\x00"}), None),
            ("tag_with_nul", lambda c: c.get("/api/calls", params={"tag": "vip\x00"}), None),
            ("call_id_with_nul", lambda c: c.get("/api/calls/a%00b"), None),
            ("job_id_with_nul", lambda c: c.get("/api/jobs/a%00b"), None),
            (
                "upload_name_with_nul",
                lambda c: c.post(
                    "/api/calls", files={"file": ("c.wav", b"x")}, data={"name": "a\x00"}
                ),
                "invalid upload options: name: must not contain NUL characters",
            ),
            (
                "upload_tags_with_nul",
                lambda c: c.post(
                    "/api/calls", files={"file": ("c.wav", b"x")}, data={"tags": "a\x00"}
                ),
                "invalid upload options: tags: must not contain NUL characters",
            ),
            (
                "offset_beyond_any_integer",
                lambda c: c.get("/api/calls", params={"offset": str(10**20)}),
                "query parameter 'offset': Input should be less than or equal to 1000000000",
            ),
            (
                "alert_id_beyond_any_integer",
                lambda c: c.post(f"/api/alerts/{10**20}/acknowledge"),
                "path parameter 'alert_id': Input should be less than or equal to",
            ),
        ]
    ),
)
def test_value_the_database_cannot_hold_is_not_a_500(kind, send, named, client_on_each_database):
    client = client_on_each_database
    client.headers.update(AUTH)
    response = send(client)
    # SQLite finds nothing for a NUL (404, or an empty list); PostgreSQL refuses it (422).
    assert response.status_code in (200, 404, 422), response.text
    if named is not None:
        assert response.status_code == 422 and named in response.json()["detail"]
    elif response.status_code == 422:
        assert "cannot contain NUL" in response.json()["detail"]


def test_rules_document_naming_an_unknown_label_is_refused(client):
    before = client.get("/api/rules", headers=AUTH).json()
    rules = {
        "rules": [{"name": "fury", "kind": "sustained", "emotion": "furious", "min_seconds": 3}]
    }
    response = client.put("/api/rules", headers=AUTH, json=rules)
    assert response.status_code == 422
    assert "'furious' is not a label of the model" in response.json()["detail"]
    assert client.get("/api/rules", headers=AUTH).json() == before


@pytest.mark.parametrize(
    ("kind", "content_type", "body", "named"),
    by_kind(
        [
            (
                "billion_laughs",
                "application/yaml",
                BILLION_LAUGHS + "rules: *l8\n",
                "billion laughs",
            ),
            ("deep_yaml", "application/yaml", DEEP_NESTING, "nests deeper than"),
            ("deep_json", "application/json", DEEP_NESTING, "nested too deeply"),
            ("not_json", "application/json", "{rules: [", "cannot parse the body"),
        ]
    ),
)
def test_unparsable_rules_document_is_422(kind, content_type, body, named, client):
    headers = {**AUTH, "content-type": content_type}
    response = client.put("/api/rules", headers=headers, content=body.encode())
    assert response.status_code == 422
    assert named in response.json()["detail"]


# ------------------------------------------------------------------ live streams


def start_message(**fields: object) -> str:
    return json.dumps({"type": "start", "sample_rate": 16000, "encoding": "pcm16", **fields})


@pytest.mark.parametrize(
    ("kind", "first_message", "code", "named"),
    by_kind(
        [
            ("start_deeply_nested", DEEP_NESTING, 1008, "nested too deeply"),
            ("start_is_a_list", "[1, 2]", 1008, "must be a JSON object"),
            ("stop_before_start", json.dumps({"type": "stop"}), 1008, "expected a start message"),
            ("sample_rate_0_hz", start_message(sample_rate=0), 1008, "unsupported sample rate 0"),
            (
                "sample_rate_absurd",
                start_message(sample_rate=10**12),
                1008,
                "unsupported sample rate",
            ),
            ("unknown_encoding", start_message(encoding="flac"), 1008, "encoding"),
            ("channels_1000", start_message(channels=["customer"] * 1000), 1008, "channels"),
            ("name_empty", start_message(name=""), 1008, "name"),
            ("name_with_nul", start_message(name="caller\x00"), 1008, "must not contain NUL"),
            ("tag_too_long", start_message(tags=["t" * 150]), 1008, "longer than 100 characters"),
        ]
    ),
)
def test_bad_start_message_closes_the_stream_with_a_reason(
    kind, first_message, code, named, client
):
    with client.websocket_connect(f"/api/stream?token={TOKEN}") as websocket:
        websocket.send_text(first_message)
        message, close_code = expect_error(websocket)
    assert close_code == code
    assert named in message


@pytest.mark.parametrize(
    ("kind", "send", "code", "named"),
    by_kind(
        [
            ("text_instead_of_audio", lambda ws: ws.send_text("hello?"), 1008, "not valid JSON"),
            ("second_start", lambda ws: ws.send_text(start_message()), 1008, "a second start"),
            ("frame_too_large", lambda ws: ws.send_bytes(bytes(1_000_002)), 1009, "larger than"),
            ("odd_length_pcm16", lambda ws: ws.send_bytes(bytes(3201)), 1008, "3201 bytes"),
        ]
    ),
)
def test_bad_message_mid_stream_closes_it_with_a_reason(kind, send, code, named, client):
    with client.websocket_connect(f"/api/stream?token={TOKEN}") as websocket:
        websocket.send_text(start_message())
        assert websocket.receive_json()["type"] == "ready"
        send(websocket)
        message, close_code = expect_error(websocket)
    assert close_code == code
    assert named in message


def test_start_message_that_never_comes_times_out(client, monkeypatch):
    from callmood.service.routes import stream

    monkeypatch.setattr(stream, "START_TIMEOUT_SECONDS", 0.5)
    with client.websocket_connect(f"/api/stream?token={TOKEN}") as websocket:
        message, close_code = expect_error(websocket)
    assert close_code == 1008
    assert "no start message within 0.5 s" in message


# ------------------------------------------------------------------ a real server on loopback


def raw_upload_head(port: int, extra_headers: str = "") -> socket.socket:
    """A socket that has sent an upload's request line and headers (the body follows)."""
    connection = socket.create_connection(("127.0.0.1", port), timeout=20)
    connection.sendall(
        (
            "POST /api/calls HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {TOKEN}\r\n"
            "Content-Type: multipart/form-data; boundary=b\r\n"
            f"{extra_headers}\r\n"
        ).encode()
    )
    return connection


def read_response(connection: socket.socket) -> tuple[int, dict]:
    received = b""
    while b"\r\n\r\n" not in received or not received.rstrip().endswith(b"}"):
        chunk = connection.recv(65536)
        if not chunk:
            break
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    if b"chunked" in head.lower():
        body = body.split(b"\r\n", 1)[1].rsplit(b"\r\n0\r\n", 1)[0]
    return int(head.split()[1]), json.loads(body.strip())


@pytest.fixture
def server_port(service_settings, monkeypatch, caplog):
    from callmood.service import uploads
    from callmood.service.app import create_app

    # A stall is cut off after 1 s here (30 s in service), so the test takes seconds.
    monkeypatch.setattr(uploads, "UPLOAD_IDLE_TIMEOUT_SECONDS", 1.0)
    app = create_app(service_settings(max_upload_mb=1))
    with serving(app) as port:
        yield port
    assert "Traceback" not in caplog.text
    incoming = app.state.settings.resolved_audio_dir / "incoming"
    assert not list(incoming.glob("*")) if incoming.is_dir() else True


def test_slow_loris_upload_is_cut_off_and_others_are_served(server_port):
    import httpx

    connection = raw_upload_head(server_port, "Transfer-Encoding: chunked\r\n")
    part = b'--b\r\nContent-Disposition: form-data; name="file"; filename="slow.wav"\r\n\r\nRIFF'
    connection.sendall(b"%x\r\n%s\r\n" % (len(part), part))
    started = time.monotonic()
    # While the upload stalls, the server answers everyone else.
    listed = httpx.get(f"http://127.0.0.1:{server_port}/api/calls", headers=AUTH, timeout=10)
    assert listed.status_code == 200
    status, body = read_response(connection)
    connection.close()
    assert status == 408
    assert "upload stalled: no data for 1 s" in body["detail"]
    assert time.monotonic() - started < 15  # cut off, not left hanging


def test_stream_cut_off_mid_frame_keeps_the_audio_before_it(server_port):
    import httpx
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    noise = (0.1 * np.random.default_rng(2).standard_normal(3 * SAMPLE_RATE) * 32767).astype("<i2")
    with connect(f"ws://127.0.0.1:{server_port}/api/stream?token={TOKEN}") as websocket:
        websocket.send(start_message(name="line dropped"))
        call_id = json.loads(websocket.recv(timeout=30))["call_id"]
        websocket.send(noise.tobytes())
        websocket.send(noise.tobytes()[:3])  # the line drops one byte into a sample
        error = json.loads(websocket.recv(timeout=30))
        with pytest.raises(ConnectionClosed) as closed:
            websocket.recv(timeout=30)
    assert closed.value.rcvd.code == 1008
    assert error["type"] == "error" and "3 bytes" in error["message"]
    # What arrived before the torn frame is stored, marked partial.
    url = f"http://127.0.0.1:{server_port}/api/calls/{call_id}"
    deadline = time.monotonic() + 30
    while (response := httpx.get(url, headers=AUTH)).status_code == 404:
        assert time.monotonic() < deadline, "the audio before the torn frame was not stored"
        time.sleep(0.1)
    call = response.json()
    assert call["duration_seconds"] == pytest.approx(3.0, abs=0.01)
    assert any("partial" in note for note in call["notes"])


def test_eight_hour_streamed_upload_stops_at_the_limit(server_port):
    # 8 hours of 16 kHz pcm16 (921.6 MB) sent chunked, with no Content-Length to refuse it by:
    # the server stops reading at max_upload_mb (1 MB here) and nothing is kept.
    connection = raw_upload_head(server_port, "Transfer-Encoding: chunked\r\n")
    head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="shift.wav"\r\n\r\n'
    connection.sendall(b"%x\r\n%s\r\n" % (len(head), head))
    sent = [len(head)]

    def send_eight_hours() -> None:
        chunk = b"%x\r\n%s\r\n" % (64 * 1024, bytes(64 * 1024))
        try:
            while sent[0] < 8 * 3600 * 16000 * 2:
                connection.sendall(chunk)
                sent[0] += 64 * 1024
        except OSError:  # the server answered and closed: the rest is never sent
            pass

    sender = threading.Thread(target=send_eight_hours)
    sender.start()
    status, body = read_response(connection)
    sender.join(timeout=60)
    connection.close()
    assert status == 413
    assert "shift.wav" in body["detail"] and "max_upload_mb" in body["detail"]
    assert not sender.is_alive()
    assert sent[0] < 64 * 1024 * 1024  # stopped near the limit, far from 921.6 MB


# ------------------------------------------------------------------ the catalogue itself


def test_the_catalogue_lists_at_least_30_kinds_each_with_its_test():
    catalogue = (REPO_ROOT / "docs" / "robustness.md").read_text(encoding="utf-8")
    # A row's test: `test_name[kind]` in this file, or `tests/test_file.py::test_name`.
    references = re.findall(
        r"^\|.*`(?:tests/(test_\w+\.py)::)?(test_\w+)(?:\[(\w+)\])?` \|$", catalogue, re.M
    )
    assert len(references) >= 30
    for file_name, test_name, kind in references:
        source = Path(__file__).with_name(file_name or Path(__file__).name).read_text("utf-8")
        assert f"def {test_name}(" in source, (file_name, test_name)
        assert not kind or f'"{kind}"' in source, (test_name, kind)
