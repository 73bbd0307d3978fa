"""`callmood serve` answers with authentication, and `callmood purge` applies retention."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from conftest import require
from service_support import free_port, make_call_result
from typer.testing import CliRunner

from callmood import store
from callmood.cli import app as cli_app
from callmood.inference import default_model_dir

CALLMOOD = Path(sys.executable).with_name("callmood")


def _sessions(data_dir: Path):
    engine = store.create_database_engine(f"sqlite:///{data_dir / 'callmood.db'}")
    store.upgrade_database(engine)
    return engine, store.make_session_factory(engine)


def test_purge_deletes_calls_older_than_the_given_days(tmp_path):
    engine, sessions = _sessions(tmp_path)
    (tmp_path / "audio" / "calls").mkdir(parents=True)
    (tmp_path / "audio" / "calls" / "old.flac").write_bytes(b"old")
    with store.session_scope(sessions) as session:
        store.save_call_result(
            session,
            make_call_result("old"),
            audio_path="calls/old.flac",
            created_at=datetime.now(UTC) - timedelta(days=40),
        )
        store.save_call_result(session, make_call_result("recent"))
    outcome = CliRunner().invoke(
        cli_app, ["purge", "--older-than-days", "30", "--data-dir", str(tmp_path)]
    )
    assert outcome.exit_code == 0, outcome.output
    assert "deleted 1 call" in outcome.output
    assert not (tmp_path / "audio" / "calls" / "old.flac").exists()
    with sessions() as session:
        assert [call.id for call in store.list_calls(session)[0]] == ["recent"]
    engine.dispose()


def test_purge_with_a_bad_database_url_is_one_clear_line(tmp_path):
    outcome = subprocess.run(
        [str(CALLMOOD), "purge", "--data-dir", str(tmp_path), "--database-url", "nonsense"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert outcome.returncode == 2
    assert "nonsense" in outcome.stderr and "Traceback" not in outcome.stderr


def test_serve_prints_a_new_token_and_requires_it(tmp_path):
    model = os.environ.get("CALLMOOD_MODEL_DIR") or str(default_model_dir())
    require(Path(model, "model.json").is_file(), "no bundled model")
    port = free_port()
    server = subprocess.Popen(
        [str(CALLMOOD), "serve", "--port", str(port), "--data-dir", str(tmp_path)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "CALLMOOD_MODEL_DIR": model, "COLUMNS": "200"},
    )
    try:
        token = None
        for line in server.stderr:
            match = re.search(r"API token.*: (\S+)$", line)
            if match:
                token = match.group(1)
                break
        assert token and token not in (tmp_path / "api_token.sha256").read_text()
        url = f"http://127.0.0.1:{port}/api/calls"
        deadline = time.monotonic() + 60
        while True:
            try:
                anonymous = httpx.get(url)
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        assert anonymous.status_code == 401
        authorised = httpx.get(url, headers={"Authorization": f"Bearer {token}"})
        assert authorised.status_code == 200 and authorised.json()["total"] == 0
    finally:
        server.terminate()
        server.wait(timeout=30)
