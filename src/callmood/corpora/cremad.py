"""CREMA-D, the Crowd-sourced Emotional Multimodal Actors Dataset (audio part).

91 actors (48 male, 43 female; ids 1001-1091) of diverse ages and ethnicities, English,
12 sentences in 6 emotions (anger, disgust, fear, happy, neutral, sad) at up to four
intensities: 7,442 clips. Gender comes from ``VideoDemographics.csv`` when it is present.
Source: https://github.com/CheyneyComputerScience/CREMA-D (``AudioWAV/``).
License: Open Database License (ODbL) 1.0, contents under the Database Contents License.
Citation: Cao et al. (2014), IEEE Transactions on Affective Computing 5(4): 377-390.

Layout: ``AudioWAV/AAAA_SSS_EEE_II.<wav|flac|...>``: actor, sentence code, emotion code,
intensity (LO, MD, HI, XX unspecified). The release also has the same clips as MP3 in
``AudioMP3/``; only ``AudioWAV/`` is read when it exists.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

from callmood.corpora._common import (
    Candidate,
    CorpusError,
    ProgressCallback,
    acted_clip,
    corpus_folder,
    iter_files,
    no_clips_error,
    rows_from_candidates,
    stem_of,
)
from callmood.labels import CORPUS_LABEL_MAPS
from callmood.manifest import ManifestRow

CORPUS = "cremad"
TITLE = "CREMA-D"
LANGUAGE = "en"
FIRST_ACTOR = 1001
LAST_ACTOR = 1091
AUDIO_FOLDER = "AudioWAV"
DEMOGRAPHICS_FILE = "VideoDemographics.csv"
_SEXES = {"male": "male", "female": "female"}

_FILE_NAME = re.compile(
    r"^(?P<actor>\d{4})_(?P<sentence>[A-Z]{3})_(?P<emotion>[A-Z]{3})_(?P<intensity>LO|MD|HI|XX)$"
)


def prepare_cremad(
    corpus_dir: str | Path, *, progress: ProgressCallback | None = None
) -> list[ManifestRow]:
    """Find the CREMA-D clips under `corpus_dir` and label them from their file names.

    Parameters
    ----------
    corpus_dir : str or Path
        The repository folder (holding ``AudioWAV/``) or the audio folder itself.
    progress : callable, optional
        Called as ``progress(done, total)`` while audio files are read.

    Returns
    -------
    list of ManifestRow
        One row per clip; speaker ``"cremad:1001"``, group = speaker.

    Raises
    ------
    CorpusError
        When the folder holds no CREMA-D clips or the demographics file is malformed.
    """
    folder = corpus_folder(corpus_dir, TITLE)
    audio_folder = folder / AUDIO_FOLDER if (folder / AUDIO_FOLDER).is_dir() else folder
    genders = _read_genders(folder / DEMOGRAPHICS_FILE)
    candidates = []
    for path in iter_files(audio_folder):
        fields = _parse_file_name(stem_of(path))
        if fields is not None:
            candidates.append(Candidate(f"{CORPUS}:{stem_of(path)}", path, fields))
    rows = rows_from_candidates(
        candidates,
        corpus=CORPUS,
        title=TITLE,
        progress=progress,
        describe=lambda candidate: _describe(candidate.fields, genders),
    )
    if not rows:
        raise no_clips_error(TITLE, folder, "AudioWAV/1001_DFA_ANG_XX.wav-style clips")
    return rows


def _describe(fields: dict[str, str], genders: dict[str, str]) -> dict[str, Any]:
    """A clip's speaker and labels; its gender where the demographics file gives it."""
    actor = fields["actor"]
    return acted_clip(
        CORPUS, actor, fields["emotion"], gender=genders.get(actor), language=LANGUAGE
    )


def _read_genders(path: Path) -> dict[str, str]:
    """Actor id -> gender from ``VideoDemographics.csv`` (ActorID, Age, Sex, ...); {} if absent."""
    if not path.is_file():
        return {}
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            if not {"ActorID", "Sex"} <= set(reader.fieldnames or []):
                raise CorpusError(f"{TITLE}: {path} lacks the columns ActorID and Sex")
            return {
                record["ActorID"].strip(): _SEXES[record["Sex"].strip().lower()]
                for record in reader
                if (record.get("Sex") or "").strip().lower() in _SEXES
            }
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise CorpusError(f"{TITLE}: cannot read {path}: {error}") from None


def _parse_file_name(stem: str) -> dict[str, str] | None:
    """Fields of a CREMA-D clip name, or None for anything else."""
    match = _FILE_NAME.match(stem)
    if match is None:
        return None
    fields = match.groupdict()
    if fields["emotion"] not in CORPUS_LABEL_MAPS[CORPUS]:
        return None
    if not FIRST_ACTOR <= int(fields["actor"]) <= LAST_ACTOR:
        return None
    return fields
