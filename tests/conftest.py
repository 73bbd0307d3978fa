"""Shared test fixtures: where the real corpora are, and how a missing component is handled.

A test that needs a component (PostgreSQL, Chromium, ../shared/data) calls
`require(...)`: it skips locally with the reason, and fails in CI (CI=true),
where `.ci/run` must have provided it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CALLMOOD_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
# A network small enough to train an epoch on a few speakers in seconds (tests add options).
TINY_MODEL = {
    "cnn_channels": [4, 8, 16],
    "transformer_layers": 1,
    "transformer_feedforward": 64,
    "transformer_time_pool": 8,
}


def require(condition: bool, reason: str) -> None:
    """Skip (locally) or fail (in CI) when a component the test needs is missing."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"missing in CI: {reason}")
    pytest.skip(reason)


class TrainingInterrupted(Exception):
    """What :func:`stop_after_first_epoch` raises: a run killed after its first checkpoint."""


def stop_after_first_epoch(record) -> None:
    """`on_epoch_end` for train_model that interrupts the run once epoch 0 is checkpointed."""
    if record.epoch == 0:
        raise TrainingInterrupted


def emodb_clips(emodb_dir, config, *, speakers=None, keep_waveforms=False, normalized=False):
    """EmoDB clips of the config's classes (of `speakers` only, if given), featurised.

    `normalized`: each speaker's features standardised with their own statistics.
    """
    from callmood.corpora import prepare_emodb
    from callmood.training.data import build_clip_set, map_labels

    rows, labels = map_labels(prepare_emodb(emodb_dir), config.label_set)
    kept = [
        (r, label)
        for r, label in zip(rows, labels, strict=True)
        if label in config.classes and (speakers is None or r.speaker in speakers)
    ]
    return build_clip_set(
        [k[0] for k in kept],
        [k[1] for k in kept],
        config.class_names(),
        config.feature_config(),
        keep_waveforms=keep_waveforms,
        speaker_normalization=normalized,
    )


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real corpora folder (../shared/data): RAVDESS, EmoDB and ASED as 16 kHz FLAC."""
    require((SHARED_DATA / "ravdess").is_dir(), f"real corpora not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def ravdess_dir(shared_data: Path) -> Path:
    return shared_data / "ravdess"


@pytest.fixture(scope="session")
def emodb_dir(shared_data: Path) -> Path:
    return shared_data / "emodb"


@pytest.fixture(scope="session")
def ased_dir(shared_data: Path) -> Path:
    require((shared_data / "ased").is_dir(), f"ASED not found at {shared_data / 'ased'}")
    return shared_data / "ased"
