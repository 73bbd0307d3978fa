"""The data report: numbers in the summary, figures written, and the `data report` command."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from callmood.cli import app
from callmood.corpora.emodb import prepare_emodb
from callmood.corpora.ravdess import prepare_ravdess
from callmood.data_report import ReportError, build_report, summarize
from callmood.errors import CallmoodError
from callmood.manifest import write_manifest

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def rows(ravdess_dir, emodb_dir):
    return prepare_ravdess(ravdess_dir) + prepare_emodb(emodb_dir)


def test_summary_counts_the_real_corpora(rows):
    ravdess = summarize([row for row in rows if row.corpus == "ravdess"])
    assert (ravdess.clips, ravdess.speakers) == (1440, 24)
    assert ravdess.label_counts["neutral"] == 96
    assert ravdess.imbalance_ratio == 2.0  # 192 / 96
    assert ravdess.gender_counts == {"female": 720, "male": 720}


def test_imbalance_ratio_is_largest_over_smallest_class(rows):
    emodb = summarize([row for row in rows if row.corpus == "emodb"])
    assert emodb.imbalance_ratio == pytest.approx(127 / 46)
    assert list(emodb.label_counts) == [
        "neutral",
        "happy",
        "sad",
        "angry",
        "fearful",
        "disgust",
        "bored",
    ]


def test_report_writes_figures_and_a_summary_with_the_numbers(tmp_path, rows):
    report = build_report(rows, tmp_path / "report", source="manifest.csv")
    names = sorted(path.name for path in report.files)
    assert names == [
        "clips_per_speaker.png",
        "durations.png",
        "label_distribution.png",
        "summary.md",
    ]
    for path in report.files:
        if path.suffix == ".png":
            assert path.read_bytes()[:8] == PNG_SIGNATURE
            assert path.stat().st_size > 10_000
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert "1975 clips, 34 speakers" in summary
    assert "| emodb | 535 | 10 |" in summary
    assert "| ravdess | 96 | 192 | 192 |" in summary  # neutral, calm, happy
    assert "imbalance" in summary and "3.94" in summary  # 319 angry / 81 bored overall
    assert report.clips_per_speaker["ravdess:07"] == 60


def test_report_on_no_rows_is_a_clear_error(tmp_path):
    with pytest.raises(ReportError, match="empty"):
        build_report([], tmp_path)


def test_report_command_reads_a_manifest_and_writes_the_report(tmp_path, rows):
    manifest = tmp_path / "manifest.csv"
    write_manifest(rows, manifest)
    result = CliRunner().invoke(app, ["data", "report", str(manifest), "-o", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r" / "label_distribution.png").is_file()
    assert "1975" in result.output and "3.94" in result.output


def test_report_command_on_a_broken_manifest_names_the_problem(tmp_path):
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("id,corpus\nx,ravdess\n")
    result = CliRunner().invoke(app, ["data", "report", str(manifest), "-o", str(tmp_path / "r")])
    assert isinstance(result.exception, CallmoodError)
    assert "lacks columns" in str(result.exception)
