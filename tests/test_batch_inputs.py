"""Batch inputs and output folder, without a cluster: finding calls, options, atomic tables."""

from __future__ import annotations

import shutil

import pytest

from callmood.batch import (
    BatchError,
    BatchOptions,
    find_calls,
    read_batch_results,
    read_batch_table,
)
from callmood.batch.output import BatchOutput
from callmood.batch.sources import file_sha256
from callmood.batch.tables import error_table
from callmood.errors import CallmoodError

RAVDESS_CLIP = "Actor_01/03-01-05-01-01-01-01.flac"


@pytest.fixture()
def clip(ravdess_dir):
    return ravdess_dir / RAVDESS_CLIP


def test_folder_source_finds_audio_by_content_recursively(tmp_path, clip):
    (tmp_path / "2024" / "05").mkdir(parents=True)
    shutil.copy(clip, tmp_path / "2024" / "05" / "call-a.flac")
    shutil.copy(clip, tmp_path / "2024" / "recording_without_extension")
    (tmp_path / "2024" / "notes.txt").write_text("call notes, not audio")
    (tmp_path / "broken.wav").write_bytes(b"")  # audio by name: reported, never skipped
    (tmp_path / ".cache").mkdir()
    shutil.copy(clip, tmp_path / ".cache" / "hidden.flac")

    found = sorted(call.path.relative_to(tmp_path).as_posix() for call in find_calls(tmp_path))

    assert found == ["2024/05/call-a.flac", "2024/recording_without_extension", "broken.wav"]


def test_folder_source_leaves_out_the_batch_output_folder(tmp_path, clip):
    shutil.copy(clip, tmp_path / "call.flac")
    (tmp_path / "results" / "calls").mkdir(parents=True)
    shutil.copy(clip, tmp_path / "results" / "calls" / "looks-like-audio.flac")

    found = find_calls(tmp_path, exclude=tmp_path / "results")

    assert [call.path.name for call in found] == ["call.flac"]


def test_glob_source_takes_every_matching_file(tmp_path, clip):
    for name in ("a.flac", "b.flac", "c.wav"):
        shutil.copy(clip, tmp_path / name)

    found = find_calls(str(tmp_path / "*.flac"))

    assert [call.path.name for call in found] == ["a.flac", "b.flac"]


def test_manifest_gives_per_call_channels_and_resolves_relative_paths(tmp_path, clip):
    (tmp_path / "audio").mkdir()
    shutil.copy(clip, tmp_path / "audio" / "one.flac")
    shutil.copy(clip, tmp_path / "audio" / "two.flac")
    manifest = tmp_path / "calls.csv"
    manifest.write_text(
        "path,customer_channel,agent_channel,queue\n"
        "audio/one.flac,1,0,billing\n"
        f"{tmp_path / 'audio' / 'two.flac'},,,support\n"
    )

    first, second = find_calls(manifest)

    assert first.path == tmp_path / "audio" / "one.flac"
    assert first.channels == {"customer": 1, "agent": 0}
    assert second.path == tmp_path / "audio" / "two.flac"
    assert second.channels is None


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("file,channel\na.wav,0\n", "no 'path' column"),
        ("path,customer_channel\na.wav,left\n", "line 2: customer_channel must be a channel"),
        ("path,customer_channel,agent_channel\na.wav,1,1\n", "line 2: .*different channels"),
        ("path,agent_channel\na.wav,1\n", "line 2: .*customer's channel must be given"),
        ("path\n\n", "no audio files found"),
    ],
)
def test_malformed_manifest_is_a_clear_error_naming_it(tmp_path, content, problem):
    manifest = tmp_path / "calls.csv"
    manifest.write_text(content)

    with pytest.raises(BatchError, match=problem) as raised:
        find_calls(manifest)

    assert str(manifest) in str(raised.value)


