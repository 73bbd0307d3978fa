"""`callmood analyze`: readable summary, export formats, one clear line for bad input."""

from __future__ import annotations

import json
import sys
from xml.etree import ElementTree

import numpy as np
import pytest
from analysis_fixtures import build_two_party_call, make_random_package, write_audio
from conftest import REPO_ROOT, require

from callmood.audio import SAMPLE_RATE
from callmood.cli import main
from callmood.inference import default_model_dir


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_random_package(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def call_path(ravdess_dir, tmp_path_factory):
    samples, _ = build_two_party_call(ravdess_dir)
    return write_audio(tmp_path_factory.mktemp("call") / "call.flac", samples)


def run_cli(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["callmood", *map(str, args)])
    try:
        main()
        code = 0
    except SystemExit as done:
        code = done.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_analyze_prints_the_customer_timeline_scores_and_writes_json(
    monkeypatch, capsys, call_path, model_dir, tmp_path
):
    output = tmp_path / "result.json"
    code, out, err = run_cli(
        monkeypatch, capsys, "analyze", call_path, "--model", model_dir, "-o", output
    )
    assert code == 0, err
    assert "customer timeline" in out and "scores" in out
    assert "agent timeline" not in out  # the agent is not analysed without opt-in
    result = json.loads(output.read_text())
    assert result["schema_version"] == "1.0"
    assert result["analyzed_speakers"] == ["customer"]


def test_analyze_agent_opt_in_and_other_formats(
    monkeypatch, capsys, call_path, model_dir, tmp_path
):
    base = ["analyze", call_path, "--model", model_dir, "--analyze-agent", "--backend", "torch"]
    code, out, err = run_cli(
        monkeypatch, capsys, *base, "-o", tmp_path / "r.xml", "--format", "emotionml"
    )
    assert code == 0, err
    assert "agent timeline" in out
    root = ElementTree.fromstring((tmp_path / "r.xml").read_text())
    assert root.get("version") == "1.0"
    code, _, err = run_cli(
        monkeypatch, capsys, *base, "-o", tmp_path / "r.rttm", "--format", "rttm"
    )
    assert code == 0, err
    speakers = {line.split()[7] for line in (tmp_path / "r.rttm").read_text().splitlines()}
    assert speakers == {"customer", "agent"}
    code, _, err = run_cli(monkeypatch, capsys, *base, "-o", tmp_path / "r.csv", "--format", "csv")
    assert code == 0, err
    assert (tmp_path / "r.csv").read_text().startswith("call_id,speaker,start,end")


def test_silence_only_call_is_reported_as_no_speech(monkeypatch, capsys, model_dir, tmp_path):
    path = write_audio(tmp_path / "quiet.flac", np.zeros((2, 20 * SAMPLE_RATE), np.float32))
    code, out, err = run_cli(monkeypatch, capsys, "analyze", path, "--model", model_dir)
    assert code == 0, err
    assert "No speech detected" in out


def bad_inputs(tmp_path, call_path):
    short = write_audio(tmp_path / "short.wav", np.zeros((2, SAMPLE_RATE // 5), np.float32))
    six = write_audio(tmp_path / "six.wav", np.zeros((6, 2 * SAMPLE_RATE), np.float32))
    corrupt = tmp_path / "corrupt.flac"
    corrupt.write_bytes(call_path.read_bytes()[:3000])
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - name: loud\n    kind: loudness\n    peak_dbfs: 6\n")
    return [
        ([short], "short.wav"),
        ([six], "6 channels"),
        ([call_path, "--channels", "customer=3"], "no channel for customer=3"),
        ([call_path, "--channels", "left=0"], "--channels"),
        ([corrupt], "corrupt.flac"),
        ([call_path, "--rules", rules], "rules.yaml"),
        ([call_path, "--rules", tmp_path / "none.yaml"], "none.yaml"),
        ([call_path, "--format", "docx", "-o", tmp_path / "x"], "--format"),
        ([call_path, "--hop-seconds", "0"], "hop_seconds"),
        ([tmp_path / "missing.wav"], "missing.wav"),
    ]


def test_bad_input_exits_2_with_one_clear_line(monkeypatch, capsys, call_path, model_dir, tmp_path):
    for args, expected in bad_inputs(tmp_path, call_path):
        code, _, err = run_cli(monkeypatch, capsys, "analyze", *args, "--model", model_dir)
        assert code == 2, (args, err)
        assert expected in err, (args, err)
        assert "Traceback" not in err


def test_demo_call_raises_an_angry_customer_alert_with_the_bundled_model(
    monkeypatch, capsys, tmp_path
):
    require((default_model_dir() / "model.json").is_file(), "bundled default model not built")
    demo = REPO_ROOT / "examples" / "demo_call.flac"
    require(demo.is_file(), "examples/demo_call.flac missing (scripts/make_demo_call.py)")
    code, out, err = run_cli(monkeypatch, capsys, "analyze", demo, "-o", tmp_path / "demo.json")
    assert code == 0, err
    assert "customer timeline" in out and "angry_customer" in out
    result = json.loads((tmp_path / "demo.json").read_text())
    alerts = [a for a in result["alerts"] if a["rule"] == "angry_customer"]
    assert alerts and alerts[0]["speaker"] == "customer"
    # The customer turns angry about halfway through (where the alert opens); the rule is
    # met seconds later, in the second half of the call.
    assert alerts[0]["opened_at"] > result["duration_seconds"] * 0.4
    assert alerts[0]["confirmed_at"] > max(alerts[0]["opened_at"], result["duration_seconds"] / 2)


def test_analyze_puts_agent_queue_and_start_time_into_the_json(
    monkeypatch, capsys, call_path, model_dir, tmp_path
):
    output = tmp_path / "result.json"
    code, out, err = run_cli(
        monkeypatch,
        capsys,
        "analyze",
        call_path,
        "--model",
        model_dir,
        "-o",
        output,
        "--agent",
        " Ana Ruiz ",
        "--queue",
        "billing",
        "--started-at",
        "2026-12-01T09:15:00+01:00",
    )
    assert code == 0, err
    assert "agent Ana Ruiz" in out and "queue billing" in out
    metadata = json.loads(output.read_text())["metadata"]
    assert metadata == {
        "agent": "Ana Ruiz",
        "queue": "billing",
        "external_call_id": None,
        "started_at": "2026-12-01T08:15:00Z",
    }


def test_analyze_refuses_a_start_time_without_a_zone_before_analysing(
    monkeypatch, capsys, call_path, tmp_path
):
    # No --model: the bad value must be refused before any model is loaded.
    code, out, err = run_cli(
        monkeypatch, capsys, "analyze", call_path, "--started-at", "2026-12-01T09:15:00"
    )
    assert code == 2
    assert "started_at" in err and "has no time zone" in err
    assert "Traceback" not in err
