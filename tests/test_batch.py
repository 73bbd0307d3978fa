"""Batch analysis on a real Dask LocalCluster over short stereo calls made from ../shared/data.

Each call is a few seconds of turn-taking: a RAVDESS actor on the left (customer)
channel, then an EmoDB actor answering on the right (agent) channel. The archive
also holds a mono call, a duplicate file and three bad files.
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


def stereo_call(customer_clip: Path, agent_clip: Path) -> np.ndarray:
    """(frames, 2) float32: the customer speaks, a pause, then the agent answers."""
    customer = load_audio(customer_clip).samples[0]
    agent = load_audio(agent_clip).samples[0]
    pause = int(PAUSE_SECONDS * SAMPLE_RATE)
    call = np.zeros((len(customer) + pause + len(agent) + pause, 2), dtype=np.float32)
    call[: len(customer), 0] = customer
    call[len(customer) + pause : len(customer) + pause + len(agent), 1] = agent
    return call


def build_archive(root: Path, shared_data: Path) -> Archive:
    archive = Archive(root)
    customer_clips = sorted((shared_data / "ravdess").glob("Actor_0[1-4]/*.flac"))
    agent_clips = sorted((shared_data / "emodb" / "wav").glob("*.flac"))
    # Spread over actors and emotions rather than the first clips of one actor.
    customer_clips = customer_clips[:: len(customer_clips) // STEREO_CALLS][:STEREO_CALLS]
    agent_clips = agent_clips[:: len(agent_clips) // STEREO_CALLS][:STEREO_CALLS]
    for number, (customer, agent) in enumerate(zip(customer_clips, agent_clips, strict=True)):
        folder = root / f"2024-05-{1 + number // 8:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"call-{number:03d}.wav"
        soundfile.write(path, stereo_call(customer, agent), SAMPLE_RATE, subtype="PCM_16")
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
def first_run(archive, model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    summary = run_batch(archive.root, out, BatchOptions(workers=2, model_dir=model_dir))
    return out, summary


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


def test_rerun_skips_every_call_already_done(archive, first_run, model_dir):
    out, _ = first_run
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.parquet")}

    summary = run_batch(archive.root, out, BatchOptions(workers=2, model_dir=model_dir))

    assert summary.skipped == len(archive.good_calls) + len(archive.bad_files)
    assert summary.analysed == summary.errors == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.parquet")} == before


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
    archive, model_dir, first_run, tmp_path
):
    out = tmp_path / "results"
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

    summary = run_batch(archive.root, out, BatchOptions(workers=2, model_dir=model_dir))

    results = read_batch_results(out)
    assert summary.skipped >= done_at_kill
    assert summary.skipped + summary.analysed + summary.errors == len(archive.good_calls) + len(
        archive.bad_files
    )
    assert sorted(results.calls["call_hash"]) == sorted(archive.hashes(archive.good_calls))
    assert sorted(results.errors["call_hash"]) == sorted(archive.hashes(archive.bad_files))
    # Exactly once, down to the segments: the same rows as the uninterrupted run.
    uninterrupted = read_batch_results(first_run[0]).segments
    assert _segment_keys(results.segments) == _segment_keys(uninterrupted)
    leftovers = [p for p in out.rglob("*") if p.is_file() and p.name.endswith(".tmp")]
    assert leftovers == []


def _segment_keys(segments) -> list[tuple]:
    columns = ["call_hash", "speaker", "start", "end", "emotion"]
    return sorted(segments[columns].itertuples(index=False, name=None))


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


def test_command_line_answers_a_missing_source_with_a_clear_error(tmp_path):
    command = [sys.executable, "-c", "from callmood.cli import main; main()", "batch"]

    missing = subprocess.run(
        [*command, str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
    )
    bad_channels = subprocess.run(
        [*command, str(tmp_path), "--out", str(tmp_path / "out"), "--channels", "left=0"],
        capture_output=True,
        text=True,
    )

    assert missing.returncode == 2
    assert "nowhere: no such file, folder or glob match" in missing.stderr
    assert bad_channels.returncode == 2
    assert "unknown speaker 'left'" in bad_channels.stderr