def test_missing_source_is_a_clear_error(tmp_path):
    with pytest.raises(BatchError, match="no such file, folder or glob match"):
        find_calls(tmp_path / "archive-that-is-not-there")
    with pytest.raises(BatchError, match="no audio files found"):
        find_calls(str(tmp_path / "*.wav"))


def test_batch_options_reject_impossible_values():
    with pytest.raises(BatchError, match="--workers must be at least 1"):
        BatchOptions(workers=0)
    with pytest.raises(BatchError, match="--threads-per-worker"):
        BatchOptions(threads_per_worker=0)
    with pytest.raises(BatchError, match="not a scheduler address"):
        BatchOptions(scheduler="localhost")
    with pytest.raises(CallmoodError, match="different channels"):
        BatchOptions(channels={"customer": 0, "agent": 0})
    assert issubclass(BatchError, CallmoodError)


def test_output_files_appear_whole_and_temporaries_are_never_read(tmp_path):
    output = BatchOutput(tmp_path)
    table = error_table(
        "ab" * 32, ["/calls/x.wav"], "CorruptAudioError", "x.wav: damaged", retryable=False
    )
    output.write_error("ab" * 32, table, retryable=False)
    # What a SIGKILL in the middle of a write leaves behind: a hidden partial file.
    (tmp_path / "errors" / f".{'cd' * 32}.parquet.123.abcd.tmp").write_bytes(b"PAR1\x00half")

    errors = read_batch_table(tmp_path, "errors")

    assert errors.column("message").to_pylist() == ["x.wav: damaged"]
    assert [p.name for p in (tmp_path / "errors").iterdir() if not p.name.startswith(".")] == [
        f"{'ab' * 32}.parquet"
    ]
    assert output.remove_temporaries() == 1
    assert output.done_keys() == {"ab" * 32}
    output.close()


def test_retryable_errors_are_forgotten_at_the_next_run(tmp_path):
    output = BatchOutput(tmp_path)
    key = "ef" * 32
    table = error_table(key, ["/calls/y.wav"], "OSError", "cannot read", retryable=True)
    output.write_error(key, table, retryable=True)

    assert output.done_keys() == set()
    assert read_batch_table(tmp_path, "errors").num_rows == 1
    assert output.clear_retryable_errors() == 1
    assert read_batch_table(tmp_path, "errors").num_rows == 0
    output.close()


def test_second_batch_on_the_same_folder_is_refused_while_the_first_runs(tmp_path):
    with BatchOutput(tmp_path):
        with pytest.raises(BatchError, match="another batch is writing to this folder"):
            BatchOutput(tmp_path)
    BatchOutput(tmp_path).close()  # free again once the first is done


def test_resuming_with_other_settings_is_refused(tmp_path):
    settings = {"model": "sha256:aa", "analyze_agent": False}
    with BatchOutput(tmp_path) as output:
        output.check_settings(settings)
        output.write_error(
            "ab" * 32,
            error_table("ab" * 32, ["x.wav"], "EmptyAudioError", "empty", retryable=False),
            retryable=False,
        )
        output.check_settings(dict(settings))  # same settings: resuming is fine
        with pytest.raises(BatchError, match=r"analyze_agent: False -> True"):
            output.check_settings({**settings, "analyze_agent": True})


def test_empty_output_folder_reads_back_as_empty_typed_tables(tmp_path):
    BatchOutput(tmp_path).close()

    results = read_batch_results(tmp_path)

    assert len(results.calls) == 0 and "customer_negativity" in results.calls.columns
    assert len(results.segments) == 0 and list(results.alerts.columns)[:2] == [
        "call_hash",
        "alert_id",
    ]
    with pytest.raises(BatchError, match="not a batch output folder"):
        read_batch_table(tmp_path / "nothing", "calls")


def test_call_identity_is_the_sha256_of_the_bytes(tmp_path, clip):
    copy = tmp_path / "renamed.flac"
    shutil.copy(clip, copy)

    assert file_sha256(copy) == file_sha256(clip)
    assert len(file_sha256(copy)) == 64
