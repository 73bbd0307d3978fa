"""Batch analysis on a real Dask LocalCluster over short stereo calls made from ../shared/data.

Each call is about ten seconds of turn-taking: a RAVDESS actor on the left (customer)
channel, an EmoDB actor answering on the right (agent) channel, the customer again.
The archive also holds a mono call, a duplicate file and three bad files.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from callmood.audio import load_audio
from callmood.batch import BatchOptions, read_batch_results, run_batch
from callmood.batch.sources import file_sha256
from callmood.batch.worker import CallAnalyzer, CallJob
from callmood.results import CallResult

SAMPLE_RATE = 16000
PAUSE_SECONDS = 0.4
STEREO_CALLS = 16
KILL_AFTER_CALLS = 3


@dataclass
class Archive:
    """What was put in the archive, so that tests can check exact counts."""

    root: Path
    good_calls: list[Path] = field(default_factory=list)  # one per distinct content
    duplicates: list[Path] = field(default_factory=list)  # same bytes as a good call
    bad_files: list[Path] = field(default_factory=list)  # corrupt, empty, text named .flac

    def hashes(self, paths: list[Path]) -> set[str]:
        return {file_sha256(path) for path in paths}


def stereo_call(customer_clips: list[Path], agent_clip: Path) -> np.ndarray:
    """(frames, 2) float32: the customer speaks, the agent answers, the customer speaks again."""
    first, second = (load_audio(clip).samples[0] for clip in customer_clips)
    agent = load_audio(agent_clip).samples[0]
    pause = np.zeros(int(PAUSE_SECONDS * SAMPLE_RATE), dtype=np.float32)
    silent = np.zeros_like
    customer_turns = [first, pause, silent(agent), pause, second, pause]
    agent_turns = [silent(first), pause, agent, pause, silent(second), pause]
    return np.stack([np.concatenate(customer_turns), np.concatenate(agent_turns)], axis=1)


def build_archive(root: Path, shared_data: Path) -> Archive:
    archive = Archive(root)
    customer_clips = sorted((shared_data / "ravdess").glob("Actor_0[1-4]/*.flac"))
    agent_clips = sorted((shared_data / "emodb" / "wav").glob("*.flac"))
    # Spread over actors and emotions rather than the first clips of one actor.
    step = len(customer_clips) // (2 * STEREO_CALLS)
    customer_clips = customer_clips[::step][: 2 * STEREO_CALLS]
    agent_clips = agent_clips[:: len(agent_clips) // STEREO_CALLS][:STEREO_CALLS]
    for number, agent in enumerate(agent_clips):
        folder = root / f"2024-05-{1 + number // 8:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"call-{number:03d}.wav"
        call = stereo_call(customer_clips[2 * number : 2 * number + 2], agent)
        soundfile.write(path, call, SAMPLE_RATE, subtype="PCM_16")
        archive.good_calls.append(path)
    # A mono recording, FLAC without a file name ending: found by its content.
    mono = root / "mono-recording"
    soundfile.write(mono, load_audio(customer_clips[0]).samples[0], SAMPLE_RATE, format="FLAC")
    archive.good_calls.append(mono)

    duplicate = root / "copies" / "call-000-copy.wav"
    duplicate.parent.mkdir()
    shutil.copy(archive.good_calls[0], duplicate)
    archive.duplicates.append(duplicate)

    truncated = root / "truncated.wav"
    truncated.write_bytes(archive.good_calls[1].read_bytes()[:3000])
    empty = root / "empty.wav"
    empty.write_bytes(b"")
    text = root / "report.flac"
    text.write_text("quarterly report: text, not audio\n" * 20)
    archive.bad_files += [truncated, empty, text]
    (root / "notes.txt").write_text("not a call, and not named like audio")
    return archive


@pytest.fixture(scope="module")
def archive(shared_data, tmp_path_factory) -> Archive:
    return build_archive(tmp_path_factory.mktemp("archive"), shared_data)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A real model package with random weights (the batch does not judge accuracy)."""
    from callmood.features import FeatureConfig
    from callmood.labels import LABEL_SETS
    from callmood.models.package import save_model_package
    from callmood.models.parallel_cnn_transformer import ModelConfig, ParallelCNNTransformer

    torch.manual_seed(0)
    labels = LABEL_SETS["iemocap4"]
    network = ParallelCNNTransformer(ModelConfig(num_classes=len(labels))).eval()
    directory = tmp_path_factory.mktemp("model") / "random-model"
    # Without the ONNX export (half a minute here): the torch backend runs the same weights.
    save_model_package(
        directory,
        network,
        labels=labels,
        feature_config=FeatureConfig(),
        window_seconds=3.0,
        export_onnx=False,
        extra={"name": "random-test-model"},
    )
    return directory


