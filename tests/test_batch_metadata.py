"""`callmood batch --metadata FILE`: a sidecar CSV gives each file its agent, queue, external
call id and start time (issue 18); they reach the calls table, the result JSON and the service
database. A bad sidecar is one clear error before anything is analysed."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime

import pandas as pd
import pytest
from test_batch import model_dir  # noqa: F401 (fixture: a real package, random weights)

from callmood.audio import load_audio
from callmood.batch import BatchOptions, read_batch_results, run_batch
from callmood.batch.options import BatchError
from callmood.batch.sources import file_sha256, read_metadata_sidecar
from callmood.call_metadata import CallMetadata


@pytest.fixture
def archive(ravdess_dir, tmp_path):
    """Two real calls (RAVDESS speech) and a copy of the first."""
    import soundfile

    root = tmp_path / "archive"
    root.mkdir()
    for name, clip in [
        ("a.wav", "Actor_01/03-01-05-02-01-01-01.flac"),
        ("b.wav", "Actor_02/03-01-01-01-01-01-02.flac"),
    ]:
        audio = load_audio(ravdess_dir / clip)
        soundfile.write(root / name, audio.samples[0], audio.sample_rate, subtype="PCM_16")
    shutil.copy(root / "a.wav", root / "a-copy.wav")
    return root


def write_sidecar(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def test_sidecar_metadata_reaches_the_tables_the_json_and_the_database(
    archive,
    model_dir,  # noqa: F811
    tmp_path,
):
    from callmood import store

    sidecar = write_sidecar(
        tmp_path / "calls-meta.csv",
        "file,agent,queue,external_call_id,started_at\n"
        "archive/a.wav, Ana ,billing,pbx-1,2026-12-01T09:15:00+01:00\n"
        "archive/b.wav,Bo,,,\n",
    )
    out = tmp_path / "out"
    database_url = f"sqlite:///{tmp_path / 'callmood.db'}"
    options = BatchOptions(
        workers=1, model_dir=model_dir, database_url=database_url, metadata=sidecar
    )
    summary = run_batch(archive, out, options)
    assert (summary.calls, summary.analysed, summary.errors) == (2, 2, 0)

    # By content: the analysed file of the first call may be its copy, which the sidecar
    # does not name; the call still gets the metadata of a.wav.
    calls = read_batch_results(out).calls.set_index("call_hash")
    a = calls.loc[file_sha256(archive / "a.wav")]
    assert (a["agent"], a["queue"], a["external_call_id"]) == ("Ana", "billing", "pbx-1")
    assert a["started_at"].to_pydatetime() == datetime(2026, 12, 1, 8, 15, tzinfo=UTC)
    assert json.loads(a["result_json"])["metadata"]["agent"] == "Ana"
    b = calls.loc[file_sha256(archive / "b.wav")]
    assert b["agent"] == "Bo" and pd.isna(b["queue"]) and pd.isna(b["started_at"])

    engine = store.create_database_engine(database_url)
    with store.session_scope(store.make_session_factory(engine)) as session:
        stored = {call.agent: call for call in store.list_calls(session)[0]}
        assert set(stored) == {"Ana", "Bo"}
        assert stored["Ana"].started_at == datetime(2026, 12, 1, 8, 15, tzinfo=UTC)
        assert stored["Ana"].external_call_id == "pbx-1"
    engine.dispose()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("path,agent\narchive/a.wav,Ana\n", "columns must be 'file'"),
        ("file,agent,team\narchive/a.wav,Ana,x\n", "found: file, agent, team"),
        ("file,agent\narchive/nope.wav,Ana\n", "line 2: archive/nope.wav: no such file"),
        ("file,agent\narchive/a.wav,Ana\narchive/a.wav,Bo\n", "line 3: archive/a.wav named twice"),
        (
            "file,started_at\narchive/a.wav,2026-12-01T09:15:00\n",
            "line 2: started_at: started_at 2026-12-01T09:15:00 has no time zone",
        ),
        ('file,agent\narchive/a.wav,"Ana\nRuiz"\n', "line 2: agent: agent must not contain"),
    ],
)
def test_a_bad_sidecar_is_one_clear_error_naming_the_line(archive, tmp_path, text, problem):
    sidecar = write_sidecar(tmp_path / "meta.csv", text)
    with pytest.raises(BatchError, match="metadata") as raised:
        read_metadata_sidecar(sidecar)
    assert problem in str(raised.value)
    # run_batch reads it before touching the output folder.
    with pytest.raises(BatchError):
        run_batch(archive, tmp_path / "out", BatchOptions(workers=1, metadata=sidecar))
    assert not (tmp_path / "out").exists()


def test_sidecar_paths_are_relative_to_its_folder_and_blank_lines_skipped(archive, tmp_path):
    sidecar = write_sidecar(archive / "meta.csv", "file,queue\na.wav,sales\n,\n")
    assert read_metadata_sidecar(sidecar) == {
        (archive / "a.wav").resolve(): CallMetadata(queue="sales")
    }
