"""scripts/level_sensitivity.py: the bundled model on the same real clips at other gains."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO_ROOT

from callmood.inference import default_model_dir


def test_each_gain_gets_a_row_and_0_db_changes_nothing(emodb_dir):
    run = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "scripts" / "level_sensitivity.py"),
            str(default_model_dir()),
            "--corpus",
            "emodb",
            "--path",
            str(emodb_dir),
            "--gains",
            "-10",
            "0",
            "10",
            "--limit",
            "12",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    rows = [
        line.split("|")[1:-1] for line in run.stdout.splitlines() if line.startswith("| default")
    ]
    assert [row[1].strip() for row in rows] == ["-10", "+0", "+10"]
    by_gain = {row[1].strip(): [cell.strip() for cell in row] for row in rows}
    assert by_gain["+0"][3] == "0.0"  # the reference against itself
    for row in rows:
        shares = [float(cell) for cell in row[4:]]
        assert sum(shares) == pytest.approx(100, abs=0.2)
        assert 0 <= float(row[2]) <= 100