@pytest.fixture(scope="module")
def rules_file(tmp_path_factory) -> Path:
    """A rule that fires on any customer speech, so that every analysed call has an alert."""
    path = tmp_path_factory.mktemp("rules") / "rules.yaml"
    path.write_text(
        "rules:\n"
        "  - {name: customer_audible, kind: loudness, speaker: customer, peak_dbfs: -60.0}\n"
    )
    return path


@pytest.fixture(scope="module")
def first_run(archive, model_dir, rules_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    database_url = f"sqlite:///{out / 'callmood.db'}"
    options = BatchOptions(
        workers=2, model_dir=model_dir, rules=rules_file, database_url=database_url
    )
    return out, run_batch(archive.root, out, options)


def stored_calls(database_url: str) -> dict[str, list[str]]:
    """Call id -> tags of every call in the service database."""
    from callmood import store

    engine = store.create_database_engine(database_url)
    try:
        with store.session_scope(store.make_session_factory(engine)) as session:
            calls, _ = store.list_calls(session, limit=10_000)
            return {call.id: sorted(tag.tag for tag in call.tags) for call in calls}
    finally:
        engine.dispose()


def test_batch_analyses_each_distinct_call_once_on_two_workers(archive, first_run):
    out, summary = first_run
    results = read_batch_results(out)

    assert sorted(results.calls["call_hash"]) == sorted(archive.hashes(archive.good_calls))
    assert summary.files == len(archive.good_calls) + len(archive.duplicates) + 3
    assert summary.analysed == len(archive.good_calls) == len(results.calls)
    assert summary.duplicate_files == 1
    # The model is loaded once per worker process, not once per call.
    assert 1 <= summary.model_instances <= 2
    assert summary.audio_seconds == pytest.approx(results.calls["duration_seconds"].sum())


def test_duplicate_files_are_one_call_listing_every_path(archive, first_run):
    out, _ = first_run
    calls = read_batch_results(out).calls.set_index("call_hash")

    row = calls.loc[file_sha256(archive.duplicates[0])]

    assert {row["path"], *row["duplicate_paths"]} == {
        str(archive.good_calls[0]),
        str(archive.duplicates[0]),
    }


def test_bad_files_land_in_the_errors_table_with_file_and_reason(archive, first_run):
    out, summary = first_run
    errors = read_batch_results(out).errors.set_index("path")

    assert summary.errors == len(archive.bad_files) == len(errors)
    assert set(errors.index) == {str(path) for path in archive.bad_files}
    for path, row in errors.iterrows():
        assert Path(path).name in row["message"]
        assert not row["retryable"]  # the input is at fault: a rerun does not retry it
    assert errors.loc[str(archive.root / "empty.wav"), "error_type"] == "EmptyAudioError"
    assert errors.loc[str(archive.root / "truncated.wav"), "error_type"] == "CorruptAudioError"
    assert errors.loc[str(archive.root / "report.flac"), "error_type"].endswith("AudioError")


def test_stereo_calls_analyse_the_customer_by_default(archive, first_run):
    out, _ = first_run
    results = read_batch_results(out)
    stereo = results.calls[results.calls["path"].str.endswith(".wav")]

    assert (stereo["customer_channel"] == 0).all() and (stereo["agent_channel"] == 1).all()
    assert all(list(speakers) == ["customer"] for speakers in stereo["analyzed_speakers"])
    assert stereo["customer_dominant_emotion"].notna().all()
    assert stereo["agent_dominant_emotion"].isna().all()
    assert set(results.segments["speaker"]) <= {"customer", "mixed"}
    assert set(results.segments["call_hash"]) <= set(results.calls["call_hash"])
    assert (results.segments["end"] > results.segments["start"]).all()


def test_rules_file_reaches_every_worker_and_fills_the_alerts_table(first_run):
    out, _ = first_run
    results = read_batch_results(out)
    alerts_per_call = results.alerts.groupby("call_hash").size()

    assert set(results.alerts["rule"]) == {"customer_audible"}
    assert set(alerts_per_call.index) == set(results.calls["call_hash"])
    assert (results.calls.set_index("call_hash")["alert_count"] == alerts_per_call).all()
    assert (results.alerts["closed_at"] >= results.alerts["opened_at"]).all()
    # The condition began at opened_at and the rule was satisfied at confirmed_at.
    assert results.alerts["confirmed_at"].notna().all()
    assert (results.alerts["confirmed_at"] >= results.alerts["opened_at"]).all()


def test_analysed_calls_are_also_stored_once_in_the_service_database(archive, first_run):
    out, summary = first_run

    stored = stored_calls(f"sqlite:///{out / 'callmood.db'}")

    assert sorted(stored) == sorted(archive.hashes(archive.good_calls))
    assert summary.stored == len(archive.good_calls)
    assert all(tags == ["batch"] for tags in stored.values())


def test_rerun_skips_every_call_already_done(archive, first_run, model_dir, rules_file):
    out, _ = first_run
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.parquet")}

    options = BatchOptions(workers=2, model_dir=model_dir, rules=rules_file)
    summary = run_batch(archive.root, out, options)

    assert summary.skipped == len(archive.good_calls) + len(archive.bad_files)
    assert summary.analysed == summary.errors == summary.stored == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.parquet")} == before


def test_rerun_with_a_new_database_stores_the_calls_done_before(
    archive, first_run, model_dir, rules_file, tmp_path
):
    out, _ = first_run
    database_url = f"sqlite:///{tmp_path / 'new.db'}"
    options = BatchOptions(model_dir=model_dir, rules=rules_file, database_url=database_url)

    summary = run_batch(archive.root, out, options)

    assert summary.analysed == 0 and summary.stored == len(archive.good_calls)
    assert sorted(stored_calls(database_url)) == sorted(archive.hashes(archive.good_calls))


def test_manifest_channel_mapping_reaches_the_analysis(archive, model_dir):
    analyzer = CallAnalyzer(model_dir)
    call = archive.good_calls[2]

    swapped = analyzer.analyze(
        CallJob(file_sha256(call), (str(call),), {"customer": 1, "agent": 0})
    )

    calls = swapped.tables["calls"].to_pylist()[0]
    assert swapped.ok
    assert (calls["customer_channel"], calls["agent_channel"]) == (1, 0)


def test_killed_batch_resumes_with_every_call_analysed_exactly_once(
    archive, model_dir, rules_file, first_run, tmp_path
):
    out = tmp_path / "results"
    database_url = f"sqlite:///{tmp_path / 'callmood.db'}"
    command = [
        sys.executable,
        "-c",
        "from callmood.cli import main; main()",
        "batch",
        str(archive.root),
        "--out",
        str(out),
        "--workers",
        "1",
        "--model",
        str(model_dir),
        "--rules",
        str(rules_file),
        "--database",
        database_url,
    ]
    # A session of its own, so SIGKILL reaches the batch and its Dask worker processes.
    batch = subprocess.Popen(
        command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        done_at_kill = _wait_for_calls(out / "calls", KILL_AFTER_CALLS, batch)
    finally:
        os.killpg(batch.pid, signal.SIGKILL)
        batch.wait()
    assert KILL_AFTER_CALLS <= done_at_kill < len(archive.good_calls), "not killed mid-run"

    options = BatchOptions(
        workers=2, model_dir=model_dir, rules=rules_file, database_url=database_url
    )
    summary = run_batch(archive.root, out, options)

    results = read_batch_results(out)
    assert summary.skipped >= done_at_kill
    assert summary.skipped + summary.analysed + summary.errors == len(archive.good_calls) + len(
        archive.bad_files
    )
    assert sorted(results.calls["call_hash"]) == sorted(archive.hashes(archive.good_calls))
    assert sorted(results.errors["call_hash"]) == sorted(archive.hashes(archive.bad_files))
    # Exactly once, down to the segments: each call's segments cover each of its windows once,
    # and as many windows as the uninterrupted run found.
    uninterrupted = read_batch_results(first_run[0]).calls
    assert _windows_per_call(results.calls) == _windows_per_call(uninterrupted)
    assert _segment_windows_per_call(results.segments) == {
        call: count for call, count in _windows_per_call(results.calls).items() if count
    }
    assert not results.segments.duplicated(["call_hash", "speaker", "start"]).any()
    leftovers = [p for p in out.rglob("*") if p.is_file() and p.name.endswith(".tmp")]
    assert leftovers == []
    assert sorted(stored_calls(database_url)) == sorted(archive.hashes(archive.good_calls))


def _windows_per_call(calls) -> dict[str, int]:
    return {
        row.call_hash: len(CallResult.model_validate_json(row.result_json).windows())
        for row in calls.itertuples()
    }


def _segment_windows_per_call(segments) -> dict[str, int]:
    return {call: int(n) for call, n in segments.groupby("call_hash")["window_count"].sum().items()}


def _wait_for_calls(calls_dir: Path, count: int, process: subprocess.Popen) -> int:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        done = len(list(calls_dir.glob("*.parquet"))) if calls_dir.is_dir() else 0
        if done >= count:
            return done
        if process.poll() is not None:
            pytest.fail(f"the batch exited ({process.returncode}) before it could be killed")
        time.sleep(0.02)
    pytest.fail(f"no {count} calls done within 3 minutes")


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        (["{tmp}/nowhere"], "nowhere: no such file, folder or glob match"),
        (["{tmp}", "--channels", "left=0"], "--channels: cannot read 'left=0'"),
        (["{tmp}", "--workers", "0"], "--workers must be at least 1"),
        (["{tmp}", "--rules", "{tmp}/missing.yaml"], "missing.yaml does not exist"),
    ],
)
def test_command_line_answers_bad_arguments_with_one_clear_line(
    tmp_path, monkeypatch, capsys, arguments, problem
):
    from callmood.cli import main

    (tmp_path / "call.wav").write_bytes(b"")
    arguments = [a.format(tmp=tmp_path) for a in arguments]
    monkeypatch.setattr(sys, "argv", ["callmood", "batch", *arguments, "--out", f"{tmp_path}/o"])

    with pytest.raises(SystemExit) as exited:
        main()

    assert exited.value.code == 2
    assert problem in " ".join(capsys.readouterr().err.split())


def test_an_output_folder_written_before_confirmed_at_still_reads(tmp_path):
    """Alerts written without the confirmed_at column read back with it empty."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from callmood.batch.output import read_batch_table
    from callmood.batch.tables import ALERTS_SCHEMA

    old_schema = pa.schema([field for field in ALERTS_SCHEMA if field.name != "confirmed_at"])
    row = {name: None for name in old_schema.names} | {
        "call_hash": "c" * 64,
        "alert_id": "angry_customer:customer:19000",
        "rule": "angry_customer",
        "opened_at": 13.0,
        "evidence": [],
    }
    (tmp_path / "alerts").mkdir()
    old_table = pa.Table.from_pylist([row], schema=old_schema)
    pq.write_table(old_table, tmp_path / "alerts" / "c.parquet")
    alerts = read_batch_table(tmp_path, "alerts").to_pylist()
    assert alerts[0]["opened_at"] == 13.0
    assert alerts[0]["confirmed_at"] is None
